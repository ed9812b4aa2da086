# SPDX-License-Identifier: Apache-2.0
"""Validation during training: it never changes the run, it samples with each stage's own sampler from the
exported weights (the EMA where kept), a toy run writes clips, a contact sheet and TensorBoard images, the
diffusers decoder undoes Wan's latent normalisation, and bad settings are named."""
import io
import json
import struct

import numpy as np
import pytest
import torch

from comfyui_tmd.tmd_core import generate_teacher, generate_tmd, load_student, load_wan, tmd_sigmas
from comfyui_tmd.tmd_core.safe_files import read_safetensors, write_safetensors
from comfyui_tmd.tmd_core.wan_model import pad_context
from comfyui_tmd.toy.latent import decode
from comfyui_tmd.training import toy_world
from comfyui_tmd.training import validation
from comfyui_tmd.training.config import config_from_dict, load_config
from comfyui_tmd.training.decoders import make_decoder
from comfyui_tmd.training.distributed import Env
from comfyui_tmd.training.errors import TrainingConfigError
from comfyui_tmd.training.models import wan_velocity
from comfyui_tmd.training.trainer import Trainer
from comfyui_tmd.training.validation import PREVIEW_HEIGHT, SHEET_GAP, preview

from training_factories import SHARD_LATENT, torchrun_training

PROMPTS = ["first prompt", "second prompt"]


@pytest.fixture(scope="module")
def prompt_file(tmp_path_factory, prompt_embeddings):
    """make_data's prompt format: two prompts' context and the negative context, with their names."""
    context, negative = prompt_embeddings
    path = tmp_path_factory.mktemp("prompts") / "prompts.safetensors"
    return write_safetensors({"context": context[:2], "negative_context": negative}, path,
                             {"prompts": json.dumps(PROMPTS)})


def with_validation(config_dict: dict, prompt_file, every: int, **settings) -> dict:
    config_dict["validation"] = {"every": every, "prompts": str(prompt_file), "seeds": [3, 4], "decoder": "toy",
                                 **settings}
    return config_dict


def checkpoint_tensors(folder) -> dict[str, torch.Tensor]:
    return {f"{path.name}/{key}": value for path in sorted(folder.glob("*.safetensors"))
            for key, value in read_safetensors(path)[0].items()}


@pytest.mark.parametrize("stage, ema", [("1", 0.5), ("2", None)])
def test_a_run_with_validation_trains_bit_for_bit_as_one_without(config_dict, prompt_file, env, tmp_path, stage, ema):
    config_dict["run"].update(iterations=3, checkpoint_every=3)
    config_dict["stage1"]["optim"]["ema_decay"] = ema
    config_dict["stage2"]["student_update_every"] = 2
    plain = Trainer(config_from_dict(config_dict), stage, tmp_path / "off", env)
    plain.run()
    validated = Trainer(config_from_dict(with_validation(config_dict, prompt_file, every=2)), stage,
                        tmp_path / "on", env)
    validated.run()
    steps = sorted(p.name for p in (tmp_path / "on" / "validation").iterdir())
    assert steps == ["step-00000002", "step-00000003"]  # one between iterations, one after the last
    step = "checkpoints/step-00000003"
    off, on = checkpoint_tensors(tmp_path / "off" / step), checkpoint_tensors(tmp_path / "on" / step)
    assert off.keys() == on.keys() and any(key.startswith("rng.0") for key in on)
    for key in off:
        assert torch.equal(off[key], on[key]), key
    assert torch.equal(plain.algo.rng.get_state(), validated.algo.rng.get_state())
    assert all(m.training for m in validated.algo.module("student").modules())  # modes untouched


def plain_euler(wan, context, shape, seed, steps):
    """Reference of the DMD2-v baseline's sampler: Euler without CFG on the M-step TMD grid, from σ_0 · noise."""
    sigmas, context = tmd_sigmas(steps).double(), pad_context(context, wan.text_len)
    x = sigmas[0] * torch.randn(shape, generator=torch.Generator().manual_seed(seed))
    for sigma, sigma_next in zip(sigmas[:-1], sigmas[1:], strict=True):
        v = wan_velocity(wan, x, sigma.float().reshape(1), context).double()
        x = (x.double() + (sigma_next - sigma) * v).float()
    return x


