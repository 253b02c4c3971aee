"""Which models fit a machine before any download: the DiT, the LM, the dtype and the memory tier, from the
published model sizes (meta device) and the machine's GPU memory and RAM. Colab's free tier first."""

import dataclasses

import pytest

from acestep_engine.blueprint import BlueprintError
from acestep_engine.errors import InsufficientMemoryError
from acestep_engine.generation import machines
from acestep_engine.generation.machines import COLAB_T4, Machine, plan_machine

GiB = 2 ** 30


def test_colabs_free_t4_gets_the_turbo_dit_in_fp16_with_the_1_7b_lm_all_on_the_gpu():
    assert (COLAB_T4.gpu_bytes / GiB, COLAB_T4.ram_bytes / GiB, COLAB_T4.bf16) == (14.75, pytest.approx(12.7), False)
    plan = plan_machine(COLAB_T4, seconds=120, batch_size=1)
    assert (plan.dit, plan.lm, plan.dtype) == ("acestep-v15-turbo", "acestep-5Hz-lm-1.7B", "float16")
    assert plan.memory.tier == "all on device" and plan.memory.device == "cuda"
    assert plan.memory.estimate <= plan.memory.budget <= COLAB_T4.gpu_bytes
    assert plan.host_peak <= COLAB_T4.ram_bytes
    assert plan.not_fitting == ()  # the 4B LM is above the T4's tier, so it was not tried
    text = str(plan)
    assert "T4" in text and "1.7B LM" in text and "all on device" in text and "of 12.7 GiB" in text


def test_a_long_batch_on_the_t4_offloads_the_encoders_and_the_lm_within_its_ram():
    plan = plan_machine(COLAB_T4, seconds=600, batch_size=8)
    assert (plan.dit, plan.lm) == ("acestep-v15-turbo", "acestep-5Hz-lm-1.7B")
    assert plan.memory.tier == "encoders and LM offloaded" and plan.memory.offload_text_encoder
    assert plan.memory.fits and plan.host_peak <= COLAB_T4.ram_bytes
    resident = plan_machine(COLAB_T4, seconds=120, batch_size=1)
    assert plan.host_peak > resident.host_peak  # the offloaded encoders and LM wait in host RAM


def test_the_4b_lm_fits_the_t4s_gpu_only_by_overflowing_its_ram():
    with pytest.raises(InsufficientMemoryError) as info:
        plan_machine(COLAB_T4, seconds=120, lm="acestep-5Hz-lm-4B")
    message = str(info.value)
    assert "with the 4B LM" in message and "fits the GPU but needs" in message and "12.7 GiB RAM" in message


def test_less_ram_makes_the_plan_take_a_smaller_lm_and_say_why():
    small = dataclasses.replace(COLAB_T4, name="T4 with 8 GiB of RAM", ram_bytes=8 * GiB)
    plan = plan_machine(small, seconds=600, batch_size=8)
    assert plan.lm == "acestep-5Hz-lm-0.6B" and plan.host_peak <= small.ram_bytes
    assert len(plan.not_fitting) == 1 and "1.7B LM" in plan.not_fitting[0] and "RAM" in plan.not_fitting[0]
    tiny = dataclasses.replace(COLAB_T4, ram_bytes=5 * GiB)  # not even the DiT checkpoint can be read in
    with pytest.raises(InsufficientMemoryError, match="without an LM"):
        plan_machine(tiny, seconds=30)


def test_less_gpu_memory_walks_down_the_tiers():
    gpu6 = dataclasses.replace(COLAB_T4, gpu_bytes=6 * GiB)
    plan = plan_machine(gpu6, seconds=120)
    assert plan.lm == "acestep-5Hz-lm-0.6B"  # upstream's tier for 6 GiB
    assert plan.memory.tier == "DiT offloaded between stages" and plan.memory.offload_dit
    assert plan.host_peak <= gpu6.ram_bytes


def test_bf16_gpus_plan_in_bf16_and_cpus_plan_in_host_memory():
    ampere = Machine("A10G", gpu_bytes=int(22.5 * GiB), ram_bytes=32 * GiB, bf16=True)
    assert plan_machine(ampere, seconds=60).dtype == "bfloat16"
    cpu = plan_machine(Machine("laptop", gpu_bytes=0, ram_bytes=16 * GiB, bf16=False), seconds=60)
    assert (cpu.dtype, cpu.lm, cpu.memory.device) == ("float32", "acestep-5Hz-lm-0.6B", "cpu")
    assert cpu.memory.budget == 16 * GiB - machines.HOST_RESERVE and "RAM peak" in str(cpu)


def test_the_xl_dit_is_planned_at_its_own_size():
    turbo = plan_machine(COLAB_T4, seconds=120, lm=None)
    xl = plan_machine(COLAB_T4, seconds=120, lm=None, dit="acestep-v15-xl-turbo")
    assert xl.dit == "acestep-v15-xl-turbo" and xl.host_peak > turbo.host_peak + 3 * GiB  # its 9 GB checkpoint
    assert xl.memory.stages["denoise"] > turbo.memory.stages["denoise"]


def test_bad_requests_are_refused_by_name():
    with pytest.raises(BlueprintError, match="duration must be between 10 and 600"):
        plan_machine(COLAB_T4, seconds=5)
    with pytest.raises(ValueError, match=r"batch_size must be a whole number between 1 and 8 \(got 9\)"):
        plan_machine(COLAB_T4, batch_size=9)
    with pytest.raises(ValueError, match="lm must be 'auto', None or one of"):
        plan_machine(COLAB_T4, lm="acestep-5Hz-lm-9B")
    with pytest.raises(ValueError, match="dit must be one of"):
        plan_machine(COLAB_T4, dit="acestep-v15-huge")
    with pytest.raises(ValueError, match=r"ram_bytes must be a number of bytes, 0 or more \(got -1\)"):
        Machine("broken", gpu_bytes=0, ram_bytes=-1, bf16=False)


def test_this_machine_is_read_from_torch_and_proc_meminfo():
    import torch

    from acestep_engine.generation.memory import meminfo_bytes

    machine = Machine.this_one()
    assert machine.ram_bytes == meminfo_bytes("MemTotal") and (machine.gpu_bytes > 0) == torch.cuda.is_available()
