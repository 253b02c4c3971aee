"""LoRA fine-tuning on the tiny checkpoints and a few seconds of synthetic audio: preparation,
training, adapter files, scales, resume, and the errors a user can run into."""

import json
import threading

import numpy as np
import pytest
import soundfile as sf
import torch

from acestep_engine import Blueprint, Engine
from acestep_engine.errors import GenerationError, LoRAError
from acestep_engine.generation import encode_conditions
from acestep_engine.lora import (LoRAConfig, LoRADataset, TrainingConfig, diffusers_key, evaluate, latest_checkpoint,
                                 learning_rate, objective_loss, official_key, prepare_dataset, read_adapter, train)
from acestep_engine.lora.adapters import ADAPTER_WEIGHTS, TRAINING_ADAPTER, adapter_state
from acestep_engine.lora.dataset import collate
from acestep_engine.lora.training import TURBO_TRAINING_TIMES
from acestep_engine.takes.audio_io import load_source_audio

SMALL = LoRAConfig(rank=4, alpha=8.0)
BP = Blueprint(caption="test", duration=10.0)


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny models: one thread is as fast, and far faster when other processes share the two cores."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def engine(tiny_dir):
    """A turbo engine of our own: these tests load and unload adapters on it."""
    return Engine.from_pretrained(tiny_dir, dit="acestep-v15-turbo", device="cpu", dtype="fp32")  # bf16 has its own tests


def write_song(path, seconds, rate=48000, kind="sine", channels=2, freq=220.0):
    t = np.arange(int(seconds * rate)) / rate
    if kind == "sine":
        mono = 0.5 * np.sin(2 * np.pi * freq * t)
    else:
        mono = 0.3 * np.random.default_rng(0).standard_normal(len(t))
    sf.write(path, np.repeat(mono[:, None], channels, axis=1).astype(np.float32), rate)
    return path


@pytest.fixture(scope="module")
def songs(tmp_path_factory):
    folder = tmp_path_factory.mktemp("songs")
    write_song(folder / "alpha.wav", 3.0)
    (folder / "alpha.json").write_text(json.dumps({"caption": "bright sine lead", "bpm": 120, "keyscale": "a minor",
                                                   "lyrics": "[verse]\nla la la", "language": "en"}))
    write_song(folder / "beta.flac", 2.5, rate=44100, kind="noise", channels=1)
    (folder / "beta.txt").write_text("soft noise pad\n")
    (folder / "beta.lyrics.txt").write_text("[chorus]\nhush\n")
    return folder


@pytest.fixture(scope="module")
def dataset(engine, songs, tmp_path_factory):
    return prepare_dataset(engine, songs, tmp_path_factory.mktemp("cache"))


@pytest.fixture(scope="module")
def trained(engine, dataset, tmp_path_factory):
    out = tmp_path_factory.mktemp("lora-out")
    training = TrainingConfig(lr=1e-2, steps=30, warmup=2, save_every=10, seed=3)
    return train(engine, dataset, out, SMALL, training)


# --------------------------------------------------------------------------- preparation

def test_preparation_caches_the_expected_tensors(engine, dataset, songs):
    assert len(dataset) == 2 and [s.audio for s in dataset.songs] == ["alpha.wav", "beta.flac"]
    manifest = json.loads((dataset.cache_dir / "dataset.json").read_text())
    assert manifest["weights"] == engine.models.fingerprint and len(manifest["songs"]) == 2
    for song in dataset.songs:
        audio = load_source_audio(songs / song.audio, engine.sample_rate)
        frames = audio.shape[-1] // engine.hop_length
        item = dataset[dataset.songs.index(song)]
        assert song.frames == frames and song.labelled_by == "sidecar"
        assert item["target_latents"].shape == (frames, engine.latent_channels)
        assert torch.equal(item["target_latents"], engine.encode_audio(audio)[:frames])
        context = item["context_latents"]
        assert torch.equal(context[:, :engine.latent_channels], engine.silence(frames))
        assert torch.all(context[:, engine.latent_channels:] == 1)
        # The conditions are those generation computes for the same blueprint.
        bp = Blueprint(**song.blueprint)
        assert song.caption_prompt == bp.caption_prompt() and song.lyric_prompt == bp.lyric_prompt()
        expected = encode_conditions(engine.models, [bp.caption_prompt()], [bp.lyric_prompt()])
        assert torch.equal(item["encoder_hidden_states"], expected.states[0])
        assert torch.equal(item["encoder_attention_mask"], expected.mask[0].bool())
    alpha, beta = dataset.songs
    assert "- bpm: 120" in alpha.caption_prompt and "- keyscale: A minor" in alpha.caption_prompt
    assert "bright sine lead" in alpha.caption_prompt and "la la la" in alpha.lyric_prompt
    assert "- duration: 10 seconds" in alpha.caption_prompt  # clips are described within the 10-600 s range
    assert "soft noise pad" in beta.caption_prompt and "hush" in beta.lyric_prompt


