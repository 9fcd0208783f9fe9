"""What the coordinator tells Prometheus, and its health endpoint: an HTTP server (plaintext, on
``[metrics] listen``) with ``/metrics`` and ``/healthz``.

Counters and latencies are kept by the registry process itself (calls, refusals by reason,
uploads, merges). What the store holds (tasks, sites, blocks, model versions, fuse rounds, bytes)
is read from the store at every scrape, so it also counts what other processes wrote (the fuse
run's ServerApp stores its version directly)."""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Iterable, Iterator
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import CollectorRegistry, Counter, Histogram, make_wsgi_app
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from .store import Store

log = logging.getLogger("mmlego.coordinator")
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)


class StoreCollector(Collector):
    """Gauges of what the store holds, read when Prometheus scrapes."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def collect(self) -> Iterator[Metric]:
        counts = self.store.counts()
        tasks = GaugeMetricFamily("mmlego_tasks", "Tasks defined")
        tasks.add_metric([], counts.tasks)
        yield tasks
        sites = GaugeMetricFamily(
            "mmlego_sites", "Sites the registry knows, by state", labels=["state"]
        )
        for withdrawn, n in counts.sites.items():
            sites.add_metric(["withdrawn" if withdrawn else "active"], n)
        yield sites
        blocks = GaugeMetricFamily("mmlego_blocks", "Stored blocks, by state", labels=["state"])
        for state, n in counts.blocks.items():
            blocks.add_metric([state], n)
        yield blocks
        uploads = GaugeMetricFamily("mmlego_open_uploads", "Unfinished (resumable) uploads")
        uploads.add_metric([], counts.open_uploads)
        yield uploads
        versions = GaugeMetricFamily(
            "mmlego_model_versions", "Model versions, by recipe", labels=["recipe"]
        )
        rounds = 0
        by_recipe: dict[str, int] = {}
        for record in self.store.models.listing():
            by_recipe[record.recipe.kind] = by_recipe.get(record.recipe.kind, 0) + 1
            rounds += len(record.card.get("fuse", {}).get("rounds", []))
        for recipe, n in sorted(by_recipe.items()):
            versions.add_metric([recipe], n)
        yield versions
        done = CounterMetricFamily(
            "mmlego_fuse_rounds", "LegoFuse rounds behind the stored fused versions"
        )
        done.add_metric([], rounds)
        yield done
        jobs = GaugeMetricFamily(
            "mmlego_evaluations", "Evaluation jobs, by state", labels=["state"]
        )
        for state, n in counts.evaluations.items():
            jobs.add_metric([state], n)
        yield jobs
        size = GaugeMetricFamily(
            "mmlego_store_bytes", "Bytes on disk, by part of the store", labels=["part"]
        )
        size.add_metric(["blobs"], sum(p.stat().st_size for _, p in self.store.blobs.all_blobs()))
        size.add_metric(
            ["database"], sum(f.stat().st_size for f in self.store.root.glob("registry.sqlite*"))
        )
        size.add_metric(
            ["uploads"], sum(f.stat().st_size for f in self.store.blobs.partials.iterdir())
        )
        yield size


class Metrics:
    """The registry process's metrics (one set per server, so tests can run several)."""

    def __init__(self, store: Store) -> None:
        self.prometheus = CollectorRegistry()
        self.rpc_seconds = Histogram(
            "mmlego_rpc_duration_seconds",
            "Time to answer a call, by method and status code",
            ["method", "code"],
            buckets=LATENCY_BUCKETS,
            registry=self.prometheus,
        )
        self.rejections = Counter(
            "mmlego_rejections",
            "Calls refused, by method and reason (the status)",
            ["method", "reason"],
            registry=self.prometheus,
        )
        self.uploads = Counter(
            "mmlego_uploads",
            "Block uploads completed, by result",
            ["result"],
            registry=self.prometheus,
        )
        self.merges = Counter(
            "mmlego_merges", "Merge versions built by this process", registry=self.prometheus
        )
        self.fuse_runs = Counter(
            "mmlego_fuse_runs",
            "LegoFuse runs started through the Fuse call, by result",
            ["result"],
            registry=self.prometheus,
        )
        self.evaluation_reports = Counter(
            "mmlego_evaluation_reports",
            "Site reports kept, scored or declined",
            ["result"],
            registry=self.prometheus,
        )
        self.prometheus.register(StoreCollector(store))

    def refused(self, method: str, reason: str) -> None:
        """Count a refusal; ``reason`` is the error kind ("permission denied" ->
        permission_denied)."""
        self.rejections.labels(method, reason.replace(" ", "_")).inc()


class _Quiet(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        log.debug("metrics: " + format, *args)


def http_app(metrics: Metrics, healthy: Callable[[], str | None]) -> Callable[..., Iterable[bytes]]:
    """``/metrics`` (Prometheus text format) and ``/healthz`` (200 "ok", or 503 with the reason)."""
    prometheus = make_wsgi_app(metrics.prometheus)

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if path == "/healthz":
            problem = healthy()
            start_response(
                "503 Service Unavailable" if problem else "200 OK", [("Content-Type", "text/plain")]
            )
            return [(problem or "ok").encode()]
        if path == "/metrics":
            return prometheus(environ, start_response)  # type: ignore[no-any-return]
        start_response("404 Not Found", [("Content-Type", "application/json")])
        return [json.dumps({"error": "not found", "paths": ["/metrics", "/healthz"]}).encode()]

    return app


def serve_http(address: str, app: Callable[..., Iterable[bytes]]) -> tuple[WSGIServer, int]:
    """Serve ``app`` on ``host:port`` in a daemon thread; returns the server and its bound port."""
    host, _, port = address.rpartition(":")
    server = make_server(host.strip("[]") or "0.0.0.0", int(port), app, handler_class=_Quiet)
    threading.Thread(target=server.serve_forever, name="metrics", daemon=True).start()
    return server, server.server_port
