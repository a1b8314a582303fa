"""A short fixed workload timed beside every round, so gates can compare ratios.

It resembles one UNet block (a 3x3 convolution and attention-sized matmuls) and runs on the
same device and thread pool as the variant, interleaved with its rounds: when the machine is
busier or slower, both sides move together and their ratio stays put.
"""

from __future__ import annotations

import time
from typing import Callable


def _torch_kernel(device: str) -> Callable[[], None]:
    import torch

    gen = torch.Generator().manual_seed(0)
    x = torch.randn(1, 64, 32, 32, generator=gen).to(device)
    w = torch.randn(64, 64, 3, 3, generator=gen).to(device) * 0.05
    q = torch.randn(1024, 64, generator=gen).to(device)

    def run() -> None:
        with torch.no_grad():
            for _ in range(4):
                y = torch.nn.functional.conv2d(x, w, padding=1)
                attn = torch.softmax(q @ q.T * 0.125, dim=-1) @ q
                float(y[0, 0, 0, 0] + attn[0, 0])  # forces completion on any device

    return run


def _numpy_kernel() -> Callable[[], None]:
    import numpy as np

    q = np.random.default_rng(0).standard_normal((1024, 64)).astype(np.float32)

    def run() -> None:
        for _ in range(4):
            scores = q @ q.T * 0.125
            scores = np.exp(scores - scores.max(axis=1, keepdims=True))
            float((scores @ q)[0, 0])

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
