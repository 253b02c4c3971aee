"""What turns a folder of files into modules: finding complete checkpoint sets (`checkpoints`),
downloading them (`hub`), checking configs before anything is allocated (`config_checks`), renaming
the official keys onto diffusers' modules (`keymap`), loading (`loader`), the model variants and
their presets (`variants`), the VAE codec (`vae_codec`), the LM tokenizer's chat template
(`chat_template`) and the tiny official-layout checkpoints we write for the demo and the tests
(`tiny_checkpoints`).
"""

from .chat_template import CHAT_TEMPLATE, render_chatml
from .checkpoints import (DownloadError, available_variants, default_checkpoints_dir, download, ensure_checkpoints,
                          missing_files)
from .hub import DownloadPlan, Hub, plan_download
from .loader import LoadedModels, load_diffusers_format, load_official
from .tiny_checkpoints import (DIT_FOLDERS, LM_FOLDER, REAL_SIZE_DIT, REAL_SIZE_TEXT_ENCODER, REAL_SIZE_VAE,
                               demo_checkpoints_dir, write_lm, write_tiny_checkpoints)
from .variants import LM_VARIANTS, VARIANTS, SamplingPreset, resolve_variant, variant_for_task

__all__ = ["CHAT_TEMPLATE", "DIT_FOLDERS", "DownloadError", "DownloadPlan", "Hub", "LM_FOLDER", "LM_VARIANTS",
           "LoadedModels", "REAL_SIZE_DIT", "REAL_SIZE_TEXT_ENCODER", "REAL_SIZE_VAE", "SamplingPreset", "VARIANTS",
           "available_variants", "default_checkpoints_dir", "demo_checkpoints_dir", "download", "ensure_checkpoints",
           "load_diffusers_format", "load_official", "missing_files", "plan_download", "render_chatml",
           "resolve_variant", "variant_for_task", "write_lm", "write_tiny_checkpoints"]
