"""The admin console against a fake coordinator: every page, its numbers and hooks, escaping, the
plots, and the guards (loopback, Host header, token, methods, security headers, the coordinator's
refusals)."""

from __future__ import annotations

import http.client
import math
import re
import urllib.error
import urllib.request
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import grpc
import pytest
from cryptography.hazmat.primitives import serialization

from admin.console import Console, Point, Reference, line_plot, make_console
from admin.console.security import Guard, parse_listen
from admin.console.svg import nice_ticks
from common import serde
from common.artifacts.manifest import BlockManifest, DPAccount
from common.client import CallError
from common.lego import BlockConfig, EncoderConfig
from common.lego.recipe import Recipe
from common.pki.ca import CertificateAuthority, new_key
from common.pki.identity import Identity
from common.records import BlockRecord, FuseRound, FuseRun, ModelRecord, SiteRecord, TaskRecord
from common.tasks import TaskSpec

EVIL = "left the consortium <script>alert(1)</script>"
TOKEN = "s3cret-token-0123456789"
NOW = "2026-12-01T14:00:00+00:00"
NAN = math.nan
SURV = TaskSpec("survival", n_bins=4, bin_edges=(1.0, 2.0, 3.0))


# ---- a fake coordinator --------------------------------------------------------------------------
def _manifest(
    task: str, site: str, modality: str, n_train: int, val: float, dp: DPAccount | None = None
) -> bytes:
    enc = EncoderConfig(
        kind="tabular", in_features=5, token_dim=16, n_tokens=3, hidden=32, dropout=0.0
    )
    cfg = BlockConfig(
        modality=modality, encoder=enc, task=SURV, latent_rows=6, latent_dim=8, init_seed=0
    )
    m = BlockManifest(
        config=cfg,
        weights_sha256="ab" * 32,
        tensors={"w": [2, 3]},
        weights_size=4096,
        task_id=task,
        site=site,
        train_stats={"n_train": float(n_train), "n_val": 30.0, "val_metric": val},
        dp=dp,
    )
    return serde.manifest_to_bytes(m)


def _card_block(b: BlockRecord) -> dict[str, Any]:
    m = serde.manifest_from_bytes(b.manifest)
    return {
        "block_id": b.block_id,
        "site": b.site,
        "modality": b.modality,
        "size": b.size,
        "accepted_at": b.accepted_at,
        "code_version": "0.1.0",
        "train_stats": m.train_stats,
        "signer": {"certificate_serial": "1", "signing_key_sha256": "cd" * 32},
        **({"dp": {"epsilon": m.dp.epsilon, "delta": m.dp.delta}} if m.dp else {}),
    }


def _merge_card(
    model_id: str, task: str, blocks: list[BlockRecord], value: float | None
) -> dict[str, Any]:
    card: dict[str, Any] = {
        "model_id": model_id,
        "task_id": task,
        "recipe": "merge",
        "created_by": "operator",
        "blocks": [_card_block(b) for b in blocks],
        "task": {"kind": "survival"},
    }
    if value is None:
        card["validation"] = {"evaluated": False, "reason": "federated evaluation is off"}
    else:
        sites = sorted({b.site for b in blocks})
        card["validation"] = {
            "evaluated": True,
            "chosen": "size",
            "reference": "uniform",
            "scored_by": sites,
            "declined_by": [],
            "silent": [],
            "reason": "merge weighted by training patients",
            "candidates": [
                {
                    "candidate": "uniform",
                    "label": "uniform merge",
                    "kind": "merge",
                    "value": value - 0.005,
                    "se": 0.04,
                    "diff": 0.0,
                    "se_diff": 0.0,
                    "sites": sites,
                    "weights": [],
                },
                {
                    "candidate": "size",
                    "label": "size-weighted merge",
                    "kind": "merge",
                    "value": value,
                    "se": 0.0415,
                    "diff": 0.005,
                    "se_diff": 0.0037,
                    "sites": sites,
                    "weights": [1.2, 0.8],
                },
            ],
            "per_site": {
                s: {"value": 0.7 if s == "hosp-a" else 0.61, "patients": 40, "events": 20}
                for s in sites
            },
        }
    return card


HISTORY: list[dict[str, Any]] = [
    {
        "round": 1,
        "sites": ["hosp-a", "hosp-b"],
        "num-examples": 250,
        "train_loss": 1.25,
        "failed": [],
        "no_answer": [],
        "seconds": 3.5,
        "validation": {"value": 0.672, "parent": 0.6683, "diff": 0.0037, "se_diff": 0.002},
    },
    {
        "round": 2,
        "sites": ["hosp-a", "hosp-b"],
        "num-examples": 250,
        "train_loss": 1.1,
        "failed": [],
        "no_answer": [],
        "seconds": 3.1,
        "validation": {"value": 0.6901, "parent": 0.6683, "diff": 0.0218, "se_diff": 0.006},
    },
]


