"""Checkers for the deploy/ files: each takes parsed content and returns the problems it finds
(an empty list when the file is right), so that tests can also feed them broken copies."""

from __future__ import annotations

import io
import json
import re
import shlex
import sys
import tomllib
from collections.abc import Iterable, Mapping, Sequence
from functools import cache
from pathlib import Path, PurePosixPath
from typing import Any

import click

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
PORTS = {"registry": 50051, "superlink": 9093, "metrics": 9464}
STATE = PurePosixPath("/var/lib/mmlego")
SECRET_NAME = re.compile(r"(?i)secret|passw|token|private|credential|api_?key|\bkey$|_key\b")
SECRET_TEXT = re.compile(r"PRIVATE KEY|BEGIN CERTIFICATE|(?i:password\s*[:=])")
SECRET_PATH = re.compile(
    r"(?i)(\.key|\.pem|\.p12|\.pfx|\.crt)$|(^|/)(ca|kits?|kit-[^/]*|consortium|store|blobs|\.env)(/|$)"
    r"|signing|flower-node"
)
Problems = list[str]


# ---- the mmlego command line ---------------------------------------------------------------------
@cache
def _cli() -> click.Group:
    import typer

    from common.cli import add_plugins, app

    if not any(g.name == "coordinator" for g in app.registered_groups):
        add_plugins()
    group = typer.main.get_command(app)
    assert isinstance(group, click.Group)
    return group


def cli_problem(args: Sequence[str], mention: bool = False) -> str | None:
    """None when ``mmlego ARGS`` names a real command and its options parse; else why not. A
    ``mention`` (a command named in prose) may leave out required arguments when it gives none."""
    cmd: click.Command = _cli()
    ctx = click.Context(cmd, info_name="mmlego")
    rest = list(args)
    while isinstance(cmd, click.Group):
        if not rest:
            return f"mmlego {' '.join(args)}: no command"
        sub = cmd.get_command(ctx, rest[0])
        if sub is None:
            return (
                f"mmlego {' '.join(args)}: no command {rest[0]!r} "
                f"(known: {', '.join(cmd.list_commands(ctx))})"
            )
        ctx = click.Context(sub, info_name=rest.pop(0), parent=ctx)
        cmd = sub
    if mention and not rest:
        return None
    try:
        cmd.make_context(ctx.info_name, rest, parent=ctx.parent)
    except click.ClickException as exc:
        return f"mmlego {' '.join(args)}: {exc.format_message()}"
    return None


def option(args: Sequence[str], name: str) -> str | None:
    return args[args.index(name) + 1] if name in args and args.index(name) + 1 < len(args) else None


# ---- configuration files -------------------------------------------------------------------------
def config_problems(text: str, kind: str, tmp: Path) -> Problems:
    """Validate a coordinator.toml (kind "coordinator") or site.toml ("site") with the real
    loaders."""
    from coordinator.config import load_config
    from site_client.config import load_site_config

    load = load_config if kind == "coordinator" else load_site_config
    path = tmp / f"{kind}.toml"
    try:
        path.write_text(text)
        load(path)
    except Exception as exc:
        return [f"{kind}.toml does not load: {exc}"]
    return []


def host_port(address: str) -> tuple[str, int]:
    host, _, port = address.rpartition(":")
    return host, int(port)


# ---- Dockerfile and .dockerignore ----------------------------------------------------------------
def _instructions(text: str) -> list[tuple[str, str]]:
    from dockerfile_parse import DockerfileParser

    parser = DockerfileParser(fileobj=io.BytesIO(text.encode()))
    return [
        (s["instruction"], s["value"]) for s in parser.structure if s["instruction"] != "COMMENT"
    ]


def _arg_defaults(pairs: Iterable[tuple[str, str]]) -> dict[str, str]:
    out = {}
    for ins, value in pairs:
        if ins == "ARG" and "=" in value:
            name, _, default = value.partition("=")
            out[name.strip()] = shlex.split(default)[0] if default.strip() else ""
    return out


def copy_sources(value: str) -> list[str]:
    """Sources of a COPY/ADD from the build context (none for COPY --from=...)."""
    if "--from=" in value:
        return []
    words = (
        json.loads(value)
        if value.lstrip().startswith("[")
        else [w for w in shlex.split(value) if not w.startswith("--")]
    )
    return [str(w) for w in words[:-1]]


