"""A short fixed workload timed around every round, so gates can compare ratios.

It is one UNet block built from plain torch modules with seeded weights (GroupNorm, SiLU, two
3x3 convolutions, a residual, then a transformer block: LayerNorm, attention over 256 tokens
with 4 heads, a GEGLU feed-forward), repeated 8 times: about 0.1 s here. It mixes the same
kinds of work as a denoising step (compute-bound convolutions and matmuls, memory-bound norms
and activations, per-op dispatch), runs on the same device and thread pool as the variant, and
is timed before and after each round: when the machine is busier or slower, both sides move
together and their ratio stays put.

``KERNEL`` names this workload; ratios to a different kernel (a baseline recorded before it
changed) are not comparable, and the gates compare seconds instead, saying so.
"""

from __future__ import annotations

import time
from typing import Callable

KERNEL = "unet-block-v1"
LEGACY_KERNEL = "conv-matmul-v0"  # what baselines without a kernel name were calibrated with
_REPEATS = 8


def _torch_kernel(device: str) -> Callable[[], None]:
    import torch

    gen = torch.Generator().manual_seed(0)
    c, hw, heads = 128, 16, 4

    def param(*shape: int) -> torch.Tensor:
        fan_in = shape[-1] if len(shape) == 2 else shape[1] * shape[2] * shape[3]
        scaled: torch.Tensor = torch.randn(*shape, generator=gen) * fan_in ** -0.5
        return scaled.to(device)

    conv1, conv2 = param(c, c, 3, 3), param(c, c, 3, 3)
    qkv, out, ff1, ff2 = param(3 * c, c), param(c, c), param(4 * c, c), param(c, 2 * c)
    x0 = torch.randn(2, c, hw, hw, generator=gen).to(device)
    f = torch.nn.functional

    def run() -> None:
        with torch.no_grad():
            x = x0
            for _ in range(_REPEATS):
                h = f.conv2d(f.silu(f.group_norm(x, 32)), conv1, padding=1)
                x = x + f.conv2d(f.silu(f.group_norm(h, 32)), conv2, padding=1)
                t = x.flatten(2).transpose(1, 2)
                q, k, v = f.linear(f.layer_norm(t, (c,)), qkv).chunk(3, dim=-1)
                b, n, _ = q.shape
                q, k, v = (z.reshape(b, n, heads, c // heads).transpose(1, 2) for z in (q, k, v))
                a = torch.softmax(q @ k.transpose(-1, -2) * (c // heads) ** -0.5, dim=-1) @ v
                t = t + f.linear(a.transpose(1, 2).reshape(b, n, c), out)
                g, gate = f.linear(f.layer_norm(t, (c,)), ff1).chunk(2, dim=-1)
                t = t + f.linear(g * f.gelu(gate), ff2)
                x = t.transpose(1, 2).reshape(b, c, hw, hw)
            float(x[0, 0, 0, 0])  # forces completion on any device

    return run


def _numpy_kernel() -> Callable[[], None]:
    import numpy as np

    rng = np.random.default_rng(0)
    q = rng.standard_normal((256, 128)).astype(np.float32)
    w = (rng.standard_normal((128, 512)) * 128 ** -0.5).astype(np.float32)

    def run() -> None:
        t = q
        for _ in range(_REPEATS * 4):
            scores = t @ t.T * 0.088
            scores = np.exp(scores - scores.max(axis=1, keepdims=True))
            t = (scores / scores.sum(axis=1, keepdims=True)) @ t + np.tanh(t @ w)[:, :128]
        float(t[0, 0])

    return run


def make_calibration(device: str, use_torch: bool) -> Callable[[], float]:
    """A callable that runs the calibration workload once and returns its seconds."""
    kernel = _torch_kernel(device) if use_torch else _numpy_kernel()
    kernel()  # warm caches and thread pools

    def timed() -> float:
        start = time.perf_counter()
        kernel()
        return time.perf_counter() - start

    return timed


def kernel_name(use_torch: bool) -> str:
    """The name stored beside the calibration samples."""
    return KERNEL if use_torch else f"{KERNEL}-numpy"
