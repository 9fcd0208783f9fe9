"""Small blocks and batches for tests."""

from __future__ import annotations

from pathlib import Path

import torch

from common.lego import BlockConfig, EncoderConfig, LegoBlock, ModalityInput
from common.tasks import TaskSpec

SURV = TaskSpec("survival", n_bins=4, bin_edges=(1.0, 2.0, 3.0))


def block(
    modality: str = "a",
    kind: str = "tabular",
    in_features: int = 5,
    fourier: str = "2d",
    seed: int = 0,
    init_seed: int | None = 7,
    depth: int = 2,
    task: TaskSpec = SURV,
) -> LegoBlock:
    torch.manual_seed(seed)
    enc = EncoderConfig(
        kind=kind, in_features=in_features, token_dim=16, n_tokens=3, hidden=32, dropout=0.0
    )
    cfg = BlockConfig(
        modality=modality,
        encoder=enc,
        task=task,
        latent_rows=6,
        latent_dim=8,
        depth=depth,
        fourier=fourier,
        dim_head=8,
        ff_dropout=0.0,
        init_seed=init_seed,
    )  # type: ignore[arg-type]
    return LegoBlock(cfg).eval()


def tabular(
    b: int = 5, f: int = 5, seed: int = 1, present: torch.Tensor | None = None
) -> ModalityInput:
    g = torch.Generator().manual_seed(seed)
    return ModalityInput(torch.randn(b, f, generator=g), None, present)


def bag(
    b: int = 5, n: int = 7, f: int = 4, seed: int = 2, present: torch.Tensor | None = None
) -> ModalityInput:
    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(1, n + 1, (b,), generator=g)
    mask = torch.arange(n)[None, :] < lengths[:, None]
    x = torch.randn(b, n, f, generator=g) * mask[..., None]
    return ModalityInput(x, mask, present)


def packed(padded: ModalityInput) -> ModalityInput:
    """The same bags packed end to end (x (N, F), offsets), as bags read from slide files are."""
    assert padded.mask is not None
    lengths = padded.mask.sum(dim=1)
    offsets = torch.zeros(len(lengths) + 1, dtype=torch.int64)
    offsets[1:] = torch.cumsum(lengths, 0)
    return ModalityInput(padded.x[padded.mask], None, padded.present, offsets)


def mutate_bytes(data: bytes, edits: list[tuple[int, int, int]]) -> bytes:
    """Fuzzing edits (kind, position, value): 0 flips a byte, 1 inserts bytes, 2 truncates,
    3 duplicates or moves a line."""
    out = bytearray(data)
    for kind, pos, value in edits:
        at = pos % (len(out) + 1)
        if kind == 0 and out:
            out[at % len(out)] ^= value or 1
        elif kind == 1:
            out[at:at] = bytes([value]) * (1 + value % 7)
        elif kind == 2:
            del out[at:]
        elif kind == 3 and b"\n" in out:
            lines = bytes(out).split(b"\n")
            i = at % len(lines)
            lines.insert(i, lines[(i + value) % len(lines)])  # a duplicated or moved line
            out = bytearray(b"\n".join(lines))
    return bytes(out)


def edit_site_toml(path: Path, **changes: object) -> Path:
    """Change settings of a site.toml as its engineer would, through the one schema and writer:
    ``edit_site_toml(p, data="...", task="t1", **{"train.epochs": 4})``."""
    import tomllib

    from common.sitetoml import SiteFile, render

    raw = tomllib.loads(path.read_text())
    for key, value in changes.items():
        section, _, name = key.rpartition(".")
        (raw.setdefault(section, {}) if section else raw)[name] = value
    path.write_text(render(SiteFile.model_validate(raw)))
    return path


def distinct_blocks(modalities: str = "ab") -> list[LegoBlock]:
    """Compatible blocks whose weights differ (``block`` gives them a shared initialisation)."""
    out = []
    for seed, modality in enumerate(modalities):
        b = block(modality=modality, seed=seed)
        torch.manual_seed(seed)
        with torch.no_grad():
            for p in b.parameters():
                p.normal_(0, 0.3)
        out.append(b)
    return out
