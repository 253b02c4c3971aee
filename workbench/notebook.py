"""The first cell of every tutorial notebook: where we run, which device and dtype, which weights.

    runtime = setup()            # Colab: custom widget manager on; picks the GPU and dtype
    engine = runtime.engine()    # real weights in checkpoints/ if present, else the demo checkpoint
    planner = runtime.planner(engine)
    print(runtime.plan(seconds=120))   # the DiT, LM and memory tier that fit this machine

Weights are looked for in `$ACESTEP_CHECKPOINTS_DIR`, else in `checkpoints/` of the working
directory or of the project's root (so kernels started in `notebooks/` see the repository's
weights). In Colab they go to /content/checkpoints (gone when the runtime ends), or with
`setup(checkpoints="drive")` to a folder on your Google Drive (mounted then; kept between sessions).
The same notebooks run unchanged in JupyterLab, VS Code and Colab; in tests they run on the demo
checkpoint.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path

import torch

from acestep_engine import Engine, TakeStore
from acestep_engine.models import LM_VARIANTS
from acestep_engine.models.checkpoints import (ENV_CHECKPOINTS_DIR, available_variants, checkpoint_search_dirs,
                                               default_checkpoints_dir, no_weights_note)
from acestep_engine.models.loader import resolve_device
from acestep_engine.runtime import recommend_models

from .state import demo_notice_silenced


# Colab: the runtime's own disk (about 78 GB on the free tier, wiped when the runtime ends) or Google Drive.
COLAB_CHECKPOINTS = Path("/content/checkpoints")
DRIVE_MOUNT = Path("/content/drive")
DRIVE_CHECKPOINTS = DRIVE_MOUNT / "MyDrive" / "acestep-workbench" / "checkpoints"


def in_colab() -> bool:
    return "google.colab" in sys.modules


def drive_mounted() -> bool:
    return (DRIVE_MOUNT / "MyDrive").is_dir()


@dataclass
class Runtime:
    """Where the notebook runs. `gpu_gib` is the GPU's memory (0 without a GPU)."""

    colab: bool
    device: torch.device
    dtype: torch.dtype
    gpu: str
    gpu_gib: float
    checkpoints_dir: Path
    searched: tuple[Path, ...] = ()  # the folders looked in for weights

    @property
    def has_real_weights(self) -> bool:
        return bool(available_variants(self.checkpoints_dir))

    def engine(self, variant: str = "turbo") -> Engine:
        """The DiT `variant` ("turbo", "base", "sft" or a folder name) from real weights when
        present, else the demo checkpoint (random weights: noise, not music)."""
        if self.has_real_weights:
            folder = variant if variant.startswith("acestep-") else f"acestep-v15-{variant}"
            return Engine.from_pretrained(self.checkpoints_dir, dit=folder, device=self.device, dtype=self.dtype)
        with demo_notice_silenced():  # said once, by this Runtime's repr and the workbench's banner
            return Engine.demo(device=self.device, dtype=self.dtype, variant=variant)

    def planner(self, engine: Engine | None = None):
        """The 5 Hz LM beside real weights (the size that fits this GPU first), else the demo planner."""
        from acestep_engine.lm import Planner

        if self.has_real_weights:
            found = [name for name in LM_VARIANTS if (self.checkpoints_dir / name / "config.json").is_file()]
            if found:
                name = self._planned_lm()
                name = name if name in found else found[0]
                return Planner.from_pretrained(name, checkpoints_dir=self.checkpoints_dir, device=self.device,
                                               engine=engine)
        return Planner.demo(device=self.device, engine=engine)

    def _planned_lm(self) -> str | None:
        """The LM this machine's plan picks (GPU memory and RAM), else upstream's tier for the GPU."""
        from acestep_engine.errors import InsufficientMemoryError

        try:
            return self.plan().lm
        except InsufficientMemoryError:
            return recommend_models(self.gpu_gib)[1]

    def plan(self, seconds: float = 120.0, batch_size: int = 1, dit: str = "acestep-v15-turbo"):
        """What fits this machine for a `seconds` x `batch_size` request, before any download: the DiT,
        the LM, the dtype and the memory tier (`acestep_engine.generation.machines.plan_machine`)."""
        from acestep_engine.generation.machines import Machine, plan_machine

        return plan_machine(Machine.this_one(), seconds, batch_size, dit)

    def store(self, name: str = "takes") -> TakeStore:
        """The take store (`$ACESTEP_TAKES_DIR`, else ./takes, or ./<name>)."""
        return TakeStore(Path(os.environ.get("ACESTEP_TAKES_DIR") or name))

    def __repr__(self) -> str:
        where = "Colab" if self.colab else "Jupyter"
        gpu = f"{self.gpu} ({self.gpu_gib:.0f} GiB)" if self.gpu_gib else "no GPU"
        weights = f"real weights in {self.checkpoints_dir}" if self.has_real_weights else \
            no_weights_note(list(self.searched) or [self.checkpoints_dir])
        return f"{where}, {gpu}, {self.device} {str(self.dtype).replace('torch.', '')}, {weights}"


def setup(checkpoints: str | Path | None = None) -> Runtime:
    """Enable Colab's custom widget manager (for the anywidget region painter) and pick the device:
    CUDA in bf16, or fp16 on GPUs without bf16 such as Colab's T4; MPS or CPU in fp32.

    `checkpoints`: the folder weights are looked for in and downloaded to, for the workbench, the
    engine and the CLI alike (it sets `$ACESTEP_CHECKPOINTS_DIR`). In Colab "drive" mounts your Google
    Drive and uses `DRIVE_CHECKPOINTS` (kept between sessions); the default there is /content/checkpoints
    on the runtime's disk. Elsewhere the default is `$ACESTEP_CHECKPOINTS_DIR`, else `checkpoints/`."""
    colab = in_colab()
    if checkpoints == "drive":
        if not colab:
            raise ValueError('checkpoints="drive" needs Google Colab: elsewhere give a folder (got "drive")')
        from google.colab import drive  # type: ignore[import-not-found]

        drive.mount(str(DRIVE_MOUNT))
        checkpoints = DRIVE_CHECKPOINTS
    elif checkpoints is None and colab and not os.environ.get(ENV_CHECKPOINTS_DIR):
        checkpoints = COLAB_CHECKPOINTS
    if checkpoints is not None:
        os.environ[ENV_CHECKPOINTS_DIR] = str(Path(checkpoints).expanduser().absolute())
    if colab:
        from google.colab import output  # type: ignore[import-not-found]

        output.enable_custom_widget_manager()
    device, dtype = resolve_device("auto", None)
    gpu, gib = "", 0.0
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        gpu, gib = props.name, props.total_memory / 2 ** 30
    return Runtime(colab, device, dtype, gpu, gib, default_checkpoints_dir(), tuple(checkpoint_search_dirs()))