def dockerfile_problems(text: str) -> Problems:
    """A final stage that is not root, only package files copied in, no secrets, mmlego as entry
    point, CPU defaults for the build arguments and the three ports exposed."""
    problems: Problems = []
    instructions = _instructions(text)
    starts = [i for i, (ins, _) in enumerate(instructions) if ins == "FROM"]
    if len(starts) < 2:
        problems.append("not a multi-stage build")
    final = instructions[starts[-1] :] if starts else instructions
    users = [v.split(":")[0].strip() for ins, v in final if ins == "USER"]
    if not users or users[-1] in ("root", "0", ""):
        problems.append(f"the final stage runs as {users[-1] if users else 'root (no USER)'}")
    for ins, value in instructions:
        if ins == "ADD":
            problems.append(f"ADD {value}: use COPY (ADD fetches URLs and unpacks archives)")
        if ins in ("COPY", "ADD"):
            for src in copy_sources(value):
                if SECRET_PATH.search(src.rstrip("/")) or src.strip("./") in ("", "*"):
                    problems.append(
                        f"{ins} {value}: copies {src!r}, which may hold keys, kits or state"
                    )
                elif src.rstrip("/") not in (
                    "pyproject.toml",
                    "README.md",
                    "LICENSE",
                    "common",
                    "coordinator",
                    "site_client",
                    "admin",
                    "simulate",
                ):
                    problems.append(f"{ins} {value}: {src!r} is not part of the package")
        if ins in ("ENV", "ARG", "LABEL"):
            for name, val in re.findall(r"([A-Za-z_][\w.-]*)=(\"[^\"]*\"|\S*)", value) or [
                (value, "")
            ]:
                if SECRET_NAME.search(name) or SECRET_TEXT.search(val):
                    problems.append(f"{ins} {name}: looks like a secret baked into the image")
        if SECRET_TEXT.search(value):
            problems.append(f"{ins}: holds key or password material")
    entry = [v for ins, v in final if ins == "ENTRYPOINT"]
    if entry != ['["mmlego"]']:
        problems.append(f'ENTRYPOINT is {entry[-1] if entry else "missing"}, not ["mmlego"]')
    defaults = _arg_defaults(instructions)
    expected = {
        "BASE_IMAGE": "python:3.11-slim",
        "VARIANT": "cpu",
        "TORCH_INDEX_URL": "https://download.pytorch.org/whl/cpu",
    }
    for name, want in expected.items():
        if defaults.get(name) != want:
            problems.append(
                f"ARG {name} defaults to {defaults.get(name)!r}, not {want!r} (the CPU build)"
            )
    if not re.fullmatch(r"torch==[\d.]+", defaults.get("TORCH_SPEC", "")):
        problems.append(
            f"ARG TORCH_SPEC defaults to {defaults.get('TORCH_SPEC')!r}, not a pinned torch"
        )
    exposed = {int(p.split("/")[0]) for ins, v in final if ins == "EXPOSE" for p in v.split()}
    if exposed != set(PORTS.values()):
        problems.append(f"EXPOSE {sorted(exposed)}, not {sorted(PORTS.values())}")
    if not any(ins == "VOLUME" and str(STATE) in v for ins, v in final):
        problems.append(f"no VOLUME {STATE}")
    if not any(ins == "WORKDIR" for ins, _ in final):
        problems.append("no WORKDIR in the final stage")
    return problems


def _ignore_regex(pattern: str) -> re.Pattern[str]:
    """A .dockerignore pattern (Go filepath.Match plus ``**``) as a regular expression."""
    out, i = "", 0
    pattern = pattern.strip("/")
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out, i = out + "(?:.*/)?", i + 3
        elif pattern.startswith("**", i):
            out, i = out + ".*", i + 2
        elif pattern[i] == "*":
            out, i = out + "[^/]*", i + 1
        elif pattern[i] == "?":
            out, i = out + "[^/]", i + 1
        elif pattern[i] == "[":
            end = pattern.index("]", i)
            out, i = out + pattern[i : end + 1].replace("[!", "[^"), end + 1
        else:
            out, i = out + re.escape(pattern[i]), i + 1
    return re.compile(out)


def ignore_patterns(text: str) -> list[str]:
    return [
        line.strip()
        for line in text.splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]


