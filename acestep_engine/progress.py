"""Progress reports from a generation, for bars, status lines and logs."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Progress:
    """One report. `stage` is "encode", "denoise", "decode" or "done".

    `step`/`steps` count denoising steps (shared by the batch); `item`/`items` count decoded
    batch items. `fraction` is the overall completion in [0, 1].
    """

    stage: str
    step: int
    steps: int
    item: int
    items: int
    message: str = ""

    @property
    def fraction(self) -> float:
        # Decoding is weighted like two steps per item: a rough, monotonic share of the wall time.
        total = self.steps + 2 * self.items + 1
        done = {"encode": 0, "denoise": self.step, "decode": self.steps + 2 * self.item}.get(self.stage, total)
        return min(1.0, done / total)


class TqdmProgress:
    """A tqdm.auto bar driven by Progress reports; pass an instance (or True) as `progress=`."""

    def __init__(self, desc: str = "generate"):
        self.desc = desc
        self.bar = None

    def __call__(self, p: Progress) -> None:
        from tqdm.auto import tqdm

        if self.bar is None:
            self.bar = tqdm(total=1000, desc=self.desc, bar_format="{l_bar}{bar}| {elapsed}<{remaining}")
        self.bar.n = int(1000 * p.fraction)
        self.bar.set_postfix_str(p.message, refresh=True)
        if p.stage == "done":
            self.bar.close()
