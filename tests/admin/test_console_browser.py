"""The admin console in a real browser (Debian's chromium driven by Playwright, headless), against
a real coordinator on loopback holding blocks that real sites trained on the ovarian cohort and
pushed with their kits, operated with ``mmlego admin`` from an admin kit: every page renders with
and without JavaScript, its numbers equal ``mmlego admin status --json``, a merge started from the
command line shows up on the versions page, a withdrawn site shows as withdrawn, and a fuse run's
rounds appear on the open page as they end (live refresh). Screenshots of every page are saved
(``MMLEGO_SCREENSHOTS``, default: the test's temporary folder).

Chromium must be installed (``make test`` installs Debian's where it can); without it these tests
fail saying how to install it: they are never skipped."""

from __future__ import annotations

import json
import os
import shutil
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from typer.testing import CliRunner

from common.cli import add_plugins, app
from common.data import load_builtin
from common.data.export import export_site_folder
from common.fuse.history import RoundRecord, RoundValidation
from common.tasks import survival_bins
from coordinator import fuse_run
from coordinator.config import load_config
from coordinator.fuse_rounds import NotStored
from coordinator.registry import Registry
from coordinator.server import serve
from coordinator.servicer import FuseStart
from tests.factories import edit_site_toml

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600), pytest.mark.xdist_group("browser")]
try:
    import playwright.sync_api as playwright_api
except ImportError:  # never skipped: the test extra installs it
    pytest.fail(
        "the Python package playwright is missing: pip install -e '.[test]' "
        "(it drives Debian's chromium; it needs no browser download)",
        pytrace=False,
    )
SITES = {"hosp-a": ("genes",), "hosp-b": ("clinical",), "hosp-c": ("genes", "clinical")}


def chromium() -> str:
    path = (
        os.environ.get("MMLEGO_CHROMIUM")
        or shutil.which("chromium")
        or shutil.which("chromium-browser")
    )
    if not path:
        pytest.fail(
            "chromium is not installed: the console's browser tests need Debian's chromium "
            "(apt-get install chromium; `make test` installs it when run as root), "
            "or MMLEGO_CHROMIUM=/path/to/chrome"
        )
    return path


def mmlego(*args: str | Path, code: int = 0) -> str:
    add_plugins()
    result = CliRunner().invoke(app, [str(a) for a in args])
    assert result.exit_code == code, result.output
    return result.stdout


class SlowRun:
    """Stands in for the Flower SuperLink only (tests/coordinator/test_flower_e2e.py runs real
    ones): records the run in the store as the ServerApp does, one round every ``pace`` seconds,
    and stores nothing at the end."""

    def __init__(self, pace: float = 3.0) -> None:
        self.pace = pace
        self.config: Any = None

    def __call__(self, start: FuseStart, progress: Callable[[str], None], run_key: str) -> str:
        registry = Registry.open(self.config, recover=False)
        try:
            fuse_run.begin(registry.store, run_key, start.model_id)
            history: list[RoundRecord] = []
            for r in range(1, start.config.rounds + 1):
                time.sleep(self.pace)
                progress(f"INFO mmlego: round {r} of {start.config.rounds}: 2 sites")
                history.append(
                    RoundRecord(
                        round=r,
                        sites=("hosp-b", "hosp-c"),
                        num_examples=70,
                        train_loss=1.2 - 0.1 * r,
                        seconds=self.pace,
                        validation=RoundValidation(
                            value=0.62 + 0.01 * r, parent=0.63, diff=0.01 * r - 0.01, se_diff=0.012
                        ),
                    )
                )
                fuse_run.progress(registry.store, run_key, history)
            reason = (
                "no round beat the parent on consortium validation by more than 1 standard error"
            )
            fuse_run.finish(registry.store, run_key, "not-stored", reason=reason, history=history)
            raise NotStored(reason)
        finally:
            registry.close()


@dataclass
class Consortium:
    root: Path
    address: str
    kit: Path
    console: str  # the console's URL
    shots: Path

    def admin(self, *args: str, code: int = 0) -> str:
        return mmlego("admin", *args, "--kit", self.kit, code=code)

    def status(self) -> dict[str, Any]:
        return json.loads(self.admin("status", "--json"))  # type: ignore[no-any-return]


