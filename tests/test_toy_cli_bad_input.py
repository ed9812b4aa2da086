# SPDX-License-Identifier: Apache-2.0
"""The main command's bad input, as a new user types it: one sentence naming the value, exit status 2 (130 for
Ctrl-C), nothing written, and the argument checks done before any checkpoint is loaded."""
import signal
import subprocess
import sys
import time

import pytest

from comfyui_tmd.tmd_core.safe_files import read_header, read_safetensors, write_safetensors
from comfyui_tmd.toy import cli
from comfyui_tmd.toy.cli import main

from toy_checkpoints import write_toy_checkpoints

CAPTION = "a red square moving left"

# (caption, extra arguments, a fragment of the sentence that names the value and what is expected)
ARGUMENT_CASES = {
    "frames 0": (CAPTION, ["--frames", "0"], "--frames 0: a toy clip has a positive multiple of 4 frames"),
    "frames -4": (CAPTION, ["--frames", "-4"], "--frames -4: a toy clip has a positive multiple of 4 frames"),
    "size 0": (CAPTION, ["--size", "0"], "--size 0: the side must be a positive even number of pixels"),
    "fps 0": (CAPTION, ["--fps", "0"], "--fps 0: frames per second must be above 0 and at most 100"),
    "scale 0": (CAPTION, ["--scale", "0"], "--scale 0: the clip is enlarged a whole number of times ≥ 1"),
    "scale -2": (CAPTION, ["--scale", "-2"], "--scale -2: the clip is enlarged a whole number of times ≥ 1"),
    "seed 2**64": (CAPTION, ["--seed", str(2**64)],
                   f"--seed {2**64} is out of range; a seed is a whole number from 0 to {2**64 - 1}"),
    "frames 40000": (CAPTION, ["--frames", "40000"], "--frames 40000 at --size 16 is 640,000 DiT tokens, above the toy "
                                                     "world's limit of 16,384"),
    "scale 1000": (CAPTION, ["--scale", "1000"], "--scale 1000 makes a clip of 1,024,000,000 pixels"),
    "empty caption": ("", [], "the caption is empty"),
    "blank caption": ("   ", [], "the caption is empty"),
    "cfg with the student": (CAPTION, ["--cfg", "3"], "--cfg is for the teacher only (--teacher); the TMD student "
                                                      "samples without classifier-free guidance"),
    "M = 0": (CAPTION, ["--outer-steps", "0"], "--outer-steps must be a whole number of steps ≥ 1, got 0"),
    "N = 0": (CAPTION, ["--inner-steps", "0"], "--inner-steps must be a whole number of steps ≥ 1, got 0"),
    "M with the teacher": (CAPTION, ["--teacher", "--outer-steps", "3"], "--outer-steps is for the TMD student only"),
}


def one_error_line(err: str) -> str:
    assert err.startswith("error: ") and err.count("\n") == 1, err
    return err


def nothing_in(folder) -> bool:
    return not any(folder.iterdir())


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    return write_toy_checkpoints(tmp_path_factory.mktemp("toy"))


@pytest.mark.parametrize("case", ARGUMENT_CASES)
def test_bad_argument_is_one_sentence_before_loading(case, tmp_path, capsys, monkeypatch):
    def no_loading(files):
        raise AssertionError(f"loaded {files} before checking the arguments")

    monkeypatch.setattr(cli, "load", no_loading)
    caption, extra, sentence = ARGUMENT_CASES[case]
    assert main(["generate", caption, "--out", str(tmp_path / "clip.gif"), *extra]) == 2
    assert sentence in one_error_line(capsys.readouterr().err)
    assert nothing_in(tmp_path)


def test_out_in_a_missing_folder_is_refused_before_loading(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(cli, "load", lambda files: pytest.fail("loaded before checking --out"))
    out = tmp_path / "missing" / "clip.gif"
    assert main(["generate", CAPTION, "--out", str(out)]) == 2
    err = one_error_line(capsys.readouterr().err)
    assert f"--out {out}: the folder {out.parent} does not exist" in err
    assert nothing_in(tmp_path)


def damaged_copy(source, target):
    """`source` with the middle of its first tensor's bytes overwritten by 0xFF (a NaN in any float format)."""
    header, _ = read_header(source)
    offset = 8 + int.from_bytes(source.read_bytes()[:8], "little")
    start, end = next(iter(header.values()))["data_offsets"]
    data = bytearray(source.read_bytes())
    middle = offset + (start + end) // 2
    data[middle:middle + 8] = b"\xff" * 8
    target.write_bytes(bytes(data))
    return target


def test_a_checkpoint_with_damaged_bytes_is_named_at_load(files, tmp_path, capsys):
    folder = tmp_path / "files"
    folder.mkdir()
    damaged = damaged_copy(files["tmd"], folder / "student.safetensors")
    out = tmp_path / "out"
    out.mkdir()
    assert main(["generate", CAPTION, "--out", str(out / "clip.gif"), "--wan", str(damaged),
                 "--head", str(files["tmd_head"])]) == 2
    err = one_error_line(capsys.readouterr().err)
    assert "student.safetensors is damaged: its tensor " in err and "holds NaN or inf values" in err
    assert nothing_in(out)


def test_weights_that_sample_to_nan_name_the_files(files, tmp_path, capsys):
    tensors, metadata = read_safetensors(files["tmd"])
    tensors["head.head.weight"] = tensors["head.head.weight"] * 1e38  # finite, but the output overflows
    wan = write_safetensors(tensors, tmp_path / "files" / "huge.safetensors", metadata)
    out = tmp_path / "out"
    out.mkdir()
    assert main(["generate", CAPTION, "--out", str(out / "clip.gif"), "--wan", str(wan),
                 "--head", str(files["tmd_head"])]) == 2
    err = one_error_line(capsys.readouterr().err)
    assert "NaN or inf" in err and str(wan) in err and str(files["tmd_head"]) in err and "damaged" in err
    assert nothing_in(out)


def test_sampled_in_excludes_loading(files, tmp_path, capsys, monkeypatch):
    slow_load = cli.load

    def load(files):
        time.sleep(1.0)
        return slow_load(files)

    monkeypatch.setattr(cli, "load", load)
    assert main(["generate", CAPTION, "--out", str(tmp_path / "clip.gif"), "--wan", str(files["tmd"]),
                 "--head", str(files["tmd_head"])]) == 0
    loaded, wrote = capsys.readouterr().out.splitlines()
    assert loaded.startswith("loaded the TMD student in ") and float(loaded.split(" in ")[1].split()[0]) >= 1.0
    assert float(wrote.split("sampled in ")[1].split()[0]) < 1.0


@pytest.mark.skipif(sys.platform == "win32", reason="sends SIGINT")
def test_ctrl_c_prints_one_line_exits_130_and_leaves_no_file(files, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    command = [sys.executable, "-m", "comfyui_tmd", "generate", CAPTION, "--out", str(out / "clip.gif"),
               "--wan", str(files["tmd"]), "--head", str(files["tmd_head"]), "--outer-steps", "1000000"]
    # SIGINT back to its default in the child, since a shell may start the tests with it ignored
    run = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                           preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    assert run.stdout.readline().startswith("loaded the TMD student")  # sampling has begun
    run.send_signal(signal.SIGINT)
    _, err = run.communicate(timeout=60)
    assert run.returncode == 130
    assert err == "interrupted by Ctrl-C; stopped.\n"
    assert nothing_in(out)