class FakeCoordinator:
    """What an AdminClient returns, built by hand; ``fail`` makes every call raise it."""

    def __init__(self, signer_pem: bytes) -> None:
        self.calls: list[tuple[str, tuple[Any, ...]]] = []
        self.fail: Exception | None = None
        self.task_list = [
            TaskRecord(
                "ovarian",
                SURV,
                latent_rows=6,
                latent_dim=8,
                modalities=("clinical", "genes"),
                created_at=NOW,
            ),
            TaskRecord(
                "breast",
                SURV,
                latent_rows=6,
                latent_dim=8,
                modalities=("clinical",),
                created_at=NOW,
            ),
        ]
        self.site_list = [
            SiteRecord(
                "hosp-a",
                ("clinical", "genes"),
                True,
                block_count=3,
                last_seen="2026-12-01T13:55:00+00:00",
            ),
            SiteRecord(
                "hosp-b", ("clinical",), False, block_count=2, last_seen="2026-12-01T13:58:00+00:00"
            ),
            SiteRecord(
                "hosp-c", ("genes",), False, withdrawn=True, block_count=1, withdrawn_reason=EVIL
            ),
        ]
        dp = DPAccount(
            epsilon=2.5,
            delta=1e-5,
            target_epsilon=3.0,
            noise_multiplier=1.1,
            sample_rate=0.1,
            steps=100,
            max_grad_norm=1.0,
        )

        def block(
            n: int,
            task: str,
            site: str,
            modality: str,
            n_train: int,
            val: float,
            state: str = "accepted",
            dp_: DPAccount | None = None,
        ) -> BlockRecord:
            return BlockRecord(
                f"{n:02d}" * 32,
                task,
                site,
                modality,
                4096 + n,
                f"2026-12-01T1{n}:00:00+00:00",
                state,
                _manifest(task, site, modality, n_train, val, dp_),
                b"sig",
                signer_pem if site == "hosp-a" else b"",
            )

        self.block_list = [
            block(1, "ovarian", "hosp-a", "clinical", 120, 0.64),
            block(2, "ovarian", "hosp-a", "genes", 118, 0.66),
            block(3, "ovarian", "hosp-b", "clinical", 130, 0.62, dp_=dp),
            block(4, "ovarian", "hosp-c", "genes", 77, 0.58, state="withdrawn"),
            block(5, "breast", "hosp-a", "clinical", 200, 0.71),
            block(6, "breast", "hosp-b", "clinical", 150, 0.69),
        ]
        ov = self.block_list[:3]
        v3 = _merge_card("ovarian-v3", "ovarian", ov, None)
        v3.update(
            recipe="fuse",
            parent_id="ovarian-v1",
            fuse={
                "participants": ["hosp-a", "hosp-b"],
                "rounds": HISTORY,
                "strategy": "fedavg",
                "kept_round": 2,
            },
            validation={
                "evaluated": True,
                "kept_round": 2,
                "curve": [h["validation"] for h in HISTORY],
                "reason": "round 2: +0.0218 over the parent",
                "per_site": {"hosp-a": 0.71, "hosp-b": 0.66},
            },
            metrics={
                "val_metric": 0.6901,
                "val_parent": 0.6683,
                "val_diff": 0.0218,
                "val_se_diff": 0.006,
            },
        )
        self.model_list = [  # newest first
            ModelRecord(
                "ovarian-v3",
                "ovarian",
                Recipe("fuse", tuple(b.block_id for b in ov)),
                {"strategy": "fedavg"},
                "ef" * 32,
                9000,
                v3,
                "2026-12-01T13:30:00+00:00",
                "0.1.0",
                parent_id="ovarian-v1",
                metrics={
                    "val_metric": 0.6901,
                    "val_parent": 0.6683,
                    "val_diff": 0.0218,
                    "val_se_diff": 0.006,
                },
            ),
            ModelRecord(
                "breast-v1",
                "breast",
                Recipe(
                    "merge", tuple(b.block_id for b in self.block_list[4:]), latent_merge="harmonic"
                ),
                {},
                "ee" * 32,
                8000,
                _merge_card("breast-v1", "breast", self.block_list[4:], 0.7345),
                "2026-12-01T13:20:00+00:00",
                "0.1.0",
                metrics={"val_metric": 0.7345, "val_se": 0.03, "val_patients": 80.0},
            ),
            ModelRecord(
                "ovarian-v2",
                "ovarian",
                Recipe("merge", tuple(b.block_id for b in ov), latent_merge="mean"),
                {},
                "dd" * 32,
                8000,
                _merge_card("ovarian-v2", "ovarian", ov, None),
                "2026-12-01T13:10:00+00:00",
                "0.1.0",
            ),
            ModelRecord(
                "ovarian-v1",
                "ovarian",
                Recipe("merge", tuple(b.block_id for b in ov), latent_merge="harmonic"),
                {},
                "cc" * 32,
                8000,
                _merge_card("ovarian-v1", "ovarian", ov, 0.6683),
                "2026-12-01T13:00:00+00:00",
                "0.1.0",
                metrics={"val_metric": 0.6683, "val_se": 0.0415, "val_patients": 137.0},
            ),
        ]
        rounds = tuple(
            FuseRound(
                h["round"],
                2,
                ("hosp-a", "hosp-b"),
                patients=250,
                train_loss=h["train_loss"],
                seconds=h["seconds"],
                value=h["validation"]["value"],
                parent=0.6683,
                diff=h["validation"]["diff"],
                se_diff=h["validation"]["se_diff"],
            )
            for h in HISTORY
        )
        self.run_list = [  # newest first
            FuseRun(
                "run-running-0001",
                "ovarian",
                "ovarian-v3",
                "2026-12-01T13:40:00+00:00",
                "running",
                rounds=(
                    FuseRound(
                        1,
                        3,
                        ("hosp-a", "hosp-b"),
                        failed=("hosp-x",),
                        patients=250,
                        train_loss=1.0,
                        value=0.695,
                        parent=0.6901,
                        diff=0.0049,
                        se_diff=0.003,
                    ),
                    FuseRound(
                        2, 2, ("hosp-a",), no_answer=("hosp-b",), patients=120, train_loss=0.9
                    ),
                ),
            ),
            FuseRun(
                "run-stored-0002",
                "ovarian",
                "ovarian-v1",
                "2026-12-01T13:25:00+00:00",
                "stored",
                "2026-12-01T13:30:00+00:00",
                "ovarian-v3",
                rounds=rounds,
            ),
            FuseRun(
                "run-failed-0003",
                "breast",
                "breast-v1",
                "2026-12-01T13:21:00+00:00",
                "failed",
                "2026-12-01T13:22:00+00:00",
                reason="round 1: 0 of 2 paired sites answered <b>now</b>",
            ),
        ]

    def _call(self, name: str, *args: Any) -> None:
        self.calls.append((name, args))
        if self.fail is not None:
            raise self.fail

    def status(self) -> dict[str, Any]:
        self._call("status")
        tasks = []
        for t in self.task_list:
            versions = [m for m in self.model_list if m.task_id == t.task_id]
            best = max(
                (m for m in versions if "val_metric" in m.metrics),
                key=lambda m: m.metrics["val_metric"],
                default=None,
            )
            tasks.append(
                {
                    "task": t.task_id,
                    "kind": t.spec.kind,
                    "modalities": list(t.modalities),
                    "fuse_mode": t.fuse_mode,
                    "max_block_epsilon": None,
                    "blocks": sum(b.task_id == t.task_id for b in self.block_list),
                    "latest_blocks": sum(
                        b.task_id == t.task_id and b.state == "accepted" for b in self.block_list
                    ),
                    "versions": len(versions),
                    "latest_version": versions[0].model_id if versions else "",
                    "recommended": best.model_id if best else "",
                    "recommended_metric": best.metrics["val_metric"] if best else None,
                    "recommended_reason": "best consortium validation",
                }
            )
        sites = [
            {
                "site": s.name,
                "modalities": list(s.modalities),
                "paired": s.paired,
                "state": "withdrawn" if s.withdrawn else "active",
                "blocks": s.block_count,
                "last_seen": s.last_seen,
                **({"withdrawn_reason": s.withdrawn_reason} if s.withdrawn else {}),
            }
            for s in self.site_list
        ]
        models = [
            {
                "model": m.model_id,
                "task": m.task_id,
                "recipe": m.recipe.kind,
                "parent": m.parent_id,
                "blocks": len(m.block_ids),
                "created_at": m.created_at,
                "rounds": len(m.card.get("fuse", {}).get("rounds", [])),
                "val_metric": m.metrics.get("val_metric"),
                "sites": sorted({b["site"] for b in m.card["blocks"]}),
            }
            for m in self.model_list
        ]
        return {
            "store": "/srv/store",
            "schema": 7,
            "code_version": "0.1.0",
            "blob_bytes": 12_345_678,
            "open_uploads": 1,
            "corrupt_blocks": [],
            "tasks": tasks,
            "sites": sites,
            "models": models,
        }

    def tasks(self) -> list[TaskRecord]:
        self._call("tasks")
        return list(self.task_list)

    def sites(self) -> list[SiteRecord]:
        self._call("sites")
        return list(self.site_list)

    def blocks(
        self, task_id: str = "", site: str = "", modality: str = "", include_withdrawn: bool = False
    ) -> list[BlockRecord]:
        self._call("blocks", task_id, site, modality, include_withdrawn)
        return [
            b
            for b in self.block_list
            if (not task_id or b.task_id == task_id)
            and (not site or b.site == site)
            and (not modality or b.modality == modality)
            and (include_withdrawn or b.state == "accepted")
        ]

    def models(self, task_id: str = "") -> list[ModelRecord]:
        self._call("models", task_id)
        return [m for m in self.model_list if not task_id or m.task_id == task_id]

    def model(self, model_id: str) -> ModelRecord:
        self._call("model", model_id)
        for m in self.model_list:
            if m.model_id == model_id:
                return m
        raise CallError(grpc.StatusCode.NOT_FOUND, f"no model version {model_id!r}")

    def fuse_runs(self, task_id: str = "", limit: int = 50) -> list[FuseRun]:
        self._call("fuse_runs", task_id, limit)
        return [r for r in self.run_list if not task_id or r.task_id == task_id][:limit]


