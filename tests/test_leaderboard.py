"""Leaderboard tables and plots from fixed fake run records (no training)."""

from __future__ import annotations

import csv
import hashlib
import json
import os
from pathlib import Path

import pytest

from mabcq_bench.errors import UserError
from mabcq_bench.report.leaderboard import write_leaderboard
from mabcq_bench.report.records import TASK_ORDER, load_records
from mabcq_bench.report.tables import LONG_COLUMNS, build_tables, epsilon_points, format_markdown, format_table

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def make_record(task, variant, seed, score, gap, *, algo=None, eps=None, tier="lite", fingerprint=None):
    """A finished schema-1 run record; its curve rises from 0.2*score to score (gap falls)."""
    algo = algo or variant.split()[0]
    fingerprint = fingerprint or hashlib.sha256(f"{tier}/{task}/{variant}".encode()).hexdigest()[:16]
    return {
        "schema": 1,
        "status": "finished",
        "tier": tier,
        "task": task,
        "algo": algo,
        "variant": variant,
        "epsilon": eps,
        "seed": seed,
        "config_fingerprint": fingerprint,
        "config": {},
        "versions": {},
        "datasets": [{"id": f"mabcq/{task}/{tier}-agent0-v0", "checksum": "0" * 64}],
        "ref_min_score": 0.0,
        "ref_max_score": 1000.0,
        "final": {"returns": [10.0 * score], "return_mean": 10.0 * score, "normalized_score": score, "coordination_gap": gap},
        "curve": [
            {"updates": u, "return_mean": 10.0 * score * f, "normalized_score": score * f, "coordination_gap": None if gap is None else gap / f}
            for u, f in ((0, 0.2), (50, 0.6), (100, 1.0))
        ],
        "updates": 100,
        "wall_s": 1.0,
    }


# variant -> task -> [(score, gap) per seed]; the expected cells are worked out in the tests.
FAKE = {
    ("mabcq", "mabcq", 0.8): {"hopper": [(40, 1.0), (50, 2.0), (60, 3.0)], "walker": [(70, 4.0), (80, 4.0), (90, 4.0)]},
    ("bcq", "bcq", None): {"hopper": [(20, 0.5), (30, 0.5), (40, 0.5)], "walker": [(10, 1.5), (10, 1.5), (10, 1.5)]},
    ("behavior", "behavior", None): {"hopper": [(5, None)], "walker": [(15, None)]},
    ("mabcq eps=0.4", "mabcq", 0.4): {"hopper": [(30, 2.0), (50, 2.0)]},
}


def fake_records(with_eps_sweep=True):
    return [
        make_record(task, variant, seed, float(score), gap, algo=algo, eps=eps)
        for (variant, algo, eps), tasks in FAKE.items()
        if with_eps_sweep or variant != "mabcq eps=0.4"
        for task, runs in tasks.items()
        for seed, (score, gap) in enumerate(runs)
    ]


def write_store(root: Path, records) -> Path:
    for rec in records:
        path = root / rec["tier"] / rec["task"] / rec["variant"] / f"seed{rec['seed']}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(rec))
    return root


def assert_png(path: Path):
    data = path.read_bytes()
    assert data.startswith(PNG_MAGIC) and data.endswith(b"IEND\xaeB`\x82") and len(data) > 2000, path


def test_task_order_is_the_registry_order():
    from mabcq_bench.data.tasks import TASKS

    assert TASK_ORDER == tuple(TASKS)


