# SPDX-License-Identifier: Apache-2.0
"""toy_world's bad arguments are refused before the training data (hundreds of MB) is made."""
import subprocess
import sys

import pytest

from comfyui_tmd.tmd_core.command_line import run_command
from comfyui_tmd.training import toy_world

CASES = {
    "bogus stage": (["--stages", "bogus"],
                    "--stages bogus names unknown stage 'bogus'; the stages are fm, 1, 2, dmd2v."),
    "one bogus stage of two": (["--stages", "fm,3"], "--stages fm,3 names unknown stage '3'"),
    "scale 0": (["--scale", "0"], "--scale 0 must be above 0"),
    "clips 0": (["--clips", "0"], "--clips 0 must be at least 1."),
}


@pytest.mark.parametrize("case", CASES)
def test_bad_argument_is_one_sentence_and_writes_nothing(case, tmp_path, capsys):
    extra, sentence = CASES[case]
    assert run_command(toy_world.main, ["--out", str(tmp_path / "run"), *extra]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and sentence in err and err.count("\n") == 1
    assert not any(tmp_path.iterdir())


def test_module_exits_2_on_a_bogus_stage(tmp_path):
    run = subprocess.run([sys.executable, "-m", "comfyui_tmd.training.toy_world", "--stages", "bogus", "--out",
                          str(tmp_path / "run")], capture_output=True, text=True, cwd=tmp_path)
    assert run.returncode == 2 and run.stderr.startswith("error: --stages bogus names unknown stage")
    assert not any(tmp_path.iterdir())
