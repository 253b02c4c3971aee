"""Where ACE-Step 1.5 checkpoints live, what a complete set is, and how to download one.

The layout is exactly what the hub ships (reference 3.1)::

    checkpoints/
      acestep-v15-turbo/     config.json, model.safetensors, silence_latent.pt
      vae/                   config.json, diffusion_pytorch_model.safetensors
      Qwen3-Embedding-0.6B/  config.json, model.safetensors, tokenizer files
      acestep-5Hz-lm-1.7B/   (optional planner)

Where: `$ACESTEP_CHECKPOINTS_DIR`, else `checkpoints/` in the working directory or in the nearest
parent that is this project's root (a kernel started in `notebooks/` sees the repository's weights).
Python files shipped next to the weights are never downloaded nor executed.
"""

from __future__ import annotations

import os
import shlex
from dataclasses import dataclass
from pathlib import Path

from ..errors import MissingCheckpointError
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
        raise ValueError(f"lm must be one of {', '.join(LM_VARIANTS)} (got {name!r:.80})")
    repo, in_main = LM_VARIANTS[name]
    return Component(name, repo, in_main, (("config.json",), _WEIGHTS, *_TOKENIZER))


# Download sizes before the hub is asked (bf16 safetensors; the hub's metadata gives exact ones online).
_APPROX_BYTES = {VAE_DIR: 337_000_000, TEXT_ENCODER_DIR: 1_200_000_000, "acestep-5Hz-lm-0.6B": 1_300_000_000,
                 "acestep-5Hz-lm-1.7B": 3_500_000_000, "acestep-5Hz-lm-4B": 8_000_000_000}
_APPROX_DIT_BYTES = {"2B": 4_790_000_000, "4B": 9_500_000_000}


def approx_download_bytes(component: Component) -> int:
    """About how many bytes `component` downloads (known sizes; 0 for a folder we do not know)."""
    if component.folder in _APPROX_BYTES:
        return _APPROX_BYTES[component.folder]
    variant = VARIANTS.get(component.folder)
    return _APPROX_DIT_BYTES.get(variant.size, 0) if variant else 0


def components_for(dit: str | None = "acestep-v15-turbo", lm: str | None = None) -> list[Component]:
    """The folders needed to run `dit` (plus VAE and text encoder) and optionally the planner `lm`."""
    parts = []
    if dit:
        parts += [dit_component(dit), VAE, TEXT_ENCODER]
    if lm:
        parts.append(lm_component(lm))
    return parts


def project_root(start: str | Path | None = None) -> Path | None:
    """The nearest folder from `start` (default: the working directory) upwards that holds this
    project's `pyproject.toml`, or None outside a checkout (a pip install, Colab's /content)."""
    here = Path(start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        manifest = folder / "pyproject.toml"
        try:
            if manifest.is_file() and 'name = "acestep-workbench"' in manifest.read_text(errors="replace"):
                return folder
        except OSError:  # an unreadable parent is not our checkout
            continue
    return None


def checkpoint_search_dirs() -> list[Path]:
    """The folders `default_checkpoints_dir` considers, in order: `$ACESTEP_CHECKPOINTS_DIR` alone
    when set, else `./checkpoints` and the project root's `checkpoints/` (once if they are one)."""
    if os.environ.get(ENV_CHECKPOINTS_DIR):
        return [Path(os.environ[ENV_CHECKPOINTS_DIR]).expanduser().absolute()]
    folders = [Path.cwd() / "checkpoints"]
    root = project_root()
    if root is not None and (root / "checkpoints").resolve() != folders[0].resolve():
        folders.append(root / "checkpoints")
    return folders


def default_checkpoints_dir() -> Path:
    """Where weights are looked for and downloaded to: `$ACESTEP_CHECKPOINTS_DIR`; else the first of
    `./checkpoints` and the project root's `checkpoints/` that holds a complete DiT; else the project
    root's `checkpoints/` inside a checkout, `./checkpoints` outside one."""
    folders = checkpoint_search_dirs()
    for folder in folders:
        if available_variants(folder):
            return folder
    return folders[-1]


def no_weights_note(folders: list[Path] | None = None) -> str:
    """One line for the fallback to the demo checkpoint: which folders held no complete DiT."""
    folders = checkpoint_search_dirs() if folders is None else folders
    where = " or ".join(str(f) for f in folders)
    return (f"no ACE-Step weights in {where} (set ${ENV_CHECKPOINTS_DIR} to use others): "
            "demo checkpoint, random weights that make noise, not music")


def missing_files(checkpoints_dir: str | Path, dit: str | None = "acestep-v15-turbo",
                  lm: str | None = None) -> list[str]:
    """Paths (relative to `checkpoints_dir`) of required files that are not on disk."""
    root = Path(checkpoints_dir)
    return [path for c in components_for(dit, lm) for path in c.missing(root)]


class DownloadError(MissingCheckpointError):
    """Checkpoint files are missing and downloading them failed; `offline` is True when the hub
    could not be reached at all (no network or `HF_HUB_OFFLINE=1`).

    The message says what is missing and how to get it by hand; the chain of hub and network
    exceptions behind it is kept on `__context__` but not printed (it is long and says less).
    """

    def __init__(self, message: str, offline: bool):
        super().__init__(message)
        self.offline = offline

    def _render_traceback_(self) -> list[str]:  # IPython: print the message, not the frames
        return [f"{type(self).__name__}: {self}"]


def hub_offline_by_setting() -> bool:
    """True when `HF_HUB_OFFLINE` switches the hub client off."""
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "on", "yes", "true")


