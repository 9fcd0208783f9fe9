"""Who a LegoFuse round trains on: ``FuseConfig.sites`` is checked with one error naming the known
rules; "paired" keeps a site's patients having every model modality it holds, "all" those having
one; and a round on patients with one modality each trains what they have and stays finite."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from common.data.dataset import ModalityData, MultimodalDataset
from common.fuse import FUSE_SITES, FuseConfig, local_round, round_patients
from common.lego import LegoFuse
from tests.factories import SURV, block


def dataset(genes: list[bool], clinical: list[bool] | None, seed: int = 0) -> MultimodalDataset:
    """Patients with genes and clinical tables where ``genes``/``clinical`` say who has which
    (``clinical`` None: a site that holds genes only)."""
    n = len(genes)
    rng = np.random.default_rng(seed)
    mods = {"genes": ModalityData("tabular", torch.randn(n, 5), torch.tensor(genes), list("abcde"))}
    if clinical is not None:
        mods["clinical"] = ModalityData(
            "tabular", torch.randn(n, 5), torch.tensor(clinical), list("vwxyz")
        )
    return MultimodalDataset(
        "synthetic",
        "survival",
        [f"p{i}" for i in range(n)],
        mods,
        time=rng.exponential(2.0, n),
        event=rng.random(n) < 0.7,
    )


def test_an_unknown_sites_rule_is_one_error_naming_the_known_ones() -> None:
    assert FUSE_SITES == ("paired", "all") and FuseConfig().sites == "paired"
    assert FuseConfig(sites="all").to_run_config()["sites"] == "all"
    with pytest.raises(ValueError, match=r"^fuse sites must be one of paired, all, got 'every'$"):
        FuseConfig(sites="every")
    with pytest.raises(ValueError, match="must be one of paired, all"):
        FuseConfig.from_run_config({"sites": "pairs"})
    with pytest.raises(ValueError, match="must be one of paired, all"):
        round_patients(dataset([True], [True]), ["genes"], "both")


def test_paired_keeps_patients_with_every_held_modality_and_all_those_with_one() -> None:
    #            both   genes  clin.  none   both
    data = dataset([True, True, False, False, True], [True, False, True, False, True])
    mods = ["genes", "clinical", "slides"]  # the model has a modality this site does not hold
    paired = round_patients(data, mods, "paired")
    every = round_patients(data, mods, "all")
    assert paired.ids == ["p0", "p4"] and every.ids == ["p0", "p1", "p2", "p4"]
    assert list(every.modalities) == ["genes", "clinical"]  # the model masks "slides"
    assert every.modalities["clinical"].present.tolist() == [True, False, True, True]
    genes_only = dataset([True, False, True], None)  # an unpaired site: its genes patients
    assert round_patients(genes_only, mods, "all").ids == ["p0", "p2"]
    assert round_patients(genes_only, mods, "paired").ids == ["p0", "p2"]  # as before
    with pytest.raises(ValueError, match="none of the model's modalities"):
        round_patients(genes_only, ["clinical"], "all")


@pytest.mark.parametrize("mode", ["stack", "weave"])
def test_a_round_on_patients_with_one_modality_trains_their_block_latent_and_head(
    mode: str,
) -> None:
    model = LegoFuse(
        [block("genes", seed=1, task=SURV), block("clinical", seed=2, task=SURV)], mode
    )
    start = {k: v.detach().clone() for k, v in model.state_dict().items()}
    # a site holding genes only, and one whose patients each have one modality or both
    for data, untouched in (
        (round_patients(dataset([True] * 24, None, 3), model.modalities, "all"), "1"),
        (dataset([True, False] * 12, [False, True] * 12, 4), None),
    ):
        state, metrics = local_round(model, start, data, SURV, FuseConfig(batch_size=8), 1)
        assert np.isfinite(metrics["train_loss"]) and metrics["num-examples"] == 24
        assert all(torch.isfinite(v).all() for v in state.values())
        changed = {k for k in start if not torch.equal(start[k], state[k])}
        for part in ("latent", "head.", "encoders.0.", "steps.0.", "encoders.1.", "steps.1."):
            trained = any(k.startswith(part) for k in changed)
            assert trained == (untouched is None or not part.endswith(f".{untouched}.")), part