@pytest.fixture(scope="module")
def consortium(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Consortium]:
    from admin.console import make_console
    from common.admin import AdminClient, AdminKit

    chromium()  # before anything is built: without it these tests fail at once, saying how
    root = tmp_path_factory.mktemp("console")
    data = load_builtin("ovarian")
    order = np.random.default_rng(0).permutation(len(data))
    parts = dict(zip(SITES, np.array_split(order, 3), strict=True))
    for site, mods in SITES.items():
        export_site_folder(
            data.subset(parts[site]).select_modalities(list(mods)), root / f"data-{site}"
        )
    assert data.time is not None and data.event is not None
    edges = survival_bins(data.time, data.event, 4)
    (root / "task.toml").write_text(
        f'id = "ovarian"\nkind = "survival"\nn_bins = 4\nbin_edges = {list(edges)}\n'
        'modalities = ["genes", "clinical"]\nlatent_rows = 8\nlatent_dim = 16\n'
    )
    mmlego("ca", "init", "--dir", root / "ca")
    mmlego("coordinator", "init", "--out", root / "coord", "--ca", root / "ca", "--port", "0")
    runner = SlowRun()
    config = load_config(root / "coord" / "coordinator.toml")
    runner.config = config
    with serve(config, fuse_runner=runner) as running:
        address = f"127.0.0.1:{running.port}"
        mmlego(
            "ca",
            "enroll-admin",
            "ops",
            "--out",
            root / "ops",
            "--coordinator",
            address,
            "--dir",
            root / "ca",
        )
        for site, mods in SITES.items():
            paired = ["--paired"] if len(mods) > 1 or site == "hosp-b" else []
            mmlego(
                "ca",
                "enroll",
                site,
                *[a for m in mods for a in ("--modality", m)],
                *paired,
                "--out",
                root / site,
                "--coordinator",
                address,
                "--dir",
                root / "ca",
            )
            edit_site_toml(
                root / site / "site.toml",
                data=str(root / f"data-{site}"),
                task="ovarian",
                **{"train.epochs": 4, "train.patience": 2, "evaluation.folds": 0},
            )
        mmlego("admin", "task", "create", root / "task.toml", "--kit", root / "ops")
        # each site trains its blocks on its own patients and pushes them with its kit
        for site in SITES:
            mmlego("site", "run", "--once", "--config", root / site / "site.toml")
        # The first merge: the sites score the candidates (as their daemons do) while it waits
        # for them.
        merged = threading.Event()
        scoring = threading.Thread(target=answer_jobs, args=(root, merged, 300.0), daemon=True)
        scoring.start()
        mmlego(
            "admin",
            "merge",
            "--task",
            "ovarian",
            "--recipe",
            "auto",
            "--deadline",
            "90",
            "--kit",
            root / "ops",
        )
        merged.set()
        scoring.join(30)
        with (
            AdminClient(AdminKit.load(root / "ops")) as client,
            make_console(client, listen="127.0.0.1:0") as console,
        ):
            shots = Path(os.environ.get("MMLEGO_SCREENSHOTS") or root / "screenshots")
            shots.mkdir(parents=True, exist_ok=True)
            yield Consortium(root, address, root / "ops", console.url, shots)


def answer_jobs(root: Path, done: threading.Event, within_s: float) -> None:
    """Every site answers the evaluation jobs it finds (the daemon's own code: a merge asks
    several, its stack jobs then its candidates), until ``done`` or ``within_s``."""
    from common.client import RegistryClient
    from common.data.sitefolder import load_site_folder
    from site_client.config import load_site_config
    from site_client.evaluate import evaluate_pending

    deadline = time.monotonic() + within_s
    while not done.is_set() and time.monotonic() < deadline:
        for site in SITES:
            cfg = load_site_config(root / site / "site.toml")
            with RegistryClient(cfg.coordinator, cfg.tls) as client:
                evaluate_pending(cfg, client, partial(load_site_folder, cfg.data))
        time.sleep(0.5)


@pytest.fixture()
def browser() -> Iterator[Any]:
    with playwright_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=chromium(), headless=True, args=["--no-sandbox"])
        try:
            yield b
        finally:
            b.close()


def cell(page: Any, row: str, key: str) -> str:
    return str(page.locator(f"{row} [data-k='{key}']").first.inner_text()).strip()


