"""The score regression check, from fixed fake run records (no training)."""

from __future__ import annotations

import copy
import json

import pytest

from mabcq_bench.errors import UserError
from mabcq_bench.report.regress import compare, load_reference, reference_from_records, write_reference


def make_record(task, algo, seed, score, fingerprint="f" * 16, tier="smoke"):
    """A finished schema-1 run record with the fields the regression check reads."""
    return {
        "schema": 1,
        "status": "finished",
        "tier": tier,
        "task": task,
        "algo": algo,
        "variant": algo,
        "epsilon": None,
        "seed": seed,
        "config_fingerprint": fingerprint,
        "final": {"returns": [score], "return_mean": score, "normalized_score": score, "coordination_gap": None},
        "curve": [{"updates": 10, "normalized_score": score, "coordination_gap": None}],
        "metrics": [{"update": 5, "values/q_mean": 0.0}, {"update": 10, "values/q_mean": score / 2, "losses/q": 1.0, "weights/lambda_vd_min": seed}],
    }


SCORES = {("hopper", "mabcq"): [12.0, 14.0], ("hopper", "bcq"): [8.0, 9.0]}


def records(drop=()):
    return [
        make_record(task, algo, seed, score)
        for (task, algo), scores in SCORES.items()
        for seed, score in enumerate(scores)
        if (task, algo, seed) not in drop
    ]


def reference():
    return reference_from_records(records(), "smoke", ["hopper"], ["mabcq", "bcq"], [0, 1], 10.0, "spread seen between runs")


def status_of(table: str, key: str) -> str:
    return next(line.split()[-1] for line in table.splitlines() if line.startswith(key + " "))


def test_reference_round_trip(tmp_path):
    ref = reference()
    assert ref["scores"] == {"hopper/mabcq": 13.0, "hopper/bcq": 8.5}
    assert ref["tolerance"] == 10.0 and ref["seeds"] == [0, 1] and ref["tier"] == "smoke"
    path = write_reference(tmp_path / "leaderboard" / "regress-reference.json", ref)
    assert load_reference(path) == ref
    assert [p.name for p in path.parent.iterdir()] == ["regress-reference.json"]  # atomic, no temp left


def test_compare_passes_on_the_same_records():
    table, ok = compare(reference(), records(), {})
    assert ok
    assert status_of(table, "hopper/mabcq") == "ok" and status_of(table, "hopper/bcq") == "ok"
    assert table.splitlines()[0].split() == ["task/algo", "reference", "now", "delta", "worst", "metric", "status"]
    assert table.splitlines()[2].split() == ["hopper/mabcq", "13.0", "13.0", "+0.0", "–", "ok"]


def test_reference_holds_the_final_training_metrics_and_a_moved_metric_fails():
    ref = reference_from_records(records(), "smoke", ["hopper"], ["mabcq", "bcq"], [0, 1], 10.0, "", metric_tolerance=0.01)
    # the last interval's gate metrics, mean over seeds; extremes like lambda_vd_min are not gated
    assert ref["metrics"] == {"hopper/mabcq": {"values/q_mean": 6.5, "losses/q": 1.0}, "hopper/bcq": {"values/q_mean": 4.25, "losses/q": 1.0}}
    table, ok = compare(ref, records(), {})
    assert ok and status_of(table, "hopper/mabcq") == "ok" and "q_mean 0.00%" in table
    ref["metrics"]["hopper/bcq"]["losses/q"] = 1.0 / 1.02  # the runs' loss is now 2 % off: beyond 1 %
    table, ok = compare(ref, records(), {})
    assert not ok and status_of(table, "hopper/bcq") == "METRIC" and status_of(table, "hopper/mabcq") == "ok"
    assert "hopper/bcq METRIC: losses/q is 1, the reference's 0.980392 (2.00% off, tolerance 1.00%)" in table
    ref["metrics"]["hopper/bcq"]["losses/q"] = 1.0 / 1.009  # within 1 %
    assert compare(ref, records(), {})[1]
    ref["metrics"]["hopper/bcq"]["values/target_mean"] = 1.0  # a metric the runs no longer log
    table, ok = compare(ref, records(), {})
    assert not ok and "values/target_mean is nan" in table
    ref["metric_tolerance"] = "tight"
    with pytest.raises(UserError, match="metric_tolerance"):
        compare(ref, records(), {})


