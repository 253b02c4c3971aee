"""Export takes for use outside the workbench: one file, a whole batch or a lineage, to a folder or a zip.

    store.export(take_id, "song.mp3")                      # format from the suffix; .lrc and .json beside it
    store.export(take_id, "song.wav", bit_depth=16)
    export_batch(store, take_id, "batch.zip", format="flac")  # the takes generated with it
    export_lineage(store, take_id, "history/")                 # its ancestors, root first

Formats (all written by soundfile's libsndfile): WAV 16/24-bit or float, FLAC 16/24-bit, MP3, Ogg
Vorbis and Ogg Opus. Exported files get the permissions of any new file (0o666 less the umask),
as the takes do. Opus and MP3 only take some sample rates; other rates are resampled to
48 kHz (said in the manifest). Next to each audio file go its lyric timestamps as `.lrc` (when the
take has them) and its sidecar `.json` (everything needed to reproduce it).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
import threading
import zipfile
from pathlib import Path

import numpy as np

from ..arguments import flag_argument, path_argument, shown
from ..errors import TakeStoreError
from .audio_io import AudioFileError, resample

# format -> (libsndfile container, subtype per bit depth, file suffix)
FORMATS = {
    "wav": ("WAV", {16: "PCM_16", 24: "PCM_24", "float": "FLOAT"}, "wav"),
    "flac": ("FLAC", {16: "PCM_16", 24: "PCM_24"}, "flac"),
    "mp3": ("MP3", {None: "MPEG_LAYER_III"}, "mp3"),
    "ogg": ("OGG", {None: "VORBIS"}, "ogg"),
    "opus": ("OGG", {None: "OPUS"}, "opus"),
}
DEFAULT_BIT_DEPTH = {"wav": 24, "flac": 24}
LOSSLESS = ("wav", "flac")
# Rates the lossy encoders accept; anything else is resampled to 48 kHz first.
ALLOWED_RATES = {"opus": (8000, 12000, 16000, 24000, 48000),
                 "mp3": (8000, 11025, 12000, 16000, 22050, 24000, 32000, 44100, 48000)}
_SUFFIX_FORMAT = {"wav": "wav", "wave": "wav", "flac": "flac", "mp3": "mp3", "ogg": "ogg", "oga": "ogg",
                  "opus": "opus"}


FORMAT_LABELS = {"wav": "WAV (24-bit)", "flac": "FLAC (24-bit)", "mp3": "MP3", "ogg": "Ogg Vorbis", "opus": "Ogg Opus"}
_UMASK_LOCK = threading.Lock()


def _file_mode() -> int:
    """The mode a plain `open()` would give a new file (0o666 less the umask): a temporary file from
    `mkstemp` is 0o600, and an exported file is meant to be shared like the takes themselves."""
    with _UMASK_LOCK:
        umask = os.umask(0o022)
        os.umask(umask)
    return 0o666 & ~umask


def _publish(tmp: str, path: Path) -> None:
    os.chmod(tmp, _file_mode())
    os.replace(tmp, path)


def resolve_format(path: Path, format: str | None) -> str:
    if format is None:
        format = _SUFFIX_FORMAT.get(path.suffix.lower().lstrip("."))
        if format is None:
            raise TakeStoreError(f"format must be one of {', '.join(FORMATS)}: pass format=... or use a file "
                                 f"name ending in one of them (got {path.name!r:.80})")
    if not isinstance(format, str) or format.lower() not in FORMATS:
        raise TakeStoreError(f"format must be one of {', '.join(FORMATS)} (got {shown(format)})")
    return format.lower()


def _subtype(format: str, bit_depth) -> str:
    subtypes = FORMATS[format][1]
    if None in subtypes:
        if bit_depth is not None:
            raise TakeStoreError(f"bit_depth applies to wav and flac only, not {format} (got {bit_depth!r:.80})")
        return subtypes[None]
    bit_depth = DEFAULT_BIT_DEPTH[format] if bit_depth is None else bit_depth
    if not isinstance(bit_depth, (int, str)) or isinstance(bit_depth, bool) or bit_depth not in subtypes:
        raise TakeStoreError(f"bit_depth for {format} must be one of {', '.join(map(str, subtypes))} "
                             f"(got {bit_depth!r:.80})")
    return subtypes[bit_depth]


def write_audio_as(path, audio: np.ndarray, sample_rate: int, format: str | None = None, bit_depth=None) -> Path:
    """Write float32 `[channels, samples]` atomically in any export format. Returns the path written."""
    import soundfile as sf

    path = Path(path)
    format = resolve_format(path, format)
    subtype = _subtype(format, bit_depth)
    audio = np.asarray(audio, dtype=np.float32)
    if not np.isfinite(audio).all():
        raise AudioFileError(f"{path}: the audio contains NaN or Inf samples")
    allowed = ALLOWED_RATES.get(format)
    if allowed and int(sample_rate) not in allowed:
        audio, sample_rate = resample(audio, sample_rate, 48000), 48000
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=f".{FORMATS[format][2]}", dir=path.parent)
    os.close(fd)
    try:
        # Lossy encoders need samples in [-1, 1]; lossless float keeps them exactly.
        data = audio if subtype == "FLOAT" else np.clip(audio, -1.0, 1.0)
        with open(tmp, "w+b") as f:  # Python's open takes any name the OS gives (soundfile's wants UTF-8)
            sf.write(f, data.T, int(sample_rate), format=FORMATS[format][0], subtype=subtype)
        _publish(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def _write_text(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=path.suffix, dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        _publish(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def export_take(store, take_id: str, path, format: str | None = None, bit_depth=None, extras: bool = True) -> Path:
    """Write take `take_id` of `store` to `path` (format from the suffix unless given); with `extras`, its
    `.lrc` (when it has lyric timestamps) and its sidecar `.json` go beside it with the same stem.
    Returns the audio path."""
    path = path_argument(path, "path", TakeStoreError, kind="file")
    flag_argument(extras, "extras", TakeStoreError)
    format = resolve_format(path, format)
    _subtype(format, bit_depth)  # refuse a bad bit depth before loading anything
    take = store.load(take_id)
    written = write_audio_as(path, take.audio, take.sample_rate, format, bit_depth)
    if extras:
        lrc = (take.notes or {}).get("lrc")
        if lrc:
            _write_text(path.with_suffix(".lrc"), lrc if lrc.endswith("\n") else lrc + "\n")
        record = store.record(take_id)
        record["exported_as"] = {"file": written.name, "format": format,
                                 "bit_depth": bit_depth if format in LOSSLESS else None}
        _write_text(path.with_suffix(".json"), json.dumps(record, indent=2, ensure_ascii=False))
    return written


def _file_stem(record: dict, index: int) -> str:
    name = record.get("name") or record["id"]
    safe = re.sub(r"[^\w.-]+", "_", name, flags=re.UNICODE).strip("._") or record["id"]
    return f"{index + 1:02d}-{safe}"


def export_takes(store, take_ids, dest, format: str = "wav", bit_depth=None, extras: bool = True) -> Path:
    """Export several takes (in the order given) to the folder `dest`, or to a zip when `dest` ends
    in `.zip`. Files are numbered `01-<name>.<ext>`; `manifest.json` lists them. Returns `dest`."""
    if isinstance(take_ids, (str, bytes)) or not isinstance(take_ids, (list, tuple)):
        raise TakeStoreError(f"take_ids must be a list of take ids (got {type(take_ids).__name__} {shown(take_ids)})")
    take_ids = list(take_ids)
    if not take_ids:
        raise TakeStoreError("take_ids must name at least one take (got none)")
    format = resolve_format(Path("x"), format)
    _subtype(format, bit_depth)
    flag_argument(extras, "extras", TakeStoreError)
    records = [store.record(take_id) for take_id in take_ids]  # every id checked before writing anything
    dest = path_argument(dest, "dest", TakeStoreError, kind="file" if str(dest).lower().endswith(".zip") else "folder")
    as_zip = dest.suffix.lower() == ".zip"
    if as_zip:
        dest.parent.mkdir(parents=True, exist_ok=True)
        folder = Path(tempfile.mkdtemp(prefix=".tmp-export-", dir=dest.parent))
    else:
        folder = dest
    try:
        folder.mkdir(parents=True, exist_ok=True)
        manifest = []
        for index, record in enumerate(records):
            stem = _file_stem(record, index)
            audio = export_take(store, record["id"], folder / f"{stem}.{FORMATS[format][2]}", format, bit_depth, extras)
            manifest.append({"id": record["id"], "name": record.get("name", ""), "parent_id": record.get("parent_id"),
                             "file": audio.name, "seed": record.get("seed"),
                             "lrc": f"{stem}.lrc" if (folder / f"{stem}.lrc").is_file() else None})
        _write_text(folder / "manifest.json", json.dumps({"format": format, "takes": manifest}, indent=2,
                                                         ensure_ascii=False))
        if as_zip:
            fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".zip", dir=dest.parent)
            os.close(fd)
            try:
                with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as archive:
                    for file in sorted(folder.iterdir()):
                        archive.write(file, arcname=file.name)
                _publish(tmp, dest)
            finally:
                if os.path.exists(tmp):
                    os.unlink(tmp)
    finally:
        if as_zip:
            shutil.rmtree(folder, ignore_errors=True)
    return dest


def batch_of(store, take_id: str) -> list[str]:
    """Ids of the takes generated in the same call as `take_id` (same blueprint, task and timings), by batch index."""
    record = store.record(take_id)
    key = (json.dumps(record.get("blueprint"), sort_keys=True), json.dumps(record.get("task"), sort_keys=True),
           json.dumps(record.get("timings"), sort_keys=True))
    same = [r for r in store.list()
            if (json.dumps(r.get("blueprint"), sort_keys=True), json.dumps(r.get("task"), sort_keys=True),
                json.dumps(r.get("timings"), sort_keys=True)) == key]
    return [r["id"] for r in sorted(same, key=lambda r: (r.get("batch_index", 0), r["id"]))]


def export_batch(store, take_id: str, dest, **options) -> Path:
    """Export the batch `take_id` belongs to (see `batch_of`) to a folder or zip (see `export_takes`)."""
    return export_takes(store, batch_of(store, take_id), dest, **options)


def export_lineage(store, take_id: str, dest, **options) -> Path:
    """Export `take_id` and its ancestors, root first, to a folder or zip (see `export_takes`)."""
    return export_takes(store, store.lineage(take_id), dest, **options)
