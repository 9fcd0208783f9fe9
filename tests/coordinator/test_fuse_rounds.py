"""LegoFuse rounds without Flower processes: the site handlers are called in this process
(what each SuperNode's ClientApp runs), the coordinator's round loop and FedAvg are the real ones,
and the registry is a real server. FedAvg over one paired site equals centralized fine-tuning; a
run over every site (``sites`` "all") trains an unpaired site too."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pytest
import torch
from flwr.app import Array, ArrayRecord, RecordDict
from flwr.supercore.privacy_accounting import GaussianPrivacyEvent

from common.client import RegistryClient
from common.data.dataset import ModalityData, MultimodalDataset
from common.data.export import export_site_folder
from common.data.sitefolder import load_site_folder
from common.data.splits import site_split
from common.fuse import FuseConfig, centralized_fuse, paired_only
from common.fuse.history import RoundValidation
from common.fuse.messages import DescribeQuery, TrainInstruction, TrainReply
from common.fuse.wire import pack, pack_runs
from common.lego import LegoFuse
from coordinator.config import CoordinatorConfig
from coordinator.fuse_rounds import FuseError, NodeInfo, discover, run_rounds, takes_part
from coordinator.fusing import starting_model, state_of, store_fused
from coordinator.launch import free_port
from coordinator.registry import Registry
from site_client import fuse_client
from site_client.predict import predict_frame
from tests.coordinator.conftest import Consortium, signed_block
from tests.factories import edit_site_toml

Coord = tuple[str, CoordinatorConfig]


class InProcessTransport:
    """Delivers every message by calling the node's handler here; ``silent`` nodes never answer
    (as a killed SuperNode); a handler's exception becomes an error reply."""

    def __init__(self, nodes: dict[int, dict[str, str]], silent: Iterable[int] = ()) -> None:
        self.nodes, self.silent, self.calls = nodes, set(silent), 0

    def node_ids(self) -> list[int]:
        return list(self.nodes)

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
            self.calls += 1
            if n in self.silent:
                continue
            try:
                if message_type == DescribeQuery.message_type:
                    out[n] = fuse_client.describe(self.nodes[n])
                else:
                    out[n] = fuse_client.train(content(n), self.nodes[n])
            except Exception as exc:
                out[n] = f"{type(exc).__name__}: {exc}"
        return out


def paired_data(n: int, seed: int) -> MultimodalDataset:
    rng = np.random.default_rng(seed)
    g, c = rng.normal(size=(n, 5)).astype(np.float32), rng.normal(size=(n, 5)).astype(np.float32)
    risk = g[:, 0] + c[:, 1]
    time = rng.exponential(np.exp(-risk)) * 3
    event = rng.random(n) < 0.7
    ones = torch.ones(n, dtype=torch.bool)
    feats = [f"f{i}" for i in range(5)]
    mods = {
        "genes": ModalityData("tabular", torch.tensor(g), ones.clone(), feats),
        "clinical": ModalityData("tabular", torch.tensor(c), ones.clone(), feats),
    }
    return MultimodalDataset(
        "synthetic", "survival", [f"p{seed}-{i}" for i in range(n)], mods, time=time, event=event
    )


def site_node(
    consortium: Consortium,
    site: str,
    address: str,
    data: Path,
    home: Path,
    superlink: str = "127.0.0.1:9093",
    kit: str | None = None,
    folds: int = 0,
) -> dict[str, str]:
    """A paired site's node config (its site.toml); ``folds`` 0: a validation split, as the blocks
    these tests sign by hand were not cross-fitted."""
    home.mkdir(parents=True)
    kit_dir = consortium.kit(kit or site)
    modalities = '"genes", "clinical"' if site in ("hosp-b", "hosp-c") else '"genes"'
    (home / "site.toml").write_text(
        f'site = "{site}"\nmodalities = [{modalities}]\npaired = true\n'
        f'coordinator = "{address}"\ndata = "{data}"\n'
        f'[tls]\ncert = "{kit_dir / "tls.crt"}"\nkey = "{kit_dir / "tls.key"}"\n'
        f'ca = "{kit_dir / "ca.crt"}"\n'
        f'[signing]\nkey = "{kit_dir / "signing.key"}"\n[train]\ndevice = "cpu"\n'
        f'[flower]\nnode_key = "{kit_dir / "flower-node.key"}"\nsuperlink = "{superlink}"\n'
        f"port = {free_port()}\n"
        f"[evaluation]\nfolds = {folds}\n"
    )
    return {"site-config": str(home / "site.toml")}