# ---- fixtures and helpers ------------------------------------------------------------------------
@pytest.fixture(scope="module")
def signer_pem(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    ca = CertificateAuthority.init(tmp_path_factory.mktemp("ca"))
    cert = ca.issue(
        Identity("hosp-a", "site", ("clinical", "genes"), True, b"k" * 32), new_key().public_key()
    )
    return cert.public_bytes(serialization.Encoding.PEM)


@pytest.fixture(scope="module")
def fake(signer_pem: bytes) -> FakeCoordinator:
    return FakeCoordinator(signer_pem)


@pytest.fixture(scope="module")
def console(fake: FakeCoordinator) -> Iterator[Console]:
    with make_console(fake, "127.0.0.1:0", label="admin alice → coordinator:50051") as c:
        yield c


@pytest.fixture
def clean(fake: FakeCoordinator) -> Iterator[FakeCoordinator]:
    fake.calls.clear()
    fake.fail = None
    yield fake
    fake.fail = None


@pytest.fixture(scope="module")
def locked(fake: FakeCoordinator) -> Iterator[Console]:
    with make_console(fake, "127.0.0.1:0", token=TOKEN) as c:
        yield c


def request(
    c: Console, path: str, method: str = "GET", headers: dict[str, str] | None = None
) -> tuple[int, dict[str, str], str]:
    """Status, headers (lower-case names) and body, with http.client (so Host and method are ours to
    set)."""
    conn = http.client.HTTPConnection("127.0.0.1", c.port, timeout=10)
    try:
        conn.request(
            method, path, body=b"x" if method in ("POST", "PUT") else None, headers=headers or {}
        )
        r = conn.getresponse()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read().decode()
    finally:
        conn.close()


def get(c: Console, path: str) -> str:
    with urllib.request.urlopen(c.url.rstrip("/") + path, timeout=10) as r:
        assert r.status == 200
        return str(r.read().decode())


class Hooks(HTMLParser):
    """The text of every element with a ``data-k``, keyed by (its row or section's hook, key): the
    innermost hook ("data-site=hosp-a") where that is unique on the page, else the path of hooks
    ("data-run=r1/data-round=1")."""

    VOID = frozenset({"meta", "link", "br", "img", "input", "hr", "col", "source", "wbr"})
    SCOPES = ("data-task", "data-site", "data-model", "data-block", "data-run", "data-round")

    def __init__(self) -> None:
        super().__init__()
        self.stack: list[tuple[str, str, str]] = []  # tag, path of hooks, data-k
        self.found: dict[tuple[str, str], str] = {}

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        path = self.stack[-1][1] if self.stack else ""
        own = next((f"{s}={a[s]}" for s in self.SCOPES if a.get(s) is not None), "")
        path = f"{path}/{own}".lstrip("/") if own else path
        if tag not in self.VOID:
            self.stack.append((tag, path, a.get("data-k") or ""))
            if a.get("data-k"):
                self.found[(path, str(a["data-k"]))] = ""

    def handle_endtag(self, tag: str) -> None:
        while self.stack and self.stack.pop()[0] != tag:
            pass

    def handle_data(self, data: str) -> None:
        for _, path, key in self.stack:
            if key:
                self.found[(path, key)] += data


def hooks(html: str) -> dict[tuple[str, str], str]:
    p = Hooks()
    p.feed(html)
    out = {k: v.strip() for k, v in p.found.items()}
    inner: dict[tuple[str, str], list[str]] = {}
    for (path, key), text in out.items():
        inner.setdefault((path.rpartition("/")[2], key), []).append(text)
    out.update({k: v[0] for k, v in inner.items() if len(v) == 1 and k not in out})
    return out


def svgs(html: str) -> list[ET.Element]:
    return [ET.fromstring(s) for s in re.findall(r"<svg\b.*?</svg>", html, flags=re.S)]


NS = "{http://www.w3.org/2000/svg}"


def points(svg: ET.Element) -> list[ET.Element]:
    return [e for e in svg.iter(f"{NS}circle") if e.get("class") == "pt"]


def gaps(svg: ET.Element) -> list[ET.Element]:
    return [e for e in svg.iter(f"{NS}g") if e.get("class") == "gap"]


# ---- pages ---------------------------------------------------------------------------------------
def test_overview_counts_and_rows_come_from_status(
    console: Console, clean: FakeCoordinator
) -> None:
    html = get(console, "/")
    k = hooks(html)
    assert "<title>mmlego console — Overview</title>" in html
    assert {
        key: k[("", f"count.{key}")]
        for key in (
            "tasks",
            "active_sites",
            "withdrawn_sites",
            "blocks",
            "versions",
            "open_uploads",
            "corrupt_blocks",
        )
    } == {
        "tasks": "2",
        "active_sites": "2",
        "withdrawn_sites": "1",
        "blocks": "6",
        "versions": "4",
        "open_uploads": "1",
        "corrupt_blocks": "0",
    }
    ov = "data-task=ovarian"
    assert (k[(ov, "blocks")], k[(ov, "latest_blocks")], k[(ov, "versions")]) == ("4", "3", "3")
    assert (k[(ov, "latest_version")], k[(ov, "recommended")], k[(ov, "recommended_metric")]) == (
        "ovarian-v3",
        "ovarian-v3",
        "0.6901",
    )
    assert k[("data-task=breast", "recommended")] == "breast-v1"
    assert [k[("data-site=hosp-a", x)] for x in ("state", "blocks", "paired", "modalities")] == [
        "active",
        "3",
        "paired",
        "clinical, genes",
    ]
    assert [k[("data-site=hosp-c", x)] for x in ("state", "paired", "modalities")] == [
        "withdrawn",
        "unpaired",
        "genes",
    ]
    assert 'title="2026-12-01T13:55:00+00:00"' in html and re.search(r"\d+ (min|h|d) ago", html)
    assert 'data-live="5"' in html and clean.calls == [("status", ())]


def test_text_from_the_coordinator_is_escaped(console: Console, clean: FakeCoordinator) -> None:
    html = get(console, "/")
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "<script>alert" not in html
    fuse = get(console, "/fuse")
    assert "&lt;b&gt;now&lt;/b&gt;" in fuse and "<b>now" not in fuse


def test_pages_hold_under_the_csp(console: Console, clean: FakeCoordinator) -> None:
    for path in ("/", "/blocks", "/versions", "/versions/ovarian-v3", "/fuse", "/versions/nope"):
        status, _, html = request(console, path)
        assert status in (200, 404), path
        assert not re.search(r"<script(?![^>]*\bsrc=)", html), f"inline script on {path}"
        assert not re.search(r"\sstyle=|<style", html), f"inline style on {path}"
        assert re.search(r"<nav\b", html) and "<main" in html


def test_blocks_page_shows_every_block_per_site(console: Console, clean: FakeCoordinator) -> None:
    html = get(console, "/blocks")
    k = hooks(html)
    for b in clean.block_list:
        assert f'data-block="{b.block_id}"' in html
    assert k[(f"data-block={'04' * 32}", "state")] == "withdrawn"
    assert re.search(rf'<tr data-block="{"04" * 32}" class="withdrawn">', html)
    assert (
        k[(f"data-block={'01' * 32}", "patients")],
        k[(f"data-block={'01' * 32}", "val_metric")],
    ) == ("120", "0.6400")
    assert (
        k[(f"data-block={'01' * 32}", "signer")] == "hosp-a"
    )  # read from the signer's certificate
    assert k[(f"data-block={'03' * 32}", "dp_epsilon")] == "2.5"
    assert ("blocks", "", "", "", True) in [(n, *a) for n, a in clean.calls]
    assert (
        "patients in the latest blocks: breast/clinical 200, ovarian/clinical 120, ovarian/genes "
        "118" in html
    )
    assert "<title>mmlego console — Blocks</title>" in html and "data-live" not in html


def test_blocks_filters_reach_the_source(console: Console, clean: FakeCoordinator) -> None:
    html = get(console, "/blocks?task=breast&site=hosp-b")
    assert ("blocks", ("breast", "hosp-b", "", True)) in clean.calls
    assert html.count("<tr data-block=") == 1 and f'data-block="{"06" * 32}"' in html
    assert '<option value="breast" selected>' in html


def test_versions_page_rows_lineage_and_plot(console: Console, clean: FakeCoordinator) -> None:
    html = get(console, "/versions")
    k = hooks(html)
    v1, v2, v3 = "data-model=ovarian-v1", "data-model=ovarian-v2", "data-model=ovarian-v3"
    assert [k[(v1, x)] for x in ("recipe", "parent", "val_metric", "blocks", "children")] == [
        "merge",
        "-",
        "0.6683",
        "3",
        "ovarian-v3",
    ]
    assert k[(v2, "val_metric")] == "not measured"
    assert [k[(v3, x)] for x in ("recipe", "parent", "val_metric")] == [
        "fuse",
        "ovarian-v1",
        "0.6901",
    ]
    assert "hosp-a 0.700" in k[(v1, "per_site")] and "hosp-b 0.660" in k[(v3, "per_site")]
    assert '<a href="/versions/ovarian-v1">ovarian-v1</a>' in html
    plots = {re.sub(r".*— ", "", svg.findtext(f"{NS}title") or ""): svg for svg in svgs(html)}
    assert set(plots) == {"ovarian", "breast"}
    assert (len(points(plots["ovarian"])), len(gaps(plots["ovarian"]))) == (
        2,
        1,
    )  # v1 and v3 measured; v2 a gap
    assert len(points(plots["breast"])) == 1
    tips = [e.findtext(f"{NS}title") for e in points(plots["ovarian"])]
    assert tips == [
        "ovarian-v1 (merge): 0.6683 ± 0.0415",
        "ovarian-v3 (fuse): 0.6901",
    ]  # creation order
    assert 'data-live="5"' in html


def test_versions_filter_by_task(console: Console, clean: FakeCoordinator) -> None:
    html = get(console, "/versions?task=breast")
    assert ("models", ("breast",)) in clean.calls
    assert 'data-model="breast-v1"' in html and 'ovarian-v1"' not in html


def test_version_card_of_a_merge(console: Console, clean: FakeCoordinator) -> None:
    html = get(console, "/versions/ovarian-v1")
    assert "<title>mmlego console — Version ovarian-v1</title>" in html
    assert (
        re.search(r'<tr data-candidate="size" class="chosen">', html)
        and 'data-candidate="uniform" class=""' in html
    )
    k = hooks(html)
    assert (
        k[("data-site=hosp-a", "value")] == "0.7000"
        and k[("data-model=ovarian-v1", "val_metric")] == "0.6683"
    )
    assert '<a href="/versions/ovarian-v3">ovarian-v3</a>' in html  # its child
    assert re.search(r"<pre>[^<]*# Model ovarian-v1", html)
    assert (
        "consortium validation 0.6683 +- 0.0415 on 2 site(s)" in html
    )  # render.validation_line, as the CLI says it


def test_version_card_of_a_fuse(console: Console, clean: FakeCoordinator) -> None:
    html = get(console, "/versions/ovarian-v3")
    assert (
        re.search(r'<tr data-round="2" class="chosen">', html)
        and '<tr data-round="1" class="">' in html
    )
    assert "consortium validation 0.6901; round 2: +0.0218 over the parent" in html
    (plot,) = svgs(html)
    assert len(points(plot)) == 2
    assert [e.get("class") for e in plot.iter(f"{NS}g") if e.get("class") == "reference"] == [
        "reference"
    ]
    assert "parent ovarian-v1: 0.6683" in ET.tostring(plot, encoding="unicode")
    assert "## LegoFuse rounds" in html


def test_fuse_runs_page(console: Console, clean: FakeCoordinator) -> None:
    html = get(console, "/fuse")
    k = hooks(html)
    assert [m for m in re.findall(r'data-run="([^"]+)"', html)] == [
        "run-running-0001",
        "run-stored-0002",
        "run-failed-0003",
    ]
    assert [
        k[(f"data-run={r}", "state")]
        for r in ("run-running-0001", "run-stored-0002", "run-failed-0003")
    ] == ["running", "stored", "failed"]
    assert k[("data-run=run-stored-0002", "model")] == "ovarian-v3"
    running = "data-run=run-running-0001"
    assert [
        k[(f"{running}/data-round=1", x)]
        for x in ("asked", "answered", "failed", "patients", "validation", "diff")
    ] == ["3", "2", "1", "250", "0.6950", "+0.0049"]
    assert (
        k[(f"{running}/data-round=2", "no_answer")],
        k[(f"{running}/data-round=2", "validation")],
    ) == ("1", "-")
    assert k[("data-run=run-stored-0002/data-round=2", "diff")] == "+0.0218"
    assert ("data-round=1", "asked") not in k  # two runs have a round 1
    plots = svgs(html)
    assert [len(points(p)) for p in plots] == [1, 2]  # the failed run has no rounds, so no plot
    assert len(gaps(plots[0])) == 1
    assert ("fuse_runs", ("", 50)) in clean.calls and 'data-live="5"' in html


def test_static_files_and_healthz(console: Console, clean: FakeCoordinator) -> None:
    status, headers, body = request(console, "/static/live.js")
    assert (
        status == 200
        and headers["content-type"].startswith("text/javascript")
        and "DOMParser" in body
    )
    status, headers, body = request(console, "/static/style.css")
    assert status == 200 and headers["content-type"].startswith("text/css")
    assert request(console, "/healthz")[::2] == (200, "ok\n") and clean.calls == []


def test_head_has_headers_and_no_body(console: Console, clean: FakeCoordinator) -> None:
    status, headers, body = request(console, "/versions", method="HEAD")
    assert (status, body) == (200, "") and int(headers["content-length"]) > 1000


# ---- refusals ------------------------------------------------------------------------------------
def test_unknown_pages_are_404(console: Console, clean: FakeCoordinator) -> None:
    for path in ("/nope", "/static/../server.py", "/static/app.py", "/versions/a/b"):
        assert request(console, path)[0] == 404, path
    status, _, html = request(console, "/versions/nope")
    assert status == 404 and "no model version &#39;nope&#39;" in html and "<nav" in html


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "OPTIONS", "PATCH"])
def test_only_get_and_head(console: Console, clean: FakeCoordinator, method: str) -> None:
    status, headers, _ = request(console, "/", method=method)
    assert status == 405 and headers["allow"] == "GET, HEAD"
    assert headers["x-content-type-options"] == "nosniff" and clean.calls == []


