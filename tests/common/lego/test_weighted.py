"""Weighted LegoMerge (weighted harmonic magnitude, circular phase, spherical head) and the
ensemble: equal weights are the plain merge; weights only matter relative to each other; a
dominant weight pulls the merge to its block; the ensemble's risk is the mean of the blocks'."""

from __future__ import annotations

import pytest
import torch

from common.lego import LegoEnsemble, LegoMerge, ModalityInput
from common.lego.merge import merge_latents
from common.tasks import TaskSpec, probabilities, risk_score
from tests.factories import block

TASK = TaskSpec("survival", n_bins=4, bin_edges=(1.0, 2.0, 3.0))


def trained(modality: str, seed: int, task: TaskSpec = TASK):  # type: ignore[no-untyped-def]
    b = block(modality=modality, seed=seed)
    b.config = b.config.with_(task=task)
    from common.lego import LegoHead

    b.head = LegoHead(b.config.latent_dim, task.n_outputs)
    torch.manual_seed(seed)
    with torch.no_grad():
        for p in b.parameters():
            p.normal_(0, 0.3)
    return b.eval()


def inputs() -> dict[str, ModalityInput]:
    torch.manual_seed(9)
    return {
        "a": ModalityInput(
            torch.randn(6, 5), present=torch.tensor([1, 1, 1, 0, 1, 1], dtype=torch.bool)
        ),
        "b": ModalityInput(
            torch.randn(6, 5), present=torch.tensor([1, 0, 1, 1, 1, 1], dtype=torch.bool)
        ),
    }


def test_equal_weights_are_the_plain_merge_and_only_ratios_matter() -> None:
    blocks = [trained("a", 1), trained("b", 2), trained("a", 3)]
    x = inputs()
    with torch.no_grad():
        plain = LegoMerge(blocks)(x)
        torch.testing.assert_close(
            LegoMerge(blocks, weights=[1, 1, 1])(x), plain, rtol=0, atol=1e-6
        )
        torch.testing.assert_close(
            LegoMerge(blocks, weights=[2, 1, 0.5])(x),
            LegoMerge(blocks, weights=[4, 2, 1])(x),
            rtol=0,
            atol=1e-5,
        )
        assert not torch.allclose(LegoMerge(blocks, weights=[2, 1, 0.5])(x), plain, atol=1e-4)


def test_a_dominant_weight_pulls_the_latent_merge_to_its_block() -> None:
    torch.manual_seed(0)
    z = [torch.randn(3, 4, 5, dtype=torch.complex64) for _ in range(2)]
    heavy = merge_latents(z, None, weights=[1e6, 1.0])
    torch.testing.assert_close(heavy, z[0], rtol=1e-4, atol=1e-4)
    one = torch.tensor([[True, False], [True, True], [False, True]])
    exact = merge_latents(z, one, weights=[3.0, 1.0])
    assert torch.equal(exact[0], z[0][0]) and torch.equal(
        exact[2], z[1][2]
    )  # one present block: its latent exactly


def test_weights_must_be_positive_and_one_per_block() -> None:
    blocks = [trained("a", 1), trained("b", 2)]
    for bad in ([1.0], [1.0, 0.0], [1.0, float("nan")], [-1.0, 2.0]):
        with pytest.raises(ValueError, match="merge weights must be 2 finite numbers > 0"):
            LegoMerge(blocks, weights=bad)
        with pytest.raises(ValueError, match="merge weights must be 2 finite numbers > 0"):
            LegoEnsemble(blocks, weights=bad)


def test_the_ensemble_averages_survival_curves_and_probabilities() -> None:
    blocks = [trained("a", 1), trained("b", 2), trained("a", 3)]
    x = inputs()
    with torch.no_grad():
        present = torch.stack([x[b.modality].presence() for b in blocks], 1).double()
        risks = torch.stack([risk_score(b(x[b.modality].x)).double() for b in blocks], 1)
        w = torch.tensor([2.0, 1.0, 1.0], dtype=torch.float64)
        want = (risks * present * w).sum(1) / (present * w).sum(1)
        got = risk_score(LegoEnsemble(blocks, weights=[2, 1, 1])(x)).double()
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
        cls = TaskSpec("classification", n_classes=3)
        cblocks = [trained("a", 4, cls), trained("b", 5, cls)]
        probs = torch.stack([probabilities(b(x[b.modality].x)) for b in cblocks], 1).double()
        mask = torch.stack([x[b.modality].presence() for b in cblocks], 1).double()[..., None]
        want_p = (probs * mask).sum(1) / mask.sum(1)
        torch.testing.assert_close(
            probabilities(LegoEnsemble(cblocks)(x)).double(), want_p, rtol=1e-5, atol=1e-6
        )


def test_within_a_latent_memo_candidates_share_their_blocks_latents_and_predict_the_same() -> None:
    from common.lego.block import LegoBlock, latent_memo

    blocks = [trained("a", 1), trained("b", 2), trained("a", 3)]
    x = inputs()
    candidates = [
        lambda: LegoMerge(blocks),
        lambda: LegoMerge(blocks, weights=[2, 1, 0.5]),
        lambda: LegoEnsemble(blocks),
    ]
    with torch.no_grad():
        alone = [make()(x) for make in candidates]
    computed: list[int] = []
    original = LegoBlock.update

    def counting(self, *a):  # type: ignore[no-untyped-def]
        computed.append(id(self))
        return original(self, *a)

    LegoBlock.update = counting  # type: ignore[method-assign]
    try:
        with torch.no_grad(), latent_memo():
            shared = [make()(x) for make in candidates]
        with torch.no_grad(), latent_memo():  # other input: computed again
            other = {k: ModalityInput(v.x + 1, present=v.present) for k, v in x.items()}
            LegoMerge(blocks)(other)
        with latent_memo():  # with gradients (training): never kept
            LegoMerge(blocks)(x)
            LegoMerge(blocks)(x)
    finally:
        LegoBlock.update = original  # type: ignore[method-assign]
    for a, b in zip(alone, shared, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert len(computed) == 3 + 3 + 6  # once per block per input, outside gradients