def ignored(patterns: Sequence[str], path: str) -> bool:
    """Whether the build context leaves ``path`` out: the last pattern matching the path or one of
    its parent folders wins (as Docker's patternmatcher does)."""
    parts = PurePosixPath(path).parts
    candidates = ["/".join(parts[:n]) for n in range(1, len(parts) + 1)]
    out = False
    for pattern in patterns:
        exclude = not pattern.startswith("!")
        regex = _ignore_regex(pattern.lstrip("!"))
        if any(regex.fullmatch(c) for c in candidates):
            out = exclude
    return out


def dockerignore_problems(text: str, needed: Iterable[str], private: Iterable[str]) -> Problems:
    patterns = ignore_patterns(text)
    problems = [
        f"{p} is left out of the build context, but the image needs it"
        for p in needed
        if ignored(patterns, p)
    ]
    return problems + [
        f"{p} would be sent to the builder" for p in private if not ignored(patterns, p)
    ]


# ---- compose -------------------------------------------------------------------------------------
def interpolate(text: str) -> str:
    """Compose's ``${NAME:-default}`` / ``${NAME}`` with an empty environment."""
    return re.sub(r"\$\{\w+(?::?-([^}]*))?\}", lambda m: m.group(1) or "", text)


def published(ports: Iterable[Any]) -> dict[int, str]:
    """Container port -> the host address it is published on ("0.0.0.0" when none is given)."""
    out = {}
    for p in ports:
        if isinstance(p, Mapping):
            out[int(p["target"])] = str(p.get("host_ip") or "0.0.0.0")
            continue
        rest, _, target = interpolate(str(p)).split("/")[0].rpartition(":")
        host = rest.rpartition(":")[0] if ":" in rest else ""
        out[int(target)] = host or "0.0.0.0"
    return out


