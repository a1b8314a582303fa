"""Throughput mode for OpenVINO pipelines: several generations in flight at once.

The compiled models get the THROUGHPUT performance hint with one CPU stream per request in
flight. Each generation runs in its own thread on its own pipeline view that shares the
compiled models but owns an infer request per model, a scheduler and a tokenizer. One call
of the returned ``generate`` starts ``requests`` generations of the workload from the same
latents and waits for all: its duration is the per-image latency under that load, and
``images_per_s`` (median over calls) the throughput.

The deadlock this mode had (about one worker in eight here) and its fix. Native stacks of a
hung worker (py-spy --native) showed both request threads in their first inference, inside the
data dispatcher's ``Type.to_dtype()``: one thread blocked in ``__cxa_guard_acquire`` (the
guard of a function-local ``static`` in openvino's bindings, its map of element types to numpy
dtypes) while holding the GIL; the other inside that static's initializer, in pybind11's
``gil_safe_call_once_and_store<npy_api>``, which had released the GIL and was waiting to take
it back. A static's hidden lock and the GIL taken in opposite orders (pybind11 PR #4877
explains the pattern): it can only happen the first time two threads convert a numpy dtype,
which in this worker is the first throughput call. ``tests/test_openvino_family.py`` keeps
the reduction: 8 threads calling ``Type.f32.to_dtype()`` at once in a fresh interpreter hung
21 times in 30 here, and never once the main thread had called it first.

So, before any request thread starts, ``prime_bindings`` makes that first conversion in the
building thread. Beyond that one static, every call into the OpenVINO Python API except
``wait`` is made under one lock (``_AsyncRequest``: ``start_async`` under it, ``wait``
outside it, the outputs copied out under it), so no other first-use initializer in the
bindings can be raced either; the inferences themselves still overlap in the runtime's own
streams, which is where the throughput comes from. ``dispatches`` in the pipeline's info
counts the model calls made this way.
"""

from __future__ import annotations

import copy
import statistics
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable

from ..workload import Workload
from .base import Pipeline


def throughput_config(requests: int) -> dict[str, str]:
    """OpenVINO CPU properties for ``requests`` generations in flight."""
    return {"PERFORMANCE_HINT": "THROUGHPUT", "NUM_STREAMS": str(requests)}


class _AsyncRequest:
    """Makes an ``ov.InferRequest`` callable like the CompiledModel optimum calls: inputs are
    set and started under ``lock``, the inference is waited for outside it, and the outputs
    are copied out under it (the request's own tensors are reused by its next call)."""

    def __init__(self, request: Any, lock: threading.Lock, counter: list[int]) -> None:
        self.request = request
        self.lock = lock
        self.counter = counter

    def __call__(self, inputs: Any, share_inputs: bool = True) -> Any:
        with self.lock:
            self.request.start_async(inputs, share_inputs=share_inputs)
            self.counter[0] += 1
        self.request.wait()
        with self.lock:
            return _copied_results(self.request)


def _copied_results(request: Any) -> Any:
    """The request's outputs as an OVDict of arrays it does not own (indexable by position and
    by name, as optimum reads them)."""
    from openvino.utils.data_helpers.wrappers import OVDict

    return OVDict({port: request.get_tensor(port).data.copy()
                   for port in request.model_outputs})


def prime_bindings() -> None:
    """Initialise openvino's element-type -> numpy dtype table in this thread (see above)."""
    import openvino as ov

    ov.Type.f32.to_dtype()


def _parts(pipe: Any) -> dict[str, Any]:
    """The pipeline's compiled OpenVINO models by attribute name (unet, text_encoder...)."""
    from optimum.intel.openvino.modeling_diffusion import OVPipelinePart

    return {name: v for name, v in vars(pipe).items() if isinstance(v, OVPipelinePart)}


def pipeline_view(pipe: Any, lock: threading.Lock, counter: list[int]) -> Any:
    """A shallow copy of a compiled pipeline with its own infer requests and scheduler."""
    view = copy.copy(pipe)
    copies = {}
    for name, part in _parts(pipe).items():
        own = copy.copy(part)
        with lock:
            own.request = _AsyncRequest(part.request.create_infer_request(), lock, counter)
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


def _one(view: Any, wl: Workload, latents: Any, image: Any) -> Any:
    import numpy as np

    from .task import call_kwargs

    out = view(**call_kwargs(wl, latents.clone(), image), output_type="np")
    return np.asarray(out.images, dtype=np.float32)


def make_throughput_generate(
    pipe: Any, requests: int
) -> Callable[[Pipeline, Workload, Any], Any]:
    """A Pipeline.generate running ``requests`` generations at once (pipe already compiled)."""
    prime_bindings()
    lock = threading.Lock()
    counter = [0]
    views = [pipeline_view(pipe, lock, counter) for _ in range(requests)]
    rates: list[float] = []

    def generate(pipeline: Pipeline, wl: Workload, latents: Any) -> Any:
        import numpy as np

        from .task import init_image

        image = init_image(wl)  # made once per workload, not in the timed call
        start = time.perf_counter()
        with ThreadPoolExecutor(max_workers=requests) as pool:
            images = list(pool.map(lambda v: _one(v, wl, latents, image), views))
        seconds = time.perf_counter() - start
        rates.append(requests * wl.images_per_prompt / seconds)
        pipeline.info["images_per_s"] = statistics.median(rates)
        pipeline.info["dispatches"] = counter[0]
        # Same latents and prompt in every request: differing images mean shared state.
        pipeline.info["requests_agree"] = all(np.allclose(im, images[0], atol=2e-3) for im in images)
        return images[0]

    return generate
