# SPDX-License-Identifier: Apache-2.0
"""Gradient accumulation (data.micro_batch): a step taken in micro-batches draws the same random numbers and reaches
the same weights and AdamW moments as the whole batch at once, in every stage; a run stopped and resumed mid-way in
micro-batches is bitwise the uninterrupted one; a micro-batch that does not divide the per-process batch is refused.

Not bitwise across micro-batch sizes: float32 sums over the batch (the loss means, each weight gradient's reduction
over rows) run in another order, so weights and moments are compared to a tolerance (MOMENT_TOLERANCE and
WEIGHT_TOLERANCE, with the measured worst cases); the RNG states after the run are compared bit for bit.
"""
import copy
import json
import subprocess
import sys

import pytest
import torch

from comfyui_tmd.tmd_core.safe_files import read_safetensors
from comfyui_tmd.training.config import config_from_dict
from comfyui_tmd.training.distributed import Env
from comfyui_tmd.training.errors import TrainingConfigError
from comfyui_tmd.training.meanflow import meanflow_target
from comfyui_tmd.training.trainer import Trainer

from training_factories import TORCHRUN_WORKER, free_port

STAGES = ("1", "2", "dmd2v", "fm", "kd")
# Of the role's largest value of the kind (worst measured, float32 CPU, over all stages and micro-batches: AdamW
# moments 2.4e-5, weights 2.5e-4, both in the discriminator, whose one-value GroupNorm groups amplify rounding;
# every other role at most 9e-7 and 6.3e-5). A wrong loss scale or other draws give differences of order 1.
MOMENT_TOLERANCE = 1e-4
WEIGHT_TOLERANCE = 1e-3


@pytest.fixture(autouse=True)
def comparable_discriminator(monkeypatch):
    """The small discriminator without dropout and with its GroupNorm shifts off 0.

    Dropout masks come from torch's global RNG, one draw per micro-batch, so with them an accumulated step equals the
    full one only in distribution (training/algorithm.py). And at this size a GroupNorm group holds one value after
    pooling: its normalised output is rounding noise around 0, which a zero shift puts on the LeakyReLU's kink, where
    the slope taken (1 or 0.2) follows the summation order. At Wan's size (12 channels a group) no group is that small.
    """
    reset = torch.nn.GroupNorm.reset_parameters

    def shifted(norm):
        reset(norm)
        torch.nn.init.constant_(norm.bias, 0.5)

    monkeypatch.setattr(torch.nn, "Dropout", torch.nn.Identity)
    monkeypatch.setattr(torch.nn.GroupNorm, "reset_parameters", shifted)


@pytest.fixture
def run_dict(config_dict):
    """Three iterations; stage 2 alternates critic and student steps, so both kinds are accumulated. AdamW's eps is
    raised to 1e-3 (the gradients here are 1e-2 at most) so its update is smooth in the gradient: at 1e-8 an element
    whose gradient is ~1e-8 (there are such among a million) moves by a large part of the learning rate on a
    rounding-level change of that gradient, and the weights could not be compared tightly."""
    config_dict["run"].update(iterations=3, checkpoint_every=3)
    config_dict["stage2"]["student_update_every"] = 2
    for section in ("stage1", "stage2", "flow_matching", "kd"):
        config_dict[section]["optim"]["eps"] = 1e-3
    return config_dict


def for_stage(values: dict, stage: str, pair_dir) -> dict:
    """The KD warm-up is for a one-step student and reads noise–data pairs. Stage 2 and DMD2-v take a batch of 8: at
    one row, the small discriminator's one-value GroupNorm groups are refused by torch in training mode."""
    if stage == "kd":
        values["model"]["outer_steps"] = 1
        values["data"]["shards"] = [str(pair_dir / "*.safetensors")]
    if stage in ("2", "dmd2v"):
        values["data"]["batch_size"] = 8
    return values


def train(values: dict, stage: str, micro_batch: int | None, out, until: int | None = None, resume: bool = False):
    values = copy.deepcopy(values)
    values["data"]["micro_batch"] = micro_batch
    trainer = Trainer(config_from_dict(values), stage, out, Env())
    if resume:
        trainer.resume()
    trainer.run(until)
    return trainer


def initial_weights(values: dict, stage: str, out) -> dict[str, torch.Tensor]:
    """The trainable roles' weights before the first step, keyed as in a checkpoint."""
    algo = Trainer(config_from_dict(values), stage, out, Env()).algo
    return {f"{name}.safetensors/{key}": value.detach().clone() for name in algo.trainable
            for key, value in algo.module(name).state_dict().items()}


def start_roles(start: dict[str, torch.Tensor]) -> set[str]:
    return {key.split("/", 1)[0] for key in start}


def checkpoint_tensors(out, iteration: int) -> dict[str, torch.Tensor]:
    """Weights, AdamW moments and RNG states of a checkpoint, keyed by file and name."""
    folder = out / "checkpoints" / f"step-{iteration:08d}"
    return {f"{path.name}/{key}": value for path in sorted(folder.glob("*.safetensors"))
            for key, value in read_safetensors(path)[0].items()}


def differences(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor], start: dict[str, torch.Tensor]):
    """max |a − b| over the largest value of the same kind in the same role, per role and kind (weights, exp_avg,
    exp_avg_sq), where a weight's value is its change from `start`. Per role rather than per tensor: a gradient
    that is zero but for rounding (a conv bias before a one-channel GroupNorm) has no scale of its own."""
    assert a.keys() == b.keys()
    error, scale = {}, {}
    for key, value in a.items():
        if key.startswith("rng."):
            assert torch.equal(value, b[key]), f"{key}: the accumulated run drew other random numbers"
            continue
        file, name = key.split("/", 1)
        kind = file + (f"::{name.split('::')[1]}" if "::" in name else "")
        reference = value.double() - start[key].double() if key in start else value.double()
        error[kind] = max(error.get(kind, 0.0), (value.double() - b[key].double()).abs().max().item())
        scale[kind] = max(scale.get(kind, 0.0), reference.abs().max().item())
    return {kind: error[kind] / scale[kind] for kind in error if scale[kind] > 0}