@pytest.fixture()
def merged(consortium: Consortium, coordinator: Coord, tmp_path: Path) -> tuple[str, Registry, str]:
    address, cfg = coordinator
    with (
        RegistryClient(address, consortium.tls("hosp-a")) as a,
        RegistryClient(address, consortium.tls("hosp-b")) as b,
    ):
        a.push(signed_block(consortium, "hosp-a", tmp_path / "ba", modality="genes", seed=1))
        b.push(signed_block(consortium, "hosp-b", tmp_path / "bb", modality="clinical", seed=2))
    with RegistryClient(address, consortium.tls("ops")) as admin:
        model = admin.merge("t1")
    registry = Registry.open(cfg, recover=False)
    yield address, registry, model.model_id
    registry.close()


def test_fedavg_over_one_paired_site_equals_centralized_fine_tuning(
    consortium: Consortium, merged: tuple[str, Registry, str], tmp_path: Path
) -> None:
    address, registry, model_id = merged
    export_site_folder(paired_data(40, 0), tmp_path / "data-b")
    node = site_node(consortium, "hosp-b", address, tmp_path / "data-b", tmp_path / "b")
    cfg = FuseConfig(mode="weave", rounds=2, epochs=2, lr=1e-3, batch_size=8)
    parent, start, cfg = starting_model(registry, model_id, cfg)
    nodes = discover(InProcessTransport({7: node}), deadline_s=5, want_sites=1)
    assert nodes == [NodeInfo(7, "hosp-b", ("genes", "clinical"), True)]
    outcome = run_rounds(
        InProcessTransport({7: node}), nodes, start, cfg, model_id, round_timeout_s=60, min_sites=1
    )

    central = starting_model(registry, model_id, cfg)[1]
    everyone = load_site_folder(tmp_path / "data-b")
    rows, _ = site_split(
        everyone, 0.15, 0
    )  # a site trains on its training patients only ([train] defaults)
    data = paired_only(everyone.subset(rows), central.modalities)
    history = centralized_fuse(central, data, central.task, cfg)
    expected = state_of(central)
    assert set(outcome.state) == set(expected)
    for k, v in expected.items():
        assert torch.allclose(outcome.state[k], v, rtol=0, atol=1e-6), k
    assert not torch.equal(outcome.state["latent"], state_of(start)["latent"])  # it did train
    assert [h.train_loss for h in outcome.history] == pytest.approx(
        [h["train_loss"] for h in history], abs=1e-6
    )

    fused = store_fused(registry, parent, outcome, cfg, "ops")
    assert (
        fused.recipe.kind == "fuse"
        and fused.parent_id == model_id
        and fused.card["fuse"]["participants"] == ["hosp-b"]
    )
    assert [r["round"] for r in fused.card["fuse"]["rounds"]] == [1, 2] and fused.settings[
        "strategy"
    ] == "fedavg"
    with RegistryClient(address, consortium.tls("hosp-a")) as site:
        site.pull_model(fused.model_id, tmp_path / "pulled")
    frame = predict_frame(
        tmp_path / "pulled", load_site_folder(tmp_path / "data-b", outcomes=False)
    )
    central.eval()
    from common.train import predict_scores

    assert isinstance(central, LegoFuse)
    all_paired = paired_only(everyone, central.modalities)
    assert np.array_equal(
        frame["risk"].to_numpy(), predict_scores(central, all_paired, central.task, amp=False)
    )


