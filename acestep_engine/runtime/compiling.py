"""torch.compile for the DiT, as an option: `Engine.from_pretrained(..., compile=True)`.

    engine = Engine.from_pretrained("checkpoints", compile=True)
    engine.compilation                # DitCompilation(backend='inductor', graphs=2, compile_s=41.3, ...)

Regional compilation: each transformer block is compiled, not the whole model. The 24 blocks share
one compiled graph (their weights are graph inputs), so compiling costs one block, and the parts
that change between requests (the sliding-window mask, the timestep embedding, the cached
cross-attention K/V) stay outside the graphs. Shapes are dynamic from the first call, so a new
duration does not recompile; a new batch size or guidance on/off may compile once more (1 is a
special size to the compiler), and the sliding and full attention layers compile one graph each.
Compiled graphs are kept for the life of the engine (every later `generate` reuses them) and, with
inductor, in its on-disk cache for the next process.

`compile=True` means inductor; any backend name `torch.compile` accepts works, or a callable
backend. The first generation pays the compile time, which `take.timings["compile_s"]` and
`engine.compilation` report. Compiling is an option because it is slow on first use, needs a C++
compiler on the CPU, and is untested on CUDA here; when the backend fails, the DiT falls back to
eager for the rest of the process (logged, and `compilation.error` says why).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import torch

log = logging.getLogger(__name__)


@dataclass
class DitCompilation:
    """What compiling the DiT cost so far: graphs compiled, seconds spent in the backend, errors."""

    backend: str
    graphs: int = 0
    compile_s: float = 0.0
    error: str | None = None
    blocks: int = 0

    @property
    def active(self) -> bool:
        return self.error is None and self.blocks > 0

    def to_dict(self) -> dict:
        return {"backend": self.backend, "graphs": self.graphs,
                "compile_s": round(self.compile_s, 3), "blocks": self.blocks, "error": self.error}


def check_compile_option(compile) -> tuple[str, object] | None:
    """None for no compiling, else (backend name, backend) for `compile`: True (inductor), a backend
    name that torch.compile knows, or a callable backend `(graph_module, example_inputs) -> callable`."""
    if compile is None or compile is False:
        return None
    if compile is True:
        compile = "inductor"
    if callable(compile):
        return getattr(compile, "__name__", type(compile).__name__), compile
    if isinstance(compile, str):
        from torch._dynamo import list_backends

        known = sorted(set(list_backends(exclude_tags=())) | {"inductor", "eager", "aot_eager"})
        if compile not in known:
            raise ValueError(f"compile must be True, False, a callable backend or one of {', '.join(known)} "
                             f"(got {compile!r})")
        return compile, compile
    raise ValueError(f"compile must be True, False, a backend name or a callable backend (got {compile!r})")


def compile_transformer(transformer, compile=True) -> DitCompilation | None:
    """Compile each block of diffusers' AceStepTransformer1DModel in place (see the module doc)."""
    choice = check_compile_option(compile)
    if choice is None:
        return None
    from diffusers.models.transformers.ace_step_transformer import AceStepTransformerBlock
    from torch._dynamo import lookup_backend

    name, backend = choice
    report = DitCompilation(backend=name)
    inner = lookup_backend(backend) if isinstance(backend, str) else backend

    def timed_backend(gm, example_inputs):
        started = time.perf_counter()
        try:
            return inner(gm, example_inputs)
        finally:
            report.graphs += 1
            report.compile_s += time.perf_counter() - started

    for block in transformer.modules():
        if isinstance(block, AceStepTransformerBlock):
            block.compile(backend=timed_backend, dynamic=True)
            report.blocks += 1
    transformer.acestep_compilation = report
    return report


def compiled_call(transformer, fn):
    """Run `fn()` (a denoising loop); if the compiler fails, switch the DiT back to eager, log why
    and run `fn()` again. Returns `(result, compile seconds spent during the call)`."""
    report = getattr(transformer, "acestep_compilation", None)
    if report is None or not report.active:
        return fn(), 0.0
    before = report.compile_s
    try:
        return fn(), report.compile_s - before
    except Exception as exc:  # the backend (a missing C++ compiler, an unsupported op): eager still works
        if not _is_compiler_error(exc):
            raise
        cause = getattr(exc, "inner_exception", None) or exc.__cause__ or exc
        first_line = str(cause).strip().splitlines()[0] if str(cause).strip() else ""
        report.error = f"{type(cause).__name__}: {first_line}"[:300]
        log.warning("torch.compile of the DiT failed, running it eagerly from now on: %s", report.error)
        uncompile(transformer)
        return fn(), report.compile_s - before


def uncompile(transformer) -> None:
    """Make every compiled block of `transformer` eager again."""
    from diffusers.models.transformers.ace_step_transformer import AceStepTransformerBlock

    for block in transformer.modules():
        if isinstance(block, AceStepTransformerBlock) and getattr(block, "_compiled_call_impl", None) is not None:
            block._compiled_call_impl = None


def _is_compiler_error(exc: BaseException) -> bool:
    from torch._dynamo.exc import BackendCompilerFailed, TorchDynamoException

    return isinstance(exc, (BackendCompilerFailed, TorchDynamoException)) or "inductor" in type(exc).__module__