def test_preparing_again_reuses_the_cache_and_redoes_changed_songs(engine, songs, tmp_path, monkeypatch):
    folder = tmp_path / "songs"
    folder.mkdir()
    for name in ("alpha.wav", "alpha.json", "beta.flac", "beta.txt"):
        (folder / name).write_bytes((songs / name).read_bytes())
    first = prepare_dataset(engine, folder, tmp_path / "cache")
    encoded = []
    original = engine.encode_audio
    monkeypatch.setattr(engine, "encode_audio", lambda audio: encoded.append(1) or original(audio))
    again = prepare_dataset(engine, folder, tmp_path / "cache")
    assert encoded == [] and [s.key for s in again.songs] == [s.key for s in first.songs]
    (folder / "beta.txt").write_text("a new caption")
    changed = prepare_dataset(engine, folder, tmp_path / "cache")
    assert encoded == [1] and "a new caption" in changed.songs[1].caption_prompt
    assert sorted(p.name for p in (tmp_path / "cache").glob("*.safetensors")) == sorted(s.file for s in changed.songs)
    assert LoRADataset.load(tmp_path / "cache").songs[1].key == changed.songs[1].key


class FakePlanner:
    def __init__(self):
        self.calls = []

    def understand(self, audio, engine=None):
        self.calls.append((audio, engine))
        return Blueprint(caption="planner: dreamy synth", bpm=90, lyrics="[verse]\nplanned words", duration=60.0)


def test_a_planner_labels_songs_without_a_sidecar(engine, songs, tmp_path):
    folder = tmp_path / "songs"
    folder.mkdir()
    write_song(folder / "bare.wav", 2.0, freq=440.0)
    (folder / "labelled.wav").write_bytes((songs / "alpha.wav").read_bytes())
    (folder / "labelled.txt").write_text("from the sidecar")
    planner = FakePlanner()
    prepared = prepare_dataset(engine, folder, tmp_path / "cache", planner=planner)
    bare, labelled = prepared.songs
    assert [c[0] for c in planner.calls] == [str(folder / "bare.wav")] and planner.calls[0][1] is engine
    assert bare.labelled_by == "planner" and "planner: dreamy synth" in bare.caption_prompt
    assert "- bpm: 90" in bare.caption_prompt and "planned words" in bare.lyric_prompt
    assert labelled.labelled_by == "sidecar" and "from the sidecar" in labelled.caption_prompt
    unlabelled = prepare_dataset(engine, folder, tmp_path / "cache2")
    assert unlabelled.songs[0].labelled_by == "none" and "[Instrumental]" in unlabelled.songs[0].lyric_prompt


# --------------------------------------------------------------------------- training

def test_a_short_training_run_lowers_the_loss(engine, dataset, trained):
    assert trained.step == 30 and len(trained.losses) == 30 and not trained.stopped
    assert np.mean(trained.losses[-5:]) < np.mean(trained.losses[:5])
    before = evaluate(engine, dataset)
    engine.load_lora(trained.adapter_path, name="fit")
    try:
        after = evaluate(engine, dataset)
    finally:
        engine.unload_lora("fit")
    assert after < 0.9 * before
    assert evaluate(engine, dataset) == before  # unloading restores the base model exactly
    assert trained.lrs[0] == pytest.approx(5e-3) and max(trained.lrs) == pytest.approx(1e-2)
    assert [p.name for p in (trained.output_dir / "checkpoints").iterdir()] \
        and latest_checkpoint(trained.output_dir).name == "step-30"


