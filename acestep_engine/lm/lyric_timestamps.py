"""Upstream ACE-Step 1.5's lyric timestamps of a take (`dit_alignment_score.py`): LRC and an alignment score.

    stamps = lyric_timestamps(engine, take)       # line and word times, .lrc text, alignment score
    save_lyric_timestamps(store, take.id, stamps)

The take's final latents are re-noised to `t = 1 / steps` (upstream's choice for the last step's
time) with seed 42, and one DiT pass, cut short after the last layer needed, records the
cross-attention of the heads named by `lyric_alignment_layers_config` (default {2: [6], 3: [10, 11],
4: [3], 5: [8, 9], 6: [8]}). For timestamps the lyric-token x frame attention is denoised (row x
column softmax consensus, median suppression, squaring, z-score) and aligned by dynamic time
warping; the alignment score uses the min-max normalised head average: coverage^2 x
monotonicity^2 x path confidence. Attention is read with forward hooks on diffusers' modules;
nothing is patched or forked.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass

import numpy as np
import torch

from ..errors import GenerationCancelled, TaskError
from ..progress import Progress

DEFAULT_ALIGNMENT_LAYERS = {2: [6], 3: [10, 11], 4: [3], 5: [8, 9], 6: [8]}
ALIGNMENT_SEED = 42
CONSENSUS_STRENGTH = 2.0  # upstream's "violence level": how many medians are subtracted per row and column
COVERAGE_THRESHOLD = 0.1
CENTROID_THRESHOLD = 0.01
OVERLAP_FRAMES = 9.0


@dataclass(frozen=True)
class TimedText:
    """A lyric word or line (or token) and when it is sung, in seconds from the start of the take."""

    text: str
    start: float
    end: float


@dataclass(frozen=True)
class LyricLine:
    """One sung line: its text, when it starts and ends (seconds), and its words' times."""

    text: str
    start: float
    end: float
    words: tuple = ()


@dataclass(frozen=True)
class LyricTimestamps:
    """Lines (with their words) and tokens in order, the LRC text, and the alignment score with its
    three factors (each 0-1). `layers` are the (layer: heads) read; `note` says when they were clamped
    or when the generation's conditions could not be rebuilt."""

    lines: tuple
    tokens: tuple
    lrc: str
    score: float
    coverage: float
    monotonicity: float
    confidence: float
    duration: float
    layers: dict
    note: str = ""

    @property
    def line_times(self) -> list[float]:
        return [line.start for line in self.lines]

    def to_dict(self) -> dict:
        out = asdict(self)
        out["layers"] = {str(k): v for k, v in self.layers.items()}
        return out

    @classmethod
    def from_dict(cls, data: dict) -> "LyricTimestamps":
        lines = tuple(LyricLine(l["text"], l["start"], l["end"], tuple(TimedText(**w) for w in l["words"]))
                      for l in data["lines"])
        return cls(lines=lines, tokens=tuple(TimedText(**t) for t in data["tokens"]), lrc=data["lrc"],
                   score=data["score"], coverage=data["coverage"], monotonicity=data["monotonicity"],
                   confidence=data["confidence"], duration=data["duration"],
                   layers={int(k): list(v) for k, v in data["layers"].items()}, note=data.get("note", ""))


def format_lrc_time(seconds: float) -> str:
    seconds = max(0.0, float(seconds))
    centis = int(round(seconds * 100))
    return f"{centis // 6000:02d}:{(centis % 6000) / 100:05.2f}"


def to_lrc(lines) -> str:
    """`[mm:ss.xx]text` per line (anything with `.start` and `.text`)."""
    out = [f"[{format_lrc_time(line.start)}]{line.text}" for line in lines]
    return "\n".join(out) + ("\n" if out else "")


_LRC_LINE = re.compile(r"^((?:\[\d{1,3}:\d{1,2}(?:[.:]\d{1,3})?\])+)(.*)$")
_LRC_TIME = re.compile(r"\[(\d{1,3}):(\d{1,2})(?:[.:](\d{1,3}))?\]")