def expected_samples(stage: str, export, folder, prompt_embeddings, outer_steps=2, inner_steps=2, teacher_steps=16,
                     teacher_cfg=5.0) -> tuple[torch.Tensor, torch.Tensor]:
    """(the latents validation wrote in `folder`, the samples of the exported model with the stage's sampler)."""
    tensors, metadata = read_safetensors(folder / "latents.safetensors")
    rows = json.loads(metadata["rows"])
    assert [(r["prompt"], r["seed"]) for r in rows] == [(p, s) for p in PROMPTS for s in (3, 4)]
    context, negative = prompt_embeddings
    shape, expected = (1, *SHARD_LATENT), []
    with torch.no_grad():
        for row in rows:
            c = context[PROMPTS.index(row["prompt"])][None]
            if stage == "1":
                student, meta = load_student(export / "student.safetensors", export / "student_head.safetensors")
                expected.append(generate_tmd(student, c, shape, row["seed"], outer_steps, inner_steps, meta.outer_gamma,
                                             meta.inner_gamma, inner_form=meta.inner_form))
            elif stage == "fm":
                expected.append(generate_teacher(load_wan(export / "student.safetensors"), c, negative, shape,
                                                 row["seed"], steps=teacher_steps, cfg=teacher_cfg))
            else:
                wan = load_wan(export / "student.safetensors")
                expected.append(plain_euler(wan, c, shape, row["seed"], outer_steps))
    return tensors["latents"], torch.cat(expected)


@pytest.mark.parametrize("stage, ema, settings", [("1", 0.5, {"inner_steps": 3}), ("dmd2v", None, {"outer_steps": 3}),
                                                  ("fm", 0.5, {"teacher_steps": 5, "teacher_cfg": 4.0})])
def test_validation_samples_the_exported_model_with_its_stages_sampler(config_dict, prompt_file, prompt_embeddings,
                                                                       env, tmp_path, stage, ema, settings):
    """At the last iteration the validation model is the exported one (the EMA where kept): its latents equal
    the samples of the export with the stage's sampler and the validation's step counts."""
    config_dict["run"].update(iterations=2, checkpoint_every=2)
    config_dict["stage2"]["student_update_every"] = 1
    for section in ("stage1", "flow_matching"):
        config_dict[section]["optim"]["ema_decay"] = ema
    config = config_from_dict(with_validation(config_dict, prompt_file, every=5, **settings))
    export = Trainer(config, stage, tmp_path, env).run()
    latents, expected = expected_samples(stage, export, tmp_path / "validation" / "step-00000002", prompt_embeddings,
                                         **settings)
    torch.testing.assert_close(latents, expected, rtol=1e-4, atol=1e-4)
    assert not torch.equal(latents[0], latents[1])  # two seeds, two samples


def test_under_fsdp2_the_main_process_validates_the_gathered_ema_weights(config_dict, prompt_file,
                                                                        prompt_embeddings, tmp_path):
    config_dict["run"].update(distributed="fsdp", iterations=2, checkpoint_every=2)
    config_dict["stage1"]["optim"]["ema_decay"] = 0.5
    out = tmp_path / "run"
    result = torchrun_training(with_validation(config_dict, prompt_file, every=2), "1", out)
    assert result.returncode == 0, result.stderr[-3000:]
    assert sorted(p.name for p in (out / "validation").iterdir()) == ["step-00000002"]
    latents, expected = expected_samples("1", out / "export", out / "validation" / "step-00000002", prompt_embeddings)
    torch.testing.assert_close(latents, expected, rtol=1e-4, atol=1e-4)


def png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


