# SPDX-License-Identifier: Apache-2.0
"""The shipped YAML configs carry the paper's numbers; bad keys and values are refused; the memory model."""
from pathlib import Path

import pytest

import comfyui_tmd.training as training
from comfyui_tmd.training.config import config_from_dict, load_config
from comfyui_tmd.training.errors import TrainingConfigError
from comfyui_tmd.training.memory import estimate_memory, memory_table, parameter_counts
from comfyui_tmd.tmd_core import WAN21_T2V_1_3B

CONFIGS = Path(training.__file__).parent / "configs"


def test_shipped_configs_hold_the_papers_hyperparameters():
    small, large, tiny = (load_config(CONFIGS / f"{n}.yaml") for n in ("wan21_1_3b", "wan21_14b", "tiny"))
    assert (small.model.head_blocks, small.model.inner_steps, small.stage1.optim.lr) == (5, 2, 3e-5)
    assert (large.model.inner_steps, large.stage1.optim.lr, large.stage1.loss_c_factor) == (4, 1e-5, 1e-5)
    assert small.stage2.disc_blocks == [15, 22, 29] and large.stage2.disc_blocks == [19, 29, 39]
    for c in (small, large):
        for stage in ("1", "2", "dmd2v"):
            optim = c.stage_optim(stage)
            assert (optim.betas, optim.weight_decay, optim.eps, c.data.batch_size) == ((0.9, 0.99), 0.01, 1e-8, 64)
        s1, s2 = c.stage1, c.stage2
        assert (s1.cfg_scale, s1.fd_delta, s1.r_equals_s_prob, s1.s_gamma) == (3.0, 5e-3, 0.75, 3.0)
        assert (s2.teacher_cfg, s2.gan_weight, s2.dmd_gamma, s2.student_update_every) == (5.0, 0.03, 5.0, 5)
        assert c.data.latent_shape == [16, 21, 60, 104]
    assert tiny.model.wan == "tiny" and tiny.model.teacher is None


@pytest.mark.parametrize("name", ["wan21_1_3b", "wan21_14b"])
def test_stage_2_takes_the_papers_learning_rate_and_its_own_optimiser(name):
    """Table 7: lr 1e-5 for the stage-2 student, fake score and discriminator of both sizes (stage 1: 3e-5 for 1.3B)."""
    config = load_config(CONFIGS / f"{name}.yaml")
    for stage in ("2", "dmd2v"):
        assert config.stage_optim(stage).lr == 1e-5
    assert (config.stage2.fake_lr, config.stage2.disc_lr) == (1e-5, 1e-5)
    assert config.stage_optim("2").grad_clip == 10.0 and config.stage_optim("1").grad_clip is None
    assert config.stage_optim("kd").lr == 7e-5


def test_stage_optimiser_settings_are_independent():
    """Overriding one stage's optimiser leaves every other stage's untouched, and a partial section keeps the
    stage's own defaults (stage 2 does not fall back to stage 1's learning rate)."""
    config = config_from_dict({"stage1": {"optim": {"lr": 5e-4, "grad_clip": 2.0}},
                               "stage2": {"optim": {"ema_decay": 0.9}}})
    assert (config.stage_optim("1").lr, config.stage_optim("1").grad_clip) == (5e-4, 2.0)
    stage2 = config.stage_optim("2")
    assert (stage2.lr, stage2.grad_clip, stage2.ema_decay) == (1e-5, 10.0, 0.9)
    assert config.stage_optim("fm").lr == 3e-5 and config.stage_optim("1").ema_decay is None
    overridden = load_config(CONFIGS / "wan21_1_3b.yaml", {"stage2.optim.lr": 2e-6})
    assert (overridden.stage_optim("2").lr, overridden.stage_optim("1").lr) == (2e-6, 3e-5)


def test_unknown_keys_and_impossible_values_are_named():
    with pytest.raises(TrainingConfigError, match="config key stage1.cfg_scal is unknown"):
        config_from_dict({"stage1": {"cfg_scal": 3}})
    with pytest.raises(TrainingConfigError, match="stage1.cond_dropout must be a probability in \\[0, 1\\], got 1.5"):
        config_from_dict({"stage1": {"cond_dropout": 1.5}})
    with pytest.raises(TrainingConfigError, match="run.distributed is 'zero'"):
        config_from_dict({"run": {"distributed": "zero"}})
    with pytest.raises(TrainingConfigError, match="model.wan 'wan3' is unknown"):
        config_from_dict({"model": {"wan": "wan3"}})
    with pytest.raises(TrainingConfigError, match="config key optim is unknown"):
        config_from_dict({"optim": {"lr": 1e-5}})  # the old shared section: each stage has its own now
    with pytest.raises(TrainingConfigError, match="stage2.optim.ema_decay must lie in \\[0, 1\\) or be null, got 1.5"):
        config_from_dict({"stage2": {"optim": {"ema_decay": 1.5}}})
    with pytest.raises(TrainingConfigError, match="model.inner_form: inner form 'x' is unknown; expected one of y1, "):
        config_from_dict({"model": {"inner_form": "x"}})


def test_values_are_checked_against_their_fields_types():
    # YAML 1.1 reads 1e-5 (no dot) as a string: where a float is expected it is the number it reads as.
    lr = load_config(CONFIGS / "toy.yaml", {"stage2.optim.lr": "1e-5"}).stage2.optim.lr
    assert lr == 1e-5 and isinstance(lr, float)
    assert isinstance(config_from_dict({"stage1": {"cfg_scale": 3}}).stage1.cfg_scale, float)
    cases = [({"stage2": {"optim": {"lr": "fast"}}}, "config key stage2.optim.lr must be a number, got 'fast'"),
             ({"run": {"iterations": "x"}}, "config key run.iterations must be a whole number, got 'x'"),
             ({"run": {"iterations": True}}, "config key run.iterations must be a whole number, got True"),
             ({"run": {"activation_checkpointing": 1}}, "run.activation_checkpointing must be true or false, got 1"),
             ({"model": {"fusion": 3}}, "config key model.fusion must be a string, got 3")]
    for values, message in cases:
        with pytest.raises(TrainingConfigError, match=message):
            config_from_dict(values)
    assert config_from_dict({"stage2": {"optim": {"grad_clip": None}}}).stage2.optim.grad_clip is None


def test_memory_estimate_counts_and_scaling():
    counts = parameter_counts(WAN21_T2V_1_3B, 5, "gated", 3)
    assert 1.40e9 < counts.wan < 1.44e9 and counts.discriminator == 67_870_467
    config = load_config(CONFIGS / "wan21_1_3b.yaml")
    ddp8, fsdp8, fsdp16 = (estimate_memory(config, "1", n, s) for n, s in ((8, "ddp"), (8, "fsdp"), (16, "fsdp")))
    # Stage 1 trains 1.45B parameters: 16 bytes each is 21.6 GiB replicated under DDP, an eighth under FSDP2.
    assert abs(ddp8["weights"] + ddp8["optimizer"] - (counts.wan + counts.extras) * 16 / 2 ** 30) < 1e-6
    assert abs(fsdp8["optimizer"] * 8 - ddp8["optimizer"]) < 1e-6
    assert abs(fsdp16["activations"] * 2 - fsdp8["activations"]) < 1e-6  # half the samples per GPU
    assert estimate_memory(config, "2", 8, "fsdp")["total"] > fsdp8["total"]  # teacher, fake score, discriminator
    assert "| wan21_1_3b | 2 | fsdp |" in memory_table({"wan21_1_3b": config})