def test_a_foreign_host_header_is_refused(console: Console, clean: FakeCoordinator) -> None:
    assert request(console, "/", headers={"Host": f"evil.example:{console.port}"})[0] == 421
    assert request(console, "/", headers={"Host": "127.0.0.1:1"})[0] == 421
    for host in (f"localhost:{console.port}", f"127.0.0.1:{console.port}", f"[::1]:{console.port}"):
        assert request(console, "/healthz", headers={"Host": host})[0] == 200, host
    assert clean.calls == []


def test_security_headers_on_every_response(console: Console, clean: FakeCoordinator) -> None:
    for path, method, host in (
        ("/", "GET", ""),
        ("/nope", "GET", ""),
        ("/", "POST", ""),
        ("/", "GET", "evil.example"),
        ("/static/style.css", "GET", ""),
    ):
        _, h, _ = request(console, path, method, {"Host": host} if host else None)
        assert h["content-security-policy"] == (
            "default-src 'none'; style-src 'self'; script-src 'self'; img-src 'self'; "
            "connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
        )
        assert (h["x-content-type-options"], h["referrer-policy"], h["cache-control"]) == (
            "nosniff",
            "no-referrer",
            "no-store",
        )


def test_a_refusing_coordinator_gives_a_502_page(console: Console, clean: FakeCoordinator) -> None:
    clean.fail = CallError(
        grpc.StatusCode.UNAVAILABLE, "failed to connect to all addresses <ipv4:10.0.0.1:50051>"
    )
    for path in ("/", "/blocks", "/versions", "/versions/ovarian-v1", "/fuse"):
        status, _, html = request(console, path)
        assert status == 502, path
        assert (
            "failed to connect to all addresses &lt;ipv4:10.0.0.1:50051&gt;" in html
            and "may be down" in html
        )
        assert "Traceback" not in html


