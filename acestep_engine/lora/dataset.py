"""Training data for a LoRA: a folder of songs, encoded once and cached, so training runs only the DiT.

Each song `song.wav` may come with a sidecar: `song.json` (any of caption, lyrics, bpm,
keyscale, timesignature, language, instrumental; upstream's spellings such as `prompt`,
`key_scale`, `vocal_language` are accepted; a workbench export's sidecar, whose fields sit under
"blueprint", too; other keys are ignored and listed) or `song.txt` (the caption) and `song.lyrics.txt`.
A song that cannot be used (unreadable audio, a bad sidecar) is skipped with its reason
(`dataset.skipped`); the others are prepared.
A song without a sidecar is labelled by `planner.understand` when a planner is given, and
otherwise trains with an empty caption and "[Instrumental]".

Preparation resamples to the VAE's rate (stereo), keeps at most `max_seconds`, encodes the
latents with the tiled VAE (posterior mean) and the caption/lyric prompts exactly as generation
does (`Blueprint.caption_prompt`/`lyric_prompt`, then `encode_conditions`), and writes one
safetensors file per song plus `dataset.json`. A song whose audio, sidecar and model are
unchanged is not encoded again.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import math
import numbers
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import torch

from ..blueprint import DURATION_RANGE, Blueprint
from ..errors import BlueprintError, GenerationCancelled, LoRAError
from ..json_files import read_json
from .adapters import METADATA_KEY

AUDIO_EXTENSIONS = (".wav", ".flac", ".mp3", ".ogg", ".oga", ".opus", ".m4a", ".aac", ".aif", ".aiff")
MANIFEST = "dataset.json"
FORMAT_VERSION = 1
MAX_SECONDS_RANGE = (1.0, 600.0)
# Sidecar keys -> Blueprint fields (our names and upstream's dataset spellings).
SIDECAR_FIELDS = {
    "caption": "caption", "prompt": "caption", "tags": "caption",
    "lyrics": "lyrics", "lyric": "lyrics",
    "bpm": "bpm", "keyscale": "keyscale", "key_scale": "keyscale", "key": "keyscale",
    "timesignature": "timesignature", "time_signature": "timesignature",
    "language": "language", "vocal_language": "language",
    "instrumental": "instrumental", "duration": "duration",
}
SIDECAR_IGNORED = ("id", "filename", "audio", "audio_path", "title", "notes", "version", "genres")
BLUEPRINT_FIELDS = ("caption", "lyrics", "bpm", "keyscale", "timesignature", "duration", "language", "instrumental")


@dataclass(frozen=True)
class LoRAProgress:
    """One report from preparation or training. `stage` is "prepare", "train", "save" or "done";
    `step`/`steps` count songs (prepare) or optimizer steps (train)."""

    stage: str
    step: int
    steps: int
    message: str = ""
    loss: float | None = None
    lr: float | None = None

    @property
    def fraction(self) -> float:
        return min(1.0, self.step / self.steps) if self.steps else 1.0


# --------------------------------------------------------------------------- finding songs and labels

def find_songs(folder) -> list[Path]:
    """Audio files directly inside `folder`, sorted by name."""
    folder = Path(folder)
    if not folder.is_dir():
        raise LoRAError(f"folder {folder} does not exist or is not a folder")
    songs = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in AUDIO_EXTENSIONS
                   and not p.name.startswith("."))
    if not songs:
        raise LoRAError(f"folder {folder} holds no audio files ({', '.join(AUDIO_EXTENSIONS)})")
    return songs


def sidecar_files(audio: Path) -> list[Path]:
    candidates = [audio.with_suffix(".json"), audio.with_suffix(".txt"), audio.with_name(audio.stem + ".lyrics.txt")]
    return [p for p in candidates if p.is_file()]


def read_sidecar(audio, ignored: list | None = None) -> Blueprint | None:
    """The blueprint the sidecar files of `audio` describe (not validated), or None without any.
    Keys that are not sidecar fields are ignored; with `ignored`, their names are appended to it."""
    audio = Path(audio)
    files = sidecar_files(audio)
    if not files:
        return None
    values: dict = {}
    json_path = audio.with_suffix(".json")
    if json_path in files:
        data = read_json(json_path, LoRAError, expect=None)
        if not isinstance(data, dict):
            raise LoRAError(f"{json_path} must hold an object such as {{\"caption\": ..., \"lyrics\": ...}}")
        nested = data.get("blueprint")
        if isinstance(nested, dict):  # a take's sidecar, as the workbench exports it beside the audio
            data = {**{k: v for k, v in nested.items() if k in BLUEPRINT_FIELDS},
                    **{k: v for k, v in data.items() if k != "blueprint"}}
        for key, value in data.items():
            if key in SIDECAR_IGNORED:
                continue
            if key not in SIDECAR_FIELDS:
                if ignored is not None:
                    ignored.append(key)
                continue
            if isinstance(value, list) and SIDECAR_FIELDS[key] == "caption":
                value = ", ".join(map(str, value))
            values[SIDECAR_FIELDS[key]] = value
    caption_path, lyrics_path = audio.with_suffix(".txt"), audio.with_name(audio.stem + ".lyrics.txt")
    if caption_path in files and "caption" not in values:
        values["caption"] = _read_text(caption_path)
    if lyrics_path in files and "lyrics" not in values:
        values["lyrics"] = _read_text(lyrics_path)
    return Blueprint(**values)


def _read_text(path: Path) -> str:
    try:
        return path.read_bytes().decode("utf-8-sig").strip()
    except UnicodeDecodeError as exc:
        raise LoRAError(f"{path} is not UTF-8 text (byte {exc.start}: {exc.reason})") from None


def _understand(planner, audio: Path, engine) -> Blueprint:
    method = getattr(planner, "understand", None)
    if not callable(method):
        raise LoRAError(f"planner must have an understand(audio) method (got {type(planner).__name__})")
    try:
        accepts_engine = "engine" in inspect.signature(method).parameters
    except (TypeError, ValueError):
        accepts_engine = False
    result = method(str(audio), engine=engine) if accepts_engine else method(str(audio))
    if not isinstance(result, Blueprint):
        raise LoRAError(f"planner.understand must return a Blueprint (got {type(result).__name__} for {audio.name})")
    return result


def _blueprint_dict(bp: Blueprint) -> dict:
    return {name: getattr(bp, name) for name in BLUEPRINT_FIELDS}


# --------------------------------------------------------------------------- the prepared dataset

@dataclass
class PreparedSong:
    """One cached song. `frames` latent frames at the engine's frame rate; `file` is relative to the cache."""

    id: str
    file: str
    audio: str
    seconds: float
    frames: int
    labelled_by: str  # "sidecar", "planner" or "none"
    blueprint: dict
    caption_prompt: str
    lyric_prompt: str
    key: str

    def to_dict(self) -> dict:
        return dict(self.__dict__)


