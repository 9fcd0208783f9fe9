"""docs/OPERATIONS.md says every command it shows is exercised by deploy/local/run.sh: each
`mmlego` command of the page must be one the script runs, with the same subcommand and at least
the same options (values differ: host names there, loopback addresses here)."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def commands(lines: list[str], prefix: str) -> list[tuple[tuple[str, ...], frozenset[str]]]:
    """(subcommand words, option names) of every line that starts with ``prefix``."""
    out = []
    for line in lines:
        line = line.strip()
        if not line.startswith(prefix):
            continue
        words = shlex.split(line[len(prefix) :].split("#", 1)[0].split("||", 1)[0].split(">", 1)[0])
        if words[:1] == ["--log-format"]:
            words = words[2:]  # a global option and its value
        first = next((i for i, w in enumerate(words) if w.startswith("--")), len(words))
        path = tuple(
            w for w in words[:first] if re.fullmatch(r"[a-z][a-z-]*", w)
        )  # commands and names, not paths
        out.append((path, frozenset(w for w in words if w.startswith("--"))))
    return out


def doc_commands() -> list[tuple[tuple[str, ...], frozenset[str]]]:
    text = (ROOT / "docs" / "OPERATIONS.md").read_text()
    blocks = re.findall(r"```\n(.*?)```", text, flags=re.S)
    return commands([line for b in blocks for line in b.splitlines()], "mmlego ")


def script_commands() -> list[tuple[tuple[str, ...], frozenset[str]]]:
    lines = []
    for raw in (ROOT / "deploy" / "local" / "run.sh").read_text().splitlines():
        line = raw.strip()
        for lead in ("start ", "wait_for "):
            if line.startswith(lead) and '"$MM"' in line:
                line = line[line.index('"$MM"') :]  # the command a helper runs
        for lead in ("if ",):
            if line.startswith(lead):
                line = line[len(lead) :]
        lines.append(line.replace('"$MM"', "mmlego", 1))
    return commands(lines, "mmlego ")


def test_every_command_of_the_operations_guide_runs_in_the_local_deploy() -> None:
    documented, run = doc_commands(), script_commands()
    assert len(documented) >= 20 and len(run) >= 20
    missing = [
        f"mmlego {' '.join(path)} {' '.join(sorted(opts))}"
        for path, opts in documented
        if not any(path == p and opts <= o for p, o in run)
    ]
    assert missing == [], f"documented but not run by deploy/local/run.sh: {missing}"


def test_every_other_documented_line_is_in_the_local_deploy_as_it_is() -> None:
    text = (ROOT / "docs" / "OPERATIONS.md").read_text()
    lines = [
        line.strip()
        for b in re.findall(r"```\n(.*?)```", text, flags=re.S)
        for line in b.splitlines()
    ]
    other = [line for line in lines if line and not line.startswith("mmlego ")]
    script = {
        line.strip() for line in (ROOT / "deploy" / "local" / "run.sh").read_text().splitlines()
    }
    assert other and [line for line in other if line not in script] == []


def test_the_check_catches_a_command_the_script_does_not_run() -> None:
    run = script_commands()
    (made_up,) = commands(["mmlego coordinator merge --task nki70 --dry-run"], "mmlego ")
    assert not any(made_up[0] == p and made_up[1] <= o for p, o in run)