def test_a_bug_gives_a_500_page_without_a_traceback(
    console: Console, clean: FakeCoordinator
) -> None:
    clean.fail = RuntimeError("secret internals")
    status, _, html = request(console, "/")
    assert status == 500 and "secret internals" not in html and "Traceback" not in html


# ---- the token -----------------------------------------------------------------------------------
def test_token_is_needed_for_every_page_and_file(locked: Console, clean: FakeCoordinator) -> None:
    for path in ("/", "/static/style.css", "/versions/ovarian-v1"):
        status, headers, html = request(locked, path)
        assert status == 401 and headers["www-authenticate"].startswith("Bearer"), path
    assert "/login?token=" in html and clean.calls == []
    assert request(locked, "/", headers={"Authorization": f"Bearer {TOKEN}"})[0] == 200
    assert request(locked, "/", headers={"Authorization": f"Bearer {TOKEN}x"})[0] == 401
    assert request(locked, "/", headers={"Cookie": f"other=1; mmlego_console={TOKEN}"})[0] == 200
    assert (
        request(locked, "/", headers={"Cookie": "mmlego_console=wrong-token-0123456789"})[0] == 401
    )
    assert request(locked, "/healthz")[0] == 200


def test_login_sets_the_cookie(locked: Console, clean: FakeCoordinator) -> None:
    status, headers, _ = request(locked, f"/login?token={TOKEN}")
    assert (status, headers["location"]) == (303, "/")
    assert headers["set-cookie"] == f"mmlego_console={TOKEN}; HttpOnly; SameSite=Strict; Path=/"
    assert request(locked, "/login?token=nope")[0] == 401
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(locked.url, timeout=10)
    assert err.value.code == 401


