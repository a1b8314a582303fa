"""Throughput mode for OpenVINO pipelines: several generations in flight at once.

The compiled models get the THROUGHPUT performance hint with one CPU stream per request in
flight; each generation runs in its own thread on its own pipeline view that shares the
compiled models but owns an infer request per model, a scheduler and a tokenizer (OpenVINO
releases the GIL while inferring, so the requests really overlap). One call of the returned
``generate`` starts ``requests`` generations of the workload from the same latents and waits
for all: its duration is the per-image latency under that load, and ``images_per_s`` (median
over calls) the throughput.
"""

from __future__ import annotations

import copy
import faulthandler
import statistics
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable

from ..workload import Workload
from .base import Pipeline

HANG_DUMP_S = 600.0


def throughput_config(requests: int) -> dict[str, str]:
    """OpenVINO CPU properties for ``requests`` generations in flight."""
    return {"PERFORMANCE_HINT": "THROUGHPUT", "NUM_STREAMS": str(requests)}


class _Request:
    """Makes an ``ov.InferRequest`` callable like the CompiledModel optimum normally calls."""

    def __init__(self, request: Any) -> None:
        self.request = request

    def __call__(self, inputs: Any, share_inputs: bool = True) -> Any:
        return self.request.infer(inputs, share_inputs=share_inputs)


def _parts(pipe: Any) -> dict[str, Any]:
    """The pipeline's compiled OpenVINO models by attribute name (unet, text_encoder...)."""
    from optimum.intel.openvino.modeling_diffusion import OVPipelinePart

    return {name: v for name, v in vars(pipe).items() if isinstance(v, OVPipelinePart)}


def pipeline_view(pipe: Any) -> Any:
    """A shallow copy of a compiled pipeline with its own infer requests and scheduler."""
    view = copy.copy(pipe)
    copies = {}
    for name, part in _parts(pipe).items():
        own = copy.copy(part)
        own.request = _Request(part.request.create_infer_request())
        copies[id(part)] = own
        vars(view)[name] = own
    vae = getattr(pipe, "vae", None)
    if vae is not None and hasattr(vae, "decoder"):
        own_vae = copy.copy(vae)
        for attr in ("decoder", "encoder"):
            part = getattr(vae, attr, None)
            if part is not None and id(part) in copies:
                setattr(own_vae, attr, copies[id(part)])
        vars(view)["vae"] = own_vae
    for name in ("scheduler", "tokenizer", "tokenizer_2"):
        if getattr(pipe, name, None) is not None:
            vars(view)[name] = copy.deepcopy(getattr(pipe, name))
    return view


def _one(view: Any, wl: Workload, latents: Any) -> Any:
    import numpy as np

    out = view(prompt=wl.prompt, negative_prompt=wl.negative_prompt,
               num_inference_steps=wl.steps, height=wl.height, width=wl.width,
               num_images_per_prompt=wl.images_per_prompt, guidance_scale=wl.guidance_scale,
               latents=latents.clone(), output_type="np")
    return np.asarray(out.images, dtype=np.float32)


def make_throughput_generate(
    pipe: Any, requests: int
) -> Callable[[Pipeline, Workload, Any], Any]:
    """A Pipeline.generate running ``requests`` generations at once (pipe already compiled)."""
    views = [pipeline_view(pipe) for _ in range(requests)]
    rates: list[float] = []

    def generate(pipeline: Pipeline, wl: Workload, latents: Any) -> Any:
        import numpy as np

        start = time.perf_counter()
        # One hang of this mode was seen (1 worker in ~6, not reproduced since): should a call
        # stall, every thread's stack goes to stderr, which the worker's failure report keeps.
        faulthandler.dump_traceback_later(HANG_DUMP_S, exit=False)
        try:
            with ThreadPoolExecutor(max_workers=requests) as pool:
                images = list(pool.map(lambda v: _one(v, wl, latents), views))
        finally:
            faulthandler.cancel_dump_traceback_later()
        seconds = time.perf_counter() - start
        rates.append(requests * wl.images_per_prompt / seconds)
        pipeline.info["images_per_s"] = statistics.median(rates)
        # Same latents and prompt in every request: differing images mean shared state.
        pipeline.info["requests_agree"] = all(np.allclose(im, images[0], atol=2e-3) for im in images)
        return images[0]

    return generate
