# SPDX-License-Identifier: Apache-2.0
"""The typed training config: one dataclass per section, read from commented YAML (training/configs/).

Every field's comment says where its default comes from: a number of the paper (Table 7), a FastGen
default, or a choice of this pack where the paper is silent. Each stage has its own `optim` section,
so no stage inherits another's learning rate. Unknown keys are errors, so a typo never silently falls
back to a default; a section given in YAML overrides only the keys it names.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import types
import typing
from pathlib import Path

from ..tmd_core.errors import SamplingConfigError
from ..tmd_core.inner_form import DEFAULT_INNER_FORM, check_inner_form
from ..tmd_core.wan_config import NAMED_CONFIGS
from .errors import TrainingConfigError

# TM-MeanFlow, DMD2-v with rollout, plain DMD2-v baseline, flow-matching teacher, KD warm-up of the baseline
STAGES = ("1", "2", "dmd2v", "fm", "kd")
PLAN_KEY = "plan"  # top-level section of a config that lists a pipeline's runs (toy.yaml); not a TrainConfig field


@dataclasses.dataclass
class ModelConfig:
    # Wan2.1 T2V diffusion model (a file, a sharded release's index JSON or folder, a diffusers transformer folder);
    # None = a random `wan` (smoke tests only)
    teacher: str | None = None
    wan: str | None = "tiny"  # named size (tmd_core.NAMED_CONFIGS) of the random teacher, else checked against the file
    teacher_seed: int = 0  # seed of that random teacher
    head_blocks: int = 5  # H (paper: 5 for both 1.3B and 14B)
    fusion: str = "gated"  # paper default; "concat" is the App. B.3 alternative
    outer_steps: int = 2  # M the student is trained for
    inner_steps: int = 2  # N (TMD-N2H5 for 1.3B, N4H5 for 14B)
    outer_gamma: float = 10.0  # γ of the student's outer grid t_student
    inner_gamma: float = 10.0  # γ of the inner grid s_student
    inner_form: str = DEFAULT_INNER_FORM  # u = y1 − head ("y1", Eq. 14) or (y_s − head)/s ("ys"); see inner_form.py
    init_student: str | None = None  # stage 2: folder with student.safetensors (+ student_head.safetensors) from export


@dataclasses.dataclass
class DataConfig:
    shards: list[str] = dataclasses.field(default_factory=list)  # shard files or globs (training/shards.py)
    batch_size: int = 64  # global batch over all processes (paper: 64)
    # gradient accumulation: rows per forward/backward within each process's share of the batch, one optimiser
    # step per batch whatever it is (training/algorithm.py); null = the whole share at once
    micro_batch: int | None = None
    # [C, T, H, W]; 480p 81 frames
    latent_shape: list[int] = dataclasses.field(default_factory=lambda: [16, 21, 60, 104])
    text_len: int = 512  # umT5 tokens per prompt (Wan pads to 512)


@dataclasses.dataclass
class OptimConfig:
    """One stage's optimiser: AdamW for every trainable role of the stage, the EMA of its exported role."""

    lr: float = 3e-5  # of the stage's main role; paper: 3e-5 TM-MF 1.3B, 1e-5 TM-MF 14B and every stage-2 role
    weight_decay: float = 0.01  # paper (AdamW)
    betas: tuple[float, float] = (0.9, 0.99)  # paper
    eps: float = 1e-8  # paper
    warmup_iters: int = 0  # linear warm-up; the paper states no schedule, so constant after warm-up
    grad_clip: float | None = None  # max gradient norm per role; the paper states none; None = no clipping
    ema_decay: float | None = None  # EMA of the exported role, which export then writes; the paper states none


@dataclasses.dataclass
class Stage1Config:
    cfg_scale: float = 3.0  # ω of the CFG target (paper)
    fd_delta: float = 5e-3  # δ of the finite-difference d/ds (paper)
    r_equals_s_prob: float = 0.75  # share of samples with r = s (paper; applied per sample as MeanFlow/FastGen)
    s_gamma: float = 3.0  # γ of s_mf = shift_γ(U[0.001, 0.999]) (paper)
    cond_dropout: float = 0.1  # share of samples conditioned on the negative prompt (paper)
    loss_c_factor: float = 1.0  # c = factor·d in ||Δ||²/(||Δ||² + c): 1 for 1.3B, 1e-5 for 14B (paper)
    optim: OptimConfig = dataclasses.field(default_factory=OptimConfig)  # paper: lr 3e-5 (1.3B), 1e-5 (14B)


