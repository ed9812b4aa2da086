# SPDX-License-Identifier: Apache-2.0
"""Every command's --help is help (not a run), and shows the defaults of its options."""
import subprocess
import sys

import pytest

from comfyui_tmd.benchmarks import comfy_overhead, cpu_speed, gpu_speed, toy_motion_steering, toy_quality
from comfyui_tmd.benchmarks import toy_shape_stats, toy_word_sensitivity
from comfyui_tmd.toy import cli
from comfyui_tmd.training import encode_prompts, export, make_data, memory, memory_check, smoke, toy_world, train

# command: (its main, the argv before --help, one option whose default --help must show)
COMMANDS = {
    "generate": (cli.main, ["generate"], "(default: 16)"),
    "training.toy_world": (toy_world.main, [], "(default: runs/toy)"),
    "training.train": (train.main, [], "(default: [])"),
    "training.make_data": (make_data.main, [], "(default: 100)"),
    "training.encode_prompts": (encode_prompts.main, [], "(default: $COMFYUI_PATH)"),
    "training.export": (export.main, [], "(default: bf16)"),
    "training.smoke": (smoke.main, [], "(default: 16,2,8,8)"),
    "training.memory_check": (memory_check.main, [], "(default: 128,256)"),
    "benchmarks.toy_quality": (toy_quality.main, [], "(default: runs/benchmarks/toy_quality)"),
    "benchmarks.toy_motion_steering": (toy_motion_steering.main, [], "(default: runs/benchmarks/toy_motion_steering)"),
    "benchmarks.toy_word_sensitivity": (toy_word_sensitivity.main, [], "(default: 4)"),
    "benchmarks.toy_shape_stats": (toy_shape_stats.main, [], "(default: runs/benchmarks/toy_shape_stats)"),
    "benchmarks.gpu_speed": (gpu_speed.main, [], "(default: 1.3b)"),
    "benchmarks.cpu_speed": (cpu_speed.main, [], "(default: 256)"),
    "benchmarks.comfy_overhead": (comfy_overhead.main, [], "(default: small)"),
}


def help_text(main, argv, capsys) -> str:
    with pytest.raises(SystemExit) as exit_:
        main([*argv, "--help"])
    assert exit_.value.code == 0
    return " ".join(capsys.readouterr().out.split())  # argparse wraps lines


@pytest.mark.parametrize("command", COMMANDS)
def test_help_shows_defaults(command, capsys):
    main, argv, default = COMMANDS[command]
    assert default in help_text(main, argv, capsys)


def test_memory_help_is_help_not_the_table(capsys):
    text = help_text(memory.main, [], capsys)
    assert text.startswith("usage:") and "estimated memory per GPU" in text and "| config |" not in text


@pytest.mark.parametrize("module", ["comfyui_tmd.training.export", "comfyui_tmd.training.train"])
def test_python_dash_m_runs_the_command_module_once(module):
    """Importing the package must not import the command's module first (runpy then warns that it may
    behave unpredictably, and the user sees a RuntimeWarning before the help)."""
    done = subprocess.run([sys.executable, "-W", "error::RuntimeWarning", "-m", module, "--help"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and "RuntimeWarning" not in done.stderr, done.stderr