class LoRADataset(torch.utils.data.Dataset):
    """Cached songs, read back lazily. Item i is a dict of tensors:

    target_latents `[T, C]`, context_latents `[T, 2C]` (silence | chunk mask of ones, as text2music),
    encoder_hidden_states `[S, H]` and encoder_attention_mask `[S]` (bool).
    """

    def __init__(self, cache_dir, songs: list[PreparedSong], info: dict):
        self.cache_dir = Path(cache_dir)
        self.songs = songs
        self.info = info

    @classmethod
    def load(cls, cache_dir) -> "LoRADataset":
        cache_dir = Path(cache_dir)
        path = cache_dir / MANIFEST
        if not path.is_file():
            raise LoRAError(f"{cache_dir} holds no prepared dataset ({MANIFEST} is missing): run prepare_dataset first")
        data = read_json(path, LoRAError)
        try:
            songs = [PreparedSong(**s) for s in data["songs"]]
        except (KeyError, TypeError) as exc:
            raise LoRAError(f"{path} is not a dataset manifest ({type(exc).__name__}: {exc})") from None
        if data.get("format") != FORMAT_VERSION:
            raise LoRAError(f"{path} has format {data.get('format')!r}; this version reads {FORMAT_VERSION}: "
                            "prepare again")
        info = {k: v for k, v in data.items() if k != "songs"}
        return cls(cache_dir, songs, info)

    def __len__(self) -> int:
        return len(self.songs)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        path = self.cache_dir / self.songs[index].file
        try:
            return load_file(str(path))
        except (SafetensorError, OSError) as exc:
            raise LoRAError(f"{path} is unreadable ({exc}): prepare the dataset again") from None

    @property
    def fingerprint(self) -> str:
        """Changes whenever any song's tensors would change (used to refuse resuming on other data)."""
        return hashlib.sha256("|".join(s.key for s in self.songs).encode()).hexdigest()[:16]

    @property
    def seconds(self) -> float:
        return sum(s.seconds for s in self.songs)

    @property
    def skipped(self) -> list[list[str]]:
        """`[[file name, reason], ...]`: the songs of the folder that could not be prepared."""
        return [list(item) for item in self.info.get("skipped", [])]

    @property
    def ignored(self) -> dict[str, list[str]]:
        """`{sidecar name: [keys]}`: sidecar keys that are not blueprint fields (left out)."""
        return dict(self.info.get("ignored", {}))

    def check_engine(self, engine) -> None:
        """The cached latents and conditions belong to the weights that made them."""
        if self.info.get("weights") != engine.models.fingerprint or self.info.get("dtype") != _dtype_name(engine):
            raise LoRAError(f"the dataset in {self.cache_dir} was prepared with {self.info.get('variant')} "
                            f"(weights {self.info.get('weights')}, {self.info.get('dtype')}); this engine runs "
                            f"{engine.variant.name} (weights {engine.models.fingerprint}, {_dtype_name(engine)}): "
                            f"prepare it again with this engine")

    def __repr__(self) -> str:
        return f"LoRADataset({len(self)} songs, {self.seconds:.1f} s, {self.cache_dir})"