def test_tables_cells_and_row_order():
    board = build_tables(fake_records(), "lite", reps=300)
    assert board.tasks == ["walker", "hopper"]  # the fixed order, not the order seen
    assert [r.variant for r in board.rows] == ["mabcq", "mabcq eps=0.4", "bcq", "behavior"]
    texts = {r.variant: r.texts() for r in board.rows}
    assert texts["mabcq"][:3] == ["mabcq", "80.0 ± 10.0 (3)", "50.0 ± 10.0 (3)"]
    assert texts["mabcq"][3].startswith("65.0 [")  # IQM of 40..90 by 10: mean(50, 60, 70, 80)
    assert texts["mabcq"][4] == "3.00"  # mean over tasks of mean gaps (hopper 2, walker 4)
    assert texts["bcq"][1:3] == ["10.0 ± 0.0 (3)", "30.0 ± 10.0 (3)"]
    assert texts["bcq"][4] == "1.00"
    assert texts["behavior"][1:] == ["15.0 ± 0.0 (1)", "5.0 ± 0.0 (1)", "10.0 [10.0, 10.0]", "–"]
    assert texts["mabcq eps=0.4"][1:3] == ["–", "40.0 ± 14.1 (2)"]
    assert texts["mabcq eps=0.4"][3] == "40.0 [30.0, 50.0] *"  # fewer tasks than the table
    assert texts["mabcq eps=0.4"][4].endswith(" *")  # so is its gap: a mean over hopper only
    assert not board.rows[1].complete and board.rows[0].complete

    text = format_table(board)
    assert text == format_table(board.rows)
    lines = text.splitlines()
    assert lines[0].split() == ["variant", "walker", "hopper", "IQM", "[low,", "high]", "coord.", "gap"]
    assert [line.split()[0] for line in lines[2:]] == ["mabcq", "mabcq", "bcq", "behavior"]
    assert "80.0 ± 10.0 (3)" in lines[2] and "40.0 ± 14.1 (2)" in lines[3]


def test_a_cell_at_a_budget_where_its_learner_had_not_plateaued_is_marked_and_explained():
    """A learner still moving at the longest budget the study measured runs that budget: its cell
    says so (†), and so do the page's and the README block's notes; other cells are unmarked."""
    from mabcq_bench.report.readme import render_block

    records = fake_records(with_eps_sweep=False)
    for rec in records:
        rec["budget"] = {"updates": 100, "from": f"protocol.budgets.{rec['algo']}.{rec['task']}", "plateaued": rec["algo"] != "bcq"}
    board = build_tables(records, "lite", reps=300)
    texts = {r.variant: r.texts() for r in board.rows}
    assert texts["bcq"][1:3] == ["10.0 ± 0.0 (3) †", "30.0 ± 10.0 (3) †"]
    assert texts["mabcq"][1:3] == ["80.0 ± 10.0 (3)", "50.0 ± 10.0 (3)"]
    note = "`†`: the learner's score or Q̂ had not stopped moving at the longest budget the budget study measured for it"
    assert note in format_markdown(board) and note in render_block(board, "leaderboard/lite.md")[-1]
    unmarked = build_tables(fake_records(with_eps_sweep=False), "lite", reps=300)  # records from before budgets said
    assert "†" not in format_markdown(unmarked) and "†" not in render_block(unmarked, "leaderboard/lite.md")[-1]


def test_a_cell_trained_on_a_gpu_is_marked_and_explained():
    """A (task, algorithm) whose seeds a GPU session trained (run --device cuda) says so (‡) on the
    page and in the README block; CPU cells, and records from before a record said its device, do not."""
    from mabcq_bench.report.readme import render_block

    records = fake_records(with_eps_sweep=False)
    for rec in records:
        if rec["algo"] == "mabcq" and rec["task"] == "hopper":
            rec["device"] = "cuda"
        elif rec["algo"] == "bcq":
            rec["device"] = "cpu"
    board = build_tables(records, "lite", reps=300)
    texts = {r.variant: r.texts() for r in board.rows}
    assert texts["mabcq"][1:3] == ["80.0 ± 10.0 (3)", "50.0 ± 10.0 (3) ‡"]  # walker on the CPU, hopper on the GPU
    assert "‡" not in "".join(texts["bcq"] + texts["behavior"])
    note = "`‡`: its runs trained on a GPU (`run --device cuda`)"
    assert note in format_markdown(board) and note in render_block(board, "leaderboard/lite.md")[-1]
    cpu_only = build_tables(fake_records(with_eps_sweep=False), "lite", reps=300)
    assert "‡" not in format_markdown(cpu_only) and "‡" not in render_block(cpu_only, "leaderboard/lite.md")[-1]