def test_a_run_over_every_site_trains_an_unpaired_site_on_its_single_modality_patients(
    consortium: Consortium, merged: tuple[str, Registry, str], tmp_path: Path
) -> None:
    from coordinator.flower_app import enrolled

    address, registry, model_id = merged
    some_unpaired = paired_data(30, 1)
    some_unpaired.modalities["clinical"].present[:8] = False  # 8 of hosp-b's patients: genes only
    export_site_folder(some_unpaired, tmp_path / "data-b")
    export_site_folder(paired_data(40, 2).select_modalities(["genes"]), tmp_path / "data-a")
    nodes_cfg = {
        1: site_node(consortium, "hosp-b", address, tmp_path / "data-b", tmp_path / "b"),
        2: site_node(consortium, "hosp-a", address, tmp_path / "data-a", tmp_path / "a"),
    }
    edit_site_toml(Path(nodes_cfg[2]["site-config"]), paired=False)  # genes only, as enrolled
    parent, start, cfg = starting_model(registry, model_id, FuseConfig(rounds=2, sites="all"))

    def vet(claims: list[NodeInfo]) -> list[NodeInfo]:  # as the ServerApp vets them
        return enrolled(registry, claims)

    # Discovery as the ServerApp runs it: a paired run counts hosp-b only, one over every site
    # counts hosp-a (enrolled unpaired, with genes) as well.
    transport = InProcessTransport(nodes_cfg)
    found = discover(transport, 5, 2, vet=vet, counts=takes_part("all", start.modalities))
    assert [(n.site, n.paired) for n in found] == [("hosp-a", False), ("hosp-b", True)]
    assert [n.site for n in found if takes_part("paired", start.modalities)(n)] == ["hosp-b"]
    outcome = run_rounds(transport, found, start, cfg, model_id, 60, min_sites=2)

    genes = load_site_folder(tmp_path / "data-a")
    trained_a = len(site_split(genes, 0.15, 0)[0])  # its training patients, each genes only
    b = load_site_folder(tmp_path / "data-b")
    rows_b = site_split(b, 0.15, 0)[0]
    trained_b = len(rows_b)  # every training patient: each has genes, most clinical as well
    assert trained_b > int(b.modalities["clinical"].present[rows_b].sum())  # more than pairs
    for r in outcome.history:
        assert r.sites == ("hosp-a", "hosp-b") and r.failed == () and r.no_answer == ()
        assert r.site_examples == {"hosp-a": trained_a, "hosp-b": trained_b}
        assert r.num_examples == trained_a + trained_b
    assert outcome.participants == ["hosp-a", "hosp-b"]
    fused = store_fused(registry, parent, outcome, cfg, "ops")
    card = fused.card["fuse"]
    assert card["participants"] == ["hosp-a", "hosp-b"] and fused.settings["sites"] == "all"
    assert card["rounds"][0]["site-examples"] == {"hosp-a": trained_a, "hosp-b": trained_b}
    # hosp-a alone moves the genes block: FedAvg over it alone changes the genes encoder
    alone = run_rounds(
        InProcessTransport({2: nodes_cfg[2]}), found[:1], start, cfg, model_id, 60, min_sites=1
    )
    genes_at = start.modalities.index("genes")
    assert any(
        not torch.equal(v, state_of(start)[k])
        for k, v in alone.state.items()
        if k.startswith(f"encoders.{genes_at}.")
    )


def test_a_silent_site_is_left_behind_by_the_deadline_or_the_run_fails_below_min_sites(
    consortium: Consortium, merged: tuple[str, Registry, str], tmp_path: Path
) -> None:
    address, registry, model_id = merged
    export_site_folder(paired_data(30, 1), tmp_path / "d1")
    export_site_folder(paired_data(30, 2), tmp_path / "d2")
    nodes_cfg = {
        1: site_node(consortium, "hosp-b", address, tmp_path / "d1", tmp_path / "n1"),
        2: site_node(consortium, "hosp-a", address, tmp_path / "d2", tmp_path / "n2"),
    }
    cfg = FuseConfig(rounds=2, epochs=1)
    _, start, cfg = starting_model(registry, model_id, cfg)
    nodes = discover(InProcessTransport(nodes_cfg), deadline_s=5, want_sites=2)
    assert [n.site for n in nodes] == ["hosp-a", "hosp-b"]
    transport = InProcessTransport(nodes_cfg, silent=[2])
    outcome = run_rounds(transport, nodes, start, cfg, model_id, 30, min_sites=1)
    assert outcome.participants == ["hosp-b"] and [h.no_answer for h in outcome.history] == [
        ("hosp-a",),
        (),
    ]
    assert transport.calls == 3  # the silent site is not asked again in round 2
    with pytest.raises(
        FuseError,
        match=r"round 1: 1 of 2 paired sites answered.*no answer within 30 s: \['hosp-a'\]",
    ):
        run_rounds(
            InProcessTransport(nodes_cfg, silent=[2]), nodes, start, cfg, model_id, 30, min_sites=2
        )
    broken = dict(nodes_cfg)
    broken[1] = {"site-config": str(tmp_path / "missing.toml")}
    with pytest.raises(
        FuseError,
        match=r"failed: hosp-b: SiteFailure: ConfigError at the site "
        r"\(the details stay in the site's log\)",
    ):
        run_rounds(InProcessTransport(broken), nodes, start, cfg, model_id, 30, min_sites=2)
    with pytest.raises(FuseError, match="min_sites is 3"):
        run_rounds(InProcessTransport(nodes_cfg), nodes, start, cfg, model_id, 30, min_sites=3)


