"""LegoFuse-style rounds with every site in this process: a :class:`Transport` whose nodes are
datasets. The coordinator's real round loop and aggregation run on it; what each node does is a
site's real local round. Used for centralized references and baselines (simulate, benchmarks),
where the Flower transport itself is not what is measured."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from flwr.app import RecordDict

from common.data.dataset import MultimodalDataset
from common.fuse import FuseConfig
from common.fuse.messages import TrainInstruction
from common.fuse.siteround import site_round


class LocalSites:
    """Node i trains on ``parts[i]`` with a model from ``model_factory`` (the state arrives in
    the message)."""

    def __init__(
        self, model_factory: Callable[[], Any], parts: list[MultimodalDataset], cfg: FuseConfig
    ) -> None:
        self.factory, self.parts, self.cfg = model_factory, parts, cfg

    def node_ids(self) -> list[int]:
        return list(range(len(self.parts)))

    def ask(
        self,
        node_ids: Iterable[int],
        message_type: str,
        content: Callable[[int], RecordDict],
        group: str,
        timeout_s: float,
    ) -> dict[int, RecordDict | str]:
        out: dict[int, RecordDict | str] = {}
        for n in node_ids:
            instruction = TrainInstruction.from_recorddict(content(n))
            reply = site_round(self.factory(), instruction, self.parts[n], self.cfg)
            out[n] = reply.to_recorddict()
        return out