def test_save_and_load_round_trip_the_weights(engine, trained):
    folder = trained.adapter_path
    config = json.loads((folder / "adapter_config.json").read_text())
    assert config["peft_type"] == "LORA" and config["r"] == 4 and config["lora_alpha"] == 8.0
    assert sorted(config["target_modules"]) == ["k_proj", "o_proj", "q_proj", "v_proj"]
    from safetensors.torch import load_file

    saved = load_file(str(folder / ADAPTER_WEIGHTS))
    assert "base_model.model.layers.0.self_attn.q_proj.lora_A.weight" in saved
    assert "base_model.model.layers.1.cross_attn.o_proj.lora_B.weight" in saved
    assert len(saved) == 2 * 2 * 4 * 2  # layers x (self, cross) x q/k/v/o x (A, B)
    name = engine.load_lora(folder, name="round_trip")
    try:
        loaded = adapter_state(engine.models.transformer, name)
        assert {official_key(k) for k in loaded} == set(saved)
        for key, tensor in loaded.items():
            assert torch.equal(tensor, saved[official_key(key)])
        # The adapter is the last checkpoint's, and reading the files gives the same tensors again.
        again = read_adapter(latest_checkpoint(trained.output_dir))
        assert all(torch.equal(again.state[k], loaded[k]) for k in loaded)
    finally:
        engine.unload_lora(name)
    for key in saved:
        assert official_key(diffusers_key(key)) == key


def test_scale_zero_is_the_base_model_and_scale_one_differs(engine, trained):
    base = engine.generate(BP, seeds=7)[0]
    keys = set(engine.models.transformer.state_dict())
    name = engine.load_lora(trained.adapter_path, name="style", scale=0.0)
    try:
        off = engine.generate(BP, seeds=7)[0]
        assert np.array_equal(off.latents, base.latents) and np.array_equal(off.audio, base.audio)
        engine.set_lora_scale(1.0, name)
        on = engine.generate(BP, seeds=7)[0]
        assert not np.allclose(on.latents, base.latents, atol=1e-4)
        assert on.model["loras"] == [{"name": "style", "path": str(trained.adapter_path), "scale": 1.0,
                                      "fingerprint": on.model["loras"][0]["fingerprint"], "rank": 4}]
        assert off.model["loras"][0]["scale"] == 0.0 and base.model["loras"] == []
        engine.set_lora_scale(0.5)
        half = engine.generate(BP, seeds=7)[0]
        assert not np.array_equal(half.latents, on.latents) and not np.array_equal(half.latents, base.latents)
    finally:
        engine.unload_lora()
    assert engine.loras() == [] and set(engine.models.transformer.state_dict()) == keys
    assert np.array_equal(engine.generate(BP, seeds=7)[0].latents, base.latents)


def test_two_adapters_stack_and_unload_one_by_one(engine, trained):
    base = engine.generate(BP, seeds=3)[0].latents
    engine.load_lora(trained.adapter_path, name="one")
    only_one = engine.generate(BP, seeds=3)[0].latents
    engine.load_lora(latest_checkpoint(trained.output_dir).parent / "step-20", name="two", scale=0.0)
    assert [a["name"] for a in engine.loras()] == ["one", "two"]
    assert np.array_equal(engine.generate(BP, seeds=3)[0].latents, only_one)
    engine.set_lora_scale(1.0, "two")
    both = engine.generate(BP, seeds=3)[0].latents
    assert not np.array_equal(both, only_one)
    engine.unload_lora("one")
    engine.set_lora_scale(0.0, "two")
    assert np.array_equal(engine.generate(BP, seeds=3)[0].latents, base)
    engine.unload_lora()