def test_write_leaderboard_files(tmp_path):
    store = write_store(tmp_path / "results", fake_records())
    out = tmp_path / "leaderboard"
    written = write_leaderboard(load_records(store), out, reps=300)
    names = ["lite.md", "lite.csv", "lite.long.csv", "lite-curves.png", "lite-profiles.png", "lite-coordination.png", "lite-epsilon.png"]
    assert written == [out / n for n in names]
    assert sorted(p.name for p in out.iterdir()) == sorted(names)  # no temporary files left
    for name in names[3:]:
        assert_png(out / name)

    md = (out / "lite.md").read_text(encoding="utf-8")
    assert "tier `lite`" in md and "0 = random policy, 100 = the expert" in md
    assert "Seeds: 3 (0, 1, 2)" in md and "95% percentile interval" in md and "300 resamples" in md
    table = [line for line in md.splitlines() if line.startswith("|")]
    assert table[0] == "| variant | walker | hopper | IQM [low, high] | coord. gap |"
    assert table[2].startswith("| mabcq | 80.0 ± 10.0 (3) | 50.0 ± 10.0 (3) | 65.0 [") and table[2].endswith("| 3.00 |")
    assert table[5] == "| behavior | 15.0 ± 0.0 (1) | 5.0 ± 0.0 (1) | 10.0 [10.0, 10.0] | – |"
    assert "![lite-epsilon](lite-epsilon.png)" in md and "![lite-profiles](lite-profiles.png)" in md

    with open(out / "lite.csv", encoding="utf-8", newline="") as fh:
        rows = list(csv.reader(fh))
    assert rows[0][:5] == ["variant", "walker", "hopper", "IQM [low, high]", "coord. gap"]
    assert [r[0] for r in rows[1:]] == ["mabcq", "mabcq eps=0.4", "bcq", "behavior"]
    assert rows[3][:3] == ["bcq", "10.0 ± 0.0 (3)", "30.0 ± 10.0 (3)"]

    # Without a second ε there is no ε plot, and the old one is not left behind to mislead.
    written = write_leaderboard(fake_records(with_eps_sweep=False), out, reps=300)
    assert out / "lite-epsilon.png" not in written and not (out / "lite-epsilon.png").exists()


def test_long_csv_round_trips_the_table_cells(tmp_path):
    """Issue 27 (3): ``<board>.long.csv``, a row per variant and task, holds the numbers of the
    table's cells, the bootstrap interval of each mean and the score-window mean."""
    records = fake_records()
    for r in records:  # protocol-2 records carry the score window
        r["window"] = {"evaluations": 2, "from_update": 50, "normalized_score": 0.8 * r["final"]["normalized_score"]}
        r["final"]["episodes"] = 1
    records += [make_record("hopper", "bcq", 0, 25.0, 1.0, tier="lite-long")]
    write_leaderboard(records, tmp_path, reps=300)
    board = build_tables(records, "lite", reps=300)
    try:
        import pandas as pd
    except ImportError:
        pd = None
    if pd is not None:
        frame = pd.read_csv(tmp_path / "lite.long.csv")
        assert list(frame.columns) == list(LONG_COLUMNS)
        rows = frame.to_dict("records")
    else:
        with open(tmp_path / "lite.long.csv", encoding="utf-8", newline="") as fh:
            reader = csv.DictReader(fh)
            assert tuple(reader.fieldnames) == LONG_COLUMNS
            rows = [{k: (v if k in ("variant", "task") else float(v)) for k, v in r.items()} for r in reader]
    cells = [(r.variant, t, c) for r in board.rows for t, c in r.cells.items() if c is not None]
    assert [(r["variant"], r["task"]) for r in rows] == [(v, t) for v, t, _ in cells]  # table order; no row for an empty cell
    for r, (_, _, c) in zip(rows, cells):
        assert r["n"] == c.n and r["mean"] == pytest.approx(c.mean, abs=1e-4) and r["std"] == pytest.approx(c.std, abs=1e-4)
        assert r["ci_low"] <= r["mean"] <= r["ci_high"]
        assert r["window_mean"] == pytest.approx(0.8 * c.mean, abs=1e-4)
    mabcq_walker = next(r for r in rows if (r["variant"], r["task"]) == ("mabcq", "walker"))
    assert (mabcq_walker["n"], mabcq_walker["mean"], mabcq_walker["std"]) == (3, 80.0, 10.0) and mabcq_walker["ci_low"] >= 70.0
    behavior = next(r for r in rows if (r["variant"], r["task"]) == ("behavior", "hopper"))
    assert behavior["ci_low"] == behavior["mean"] == behavior["ci_high"] == 5.0  # one run: no spread to resample
    # the lite-long tier's own csv keeps its name beside lite's long form
    with open(tmp_path / "lite-long.csv", encoding="utf-8", newline="") as fh:
        assert next(csv.reader(fh))[:3] == ["variant", "hopper", "IQM [low, high]"]