def parse_lrc(text: str) -> list[tuple[float, str]]:
    """LRC text -> [(seconds, line text)] sorted by time. Metadata tags ([ar:...], [length:...]) are
    skipped; a line with several time tags appears once per tag."""
    entries = []
    for raw in text.splitlines():
        match = _LRC_LINE.match(raw.strip())
        if not match:
            continue
        for minutes, seconds, fraction in _LRC_TIME.findall(match.group(1)):
            value = int(minutes) * 60 + int(seconds) + (int(fraction) / 10 ** len(fraction) if fraction else 0.0)
            entries.append((value, match.group(2).strip()))
    return sorted(entries, key=lambda e: e[0])


def alignment_layers(engine, layers: dict | None = None) -> tuple[dict[int, list[int]], str]:
    """The (layer: heads) to read: `layers`, else the checkpoint's `lyric_alignment_layers_config`, else
    upstream's default; layers and heads this DiT lacks are clamped to its last ones (with a note)."""
    configured = layers or engine.models.config.get("lyric_alignment_layers_config") or DEFAULT_ALIGNMENT_LAYERS
    try:
        configured = {int(k): [int(h) for h in v] for k, v in dict(configured).items()}
    except (TypeError, ValueError):
        raise TaskError(f"layers must map layer numbers to lists of head numbers (got {configured!r})") from None
    if not configured or any(k < 0 or not v or min(v) < 0 for k, v in configured.items()):
        raise TaskError(f"layers must map layer numbers >= 0 to non-empty lists of heads >= 0 (got {configured})")
    blocks = engine.models.transformer.layers
    n_layers, n_heads = len(blocks), blocks[0].cross_attn.heads
    used: dict[int, list[int]] = {}
    for layer, heads in sorted(configured.items()):
        target = used.setdefault(min(layer, n_layers - 1), [])
        for head in heads:
            if min(head, n_heads - 1) not in target:
                target.append(min(head, n_heads - 1))
    note = ""
    if used != configured:
        note = (f"lyric_alignment_layers_config {configured} names layers or heads this DiT lacks "
                f"({n_layers} layers x {n_heads} heads): read {used} instead")
    return used, note