def test_resume_continues_from_the_saved_step(engine, dataset, tmp_path):
    config = TrainingConfig(lr=5e-3, steps=5, warmup=1, save_every=2, seed=11, batch_size=1, grad_accum=1)
    straight = train(engine, dataset, tmp_path / "straight", SMALL, config)

    def crash_at_step_3(p):
        if p.stage == "train" and p.step == 3:
            raise KeyboardInterrupt("power cut")

    with pytest.raises(KeyboardInterrupt):
        train(engine, dataset, tmp_path / "resumed", SMALL, config, progress=crash_at_step_3)
    assert latest_checkpoint(tmp_path / "resumed").name == "step-2"
    assert engine.loras() == [] and not engine.busy  # the interrupted run left the engine as it was
    resumed = train(engine, dataset, tmp_path / "resumed", SMALL, config)
    assert resumed.resumed_from == 2 and resumed.step == 5
    assert resumed.losses == straight.losses  # same draws, same order, same optimizer state
    a = read_adapter(straight.adapter_path).state
    b = read_adapter(resumed.adapter_path).state
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    longer = train(engine, dataset, tmp_path / "resumed", SMALL, TrainingConfig(
        lr=5e-3, steps=7, warmup=1, save_every=2, seed=11))
    assert longer.resumed_from == 5 and longer.step == 7 and longer.losses[:5] == straight.losses
    with pytest.raises(LoRAError, match="was trained with LoRA"):
        train(engine, dataset, tmp_path / "resumed", LoRAConfig(rank=8, alpha=8.0), config)
    fresh = train(engine, dataset, tmp_path / "resumed", SMALL, config, resume=False)
    assert fresh.resumed_from is None and fresh.losses == straight.losses


def test_accumulation_batches_and_stop(engine, dataset, tmp_path):
    stop = threading.Event()

    def press_stop(p):
        if p.stage == "train" and p.step == 2:
            stop.set()

    result = train(engine, dataset, tmp_path / "out", SMALL,
                   TrainingConfig(lr=1e-3, steps=50, warmup=0, save_every=0, batch_size=2, grad_accum=2),
                   progress=press_stop, cancel=stop)
    assert result.stopped and result.step == 2 and len(result.losses) == 2
    assert (result.adapter_path / ADAPTER_WEIGHTS).is_file() and latest_checkpoint(tmp_path / "out").name == "step-2"
    state = json.loads((tmp_path / "out" / "checkpoints" / "step-2" / "trainer_state.json").read_text())
    assert state["micro"] == 4 and state["epoch"] == 4  # one batch of both songs per epoch, two per update
    by_epochs = train(engine, dataset, tmp_path / "epochs", SMALL,
                      TrainingConfig(lr=1e-3, epochs=3, warmup=0, save_every=0, batch_size=1, grad_accum=2))
    assert by_epochs.steps == 3 and by_epochs.step == 3


def test_generation_is_refused_while_training(engine, dataset, tmp_path):
    seen = []

    def try_to_generate(p):
        if p.stage == "train" and not seen:
            with pytest.raises(GenerationError, match="LoRA training run"):
                engine.generate(BP, seeds=1)
            seen.append(engine.busy)

    train(engine, dataset, tmp_path / "out", SMALL, TrainingConfig(steps=1, warmup=0, save_every=0),
          progress=try_to_generate)
    assert seen == [True] and not engine.busy