def test_discovery_stops_at_its_deadline(
    consortium: Consortium, merged: tuple[str, Registry, str], tmp_path: Path
) -> None:
    address, _, _ = merged
    export_site_folder(paired_data(20, 3), tmp_path / "d")
    transport = InProcessTransport(
        {1: site_node(consortium, "hosp-b", address, tmp_path / "d", tmp_path / "n")}
    )
    import time

    t0 = time.monotonic()
    nodes = discover(
        transport, deadline_s=1.0, want_sites=3, poll_s=0.2
    )  # only one paired site exists
    assert len(nodes) == 1 and 0.9 < time.monotonic() - t0 < 5


def _replies(states: list[dict[str, torch.Tensor]], counts: list[int]) -> dict[int, TrainReply]:
    return {
        i + 1: TrainReply(pack(s, ["w"]), c, 0.5)
        for i, (s, c) in enumerate(zip(states, counts, strict=True))
    }


def test_flower_fedavg_weights_sites_by_examples_and_keeps_frozen_tensors() -> None:
    from coordinator.fuse_rounds import aggregate

    start = {"w": torch.zeros(4), "buf": torch.ones(3)}
    sites = [
        {"w": torch.full((4,), 1.0), "buf": torch.full((3,), 9.0)},
        {"w": torch.full((4,), 4.0), "buf": torch.ones(3)},
    ]
    (out,) = aggregate(1, [start], _replies(sites, [30, 10]), ["w"], FuseConfig(), None)
    assert (
        torch.allclose(out["w"], torch.full((4,), 1.75)) and out["w"].dtype == torch.float32
    )  # (30*1 + 10*4) / 40
    assert torch.equal(out["buf"], torch.ones(3))  # not trainable: a site cannot change it


def test_fold_runs_are_averaged_each_with_itself_and_a_reply_without_them_is_refused() -> None:
    from coordinator.fuse_rounds import aggregate, read_reply

    start = {"w": torch.zeros(4), "buf": torch.ones(3)}
    site_runs = [
        [{"w": torch.full((4,), float(s + 10 * r)), "buf": torch.ones(3)} for r in range(3)]
        for s in (1, 4)
    ]
    replies = {
        i + 1: TrainReply(pack_runs(runs, ["w"]), c, 0.5)
        for i, (runs, c) in enumerate(zip(site_runs, [30, 10], strict=True))
    }
    out = aggregate(1, [start] * 3, replies, ["w"], FuseConfig(), None)
    for r in range(3):  # run r: (30 * (1 + 10r) + 10 * (4 + 10r)) / 40
        assert torch.allclose(out[r]["w"], torch.full((4,), 1.75 + 10 * r))
    content = replies[1].to_recorddict()
    assert isinstance(read_reply(content, [start] * 3, ["w"]), TrainReply)
    only_full = _replies([start], [30])[1].to_recorddict()
    assert "expected" in str(
        read_reply(only_full, [start] * 3, ["w"])
    )  # the full run only: refused
    assert "expected" in str(read_reply(content, [start], ["w"]))  # fold runs nobody asked for