def test_epsilon_points_take_the_no_vd_ablation_as_epsilon_zero():
    records = fake_records() + [make_record("hopper", "mabcq-no-vd", s, sc, 1.0, eps=0.8) for s, sc in enumerate((10.0, 20.0, 30.0))]
    board = build_tables(records, "lite", reps=100)
    points = epsilon_points(board, "hopper")
    assert [(e, v) for e, _, _, v in points] == [(0.0, "mabcq-no-vd"), (0.4, "mabcq eps=0.4"), (0.8, "mabcq")]
    assert points[0][1] == pytest.approx(20.0) and points[2][1] == pytest.approx(50.0)
    assert epsilon_points(board, "walker") == [(0.8, 80.0, pytest.approx(10.0), "mabcq")]  # one ε: no sweep there


def test_coordination_plot_skips_algorithms_without_q(tmp_path):
    records = [make_record("ant", "behavior", s, 10.0 + s, None, tier="smoke") for s in range(2)]
    written = write_leaderboard(records, tmp_path, reps=50)
    assert [p.name for p in written] == ["smoke.md", "smoke.csv", "smoke.long.csv", "smoke-curves.png", "smoke-profiles.png"]
    assert_png(tmp_path / "smoke-curves.png")
    assert_png(tmp_path / "smoke-profiles.png")


def test_profiles_need_a_variant_with_runs_on_every_task(tmp_path):
    # A profile averages over tasks: with no variant on both tasks there is none to draw, and
    # the old plot (from a store where there was) is not left behind.
    (tmp_path / "lite-profiles.png").write_bytes(PNG_MAGIC)
    records = [make_record("hopper", "mabcq", s, 50.0, 1.0) for s in range(2)] + [make_record("walker", "bcq", s, 40.0, 1.0) for s in range(2)]
    written = write_leaderboard(records, tmp_path, reps=50)
    assert "lite-profiles.png" not in [p.name for p in written] and not (tmp_path / "lite-profiles.png").exists()


# --- plots a reader can read (issue 27, 11) ------------------------------------------------------


def _many_variants(n: int, seeds=(40.0, 50.0, 60.0)) -> list[dict]:
    return [make_record("hopper", f"v{k:02d}", s, score + k, 1.0, algo="bc") for k in range(n) for s, score in enumerate(seeds)]


def test_sixteen_variants_get_distinct_colours_and_styles():
    """tab20's light/dark pairs of one hue read as one colour: every variant gets one of tab10's
    ten hues, and no (colour, line style) is used twice."""
    from matplotlib import colormaps

    from mabcq_bench.report.plots import _colors, _styles

    variants = [f"v{k}" for k in range(16)]
    colors, styles = _colors(variants), _styles(variants)
    assert all(c in colormaps["tab10"].colors or tuple(c[:3]) in colormaps["tab10"].colors for c in colors.values())
    assert len({(tuple(colors[v]), styles[v]) for v in variants}) == 16


