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

That is the ``threads`` form. The ``callbacks`` form (issue #17, reference C's "several
requests in flight overlap pre-processing, inference and post-processing") has no request
threads at all: every generation is a greenlet of the calling thread, running diffusers' own
``__call__`` unchanged. Each model call starts its infer request (``start_async``, whose
callback, on an OpenVINO thread, only posts the request to a queue) and switches back to the
driver; the driver takes finished requests off the queue in the order they finish and resumes
the generation that owns each one, which runs its Python (guidance, the scheduler's step, the
next model's inputs, the image's decoding) up to its next model call while the other requests
still compute. So generations drift apart into different stages, one thread makes every call
into the bindings (no lock, no race on first-use initializers), and the requests in flight are
bounded by the generations, not by Python threads. ``form`` picks one; see
``openvino_family.DEFAULT_ASYNC_FORM`` for the measured choice.
"""

from __future__ import annotations

import copy
import functools
import queue
import statistics
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, Sequence

from ..workload import Workload
from .base import Pipeline

FORMS = ("callbacks", "threads")
STALL_S = 600.0  # no request finishing for this long: the runtime lost one (fail, don't hang)


def throughput_config(streams: int) -> dict[str, str]:
    """OpenVINO CPU properties for throughput with ``streams`` CPU streams (the requests in
    flight are set apart: ``ov_requests``)."""
    return {"PERFORMANCE_HINT": "THROUGHPUT", "NUM_STREAMS": str(streams)}


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


def pipeline_view(pipe: Any, wrap: Callable[[Any], Any]) -> Any:
    """A shallow copy of a compiled pipeline with its own infer requests (each made callable by
    ``wrap``) and its own scheduler and tokenizers."""
    view = copy.copy(pipe)
    copies = {}
    for name, part in _parts(pipe).items():
        own = copy.copy(part)
        own.request = wrap(part.request.create_infer_request())
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


class _Yielding:
    """An infer request called from a generation's greenlet: starts the inference, switches to
    the driver until the request's callback has reported it finished, returns its outputs."""

    def __init__(self, request: Any, finished: queue.SimpleQueue[_Yielding],
                 counter: list[int]) -> None:
        self.request = request
        self.owner: Any = None
        self.counter = counter
        request.set_callback(lambda _userdata: finished.put(self), None)

    def __call__(self, inputs: Any, share_inputs: bool = True) -> Any:
        import greenlet

        self.owner = greenlet.getcurrent()
        self.request.start_async(inputs, share_inputs=share_inputs)
        self.counter[0] += 1
        self.owner.parent.switch()  # the driver resumes us once the callback has fired
        self.request.wait()  # already done: raises the inference's error, if any
        return _copied_results(self.request)


def drive(works: Sequence[Callable[[], Any]], finished: queue.SimpleQueue[_Yielding],
          stall_s: float = STALL_S) -> tuple[list[Any], int]:
    """Run each of ``works`` as a greenlet of this thread until all have returned: start them
    all, then resume whichever owns the next request to finish. Returns their results in order
    and the most model calls seen in flight at once."""
    import greenlet

    lets = [greenlet.greenlet(work) for work in works]
    index = {id(g): i for i, g in enumerate(lets)}
    results: list[Any] = [None] * len(works)
    waiting = 0

    def step(g: Any) -> None:
        nonlocal waiting
        value = g.switch()
        if g.dead:
            results[index[id(g)]] = value
        else:
            waiting += 1

    for g in lets:
        step(g)
    most = waiting  # every unfinished generation waits on one request: never more later
    while waiting:
        try:
            done = finished.get(timeout=stall_s)
        except queue.Empty:
            raise RuntimeError(f"ov-async: no inference finished in {stall_s:.0f} s with "
                               f"{waiting} in flight") from None
        waiting -= 1
        step(done.owner)
    return results, most


def make_throughput_generate(
    pipe: Any, requests: int, form: str
) -> Callable[[Pipeline, Workload, Any], Any]:
    """A Pipeline.generate running ``requests`` generations at once (pipe already compiled),
    in the given form (``FORMS``)."""
    if form not in FORMS:
        raise ValueError(f"ov-async form {form!r}: must be one of {', '.join(FORMS)}")
    prime_bindings()
    counter = [0]
    rates: list[float] = []
    if form == "threads":
        lock = threading.Lock()
        views = [pipeline_view(pipe, lambda r: _AsyncRequest(r, lock, counter))
                 for _ in range(requests)]
    else:
        finished: queue.SimpleQueue[_Yielding] = queue.SimpleQueue()
        views = [pipeline_view(pipe, lambda r: _Yielding(r, finished, counter))
                 for _ in range(requests)]

    def run(pipeline: Pipeline, wl: Workload, latents: Any, image: Any) -> list[Any]:
        if form == "threads":
            with ThreadPoolExecutor(max_workers=requests) as pool:
                return list(pool.map(lambda v: _one(v, wl, latents, image), views))
        works = [functools.partial(_one, v, wl, latents, image) for v in views]
        images, most = drive(works, finished)
        pipeline.info["most_in_flight"] = max(most, pipeline.info.get("most_in_flight", 0))
        return images

    def generate(pipeline: Pipeline, wl: Workload, latents: Any) -> Any:
        import numpy as np

        from .task import init_image

        image = init_image(wl)  # made once per workload, not in the timed call
        start = time.perf_counter()
        images = run(pipeline, wl, latents, image)
        seconds = time.perf_counter() - start
        rates.append(requests * wl.images_per_prompt / seconds)
        pipeline.info.update(images_per_s=statistics.median(rates), dispatches=counter[0],
                             async_form=form)
        # Same latents and prompt in every request: differing images mean shared state. The
        # gate fails the test on a disagreement (the first request's image is the one compared
        # with the reference; the others must match it).
        diff = max(float(np.abs(im - images[0]).max()) for im in images)
        pipeline.info["requests_max_diff"] = max(diff, pipeline.info.get("requests_max_diff", 0.0))
        pipeline.info["requests_agree"] = pipeline.info["requests_max_diff"] <= REQUESTS_ATOL
        return images[0]

    return generate


REQUESTS_ATOL = 2e-3  # pixels in [0, 1]: requests of one call must agree this closely
