"""Where ACE-Step 1.5 checkpoints live, what a complete set is, and how to download one.

The layout is exactly what the hub ships (reference 3.1)::

    checkpoints/
      acestep-v15-turbo/     config.json, model.safetensors, silence_latent.pt
      vae/                   config.json, diffusion_pytorch_model.safetensors
      Qwen3-Embedding-0.6B/  config.json, model.safetensors, tokenizer files
      acestep-5Hz-lm-1.7B/   (optional planner)

Python files shipped next to the weights are never downloaded nor executed.
"""

from __future__ import annotations

import os
import shlex
from dataclasses import dataclass
from pathlib import Path

from .errors import MissingCheckpointError
from .variants import LM_VARIANTS, MAIN_REPO, TEXT_ENCODER_DIR, VAE_DIR, VARIANTS, resolve_variant

ENV_CHECKPOINTS_DIR = "ACESTEP_CHECKPOINTS_DIR"
# Never fetch code or pickles: we load safetensors only and never run a checkpoint's code.
IGNORE_PATTERNS = ["*.py", "*.bin", "*.pth", "*.ckpt", "*.msgpack", "*.h5"]


@dataclass(frozen=True)
class Component:
    """One folder of the layout, the hub repository that holds it and the files it must have."""

    folder: str
    repo_id: str
    in_main_repo: bool
    # Each entry is a tuple of alternatives: one of them must exist.
    required: tuple[tuple[str, ...], ...]

    def missing(self, checkpoints_dir: Path) -> list[str]:
        root = Path(checkpoints_dir) / self.folder
        return [
            f"{self.folder}/{alternatives[0]}"
            for alternatives in self.required
            if not any((root / name).is_file() for name in alternatives)
        ]

    def hub_command(self, checkpoints_dir: Path) -> str:
        target = shlex.quote(str(checkpoints_dir))
        if self.in_main_repo:
            return f"hf download {self.repo_id} --include '{self.folder}/*' --exclude '*.py' --local-dir {target}"
        return (f"hf download {self.repo_id} --exclude '*.py' "
                f"--local-dir {shlex.quote(str(Path(checkpoints_dir) / self.folder))}")


_WEIGHTS = ("model.safetensors", "model.safetensors.index.json")
_TOKENIZER = (("tokenizer.json", "vocab.json"), ("tokenizer_config.json",))


def dit_component(name: str) -> Component:
    variant = resolve_variant(name)
    repo = variant.repo_id or MAIN_REPO
    required = (("config.json",), ("model.safetensors",), ("silence_latent.pt",))
    return Component(variant.name, repo, variant.in_main_repo, required)


VAE = Component(VAE_DIR, MAIN_REPO, True, (("config.json",), ("diffusion_pytorch_model.safetensors",)))
TEXT_ENCODER = Component(TEXT_ENCODER_DIR, MAIN_REPO, True, (("config.json",), _WEIGHTS, *_TOKENIZER))


def lm_component(name: str) -> Component:
    if name not in LM_VARIANTS:
        raise ValueError(f"lm must be one of {', '.join(LM_VARIANTS)} (got {name!r})")
    repo, in_main = LM_VARIANTS[name]
    return Component(name, repo, in_main, (("config.json",), _WEIGHTS, *_TOKENIZER))


def components_for(dit: str | None = "acestep-v15-turbo", lm: str | None = None) -> list[Component]:
    """The folders needed to run `dit` (plus VAE and text encoder) and optionally the planner `lm`."""
    parts = []
    if dit:
        parts += [dit_component(dit), VAE, TEXT_ENCODER]
    if lm:
        parts.append(lm_component(lm))
    return parts


def default_checkpoints_dir() -> Path:
    """`$ACESTEP_CHECKPOINTS_DIR`, else `./checkpoints` in the working directory."""
    return Path(os.environ.get(ENV_CHECKPOINTS_DIR) or "checkpoints").expanduser()


def missing_files(checkpoints_dir: str | Path, dit: str | None = "acestep-v15-turbo",
                  lm: str | None = None) -> list[str]:
    """Paths (relative to `checkpoints_dir`) of required files that are not on disk."""
    root = Path(checkpoints_dir)
    return [path for c in components_for(dit, lm) for path in c.missing(root)]