def assert_same_training(reference: dict[str, torch.Tensor], other: dict[str, torch.Tensor],
                         start: dict[str, torch.Tensor]) -> None:
    found = differences(reference, other, start)
    # the moments carry the gradient's scale, which AdamW's update alone would hide
    moments = {kind: value for kind, value in found.items() if "::exp_avg" in kind}
    weights = {kind: value for kind, value in found.items() if "::" not in kind}
    assert len(weights) == len(moments) // 2 == len(start_roles(start)), found
    assert max(moments.values()) < MOMENT_TOLERANCE and max(weights.values()) < WEIGHT_TOLERANCE, found


@pytest.mark.parametrize("stage", STAGES)
def test_micro_batches_of_half_and_a_quarter_reach_the_full_batch_weights(run_dict, pair_dir, stage, tmp_path):
    run_dict = for_stage(run_dict, stage, pair_dir)
    start = initial_weights(run_dict, stage, tmp_path / "start")
    train(run_dict, stage, None, tmp_path / "full")
    reference = checkpoint_tensors(tmp_path / "full", 3)
    batch = run_dict["data"]["batch_size"]
    for micro_batch in (batch // 2, batch // 4):
        out = tmp_path / f"micro{micro_batch}"
        assert train(run_dict, stage, micro_batch, out).algo.micro_batch == micro_batch
        assert_same_training(reference, checkpoint_tensors(out, 3), start)


def test_a_run_stopped_and_resumed_in_micro_batches_is_bitwise_the_uninterrupted_one(run_dict, tmp_path):
    run_dict["run"].update(iterations=6, checkpoint_every=3)
    train(run_dict, "2", 2, tmp_path / "a")
    assert train(run_dict, "2", 2, tmp_path / "b", until=4).iteration == 4  # iteration 4 is lost with the process
    assert train(run_dict, "2", 2, tmp_path / "b", resume=True).iteration == 6
    a, b = checkpoint_tensors(tmp_path / "a", 6), checkpoint_tensors(tmp_path / "b", 6)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    # the micro-batch is no part of the config a checkpoint must match: a run resumed on other GPUs may change it
    train(run_dict, "2", None, tmp_path / "c", until=3)
    assert train(run_dict, "2", 2, tmp_path / "c", resume=True).iteration == 6  # whole batches up to 3, then halves
    assert_same_training(a, checkpoint_tensors(tmp_path / "c", 6), initial_weights(run_dict, "2", tmp_path / "s"))


@pytest.mark.parametrize("strategy", ["ddp", "fsdp"])
def test_two_processes_in_micro_batches_reach_the_full_batch_weights(run_dict, strategy, tmp_path):
    """DDP skips the all-reduce until the last micro-batch (no_sync), FSDP2 reduce-scatters each one: both end where
    the same two processes end without accumulation (stage 1: no dropout or GroupNorm to set aside)."""
    run_dict["run"].update(distributed=strategy, iterations=2, checkpoint_every=2)
    for micro_batch in (None, 1):  # 4 over 2 processes: 2 rows each, in micro-batches of 1
        run_dict["data"]["micro_batch"] = micro_batch
        config_path = tmp_path / f"config{micro_batch}.json"
        config_path.write_text(json.dumps(run_dict))
        out = tmp_path / f"run{micro_batch}"
        result = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
                                 "--master_addr", "127.0.0.1", "--master_port", str(free_port()), str(TORCHRUN_WORKER),
                                 str(config_path), "1", str(out)], capture_output=True, text=True, timeout=600)
        assert result.returncode == 0, result.stderr[-3000:]
        assert json.loads((out / "report.json").read_text())["ranks_agree"] == {"student": True}
    assert_same_training(checkpoint_tensors(tmp_path / "runNone", 2), checkpoint_tensors(tmp_path / "run1", 2),
                         initial_weights(run_dict, "1", tmp_path / "start"))


def test_a_micro_batch_that_does_not_divide_the_per_process_batch_is_refused(run_dict, tmp_path):
    with pytest.raises(TrainingConfigError, match=r"^data.micro_batch 3 does not divide the per-process batch 4 "
                                                  r"\(data.batch_size 4 over 1 process\)\.$"):
        train(run_dict, "1", 3, tmp_path)
    with pytest.raises(TrainingConfigError, match="data.micro_batch must be at least 1, got 0"):
        train(run_dict, "1", 0, tmp_path)


def test_a_batch_without_meanflow_rows_still_evaluates_when_processes_must_stay_in_step():
    """Under FSDP2 every process must make the same forwards; a micro-batch of one row often has no r < s row."""
    g = torch.Generator().manual_seed(3)
    y_s, v = torch.randn(2, 4, generator=g), torch.randn(2, 4, generator=g)
    s = torch.rand(2, generator=g, dtype=torch.float64) * 0.5 + 0.25
    calls = []

    def u_fn(y, s_eval, rows):
        calls.append(rows.tolist())
        return y.double()

    for always, expected in ((False, []), (True, [[0], [0]])):
        calls.clear()
        assert torch.equal(meanflow_target(u_fn, y_s, v, s, s.clone(), 5e-3, always), v.double())
        assert calls == expected
