"""Options of the whole suite: ``--fuzz-seed N`` draws the fuzz tests' inputs (hypothesis) from
seed N; without it they come from seed 0, as in CI, so that a failure reproduces."""

from __future__ import annotations

import pytest


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--fuzz-seed",
        type=int,
        default=0,
        help="seed of the fuzz tests' inputs (tests/coordinator/test_fuzz.py, "
        "tests/common/data/test_loader_fuzz.py); default 0, as in CI",
    )


def pytest_report_header(config: pytest.Config) -> str:
    return f"fuzz seed: {config.getoption('--fuzz-seed')} (--fuzz-seed N draws other inputs)"


@pytest.fixture(scope="session")
def fuzz_seed(request: pytest.FixtureRequest) -> int:
    return int(request.config.getoption("--fuzz-seed"))


@pytest.hookimpl(trylast=True)  # after pytest-xdist's own hook
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Slow tests first (the order is otherwise kept): under xdist (`make test`) the long runs
    start at once beside the short ones instead of ending the suite alone."""
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)
    if getattr(config.option, "loadgroup", False):  # an xdist worker of --dist loadgroup
        group_node_ids(items)


def group_node_ids(items: list[pytest.Item]) -> None:
    """Give each test with an ``xdist_group`` mark the node id suffix ``@group`` by which the
    loadgroup scheduler keeps a group on one worker. pytest-xdist 3.8 writes it to
    ``item._nodeid``, which pytest 9.2's structured node ids no longer read, so the groups were
    silently spread over the workers (pytest-dev/pytest-xdist#1386); this does what it meant,
    and nothing once xdist does it itself."""
    for item in items:
        node_id = getattr(item, "_id", None)
        nodeid = item.nodeid
        names = sorted(
            {
                str(m.args[0] if m.args else m.kwargs.get("name", "default"))
                for m in item.iter_markers("xdist_group")
            }
        )
        if names and node_id is not None and nodeid.rfind("@") <= nodeid.rfind("]"):
            item._id = type(node_id).parse(f"{nodeid}@{'_'.join(names)}")  # type: ignore[attr-defined]