def _dtype_name(engine) -> str:
    return str(engine.dtype).replace("torch.", "")


def collate(items: list[dict], silence: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
    """Stack songs of different lengths: latents padded with `silence` `[T, C]` (zeros without it),
    conditions with zeros; `loss_mask` `[B, T]` is 1 on real frames only."""
    frames = max(i["target_latents"].shape[0] for i in items)
    tokens = max(i["encoder_hidden_states"].shape[0] for i in items)
    out = {k: [] for k in ("target_latents", "context_latents", "encoder_hidden_states", "encoder_attention_mask",
                           "loss_mask")}
    for item in items:
        latents, context = item["target_latents"], item["context_latents"]
        states, mask = item["encoder_hidden_states"], item["encoder_attention_mask"]
        pad = frames - latents.shape[0]
        fill = (silence[:pad].to(latents) if silence is not None and silence.shape[0] >= pad
                else torch.zeros(pad, latents.shape[1], dtype=latents.dtype))
        out["target_latents"].append(torch.cat([latents, fill]))
        out["context_latents"].append(torch.cat([context, torch.cat([fill, torch.ones_like(fill)], dim=-1)]))
        out["loss_mask"].append(torch.cat([torch.ones(latents.shape[0]), torch.zeros(pad)]))
        extra = tokens - states.shape[0]
        out["encoder_hidden_states"].append(torch.cat([states, states.new_zeros(extra, states.shape[1])]))
        out["encoder_attention_mask"].append(torch.cat([mask, mask.new_zeros(extra)]))
    return {k: torch.stack(v) for k, v in out.items()}


# --------------------------------------------------------------------------- preparation

def _cache_key(engine, audio: Path, labels: str, max_seconds: float) -> str:
    stat = audio.stat()
    facts = [FORMAT_VERSION, audio.name, stat.st_size, stat.st_mtime_ns, labels, max_seconds,
             engine.models.fingerprint, _dtype_name(engine), engine.sample_rate, engine.hop_length]
    return hashlib.sha256(json.dumps(facts, default=str).encode()).hexdigest()[:24]


def _atomic_save(tensors: dict, path: Path, metadata: dict) -> None:
    from safetensors.torch import save_file

    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".safetensors", dir=path.parent)
    os.close(fd)
    try:
        save_file({k: v.detach().cpu().contiguous() for k, v in tensors.items()}, tmp, metadata=metadata)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _write_manifest(cache_dir: Path, info: dict, songs: list[PreparedSong]) -> None:
    text = json.dumps({**info, "songs": [s.to_dict() for s in songs]}, indent=2, ensure_ascii=False)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".json", dir=cache_dir)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, cache_dir / MANIFEST)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _unique_id(stem: str, taken: set[str]) -> str:
    base = "".join(c if c.isalnum() or c in "-_" else "_" for c in stem) or "song"
    name, n = base, 2
    while name in taken:
        name, n = f"{base}-{n}", n + 1
    taken.add(name)
    return name


