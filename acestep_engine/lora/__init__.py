"""LoRA fine-tuning of the ACE-Step 1.5 DiT: from a folder of songs to an adapter, with peft and accelerate.

    from . import LoRAConfig, TrainingConfig, prepare_dataset, train

    dataset = prepare_dataset(engine, "songs/", "songs/.lora-cache")       # once per song
    result = train(engine, dataset, "loras/my-style", LoRAConfig(), TrainingConfig(steps=1000))
    engine.load_lora(result.adapter_path, scale=0.8)                      # then generate as usual

Adapters are peft folders with upstream's decoder-relative tensor names, so adapters made by
upstream's trainer load here and ours load there. For several GPUs:
`accelerate launch -m acestep_engine.lora train ...` (see `python -m acestep_engine.lora -h`).
"""

from .adapters import (DEFAULT_TARGETS, SCALE_RANGE, AdapterSet, LoRAConfig, diffusers_key, official_key, read_adapter,
                       save_adapter)
from .dataset import LoRADataset, LoRAProgress, PreparedSong, prepare_dataset, read_sidecar
from .training import TrainingConfig, TrainingResult, evaluate, latest_checkpoint, learning_rate, objective_loss, train

__all__ = [
    "AdapterSet", "DEFAULT_TARGETS", "LoRAConfig", "LoRADataset", "LoRAProgress", "PreparedSong", "SCALE_RANGE",
    "TrainingConfig", "TrainingResult", "diffusers_key", "evaluate", "latest_checkpoint", "learning_rate",
    "objective_loss", "official_key", "prepare_dataset", "read_adapter", "read_sidecar", "save_adapter", "train",
]