def is_network_failure(exc: BaseException) -> bool:
    """True when `exc` (or an exception behind it) says the hub was not reached: offline mode,
    DNS, refused or timed-out connections. Gated repos, 404s and full disks are not network failures."""
    import socket

    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        name = type(exc).__name__
        if isinstance(exc, (socket.gaierror, ConnectionError, TimeoutError)) or name in (
                "OfflineModeIsEnabled", "ConnectError", "ConnectTimeout", "ReadTimeout", "NetworkError",
                "ProxyError", "ConnectionError"):
            return True
        if name == "LocalEntryNotFoundError" and hub_offline_by_setting():
            return True
        exc = exc.__cause__ or exc.__context__
    return False


def _folder_list(root: Path, components: list[Component]) -> list[str]:
    lines = []
    for c in components:
        names = [path.split("/", 1)[1] for path in c.missing(root)]
        if names:
            lines.append(f"  {c.folder}/  ({', '.join(names)})")
    return lines


def manual_download_commands(root: Path, components: list[Component]) -> list[str]:
    """`hf download` commands that fetch the missing `components` into a local `checkpoints/`, one
    per repository, to run on a machine with network before copying the folders into `root`."""
    wanted = [c for c in components if c.missing(root)]
    main = [c.folder for c in wanted if c.in_main_repo]
    commands = []
    if main:
        include = " ".join(f"'{folder}/*'" for folder in main)
        commands.append(f"hf download {MAIN_REPO} --include {include} --exclude '*.py' --local-dir checkpoints")
    commands += [f"hf download {c.repo_id} --exclude '*.py' --local-dir checkpoints/{c.folder}"
                 for c in wanted if not c.in_main_repo]
    return commands


def _offline_message(root: Path, components: list[Component], reason: str) -> str:
    wanted = [c for c in components if c.missing(root)]
    lines = [f"No network: the Hugging Face hub cannot be reached ({reason}), so nothing was downloaded.",
             f"Missing in {root}:", *_folder_list(root, components),
             "On a machine with network, download them:",
             *(f"  {command}" for command in manual_download_commands(root, components))]
    folders = ", ".join(f"{c.folder}/" for c in wanted)
    lines.append(f"then copy the folders {folders} from there into {root} "
                 f"(or point ${ENV_CHECKPOINTS_DIR} at the folder that holds them).")
    return "\n".join(lines)


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
    if not reason:  # a failed download already asked for one
        lines.append("or pass allow_download=True to Engine.from_pretrained.")
    return "\n".join(lines)


def download(checkpoints_dir: str | Path | None = None, dit: str | None = "acestep-v15-turbo",
             lm: str | None = None, token: str | None = None, only_missing: bool = True) -> Path:
    """Download the components needed for `dit` (and `lm`) with huggingface_hub, with progress bars.

    Only the needed folders are fetched: subfolders of the main repository through
    `allow_patterns`, the other variants from their own repositories. Code and pickle files are
    skipped. Returns the checkpoints folder. Raises `DownloadError` (what is missing and how to get
    it by hand; `.offline` when the hub cannot be reached) when the download fails.
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
        raise download_error(root, components, exc) from None
    return root


def download_error(root: Path, components: list[Component], exc: BaseException) -> DownloadError:
    """The short error for a failed download of `components` into `root` (caused by `exc`)."""
    if hub_offline_by_setting() or is_network_failure(exc):
        reason = "HF_HUB_OFFLINE=1" if hub_offline_by_setting() else _first_line(_innermost(exc))
        error = DownloadError(_offline_message(root, components, reason), offline=True)
    else:
        missing = [p for c in components for p in c.missing(root)]
        reason = f"{type(exc).__name__}: {_first_line(exc)}"
        error = DownloadError(_missing_message(root, missing, components, reason), offline=False)
    error.__context__ = exc
    error.__suppress_context__ = True
    return error


def _innermost(exc: BaseException) -> BaseException:
    seen = set()
    while (exc.__cause__ or exc.__context__) is not None and id(exc) not in seen:
        seen.add(id(exc))
        exc = exc.__cause__ or exc.__context__
    return exc


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    line = text[0] if text else type(exc).__name__
    return line if len(line) <= 160 else line[:157] + "..."


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
