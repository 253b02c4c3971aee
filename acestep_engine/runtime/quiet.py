"""Quiet library chatter while loading our own checkpoints (engine, planner, demo writers)."""

from __future__ import annotations

import contextlib
import warnings


@contextlib.contextmanager
def quiet_loading():
    """Silence diffusers'/transformers' dtype notes, tiny progress bars and weight_norm warnings
    inside the block; the previous verbosity comes back afterwards."""
    from diffusers.utils import logging as dlogging
    from transformers.utils import logging as tlogging

    old = dlogging.get_verbosity(), tlogging.get_verbosity()
    dlogging.set_verbosity_error()
    tlogging.set_verbosity_error()
    tlogging.disable_progress_bar()
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*weight_norm.*")
            yield
    finally:
        dlogging.set_verbosity(old[0])
        tlogging.set_verbosity(old[1])
        tlogging.enable_progress_bar()
