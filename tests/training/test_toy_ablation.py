# SPDX-License-Identifier: Apache-2.0
"""The toy ablation at a tiny budget (2 iterations a stage, 4 clips a row, on a random tiny teacher: mechanics,
no quality claims): a stage that rows share is trained once, a run stopped after its first stage and one
killed inside a stage continue where they stopped, a finished ablation is reused whole, and the report's
table, JSON and plot hold every row with 95 % intervals."""
import contextlib
import io
import json

import pytest

from comfyui_tmd.benchmarks.output import BenchmarkOutputError
from comfyui_tmd.tmd_core import WAN_TINY, save_wan
from comfyui_tmd.tmd_core.command_line import run_command
from comfyui_tmd.tmd_core.errors import CheckpointError
from comfyui_tmd.training import ablation_rows, toy_ablation, toy_world
from comfyui_tmd.training.ablation_runs import Setting, plan_runs
from comfyui_tmd.training.errors import TrainingConfigError

from factories import random_wan

ROWS = "tmd,gan0,euler-1"  # gan0 changes stage 2 only, so it shares the default's stage 1


class SpyTrainer(toy_world.Trainer):
    """The real trainer, recording each one made and where it resumed; `interrupt_after` kills a run (Ctrl-C)
    once after that iteration."""

    made: list = []
    interrupt_after: int | None = None

    def __init__(self, config, stage, out):
        super().__init__(config, stage=stage, out=out)
        SpyTrainer.made.append(self)

    def resume(self):
        self.resumed_at = super().resume()
        return self.resumed_at

    def run(self, until=None):
        if SpyTrainer.interrupt_after is not None:
            super().run(until=SpyTrainer.interrupt_after)
            SpyTrainer.interrupt_after = None
            raise KeyboardInterrupt
        return super().run(until)


def run_ablation(argv: list[str]):
    """(main's return, its stdout, the trainers it made)."""
    SpyTrainer.made = []
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        result = toy_ablation.main(argv)
    return result, out.getvalue(), SpyTrainer.made


@pytest.fixture(scope="module")
def ablation(tmp_path_factory):
    """Four sessions of one ablation: stopped after one run, killed inside the next, finished, then rerun."""
    folder = tmp_path_factory.mktemp("ablation")
    teacher = folder / "teacher.safetensors"
    save_wan(random_wan(WAN_TINY, seed=1), teacher)
    argv = ["--out", str(folder / "out"), "--teacher", str(teacher), "--rows", ROWS, "--budget-scale", "0.004",
            "--train-clips", "64", "--clips", "4", "--prompts", "2"]
    sessions = {}
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(toy_world, "Trainer", SpyTrainer)
        patch.setattr(toy_ablation, "DOCS", folder / "docs")
        sessions["stopped"] = run_ablation([*argv, "--stop-after", "1"])
        sessions["stopped_wrote"] = sorted(p.name for p in (folder / "out").iterdir())
        SpyTrainer.interrupt_after = 1
        with pytest.raises(KeyboardInterrupt):
            run_ablation(argv)
        sessions["killed"] = (None, "", SpyTrainer.made)
        sessions["finished"] = run_ablation(argv)
        patch.setattr(toy_ablation, "evaluate", lambda *_: pytest.fail("a finished row was measured again"))
        sessions["again"] = run_ablation([*argv, "--docs"])
    return {"folder": folder, "argv": argv, **sessions}


def test_stop_after_one_run_trains_the_shared_stage_1_and_writes_no_report(ablation):
    result, printed, made = ablation["stopped"]
    assert result is None and [t.algo.stage for t in made] == ["1"] and made[0].iteration == 2
    assert "stopped after 1 training run(s)" in printed
    assert [name for name in ablation["stopped_wrote"] if not name.startswith(("data-", "runs"))] == []


def test_a_killed_stage_continues_from_its_checkpoint_and_finished_stages_are_not_redone(ablation):
    _, _, killed = ablation["killed"]
    assert [t.algo.stage for t in killed] == ["2"] and killed[0].iteration == 1
    _, printed, made = ablation["finished"]
    assert [t.algo.stage for t in made] == ["2", "2"]  # stage 1 was trained once, in the first session
    assert made[0].out == killed[0].out and made[0].resumed_at == 1 and "continuing after iteration 1" in printed
    assert made[1].out != made[0].out and made[1].resumed_at == 0
    stage1 = ablation["finished"][0]["runs"][0]
    assert stage1["stage"] == "1" and stage1["rows"] == ["tmd", "gan0"]
    assert "finished earlier, reusing" in printed and stage1["folder"] in printed
    for trainer in made:  # both stage-2 runs start from that one stage-1 export
        assert trainer.config.model.init_student.endswith(f"{stage1['folder']}/export")
    assert [t.config.stage2.gan_weight for t in made] == [0.03, 0.0]


def test_a_finished_ablation_is_reused_whole(ablation):
    report, printed, made = ablation["again"]
    assert made == [] and printed.count("measured earlier, reusing") == 4
    assert report["results"] == json.loads(json.dumps(ablation["finished"][0]["results"]))  # as saved


