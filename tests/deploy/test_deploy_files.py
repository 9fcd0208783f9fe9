"""The deploy/ files, checked without running them (CI has no container engine, no systemd as init
and no cluster): parsed, linted or schema-validated where a tool exists, and held to the rules in
``checks``. Each rule is also shown to catch a deliberately broken copy."""

from __future__ import annotations

import json
import re
import shlex
import shutil
import subprocess
import sys
from collections.abc import Callable
from copy import deepcopy
from pathlib import Path
from typing import Any

import pytest
import yaml

from . import checks
from .checks import DEPLOY, ROOT, tomllib

DOCKERFILE = DEPLOY / "docker" / "Dockerfile"
COMPOSE = DEPLOY / "compose" / "compose.yaml"
COMPOSE_COORDINATOR = DEPLOY / "compose" / "coordinator.toml"
COMPOSE_SITE = DEPLOY / "compose" / "site.toml.example"
UNITS = sorted((DEPLOY / "systemd").glob("*.service"))
K8S = DEPLOY / "k8s" / "coordinator.yaml"
OWN = ("docker", "compose", "systemd", "k8s", "local")


def tool(name: str) -> str | None:
    """A command-line tool installed beside this interpreter (test extra) or on PATH."""
    beside = Path(sys.executable).parent / name
    return str(beside) if beside.exists() else shutil.which(name)


# ---- the mmlego commands the files run -----------------------------------------------------------
def test_cli_checker_accepts_real_commands_and_refuses_others() -> None:
    assert checks.cli_problem(["coordinator", "serve", "--config", "/x/coordinator.toml"]) is None
    assert checks.cli_problem(["site", "run", "--config", "/x/site.toml"]) is None
    assert "no command 'serv'" in str(checks.cli_problem(["coordinator", "serv"]))
    assert "--bogus" in str(checks.cli_problem(["site", "run", "--bogus"]))
    assert "Missing" in str(
        checks.cli_problem(["ca", "enroll", "hosp-a"])
    )  # --modality and --out are required
    assert checks.cli_problem(["coordinator"]) is not None


def documented_commands(text: str) -> list[tuple[list[str], bool]]:
    """The ``mmlego ...`` commands of comments, code blocks (full lines) and inline code (mentions),
    run directly or through ``docker compose exec SERVICE`` / ``kubectl exec ... --`` /
    ``sudo -u mmlego`` (continuations joined, <placeholders> filled in)."""
    joined = re.sub(r"\\\n[\s#]*", " ", text)
    spans = re.findall(r"(?<!`)`([^`\n]+)`(?!`)", joined)
    out = []
    for line, mention in [(line, False) for line in joined.splitlines()] + [
        (span, True) for span in spans
    ]:
        line = line.strip().lstrip("#$").strip()
        m = re.match(
            r"(?:sudo -u mmlego )?(?:docker compose exec \S+ |kubectl \S.*? -- )?"
            r"(?:/opt/mmlego/bin/)?mmlego\s+"
            r"((?:ca|coordinator|site|simulate|datasets|version)\b[^#`]*)",
            line,
        )
        if m:
            out.append((shlex.split(re.sub(r"<[^>]+>", "X", m.group(1))), mention))
    return out


@pytest.mark.parametrize("path", [COMPOSE, K8S, DEPLOY / "README.md"], ids=lambda p: p.name)
def test_documented_commands_are_real(path: Path) -> None:
    commands = documented_commands(path.read_text())
    assert len(commands) >= 3
    assert [why for args, mention in commands if (why := checks.cli_problem(args, mention))] == []


def test_documented_commands_checker_catches() -> None:
    text = (
        "# mmlego coordinator serv --config x\n"
        "#   docker compose exec coordinator mmlego site run \\\n"
        "#   --once --bogus\n"
        "see `mmlego ca revoke` and `mmlego ca enroll hosp-a`, or `mmlego site frobnicate`\n"
    )
    assert documented_commands(text) == [
        (["coordinator", "serv", "--config", "x"], False),
        (["site", "run", "--once", "--bogus"], False),
        (["ca", "revoke"], True),
        (["ca", "enroll", "hosp-a"], True),
        (["site", "frobnicate"], True),
    ]
    assert [
        bool(checks.cli_problem(args, mention)) for args, mention in documented_commands(text)
    ] == [True, True, False, True, True]


