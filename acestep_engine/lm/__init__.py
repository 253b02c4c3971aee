"""The 5 Hz LM: the planner that turns a query into a blueprint and audio codes (`planner`), its
prompts and chain-of-thought block (`prompts`), the decoding loop (`decoding`, `sampling`,
`growing_cache`), the constraint that keeps its output well formed (`constraints`: what each
token is in `token_table`, what may be written in `shapes` and `genres`, one sequence's progress in
`row_state`), and what the LM and the DiT's attention tell about a take (`quality_score`,
`lyric_timestamps`), and the sections of a take timed from its alignment (`sections`).
"""

from .constraints import PlannerConstraint
from .genres import Vocabulary, load_genres_vocab
from .lyric_timestamps import LyricTimestamps, lyric_timestamps, parse_lrc, save_lyric_timestamps
from .planner import Planner
from .quality_score import QualityScore, quality_score, save_quality_score
from .sampling import SamplingOptions
from .sections import MIN_ALIGNMENT_SCORE, sections_from_timestamps, take_sections

__all__ = ["LyricTimestamps", "MIN_ALIGNMENT_SCORE", "Planner", "PlannerConstraint", "QualityScore", "SamplingOptions",
           "Vocabulary", "load_genres_vocab", "lyric_timestamps", "parse_lrc", "quality_score", "save_lyric_timestamps",
           "save_quality_score", "sections_from_timestamps", "take_sections"]