def test_bands_are_standard_errors_and_absent_beyond_a_few_variants():
    from matplotlib.collections import PolyCollection

    from mabcq_bench.report.plots import BAND_MAX_VARIANTS, over_training_figure

    def bands(fig):
        return [c for ax in fig.axes for c in ax.collections if isinstance(c, PolyCollection)]

    many = build_tables(_many_variants(13), "lite", reps=20)
    fig = over_training_figure(many, "normalized_score", "score", "curves")
    assert bands(fig) == [] and "no bands" in fig.get_suptitle()
    few = build_tables(_many_variants(2), "lite", reps=20)
    fig = over_training_figure(few, "normalized_score", "score", "curves")
    assert len(bands(fig)) == 2 <= BAND_MAX_VARIANTS and "±1 s.e." in fig.get_suptitle()
    # v00 (the second row): seeds 40, 50, 60 times 0.2, 0.6, 1.0: the band spans 10 - 2/√3 .. 50 + 10/√3 (±std: 8 .. 60)
    ys = bands(fig)[1].get_paths()[0].vertices[:, 1]
    assert ys.min() == pytest.approx(10 - 2 / 3**0.5) and ys.max() == pytest.approx(50 + 10 / 3**0.5)


def test_the_final_score_is_a_distinct_marker_at_the_end_of_the_curve():
    from mabcq_bench.report.plots import FINAL_MARKER, over_training_figure

    records = _many_variants(1)
    for r in records:  # a separate final evaluation that does not equal the curve's last point
        r["final"]["normalized_score"] += 7.0
        r["final"]["episodes"] = 50
    fig = over_training_figure(build_tables(records, "lite", reps=20), "normalized_score", "score", "curves")
    (ax,) = [a for a in fig.axes if a.get_visible() and a.get_title() == "hopper"]
    (marker,) = [line for line in ax.lines if line.get_marker() == FINAL_MARKER["marker"]]
    assert list(marker.get_xdata()) == [100] and list(marker.get_ydata()) == [pytest.approx(57.0)]
    curve = next(line for line in ax.lines if line.get_label() == "v00")
    assert curve.get_ydata()[-1] == pytest.approx(50.0)
    labels = [t.get_text() for t in fig.legends[0].get_texts()]
    assert labels == ["v00", "final score (a separate 50-episode evaluation)"]


def test_two_epsilons_are_points_not_a_trend():
    from mabcq_bench.report.plots import epsilon_figure

    two = epsilon_figure(build_tables(fake_records(), "lite", reps=20))  # hopper: ε 0.4 and 0.8
    assert [line.get_linestyle() for ax in two.axes for line in ax.lines][:1] == ["None"]
    records = fake_records() + [make_record("hopper", "mabcq-no-vd", s, 30.0, 1.0, eps=0.8) for s in range(2)]
    three = epsilon_figure(build_tables(records, "lite", reps=20))  # and ε = 0
    assert [line.get_linestyle() for ax in three.axes for line in ax.lines][:1] == ["-"]


def test_one_task_is_named_not_counted(tmp_path):
    from mabcq_bench.report.plots import profiles_figure

    records = [r for r in fake_records() if r["task"] == "hopper"]
    board = build_tables(records, "lite", reps=20)
    title = profiles_figure(board, [("algorithms", [r.variant for r in board.rows])]).get_suptitle()
    assert "runs on hopper;" in title and "all 1" not in title
    write_leaderboard(records, tmp_path, reps=20)
    assert "all 1" not in (tmp_path / "lite.md").read_text(encoding="utf-8")
    assert "runs on all 2 tasks" not in profiles_figure(build_tables(fake_records(), "lite", reps=20), [("a", ["mabcq"])]).get_suptitle()