def prepare_dataset(engine, folder, cache_dir=None, planner=None, max_seconds: float = 240.0, progress=None,
                    cancel=None) -> LoRADataset:
    """Encode every song of `folder` once and cache the tensors in `cache_dir` (default `folder/.lora-cache`).

    `planner`: anything with `understand(audio_path)` returning a Blueprint; used for songs
    without a sidecar. `max_seconds`: songs are cut after this many seconds (1-600, default 240
    as upstream). The caption prompt's duration is the clip's length, brought into the
    blueprint's 10-600 s range. `progress(LoRAProgress)` is called per song; setting `cancel`
    (a threading.Event) stops between songs with GenerationCancelled (songs done stay cached).
    A song that cannot be used is skipped (`dataset.skipped` says why); LoRAError when none can.
    """
    folder = Path(folder)
    max_seconds = check_max_seconds(max_seconds)
    songs_on_disk = find_songs(folder)
    cache_dir = Path(cache_dir) if cache_dir is not None else folder / ".lora-cache"
    cache_dir.mkdir(parents=True, exist_ok=True)
    report = progress or (lambda p: None)
    previous = {}
    if (cache_dir / MANIFEST).is_file():
        try:
            previous = {s.audio: s for s in LoRADataset.load(cache_dir).songs}
        except LoRAError:
            previous = {}
    info = {"format": FORMAT_VERSION, "folder": str(folder.resolve()), "variant": engine.variant.name,
            "weights": engine.models.fingerprint, "dtype": _dtype_name(engine), "sample_rate": engine.sample_rate,
            "frame_rate": engine.frame_rate, "latent_channels": engine.latent_channels, "max_seconds": max_seconds}
    prepared: list[PreparedSong] = []
    skipped: list[list[str]] = []
    ignored: dict[str, list[str]] = {}
    taken: set[str] = set()
    total = len(songs_on_disk)
    for index, audio_path in enumerate(songs_on_disk):
        if cancel is not None and cancel.is_set():
            _write_manifest(cache_dir, info, prepared)
            raise GenerationCancelled(f"preparation cancelled after {index} of {total} songs")
        report(LoRAProgress("prepare", index, total, f"{audio_path.name} ({index + 1}/{total})"))
        try:
            song = _prepare_song(engine, audio_path, cache_dir, previous, taken, planner, max_seconds, ignored)
        except LoRAError as exc:  # this song cannot be used: say why, prepare the others
            skipped.append([audio_path.name, str(exc)])
            continue
        prepared.append(song)
    info["skipped"], info["ignored"] = skipped, ignored
    if not prepared:
        reasons = "; ".join(f"{name}: {reason}" for name, reason in skipped)
        raise LoRAError(f"no song in {folder} could be prepared ({reasons})")
    _write_manifest(cache_dir, info, prepared)
    kept = {s.file for s in prepared}
    for old in previous.values():
        if old.file not in kept and (cache_dir / old.file).is_file():
            (cache_dir / old.file).unlink()
    left_out = f" ({len(skipped)} skipped)" if skipped else ""
    report(LoRAProgress("done", total, total, f"{len(prepared)} songs ready in {cache_dir}{left_out}"))
    return LoRADataset(cache_dir, prepared, info)


