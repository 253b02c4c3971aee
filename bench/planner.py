"""Planner benchmark: the audio-code phase of a real-size 5 Hz LM config (random weights, CPU).

    flock /tmp/acestep-heavy.lock .venv/bin/python bench/planner.py [--seconds 10] [--repeats 2] [--layers 28]
        [--threads 2] [--dtype auto|float32|bfloat16] [--profile]

Codes per second of `Planner.codes` (constrained decoding, guidance 2.0: conditional and
unconditional prompts in one batched forward, KV cache) against plain unguided, unconstrained
`model.generate` with the same model, dtype and number of new tokens, in the same run
(interleaved). `--dtype auto` is the planner's default (`default_lm_dtype`: bf16 on CPUs with
native bf16). Targets (issue 16): guided constrained >= 5 codes/s and <= 2.2x the plain time per
code. Also reports the memory-bandwidth share: the time one decode step needs to read every weight
once at the measured copy bandwidth (best of three, this run), over the measured time per code
(issue 25's target: guided constrained >= 50 %), and the same guided run on the stock kernels
(`ACESTEP_FAST_PATHS=0`: no oneDNN-packed layers) with whether both wrote the same codes. Beside
it, the floor the decode's own kernel sets: its linear layers and code rows read at the rate oneDNN's
packed two-row product reaches here (`packed_product_bandwidth`), nothing else counted.
`--profile` prints where a guided run spends its time (torch.profiler, top operators).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

# acestep-5Hz-lm-0.6B: Qwen3-0.6B plus 65 535 audio-code tokens (reference 2.5)
LM_0_6B = dict(vocab_size=217204, hidden_size=1024, intermediate_size=3072, num_hidden_layers=28,
               num_attention_heads=16, num_key_value_heads=8, head_dim=128, rope_theta=1e6,
               max_position_embeddings=40960, tie_word_embeddings=True)


def copy_bandwidth(mb: int = 1024, repeats: int = 5) -> float:
    """Bytes per second of reading plus writing a large fp32 buffer (a proxy for weight streaming).

    The source is written before it is timed: a never-written buffer is the kernel's shared zero page,
    which reads from the cache, not from memory (on the 2-core EPYC here that measured 49 GB/s against
    31 GB/s for a buffer that holds data, the bandwidth a decode step's weights actually stream at)."""
    src = torch.arange(mb * 2 ** 20 // 4, dtype=torch.float32)
    dst = torch.empty_like(src)
    dst.copy_(src)
    start = time.perf_counter()
    for _ in range(repeats):
        dst.copy_(src)
    return 2 * src.numel() * 4 * repeats / (time.perf_counter() - start)


def packed_product_bandwidth(dtype: torch.dtype, layers: int = 8, rows: int = 2, repeats: int = 5) -> float | None:
    """Bytes per second at which the decode's own kernel reads weights: oneDNN's packed product of
    `rows` rows (`runtime.packed_linear`) over `layers` layers of the 0.6B LM's linear weights (far
    more than the caches hold), best of `repeats`. None where the weights are not packed here.

    A decode step cannot read its linear layers faster than this, whatever runs around them; on the
    2-core EPYC here it measured 20-22 GB/s in bf16 where a plain sum reads 30-59 GB/s and the copy
    bandwidth is 32-51 GB/s (the machine's memory is noisy, the kernel's rate is not)."""
    from acestep_engine.runtime.packed_linear import pack, packable, packed_product

    if not packable(dtype, "cpu"):
        return None
    width, inner = LM_0_6B["hidden_size"], LM_0_6B["intermediate_size"]
    heads, kv_heads, head_dim = LM_0_6B["num_attention_heads"], LM_0_6B["num_key_value_heads"], LM_0_6B["head_dim"]
    shapes = [(heads * head_dim, width), (kv_heads * head_dim, width), (kv_heads * head_dim, width),
              (width, heads * head_dim), (inner, width), (inner, width), (width, inner)]
    weights = [torch.randn(shape).to(dtype) for _ in range(layers) for shape in shapes]
    packed = [(pack(w, rows), torch.randn(rows, w.shape[1]).to(dtype)) for w in weights]
    total = sum(w.numel() * w.element_size() for w in weights)
    del weights
    best_s = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        for weight, x in packed:
            packed_product(x, weight)
        best_s = min(best_s, time.perf_counter() - start)
    return total / best_s


def linear_weight_bytes(module: torch.nn.Module) -> int:
    """The bytes of the weights of every linear layer under `module` (what a decode step's products read)."""
    return sum(m.weight.numel() * m.weight.element_size() for m in module.modules() if isinstance(m, torch.nn.Linear))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=10, help="audio seconds (codes = 5 per second)")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--layers", type=int, default=LM_0_6B["num_hidden_layers"])
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument("--dtype", default="auto", choices=("auto", "float32", "bfloat16", "float16"))
    parser.add_argument("--profile", action="store_true")
    args = parser.parse_args()
    if not 10 <= args.seconds <= 600:
        parser.error(f"--seconds must be from 10 to 600, a blueprint's duration range (got {args.seconds})")
    if args.threads:
        torch.set_num_threads(args.threads)

    from transformers import AutoTokenizer, Qwen3Config, Qwen3ForCausalLM

    from acestep_engine import Blueprint
    from acestep_engine.lm.planner import Planner, default_lm_dtype
    from acestep_engine.models import CHAT_TEMPLATE
    from acestep_engine.models.tiny_checkpoints import LM_CODE_TOKENS, build_tokenizer

    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as folder:
        build_tokenizer(Path(folder), audio_codes=LM_CODE_TOKENS, chat_template=CHAT_TEMPLATE)
        tokenizer = AutoTokenizer.from_pretrained(folder)
    config = Qwen3Config(**{**LM_0_6B, "num_hidden_layers": args.layers},
                         eos_token_id=tokenizer.convert_tokens_to_ids("<|im_end|>"),
                         pad_token_id=tokenizer.pad_token_id)
    dtype = default_lm_dtype(torch.device("cpu")) if args.dtype == "auto" else getattr(torch, args.dtype)
    model = Qwen3ForCausalLM(config).to(dtype).eval()
    planner = Planner(model, tokenizer, torch.device("cpu"), name="acestep-5Hz-lm-0.6B (random)")
    params = sum(p.numel() for p in model.parameters())
    weight_bytes = sum(p.numel() * p.element_size() for p in model.parameters())

    blueprint = Blueprint(caption="a rainy-night lo-fi song, warm Rhodes, vinyl crackle, soft female vocal",
                          lyrics="[verse]\nthe last train is gone\n[chorus]\nrain on the window",
                          bpm=84, keyscale="A minor", timesignature=4, duration=args.seconds, language="en")
    codes = args.seconds * 5

    from acestep_engine.lm import prompts

    text = prompts.with_newline(prompts.render(tokenizer, prompts.codes_messages(
        blueprint.caption, blueprint.lyrics, prompts.cot_text(prompts.cot_values(blueprint))), False))
    ids = torch.tensor([planner.table.encode(text)])

    def plain():
        with torch.no_grad():
            out = model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=codes + 1,
                                 min_new_tokens=codes + 1, do_sample=True, top_p=0.9, temperature=0.85,
                                 pad_token_id=config.pad_token_id)
        assert out.shape[1] - ids.shape[1] == codes + 1

    written, steady = {}, {}

    def ours(guidance, stock=False):
        marks = []

        def mark(report):  # (time, tokens written): every 16 tokens, the first one after the prompt's forward
            marks.append((time.perf_counter(), int(report.message.split(": ")[1].split()[0])))

        os.environ["ACESTEP_FAST_PATHS"] = "0" if stock else "1"
        try:
            result = planner.codes(blueprint, seed=0, guidance=guidance, progress=mark)
        finally:
            os.environ.pop("ACESTEP_FAST_PATHS")
        assert result.count("<|audio_code_") == codes
        written[(guidance, stock)] = result
        (t0, n0), (t1, n1) = marks[0], marks[-1]
        steady.setdefault((guidance, stock), []).append((t1 - t0) / (n1 - n0))

    plain()  # warm-up
    ours(2.0)
    if args.profile:
        from torch.profiler import ProfilerActivity, profile

        with profile(activities=[ProfilerActivity.CPU]) as prof:
            ours(2.0)
        print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=25))
    paths = {"plain generate": plain, "ours guided": lambda: ours(2.0), "ours unguided": lambda: ours(1.0),
             "stock guided": lambda: ours(2.0, stock=True)}
    runs = {name: [] for name in paths}
    for _ in range(args.repeats):  # interleaved, so that drifting machine load hits all alike
        for name, fn in paths.items():
            start = time.perf_counter()
            fn()
            runs[name].append((time.perf_counter() - start) / (codes + 1))

    bandwidth = max(copy_bandwidth() for _ in range(3))
    roofline = weight_bytes / bandwidth
    kernel = packed_product_bandwidth(dtype)
    print(f"model: {params / 1e6:.0f} M parameters ({args.layers} layers), {str(dtype).replace('torch.', '')} "
          f"({weight_bytes / 1e9:.2f} GB), {torch.get_num_threads()} threads; "
          f"{codes} codes ({args.seconds} s), prompt {ids.shape[1]} tokens")
    print(f"memory roofline: {bandwidth / 1e9:.1f} GB/s copy bandwidth -> {roofline * 1000:.0f} ms per decode step")
    layer_bytes = linear_weight_bytes(model.model)
    code_head_bytes = planner.table.codebook_size * config.hidden_size * dtype.itemsize
    if kernel is not None:
        kernel_floor = (layer_bytes + code_head_bytes) / kernel
        print(f"the decode's kernel: oneDNN's packed two-row product reads weights at {kernel / 1e9:.1f} GB/s "
              f"({kernel / bandwidth:.0%} of the copy bandwidth) -> {kernel_floor * 1000:.0f} ms per guided code step "
              f"for its linear layers and code rows alone ({(layer_bytes + code_head_bytes) / 1e9:.2f} GB)")
    plain_s = statistics.median(runs["plain generate"])
    for name, times in runs.items():
        median = statistics.median(times)
        print(f"{name:15s} {median * 1000:7.1f} ms/code  {1 / median:6.2f} codes/s  "
              f"{median / plain_s:5.2f}x plain  {roofline / median:5.0%} of roofline")
    print("steady decode step (the prompt's forward and packing excluded, from the progress reports):")
    for (guidance, stock), times in sorted(steady.items()):
        median = statistics.median(times)
        name = ("stock" if stock else "ours") + (" guided" if guidance > 1 else " unguided")
        print(f"  {name:15s} {median * 1000:7.1f} ms/step  {roofline / median:5.0%} of roofline")
    guided = statistics.median(runs["ours guided"])
    ratio = guided / plain_s
    print(f"guided constrained / plain unguided = {ratio:.2f}x (target <= 2.2x): {'OK' if ratio <= 2.2 else 'MISSED'}")
    print(f"guided constrained = {1 / guided:.2f} codes/s (target >= 5): {'OK' if 1 / guided >= 5 else 'MISSED'}")
    share = roofline / statistics.median(steady[(2.0, False)])
    if kernel is not None:
        print(f"guided constrained steady step = {kernel_floor / statistics.median(steady[(2.0, False)]):.0%} of the "
              f"floor its kernel sets (the linear layers at the packed product's rate, nothing else)")
    print(f"guided constrained steady step = {share:.0%} of the memory roofline (target >= 50 %): "
          f"{'OK' if share >= 0.5 else 'MISSED'}; {guided / statistics.median(runs['stock guided']):.2f}x the stock "
          f"kernels' time, same codes: {'yes' if written[(2.0, False)] == written[(2.0, True)] else 'NO'}")


if __name__ == "__main__":
    main()
