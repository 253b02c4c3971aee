"""The sections of a take as the tabs show them: labelled bands over its pictures, found by a job.

    sections = known_sections(take)        # from the take's notes (found before), else None; no engine
    bands = section_bands(sections)        # [{"name", "start", "end", "estimated"}, ...] for a JS trait
    section_at(bands, 12.0)                # index of the band playing at 12 s, -1 outside every band
    draw_section_bands(ax, sections)       # matplotlib: tinted spans, the name at the top of each

`SectionFinding` is the mixin of the panels with a "Find sections" button (the Look and Repaint
tabs): it times the take's lyrics with the engine's DiT off the kernel thread, keeps the result in
the take's sidecar, and refuses an instrumental take in words.
"""

from __future__ import annotations

import html

import ipywidgets as widgets

from acestep_engine.errors import TaskError

from .jobs import TIME

BAND_COLOURS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#17becf"]


def has_lyrics(take) -> bool:
    bp = getattr(take, "blueprint", None)
    return bool(bp is not None and not bp.instrumental and isinstance(bp.lyrics, str) and bp.lyrics.strip())


def known_sections(take):
    """The take's sections when they can be had without the engine (found before and kept in its notes,
    or timed from lyric timestamps already there), else None. None for an instrumental take."""
    if take is None or not has_lyrics(take):
        return None
    notes = take.notes or {}
    if "sections" not in notes and "lyric_timestamps" not in notes:
        return None
    from acestep_engine.lm import take_sections

    try:
        return take_sections(None, take)
    except TaskError:
        return None


def section_bands(sections) -> list[dict]:
    """Plain dicts for a synced trait: name, start and end (seconds), estimated."""
    return [{"name": s.name, "start": float(s.start), "end": float(s.end), "estimated": bool(s.estimated)}
            for s in (sections or [])]


def section_at(bands, seconds: float) -> int:
    """Index of the band that holds `seconds` (the later one on a boundary), -1 outside them all."""
    index = -1
    for i, band in enumerate(bands):
        start, end = (band["start"], band["end"]) if isinstance(band, dict) else (band.start, band.end)
        if start <= seconds + 1e-3 and seconds < end:
            index = i
    return index


def draw_section_bands(ax, sections, label: bool = True) -> None:
    """Tint each section's span on `ax` (hatched when its times are estimated) and, with `label`,
    write its name at the top of the span."""
    for i, s in enumerate(sections or []):
        colour = BAND_COLOURS[i % len(BAND_COLOURS)]
        ax.axvspan(s.start, s.end, facecolor=colour, alpha=0.22, edgecolor="white", linewidth=0.8,
                   hatch="//" if s.estimated else None)
        if label and s.end > s.start:
            ax.text((s.start + s.end) / 2, 0.97, s.name, transform=ax.get_xaxis_transform(), ha="center", va="top",
                    fontsize=7, color="white", clip_on=True,
                    bbox={"facecolor": colour, "alpha": 0.8, "pad": 1.5, "edgecolor": "none"})


def sections_words(sections) -> str:
    """One line for a status: the names in order, and why the times are estimated when they are."""
    names = ", ".join(html.escape(name) for name in sections.names)
    note = f" &middot; <i>estimated: {html.escape(sections.note)}</i>" if sections.estimated else ""
    return f"sections: {names}{note}"


class SectionFinding:
    """Mixin for a `JobPanel`: `find_sections_button` and `find_sections()`. The panel says which take
    (`_section_take()`) and what to redraw when the sections are known (`_show_sections(take, sections)`)."""

    def _init_section_finding(self) -> None:
        self.find_sections_button = widgets.Button(
            description="Find sections", icon="search", layout=widgets.Layout(width="auto"),
            tooltip="time the lyrics on the take (the DiT's attention) and name its sections; kept with the take")
        self.find_sections_button.on_click(lambda _: self.find_sections())
        self._start_buttons.append(self.find_sections_button)

    def _section_take(self):
        raise NotImplementedError

    def _show_sections(self, take, sections) -> None:
        raise NotImplementedError

    def section_refusal(self, take) -> str | None:
        """Why the take has no sections to find, in words (None when it may have some)."""
        if take is None:
            return "generate or select a take first: sections are found on a take"
        if not has_lyrics(take):
            return (f"sections need lyrics: take {take.id} is instrumental, so it has no sections by name "
                    "(paint a region by seconds instead)")
        return None

    def find_sections(self, refresh: bool = False):
        """Time the take's lyrics with the engine (a job) and show its sections; `refresh` aligns again."""
        if self._refuse_if_busy():
            return self.job
        take = self._section_take()
        refusal = self.section_refusal(take)
        if refusal is None and self.engine is None:
            refusal = "finding sections needs the engine (its DiT times the lyrics)"
        if refusal is not None:
            self._set_status(refusal, error=True)
            return None
        from acestep_engine.lm import take_sections

        engine = self.engine
        store = self.store if self.store is not None and take.id in self.store else None

        def work(cancel, progress):
            return take_sections(engine, take, store=store, refresh=refresh, cancel=cancel,
                                 progress=lambda p: progress.stage("aligning", p.step / max(1, p.steps), p.message))

        def show(sections):
            self._show_sections(take, sections)
            self.state.store_changed()  # the other tab showing this take draws the bands too
            return f"{sections_words(sections)} {TIME}"

        return self.run_job("find sections", work, show=show,
                            failed=lambda error: f"finding sections failed: {error}")