def test_a_toy_run_writes_clips_a_contact_sheet_and_tensorboard_images(tmp_path):
    shards = toy_world.make_data(tmp_path / "data", count=16)
    config = load_config(toy_world.CONFIG, {"data.shards": shards, "data.batch_size": 4, "run.iterations": 2,
                                            "validation.teacher_steps": 3})
    captions = config.validation.prompts
    assert config.validation.every > 0 and len(captions) == 4 and config.validation.decoder == "toy"
    Trainer(config, "fm", tmp_path / "run").run()
    folder = tmp_path / "run" / "validation" / "step-00000002"  # the last iteration, not a multiple of `every`
    assert sorted(p.name for p in folder.glob("*.gif")) == [f"p{i:02d}_seed0.gif" for i in range(4)]
    assert all(p.read_bytes()[:6] == b"GIF89a" for p in folder.glob("*.gif"))
    sheet = (folder / "contact_sheet.png").read_bytes()
    side = 4 * PREVIEW_HEIGHT + 3 * SHEET_GAP  # 4 captions × 1 seed rows, 4 frames across
    assert png_size(sheet) == (side, side)
    tensors, metadata = read_safetensors(folder / "latents.safetensors")
    latents = tensors["latents"]
    assert [row["prompt"] for row in json.loads(metadata["rows"])] == captions
    image = pytest.importorskip("PIL.Image")
    pixels = torch.from_numpy(np.array(image.open(io.BytesIO(sheet)).convert("RGB")))  # [H, W, 3] uint8
    last = preview(decode(latents[3:4])[0])[3]  # last row, last frame: [128, 128, 3]
    corner = pixels[-PREVIEW_HEIGHT:, -PREVIEW_HEIGHT:].float() / 255
    torch.testing.assert_close(corner, last, atol=0.5 / 255, rtol=0)
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(tmp_path / "run" / "tensorboard"))
    events.Reload()
    tags = set(events.Tags()["images"])
    assert tags == {"validation/contact_sheet", *(f"validation/p{i:02d}_seed0" for i in range(4))}
    clip = events.Images("validation/p00_seed0")[-1]
    assert clip.step == 2 and clip.encoded_image_string[:6] == b"GIF89a" and clip.height == PREVIEW_HEIGHT


def tiny_wan_vae(folder, mean: torch.Tensor, std: torch.Tensor):
    """diffusers' AutoencoderKLWan at tiny width (2× spatial, 2× temporal), saved in `folder`."""
    diffusers = pytest.importorskip("diffusers")
    with torch.random.fork_rng():
        torch.manual_seed(6)
        vae = diffusers.AutoencoderKLWan(base_dim=8, dim_mult=[1, 2], num_res_blocks=1, temperal_downsample=[True],
                                         latents_mean=mean.tolist(), latents_std=std.tolist()).eval()
    vae.save_pretrained(folder)
    return vae


def test_the_diffusers_decoder_undoes_wans_latent_normalisation(tmp_path):
    g = torch.Generator().manual_seed(5)
    mean, std = torch.randn(16, generator=g), torch.rand(16, generator=g) + 0.5  # not the defaults
    vae = tiny_wan_vae(tmp_path / "vae", mean, std)
    decoder = make_decoder(f"diffusers:{tmp_path / 'vae'}", torch.device("cpu"))
    latent = torch.randn(1, 16, 2, 4, 4, generator=g)
    frames = decoder(latent)
    with torch.no_grad():
        video = vae.decode(latent * std.view(1, 16, 1, 1, 1) + mean.view(1, 16, 1, 1, 1)).sample  # [1, 3, F, H, W]
    assert frames.shape == (1, video.shape[2], video.shape[3], video.shape[4], 3) and video.shape[2] > 2
    torch.testing.assert_close(frames, ((video + 1) / 2).clamp(0, 1).permute(0, 2, 3, 4, 1))
    assert 0.0 <= frames.min() and frames.max() <= 1.0 and frames.std() > 0


