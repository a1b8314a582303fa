"""Image similarity to the FP32 reference: SSIM and PSNR from scikit-image, max abs diff."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

PSNR_IDENTICAL = 999.0  # JSON has no infinity: identical images' PSNR as stored


@dataclass(frozen=True)
class Similarity:
    """Worst case over the images of one call (uint8 images, 0..255 scale for max_abs)."""

    ssim: float
    psnr: float
    max_abs: float

    def to_dict(self) -> dict[str, Any]:
        """Plain data for JSON (an infinite PSNR, identical images, is stored as PSNR_IDENTICAL)."""
        out = asdict(self)
        if math.isinf(self.psnr):
            out["psnr"] = PSNR_IDENTICAL
        return out



def load_png(path: Path) -> np.ndarray:
    """An RGB PNG as a uint8 array (H, W, 3)."""
    from PIL import Image

    with Image.open(path) as img:
        array: np.ndarray = np.asarray(img.convert("RGB"), dtype=np.uint8)
    return array


def save_png(array: np.ndarray, path: Path) -> None:
    """Write a uint8 (H, W, 3) array as PNG."""
    from PIL import Image

    Image.fromarray(array, mode="RGB").save(path, format="PNG")


def to_uint8(images: np.ndarray) -> np.ndarray:
    """Float images in [0, 1] (N, H, W, 3) to uint8, rounding as PIL does."""
    out: np.ndarray = (np.clip(images, 0.0, 1.0) * 255.0).round().astype(np.uint8)
    return out


def compare_images(obtained: list[np.ndarray], reference: list[np.ndarray]) -> Similarity:
    """SSIM/PSNR/max-abs of each obtained image against its reference; the worst of each."""
    from skimage.metrics import peak_signal_noise_ratio, structural_similarity

    if len(obtained) != len(reference):
        raise ValueError(f"{len(obtained)} images obtained but {len(reference)} in the reference")
    ssims, psnrs, diffs = [], [], []
    for got, ref in zip(obtained, reference, strict=True):
        if got.shape != ref.shape:
            raise ValueError(f"image shape {got.shape} differs from the reference's {ref.shape}")
        ssims.append(float(structural_similarity(ref, got, channel_axis=-1, data_range=255)))
        with np.errstate(divide="ignore"):
            psnrs.append(float(peak_signal_noise_ratio(ref, got, data_range=255)))
        diffs.append(float(np.abs(ref.astype(np.int16) - got.astype(np.int16)).max()))
    return Similarity(min(ssims), min(psnrs), max(diffs))
