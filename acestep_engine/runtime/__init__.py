"""Where and how fast the engine runs: the device and dtype (`hardware`), the attention path a device
and dtype need (`attention`), parking weights on disk (`parking`), reading weights out of their files
(`weight_files`), compiling the DiT (`compiling`), the fast paths applied to diffusers' modules at load
(`fast_paths`), packed linear layers for the LM's decode (`packed_linear`), the cross-attention K/V memo
(`kv_cache`), freed heap handed back (`heap`), huge pages for torch's large buffers (`huge_pages`) and
quiet loading (`quiet`).

Mechanisms over any torch module: nothing here knows a checkpoint, a task or a take.
"""

from .huge_pages import huge_pages_active, request_huge_pages

request_huge_pages()  # before anything allocates a tensor: torch reads the setting once, then

from .compiling import check_compile_option, compile_transformer  # noqa: E402
from .fast_paths import prepare_transformer, prepare_vae  # noqa: E402
from .hardware import (auto_dtype, cpu_has_native_bf16, device_summary, dtype_name,  # noqa: E402
                       recommend_models, resolve_dtype)
from .kv_cache import reuse_condition_projections  # noqa: E402
from .quiet import quiet_loading  # noqa: E402

__all__ = ["auto_dtype", "check_compile_option", "compile_transformer", "cpu_has_native_bf16", "device_summary",
           "dtype_name", "huge_pages_active", "prepare_transformer", "prepare_vae", "quiet_loading", "recommend_models",
           "request_huge_pages", "resolve_dtype", "reuse_condition_projections"]