def test_private_aggregation_clips_every_update_and_adds_the_stated_noise() -> None:
    from coordinator.fuse_rounds import Privacy, aggregate

    start = {"w": torch.zeros(2000), "buf": torch.ones(3)}
    far = [
        {"w": torch.full((2000,), 5.0), "buf": torch.ones(3)},
        {"w": torch.full((2000,), -1.0), "buf": torch.ones(3)},
    ]
    replies = _replies(far, [50, 10])  # DP averages uniformly: the counts must not matter
    (out,) = aggregate(
        1, [start], replies, ["w"], FuseConfig(), Privacy(noise_multiplier=0.0, clipping_norm=1.0)
    )
    per_site = [
        torch.full((2000,), 5.0) / torch.full((2000,), 5.0).norm(),
        torch.full((2000,), -1.0) / torch.full((2000,), -1.0).norm(),
    ]
    assert torch.allclose(
        out["w"], (per_site[0] + per_site[1]) / 2, atol=1e-6
    )  # clipped to norm 1, uniform mean
    assert torch.equal(out["buf"], torch.ones(3))
    (noisy,) = aggregate(
        1,
        [start],
        _replies(far, [50, 10]),
        ["w"],
        FuseConfig(),
        Privacy(noise_multiplier=2.0, clipping_norm=1.0),
    )
    std = float((noisy["w"] - out["w"]).std())
    assert abs(std - 2.0 * 1.0 / 2) < 0.1  # std = multiplier * norm / sites
    with pytest.raises(ValueError, match="clipping_norm > 0"):
        Privacy(1.0, 0.0)


def test_the_privacy_spent_is_accounted_over_the_rounds_released() -> None:
    from coordinator.fuse_rounds import Privacy

    privacy = Privacy(noise_multiplier=1.0, clipping_norm=1.0, delta=1e-5)
    eps = []
    for rounds in (1, 2, 4):
        acc = privacy.accountant(population=3)
        for _ in range(rounds):
            acc.compose(GaussianPrivacyEvent(1.0, 2, 3))
        card = privacy.card(acc, [0.5] * rounds)
        eps.append(float(card["epsilon"]))
        assert card["delta"] == "1e-05" and card["noise_std_per_round"].count("0.5") == rounds
    assert 0 < eps[0] < eps[1] < eps[2]  # more releases spend more
    assert (
        Privacy(0.0, 1.0).card(Privacy(0.0, 1.0).accountant(3), [])["epsilon"] == "inf (no noise)"
    )


def _reply(arrays: dict[str, np.ndarray], count: int = 5) -> RecordDict:
    return TrainReply(
        ArrayRecord({k: Array(v) for k, v in arrays.items()}), count, 0.1
    ).to_recorddict()


@pytest.mark.parametrize(
    "arrays,why",
    [
        ({"trainable": np.zeros(5, np.float32)}, "expected float32[4]"),
        ({"trainable": np.full(4, np.nan, np.float32)}, "non-finite"),
        ({"trainable": np.zeros(4, np.float64)}, "expected float32[4]"),
        (
            {"trainable": np.zeros(4, np.float32), "buf": np.full(3, 9.0, np.float32)},
            "expected ['trainable']",
        ),
    ],
)
def test_a_reply_that_cannot_be_aggregated_is_named(
    arrays: dict[str, np.ndarray], why: str
) -> None:
    from coordinator.fuse_rounds import read_reply

    start = {"w": torch.zeros(4), "buf": torch.ones(3)}
    assert isinstance(
        read_reply(_replies([start], [5])[1].to_recorddict(), [start], ["w"]), TrainReply
    )
    problem = read_reply(_reply(arrays), [start], ["w"])
    assert isinstance(problem, str) and why in problem
    zero = _replies([start], [0])[1].to_recorddict()
    assert read_reply(zero, [start], ["w"]) == "reply has num-examples 0.0"
    other = _reply({"w": np.zeros(4, np.float32)})  # one array per tensor: not this protocol
    assert "expected ['trainable']" in str(read_reply(other, [start], ["w"]))


class _Scripted:
    """Two nodes: node 2 is honest; node 1 claims 10 patients in round 1 and 10000 later (to
    outweigh the others)."""

    def __init__(self) -> None:
        self.round = 0

    def node_ids(self) -> list[int]:
        return [1, 2]

    def ask(
        self,
        node_ids: Iterable[int],
        message_type: str,
        content: Callable[[int], RecordDict],
        group: str,
        timeout_s: float,
    ) -> dict[int, RecordDict | str]:
        self.round += 1
        size = TrainInstruction.from_recorddict(content(1)).arrays["trainable"].numpy().size
        lie = 10 if self.round == 1 else 10000
        return {
            1: _reply({"trainable": np.full(size, 50.0, np.float32)}, lie),
            2: _reply({"trainable": np.zeros(size, np.float32)}, 10),
        }


