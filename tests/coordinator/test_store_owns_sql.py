"""SQL only in the store (AST, over every module of our packages): outside coordinator/store no
module imports or names ``sqlite3``, calls ``.execute``, ``.executemany`` or ``.executescript``,
or reaches for the store's database or a connection (``.db``, ``.conn``, ``.connection``,
``.tx``): servicers, domain modules and the simulator call store functions that return
records."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("common", "site_client", "coordinator", "simulate", "admin")
STORE = ("coordinator", "store")
SQL_CALLS = {"execute", "executemany", "executescript"}
CONNECTION_ATTRS = {"db", "conn", "connection", "tx"}


def sql_uses(tree: ast.AST) -> Iterator[tuple[int, str]]:
    """(line, what) for every use of SQL or of a connection in a module."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == "sqlite3":
                    yield node.lineno, "imports sqlite3"
        elif isinstance(node, ast.ImportFrom):
            if (node.module or "").split(".")[0] == "sqlite3":
                yield node.lineno, "imports sqlite3"
        elif isinstance(node, ast.Name) and node.id == "sqlite3":
            yield node.lineno, "uses sqlite3"
        elif isinstance(node, ast.Constant) and node.value == "sqlite3":
            yield node.lineno, "names sqlite3"  # importlib.import_module("sqlite3")
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            if node.func.attr in SQL_CALLS:
                yield node.lineno, f"calls .{node.func.attr}()"
        if isinstance(node, ast.Attribute) and node.attr in CONNECTION_ATTRS:
            yield node.lineno, f"touches .{node.attr}"


def violations(root: Path) -> list[str]:
    found = []
    for pkg in PACKAGES:
        for file in sorted((root / pkg).rglob("*.py")):
            rel = file.relative_to(root)
            if rel.parts[: len(STORE)] == STORE:
                continue
            tree = ast.parse(file.read_text(), str(rel))
            found += [f"{rel}:{line}: {what}" for line, what in sorted(set(sql_uses(tree)))]
    return found


def test_no_module_outside_the_store_runs_sql_or_touches_a_connection() -> None:
    assert violations(ROOT) == []


def test_the_store_is_where_the_sql_is() -> None:
    # the walk sees SQL where it is: a check that found nothing anywhere would prove nothing
    store = ROOT.joinpath(*STORE)
    calls = {
        what for file in store.glob("*.py") for _, what in sql_uses(ast.parse(file.read_text()))
    }
    assert {"imports sqlite3", "calls .execute()", "touches .conn", "touches .tx"} <= calls


def plant(root: Path, module: str, text: str) -> None:
    path = root.joinpath(*module.split(".")).with_suffix(".py")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def test_a_planted_violation_fails(tmp_path: Path) -> None:
    for pkg in PACKAGES:
        plant(tmp_path, f"{pkg}.__init__", '"""A package."""\n')
    # allowed: SQL inside the store; store functions; a file name that ends in .db
    plant(
        tmp_path,
        "coordinator.store.db",
        "import sqlite3\nc = sqlite3.connect('x')\nc.execute('SELECT 1')\n",
    )
    plant(tmp_path, "coordinator.merging", "def f(store):\n    return store.blocks.latest('t')\n")
    plant(tmp_path, "coordinator.cli", 'LINK = "superlink.db"\n')
    assert violations(tmp_path) == []

    plant(tmp_path, "simulate.report", "import sqlite3\n")
    plant(tmp_path, "coordinator.server", "from sqlite3 import OperationalError\n")
    plant(tmp_path, "coordinator.recommend", "def f(c):\n    c.execute('SELECT 1')\n")
    plant(tmp_path, "common.bad", "def f(c):\n    c.executemany('INSERT', [])\n")
    plant(tmp_path, "admin.bad", "def f(c):\n    c.executescript('')\n")
    plant(
        tmp_path,
        "coordinator.admin_servicer",
        "def run(self, key):\n    return self.registry.store.db.fuse_run(key)\n",
    )
    plant(tmp_path, "coordinator.evaluation_servicer", "def f(s):\n    return s.store.conn\n")
    plant(tmp_path, "site_client.bad", "def f(db):\n    with db.tx() as c:\n        pass\n")
    assert violations(tmp_path) == [
        "common/bad.py:2: calls .executemany()",
        "site_client/bad.py:2: touches .tx",
        "coordinator/admin_servicer.py:2: touches .db",
        "coordinator/evaluation_servicer.py:2: touches .conn",
        "coordinator/recommend.py:2: calls .execute()",
        "coordinator/server.py:1: imports sqlite3",
        "simulate/report.py:1: imports sqlite3",
        "admin/bad.py:2: calls .executescript()",
    ]
