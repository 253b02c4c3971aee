"""Helpers for tests and notebooks: the tiny official-layout checkpoint writers.

They live in `acestep_engine.tiny_checkpoints` (runtime code: `Engine.demo()` and
`Planner.demo()` write the demo set with them); this module keeps the names tests import.
"""

from .tiny_checkpoints import (DIT_FOLDERS, LM_CODE_TOKENS, LM_FOLDER, PRESETS, REAL_SIZE_DIT, REAL_SIZE_TEXT_ENCODER,
                               REAL_SIZE_VAE, SPECIAL_TOKENS, build_tokenizer, official_config, official_state_dict,
                               silence_latent_for, write_dit, write_lm, write_text_encoder, write_tiny_checkpoints,
                               write_vae)

__all__ = ["DIT_FOLDERS", "LM_CODE_TOKENS", "LM_FOLDER", "PRESETS", "REAL_SIZE_DIT", "REAL_SIZE_TEXT_ENCODER",
           "REAL_SIZE_VAE", "SPECIAL_TOKENS", "build_tokenizer",
           "official_config", "official_state_dict", "silence_latent_for", "write_dit", "write_lm",
           "write_text_encoder", "write_tiny_checkpoints", "write_vae"]