# ---- where it may listen -------------------------------------------------------------------------
def test_listen_addresses(fake: FakeCoordinator) -> None:
    with pytest.raises(ValueError, match="loopback only"):
        make_console(fake, "0.0.0.0:0")
    with pytest.raises(ValueError, match="loopback only"):
        make_console(fake, "example.org:8765")
    with pytest.raises(ValueError, match="needs a token"):
        make_console(fake, "0.0.0.0:0", allow_remote=True)
    with pytest.raises(ValueError, match="at least 16 characters"):
        make_console(fake, "0.0.0.0:0", allow_remote=True, token="short")
    with pytest.raises(ValueError, match="at least 16 characters"):
        make_console(fake, "127.0.0.1:0", token="has spaces in it, 1234")
    for bad in ("8765", "127.0.0.1", "127.0.0.1:http", "::1:8765", "127.0.0.1:70000", ":8765"):
        with pytest.raises(ValueError, match="is not host:port"):
            make_console(fake, bad)
    assert parse_listen("[::1]:8765") == ("::1", 8765) and parse_listen("LocalHost:1") == (
        "localhost",
        1,
    )


def test_a_remote_console_needs_its_token(fake: FakeCoordinator) -> None:
    with make_console(fake, "0.0.0.0:0", allow_remote=True, token=TOKEN) as c:
        assert request(c, "/")[0] == 401
        assert request(c, "/", headers={"Authorization": f"Bearer {TOKEN}"})[0] == 200
        assert (
            request(c, "/healthz", headers={"Host": f"192.0.2.7:{c.port}"})[0] == 200
        )  # any address: rebinding needs a name
        assert request(c, "/healthz", headers={"Host": f"evil.example:{c.port}"})[0] == 421