def compose_problems(
    doc: Mapping[str, Any], coordinator: Mapping[str, Any], site: Mapping[str, Any]
) -> Problems:
    """Services, hardening, mounts, commands, ports, health checks and start order of compose.yaml,
    against the coordinator.toml and site.toml it ships."""
    problems: Problems = []
    services: Mapping[str, Any] = doc.get("services", {})
    if set(services) != {"coordinator", "superlink", "site-a", "site-b"}:
        problems.append(f"services are {sorted(services)}")
    named = set(doc.get("volumes") or {})
    if "PRIVATE KEY" in repr(doc) or "secrets" in doc:
        problems.append("key material or secrets defined in the compose file")
    flower_host, flower_port = host_port(coordinator["flower"]["superlink"])
    for name, svc in services.items():
        args = [str(a) for a in svc.get("command", [])]
        if (why := cli_problem(args)) is not None:
            problems.append(f"{name}: {why}")
        if svc.get("init") is not True:
            problems.append(f"{name}: no init (Flower's children would not be reaped)")
        if svc.get("read_only") is not True:
            problems.append(f"{name}: root file system is writable")
        if "no-new-privileges:true" not in svc.get("security_opt", []):
            problems.append(f"{name}: no no-new-privileges")
        if svc.get("cap_drop") != ["ALL"]:
            problems.append(f"{name}: capabilities not all dropped")
        if str(svc.get("user", "")).split(":")[0] in ("", "0", "root"):
            problems.append(f"{name}: runs as root")
        if not any(str(t).split(":")[0] == "/tmp" for t in svc.get("tmpfs", [])):
            problems.append(f"{name}: no tmpfs /tmp on a read-only root")
        env = svc.get("environment", {})
        if env.get("FLWR_TELEMETRY_ENABLED") != "0" or env.get("FLWR_DISABLE_UPDATE_CHECK") != "1":
            problems.append(f"{name}: Flower telemetry / update check not off")
        if any(SECRET_NAME.search(k) or SECRET_TEXT.search(str(v)) for k, v in env.items()):
            problems.append(f"{name}: a secret in its environment")
        mounts: dict[str, Mapping[str, Any]] = {}
        for m in svc.get("volumes", []):
            if not isinstance(m, Mapping):
                problems.append(
                    f"{name}: short volume syntax {m!r} (use the long form with read_only)"
                )
                continue
            mounts[m["target"]] = m
            src = str(m.get("source", ""))
            if m.get("type") == "bind":
                if not src.startswith(("./", "../")):
                    problems.append(
                        f"{name}: bind source {src!r} is not relative to the compose file"
                    )
                if not m.get("read_only"):
                    problems.append(f"{name}: {src} is mounted writable")
                if re.search(r"(^|/)ca(/|$)", src):
                    problems.append(f"{name}: mounts the CA folder {src}")
            elif m.get("type") == "volume" and src not in named:
                problems.append(f"{name}: volume {src!r} is not declared")
        config = option(args, "--config")
        if config is None or not any(
            PurePosixPath(config).is_relative_to(t) and mounts[t].get("read_only") for t in mounts
        ):
            problems.append(f"{name}: --config {config} is not in a read-only mount")
        if str(STATE) not in mounts or mounts[str(STATE)].get("type") != "volume":
            problems.append(f"{name}: no state volume at {STATE}")
        ports = published(svc.get("ports", []))
        depends = svc.get("depends_on", {})
        if name == "coordinator":
            if set(ports) != {
                host_port(coordinator["server"]["listen"])[1],
                host_port(coordinator["metrics"]["listen"])[1],
            }:
                problems.append(
                    f"coordinator publishes {sorted(ports)}, coordinator.toml listens elsewhere"
                )
            if ports.get(PORTS["metrics"]) != "127.0.0.1":
                problems.append("coordinator: metrics published beyond the host's loopback")
            test = " ".join(svc.get("healthcheck", {}).get("test", []))
            metrics = host_port(coordinator["metrics"]["listen"])[1]
            if f"http://127.0.0.1:{metrics}/healthz" not in test or not test.startswith(
                "CMD python"
            ):
                problems.append(
                    f"coordinator: health check {test!r} does not GET /healthz on {metrics} "
                    "with python"
                )
        if name == "superlink":
            if set(ports) != {flower_port} or flower_host != name:
                problems.append(
                    f"superlink: publishes {sorted(ports)} as {name!r}, "
                    f"coordinator.toml has {flower_host}:{flower_port}"
                )
            if "healthcheck" not in svc:
                problems.append("superlink: no health check")
        if name in ("coordinator", "superlink"):
            store = PurePosixPath(coordinator["store"]["path"])
            home = PurePosixPath(coordinator["flower"]["home"])
            if not (store.is_relative_to(STATE) and home.is_relative_to(STATE)):
                problems.append(
                    f"{name}: store {store} or Flower home {home} is outside the state volume"
                )
        if name.startswith("site-"):
            if ports:
                problems.append(f"{name}: a site publishes ports {sorted(ports)}")
            want = {"coordinator"} | ({"superlink"} if name == "site-b" else set())
            healthy = {
                k
                for k, v in depends.items()
                if isinstance(v, Mapping) and v.get("condition") == "service_healthy"
            }
            if not want <= healthy:
                problems.append(
                    f"{name}: does not wait for a healthy {', '.join(sorted(want - healthy))}"
                )
            if "/data" not in mounts or not mounts["/data"].get("read_only"):
                problems.append(f"{name}: no read-only data folder at /data")
    if {"coordinator", "superlink"} <= set(services):
        a, b = (
            sorted(
                (m["source"], m["target"])
                for m in services[s].get("volumes", [])
                if isinstance(m, Mapping)
            )
            for s in ("coordinator", "superlink")
        )
        if a != b:
            problems.append(
                "coordinator and superlink do not share the same configuration and state mounts"
            )
    reg_host, reg_port = host_port(site["coordinator"])
    if (reg_host, reg_port) != ("coordinator", host_port(coordinator["server"]["listen"])[1]):
        problems.append(f"site.toml dials the registry at {site['coordinator']}")
    if site["flower"]["superlink"] != coordinator["flower"]["superlink"]:
        problems.append(f"site.toml dials the SuperLink at {site['flower']['superlink']}")
    if site["data"] != "/data" or not all(
        PurePosixPath(site[k]).is_relative_to(STATE) for k in ("blocks", "state")
    ):
        problems.append("site.toml: data is not /data or blocks/state are outside the state volume")
    return problems


# ---- systemd -------------------------------------------------------------------------------------
Unit = dict[str, dict[str, list[str]]]


