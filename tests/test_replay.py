"""Replaying a take from its record: a take made in a batch comes back bit for bit, in every dtype."""

import numpy as np
import pytest

from acestep_engine import Blueprint, Cover, Engine, TaskError

BP = Blueprint(caption="lo-fi piano", lyrics="[verse]\nla la", bpm=90, duration=10)


@pytest.fixture(scope="module")
def turbo_bf16(tiny_dir):
    return Engine.from_pretrained(tiny_dir, dit="acestep-v15-turbo", device="cpu", dtype="bf16")


@pytest.mark.parametrize("engine_name", ["turbo_bf16", "turbo"])
def test_a_take_made_in_a_batch_replays_bit_for_bit(request, engine_name):
    engine = request.getfixturevalue(engine_name)
    takes = engine.generate(BP, batch_size=3, seeds=[5, 6, 7])
    assert all(t.sampling["batch_seeds"] == [5, 6, 7] for t in takes)
    for take in (takes[1], takes[2]):
        again = engine.replay(take)
        assert again.seed == take.seed and again.batch_index == take.batch_index and again.id != take.id
        assert np.array_equal(again.latents, take.latents) and np.array_equal(again.audio, take.audio)
        assert again.sampling == take.sampling


def test_replay_survives_the_take_store_and_rebuilds_source_tasks(turbo_bf16, tmp_path):
    from acestep_engine import TakeStore

    store = TakeStore(tmp_path / "takes")
    source, = turbo_bf16.generate(BP, seeds=1)
    store.save(source)
    covers = turbo_bf16.generate(BP, Cover(source, strength=0.7), batch_size=2, seeds=[3, 4])
    store.save(covers[1])
    loaded = store.load(covers[1].id)
    again = turbo_bf16.replay(loaded, resolve_take=store.load)
    assert np.array_equal(again.audio, covers[1].audio)


def test_a_take_recorded_without_its_batch_replays_as_a_single_item(turbo_bf16):
    take, = turbo_bf16.generate(BP, seeds=9)
    take.sampling.pop("batch_seeds")  # takes saved before batches were recorded
    assert np.array_equal(turbo_bf16.replay(take).audio, take.audio)


def test_replay_refuses_other_weights_dtypes_and_broken_records(turbo_bf16, turbo):
    take, other = turbo_bf16.generate(BP, batch_size=2, seeds=[1, 2])
    with pytest.raises(TaskError, match=r"made with dtype 'bfloat16', this engine has 'float32'"):
        turbo.replay(take)
    broken = type(take)(**{**take.__dict__, "seed": 99})
    with pytest.raises(TaskError, match=r"batch_index 0 and seed 99 do not match its batch_seeds \[1, 2\]"):
        turbo_bf16.replay(broken)
    with pytest.raises(TaskError, match="take must be a Take"):
        turbo_bf16.replay("take-id")
