"""What a new user trips over (issue: "What a new user trips over"), one test per finding."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
from click.testing import CliRunner

from mabcq_bench.runs import execute, plan
from mabcq_bench.runs.protocol import load_protocol
from mabcq_bench.cli import main
from mabcq_bench.report.leaderboard import write_leaderboard
from mabcq_bench.report.records import unfinished_runs

from test_leaderboard import assert_png, fake_records, make_record, write_store

REPO = Path(__file__).resolve().parents[1]


def _invoke(args):
    result = CliRunner().invoke(main, args)
    assert "Traceback" not in result.output
    return result


# 1. the published leaderboard is never overwritten by a user's own table


def test_leaderboard_writes_beside_the_results_by_default(tmp_path, monkeypatch):
    store = write_store(tmp_path / "runs", fake_records())
    monkeypatch.chdir(tmp_path)
    (tmp_path / "leaderboard").mkdir()
    (tmp_path / "leaderboard" / "lite.md").write_text("published")
    result = _invoke(["leaderboard", "--results", str(store)])
    assert result.exit_code == 0, result.output
    assert (store / "leaderboard" / "lite.md").exists()
    assert (tmp_path / "leaderboard" / "lite.md").read_text() == "published"
    assert result.output.strip().endswith(f"the tables and plots are in {store / 'leaderboard'}/")


# 2. unfinished runs are skipped and counted; a failed run leaves no lock; the message says what to do


def test_unfinished_runs_are_skipped_and_counted(tmp_path):
    store = write_store(tmp_path / "runs", fake_records())
    cell = store / "lite" / "hopper" / "bcq"
    (cell / "seed7.ckpt.json").write_text('{"updates": 3}')
    (cell / "seed7.ckpt").write_bytes(b"state")
    (cell / "seed7.lock").write_text("")
    assert unfinished_runs(store) == [cell / "seed7.ckpt.json"]
    result = _invoke(["leaderboard", "--results", str(store), "--out", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    assert result.output.startswith("skipping 1 unfinished run(s) without a record") and "rerun `mabcq-bench run`" in result.output


def test_a_failed_run_keeps_its_checkpoint_but_not_its_lock_and_says_what_to_do(store, monkeypatch):
    import mabcq_bench.runs.learn as learn

    (run,) = plan.prepare([plan.RunSpec("tiny", "hopper", "bcq", 0)], load_protocol("tiny"), "tiny")
    original = learn.train_seeds

    def crash_after_a_checkpoint(*args, on_update=None, **kwargs):
        def hook(done, metrics):
            if on_update[0]:
                on_update[0](done, metrics)
            if done == 4:
                raise RuntimeError("diverged (NaN loss)")

        return original(*args, on_update=[hook], **kwargs)

    monkeypatch.setattr(learn, "train_seeds", crash_after_a_checkpoint)
    with pytest.raises(RuntimeError):
        execute.execute(run, store["results"])
    assert run.spec.checkpoint_path(store["results"]).exists()
    assert not run.spec.checkpoint_path(store["results"]).with_suffix(".lock").exists()

    from mabcq_bench.cli import runs as cli

    class Sweep:  # what run_sweep returns when a run failed in a worker
        records, skipped, failures, wall_s, busy = [], 0, {"hopper/bcq/seed0": "RuntimeError: diverged (NaN loss)"}, 1.0, {}

    monkeypatch.setattr(cli, "_sweep", lambda *a, **k: (Sweep(), load_protocol("tiny")))
    result = _invoke(["run", "--algo", "bcq", "--preset", "tiny", "--results", str(store["results"])])
    assert result.exit_code == 1 and "hopper/bcq/seed0: RuntimeError: diverged (NaN loss)" in result.output
    assert "Rerun the same command to resume them from their checkpoints, or delete their seed<k>.ckpt* files" in result.output


# 3. --set is checked before any run starts; an override that changes nothing is not applied


@pytest.mark.parametrize(
    "setting, message",
    [
        ("epsilon=abc", "mabcq: epsilon must be a number, got 'abc'"),
        ("epsilon=-3", "mabcq: epsilon must be in [0, 1], got -3"),
        ("use_tn=maybe", "mabcq: use_tn must be true or false, got 'maybe'"),
        ("vd_terminal=sometimes", "mabcq: vd_terminal must be one of mask, one"),
        ("lr_q=0", "mabcq: lr_q must be positive"),
        ("hidden=[64,0]", "mabcq: hidden must be a list of positive integers"),
    ],
)
def test_bad_set_values_are_one_line_before_any_run(store, setting, message):
    result = _invoke(["run", "--algo", "mabcq", "--env", "hopper", "--preset", "tiny", "--results", str(store["results"]), "--set", setting])
    assert result.exit_code == 1 and message in result.output
    assert len(result.output.strip().splitlines()) == 1
    assert not store["results"].exists()  # nothing started


def test_an_override_without_effect_is_not_applied_and_said(store):
    result = _invoke(["run", "--algo", "mabcq,bcq", "--env", "hopper", "--preset", "tiny", "--results", str(store["results"]), "--set", "epsilon=0.3", "--no-progress"])
    assert result.exit_code == 0, result.output
    assert "--set epsilon does not change bcq: its runs are made without it" in result.output
    variants = sorted(p.name for p in (store["results"] / "tiny-p2" / "hopper").iterdir())
    assert variants == ["bcq", "mabcq_epsilon=0.3"]  # folder of the variant "mabcq epsilon=0.3"


# 4. a file where a folder is expected


@pytest.mark.parametrize("command", [["run", "--algo", "bcq", "--preset", "tiny", "--results"], ["leaderboard", "--results"], ["leaderboard", "--results", "RUNS", "--out"]])
def test_a_file_where_a_folder_is_expected_is_one_line(store, tmp_path, command):
    runs = write_store(tmp_path / "runs", fake_records())
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    args = [str(runs) if a == "RUNS" else a for a in command] + [str(blocker)]
    result = _invoke(args)
    assert result.exit_code == 1 and "is a file" in result.output, result.output
    assert len(result.output.strip().splitlines()) == 1


# 5. without a terminal, one line per finished run


def test_a_sweep_without_a_terminal_prints_a_line_per_run(store):
    result = _invoke(["run", "--algo", "bcq", "--env", "hopper", "--preset", "tiny", "--seeds", "2", "--results", str(store["results"]), "--workers", "1"])
    assert result.exit_code == 0, result.output
    lines = [line for line in result.output.splitlines() if line.startswith("[")]
    assert len(lines) == 2
    assert lines[0].startswith("[1/2] hopper/bcq/seed") and "score" in lines[0] and "1 left, ETA" in lines[0]
    assert lines[1].startswith("[2/2] ") and lines[1].endswith("0 left")


# 6. what a researcher looks for


def test_csv_has_numeric_columns(tmp_path):
    out = tmp_path / "out"
    write_leaderboard(fake_records(), out, reps=100)
    with open(out / "lite.csv", encoding="utf-8", newline="") as fh:
        rows = list(csv.DictReader(fh))
    mabcq = next(r for r in rows if r["variant"] == "mabcq")
    assert float(mabcq["walker_mean"]) == 80.0 and float(mabcq["walker_std"]) == 10.0 and int(mabcq["walker_n"]) == 3
    assert float(mabcq["iqm_low"]) <= float(mabcq["iqm"]) <= float(mabcq["iqm_high"])
    behavior = next(r for r in rows if r["variant"] == "behavior")
    assert behavior["coordination_gap"] == ""


def test_training_metrics_and_ablations_get_their_own_figures(tmp_path):
    records = fake_records()
    for r in records:
        r["metrics"] = [{"update": 50, "values/q_mean": 1.0, "losses/q": 2.0}, {"update": 100, "values/q_mean": 2.0, "losses/q": 1.0}]
    records += [make_record("hopper", "mabcq-no-tn", s, 45.0, 2.0, algo="mabcq", eps=0.8) for s in range(2)]
    written = write_leaderboard(records, tmp_path, reps=100)
    names = [p.name for p in written]
    assert "lite-training.png" in names and "lite-ablations.png" in names
    for name in names[3:]:
        assert_png(tmp_path / name)


def test_license_citation_and_the_papers_reference():
    assert "MIT License" in (REPO / "LICENSE").read_text()
    cff = (REPO / "CITATION.cff").read_text()
    assert "cff-version:" in cff and "Offline Decentralized Multi-Agent Reinforcement Learning" in cff
    readme = (REPO / "README.md").read_text()
    assert "Jiang & Lu" in readme and "CITATION.cff" in readme


def test_the_algorithm_snippet_imports_what_it_registers():
    page = (REPO / "docs" / "adding-an-algorithm.md").read_text()
    snippet = page[page.index("# mabcq_bench/algos/__init__.py"):]
    snippet = snippet[: snippet.index("```")]
    assert "from mabcq_bench.algos.mlp_bc import BC, BCConfig" in snippet and "\"mlp-bc\": AlgoSpec(\"mlp-bc\", BC, BCConfig" in snippet


def test_every_task_with_missing_datasets_is_named(store):
    result = _invoke(["run", "--algo", "bcq", "--env", "walker,hopper,ant", "--preset", "tiny", "--results", str(store["results"])])
    assert result.exit_code == 1
    assert "the tiny datasets of walker, ant are missing; make them with `mabcq-bench make-data --env walker,ant --preset tiny`" in result.output


def test_regress_progress_has_help():
    result = _invoke(["regress", "--help"])
    assert "--progress / --no-progress" in result.output and "Progress bars on a terminal" in result.output
