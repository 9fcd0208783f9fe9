#!/usr/bin/env bash
# A consortium on this machine, run exactly as an operator runs one across hosts: the CA, the
# coordinator and its SuperLink, and three hospitals are separate processes that share nothing but
# the files an operator hands over (enrolment kits) and loopback network addresses. Every step of
# docs/OPERATIONS.md runs here, in its order, with its commands: create the CA, enrol hospitals,
# start the services, define the task, sites train and push (and keep running: they score model
# versions on their validation patients), merge (the sites' scores choose the recipe) and pull the
# recommended version, a site bringing a new modality joins later (merged with no retraining of the
# others), LegoFuse rounds (kept only if a round beats the merge on the sites' validation), score
# the versions again, withdraw a site, rotate a certificate, back up and restore the store,
# upgrade, observe.
#
#   deploy/local/run.sh [FOLDER]          (FOLDER: new or empty; default: a temporary folder)
#
# Environment: MMLEGO (the mmlego command, default `mmlego`), PYTHON (the Python of that install,
# default python3), UPGRADE (the command of the upgrade step, default: none; e.g.
# "pip install --upgrade mmlego==0.2.0"). Exit status 0 when every check passed.
set -euo pipefail

ROOT="${1:-}"
[ -n "$ROOT" ] || ROOT="$(mktemp -d)"
mkdir -p "$ROOT" && ROOT="$(cd "$ROOT" && pwd)"
[ -z "$(ls -A "$ROOT")" ] || { echo "deploy/local: $ROOT is not empty; give a new folder" >&2; exit 2; }
MM="${MMLEGO:-mmlego}"
PY="${PYTHON:-python3}"
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
export FLWR_TELEMETRY_ENABLED=0 FLWR_DISABLE_UPDATE_CHECK=1
mkdir -p "$ROOT/logs" "$ROOT/run"
cd "$ROOT"

step() { printf '\n== %s\n' "$*"; }
die() { printf 'deploy/local: FAILED: %s\n' "$*" >&2; for f in logs/*.log; do printf '\n-- end of %s\n' "$f" >&2; tail -n 15 "$f" >&2; done; exit 1; }
free_port() { "$PY" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

# A service is its own process group (setsid), as on its own host; stopped with SIGTERM, then SIGKILL.
start() { local name=$1; shift; setsid "$@" >>"logs/$name.log" 2>&1 & echo $! >"run/$name.pid"; }
stop() {
  local pid; pid="$(cat "run/$1.pid" 2>/dev/null)" || return 0
  kill -TERM -- "-$pid" 2>/dev/null || true
  for _ in $(seq 60); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
  kill -KILL -- "-$pid" 2>/dev/null || true
  rm -f "run/$1.pid"
}
cleanup() { for f in run/*.pid; do [ -e "$f" ] && stop "$(basename "$f" .pid)"; done; return 0; }
trap cleanup EXIT
trap 'exit 130' INT TERM
wait_for() {  # wait_for SECONDS DESCRIPTION COMMAND...
  local deadline=$((SECONDS + $1)) what=$2; shift 2
  until "$@" >/dev/null 2>&1; do
    [ "$SECONDS" -lt "$deadline" ] || die "timed out waiting for: $what"
    sleep 1
  done
}
healthy() { "$PY" -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:$METRICS/healthz', timeout=2)"; }
status_check() {  # status_check PYTHON-EXPRESSION: true when it holds for s = `admin status --json` (the operator's kit)
  "$MM" admin status --json --kit kits/ops | "$PY" -c "import json, sys; s = json.load(sys.stdin); sys.exit(0 if ($1) else 1)"
}
site_blocks() { printf 'sum(x["blocks"] for x in s["sites"] if x["site"] == "%s") >= %s' "$1" "$2"; }
newest() {  # the newest model version's id
  "$MM" admin status --json --kit kits/ops | "$PY" -c "import json, sys; print(json.load(sys.stdin)['models'][0]['model'])"
}
created_version() {  # created_version FILE: the version a merge's output (saved in FILE) created
  local v
  v="$(sed -n 's/^created model version \([^ ]*\) .*/\1/p' "$1" | head -1)"
  [ -n "$v" ] || die "no 'created model version' line in $1"
  printf '%s\n' "$v"
}
version_is() {  # version_is ID: a status_check expression binding v to that version's row
  printf '(v := next((m for m in s["models"] if m["model"] == "%s"), None)) is not None' "$1"
}
version_blocks() {  # the block ids of a model version (from its card), one per line
  "$MM" admin card "$1" --json --kit kits/ops | "$PY" -c "import json, sys; print('\n'.join(b['block_id'] for b in json.load(sys.stdin)['blocks']))"
}
console_page() {  # console_page PATH TEXT: the admin console's page holds TEXT
  "$PY" -c "import sys, urllib.request; sys.exit(0 if sys.argv[2] in urllib.request.urlopen(sys.argv[1], timeout=10).read().decode() else 1)" \
    "http://127.0.0.1:$CONSOLE$1" "$2"
}