def test_a_site_cannot_change_its_patient_count_between_rounds_to_outweigh_the_others() -> None:
    start = torch.nn.Linear(2, 1)
    nodes = [NodeInfo(1, "hosp-x", ("genes",), True), NodeInfo(2, "hosp-b", ("genes",), True)]
    out = run_rounds(_Scripted(), nodes, start, FuseConfig(rounds=2), "m", 30, min_sites=1)
    assert out.history[0].sites == ("hosp-b", "hosp-x") and out.history[1].sites == ("hosp-b",)
    assert "reported 10000 patients after 10" in out.history[1].errors["hosp-x"]
    assert float(out.state["weight"].abs().max()) == 0.0  # round 2 is hosp-b's zeros alone


def test_only_the_packed_trainable_tensors_travel_and_a_layout_mismatch_is_refused() -> None:
    from common.fuse.wire import layout, trainable_names, unpack

    model = torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.BatchNorm1d(2))
    names = trainable_names(model)
    assert names == [
        "0.weight",
        "0.bias",
        "1.weight",
        "1.bias",
    ]  # buffers (running stats) stay home
    state = dict(model.state_dict())
    record = pack(state, names)
    assert list(record) == ["trainable"] and record["trainable"].numpy().size == 6 + 2 + 2 + 2
    back = unpack(record, {k: torch.zeros_like(v) for k, v in state.items()}, names)
    assert all(torch.equal(back[n], state[n]) for n in names) and torch.equal(
        back["1.running_mean"], torch.zeros(2)
    )
    other = torch.nn.Sequential(torch.nn.Linear(3, 3), torch.nn.BatchNorm1d(3))
    assert layout(state, names) != layout(dict(other.state_dict()), trainable_names(other))


def test_the_serverapp_trusts_certificates_and_key_registrations_not_what_nodes_say(
    merged: tuple[str, Registry, str],
) -> None:
    from coordinator.flower_app import enrolled, parse_node_sites

    _, registry, _ = merged
    claims = [
        NodeInfo(1, "hosp-a", ("genes", "clinical"), True),
        NodeInfo(2, "hosp-b", ("clinical",), False),
        NodeInfo(3, "hosp-z", ("genes",), True),
    ]
    out = enrolled(
        registry, claims
    )  # hosp-a's certificate is not paired, hosp-b's is; hosp-z never called the registry
    assert [(n.site, n.modalities, n.paired) for n in out] == [
        ("hosp-a", ("genes",), False),
        ("hosp-b", ("clinical",), True),
    ]
    assert (
        parse_node_sites("11=hosp-a,22=hosp-b") == {11: "hosp-a", 22: "hosp-b"}
        and parse_node_sites("") == {}
    )


def test_a_site_with_fewer_paired_patients_than_its_cell_size_does_not_take_part(
    consortium: Consortium, merged: tuple[str, Registry, str], tmp_path: Path
) -> None:
    address, registry, model_id = merged
    export_site_folder(paired_data(12, 0), tmp_path / "data-b")
    node = site_node(consortium, "hosp-b", address, tmp_path / "data-b", tmp_path / "b")
    with open(node["site-config"], "a") as f:
        f.write("[privacy]\nmin_cell_size = 13\n")
    cfg = FuseConfig(rounds=1, epochs=1, batch_size=8)
    _, start, cfg = starting_model(registry, model_id, cfg)
    nodes = [NodeInfo(7, "hosp-b", ("genes", "clinical"), True)]
    with pytest.raises(
        FuseError, match=r"fewer paired patients than its minimum cell size \(13\)"
    ) as refused:
        run_rounds(
            InProcessTransport({7: node}),
            nodes,
            start,
            cfg,
            model_id,
            round_timeout_s=60,
            min_sites=1,
        )
    assert "12" not in str(refused.value)  # the count itself stays at the site


class _Counting:
    """One honest node whose round r sends the weights filled with r."""

    def node_ids(self) -> list[int]:
        return [1]

    def ask(
        self,
        node_ids: Iterable[int],
        message_type: str,
        content: Callable[[int], RecordDict],
        group: str,
        timeout_s: float,
    ) -> dict[int, RecordDict | str]:
        instruction = TrainInstruction.from_recorddict(content(1))
        r, size = instruction.round, instruction.arrays["trainable"].numpy().size
        return {1: _reply({"trainable": np.full(size, float(r), np.float32)}, 10)}