def test_bad_validation_settings_are_named(config_dict, prompt_embeddings, env, tmp_path):
    with pytest.raises(TrainingConfigError, match="validation.decoder is 'vae'; expected toy, none"):
        config_from_dict({"validation": {"decoder": "vae"}})
    with pytest.raises(TrainingConfigError, match="validation.every is set but validation.prompts or"):
        config_from_dict({"validation": {"every": 10}})
    with pytest.raises(TrainingConfigError, match="validation.prompts must be a file name or a list of captions"):
        config_from_dict({"validation": {"prompts": ["a red square moving left", 3]}})
    with pytest.raises(TrainingConfigError, match="config key validation.prompts must be a string, got 3"):
        config_from_dict({"validation": {"prompts": 3}})
    with pytest.raises(TrainingConfigError, match="validation.seeds must be whole numbers, got \\[0.5\\]"):
        config_from_dict({"validation": {"seeds": [0.5]}})
    with pytest.raises(TrainingConfigError, match="validation.outer_steps must be at least 1, got 0"):
        config_from_dict({"validation": {"outer_steps": 0}})
    with pytest.raises(TrainingConfigError, match="must be a folder with the Wan VAE's config.json"):
        make_decoder(f"diffusers:{tmp_path}", torch.device("cpu"))
    with pytest.raises(TrainingConfigError, match="comfyui:.*vae.pt must be a Wan2.1 VAE .safetensors file"):
        make_decoder(f"comfyui:{tmp_path / 'vae.pt'}", torch.device("cpu"))
    context, _ = prompt_embeddings
    no_negative = write_safetensors({"context": context[:1]}, tmp_path / "prompts.safetensors")
    with pytest.raises(TrainingConfigError, match="needs tensors 'context' .* 'negative_context'"):
        Trainer(config_from_dict(with_validation(config_dict, no_negative, every=1)), "1", tmp_path / "run", env)


@pytest.mark.parametrize("clips", ["mp4", "png", "none"])
def test_real_decoders_write_mp4_or_png_frames_and_none_writes_latents_only(prompt_file, tmp_path, monkeypatch,
                                                                            clips):
    """A real decoder's clips are MP4 with PyAV, else a folder of PNG frames; decoder none writes the latents."""
    if clips == "mp4":
        pytest.importorskip("av")
    monkeypatch.setattr(validation, "mp4_available", lambda: clips == "mp4")
    decoder = "none"
    if clips != "none":
        tiny_wan_vae(tmp_path / "vae", torch.zeros(16), torch.ones(16))
        decoder = f"diffusers:{tmp_path / 'vae'}"
    config = config_from_dict({"validation": {"every": 1, "prompts": str(prompt_file), "seeds": [3, 4],
                                              "decoder": decoder}})
    latents = torch.randn(4, 16, 3, 4, 6, generator=torch.Generator().manual_seed(8))  # 2 prompts × 2 seeds
    folder = validation.Validation(config, tmp_path / "run", Env()).write(latents, "1", 7)
    assert folder == tmp_path / "run" / "validation" / "step-00000007"
    assert torch.equal(read_safetensors(folder / "latents.safetensors")[0]["latents"], latents)
    written = sorted(p.name for p in folder.iterdir())
    rows = ["p00_seed3", "p00_seed4", "p01_seed3", "p01_seed4"]
    if clips == "none":
        assert written == ["latents.safetensors"]
    elif clips == "mp4":
        assert written == ["contact_sheet.png", "latents.safetensors", *(f"{row}.mp4" for row in rows)]
        assert all((folder / f"{row}.mp4").read_bytes()[4:8] == b"ftyp" for row in rows)
    else:
        assert written == ["contact_sheet.png", "latents.safetensors", *rows]
        frames = sorted((folder / "p01_seed4").iterdir())
        assert [p.name for p in frames] == [f"frame_{i:04d}.png" for i in range(5)]  # 1 + 2·(3 − 1) frames
        assert png_size(frames[0].read_bytes()) == (12, 8)  # 2× the latent's 6 × 4


def test_validation_settings_leave_the_resume_fingerprint_alone():
    """Validation never changes the training trajectory, so a run may resume with other validation settings."""
    plain = config_from_dict({})
    validated = config_from_dict({"validation": {"every": 5, "prompts": ["a red square moving left"]}})
    assert plain.fingerprint("1") == validated.fingerprint("1")
    assert plain.fingerprint("1") != config_from_dict({"run": {"seed": 1}}).fingerprint("1")