def test_guard_of_a_named_remote_host() -> None:
    g = Guard.of("console.example.org", 8443, TOKEN)
    assert g.host_ok("Console.Example.Org:8443") and g.host_ok("localhost:8443")
    assert not g.host_ok("console.example.org:8444") and not g.host_ok("10.0.0.1:8443")


def test_ipv6_loopback(fake: FakeCoordinator) -> None:
    try:
        c = make_console(fake, "[::1]:0")
    except ValueError as exc:
        pytest.skip(f"no IPv6 loopback here: {exc}")
    with c:
        assert c.url == f"http://[::1]:{c.port}/"
        conn = http.client.HTTPConnection("::1", c.port, timeout=10)
        conn.request("GET", "/healthz")
        assert conn.getresponse().status == 200
        conn.close()


def test_shutdown_closes_the_socket(fake: FakeCoordinator) -> None:
    c = make_console(fake, "127.0.0.1:0")
    c.shutdown()  # never served: must not hang
    assert re.fullmatch(r"http://127\.0\.0\.1:\d+/", c.url)
    with make_console(fake, "localhost:0") as c:
        assert c.url == f"http://localhost:{c.port}/"
        port = c.port
    with pytest.raises(OSError):
        http.client.HTTPConnection("127.0.0.1", port, timeout=2).request("GET", "/healthz")


