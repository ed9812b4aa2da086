# SPDX-License-Identifier: Apache-2.0
"""The toy world's stages, their order, iteration counts and starting points come from the `plan` of
training/configs/toy.yaml and nowhere else; the trainer's config loader skips that section."""
import pytest
import yaml

from comfyui_tmd.training import toy_world
from comfyui_tmd.training.config import load_config
from comfyui_tmd.training.errors import TrainingConfigError


@pytest.fixture
def planned(tmp_path, monkeypatch):
    """A copy of toy.yaml with a different plan, made the pipeline's config."""
    values = yaml.safe_load(toy_world.CONFIG.read_text())
    values["plan"] = {"fm": {"iterations": 7, "init_from": None}, "2": {"iterations": 40, "init_from": "fm"}}
    path = tmp_path / "toy.yaml"
    path.write_text(yaml.safe_dump(values, sort_keys=False))
    monkeypatch.setattr(toy_world, "CONFIG", path)
    return path


class RecordingTrainer:
    runs = []

    def __init__(self, config, stage, out):
        self.config, self.stage, self.out, self.iteration = config, stage, out, 0
        RecordingTrainer.runs.append(self)

    def resume(self):
        pass

    def run(self):
        return self.out / "export"


def test_the_shipped_plan_runs_teacher_then_student_then_baseline():
    plan = toy_world.load_plan(toy_world.CONFIG)
    assert list(plan) == ["fm", "1", "2", "dmd2v"]
    assert plan["2"]["init_from"] == "1" and all(step["iterations"] >= 1 for step in plan.values())
    assert load_config(toy_world.CONFIG).run.iterations >= 1  # the plan is no training setting


def test_pipeline_reads_stages_and_iterations_from_the_yaml(planned, tmp_path, monkeypatch):
    monkeypatch.setattr(toy_world, "Trainer", RecordingTrainer)
    monkeypatch.setattr(toy_world, "make_data", lambda folder, count: ["shards"])
    RecordingTrainer.runs.clear()
    toy_world.main(["--out", str(tmp_path / "run"), "--scale", "0.5"])
    assert [(r.stage, r.config.run.iterations) for r in RecordingTrainer.runs] == [("fm", 4), ("2", 20)]
    assert RecordingTrainer.runs[1].config.model.init_student == str(tmp_path / "run" / "fm" / "export")


def test_stage_outside_the_plan_is_refused(planned, tmp_path):
    with pytest.raises(TrainingConfigError, match="names unknown stage '1'; the stages are fm, 2."):
        toy_world.parse_args(["--out", str(tmp_path / "run"), "--stages", "1"])


def test_plan_without_iterations_is_refused(tmp_path):
    path = tmp_path / "toy.yaml"
    path.write_text(yaml.safe_dump({"plan": {"fm": {"init_from": None}}}))
    with pytest.raises(TrainingConfigError, match="plan.fm needs a whole number of iterations"):
        toy_world.load_plan(path)