@dataclasses.dataclass
class Stage2Config:
    teacher_cfg: float = 5.0  # CFG of the real score (paper)
    student_update_every: int = 5  # student on iterations k % 5 == 0, fake score + discriminator otherwise (paper)
    dmd_gamma: float = 5.0  # t_dmd = shift_5(U[0.001, 0.999]) (paper)
    gan_weight: float = 0.03  # λ of the generator's GAN loss (paper)
    disc_blocks: list[int] | None = None  # teacher blocks the discriminator reads; None = spread over the depth
    fake_lr: float = 1e-5  # paper
    disc_lr: float = 1e-5  # paper
    normalizer: str = "dmd"  # "dmd": 1/mean|x̂ − g_teacher| (DMD, FastGen); "paper": 1/||g_fake − g_teacher||_1
    student_x0: str = "denoised"  # x̂ = x_t − t·ŷ ("denoised", what inference computes) or x1 − ŷ ("eq15")
    # inner steps the student's gradient flows through: "all" N (the paper's rollout) or "last" (the first N − 1
    # run without autograd; the backbone still gets gradient through the last step's features)
    rollout_grad: str = "all"
    # the student's (paper: lr 1e-5 for both sizes); clipped at norm 10 as FastGen clips DMD2 (the paper is silent)
    optim: OptimConfig = dataclasses.field(default_factory=lambda: OptimConfig(lr=1e-5, grad_clip=10.0))


@dataclasses.dataclass
class FlowMatchingConfig:
    t_gamma: float = 3.0  # teacher training times t = shift_γ(U[0.001, 0.999])
    cond_dropout: float = 0.1  # share of samples trained on the negative prompt (enables CFG)
    optim: OptimConfig = dataclasses.field(default_factory=OptimConfig)


@dataclasses.dataclass
class KDConfig:
    """The one-step DMD2-v baseline's KD warm-up (App. A.3, Table 4): regress the student's one-step sample onto
    teacher samples from the same noise (shards from make_data --pairs). The paper uses it for one step only."""

    optim: OptimConfig = dataclasses.field(default_factory=lambda: OptimConfig(lr=7e-5))  # paper: 7e-5, 10k iterations


@dataclasses.dataclass
class RunConfig:
    iterations: int = 3000  # paper: 3k TM-MF; stage 2 4k (M ≥ 2) / 12k (M = 1), counting every iteration
    checkpoint_every: int = 100  # iterations between atomic checkpoints
    keep_checkpoints: int = 2  # older checkpoints are deleted once a newer one is complete
    log_every: int = 1  # iterations between CSV/TensorBoard rows
    seed: int = 0  # seeds the one training RNG (each process adds its rank)
    precision: str = "bf16"  # "bf16" autocast on CUDA with fp32 master weights, or "fp32"; times are float64 always
    distributed: str = "ddp"  # under torchrun: "ddp" or "fsdp" (FSDP2 fully_shard); ignored in a single process
    activation_checkpointing: bool = True  # recompute each Wan block in backward


@dataclasses.dataclass
class ValidationConfig:
    """Samples of the current student at fixed prompts and seeds during training (training/validation.py): clips, a
    contact sheet and TensorBoard videos per validation, written by the main process only."""

    every: int = 0  # iterations between validations (and after the last one); 0 = off
    # toy captions (a list, encoded by toy/text.py) or a prompt-embedding file in make_data's format:
    # context [P, L, 4096] and negative_context [1, L, 4096], with an optional `prompts` metadata list
    prompts: str | list[str] | None = None
    seeds: list[int] = dataclasses.field(default_factory=lambda: [0])  # one sample per prompt and seed
    outer_steps: int | None = None  # M of the student's sampler; null = model.outer_steps
    inner_steps: int | None = None  # N of a TMD student's sampler; null = model.inner_steps
    teacher_steps: int = 16  # stage fm: Euler steps with CFG (a preview; the toy CLI's teacher takes 50)
    teacher_cfg: float = 5.0  # stage fm: CFG scale of those steps (Wan's default)
    latent_shape: list[int] | None = None  # [C, T, H, W] of the samples; null = data.latent_shape
    decoder: str = "none"  # toy | diffusers:<Wan VAE folder> | comfyui:<Wan VAE file> | none (latents only)
    fps: float = 16.0  # of the clips (Wan2.1 makes 16 frames a second)
    sheet_frames: int = 4  # frames across each row of the contact sheet