def test_every_page_renders_and_its_numbers_are_the_status(
    consortium: Consortium, browser: Any
) -> None:
    s = consortium.status()
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.goto(consortium.console)
    assert "Overview" in page.title()
    counts = {
        "tasks": len(s["tasks"]),
        "active_sites": sum(x["state"] == "active" for x in s["sites"]),
        "withdrawn_sites": sum(x["state"] == "withdrawn" for x in s["sites"]),
        "blocks": sum(x["blocks"] for x in s["sites"]),
        "versions": len(s["models"]),
        "open_uploads": s["open_uploads"],
        "corrupt_blocks": len(s["corrupt_blocks"]),
    }
    for key, want in counts.items():
        assert page.locator(f"[data-k='count.{key}']").inner_text().strip() == str(want), key
    for t in s["tasks"]:
        row = f"tr[data-task='{t['task']}']"
        for key in ("blocks", "latest_blocks", "versions"):
            assert cell(page, row, key) == str(t[key]), key
        assert cell(page, row, "recommended").startswith(t["recommended"])
    assert {x["site"] for x in s["sites"]} == set(SITES)
    for x in s["sites"]:
        row = f"tr[data-site='{x['site']}']"
        assert cell(page, row, "state") == x["state"] and cell(page, row, "blocks") == str(
            x["blocks"]
        )
        assert cell(page, row, "paired") == ("paired" if x["paired"] else "unpaired")
        assert cell(page, row, "modalities") == ", ".join(x["modalities"])
    page.screenshot(path=str(consortium.shots / "overview.png"), full_page=True)

    page.goto(consortium.console + "blocks")
    blocks = json.loads(consortium.admin("blocks", "--json"))
    assert len(blocks) == counts["blocks"] and page.locator("tr[data-block]").count() == len(blocks)
    page.screenshot(path=str(consortium.shots / "blocks.png"), full_page=True)

    page.goto(consortium.console + "versions")
    for m in s["models"]:
        row = f"tr[data-model='{m['model']}']"
        assert cell(page, row, "recipe") == m["recipe"] and cell(page, row, "blocks") == str(
            m["blocks"]
        )
        want = f"{m['val_metric']:.4f}" if m["val_metric"] is not None else "not measured"
        assert cell(page, row, "val_metric").startswith(want)
    assert s["models"][0]["val_metric"] is not None, "the sites scored the first merge"
    assert page.locator("svg").count() >= 1
    page.screenshot(path=str(consortium.shots / "versions.png"), full_page=True)

    first = s["models"][-1]["model"]
    page.goto(consortium.console + f"versions/{first}")
    assert f"# Model {first}" in page.content() and "hosp-c" in page.inner_text("main")
    page.screenshot(path=str(consortium.shots / "card.png"), full_page=True)
    assert errors == [], errors


def test_a_merge_from_the_cli_and_a_withdrawal_show_up(
    consortium: Consortium, browser: Any
) -> None:
    page = browser.new_page()
    page.goto(consortium.console + "versions")
    before = page.locator("tr[data-model]").count()
    out = consortium.admin("merge", "--task", "ovarian", "--deadline", "0")
    new = out.split()[3]
    page.goto(consortium.console + "versions")
    assert page.locator("tr[data-model]").count() == before + 1
    assert cell(page, f"tr[data-model='{new}']", "recipe") == "merge"
    assert cell(page, f"tr[data-model='{new}']", "val_metric") == "not measured"

    page.goto(consortium.console)
    assert cell(page, "tr[data-site='hosp-a']", "state") == "active"
    consortium.admin("withdraw", "hosp-a", "--reason", "left the consortium")
    # live refresh: the open page follows without a reload
    playwright_api.expect(page.locator("tr[data-site='hosp-a'] [data-k='state']")).to_have_text(
        "withdrawn", timeout=20_000
    )
    assert "left the consortium" in page.inner_text("tr[data-site='hosp-a']")
    assert page.locator("[data-k='count.withdrawn_sites']").inner_text().strip() == "1"
    status = consortium.status()
    assert {x["site"]: x["state"] for x in status["sites"]}["hosp-a"] == "withdrawn"


def test_a_fuse_run_streams_to_the_cli_and_its_rounds_appear_on_the_open_page(
    consortium: Consortium, browser: Any
) -> None:
    parent = consortium.status()["models"][-1]["model"]  # the first merge
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    page.goto(consortium.console + "fuse")
    out: dict[str, str] = {}
    fuse = threading.Thread(
        target=lambda: out.setdefault(
            "text", consortium.admin("fuse", "--model", parent, "--rounds", "3")
        )
    )
    fuse.start()
    try:
        page.wait_for_selector(
            "section[data-run] tr[data-round='1']", timeout=30_000
        )  # no reload: live refresh
        assert (
            page.locator("section[data-run] [data-k='state']").first.inner_text().strip()
            == "running"
        )
        page.wait_for_selector("section[data-run] tr[data-round='3']", timeout=30_000)
    finally:
        fuse.join(60)
    assert out["text"].startswith("no fused version stored: no round beat the parent")
    page.reload()
    assert (
        page.locator("section[data-run] [data-k='state']").first.inner_text().strip()
        == "not-stored"
    )
    assert page.locator("section[data-run] svg").count() == 1
    page.screenshot(path=str(consortium.shots / "fuse.png"), full_page=True)


def test_every_page_works_without_javascript(consortium: Consortium, browser: Any) -> None:
    context = browser.new_context(java_script_enabled=False)
    page = context.new_page()
    s = consortium.status()
    for path in ("", "blocks", "versions", f"versions/{s['models'][0]['model']}", "fuse"):
        response = page.goto(consortium.console + path)
        assert response is not None and response.status == 200, path
        assert page.locator("main").count() == 1 and page.locator("nav a").count() >= 4, path
    page.goto(consortium.console)
    assert page.locator("[data-k='count.versions']").inner_text().strip() == str(len(s["models"]))
    context.close()