def test_compare_flags_drift_beyond_the_tolerance():
    ref = reference()
    ref["scores"]["hopper/bcq"] += 9.5  # within ±10: still ok
    ref["scores"]["hopper/mabcq"] -= 25.0
    table, ok = compare(ref, records(), {})
    assert not ok
    assert status_of(table, "hopper/mabcq") == "DRIFT" and status_of(table, "hopper/bcq") == "ok"
    assert "+25.0" in table


def test_compare_reports_failed_and_missing_runs():
    failures = {"hopper/bcq": "CUDA error: out of memory", "walker/mabcq": "diverged (NaN loss)"}
    table, ok = compare(reference(), records(drop={("hopper", "bcq", 0), ("hopper", "bcq", 1)}), failures)
    assert not ok
    assert status_of(table, "hopper/bcq") == "FAILED" and status_of(table, "walker/mabcq") == "FAILED"
    assert "hopper/bcq FAILED: CUDA error: out of memory" in table
    assert status_of(table, "hopper/mabcq") == "ok"

    table, ok = compare(reference(), records(drop={("hopper", "mabcq", 1)}), {})
    assert not ok and status_of(table, "hopper/mabcq") == "MISSING"
    assert "seed(s) [0] of [0, 1]" in table

    table, ok = compare(reference(), [], {})
    assert not ok and status_of(table, "hopper/bcq") == "MISSING"


def test_compare_notes_a_changed_configuration():
    ref = reference()
    ref["fingerprints"]["hopper/mabcq"] = "0" * 16
    table, ok = compare(ref, records(), {})
    assert ok and f"differs from the reference's {'0' * 16}" in table


def test_reference_needs_every_seed_and_one_configuration():
    with pytest.raises(UserError, match="hopper/bcq for seed\\(s\\) 1"):
        reference_from_records(records(drop={("hopper", "bcq", 1)}), "smoke", ["hopper"], ["mabcq", "bcq"], [0, 1], 10.0, "")
    mixed = records() + [make_record("hopper", "bcq", 2, 1.0, fingerprint="e" * 16)]
    with pytest.raises(UserError, match="e{16}"):
        compare(reference(), mixed, {})


def test_load_reference_rejects_bad_files(tmp_path):
    with pytest.raises(UserError, match="not found"):
        load_reference(tmp_path / "none.json")
    bad = tmp_path / "bad.json"
    bad.write_text('{"tier": "smoke",')
    with pytest.raises(UserError, match="not valid JSON"):
        load_reference(bad)
    ref = reference()
    del ref["tolerance"]
    bad.write_text(json.dumps(ref))
    with pytest.raises(UserError, match="lacks required keys tolerance"):
        load_reference(bad)
    ref = copy.deepcopy(reference())
    ref["scores"]["hopper/bcq"] = "high"
    bad.write_text(json.dumps(ref))
    with pytest.raises(UserError, match="hopper/bcq"):
        load_reference(bad)


def test_regress_finds_the_committed_reference_from_any_folder(tmp_path, monkeypatch):
    from pathlib import Path

    from click.testing import CliRunner

    from mabcq_bench.cli import main
    from mabcq_bench.data import datasets
    from mabcq_bench.report import regress

    committed = Path(__file__).resolve().parents[1] / "leaderboard" / "regress-reference.json"
    read, load = [], regress.load_reference

    def note_the_path(path):
        read.append(Path(path))
        return load(path)

    def stop(*args, **kwargs):  # the sweep is not what is tested
        raise UserError("stopped before making the datasets")

    monkeypatch.setattr(regress, "load_reference", note_the_path)
    monkeypatch.setattr(datasets, "make_data", stop)
    monkeypatch.chdir(tmp_path)  # outside the repository
    result = CliRunner().invoke(main, ["regress", "--no-progress"])
    assert result.exit_code == 1 and "stopped before making the datasets" in result.output, result.output
    (tmp_path / "mine.json").write_text(committed.read_text())
    result = CliRunner().invoke(main, ["regress", "--no-progress", "--reference", "mine.json"])  # a path is still taken
    assert result.exit_code == 1 and "stopped before making the datasets" in result.output, result.output
    assert read == [committed, Path("mine.json")]