REG="127.0.0.1:$(free_port)"; LINK="127.0.0.1:$(free_port)"; METRICS="$(free_port)"; CONSOLE="$(free_port)"
CONF="$ROOT/coordinator/coordinator.toml"
echo "deploy/local in $ROOT (registry $REG, SuperLink $LINK, metrics 127.0.0.1:$METRICS)"

step "0. demo data: the ovarian cohort's studies as three hospitals' site data folders (a real site brings its own)"
"$PY" "$HERE/make_data.py" "$ROOT/data"

step "1. the consortium operator creates the CA (ca.key stays on this offline machine)"
"$MM" ca init --dir ca

step "2. coordinator credentials and configuration"
"$MM" coordinator init --out coordinator --ca ca --host 127.0.0.1 --listen "$REG" --superlink "$LINK" --metrics "127.0.0.1:$METRICS"

step "3. enrol two hospitals and hand over their kits (each hospital sets data and task in its site.toml); an operator's admin kit"
"$MM" ca enroll-admin ops --out kits/ops --coordinator "$REG" --dir ca
"$MM" ca enroll hosp-a --modality genes --out kits/hosp-a --coordinator "$REG" --dir ca
"$MM" ca enroll hosp-b --modality genes --out kits/hosp-b --coordinator "$REG" --dir ca
for site in hosp-a hosp-b; do  # what each hospital's engineer does
  sed -i -e "s|^data = .*|data = \"$ROOT/data/$site\"|" -e 's|^task = ""|task = "ovarian"|' "kits/$site/site.toml"
done

step "4. start the coordinator and its Flower SuperLink"
start coordinator "$MM" --log-format json coordinator serve --config "$CONF"
wait_for 120 "the coordinator's /healthz" healthy
start superlink "$MM" coordinator superlink --config "$CONF"

step "5. define the task"
"$MM" admin task create data/task.toml --kit kits/ops

step "6. the hospitals start their site daemons: each trains its block, pushes it, then answers evaluation jobs"
start site-hosp-a "$MM" site run --config kits/hosp-a/site.toml
start site-hosp-b "$MM" site run --config kits/hosp-b/site.toml
wait_for 600 "the blocks of hosp-a and hosp-b" status_check "$(site_blocks hosp-a 1) and $(site_blocks hosp-b 1)"
grep -q '"event": "pushed"' logs/site-hosp-a.log || die "hosp-a's daemon logged no pushed event"
"$MM" site status --config kits/hosp-a/site.toml