@dataclasses.dataclass
class TrainConfig:
    model: ModelConfig = dataclasses.field(default_factory=ModelConfig)
    data: DataConfig = dataclasses.field(default_factory=DataConfig)
    stage1: Stage1Config = dataclasses.field(default_factory=Stage1Config)
    stage2: Stage2Config = dataclasses.field(default_factory=Stage2Config)
    flow_matching: FlowMatchingConfig = dataclasses.field(default_factory=FlowMatchingConfig)
    kd: KDConfig = dataclasses.field(default_factory=KDConfig)
    run: RunConfig = dataclasses.field(default_factory=RunConfig)
    validation: ValidationConfig = dataclasses.field(default_factory=ValidationConfig)

    def __post_init__(self):
        check(self)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def stage_optim(self, stage: str) -> OptimConfig:
        """The optimiser settings of `stage` (DMD2-v shares stage 2's)."""
        return {"1": self.stage1, "2": self.stage2, "dmd2v": self.stage2, "fm": self.flow_matching,
                "kd": self.kd}[stage].optim

    def fingerprint(self, stage: str) -> str:
        """Hash of everything a resumed run must share with the run it continues (not the run length, logging or
        validation, none of which changes the training trajectory, nor the micro-batch: accumulation leaves the
        step unchanged, so a run may resume on other GPUs)."""
        frozen = {k: v for k, v in self.to_dict().items() if k not in ("run", "validation")}
        del frozen["data"]["micro_batch"]
        frozen["seed"], frozen["stage"] = self.run.seed, stage
        return hashlib.sha256(json.dumps(frozen, sort_keys=True).encode()).hexdigest()[:16]


def check(config: TrainConfig) -> None:
    """One-sentence errors for values no run can use."""
    m, r, s1, s2 = config.model, config.run, config.stage1, config.stage2
    if m.wan is None and m.teacher is None:
        raise TrainingConfigError("model.wan must name a Wan size when model.teacher gives no file.")
    if m.wan is not None and m.wan not in NAMED_CONFIGS:
        raise TrainingConfigError(f"model.wan {m.wan!r} is unknown; expected one of {', '.join(NAMED_CONFIGS)}.")
    positive = {"data.batch_size": config.data.batch_size, "run.iterations": r.iterations,
                "run.checkpoint_every": r.checkpoint_every, "run.log_every": r.log_every,
                "run.keep_checkpoints": r.keep_checkpoints, "stage2.student_update_every": s2.student_update_every}
    if config.data.micro_batch is not None:
        positive["data.micro_batch"] = config.data.micro_batch
    for name, value in positive.items():
        if value < 1:
            raise TrainingConfigError(f"{name} must be at least 1, got {value}.")
    for name, value in {"stage1.r_equals_s_prob": s1.r_equals_s_prob, "stage1.cond_dropout": s1.cond_dropout,
                        "flow_matching.cond_dropout": config.flow_matching.cond_dropout}.items():
        if not 0.0 <= value <= 1.0:
            raise TrainingConfigError(f"{name} must be a probability in [0, 1], got {value}.")
    if not 0.0 < s1.fd_delta < 0.1:
        raise TrainingConfigError(f"stage1.fd_delta must lie in (0, 0.1), got {s1.fd_delta}.")
    for section in ("stage1", "stage2", "flow_matching", "kd"):
        _check_optim(f"{section}.optim", getattr(config, section).optim)
    try:
        check_inner_form(m.inner_form)
    except SamplingConfigError as err:
        raise TrainingConfigError(f"model.inner_form: {err}") from err
    choices = {"run.precision": (r.precision, ("bf16", "fp32")), "run.distributed": (r.distributed, ("ddp", "fsdp")),
               "stage2.normalizer": (s2.normalizer, ("dmd", "paper")),
               "stage2.student_x0": (s2.student_x0, ("denoised", "eq15")),
               "stage2.rollout_grad": (s2.rollout_grad, ("all", "last"))}
    for name, (value, allowed) in choices.items():
        if value not in allowed:
            raise TrainingConfigError(f"{name} is {value!r}; expected one of {', '.join(allowed)}.")
    _check_validation(config.validation)


def _check_optim(name: str, optim: OptimConfig) -> None:
    if not optim.lr > 0:
        raise TrainingConfigError(f"{name}.lr must be positive, got {optim.lr}.")
    if optim.grad_clip is not None and not optim.grad_clip > 0:
        raise TrainingConfigError(f"{name}.grad_clip must be positive or null, got {optim.grad_clip}.")
    if optim.ema_decay is not None and not 0.0 <= optim.ema_decay < 1.0:
        raise TrainingConfigError(f"{name}.ema_decay must lie in [0, 1) or be null, got {optim.ema_decay}.")


