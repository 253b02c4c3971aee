"""The adherence badge of a take: asked vs measured BPM and key, loudness, the quality score and the
lyric alignment score, as one line of HTML from the take's sidecar notes. No widgets here."""

from __future__ import annotations

import html

GOOD, NEAR, BAD, NONE = "#1b7f3b", "#b26a00", "#b00020", "#777"


def _mark(verdict: str) -> tuple[str, str]:
    return {"match": ("✓", GOOD), "exact": ("✓", GOOD), "relative": ("≈ relative", NEAR),
            "double-time": ("×2", NEAR), "half-time": ("×½", NEAR), "off": ("✗", BAD), "wrong": ("✗", BAD),
            "not asked": ("", NONE), "unmeasured": ("?", NONE)}.get(verdict, ("", NONE))


def badge_html(record: dict, planner_loaded: bool = True) -> str:
    """The adherence badge of a take's sidecar record: asked vs measured BPM and key, loudness, the
    quality score (or a hint to press Score) and the lyric alignment score."""
    notes = record.get("notes") or {}
    a = notes.get("adherence")
    parts = []
    if a is None:
        parts.append(f"<span style='color:{NONE}'>not measured</span>")
    else:
        mark, color = _mark(a["bpm_verdict"])
        measured = f"{a['bpm_measured']:.1f}" if a.get("bpm_measured") else "none"
        asked = a["bpm_asked"] if a.get("bpm_asked") else "auto"
        parts.append(f"<span style='color:{color}' title='BPM: asked vs measured ({a['bpm_verdict']})'>"
                     f"{asked} → {measured} BPM {mark}</span>")
        mark, color = _mark(a["key_verdict"])
        parts.append(f"<span style='color:{color}' title='key: asked vs measured ({a['key_verdict']})'>"
                     f"{html.escape(a.get('key_asked') or 'auto')} → {html.escape(a.get('key_measured') or 'none')} "
                     f"{mark}</span>")
        loud = f"{a['loudness_lufs']:.1f} LUFS" if a.get("loudness_lufs") is not None else "silent"
        peak = f", {a['true_peak_db']:+.1f} dBTP" if a.get("true_peak_db") is not None else ""
        parts.append(f"<span style='color:{BAD if a.get('clipping') else '#333'}'>{loud}{peak}"
                     f"{' clipping' if a.get('clipping') else ''}</span>")
    score = score_html(record, planner_loaded)
    if score:
        parts.append(score)
    stamps = notes.get("lyric_timestamps")
    if stamps is not None:
        parts.append(f"<span title='lyric alignment: coverage² × monotonicity² × confidence'>"
                     f"lyrics aligned {stamps['score']:.2f}</span>")
    return " &middot; ".join(parts)


def score_html(record: dict, planner_loaded: bool = True) -> str:
    """The quality score part of the badge: the score, a hint that it can be computed (planner
    loaded), or nothing."""
    score = (record.get("notes") or {}).get("quality_score")
    if score is not None:
        return (f"<b title='upstream quality score: caption 0.5, lyrics 0.3, metadata 0.2'>"
                f"score {score['score']:.3f}</b>")
    return f"<span style='color:{NONE}'>no score yet</span>" if planner_loaded else ""