step "7. merge (no training; the hospitals score the candidates) and a hospital pulls the recommended version"
# (a merge may also publish a version for a hospital whose own evidence favours another recipe:
# the consortium's version is the one the merge names)
"$MM" admin merge --task ovarian --recipe auto --kit kits/ops | tee logs/merge-1.out
V1="$(created_version logs/merge-1.out)"
"$MM" admin card "$V1" --kit kits/ops
"$MM" site pull --recommended --config kits/hosp-a/site.toml --out pulled/first
status_check "$(version_is "$V1") and v['blocks'] == 2" || die "$V1 is not the merge of 2 blocks"
status_check "$(version_is "$V1") and v['val_metric'] is not None and s['tasks'][0]['recommended'] == '$V1'" \
  || die "$V1 was not measured by the hospitals, or is not the recommended version"
grep -q '"event": "evaluation-scored"' logs/site-hosp-a.log || die "hosp-a's daemon scored no candidate"

step "8. later, a hospital with a new modality (clinical, paired with genes) joins; nobody retrains"
"$MM" ca enroll hosp-c --modality genes --modality clinical --paired --out kits/hosp-c --coordinator "$REG" --superlink "$LINK" --dir ca
sed -i -e "s|^data = .*|data = \"$ROOT/data/hosp-c\"|" -e 's|^task = ""|task = "ovarian"|' kits/hosp-c/site.toml
sed -i "s|^port = 9094|port = $(free_port)|" kits/hosp-c/site.toml  # one machine: a SuperNode port that is free here
wait_for 120 "the SuperLink to register hosp-c's node key" \
  "$MM" coordinator flower-register hosp-c --key kits/hosp-c/flower-node.pub --config "$CONF"
start site-hosp-c "$MM" site run --config kits/hosp-c/site.toml
wait_for 600 "the blocks of hosp-c" status_check "$(site_blocks hosp-c 2)"
"$MM" admin merge --task ovarian --recipe auto --kit kits/ops | tee logs/merge-2.out
V2="$(created_version logs/merge-2.out)"
V2_BLOCKS="$(version_blocks "$V2")"
for id in $(version_blocks "$V1"); do
  grep -qx "$id" <<<"$V2_BLOCKS" || die "block $id of $V1 is not in $V2 (was it retrained?)"
done
status_check "$(version_is "$V2") and v['blocks'] == 4" || die "$V2 is not the merge of 4 blocks"

step "9. LegoFuse rounds on the site with paired data; a round is kept only if it beats the merge on the hospitals' validation"
wait_for 120 "hosp-c's SuperNode" grep -q '"event": "supernode-started"' logs/site-hosp-c.log
"$MM" admin fuse --model "$V2" --kit kits/ops --rounds 2 --epochs 1 --expect-sites 1 2>logs/fuse.err | tee logs/fuse.out
grep -qE "created model version ovarian-v[0-9]+|no fused version stored" logs/fuse.out || die "the fuse run neither stored nor declined a version"
grep -q "round 1: 1 of 1 sites answered (hosp-c)" logs/fuse.err || die "admin fuse did not stream the rounds"
"$MM" admin fuse-runs --task ovarian --kit kits/ops
"$MM" admin evaluations --task ovarian --kit kits/ops
"$MM" admin evaluate --model "$V1" --model "$V2" --kit kits/ops
"$MM" site pull --recommended --config kits/hosp-c/site.toml --out pulled/recommended

step "10. hosp-b leaves: withdraw its blocks from future merges and revoke its certificate"
"$MM" admin withdraw hosp-b --reason "left the consortium" --kit kits/ops
"$MM" ca revoke hosp-b --dir ca
cp ca/crl.pem coordinator/crl.pem
"$MM" admin merge --task ovarian --kit kits/ops
status_check 's["models"][0]["recipe"] == "merge" and "hosp-b" not in s["models"][0]["sites"]' || die "the new merge still has hosp-b"
LATEST="$(newest)"
if "$MM" site pull "$LATEST" --config kits/hosp-b/site.toml --out pulled/refused 2>logs/hosp-b-refused.log; then
  die "hosp-b's revoked certificate was accepted"
fi
grep -q "was revoked" logs/hosp-b-refused.log || die "hosp-b was refused, but not for its revoked certificate"