def parse_unit(text: str) -> Unit:
    """A unit file as systemd reads it: sections of keys whose repeated assignments add up (an empty
    one resets the list), backslash continuations, # and ; comments."""
    unit: Unit = {}
    section: dict[str, list[str]] | None = None
    lines = iter(text.splitlines())
    for raw in lines:
        line = raw.strip()
        while line.endswith("\\"):
            line = line[:-1] + " " + next(lines, "").strip()
        if not line or line[0] in "#;":
            continue
        if line.startswith("[") and line.endswith("]"):
            section = unit.setdefault(line[1:-1], {})
            continue
        if section is None or "=" not in line:
            raise ValueError(f"not a unit file line: {raw!r}")
        key, _, value = line.partition("=")
        values = section.setdefault(key.strip(), [])
        if value.strip():
            values.append(value.strip())
        else:
            values.clear()
    return unit


HARDENING = {
    "NoNewPrivileges": "yes",
    "ProtectSystem": "strict",
    "ProtectHome": "yes",
    "PrivateTmp": "yes",
    "PrivateDevices": "yes",
    "SystemCallArchitectures": "native",
    "LockPersonality": "yes",
    "RestrictSUIDSGID": "yes",
    "ProtectKernelModules": "yes",
    "ProtectKernelTunables": "yes",
    "ProtectControlGroups": "yes",
    "RestrictNamespaces": "yes",
    # off on purpose: torch's oneDNN writes its kernels into executable memory at run time
    "MemoryDenyWriteExecute": "no",
    "KillMode": "control-group",
    "Restart": "on-failure",
    "User": "mmlego",
    "Group": "mmlego",
    "StateDirectory": "mmlego",
    "ConfigurationDirectory": "mmlego",
    "ReadWritePaths": str(STATE),
}


def unit_problems(name: str, unit: Unit) -> Problems:
    problems: Problems = []
    if set(unit) != {"Unit", "Service", "Install"}:
        problems.append(f"{name}: sections {sorted(unit)}, not Unit, Service, Install")
    svc = unit.get("Service", {})

    def last(key: str, section: Mapping[str, list[str]] = svc) -> str | None:
        return section[key][-1] if section.get(key) else None

    execs = svc.get("ExecStart", [])
    if len(execs) != 1:
        problems.append(f"{name}: {len(execs)} ExecStart lines")
    else:
        argv = shlex.split(execs[0])
        if argv[0] != "/opt/mmlego/bin/mmlego":
            problems.append(f"{name}: ExecStart runs {argv[0]}, not the venv's mmlego")
        elif (why := cli_problem(argv[1:])) is not None:
            problems.append(f"{name}: {why}")
        elif not str(option(argv, "--config") or "").startswith("/etc/mmlego/"):
            problems.append(f"{name}: --config is not under /etc/mmlego")
    for key, want in HARDENING.items():
        if last(key) != want:
            problems.append(f"{name}: {key}={last(key)}, expected {want}")
    if svc.get("CapabilityBoundingSet", None) != []:
        problems.append(f"{name}: CapabilityBoundingSet is not empty")
    families = set(" ".join(svc.get("RestrictAddressFamilies", [])).split())
    if families != {"AF_INET", "AF_INET6", "AF_UNIX"}:
        problems.append(f"{name}: RestrictAddressFamilies {sorted(families)}")
    if not last("TimeoutStopSec"):
        problems.append(f"{name}: no TimeoutStopSec")
    env = " ".join(svc.get("Environment", [])).split()
    if not {"FLWR_TELEMETRY_ENABLED=0", "FLWR_DISABLE_UPDATE_CHECK=1"} <= set(env):
        problems.append(f"{name}: Flower telemetry / update check not off")
    after = " ".join(unit.get("Unit", {}).get("After", [])).split()
    if "network-online.target" not in after or "network-online.target" not in " ".join(
        unit.get("Unit", {}).get("Wants", [])
    ):
        problems.append(f"{name}: not ordered after network-online.target")
    if last("WantedBy", unit.get("Install", {})) != "multi-user.target":
        problems.append(f"{name}: not WantedBy=multi-user.target")
    return problems


def real_executable() -> str:
    """The mmlego script of this environment (what a test puts in ExecStart for systemd-analyze)."""
    return str(Path(sys.executable).parent / "mmlego")


# ---- Kubernetes ----------------------------------------------------------------------------------
def _container_ports(containers: Iterable[Mapping[str, Any]]) -> dict[Any, int]:
    """Port name and number -> number, over every container of a pod."""
    out: dict[Any, int] = {}
    for c in containers:
        for p in c.get("ports", []):
            out[p["containerPort"]] = p["containerPort"]
            if "name" in p:
                out[p["name"]] = p["containerPort"]
    return out