def _prepare_song(engine, audio_path: Path, cache_dir: Path, previous: dict, taken: set, planner,
                  max_seconds: float, ignored: dict) -> PreparedSong:
    """Encode one song (or reuse its cached tensors); LoRAError says why it cannot be used."""
    from ..generation.conditioning import encode_conditions
    from ..takes.audio_io import AudioFileError, load_source_audio

    keys: list = []
    sidecar = read_sidecar(audio_path, keys)
    if keys:
        ignored[audio_path.with_suffix(".json").name] = keys
    sidecar_text = "".join(p.read_text(encoding="utf-8", errors="replace") for p in sidecar_files(audio_path))
    labels = f"sidecar:{sidecar_text}" if sidecar is not None else "no sidecar"
    key = _cache_key(engine, audio_path, labels, max_seconds)
    song_id = _unique_id(audio_path.stem, taken)
    old = previous.get(audio_path.name)
    relabel = old is not None and old.labelled_by == "none" and planner is not None
    if old is not None and old.key == key and not relabel and (cache_dir / old.file).is_file():
        old.id = song_id
        return old
    try:
        audio = load_source_audio(audio_path, engine.sample_rate)
    except AudioFileError as exc:
        raise LoRAError(str(exc)) from None
    audio = audio[:, : int(max_seconds * engine.sample_rate)]
    frames = audio.shape[-1] // engine.hop_length
    if frames < 1:
        raise LoRAError(f"{audio_path} is too short: {audio.shape[-1]} samples, less than one latent frame")
    seconds = audio.shape[-1] / engine.sample_rate
    if sidecar is not None:
        blueprint, labelled_by, where = sidecar, "sidecar", sidecar_files(audio_path)[0]
    elif planner is not None:
        blueprint, labelled_by, where = _understand(planner, audio_path, engine), "planner", "planner.understand"
    else:
        blueprint, labelled_by, where = Blueprint(), "none", audio_path
    lo, hi = DURATION_RANGE
    try:
        blueprint = blueprint.replace(duration=float(min(max(seconds, lo), hi))).validate()
    except BlueprintError as exc:
        raise LoRAError(f"{where}: {exc}") from None
    caption_prompt, lyric_prompt = blueprint.caption_prompt(), blueprint.lyric_prompt()
    latents = engine.encode_audio(audio)[:frames]
    if not bool(torch.isfinite(latents).all()):
        raise LoRAError(f"{audio_path}: the VAE turned this song into NaN or infinite latents; it cannot be "
                        "trained on (try float32, or check the file)")
    conditions = encode_conditions(engine.models, [caption_prompt], [lyric_prompt])
    context = torch.cat([engine.silence(frames), torch.ones_like(latents)], dim=-1)
    song = PreparedSong(song_id, f"{song_id}-{key[:8]}.safetensors", audio_path.name, round(seconds, 3),
                        int(frames), labelled_by, _blueprint_dict(blueprint), caption_prompt, lyric_prompt, key)
    tensors = {"target_latents": latents.to(engine.dtype), "context_latents": context.to(engine.dtype),
               "encoder_hidden_states": conditions.states[0].to(engine.dtype),
               "encoder_attention_mask": conditions.mask[0].bool()}
    _atomic_save(tensors, cache_dir / song.file, {"format": "pt", METADATA_KEY: json.dumps(song.to_dict())})
    return song


def check_max_seconds(value) -> float:
    lo, hi = MAX_SECONDS_RANGE
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value) \
            or not lo <= value <= hi:
        raise LoRAError(f"max_seconds must be between {lo:g} and {hi:g} seconds (got {value!r:.80})")
    return float(value)