def _missing_message(root: Path, missing: list[str], components: list[Component], reason: str = "") -> str:
    wanted = [c for c in components if c.missing(root)]
    dit = next((c.folder for c in wanted if c.folder in VARIANTS), None)
    lm = next((c.folder for c in wanted if c.folder in LM_VARIANTS), None)
    args = " ".join(filter(None, [f"--dit {dit}" if dit else "", f"--lm {lm}" if lm else ""]))
    lines = [f"ACE-Step checkpoint files are missing in {root}:"]
    lines += [f"  {path}" for path in missing]
    if reason:
        lines.append(f"Download failed: {reason}")
    lines.append("Fetch them with:")
    lines.append(f"  acestep download {args} --dir {shlex.quote(str(root))}".replace("  ", " ", 1).rstrip())
    lines.append("or with the Hugging Face CLI:")
    lines += [f"  {c.hub_command(root)}" for c in wanted]
    lines.append("or pass allow_download=True to Engine.from_pretrained.")
    return "\n".join(lines)


def download(checkpoints_dir: str | Path | None = None, dit: str | None = "acestep-v15-turbo",
             lm: str | None = None, token: str | None = None, only_missing: bool = True) -> Path:
    """Download the components needed for `dit` (and `lm`) with huggingface_hub, with progress bars.

    Only the needed folders are fetched: subfolders of the main repository through
    `allow_patterns`, the other variants from their own repositories. Code and pickle files are
    skipped. Returns the checkpoints folder. Raises MissingCheckpointError (with the exact files
    and a command to retry) when the hub cannot be reached.
    """
    from huggingface_hub import snapshot_download

    root = Path(checkpoints_dir) if checkpoints_dir else default_checkpoints_dir()
    root.mkdir(parents=True, exist_ok=True)
    components = components_for(dit, lm)
    todo = [c for c in components if c.missing(root)] if only_missing else components
    main_folders = [c.folder for c in todo if c.in_main_repo]
    try:
        if main_folders:
            snapshot_download(repo_id=MAIN_REPO, local_dir=root, token=token,
                              allow_patterns=[f"{folder}/*" for folder in main_folders],
                              ignore_patterns=IGNORE_PATTERNS)
        for c in todo:
            if not c.in_main_repo:
                snapshot_download(repo_id=c.repo_id, local_dir=root / c.folder, token=token,
                                  ignore_patterns=IGNORE_PATTERNS)
    except Exception as exc:  # offline, unknown repo, network error: say what is missing and how to get it
        missing = [p for c in components for p in c.missing(root)]
        raise MissingCheckpointError(
            _missing_message(root, missing, components, f"{type(exc).__name__}: {exc}")) from exc
    return root


def ensure_checkpoints(checkpoints_dir: str | Path | None = None, dit: str | None = "acestep-v15-turbo",
                       lm: str | None = None, allow_download: bool = False) -> Path:
    """Return the checkpoints folder if complete; download what is missing if allowed; else raise."""
    root = Path(checkpoints_dir) if checkpoints_dir else default_checkpoints_dir()
    components = components_for(dit, lm)
    missing = [p for c in components for p in c.missing(root)]
    if missing and allow_download:
        download(root, dit=dit, lm=lm)
        missing = [p for c in components for p in c.missing(root)]
    if missing:
        raise MissingCheckpointError(_missing_message(root, missing, components))
    return root


def is_diffusers_layout(path: str | Path) -> bool:
    """True for a diffusers-format ACE-Step repository (model_index.json with transformer/ etc.)."""
    path = Path(path)
    return (path / "model_index.json").is_file() and (path / "transformer").is_dir()


def available_variants(checkpoints_dir: str | Path | None = None) -> list[str]:
    """DiT folders under `checkpoints_dir` that hold a complete checkpoint."""
    root = Path(checkpoints_dir) if checkpoints_dir else default_checkpoints_dir()
    if not root.is_dir():
        return []
    return sorted(p.name for p in root.iterdir()
                  if p.is_dir() and not dit_component(p.name).missing(root)
                  and (p / "config.json").is_file() and p.name not in (VAE_DIR, TEXT_ENCODER_DIR)
                  and p.name not in LM_VARIANTS)