def test_report_has_every_row_with_intervals_in_table_json_and_plot(ablation):
    report = ablation["finished"][0]
    results = report["results"]
    assert [r.get("row") for r in results] == [None, "tmd", "gan0", "euler-1"]
    assert [r["nfe"] for r in results] == [0.0, 2.5, 2.5, 2.0]  # TMD N2H1 on 4 blocks; Euler 1 step with CFG
    for r in results:
        assert r["clips"] == 4
        for name, rate in r["adherence"].items():
            low, high = r["adherence_95"][name]
            assert 0.0 <= low <= rate <= high <= 1.0 and high - low > 0.3  # 4 clips cannot pin a rate down
    out = ablation["folder"] / "out"
    table = (out / "ablation.md").read_text()
    assert all(r["method"] in table for r in results) and "stage1-" in table
    assert json.loads((out / "ablation.json").read_text()) == json.loads(json.dumps(ablation["again"][0]))
    assert (out / "ablation.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_docs_are_written_once_and_replaced_only_with_force(ablation, monkeypatch, capsys):
    docs = ablation["folder"] / "docs"
    assert sorted(p.name for p in docs.iterdir()) == ["toy-ablation.json", "toy-ablation.md", "toy-ablation.png"]
    assert "![prompt adherence per row" in (docs / "toy-ablation.md").read_text()
    monkeypatch.setattr(toy_ablation, "DOCS", docs)
    with pytest.raises(BenchmarkOutputError, match="is a published result in .*docs/; pass --force"):
        toy_ablation.parse_args([*ablation["argv"], "--docs"])
    assert toy_ablation.parse_args([*ablation["argv"], "--docs", "--force"]).force


def test_every_row_plans_its_stages_and_rows_share_what_they_agree_on(tmp_path):
    setting = Setting(tmp_path / "teacher.safetensors", "0" * 16, ["shards"], 64, 1.0, tmp_path / "runs")
    runs, chains = plan_runs(list(ablation_rows.ROWS), setting)
    assert [sum(run.stage == stage for run in runs) for stage in ("1", "2", "dmd2v")] == [6, 10, 3]
    shared = chains["tmd"][0]
    assert shared.rows == ["tmd", "grad-last", "gan0", "ema"]
    assert chains["n4"][0] is not shared and chains["no-stage1"][0].stage == "2" and chains["euler-1"] == []
    final = {name: chain[-1].config for name, chain in chains.items() if chain}
    assert final["n4"].model.inner_steps == 4 and final["h2"].model.head_blocks == 2
    assert final["grad-last"].stage2.rollout_grad == "last" and final["ema"].stage2.optim.ema_decay == 0.95
    assert final["no-stage1"].model.init_student is None and final["dmd2v-4"].model.outer_steps == 4
    assert final["tmd"].run.iterations == toy_world.load_plan(toy_world.CONFIG)["2"]["iterations"]
    # keys follow content, not paths: another folder and teacher path with the same digest give the same runs
    moved = Setting(tmp_path / "elsewhere.safetensors", "0" * 16, ["other"], 64, 1.0, tmp_path / "moved")
    assert [run.key for run in plan_runs(list(ablation_rows.ROWS), moved)[0]] == [run.key for run in runs]
    for changed in (Setting(setting.teacher, "1" * 16, ["shards"], 64, 1.0, setting.folder),
                    Setting(setting.teacher, "0" * 16, ["shards"], 64, 0.5, setting.folder)):
        assert not {run.key for run in plan_runs(list(ablation_rows.ROWS), changed)[0]} & {run.key for run in runs}


@pytest.mark.parametrize("argv, message", [
    (["--rows", "tmd,n3"], "--rows names unknown row 'n3'; the rows are tmd, n1,"),
    (["--clips", "250"], "--clips 250 must be a multiple of --prompts 16 with at least 2 seeds a prompt"),
    (["--clips", "16"], "--clips 16 must be a multiple of --prompts 16 with at least 2 seeds a prompt"),
    (["--budget-scale", "0"], "--budget-scale 0 must be above 0"),
])
def test_bad_arguments_get_one_sentence_before_any_work(tmp_path, capsys, argv, message):
    assert run_command(toy_ablation.main, ["--out", str(tmp_path / "out"), *argv]) == 2
    assert message in capsys.readouterr().err and not (tmp_path / "out").exists()


def test_missing_teacher_is_named(tmp_path):
    with pytest.raises(CheckpointError, match="teacher.safetensors does not exist"):
        toy_ablation.main(["--out", str(tmp_path / "out"), "--teacher", str(tmp_path / "teacher.safetensors")])


def test_help_shows_defaults(capsys):
    with pytest.raises(SystemExit) as exit_:
        toy_ablation.main(["--help"])
    assert exit_.value.code == 0 and "(default: 256)" in " ".join(capsys.readouterr().out.split())


def test_unknown_row_is_refused_by_select_rows():
    with pytest.raises(TrainingConfigError, match="unknown row ''"):
        ablation_rows.select_rows([])
