"""The path of a merge's recipe from the CLI to the model card, as docs/ARCHITECTURE.md lists it
("Following a merge's recipe"): each module on it imports only modules further down the list, so
following a merge never climbs back up to a module it has left."""

from __future__ import annotations

import re

from tests.test_import_rule import ROOT, references

SECTION = "## Following a merge's recipe from the CLI to the model card"
LAYER = re.compile(r"^\d+\. `([a-z_/]+)\.py`", re.M)


def layers() -> list[str]:
    text = (ROOT / "docs" / "ARCHITECTURE.md").read_text()
    section = re.split(r"\n#{2,3} ", text[text.index(SECTION) + len(SECTION) :])[0]
    return [m.replace("/", ".") for m in LAYER.findall(section)]


def named(module: str) -> set[str]:
    """The modules ``module`` imports (``from a import b`` names ``a`` and ``a.b``)."""
    file = ROOT.joinpath(*module.split(".")).with_suffix(".py")
    out = {ref.target for ref in references(ROOT, file) if ref.how == "import"}
    for m in re.finditer(r"^\s*from (\S+) import \(?([\w, \n]+)\)?", file.read_text(), re.M):
        base = m.group(1)
        if not base.startswith("."):
            out.update(f"{base}.{n.strip()}" for n in m.group(2).split(",") if n.strip())
    return out


def test_the_architecture_lists_the_path_from_the_cli_to_the_card() -> None:
    assert layers() == [
        "admin.cli",
        "common.client.registry",
        "coordinator.servicer",
        "coordinator.registry",
        "coordinator.merging",
        "common.evaluation.policy",
        "common.artifacts.modelfile",
        "common.artifacts.recipefile",
        "common.lego.recipe",
        "common.artifacts.modelcard",
    ]


def test_no_module_on_the_path_imports_one_above_it() -> None:
    path = layers()
    for i, module in enumerate(path):
        assert not named(module) & set(path[:i]), (module, sorted(named(module) & set(path[:i])))


def test_a_module_that_imported_one_above_it_would_be_caught() -> None:
    assert "common.serde" in named("common.artifacts.modelfile")  # its lazy import is seen too
    assert "common.artifacts.recipefile" in named("common.serde")