def cross_attention_weights(attn, hidden_states: torch.Tensor, encoder_hidden_states: torch.Tensor,
                            heads=None) -> torch.Tensor:
    """Softmax attention weights `[B, len(heads), queries, keys]` (float32) of a diffusers ACE-Step
    cross-attention module, computed from its own projections and norms as its processor does
    (grouped-query attention: query head h reads key head h // (heads / kv_heads))."""
    heads = list(range(attn.heads)) if heads is None else list(heads)
    query = attn.norm_q(attn.to_q(hidden_states).unflatten(-1, (attn.heads, attn.head_dim)))
    key = attn.norm_k(attn.to_k(encoder_hidden_states).unflatten(-1, (attn.kv_heads, attn.head_dim)))
    group = attn.heads // attn.kv_heads
    q = query[:, :, heads].float()
    k = key[:, :, [h // group for h in heads]].float()
    return torch.softmax(torch.einsum("bqhd,bkhd->bhqk", q, k) * attn.scaling, dim=-1)


class _EnoughLayers(Exception):
    """Raised by a hook after the last layer needed, to end the DiT pass early."""


def capture_cross_attention(transformer, layers: dict[int, list[int]], **inputs) -> dict[int, torch.Tensor]:
    """Run the DiT once on `inputs` and return {layer: weights `[B, heads, frames, condition tokens]`}
    for the requested heads, stopping after the deepest requested layer."""
    captured: dict[int, torch.Tensor] = {}
    handles = []

    def reader(index):
        def hook(module, args, kwargs, output):
            hidden = kwargs.get("hidden_states", args[0] if args else None)
            captured[index] = cross_attention_weights(module, hidden, kwargs["encoder_hidden_states"], layers[index])
        return hook

    def stop(module, args, output):
        raise _EnoughLayers

    try:
        for index in layers:
            handles.append(transformer.layers[index].cross_attn.register_forward_hook(reader(index), with_kwargs=True))
        handles.append(transformer.layers[max(layers)].register_forward_hook(stop))
        try:
            with torch.no_grad():
                transformer(**inputs, return_dict=False)
        except _EnoughLayers:
            pass
    finally:
        for handle in handles:
            handle.remove()
    missing = [i for i in layers if i not in captured]
    if missing:
        raise TaskError(f"the DiT pass did not reach cross-attention layers {missing}")
    return captured


def _lyric_span(engine, blueprint) -> tuple[list[int], list[tuple[int, int]], int, int, str]:
    """Token ids and char offsets of the lyric prompt as the DiT sees it, and the [start, end) of the
    lyric tokens after the `# Languages ... # Lyric` header and before `<|endoftext|>`."""
    from ..generation.conditioning import LYRIC_MAX_TOKENS

    tokenizer = engine.models.text_tokenizer
    prompt = blueprint.lyric_prompt()
    encoded = tokenizer([prompt], max_length=LYRIC_MAX_TOKENS, truncation=True, return_offsets_mapping=True)
    ids, offsets = encoded["input_ids"][0], [tuple(o) for o in encoded["offset_mapping"][0]]
    header = len(prompt) - len(blueprint.effective_lyrics) - len("<|endoftext|>")
    start = next((i for i, (s, e) in enumerate(offsets) if e > header), len(ids))
    eot = tokenizer.convert_tokens_to_ids("<|endoftext|>")
    end = ids.index(eot) if eot in ids else len(ids)
    return ids, offsets, start, end, prompt


def _dtw_path(cost: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Monotone path (token index, frame index) through `cost` `[tokens, frames]` from corner to corner."""
    import librosa

    _, path = librosa.sequence.dtw(C=cost.astype(np.float64), backtrack=True)
    path = path[::-1]
    return path[:, 0], path[:, 1]


def _consensus_matrix(weights: torch.Tensor) -> np.ndarray:
    """Denoised token x frame matrix for timing: heads `[H, T, F]` -> `[T, F]` (upstream's aligner).
    In numpy: torch.quantile refuses tensors of more than 2**24 elements (a few minutes of song)."""
    from scipy.special import softmax

    w = weights.numpy().astype(np.float32)
    processed = softmax(w, axis=-1) * softmax(w, axis=-2)
    processed = np.maximum(processed - CONSENSUS_STRENGTH * np.quantile(processed, 0.5, axis=-1, keepdims=True), 0)
    processed = np.maximum(processed - CONSENSUS_STRENGTH * np.quantile(processed, 0.5, axis=-2, keepdims=True), 0)
    processed **= 2
    return ((processed - processed.mean()) / (processed.std() + 1e-9)).mean(axis=0)


def _tag_mask(token_texts: list[str]) -> np.ndarray:
    """1 for sung tokens, 0 for tokens inside `[section]` tags."""
    mask = np.ones(len(token_texts), dtype=np.int64)
    inside = False
    for i, text in enumerate(token_texts):
        if "[" in text:
            inside = True
        if inside:
            mask[i] = 0
        if "]" in text:
            inside = False
            mask[i] = 0
    return mask


def alignment_score(weights: torch.Tensor, token_texts: list[str]) -> tuple[float, float, float, float]:
    """(score, coverage, monotonicity, confidence) of heads `[H, T, F]`: upstream's lyric score."""
    energy = weights.mean(dim=0).double().numpy()
    lo, hi = energy.min(), energy.max()
    energy = (energy - lo) / (hi - lo) if hi - lo > 1e-9 else np.zeros_like(energy)
    rows, cols = _dtw_path(-(energy ** 2))
    sung = _tag_mask(token_texts).astype(bool)
    if len(sung) != energy.shape[0]:
        sung = np.ones(energy.shape[0], dtype=bool)
    coverage = float((sung & (energy.max(axis=1) > COVERAGE_THRESHOLD)).sum() / sung.sum()) if sung.any() else 1.0
    kept = np.where(energy > CENTROID_THRESHOLD, energy, 0.0)
    total = kept.sum(axis=1)
    centroids = np.full(energy.shape[0], -1.0)
    valid = total > 1e-9
    centroids[valid] = (kept * np.arange(energy.shape[1])).sum(axis=1)[valid] / total[valid]
    sequence = centroids[sung & (centroids >= 0)]
    monotonicity = float(np.mean(sequence[1:] >= sequence[:-1] - OVERLAP_FRAMES)) if len(sequence) > 1 else 1.0
    confidence = float(energy[rows, cols].mean()) if len(rows) else 0.0
    score = float(np.clip(coverage ** 2 * monotonicity ** 2 * confidence, 0.0, 1.0))
    return score, coverage, monotonicity, confidence


def _alignment_conditions(engine, take, frames: int):
    """(context latents `[1, frames, 2C]`, condition states, note) as at generation where the task can be
    rebuilt from the take alone; otherwise text2music's (silence source, everything generated)."""
    from ..blueprint import TEXT2MUSIC_INSTRUCTION
    from ..errors import AceStepError
    from ..generation.conditioning import encode_conditions
    from ..generation.tasks import task_from_dict

    blueprint, instruction, source, mask, note = take.blueprint, TEXT2MUSIC_INSTRUCTION, None, None, ""
    try:
        plan = task_from_dict(take.task).plan(engine, take.blueprint)
        if plan.frames == frames:
            blueprint, instruction, source, mask = plan.blueprint, plan.instruction, plan.source_latents, plan.chunk_mask
    except (AceStepError, OSError, KeyError, TypeError):
        note = f"the {take.task.get('name', '?')} task could not be rebuilt from the take alone: text2music conditions used"
    if source is None:
        source = engine.silence(frames)
        mask = torch.ones_like(source)
    context = torch.cat([source, mask], dim=-1).unsqueeze(0).to(engine.dtype)
    conditions = encode_conditions(engine.models, [blueprint.caption_prompt(instruction)], [blueprint.lyric_prompt()])
    return context, conditions.states, note


def _timed(spans, token_times, start_char, end_char):
    """(start, end) of the tokens overlapping the characters [start_char, end_char), or None."""
    hits = [token_times[i] for i, (s, e) in spans if s < end_char and e > start_char]
    if not hits:
        return None
    return min(h[0] for h in hits), max(h[1] for h in hits)


def lyric_timestamps(engine, take, layers: dict | None = None, seed: int = ALIGNMENT_SEED, *, progress=None,
                     cancel=None) -> LyricTimestamps:
    """Line and word times of `take`'s lyrics from one DiT pass (see the module docstring), the LRC text
    and the alignment score. Every sung line (blank lines and `[section]` tags aside) gets one time;
    times are seconds within the take and never decrease. Refuses instrumental takes."""
    from ..generation.sources import load_source

    if engine is None:
        raise TaskError("lyric_timestamps needs the engine (its DiT's cross-attention does the aligning): "
                        "pass engine=Engine.from_pretrained(...)")
    bp = take.blueprint.validate()
    if bp.instrumental or not bp.lyrics.strip():
        raise TaskError(f"take {take.id} is instrumental (no lyrics), so there is nothing to time: "
                        "lyric timestamps need a take generated with lyrics")
    report = progress if callable(progress) else (lambda p: None)

    def step(i, message):
        if cancel is not None and cancel.is_set():
            raise GenerationCancelled("lyric alignment cancelled")
        report(Progress("align", i, 4, 0, 1, message))

    step(0, "reading the take's latents")
    used, note = alignment_layers(engine, layers)
    latents = load_source(engine, take, "take").latents  # [frames, C]; the stored ones when they are ours
    frames = latents.shape[0]
    duration = float(take.duration)
    step(1, "encoding the conditions")
    context, states, task_note = _alignment_conditions(engine, take, frames)
    note = "; ".join(n for n in (note, task_note) if n)
    steps = int((take.sampling or {}).get("steps") or engine.preset.steps)
    t = 1.0 / max(1, steps)
    generator = torch.Generator(device=engine.device).manual_seed(int(seed))
    noise = torch.randn((1, frames, engine.latent_channels), generator=generator, device=engine.device,
                        dtype=engine.dtype)
    x = t * noise + (1.0 - t) * latents.unsqueeze(0).to(engine.dtype)
    timestep = torch.full((1,), t, device=engine.device, dtype=engine.dtype)
    step(2, "one DiT pass, reading cross-attention")
    with engine.exclusive("lyric alignment"):  # the hooks must not see another job's generation
        captured = capture_cross_attention(engine.models.transformer, used, hidden_states=x, timestep=timestep,
                                           timestep_r=timestep, encoder_hidden_states=states, context_latents=context)
    step(3, "aligning lyric tokens to frames")
    ids, offsets, start, end, prompt = _lyric_span(engine, bp)
    if end <= start:
        raise TaskError(f"the lyrics of take {take.id} gave no tokens to align")
    # [layers x heads, condition tokens, frames] -> the lyric tokens (packed first in the conditions).
    heads = torch.cat([captured[i][0] for i in used]).transpose(-1, -2)[:, start:end].cpu().float()
    token_texts = [prompt[s:e] for s, e in offsets[start:end]]
    rows, cols = _dtw_path(-_consensus_matrix(heads))
    seconds_per_frame = duration / heads.shape[-1]
    token_times = []
    for i in range(end - start):
        hit = cols[rows == i]
        if len(hit):
            token_times.append((float(hit[0] * seconds_per_frame), float(hit[-1] * seconds_per_frame)))
        else:
            previous = token_times[-1][1] if token_times else 0.0
            token_times.append((previous, previous))
    spans = list(enumerate(offsets[start:end]))
    lines, last = [], 0.0
    lyric_offset = len(prompt) - len(bp.effective_lyrics) - len("<|endoftext|>")
    position = lyric_offset
    for raw in bp.effective_lyrics.split("\n"):
        line_start, line_end = position, position + len(raw)
        position = line_end + 1
        text = raw.strip()
        if not text or re.fullmatch(r"\[[^\]]*\]", text):
            continue
        when = _timed(spans, token_times, line_start, line_end) or (last, last)  # past a truncated prompt
        words = []
        for match in re.finditer(r"\S+", raw):
            w = _timed(spans, token_times, line_start + match.start(), line_start + match.end()) or when
            words.append(TimedText(match.group(), round(w[0], 3), round(w[1], 3)))
        last = when[1]
        lines.append(LyricLine(text, round(when[0], 3), round(when[1], 3), tuple(words)))
    score, coverage, monotonicity, confidence = alignment_score(heads, token_texts)
    report(Progress("align", 4, 4, 1, 1, "aligned"))
    return LyricTimestamps(lines=tuple(lines), tokens=tuple(TimedText(token_texts[i], round(a, 3), round(b, 3))
                                                            for i, (a, b) in enumerate(token_times)),
                           lrc=to_lrc(lines), score=round(score, 4), coverage=coverage, monotonicity=monotonicity,
                           confidence=confidence, duration=duration, layers=used, note=note)



def save_lyric_timestamps(store, take_id: str, stamps: LyricTimestamps) -> None:
    """Record the LRC (`notes["lrc"]`, exported beside the audio) and the timestamps in the take's sidecar."""
    store.update_notes(take_id, lrc=stamps.lrc, lyric_timestamps=stamps.to_dict())