def k8s_problems(docs: Sequence[Mapping[str, Any]], tmp: Path) -> Problems:
    """The coordinator's manifests: one StatefulSet replica, restricted security contexts, real
    commands, probes on /healthz, a referenced (not defined) Secret, Services and a NetworkPolicy
    that match the containers' ports, a configuration the real loader accepts."""
    problems: Problems = []
    by_kind: dict[str, list[Mapping[str, Any]]] = {}
    for d in docs:
        if not (d.get("apiVersion") and d.get("kind") and d.get("metadata", {}).get("name")):
            problems.append(f"a document without apiVersion, kind or metadata.name: {str(d)[:80]}")
            continue
        by_kind.setdefault(d["kind"], []).append(d)
        if d["kind"] != "Namespace" and d["metadata"].get("namespace") != "mmlego":
            problems.append(f"{d['kind']}/{d['metadata']['name']}: not in namespace mmlego")
    if "Secret" in by_kind:
        problems.append(
            "a Secret is defined in the manifest; "
            "it must be created from the files and only referenced"
        )
    if "PRIVATE KEY" in repr(docs):
        problems.append("key material in the manifest")
    sets = by_kind.get("StatefulSet", [])
    if len(sets) != 1:
        return [*problems, f"{len(sets)} StatefulSets, expected 1"]
    sts = sets[0]
    spec, pod = sts["spec"], sts["spec"]["template"]["spec"]
    labels = sts["spec"]["template"]["metadata"].get("labels", {})
    if spec.get("replicas") != 1:
        problems.append(
            f"StatefulSet replicas {spec.get('replicas')}: "
            "the registry's SQLite store allows exactly 1"
        )
    ctx = pod.get("securityContext", {})
    for key, want in {"runAsNonRoot": True, "runAsUser": 10001, "fsGroup": 10001}.items():
        if ctx.get(key) != want:
            problems.append(f"pod securityContext.{key} = {ctx.get(key)}, expected {want}")
    if ctx.get("seccompProfile", {}).get("type") != "RuntimeDefault":
        problems.append("pod seccompProfile is not RuntimeDefault")
    if pod.get("automountServiceAccountToken") is not False:
        problems.append("the pod mounts a service account token it does not need")
    containers = {c["name"]: c for c in pod.get("containers", [])}
    ports = _container_ports(containers.values())
    volumes = {v["name"]: v for v in pod.get("volumes", [])}
    secrets = [v["secret"]["secretName"] for v in volumes.values() if "secret" in v]
    if not secrets:
        problems.append("no Secret volume for the TLS files")
    config_text = ""
    for cm in by_kind.get("ConfigMap", []):
        config_text = cm.get("data", {}).get("coordinator.toml", config_text)
    if not config_text:
        return [*problems, "no ConfigMap with coordinator.toml"]
    if bad := config_problems(config_text, "coordinator", tmp):
        return [*problems, *(f"ConfigMap: {p}" for p in bad)]
    cfg = tomllib.loads(config_text)
    flower_host, flower_port = host_port(cfg["flower"]["superlink"])
    if flower_host != f"{sts['metadata']['name']}-0":
        problems.append(f"[flower] superlink host {flower_host!r} is not the pod's own host name")
    expected_ports = {
        "registry": host_port(cfg["server"]["listen"])[1],
        "superlink": flower_port,
        "metrics": host_port(cfg["metrics"]["listen"])[1],
    }
    for pname, number in expected_ports.items():
        if ports.get(pname) != number:
            problems.append(
                f"container port {pname} is {ports.get(pname)}, coordinator.toml says {number}"
            )
    for name, c in containers.items():
        args = [str(a) for a in c.get("args", [])]
        if c.get("command") not in (None, ["mmlego"]):
            problems.append(
                f"{name}: command {c.get('command')} replaces the image's mmlego entry point"
            )
        if (why := cli_problem(args)) is not None:
            problems.append(f"{name}: {why}")
        sc = c.get("securityContext", {})
        if (
            sc.get("allowPrivilegeEscalation") is not False
            or sc.get("readOnlyRootFilesystem") is not True
        ):
            problems.append(f"{name}: privilege escalation allowed or root file system writable")
        if sc.get("capabilities", {}).get("drop") != ["ALL"] or sc.get("runAsNonRoot") is not True:
            problems.append(f"{name}: capabilities not all dropped or may run as root")
        if sc.get("seccompProfile", {}).get("type", "RuntimeDefault") != "RuntimeDefault":
            problems.append(f"{name}: seccomp profile is not RuntimeDefault")
        res = c.get("resources", {})
        if not (res.get("requests", {}).get("memory") and res.get("limits", {}).get("memory")):
            problems.append(f"{name}: no memory request and limit")
        env = {e["name"]: e.get("value") for e in c.get("env", [])}
        if env.get("FLWR_TELEMETRY_ENABLED") != "0" or env.get("FLWR_DISABLE_UPDATE_CHECK") != "1":
            problems.append(f"{name}: Flower telemetry / update check not off")
        mounts = {m["mountPath"]: m for m in c.get("volumeMounts", [])}
        if mounts.get(str(STATE), {}).get("name") != "state":
            problems.append(f"{name}: the state volume is not at {STATE}")
        config = option(args, "--config") or ""
        if not any(
            PurePosixPath(config).is_relative_to(p) and m.get("readOnly") for p, m in mounts.items()
        ):
            problems.append(f"{name}: --config {config} is not in a read-only mount")
        tls = [p for p, m in mounts.items() if volumes.get(m["name"], {}).get("secret")]
        for key in ("cert", "key", "ca", "crl"):
            if not any(PurePosixPath(cfg["tls"][key]).is_relative_to(p) for p in tls):
                problems.append(
                    f"{name}: [tls] {key} = {cfg['tls'][key]} is not in the Secret's mount"
                )
        if "--config" in args and "serve" in args:
            for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
                get = c.get(probe, {}).get("httpGet", {})
                if (
                    get.get("path") != "/healthz"
                    or ports.get(get.get("port")) != expected_ports["metrics"]
                ):
                    problems.append(f"{name}: {probe} is not GET /healthz on the metrics port")
        elif not c.get("livenessProbe"):
            problems.append(f"{name}: no liveness probe")
    for store_key in (cfg["store"]["path"], cfg["flower"]["home"]):
        if not PurePosixPath(store_key).is_relative_to(STATE):
            problems.append(f"{store_key} is outside the state volume")
    services = {s["metadata"]["name"]: s for s in by_kind.get("Service", [])}
    governing = services.get(spec.get("serviceName"), {})
    if governing.get("spec", {}).get("clusterIP") != "None":
        problems.append(
            f"serviceName {spec.get('serviceName')!r} is not a headless Service of this file"
        )
    exposed: set[int] = set()
    for sname, svc in services.items():
        if any(svc["spec"].get("selector", {}).get(k) != v for k, v in labels.items()):
            problems.append(f"Service {sname}: its selector does not match the pod")
        for p in svc["spec"].get("ports", []):
            target = p.get("targetPort", p["port"])
            if ports.get(target) is None or ports[target] != p["port"]:
                problems.append(
                    f"Service {sname}: port {p['port']} -> {target}, "
                    "not a container port of that number"
                )
            exposed.add(p["port"])
        note = svc["metadata"].get("annotations", {})
        if PORTS["metrics"] in {p["port"] for p in svc["spec"].get("ports", [])}:
            if note.get("prometheus.io/scrape") != "true" or note.get("prometheus.io/port") != str(
                expected_ports["metrics"]
            ):
                problems.append(
                    f"Service {sname}: exposes metrics without prometheus.io annotations"
                )
            if svc["spec"].get("type", "ClusterIP") != "ClusterIP":
                problems.append(f"Service {sname}: metrics exposed outside the cluster")
    if exposed != set(expected_ports.values()):
        problems.append(f"Services expose {sorted(exposed)}, not {sorted(expected_ports.values())}")
    for pol in by_kind.get("NetworkPolicy", []) or [{}]:
        pspec = pol.get("spec", {})
        if pspec.get("podSelector", {}).get("matchLabels") != labels:
            problems.append("no NetworkPolicy selects the coordinator's pod")
            continue
        rules = pspec.get("ingress", [])
        allowed = {p.get("port") for r in rules for p in r.get("ports", [])}
        if any(not r.get("ports") for r in rules) or allowed != set(expected_ports.values()):
            problems.append(
                f"NetworkPolicy lets in {sorted(map(str, allowed))}, not exactly the three ports"
            )
    return problems