# ---- Dockerfile and build context ----------------------------------------------------------------
def test_dockerfile() -> None:
    assert checks.dockerfile_problems(DOCKERFILE.read_text()) == []


def _final(text: str, line: str) -> str:
    return text.replace('ENTRYPOINT ["mmlego"]', f'{line}\nENTRYPOINT ["mmlego"]')


BROKEN_DOCKERFILES: dict[str, tuple[Callable[[str], str], str]] = {
    "user-root": (lambda t: _final(t, "USER root"), "runs as root"),
    "no-user": (lambda t: t.replace("USER 10001:10001\n", ""), "runs as root"),
    "copy-key": (
        lambda t: _final(t, "COPY consortium/kits/hosp-a/tls.key /etc/mmlego/site/"),
        "may hold keys",
    ),
    "copy-context": (lambda t: t.replace("COPY common ./common", "COPY . ./"), "may hold keys"),
    "copy-other": (
        lambda t: t.replace("COPY common ./common", "COPY tests ./tests"),
        "not part of the package",
    ),
    "add-url": (lambda t: _final(t, "ADD https://example.org/model.tar.gz /opt/"), "use COPY"),
    "env-token": (lambda t: _final(t, "ENV REGISTRY_TOKEN=abc123"), "secret"),
    "arg-key": (lambda t: _final(t, "ARG SIGNING_KEY"), "secret"),
    "entrypoint": (
        lambda t: t.replace('ENTRYPOINT ["mmlego"]', 'ENTRYPOINT ["python"]'),
        "ENTRYPOINT",
    ),
    "cuda-default": (lambda t: t.replace("whl/cpu", "whl/cu126"), "TORCH_INDEX_URL"),
    "unpinned-torch": (
        lambda t: t.replace('TORCH_SPEC="torch==2.13.0"', 'TORCH_SPEC="torch"'),
        "TORCH_SPEC",
    ),
    "expose": (lambda t: t.replace("EXPOSE 50051 9093 9464", "EXPOSE 50051 9093"), "EXPOSE"),
}


@pytest.mark.parametrize("name", BROKEN_DOCKERFILES)
def test_dockerfile_checker_catches(name: str) -> None:
    mutate, expected = BROKEN_DOCKERFILES[name]
    text = DOCKERFILE.read_text()
    assert mutate(text) != text, "the mutation no longer applies to the Dockerfile"
    assert any(expected in p for p in checks.dockerfile_problems(mutate(text)))


