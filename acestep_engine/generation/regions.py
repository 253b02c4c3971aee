"""Regions of a song in seconds: one type from the painter to the sampler.

    regions = Regions.of([(4.0, 6.0), (-3.0, 0.0)])   # seconds; < 0 or past the end: outpainting
    regions.shifted(3.0)                              # the same spans on a canvas padded 3 s on the left
    regions.frames(25.0, 250)                         # bool mask [250] of the latent frames inside
    regions.samples(48000)                            # [(a, b), ...] sample indices

Frame conversion is `floor(seconds * frame_rate)` at both ends, as upstream's repaint mask does.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass

import numpy as np

from ..errors import TaskError


def _seconds(name: str, value) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
        raise TaskError(f"{name} must be a finite number of seconds (got {value!r:.80})")
    return float(value)


@dataclass(frozen=True)
class Regions:
    """Spans `[start, end)` in seconds, in the order given; each has end > start."""

    spans: tuple[tuple[float, float], ...]

    def __post_init__(self):
        spans = []
        items = self.spans
        if isinstance(items, (str, bytes, dict)) or not isinstance(items, (list, tuple)) \
                or not all(isinstance(p, (list, tuple)) and len(p) == 2 for p in items):
            raise TaskError(f"spans must be a tuple of (start, end) pairs in seconds, e.g. ((4.0, 6.0),) "
                            f"(got {type(items).__name__} {items!r:.80}); Regions.of() accepts more forms")
        for start, end in items:
            start, end = _seconds("region start", start), _seconds("region end", end)
            if end <= start:
                raise TaskError(f"region end must be after its start (got start={start}, end={end})")
            spans.append((start, end))
        object.__setattr__(self, "spans", tuple(spans))

    @classmethod
    def of(cls, value, name: str = "regions") -> "Regions":
        """A `Regions`, one `(start, end)` pair, or a list of pairs; anything else is refused by name."""
        if isinstance(value, Regions):
            return value
        hint = f"{name} must be a list of (start, end) pairs in seconds, e.g. [(4.0, 6.0)] (got {value!r:.80})"
        if isinstance(value, (str, bytes, dict)) or not hasattr(value, "__iter__"):
            raise TaskError(hint)
        items = list(value)
        if len(items) == 2 and all(isinstance(v, numbers.Real) for v in items):
            items = [tuple(items)]
        pairs = []
        for item in items:
            if isinstance(item, (str, bytes, dict)) or not hasattr(item, "__iter__"):
                raise TaskError(hint)
            pair = tuple(item)
            if len(pair) != 2:
                raise TaskError(hint)
            pairs.append(pair)
        return cls(tuple(pairs))

    def __iter__(self):
        return iter(self.spans)

    def __len__(self) -> int:
        return len(self.spans)

    @property
    def start(self) -> float:
        """The earliest start (seconds; negative when the song grows to the left)."""
        return min(s for s, _ in self.spans)

    @property
    def end(self) -> float:
        return max(e for _, e in self.spans)

    def shifted(self, seconds: float) -> "Regions":
        """Every span moved by `seconds` (e.g. onto a canvas padded on the left)."""
        return Regions(tuple((s + seconds, e + seconds) for s, e in self.spans))

    def frames(self, frame_rate: float, count: int) -> np.ndarray:
        """Bool mask `[count]`: True for latent frames inside any span (clipped to 0..count)."""
        inside = np.zeros(int(count), dtype=bool)
        for start, end in self.spans:
            a = max(0, int(math.floor(start * frame_rate)))
            b = max(0, min(int(count), int(math.floor(end * frame_rate))))
            inside[a:b] = True
        return inside

    def samples(self, sample_rate: int) -> list[tuple[int, int]]:
        """Each span as `(first, end)` sample indices at `sample_rate` (rounded)."""
        return [(int(round(s * sample_rate)), int(round(e * sample_rate))) for s, e in self.spans]

    def to_list(self) -> list[list[float]]:
        return [[s, e] for s, e in self.spans]