def test_objectives_draw_the_documented_times(engine, dataset, base):
    class Recorder(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.calls = []

        def forward(self, hidden_states, timestep, timestep_r, encoder_hidden_states, context_latents, return_dict):
            self.calls.append((timestep.clone(), timestep_r.clone(), encoder_hidden_states.clone()))
            return (torch.zeros_like(hidden_states),)

    batch = collate([dataset[0], dataset[1]], engine.silence(100))
    null = engine.models.condition_encoder.null_condition_emb
    model = Recorder()
    for i in range(40):
        objective_loss(model, batch, "turbo", torch.Generator().manual_seed(i), null, cfg_dropout=1.0)
    times = torch.cat([c[0] for c in model.calls])
    assert set(times.tolist()) <= set(torch.tensor(TURBO_TRAINING_TIMES).tolist()) and len(set(times.tolist())) > 4
    assert all(torch.equal(c[0], c[1]) for c in model.calls)
    assert all(torch.equal(c[2], batch["encoder_hidden_states"]) for c in model.calls)  # turbo: no dropout
    model.calls.clear()
    for i in range(200):
        objective_loss(model, batch, "base", torch.Generator().manual_seed(i), null, cfg_dropout=0.5)
    times = torch.cat([c[0] for c in model.calls])
    assert 0 < times.min() and times.max() < 1 and abs(float(torch.logit(times).mean()) + 0.4) < 0.15
    dropped = [bool(torch.equal(c[2][k], null[0].expand_as(c[2][k]))) for c in model.calls for k in range(2)]
    assert 0.35 < np.mean(dropped) < 0.65
    # A base checkpoint picks the base objective by itself.
    from acestep_engine.lora.training import resolve_objective

    assert resolve_objective("auto", base) == "base" and resolve_objective("auto", engine) == "turbo"


def test_a_bf16_engine_trains_float32_adapters_and_is_left_as_it_was(engine, tiny_dir, songs, tmp_path, monkeypatch):
    """bf16 weights, fp32 adapter weights, and accelerate's autocast wrapper (forced on here: on CUDA
    it is the default) removed from the DiT afterwards."""
    import acestep_engine.lora.training as training_module

    bf16 = Engine.from_pretrained(tiny_dir, dit="acestep-v15-turbo", device="cpu", dtype="bf16")
    before = bf16.generate(BP, seeds=2)[0].latents
    # bf16 convolutions are slow on the CPU: borrow the fp32 VAE's latents (same weights).
    monkeypatch.setattr(bf16, "encode_audio", lambda audio: engine.encode_audio(audio).to(torch.bfloat16))
    prepared = prepare_dataset(bf16, songs, tmp_path / "cache")
    assert prepared[0]["target_latents"].dtype == torch.bfloat16
    monkeypatch.setattr(training_module, "_mixed_precision", lambda engine, requested: "bf16")
    seen = []
    transformer = bf16.models.transformer

    def look(p):
        if p.stage == "train" and not seen:
            seen.append(("forward" in transformer.__dict__,
                         {q.dtype for n, q in transformer.named_parameters() if q.requires_grad}))

    result = train(bf16, prepared, tmp_path / "out", SMALL, TrainingConfig(lr=1e-2, steps=3, warmup=0), progress=look)
    assert seen == [(True, {torch.float32})]  # autocast wrapper on, fp32 trainable weights
    assert "forward" not in transformer.__dict__ and "_is_accelerate_prepared" not in transformer.__dict__
    assert not transformer.training and np.isfinite(result.losses).all()
    assert np.array_equal(bf16.generate(BP, seeds=2)[0].latents, before)
    assert {t.dtype for t in read_adapter(result.adapter_path).state.values()} == {torch.float32}


def test_learning_rate_warms_up_then_decays():
    rates = [learning_rate(s, 100, 10, 1e-3) for s in range(100)]
    assert rates[0] == pytest.approx(1e-4) and rates[9] == pytest.approx(1e-3)
    assert all(a >= b for a, b in zip(rates[9:], rates[10:])) and rates[-1] == pytest.approx(1e-5, rel=0.05)


def test_an_upstream_made_adapter_loads(engine, tmp_path):
    """A peft adapter made on a module named as upstream's decoder (q_proj ... o_proj) loads and
    computes the same projections on diffusers' module."""
    from peft import LoraConfig, get_peft_model

    transformer = engine.models.transformer

    def like(linear):
        return torch.nn.Linear(linear.in_features, linear.out_features, bias=linear.bias is not None)

    class Attention(torch.nn.Module):
        def __init__(self, attn):
            super().__init__()
            self.q_proj, self.k_proj, self.v_proj = like(attn.to_q), like(attn.to_k), like(attn.to_v)
            self.o_proj = like(attn.to_out[0])

    class Layer(torch.nn.Module):
        def __init__(self, layer):
            super().__init__()
            self.self_attn, self.cross_attn = Attention(layer.self_attn), Attention(layer.cross_attn)

    class UpstreamDecoder(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.layers = torch.nn.ModuleList(Layer(layer) for layer in transformer.layers)

    torch.manual_seed(0)
    decoder = UpstreamDecoder()
    from acestep_engine.models.keymap import official_to_diffusers

    for name, module in decoder.named_modules():
        if isinstance(module, torch.nn.Linear):  # the same base weights as the engine's DiT
            module.weight.data.copy_(transformer.get_parameter(official_to_diffusers(f"decoder.{name}.weight")[1]))
    config = LoraConfig(r=2, lora_alpha=6, target_modules=["q_proj", "k_proj", "v_proj", "o_proj"],
                        init_lora_weights=False)  # random B: the adapter changes the outputs
    peft_model = get_peft_model(decoder, config)
    peft_model.save_pretrained(str(tmp_path / "upstream"))
    name = engine.load_lora(tmp_path / "upstream", name="upstream")
    try:
        x = torch.randn(3, transformer.layers[0].self_attn.to_q.in_features)
        with torch.no_grad():
            assert torch.allclose(peft_model.base_model.model.layers[0].self_attn.q_proj(x),
                                  transformer.layers[0].self_attn.to_q(x), atol=1e-6)
            y = torch.randn(3, decoder.layers[1].cross_attn.o_proj.in_features)
            assert torch.allclose(peft_model.base_model.model.layers[1].cross_attn.o_proj(y),
                                  transformer.layers[1].cross_attn.to_out[0](y), atol=1e-6)
    finally:
        engine.unload_lora(name)


# --------------------------------------------------------------------------- bad inputs

@pytest.mark.parametrize("config, message", [
    (LoRAConfig(rank=0), r"rank must be between 1 and 1024 \(got 0\)"),
    (LoRAConfig(rank=2.5), r"rank must be a whole number between 1 and 1024 \(got 2.5\)"),
    (LoRAConfig(alpha=0), r"alpha must be greater than 0 and at most 4096 \(got 0\)"),
    (LoRAConfig(dropout=1.0), r"dropout must be at least 0 and less than 1 \(got 1.0\)"),
    (LoRAConfig(target_modules=()), "target_modules must name at least one module"),
    (TrainingConfig(lr=0), r"lr must be greater than 0 and at most 1 \(got 0\)"),
    (TrainingConfig(lr=3.0), r"lr must be greater than 0 and at most 1 \(got 3.0\)"),
    (TrainingConfig(steps=0), r"steps must be between 1 and 1000000 \(got 0\)"),
    (TrainingConfig(batch_size=100), "batch_size must be between 1 and 64"),
    (TrainingConfig(grad_accum=0), "grad_accum must be between 1 and 1024"),
    (TrainingConfig(steps=10, warmup=20), r"warmup must be between 0 and steps \(10\) \(got 20\)"),
    (TrainingConfig(objective="sft"), "objective must be one of 'auto', 'turbo', 'base'"),
    (TrainingConfig(cfg_dropout=1.5), "cfg_dropout must be between 0 and 1"),
    (TrainingConfig(mixed_precision="fp8"), "mixed_precision must be one of"),
])
def test_configs_name_the_field_and_range(config, message):
    with pytest.raises(LoRAError, match=message):
        config.validate()


def test_bad_training_inputs(engine, tiny_dir, dataset, tmp_path):
    with pytest.raises(LoRAError, match="target_modules 'gate_prj' match no linear layer.*q_proj"):
        train(engine, dataset, tmp_path / "a", LoRAConfig(rank=2, target_modules=("gate_prj",)),
              TrainingConfig(steps=1, warmup=0))
    with pytest.raises(LoRAError, match="mixed_precision 'bf16' needs a CUDA device"):
        train(engine, dataset, tmp_path / "b", SMALL, TrainingConfig(steps=1, warmup=0, mixed_precision="bf16"))
    other = Engine.from_pretrained(tiny_dir, dit="acestep-v15-turbo", device="cpu", dtype="bf16")
    with pytest.raises(LoRAError, match=r"prepared with acestep-v15-turbo \(weights \w+, float32\).*bfloat16.*"
                                        "prepare it again with this engine"):
        train(other, dataset, tmp_path / "c", SMALL, TrainingConfig(steps=1, warmup=0))
    with pytest.raises(LoRAError, match="holds no prepared dataset"):
        train(engine, tmp_path, tmp_path / "d", SMALL, TrainingConfig(steps=1, warmup=0))
    assert engine.loras() == [] and not engine.busy
    names = {n for n, _ in engine.models.transformer.named_parameters()}
    assert not any("lora" in n or TRAINING_ADAPTER in n for n in names)


def test_bad_preparation_inputs(engine, tmp_path):
    with pytest.raises(LoRAError, match="does not exist"):
        prepare_dataset(engine, tmp_path / "missing", tmp_path / "cache")
    (tmp_path / "empty").mkdir()
    with pytest.raises(LoRAError, match="holds no audio files"):
        prepare_dataset(engine, tmp_path / "empty", tmp_path / "cache")
    folder = tmp_path / "songs"
    folder.mkdir()
    write_song(folder / "a.wav", 1.0)
    with pytest.raises(LoRAError, match=r"max_seconds must be between 1 and 600 seconds \(got 0\)"):
        prepare_dataset(engine, folder, tmp_path / "cache", max_seconds=0)
    (folder / "a.json").write_text(json.dumps({"caption": "x", "bpm": 500}))
    with pytest.raises(LoRAError, match=r"no song in .* could be prepared \(a.wav: .*a.json: bpm must be between 30 "
                                        r"and 300 \(got 500\)\)"):
        prepare_dataset(engine, folder, tmp_path / "cache")
    (folder / "a.json").write_text(json.dumps({"caption": "x", "tempo": 120}))
    assert prepare_dataset(engine, folder, tmp_path / "cache").ignored == {"a.json": ["tempo"]}
    (folder / "a.json").write_text("{not json")
    with pytest.raises(LoRAError, match="a.json is not valid JSON"):
        prepare_dataset(engine, folder, tmp_path / "cache")
    (folder / "a.json").unlink()
    with pytest.raises(LoRAError, match="understand"):
        prepare_dataset(engine, folder, tmp_path / "cache", planner=object())


def test_bad_adapter_inputs(engine, trained, tmp_path):
    with pytest.raises(LoRAError, match="no such adapter folder"):
        engine.load_lora(tmp_path / "nothing")
    (tmp_path / "half").mkdir()
    (tmp_path / "half" / "adapter_config.json").write_text("{}")
    with pytest.raises(LoRAError, match="lacks adapter_model.safetensors"):
        engine.load_lora(tmp_path / "half")
    with pytest.raises(LoRAError, match=r"scale must be between -4 and 4"):
        engine.load_lora(trained.adapter_path, scale=9)
    with pytest.raises(LoRAError, match="name must be"):
        engine.load_lora(trained.adapter_path, name="a.b")
    engine.load_lora(trained.adapter_path, name="once")
    try:
        with pytest.raises(LoRAError, match="'once' is loaded already"):
            engine.load_lora(trained.adapter_path, name="once")
        with pytest.raises(LoRAError, match=r"no adapter named 'twice' is loaded \(loaded: once\)"):
            engine.set_lora_scale(0.5, "twice")
        with pytest.raises(LoRAError, match=r"scale must be a number between -4 and 4 \(got nan\)"):
            engine.set_lora_scale(float("nan"))
    finally:
        engine.unload_lora()
    # An adapter of another shape names the tensor that does not fit and leaves the engine clean.
    from safetensors.torch import load_file, save_file

    wrong = tmp_path / "wrong"
    wrong.mkdir()
    (wrong / "adapter_config.json").write_text((trained.adapter_path / "adapter_config.json").read_text())
    tensors = load_file(str(trained.adapter_path / ADAPTER_WEIGHTS))
    key = "base_model.model.layers.0.self_attn.q_proj.lora_B.weight"
    tensors[key] = torch.zeros(tensors[key].shape[0] + 1, tensors[key].shape[1])
    save_file(tensors, str(wrong / ADAPTER_WEIGHTS))
    with pytest.raises(LoRAError, match=r"layers.0.self_attn.q_proj.lora_B.weight has shape \(33, 4\)"):
        engine.load_lora(wrong)
    tensors = load_file(str(trained.adapter_path / ADAPTER_WEIGHTS))
    tensors = {k.replace("layers.1.", "layers.7."): v for k, v in tensors.items()}
    save_file(tensors, str(wrong / ADAPTER_WEIGHTS))
    with pytest.raises(LoRAError, match=r"layers.7.*which this DiT \(2 layers\) does not have"):
        engine.load_lora(wrong)
    assert engine.loras() == [] and not any("lora" in n for n, _ in engine.models.transformer.named_parameters())


def test_command_line_trains_on_a_prepared_cache(tiny_dir, dataset, tmp_path, capsys):
    from acestep_engine.lora.__main__ import main

    code = main(["train", str(dataset.cache_dir), "--out", str(tmp_path / "cli"), "--rank", "2", "--alpha", "4",
                 "--steps", "2", "--warmup", "0", "--save-every", "0", "--checkpoints", str(tiny_dir),
                 "--device", "cpu", "--dtype", "fp32"])  # the dataset fixture was prepared in fp32
    assert code == 0 and (tmp_path / "cli" / "adapter" / ADAPTER_WEIGHTS).is_file()
    assert main(["train", str(dataset.cache_dir), "--out", str(tmp_path / "cli"), "--rank", "0",
                 "--checkpoints", str(tiny_dir), "--device", "cpu", "--dtype", "fp32"]) == 2
    assert "rank must be between 1 and 1024" in capsys.readouterr().err


def test_accelerate_launch_trains_data_parallel(tiny_dir, dataset, tmp_path):
    """The same command line under `accelerate launch` with two processes (CPU and gloo here; GPUs the same)."""
    import os
    import subprocess
    import sys

    out = tmp_path / "ddp"
    command = [sys.executable, "-m", "accelerate.commands.launch", "--cpu", "--num_processes", "2",
               "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
               "-m", "acestep_engine.lora", "train", str(dataset.cache_dir), "--out", str(out), "--rank", "2",
               "--alpha", "4", "--steps", "2", "--warmup", "0", "--save-every", "1", "--checkpoints", str(tiny_dir),
               "--device", "cpu", "--dtype", "fp32"]
    env = dict(os.environ, HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1")
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stderr.count("[train] step 2/2") == 1  # progress from the main process only
    log = json.loads((out / "training.json").read_text())
    assert log["step"] == 2 and len(log["losses"]) == 2
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["step-1", "step-2"]
    assert (out / "adapter" / ADAPTER_WEIGHTS).is_file()


def test_a_dit_with_an_adapter_parks_its_own_weights_and_keeps_the_adapter(tiny_dir, trained):
    from acestep_engine.generation import memory
    from acestep_engine.runtime import parking

    lean = Engine.from_pretrained(tiny_dir, dit="acestep-v15-turbo", device="cpu", dtype="fp32")
    lean.load_lora(trained.adapter_path, name="style")
    resident = lean.generate(BP, seeds=7)[0]
    plans = {p.tier: p for p in memory.plan_tiers(lean.models, "cpu", lean.frames_for(BP.duration), 1, False, 1)}
    lean.memory_budget = plans["DiT offloaded between stages"].estimate
    parked = lean.generate(BP, seeds=7)[0]
    dit = lean.models.transformer
    assert lean.last_memory_plan.tier == "DiT offloaded between stages" and parking.is_parked(dit)
    lora = [p for n, p in dit.named_parameters() if "lora_" in n]
    assert lora and all(p.numel() > 0 for p in lora)  # adapters are in no checkpoint file: they stay
    assert all(p.numel() == 0 for n, p in dit.named_parameters() if "base_layer" in n)  # the wrapped weights park
    assert np.array_equal(parked.latents, resident.latents)


def test_a_folder_of_workbench_exports_prepares_and_a_bad_song_is_skipped_with_its_reason(engine, tmp_path):
    """The Takes tab's exports: audio beside the take's sidecar (fields under "blueprint", plus id,
    seed, format_version, exported_as, ...), a manifest.json and .lrc files."""
    from acestep_engine import TakeStore
    from acestep_engine.takes import export_batch

    store = TakeStore(tmp_path / "takes")
    takes = engine.generate(Blueprint(caption="exported song", bpm=100, duration=10.0), batch_size=2, seeds=3,
                            steps=2)
    for take in takes:
        store.save(take)
    exports = export_batch(store, takes[0].id, tmp_path / "exports", format="flac")
    (exports / "03-broken.wav").write_bytes(b"RIFF not really audio")
    dataset = prepare_dataset(engine, exports, tmp_path / "cache")
    assert len(dataset) == 2 and all(s.labelled_by == "sidecar" for s in dataset.songs)
    assert {s.blueprint["caption"] for s in dataset.songs} == {"exported song"}
    assert dataset.songs[0].blueprint["bpm"] == 100
    assert [name for name, _ in dataset.skipped] == ["03-broken.wav"] and "03-broken.wav" in dataset.skipped[0][1]
    assert "format_version" in dataset.ignored["01-" + takes[0].id + ".json"]
    assert LoRADataset.load(tmp_path / "cache").skipped == dataset.skipped  # kept in the manifest