def hadolint(text: str, tmp_path: Path) -> list[dict[str, Any]]:
    exe = tool("hadolint")
    assert exe is not None, (
        "hadolint is not installed (pip install '.[test]'): the Dockerfile would go unlinted"
    )
    path = tmp_path / "Dockerfile"
    path.write_text(text)
    done = subprocess.run(
        [exe, "--no-color", "--format", "json", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    findings: list[dict[str, Any]] = json.loads(done.stdout or "[]")
    return findings


def test_hadolint_finds_nothing(tmp_path: Path) -> None:
    assert hadolint(DOCKERFILE.read_text(), tmp_path) == []


def test_hadolint_catches_a_root_user(tmp_path: Path) -> None:
    assert "DL3002" in {
        f["code"] for f in hadolint(_final(DOCKERFILE.read_text(), "USER root"), tmp_path)
    }


def package_files() -> list[str]:
    files = ["pyproject.toml", "README.md", "LICENSE"]
    for pkg in ("common", "coordinator", "site_client", "admin", "simulate"):
        files += [
            p.relative_to(ROOT).as_posix()
            for p in (ROOT / pkg).rglob("*")
            if p.is_file() and "__pycache__" not in p.parts
        ]
    return files


PRIVATE = [
    ".venv/bin/python",
    "ca/ca.key",
    "ca/index.json",
    "consortium/kits/hosp-a/tls.key",
    "deploy/compose/consortium/coordinator/server.key",
    "deploy/compose/ca/crl.pem",
    "store/mmlego.db",
    "store/blobs/ab/abcdef",
    "data/hosp-a/data.toml",
    "runs/ovarian-4/report.md",
    "kit-a/signing.key",
    "common/pki/left-behind.key",
    "coordinator/server.pem",
    "site_client/.env",
    "tests/test_cli.py",
    "common/__pycache__/cli.cpython-311.pyc",
    "mmlego.egg-info/PKG-INFO",
    ".git/config",
]


def test_dockerignore_sends_the_package_and_nothing_private() -> None:
    text = (DEPLOY / "docker" / "Dockerfile.dockerignore").read_text()
    assert checks.ignore_patterns(text) == checks.ignore_patterns(
        (ROOT / ".dockerignore").read_text()
    )
    copied = [
        s
        for ins, v in checks._instructions(DOCKERFILE.read_text())
        if ins == "COPY"
        for s in checks.copy_sources(v)
    ]
    assert checks.dockerignore_problems(text, package_files() + copied, PRIVATE) == []


def test_dockerignore_checker_catches() -> None:
    text = (DEPLOY / "docker" / "Dockerfile.dockerignore").read_text()
    no_keys = "\n".join(p for p in checks.ignore_patterns(text) if p != "**/*.key")
    assert checks.dockerignore_problems(no_keys, [], PRIVATE) == [
        "common/pki/left-behind.key would be sent to the builder"
    ]
    everything = "\n".join(p for p in checks.ignore_patterns(text) if p != "*")
    assert "ca/index.json would be sent to the builder" in checks.dockerignore_problems(
        everything, [], PRIVATE
    )
    assert (
        checks.dockerignore_problems(text + "\ncommon/lego\n", ["common/lego/block.py"], []) != []
    )


# ---- compose -------------------------------------------------------------------------------------
def compose_inputs() -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    return (
        yaml.safe_load(COMPOSE.read_text()),
        tomllib.loads(COMPOSE_COORDINATOR.read_text()),
        tomllib.loads(COMPOSE_SITE.read_text()),
    )


def test_compose() -> None:
    assert checks.compose_problems(*compose_inputs()) == []


@pytest.mark.parametrize(
    ("path", "kind"),
    [(COMPOSE_COORDINATOR, "coordinator"), (COMPOSE_SITE, "site")],
    ids=["coordinator", "site"],
)
def test_compose_configs_load(path: Path, kind: str, tmp_path: Path) -> None:
    assert checks.config_problems(path.read_text(), kind, tmp_path) == []


def test_config_checker_catches(tmp_path: Path) -> None:
    text = COMPOSE_COORDINATOR.read_text()
    assert (
        checks.config_problems(text.replace("workers = 64", "workers = 0"), "coordinator", tmp_path)
        != []
    )
    assert (
        checks.config_problems(
            text.replace("[store]", "[store]\nsize = 3"), "coordinator", tmp_path
        )
        != []
    )
    assert (
        checks.config_problems(
            text.replace(
                'listen = "0.0.0.0:50051"', 'listen = "0.0.0.0:50051"\ninsecure = true', 1
            ).replace("insecure = false\n", ""),
            "coordinator",
            tmp_path,
        )
        != []
    )


def _svc(name: str, **changes: Any) -> Callable[[dict[str, Any]], None]:
    def mutate(doc: dict[str, Any]) -> None:
        doc["services"][name].update(changes)

    return mutate


def _bind_source(doc: dict[str, Any]) -> None:
    doc["services"]["site-a"]["volumes"][0]["source"] = "/srv/kits/hosp-a"


BROKEN_COMPOSE: dict[str, tuple[Callable[[dict[str, Any]], None], str]] = {
    "not-healthy": (
        _svc("site-a", depends_on={"coordinator": {"condition": "service_started"}}),
        "healthy coordinator",
    ),
    "no-superlink": (
        _svc("site-b", depends_on={"coordinator": {"condition": "service_healthy"}}),
        "healthy superlink",
    ),
    "command": (
        _svc(
            "coordinator",
            command=["coordinator", "serv", "--config", "/etc/mmlego/coordinator/coordinator.toml"],
        ),
        "no command 'serv'",
    ),
    "writable-root": (_svc("superlink", read_only=False), "writable"),
    "no-init": (_svc("superlink", init=False), "no init"),
    "caps": (_svc("site-b", cap_drop=["NET_RAW"]), "capabilities"),
    "root": (_svc("site-a", user="0:0"), "runs as root"),
    "telemetry": (
        _svc(
            "site-a", environment={"FLWR_TELEMETRY_ENABLED": "1", "FLWR_DISABLE_UPDATE_CHECK": "1"}
        ),
        "telemetry",
    ),
    "secret-env": (
        _svc(
            "site-a",
            environment={
                "FLWR_TELEMETRY_ENABLED": "0",
                "FLWR_DISABLE_UPDATE_CHECK": "1",
                "TLS_PRIVATE_KEY": "x",
            },
        ),
        "secret",
    ),
    "absolute-bind": (_bind_source, "not relative"),
    "metrics-public": (
        _svc("coordinator", ports=["50051:50051", "9464:9464"]),
        "beyond the host's loopback",
    ),
    "site-port": (_svc("site-a", ports=["9094:9094"]), "publishes ports"),
    "superlink-port": (_svc("superlink", ports=["9094:9094"]), "superlink: publishes"),
    "healthcheck": (
        _svc(
            "coordinator",
            healthcheck={"test": ["CMD", "curl", "-f", "http://127.0.0.1:9464/metrics"]},
        ),
        "health check",
    ),
}


@pytest.mark.parametrize("name", BROKEN_COMPOSE)
def test_compose_checker_catches(name: str) -> None:
    doc, coordinator, site = compose_inputs()
    mutate, expected = BROKEN_COMPOSE[name]
    mutate(doc)
    assert any(expected in p for p in checks.compose_problems(doc, coordinator, site))


def test_compose_checker_catches_config_drift() -> None:
    doc, coordinator, site = compose_inputs()
    coordinator["flower"]["superlink"] = "coordinator:9093"
    assert any(
        "coordinator.toml has coordinator:9093" in p
        for p in checks.compose_problems(doc, coordinator, site)
    )
    doc, coordinator, site = compose_inputs()
    site["flower"]["superlink"] = "127.0.0.1:9093"
    assert any("dials the SuperLink" in p for p in checks.compose_problems(doc, coordinator, site))


def compose_schema(path: Path) -> subprocess.CompletedProcess[str]:
    exe = tool("check-jsonschema")
    assert exe is not None, (
        "check-jsonschema is not installed (pip install '.[test]'): compose would go unchecked"
    )
    return subprocess.run(
        [exe, "--builtin-schema", "vendor.compose-spec", str(path)],
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_compose_matches_the_compose_specification() -> None:
    done = compose_schema(COMPOSE)
    assert done.returncode == 0, done.stdout + done.stderr


def test_compose_schema_catches_a_misspelt_key(tmp_path: Path) -> None:
    broken = tmp_path / "compose.yaml"
    broken.write_text(
        COMPOSE.read_text().replace("    stop_grace_period: 30s", "    stop_grace_periods: 30s")
    )
    assert compose_schema(broken).returncode != 0


# ---- systemd -------------------------------------------------------------------------------------
def test_units() -> None:
    assert [u.name for u in UNITS] == [
        "mmlego-coordinator.service",
        "mmlego-site.service",
        "mmlego-superlink.service",
    ]
    for path in UNITS:
        assert checks.unit_problems(path.name, checks.parse_unit(path.read_text())) == []


def test_superlink_unit_follows_but_is_not_bound_to_the_coordinator() -> None:
    unit = checks.parse_unit((DEPLOY / "systemd" / "mmlego-superlink.service").read_text())["Unit"]
    assert "mmlego-coordinator.service" in " ".join(unit["After"]).split()
    assert not {"BindsTo", "PartOf", "Requires", "Requisite"} & set(unit)


def test_unit_parser_reads_as_systemd_does() -> None:
    unit = checks.parse_unit(
        "[Service]\nEnvironment=A=1\nEnvironment=B=2\\\n  C=3\nReadWritePaths=/x\nReadWritePaths=\n"
    )
    assert unit == {"Service": {"Environment": ["A=1", "B=2 C=3"], "ReadWritePaths": []}}
    with pytest.raises(ValueError):
        checks.parse_unit("Environment=A=1\n")


BROKEN_UNITS: dict[str, tuple[str, str, str]] = {
    "root": ("User=mmlego", "User=root", "User=root"),
    "mdwe": (
        "MemoryDenyWriteExecute=no",
        "MemoryDenyWriteExecute=yes",
        "MemoryDenyWriteExecute=yes",
    ),
    "killmode": ("KillMode=control-group", "KillMode=process", "KillMode=process"),
    "command": ("coordinator serve", "coordinator serv", "no command 'serv'"),
    "binary": (
        "ExecStart=/opt/mmlego/bin/mmlego",
        "ExecStart=/usr/bin/python3 -m common.cli",
        "not the venv's mmlego",
    ),
    "caps": (
        "CapabilityBoundingSet=\n",
        "CapabilityBoundingSet=CAP_NET_BIND_SERVICE\n",
        "CapabilityBoundingSet",
    ),
    "families": (
        "AF_INET AF_INET6 AF_UNIX",
        "AF_INET AF_INET6 AF_UNIX AF_PACKET",
        "RestrictAddressFamilies",
    ),
    "writable": ("ReadWritePaths=/var/lib/mmlego", "ReadWritePaths=/", "ReadWritePaths=/"),
    "devices": ("PrivateDevices=yes", "PrivateDevices=no", "PrivateDevices=no"),
    "telemetry": ("FLWR_TELEMETRY_ENABLED=0", "FLWR_TELEMETRY_ENABLED=1", "telemetry"),
}


@pytest.mark.parametrize("name", BROKEN_UNITS)
def test_unit_checker_catches(name: str) -> None:
    old, new, expected = BROKEN_UNITS[name]
    text = (DEPLOY / "systemd" / "mmlego-coordinator.service").read_text()
    assert old in text
    problems = checks.unit_problems("u", checks.parse_unit(text.replace(old, new, 1)))
    assert any(expected in p for p in problems), problems


def systemd_verify(units: dict[str, str], tmp_path: Path) -> subprocess.CompletedProcess[str]:
    exe = shutil.which("systemd-analyze")
    if exe is None:
        pytest.skip("systemd-analyze is not on this machine")
    for name, text in units.items():  # ExecStart must name an executable that exists here
        (tmp_path / name).write_text(
            text.replace("/opt/mmlego/bin/mmlego", checks.real_executable())
        )
    return subprocess.run(
        [exe, "verify", "--man=no", *(str(tmp_path / n) for n in units)],
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_systemd_analyze_verify(tmp_path: Path) -> None:
    done = systemd_verify({p.name: p.read_text() for p in UNITS}, tmp_path)
    output = done.stdout + done.stderr
    assert done.returncode == 0, output
    assert not [line for line in output.splitlines() if any(p.name in line for p in UNITS)], output


def test_systemd_analyze_catches_a_bad_value(tmp_path: Path) -> None:
    text = (
        (DEPLOY / "systemd" / "mmlego-site.service")
        .read_text()
        .replace("KillMode=control-group", "KillMode=control-groups")
    )
    done = systemd_verify({"mmlego-site.service": text}, tmp_path)
    assert "control-groups" in done.stdout + done.stderr


# ---- Kubernetes ----------------------------------------------------------------------------------
def k8s_docs() -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(K8S.read_text()) if d]


def test_k8s(tmp_path: Path) -> None:
    assert checks.k8s_problems(k8s_docs(), tmp_path) == []


@pytest.mark.parametrize("version", ["1.29.0", "latest"])
def test_k8s_matches_the_api_schemas(version: str) -> None:
    import kubernetes_validate as kv  # a test dependency: missing, the manifest would go unchecked

    for doc in k8s_docs():
        kv.validate(doc, kv.latest_version() if version == "latest" else version, strict=True)


def test_k8s_schemas_catch_a_misspelt_field() -> None:
    import kubernetes_validate as kv

    docs = k8s_docs()
    sts = next(d for d in docs if d["kind"] == "StatefulSet")
    sts["spec"]["template"]["spec"]["containers"][0]["securityContext"][
        "readOnlyRootFileSystem"
    ] = True
    with pytest.raises(kv.ValidationError):
        kv.validate(sts, kv.latest_version(), strict=True)


def _pod(docs: list[dict[str, Any]]) -> dict[str, Any]:
    pod: dict[str, Any] = next(d for d in docs if d["kind"] == "StatefulSet")["spec"]["template"][
        "spec"
    ]
    return pod


def _doc(docs: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    return next(d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name)


BROKEN_K8S: dict[str, tuple[Callable[[list[dict[str, Any]]], None], str]] = {
    "replicas": (
        lambda ds: next(d for d in ds if d["kind"] == "StatefulSet")["spec"].update(replicas=2),
        "replicas 2",
    ),
    "root-fs": (
        lambda ds: _pod(ds)["containers"][1]["securityContext"].update(
            readOnlyRootFilesystem=False
        ),
        "writable",
    ),
    "escalation": (
        lambda ds: _pod(ds)["containers"][0]["securityContext"].update(
            allowPrivilegeEscalation=True
        ),
        "escalation",
    ),
    "caps": (
        lambda ds: _pod(ds)["containers"][0]["securityContext"]["capabilities"].update(
            drop=["NET_RAW"]
        ),
        "capabilities",
    ),
    "run-as": (lambda ds: _pod(ds)["securityContext"].update(runAsUser=0), "runAsUser"),
    "seccomp": (
        lambda ds: _pod(ds)["securityContext"].update(seccompProfile={"type": "Unconfined"}),
        "seccomp",
    ),
    "token": (lambda ds: _pod(ds).pop("automountServiceAccountToken"), "service account token"),
    "secret": (
        lambda ds: ds.append(
            {
                "apiVersion": "v1",
                "kind": "Secret",
                "metadata": {"name": "tls", "namespace": "mmlego"},
                "data": {"server.key": "LS0t"},
            }
        ),
        "Secret is defined",
    ),
    "command": (
        lambda ds: _pod(ds)["containers"][1].update(args=["coordinator", "superlnk"]),
        "no command 'superlnk'",
    ),
    "entrypoint": (
        lambda ds: _pod(ds)["containers"][0].update(command=["python", "-m", "common.cli"]),
        "entry point",
    ),
    "probe": (
        lambda ds: _pod(ds)["containers"][0]["livenessProbe"]["httpGet"].update(path="/metrics"),
        "livenessProbe",
    ),
    "limits": (
        lambda ds: _pod(ds)["containers"][1]["resources"].pop("limits"),
        "memory request and limit",
    ),
    "target": (
        lambda ds: _doc(ds, "Service", "mmlego-coordinator")["spec"]["ports"][0].update(
            targetPort=50052
        ),
        "not a container port",
    ),
    "selector": (
        lambda ds: _doc(ds, "Service", "mmlego-coordinator")["spec"].update(selector={"app": "x"}),
        "selector",
    ),
    "metrics-annotations": (
        lambda ds: _doc(ds, "Service", "mmlego-coordinator-pods")["metadata"].pop("annotations"),
        "prometheus",
    ),
    "policy": (
        lambda ds: _doc(ds, "NetworkPolicy", "mmlego-coordinator")["spec"]["ingress"][1]["ports"][
            0
        ].update(port=9999),
        "NetworkPolicy",
    ),
    "superlink-host": (
        lambda ds: _doc(ds, "ConfigMap", "mmlego-coordinator-config")["data"].update(
            {
                "coordinator.toml": _doc(ds, "ConfigMap", "mmlego-coordinator-config")["data"][
                    "coordinator.toml"
                ].replace("mmlego-coordinator-0:9093", "0.0.0.0:9093")
            }
        ),
        "pod's own host name",
    ),
    "config": (
        lambda ds: _doc(ds, "ConfigMap", "mmlego-coordinator-config")["data"].update(
            {
                "coordinator.toml": _doc(ds, "ConfigMap", "mmlego-coordinator-config")["data"][
                    "coordinator.toml"
                ].replace("workers = 64", "workers = many")
            }
        ),
        "does not load",
    ),
}


@pytest.mark.parametrize("name", BROKEN_K8S)
def test_k8s_checker_catches(name: str, tmp_path: Path) -> None:
    docs = deepcopy(k8s_docs())
    mutate, expected = BROKEN_K8S[name]
    mutate(docs)
    problems = checks.k8s_problems(docs, tmp_path)
    assert any(expected in p for p in problems), problems


# ---- the guide -----------------------------------------------------------------------------------
def test_readme_names_every_file() -> None:
    readme = (DEPLOY / "README.md").read_text()
    files = [
        p.relative_to(DEPLOY).as_posix()
        for d in OWN
        for p in (DEPLOY / d).iterdir()
        if p.name != ".gitignore"
    ]
    assert files and [f for f in files if f not in readme] == []