def test_mixed_fingerprints_in_one_cell_are_refused(tmp_path):
    records = [
        make_record("hopper", "mabcq", 0, 50.0, 1.0, fingerprint="aaaaaaaaaaaaaaaa"),
        make_record("hopper", "mabcq", 1, 60.0, 1.0, fingerprint="bbbbbbbbbbbbbbbb"),
    ]
    with pytest.raises(UserError, match="aaaaaaaaaaaaaaaa.*bbbbbbbbbbbbbbbb"):
        build_tables(records, "lite")
    store = write_store(tmp_path / "results", records)
    with pytest.raises(UserError, match=r"seed0\.json.*seed1\.json"):
        write_leaderboard(load_records(store), tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_two_records_of_one_seed_are_refused():
    rec = make_record("hopper", "mabcq", 0, 50.0, 1.0)
    with pytest.raises(UserError, match="two records of seed 0"):
        build_tables([rec, dict(rec)], "lite")


@pytest.mark.parametrize(
    "content, message",
    [
        ('{"schema": 1, "status": "fini', "is not valid JSON"),
        (json.dumps({**make_record("hopper", "bcq", 1, 5.0, 1.0), "status": "running"}), "status 'running'"),
        (json.dumps({k: v for k, v in make_record("hopper", "bcq", 1, 5.0, 1.0).items() if k != "final"}), "lacks required keys final"),
        (json.dumps({**make_record("hopper", "bcq", 1, 5.0, 1.0), "task": "walker"}), "is filed under lite/hopper"),
    ],
)
def test_a_bad_record_is_named_and_left_untouched(tmp_path, content, message):
    store = write_store(tmp_path, [make_record("hopper", "bcq", 0, 5.0, 1.0)])
    bad = store / "lite" / "hopper" / "bcq" / "seed1.json"
    bad.write_text(content)
    before = (bad.read_bytes(), os.stat(bad).st_mtime_ns)
    with pytest.raises(UserError, match=message) as info:
        load_records(store)
    assert str(bad) in str(info.value) and "\n" not in str(info.value)
    assert (bad.read_bytes(), os.stat(bad).st_mtime_ns) == before


def test_load_records_reads_only_records(tmp_path):
    store = write_store(tmp_path, [make_record("hopper", "bcq", 0, 5.0, 1.0)])
    (store / "lite" / "hopper" / "bcq" / ".seed1.json.x1.tmp").write_text("{half")  # a writer's temp file
    records = load_records(store)
    assert [(r["variant"], r["seed"], Path(r["_file"]).name) for r in records] == [("bcq", 0, "seed0.json")]
    with pytest.raises(UserError, match="does not exist"):
        load_records(tmp_path / "nowhere")
    with pytest.raises(UserError, match="no finished runs"):
        write_leaderboard([], tmp_path / "out")


REPO = Path(__file__).resolve().parents[1]


def _first_results_table(text: str) -> list[str]:
    """The lines of the first markdown table whose header starts with ``| variant``."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("| variant"))
    end = next((i for i in range(start, len(lines)) if not lines[i].startswith("|")), len(lines))
    return lines[start:end]


def test_published_lite_table_is_the_one_its_records_give():
    # What users cite is leaderboard/lite.md: it must be what `mabcq-bench leaderboard` makes from
    # the committed records, not an edited or stale copy. The README links it and copies a table
    # only into a leaderboard block, which test_readme_board holds to the records.
    from mabcq_bench.report.readme import find_blocks

    board = build_tables(load_records(REPO / "leaderboard" / "records"), "lite")
    rebuilt = _first_results_table(format_markdown(board))
    assert len(rebuilt) >= 3
    assert _first_results_table((REPO / "leaderboard" / "lite.md").read_text(encoding="utf-8")) == rebuilt
    readme = (REPO / "README.md").read_text(encoding="utf-8").splitlines()
    inside = {i for b in find_blocks("\n".join(readme), "README.md") for i in range(b.begin, b.end + 1)}
    assert not any(line.startswith("| variant") for i, line in enumerate(readme) if i not in inside)