def _check_validation(v: ValidationConfig) -> None:
    counts = {"validation.every": (v.every, 0), "validation.teacher_steps": (v.teacher_steps, 1),
              "validation.sheet_frames": (v.sheet_frames, 1), "validation.outer_steps": (v.outer_steps, 1),
              "validation.inner_steps": (v.inner_steps, 1)}  # the step counts may be null (the model's M, N)
    for name, (value, least) in counts.items():
        if value is not None and value < least:
            raise TrainingConfigError(f"{name} must be at least {least}, got {value}.")
    if isinstance(v.prompts, list) and not all(isinstance(caption, str) for caption in v.prompts):
        raise TrainingConfigError(f"validation.prompts must be a file name or a list of captions, got {v.prompts!r}.")
    if not all(isinstance(seed, int) and not isinstance(seed, bool) for seed in v.seeds):
        raise TrainingConfigError(f"validation.seeds must be whole numbers, got {v.seeds!r}.")
    if v.every and not (v.prompts and v.seeds):
        raise TrainingConfigError("validation.every is set but validation.prompts or validation.seeds is empty; give "
                                  "toy captions or a prompt-embedding file, and at least one seed.")
    kind, _, location = v.decoder.partition(":")
    if not (v.decoder in ("toy", "none") or (kind in ("diffusers", "comfyui") and location)):
        raise TrainingConfigError(f"validation.decoder is {v.decoder!r}; expected toy, none, diffusers:<folder> or "
                                  "comfyui:<file>.")
    if not v.fps > 0:
        raise TrainingConfigError(f"validation.fps must be positive, got {v.fps}.")


def _build(cls, values: dict, where: str, base=None):
    """A dataclass from a YAML mapping over `base` (default: the class's defaults), so a nested section keeps the
    defaults of its parent's field for the keys it does not name; unknown keys are errors."""
    if not isinstance(values, dict):
        raise TrainingConfigError(f"config section {where or 'root'} must be a mapping, got {type(values).__name__}.")
    hints = typing.get_type_hints(cls)
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise TrainingConfigError(f"config key {where}{unknown[0]} is unknown; {cls.__name__} has "
                                  f"{', '.join(sorted(known))}.")
    base = cls() if base is None else base
    kwargs = {}
    for key, value in values.items():
        hint = hints[key]
        if dataclasses.is_dataclass(hint):
            kwargs[key] = _build(hint, value, f"{where}{key}.", getattr(base, key))
        elif typing.get_origin(hint) is tuple and isinstance(value, list):
            kwargs[key] = tuple(value)
        else:
            kwargs[key] = _scalar(hint, value, f"{where}{key}")
    return dataclasses.replace(base, **kwargs)


def _scalar(hint, value, name: str):
    """A scalar value checked against its field's type (float, int, bool, str, optionally None); numbers written
    like 1e-4 are strings to YAML 1.1, so a string that reads as a number is one where a float is expected."""
    allowed = set(typing.get_args(hint)) if typing.get_origin(hint) in (typing.Union, types.UnionType) else {hint}
    if value is None and type(None) in allowed:
        return None
    if isinstance(value, list) and any(typing.get_origin(kind) is list for kind in allowed):
        return value  # a field that may also be a list (validation.prompts); its section checks the items
    if float in allowed:
        if isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                pass
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        raise TrainingConfigError(f"config key {name} must be a number, got {value!r}.")
    for kind, what in ((bool, "true or false"), (int, "a whole number"), (str, "a string")):
        if kind in allowed and not (isinstance(value, kind) and (kind is bool or not isinstance(value, bool))):
            raise TrainingConfigError(f"config key {name} must be {what}, got {value!r}.")
    return value


def config_from_dict(values: dict) -> TrainConfig:
    return _build(TrainConfig, values, "")


def read_yaml(path: str | os.PathLike) -> dict:
    """The mapping in a YAML config file, unchecked."""
    import yaml  # the `training` extra; imported here so the core never needs it

    path = Path(path)
    if not path.is_file():
        raise TrainingConfigError(f"no config file at {path}.")
    return yaml.safe_load(path.read_text()) or {}


def load_config(path: str | os.PathLike, overrides: dict | None = None) -> TrainConfig:
    """Read a YAML config; `overrides` maps dotted keys ("run.iterations", "stage2.optim.lr") to values given on the
    command line."""
    values = read_yaml(path)
    values.pop(PLAN_KEY, None)  # a pipeline's list of runs (training/toy_world.py), not a setting of one run
    for dotted, value in (overrides or {}).items():
        *sections, key = dotted.split(".")
        node = values
        for section in sections:
            node = node.setdefault(section, {})
        node[key] = value
    return config_from_dict(values)