step "11. rotate hosp-a's TLS certificate (new key, same identity; the old one is revoked)"
cp -r kits/hosp-a kits/hosp-a-old
"$MM" ca renew --kit kits/hosp-a --dir ca
cp ca/crl.pem coordinator/crl.pem
"$MM" site pull "$LATEST" --config kits/hosp-a/site.toml --out pulled/latest
if "$MM" site pull "$LATEST" --config kits/hosp-a-old/site.toml --out pulled/old-cert 2>logs/hosp-a-old-refused.log; then
  die "hosp-a's rotated-out certificate was accepted"
fi
grep -q "was revoked" logs/hosp-a-old-refused.log || die "hosp-a's old certificate was refused, but not as revoked"

step "12. back up the coordinator's store while it serves; lose it; restore it"
"$MM" coordinator backup --config "$CONF" --out backups/latest
"$MM" admin status --json --kit kits/ops >status-before.json
stop site-hosp-a; stop site-hosp-b; stop site-hosp-c; stop superlink; stop coordinator
mv coordinator/store coordinator/store.lost
"$MM" coordinator restore --config "$CONF" --from backups/latest
start coordinator "$MM" --log-format json coordinator serve --config "$CONF"
wait_for 120 "the restored coordinator's /healthz" healthy
"$MM" admin status --json --kit kits/ops >status-after.json
"$PY" -c "import json, sys; a, b = (json.load(open(f)) for f in sys.argv[1:]); seen = lambda s: [{k: v for k, v in x.items() if k != 'last_seen'} for x in s['sites']]; sys.exit(a['models'] != b['models'] or seen(a) != seen(b))" \
  status-before.json status-after.json || die "the restored store differs from the one backed up (last calls of sites aside)"
"$MM" site pull "$V2" --config kits/hosp-a/site.toml --out "pulled/$V2"

step "13. upgrade: back up, stop, install the new version, start (the store is checked on start)"
"$MM" coordinator backup --config "$CONF" --out backups/before-upgrade
stop coordinator
${UPGRADE:-echo "(no UPGRADE command given: the installed version stays)"}
start coordinator "$MM" --log-format json coordinator serve --config "$CONF"
start superlink "$MM" coordinator superlink --config "$CONF"
wait_for 120 "the upgraded coordinator's /healthz" healthy
"$MM" version

step "14. observe: status from anywhere, the admin console, Prometheus metrics, structured logs"
"$MM" admin status --kit kits/ops
"$MM" admin sites --kit kits/ops
"$MM" admin blocks --task ovarian --withdrawn --kit kits/ops
"$MM" admin versions --task ovarian --kit kits/ops
"$MM" coordinator status --config "$CONF"
start console "$MM" admin console --kit kits/ops --listen "127.0.0.1:$CONSOLE"
wait_for 60 "the admin console" console_page /healthz ok
console_page / hosp-b || die "the console's overview does not show hosp-b"
console_page "/versions/$LATEST" "# Model $LATEST" || die "the console does not show the card of $LATEST"
"$PY" -c "import urllib.request; print(urllib.request.urlopen('http://127.0.0.1:$METRICS/metrics', timeout=5).read().decode())" >metrics.txt
grep -E '^mmlego_(model_versions|blocks|sites|fuse_rounds_total|evaluations|store_bytes)' metrics.txt
grep -qE '^mmlego_model_versions\{recipe="merge"\} [1-9]' metrics.txt || die "the metrics do not show the merge versions"
grep -qE '^mmlego_evaluations\{state="closed"\} [1-9]' metrics.txt || die "the metrics do not show the evaluation jobs"
grep -q '"event": "block-accepted"' logs/coordinator.log || die "the coordinator logged no block-accepted event"
grep -q '"event": "evaluation-report"' logs/coordinator.log || die "the coordinator logged no evaluation report"

printf '\ndeploy/local: every step passed (%s)\n' "$ROOT"