# ---- the plot ------------------------------------------------------------------------------------
def test_line_plot_is_escaped_well_formed_xml() -> None:
    svg = line_plot(
        [Point("v<1>&", 0.5), Point("v2", None), Point("v3", 0.7, err=0.05, tip='"quoted" & <b>')],
        'a <title> & "quotes"\x01',
        y_label="<y>",
        x_label="x&",
        reference=Reference(0.6, "parent <p>"),
    )
    root = ET.fromstring(svg)
    assert root.findtext(f"{NS}title") == 'a <title> & "quotes"'
    assert [e.findtext(f"{NS}title") for e in points(root)] == ["v<1>&: 0.5000", '"quoted" & <b>']
    assert [e.findtext(f"{NS}title") for e in gaps(root)] == ["v2: not measured"]
    assert (
        len(list(root.iter(f"{NS}polyline"))) == 0
    )  # the gap leaves no two neighbouring values to join
    (ref,) = [e for e in root.iter(f"{NS}g") if e.get("class") == "reference"]
    assert ref.findtext(f"{NS}title") == "parent <p>"


def test_line_plot_joins_neighbours_and_orders_y() -> None:
    root = ET.fromstring(line_plot([Point("a", 0.1), Point("b", 0.3), Point("c", 0.2)], "t"))
    (line,) = root.iter(f"{NS}polyline")
    ys = [float(p.split(",")[1]) for p in (line.get("points") or "").split()]
    assert ys[1] < ys[2] < ys[0]  # SVG y grows downwards
    assert len(points(ET.fromstring(line_plot([Point("only", 0.5)], "one")))) == 1
    assert len(points(ET.fromstring(line_plot([], "empty")))) == 0


def test_nice_ticks() -> None:
    assert nice_ticks(0.0, 1.0) == [0.0, 0.2, 0.4, 0.6, 0.8, 1.0]
    assert nice_ticks(0.612, 0.743) == [0.62, 0.64, 0.66, 0.68, 0.7, 0.72, 0.74]
    assert nice_ticks(1.0, 1.0) == [1.0]


def test_templates_and_static_are_package_data() -> None:
    here = Path(__file__).parents[2] / "admin" / "console"
    assert {p.name for p in (here / "static").iterdir()} >= {"style.css", "live.js"}
    assert {p.name for p in (here / "templates").iterdir()} >= {
        "base.html",
        "overview.html",
        "blocks.html",
        "versions.html",
        "version.html",
        "fuse.html",
        "error.html",
    }