@dataclass(frozen=True)
class _Verdict:
    diff: float

    def summary(self) -> RoundValidation:
        return RoundValidation(diff=self.diff)


def test_early_stopping_keeps_the_best_round_and_stops_after_patience_rounds_without_one() -> None:
    start = torch.nn.Linear(2, 1)
    nodes = [NodeInfo(1, "hosp-b", ("genes",), True)]
    curve = {
        1: 0.01,
        2: 0.03,
        3: 0.02,
        4: 0.025,
        5: 0.5,
    }  # round 5 would be best, but patience 2 stops after round 4
    seen: list[int] = []

    def judge(r: int, states: list[dict[str, torch.Tensor]]) -> _Verdict:
        seen.append(r)
        assert (
            len(states) == 1 and float(states[0]["weight"].flatten()[0]) == r
        )  # the judge sees the round's global model
        return _Verdict(curve[r])

    out = run_rounds(
        _Counting(),
        nodes,
        start,
        FuseConfig(rounds=5, patience=2),
        "m",
        30,
        min_sites=1,
        judge=judge,
    )
    assert seen == [1, 2, 3, 4] and out.best_round == 2 and len(out.history) == 4
    assert (
        float(out.state["weight"].abs().max()) == 2.0
    )  # round 2's weights are kept, not the last round's
    assert [h.validation.diff for h in out.history if h.validation] == [0.01, 0.03, 0.02, 0.025]
    with pytest.raises(FuseError, match="round 1: no site reported validation scores"):
        run_rounds(
            _Counting(),
            nodes,
            start,
            FuseConfig(rounds=3),
            "m",
            30,
            min_sites=1,
            judge=lambda r, s: None,
        )


class _Many:
    """Honest nodes 1..n whose replies each carry the node's id; records who was asked."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.asked: list[list[int]] = []

    def node_ids(self) -> list[int]:
        return list(range(1, self.n + 1))

    def ask(
        self,
        node_ids: Iterable[int],
        message_type: str,
        content: Callable[[int], RecordDict],
        group: str,
        timeout_s: float,
    ) -> dict[int, RecordDict | str]:
        ids = list(node_ids)
        self.asked.append(ids)
        size = TrainInstruction.from_recorddict(content(ids[0])).arrays["trainable"].numpy().size
        return {i: _reply({"trainable": np.full(size, float(i), np.float32)}, 10) for i in ids}


def test_a_round_trains_at_most_sites_per_round_in_a_seeded_rotation_fair_over_rounds() -> None:
    start = torch.nn.Linear(2, 1)
    nodes = [NodeInfo(i, f"hosp-{i:02d}", ("genes",), True) for i in range(1, 11)]
    many = _Many(10)
    cfg = FuseConfig(rounds=5, sites_per_round=4, seed=3)
    out = run_rounds(many, nodes, start, cfg, "m", 30, min_sites=2)
    assert [len(a) for a in many.asked] == [4] * 5
    assert [len(h.sites) for h in out.history] == [4] * 5
    times = Counter(i for a in many.asked for i in a)
    assert set(times) == set(range(1, 11)) and max(times.values()) - min(times.values()) <= 1
    # the round's global model is the FedAvg of the sites asked in it, not of all
    last = many.asked[-1]
    assert float(out.state["weight"].flatten()[0]) == pytest.approx(sum(last) / len(last))
    again = _Many(10)
    run_rounds(again, nodes, start, cfg, "m", 30, min_sites=2)
    assert again.asked == many.asked  # seeded
    other = _Many(10)
    run_rounds(other, nodes, start, replace(cfg, seed=4), "m", 30, min_sites=2)
    assert other.asked != many.asked
    every = _Many(10)
    run_rounds(every, nodes, start, replace(cfg, sites_per_round=0, rounds=1), "m", 30, 2)
    assert sorted(every.asked[0]) == list(range(1, 11))
    with pytest.raises(FuseError, match="sites_per_round 1 is below min_sites 2"):
        run_rounds(_Many(10), nodes, start, replace(cfg, sites_per_round=1), "m", 30, 2)
    with pytest.raises(ValueError, match="sites_per_round must be 0"):
        FuseConfig(sites_per_round=-1)
