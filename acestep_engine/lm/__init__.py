"""The 5 Hz LM: the planner that turns a query into a blueprint and audio codes (`planner`), the
constraint that keeps its output well formed (`constraints`), its prompts and chain-of-thought
block (`prompts`), and what the LM and the DiT's attention tell about a take (`scoring`: quality
score, lyric timestamps) and the sections of a take timed from its alignment (`sections`).
"""

from .constraints import PlannerConstraint, Vocabulary
from .planner import Planner, SamplingOptions, load_genres_vocab
from .scoring import (LyricTimestamps, QualityScore, lyric_timestamps, parse_lrc, quality_score, save_lyric_timestamps,
                      save_quality_score)
from .sections import MIN_ALIGNMENT_SCORE, sections_from_timestamps, take_sections

__all__ = ["LyricTimestamps", "MIN_ALIGNMENT_SCORE", "Planner", "PlannerConstraint", "QualityScore", "SamplingOptions",
           "Vocabulary", "load_genres_vocab", "lyric_timestamps", "parse_lrc", "quality_score", "save_lyric_timestamps",
           "save_quality_score", "sections_from_timestamps", "take_sections"]
