# SPDX-License-Identifier: Apache-2.0
"""`python -m comfyui_tmd generate` end to end with tiny random checkpoints (mechanics, not quality)."""
import re
import subprocess
import sys

import pytest
import torch

from comfyui_tmd.tmd_core import effective_nfe
from comfyui_tmd.tmd_core.safe_files import read_safetensors, write_safetensors
from comfyui_tmd.toy import checkpoints
from comfyui_tmd.toy.cli import main
from comfyui_tmd.toy.latent import latent_shape

from toy_checkpoints import write_toy_checkpoints

CAPTION = "a red square moving left"


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    return write_toy_checkpoints(tmp_path_factory.mktemp("toy"))


def student_args(files, out, *extra):
    return ["generate", CAPTION, "--out", str(out),
            "--wan", str(files["tmd"]), "--head", str(files["tmd_head"]), *extra]


def test_module_entry_point_writes_a_gif_and_reports_nfe(files, tmp_path):
    out = tmp_path / "clip.gif"
    run = subprocess.run([sys.executable, "-m", "comfyui_tmd", *student_args(files, out, "--seed", "3")],
                         capture_output=True, text=True, check=True)
    assert out.read_bytes().startswith(b"GIF89a")
    nfe = effective_nfe(2, 2, 1, 4)  # trained M = N = 2, H = 1 of 4 blocks
    assert f"effective NFE {nfe:.2f}" in run.stdout and re.search(r"sampled in \d+\.\d+ s", run.stdout)


def test_same_seed_same_latent_and_steps_override(files, tmp_path, capsys):
    for name, seed in (("a", "5"), ("b", "5"), ("c", "6")):
        assert main(student_args(files, tmp_path / f"{name}.safetensors", "--seed", seed, "--outer-steps", "1")) == 0
    a, b, c = (read_safetensors(tmp_path / f"{n}.safetensors")[0]["latent"] for n in "abc")
    assert a.shape == latent_shape()[1:] and torch.equal(a, b) and not torch.equal(a, c)
    assert f"effective NFE {effective_nfe(1, 2, 1, 4):.2f}" in capsys.readouterr().out


def test_teacher_with_cfg_counts_two_passes_per_step(files, tmp_path, capsys):
    assert main(["generate", CAPTION, "--out", str(tmp_path / "t.gif"), "--teacher", "--wan", str(files["teacher"]),
                 "--teacher-steps", "3"]) == 0
    assert "effective NFE 6.00" in capsys.readouterr().out


def test_context_file_replaces_the_toy_text_encoder(files, tmp_path):
    write_safetensors({"context": torch.randn(7, 4096)}, tmp_path / "ctx.safetensors")
    out = tmp_path / "latent.safetensors"
    context_file = str(tmp_path / "ctx.safetensors")
    assert main(student_args(files, out, "--context-file", context_file, "--latent", "2", "4", "6")) == 0
    assert read_safetensors(out)[0]["latent"].shape == (16, 2, 4, 6)


def test_a_missing_default_checkpoint_names_the_file_and_the_command(monkeypatch, tmp_path, capsys):
    missing = tmp_path / "toy_tmd_student_head.safetensors"
    monkeypatch.setattr(checkpoints, "TMD_HEAD", missing)
    monkeypatch.setitem(checkpoints.MADE_BY, missing.resolve(), "make-the-head --now")
    assert main(["generate", CAPTION, "--out", str(tmp_path / "x.gif")]) == 2
    error = capsys.readouterr().err
    assert str(missing) in error and "`make-the-head --now`" in error and error.count("\n") == 1


def test_bad_caption_is_one_sentence(files, tmp_path, capsys):
    assert main(["generate", "a purple square moving left", "--out", str(tmp_path / "x.gif"),
                 "--wan", str(files["tmd"]), "--head", str(files["tmd_head"])]) == 2
    assert "'purple'" in capsys.readouterr().err
