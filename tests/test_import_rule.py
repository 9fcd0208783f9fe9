"""The import rule of DESIGN.md, held over every module (AST; string module references such as
``"pkg.module:attr"`` included): common imports none of our other packages; site_client and
coordinator never import each other; admin imports common only; the simulator is the one package
that may name both sides."""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("common", "site_client", "coordinator", "simulate", "admin")
# package -> our packages it may import (itself always)
ALLOWED = {
    "common": set(),
    "site_client": {"common"},
    "coordinator": {"common"},
    "admin": {"common"},
    "simulate": {"common", "site_client", "coordinator"},
}
MODULE_STRING = re.compile(r"[a-z_][a-z_0-9]*(\.[a-z_][a-z_0-9]*)+(:[A-Za-z_][A-Za-z_0-9]*)?")


@dataclass(frozen=True)
class Reference:
    module: str  # the referring module's file, relative to the root
    line: int
    target: str  # the module it names
    how: str  # "import" or "string"


def is_module(root: Path, dotted: str) -> bool:
    path = root.joinpath(*dotted.split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def references(root: Path, file: Path) -> Iterator[Reference]:
    rel = file.relative_to(root)
    package = list(rel.with_suffix("").parts)
    if package[-1] == "__init__":
        package.pop()
    else:
        package = package[:-1]  # the package the module is in (for relative imports)
    tree = ast.parse(file.read_text(), str(rel))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield Reference(str(rel), node.lineno, alias.name, "import")
        elif isinstance(node, ast.ImportFrom):
            if node.level > len(package):  # above the top-level package: fails when it runs
                yield Reference(
                    str(rel), node.lineno, "." * node.level + (node.module or ""), "above"
                )
                continue
            if node.level:
                base = package[: len(package) - (node.level - 1)]
                target = ".".join([*base, *([node.module] if node.module else [])])
            else:
                target = node.module or ""
            yield Reference(str(rel), node.lineno, target, "import")
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            text = node.value.strip()
            if MODULE_STRING.fullmatch(text):
                dotted = text.partition(":")[0]
                if dotted.split(".")[0] in PACKAGES and is_module(root, dotted):
                    yield Reference(str(rel), node.lineno, dotted, "string")


def violations(root: Path) -> list[str]:
    found = []
    for pkg in PACKAGES:
        for file in sorted((root / pkg).rglob("*.py")):
            for ref in references(root, file):
                if ref.how == "above":
                    found.append(f"{ref.module}:{ref.line}: {ref.target} climbs out of {pkg}")
                    continue
                top = ref.target.split(".")[0]
                if top in PACKAGES and top != pkg and top not in ALLOWED[pkg]:
                    found.append(f"{ref.module}:{ref.line}: {pkg} names {ref.target} ({ref.how})")
    return found


def test_every_module_keeps_the_import_rule() -> None:
    assert violations(ROOT) == []


def test_every_package_is_checked() -> None:
    # a new top-level package must be given its place in the rule
    ours = {
        p.name
        for p in ROOT.iterdir()
        if (p / "__init__.py").is_file() and p.name not in {"tests", "bench", "deploy"}
    }
    assert ours == set(PACKAGES)


def plant(root: Path, module: str, text: str) -> None:
    path = root.joinpath(*module.split(".")).with_suffix(".py")
    path.parent.mkdir(parents=True, exist_ok=True)
    for parent in [path.parent, *path.parent.parents]:
        if parent == root:
            break
        (parent / "__init__.py").touch()
    path.write_text(text)


def test_a_planted_violation_fails(tmp_path: Path) -> None:
    for pkg in PACKAGES:
        plant(tmp_path, f"{pkg}.base", '"""A module."""\n')
    plant(tmp_path, "site_client.daemon", "x = 1\n")
    plant(tmp_path, "coordinator.flower_app", "app = 1\n")
    assert violations(tmp_path) == []

    plant(tmp_path, "common.bad", "from site_client import daemon\n")
    plant(tmp_path, "coordinator.bad", "from site_client.daemon import x\n")
    plant(tmp_path, "site_client.bad", 'TARGET = "coordinator.flower_app:app"\n')
    plant(tmp_path, "admin.bad", "import coordinator.flower_app\n")
    plant(tmp_path, "admin.climbs", "def f():\n    from ..records import x\n")
    # allowed: the simulator names both sides; a file name is not a module reference
    plant(
        tmp_path, "simulate.good", 'import site_client.daemon\nT = "coordinator.flower_app:app"\n'
    )
    plant(tmp_path, "coordinator.good", 'NAME = "admin.toml"\n')
    assert violations(tmp_path) == [
        "common/bad.py:1: common names site_client (import)",
        "site_client/bad.py:1: site_client names coordinator.flower_app (string)",
        "coordinator/bad.py:1: coordinator names site_client.daemon (import)",
        "admin/bad.py:1: admin names coordinator.flower_app (import)",
        "admin/climbs.py:2: ..records climbs out of admin",
    ]
