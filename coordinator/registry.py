"""The registry's domain operations (no gRPC here): tasks, listings, downloads, withdrawals,
uploads and merges over one :class:`Store`."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from dataclasses import replace

from common.client.connect import CHUNK_BYTES
from common.evaluation import Consortium
from common.evaluation.candidates import JobStatus
from common.pki import Identity
from common.recipe_defaults import DEFAULT_POLICY
from common.records import (
    BlockRecord,
    Chunk,
    ModelRecord,
    Recommendation,
    SiteRecord,
    TaskRecord,
    utc_now,
)

from .config import CoordinatorConfig, EvaluationSection
from .errors import Kind, RegistryError, invalid, not_found
from .evaluations import Evaluations
from .merging import merge_task
from .recommend import evaluate_versions, recommend
from .store import Paged, Store
from .uploads import Uploads

log = logging.getLogger("mmlego.coordinator")


class Registry:
    def __init__(
        self,
        store: Store,
        max_block_bytes: int = 1 << 30,
        max_open_uploads_per_site: int = 8,
        evaluation: EvaluationSection | None = None,
    ) -> None:
        """``evaluation``: coordinator.toml's [evaluation]; None or a zero deadline publishes
        versions without asking the sites to score them."""
        self.store = store
        self.uploads = Uploads(store, max_block_bytes, max_open_uploads_per_site)
        self.evaluation = evaluation or EvaluationSection(deadline_s=0.0)
        self.evaluations = Evaluations(store, self.evaluation)

    @classmethod
    def open(cls, config: CoordinatorConfig, recover: bool = True) -> Registry:
        store = Store(
            config.store,
            config.upload_ttl_s,
            config.verify_on_start,
            recover=recover,
            busy_timeout_s=config.busy_timeout_s,
        )
        return cls(
            store, config.max_block_bytes, config.max_open_uploads_per_site, config.evaluation
        )

    @property
    def evaluating(self) -> bool:
        """Whether versions are measured by the sites before they are published."""
        return self.evaluation.deadline_s > 0

    def close(self) -> None:
        self.store.close()

    # ---- callers ------------------------------------------------------------------------------
    def seen(self, who: Identity) -> None:
        if who.role == "site":
            self.store.sites.touch(who.name, who.modalities, who.paired)

    # ---- tasks --------------------------------------------------------------------------------
    def create_task(self, task: TaskRecord, actor: str) -> TaskRecord:
        task = replace(task, created_at=utc_now())
        if not self.store.tasks.create(task, actor):
            raise RegistryError(
                Kind.EXISTS,
                f"task {task.task_id!r} already exists; tasks are immutable, choose a new id",
            )
        return task

    def task(self, task_id: str) -> TaskRecord:
        return self.uploads.task(task_id)

    def tasks(self) -> list[TaskRecord]:
        return self.store.tasks.listing()

    # ---- blocks, sites, models ----------------------------------------------------------------
    def block(self, block_id: str) -> BlockRecord:
        b = self.store.blocks.get(block_id)
        if b is None or b.state == "corrupt":
            raise not_found(f"no block {block_id[:80]!r}")
        return b

    def blocks(
        self, task_id: str = "", site: str = "", modality: str = "", include_withdrawn: bool = False
    ) -> list[BlockRecord]:
        return self.store.blocks.listing(task_id, site, modality, include_withdrawn)

    def block_page(
        self,
        task_id: str,
        site: str,
        modality: str,
        include_withdrawn: bool,
        before_seq: int | None,
        limit: int,
    ) -> list[Paged[BlockRecord]]:
        """Blocks newest first, only those older than ``before_seq``, at most ``limit``."""
        return self.store.blocks.page(task_id, site, modality, include_withdrawn, before_seq, limit)

    def sites(self) -> list[SiteRecord]:
        return self.store.sites.listing()

    def site(self, name: str) -> SiteRecord | None:
        """The site as the registry saw it; None when it never called."""
        return self.store.sites.get(name)

    def model(self, model_id: str) -> ModelRecord:
        record = self.store.models.get(model_id)
        if record is None:
            raise not_found(f"no model version {model_id[:80]!r}")
        return record

    def models(self, task_id: str = "") -> list[ModelRecord]:
        return self.store.models.listing(task_id)

    def model_page(self, task_id: str, before_seq: int | None, limit: int) -> list[Paged[bytes]]:
        """Serialized versions newest first, only those older than ``before_seq``, at most
        ``limit`` (a card is decoded only by who reads it)."""
        return self.store.models.page(task_id, before_seq, limit)

    def read_chunks(self, sha: str, offset: int = 0) -> Iterator[tuple[int, bytes]]:
        """(offset, bytes) of a stored blob from ``offset``, in chunks of at most 1 MiB."""
        path = self.store.blobs.path(sha)
        size = path.stat().st_size
        if not 0 <= offset <= size:
            raise invalid(f"offset {offset} is outside the {size} bytes stored")
        with open(path, "rb") as f:
            f.seek(offset)
            while buf := f.read(CHUNK_BYTES):
                yield offset, buf
                offset += len(buf)

    # ---- writes -------------------------------------------------------------------------------
    def upload(
        self, who: Identity, signer_cert: bytes, chunks: Iterator[Chunk]
    ) -> tuple[BlockRecord, bool]:
        return self.uploads.receive(who, signer_cert, chunks)

    def merge(
        self,
        task_id: str,
        latent_merge: str = "",
        head_merge: str = "",
        actor: str = "operator",
        policy: str = "",
        deadline_s: float = 0.0,
        stop: Callable[[], bool] = lambda: False,
        evaluate: bool = True,
        layout: str = "",
    ) -> ModelRecord:
        """A new version: the recipe that ``policy`` chooses (uniform, ensemble, auto; empty:
        uniform) among flat or hierarchical recipes (``layout``: auto, flat, modality; empty:
        auto), measured by the sites first when evaluation is on and ``evaluate`` (waiting at
        most ``deadline_s``; 0: the configured deadline)."""
        return merge_task(
            self.store,
            task_id,
            latent_merge,
            head_merge,
            actor,
            policy or DEFAULT_POLICY,
            self.evaluations if self.evaluating and evaluate else None,
            deadline_s,
            self.evaluation.z,
            stop,
            layout or "auto",
        )

    def evaluate(
        self,
        model_ids: list[str],
        deadline_s: float = 0.0,
        actor: str = "operator",
        stop: Callable[[], bool] = lambda: False,
    ) -> tuple[JobStatus, dict[str, Consortium]]:
        """Ask the sites to score stored versions now; their scores are kept with the versions."""
        if not self.evaluating:
            raise RegistryError(
                Kind.PRECONDITION,
                "federated evaluation is off on this coordinator ([evaluation] deadline_s = 0)",
            )
        return evaluate_versions(self.store, self.evaluations, model_ids, deadline_s, actor, stop)

    def recommended(self, task_id: str, site: str = "") -> Recommendation:
        return recommend(self.store, task_id, site)

    def withdraw(self, site: str, reason: str, actor: str) -> SiteRecord:
        rec = self.store.sites.withdraw(site, reason, actor)
        if rec is None:
            raise not_found(f"no site {site[:80]!r} has contacted this registry")
        log.info(
            "withdrew site %s (%s)",
            site,
            reason,
            extra={"event": "site-withdrawn", "site": site, "actor": actor},
        )
        return rec
