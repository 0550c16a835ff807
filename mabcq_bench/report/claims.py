"""The paper's claims as data, tested on a board's records: the generated tables of FINDINGS.md.

:data:`CLAIMS` lists what the paper says (Figures 2–4, §5.2), each claim with the tests it rests
on. A :class:`Test` names its task(s), variants a and b, the quantity (the final normalized score,
or the final coordination gap, where lower is better) and its kind:

- ``better``: "a is better than b", a one-sided exact Mann–Whitney test of the runs' final values
  (:func:`~mabcq_bench.report.separation.exact_mann_whitney`, the separation table's test; there
  on the last curve point, here on ``final``, the score of the board's main table);
- ``like``: "a is like b", a two-sided exact Mann–Whitney test. It can only fail to show a
  difference, so the verdict is "difference shown" or "no difference shown", never "equal"; the
  difference of the means with its bootstrap interval is what the reader weighs;
- ``no-worse``: "a is no worse than b" (Figure 4), the one-sided test of the opposite, "a is
  worse". It too can only contradict the claim or fail to; the difference is shown;
- ``descends``: "a's score descends late" (BCQ on HalfCheetah and Hopper). Per run, the drop is
  the best trailing mean of ``score_window`` (5) curve evaluations among the windows that end
  before the last fifth of training, minus the run's final score: a paired, within-run
  comparison, tested with the one-sided exact Wilcoxon signed-rank test over runs
  (:func:`scipy.stats.wilcoxon`), which uses the sizes of the drops, not only their signs as a
  sign test would, and has the same smallest attainable p (1/2^n). The runs of the test's tasks
  are pooled: with 5 seeds a task, no p is below 1/32, which no family larger than one lets pass,
  and the claim is one about both tasks. The best of several windows is biased upwards, so a
  flat but noisy curve shows a drop too; hence
- ``descends-more``: "a descends late more than b" (BCQ against MABCQ, whose curves the paper
  shows not descending): the same per-run drops of a against b's, pooled over the tasks, one-sided
  exact Mann–Whitney; the window's bias is the same on both sides, so this is the test to read.

**The family.** The tests the claims make on one task form a family (the pooled ``descends``
test is its own), adjusted with Holm–Bonferroni (:data:`SCOPE`), as every page's separation table
does: the claims are read task by task, as the paper's figures show them, and within a task the
chance of any false "holds" (or "difference shown", or a contradiction of a ``no-worse`` claim)
stays at most α. One family for the whole page (``scope="page"``) is the conservative
alternative, and at this benchmark's 5 seeds it can pass nothing: with n_a against n_b runs no p
is below 1/C(n_a + n_b, n_a) (1/252 at 5 v 5), so a family of m tests passes nothing once m times
that is above α (m > 12 at 5 v 5), and the claims make over 30 tests on a complete board; the
block states its family and says when no test can reach α. A ``better`` or ``descends`` test whose runs go the
other way is "contradicted" when the opposite one-sided p, times the family's size (Bonferroni,
never easier than Holm), is at most α: those verdicts are controlled at α on their own, so over
both directions the page's chance of any false verdict is at most 2α. The modern baselines are compared with MABCQ in a second,
separate family (two-sided, Holm over those comparisons): they are no claim of the paper.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Iterable, Sequence

import numpy as np
from scipy.stats import wilcoxon

from mabcq_bench.report import weights
from mabcq_bench.report.aggregate import bootstrap_mean, bootstrap_mean_difference, holm_bonferroni
from mabcq_bench.report.readme import Filled, fill_kind, read_markdown, some_blocks, write_markdown
from mabcq_bench.report.records import _optional_number
from mabcq_bench.report.separation import ALPHA, GAP, LOWER_IS_BETTER, SCORE, _p_text, exact_mann_whitney, min_p

if TYPE_CHECKING:
    from pathlib import Path

    from mabcq_bench.report.tables import Leaderboard

#: The markers' name: ``<!-- claims:<board> -->`` … ``<!-- /claims:<board> -->``.
KIND = "claims"

#: Over what the p-values are adjusted: ``page`` (all tests of the claims) or ``task``.
SCOPE = "task"

#: The fraction of training at the end that "descends late" looks at.
LATE = 0.2

#: Curve evaluations per trailing window, for records whose protocol does not say.
WINDOW = 5

TASKS = ("halfcheetah", "walker", "hopper", "ant")

#: The learners newer than the paper, compared with MABCQ on the page (not claims of the paper).
MODERN = ("td3bc", "iql", "cql", "omar", "bc")


@dataclass(frozen=True)
class Test:
    """One test a claim rests on (see the module docstring for the kinds)."""

    tasks: tuple[str, ...]  # one task; several for ``descends`` and ``descends-more`` (their runs pooled)
    a: str
    b: str | None  # None for ``descends``
    key: str = SCORE  # the final quantity: normalized_score or coordination_gap
    kind: str = "better"  # better | like | no-worse | descends | descends-more


@dataclass(frozen=True)
class Claim:
    id: str
    where: str  # the paper's figure or section
    statement: str
    tests: tuple[Test, ...]


def _each(a: str, b: str, tasks: Sequence[str] = TASKS, key: str = SCORE, kind: str = "better") -> tuple[Test, ...]:
    return tuple(Test((t,), a, b, key, kind) for t in tasks)


CLAIMS: tuple[Claim, ...] = (
    Claim("fig2-ablations", "Fig. 2", "MABCQ outperforms its ablations, without λ_tn and without λ_vd",
          _each("mabcq", "mabcq-no-tn") + _each("mabcq", "mabcq-no-vd")),
    Claim("fig2-bcq", "Fig. 2", "MABCQ outperforms BCQ", _each("mabcq", "bcq")),
    Claim("fig2-behavior", "Fig. 2", "BCQ outperforms the behaviour policies", _each("bcq", "behavior")),
    Claim("fig2-ddpg", "Fig. 2", "DDPG is lowest: below the behaviour policies", _each("behavior", "ddpg")),
    Claim("bcq-descends", "§5.2, Fig. 2a, 2c", "BCQ's score descends in the later stage in HalfCheetah and Hopper (MABCQ's does not)",
          (Test(("halfcheetah", "hopper"), "bcq", None, kind="descends"), Test(("halfcheetah", "hopper"), "bcq", "mabcq", kind="descends-more"))),
    Claim("no-vd-like-bcq", "§5.2", "without λ_vd MABCQ is like BCQ, except on Ant, where it outperforms BCQ",
          _each("mabcq-no-vd", "bcq", TASKS[:3], kind="like") + _each("mabcq-no-vd", "bcq", ("ant",))),
    Claim("fig3", "Fig. 3", "λ_tn lowers the coordination gap max_i V_i − min_i V_i", _each("mabcq", "mabcq-no-tn", key=GAP)),
    Claim("fig4", "Fig. 4", "any ε > 0 is no worse than ε = 0 (mabcq-no-vd)",
          _each("mabcq epsilon=0.2", "mabcq-no-vd", kind="no-worse") + _each("mabcq", "mabcq-no-vd", kind="no-worse")),
)


@dataclass(frozen=True)
class Result:
    """A test on a board. ``p`` is None when it did not run (``missing`` says why)."""

    claim: Claim
    test: Test
    seeds_a: tuple[int, ...] = ()
    seeds_b: tuple[int, ...] = ()
    statistic: float | None = None  # Mann–Whitney U of a; for descends, the signed-rank sum of positive drops
    diff: tuple[float, float, float] | None = None  # mean(a) − mean(b) (descends: the mean drop) [low, high]
    p: float | None = None  # the tested direction's p (like: two-sided; no-worse: "a worse")
    p_other: float | None = None  # the opposite one-sided p (better, descends)
    p_min: float | None = None  # the smallest p these runs can give
    p_holm: float | None = None
    family: int = 0
    missing: str = ""

    @property
    def verdict(self) -> str:
        kind, t = self.test.kind, self.test
        if self.p is None:
            return f"not run: {self.missing}"
        if kind == "like":
            return "difference shown" if self.p_holm <= ALPHA else "no difference shown (a test cannot show equality)"
        if kind == "no-worse":
            return f"contradicted: {t.a} worse" if self.p_holm <= ALPHA else "not contradicted (cannot show 'no worse')"
        if self.p_holm <= ALPHA:
            return "holds"
        if self.p_other is not None and min(1.0, self.family * self.p_other) <= ALPHA:
            return {"descends": "contradicted: it rises late", "descends-more": f"contradicted: {t.b} descends more"}.get(kind, f"contradicted: {t.b} better")
        return "not shown"


def _finals(recs: Sequence[dict], key: str) -> tuple[np.ndarray, tuple[int, ...]]:
    """The runs' final values of ``key`` that are numbers, and those runs' seeds."""
    pairs = [(v, r["seed"]) for r in recs if np.isfinite(v := _optional_number(r["final"].get(key)))]
    return np.array([v for v, _ in pairs], dtype=np.float64), tuple(s for _, s in pairs)


def late_drop(rec: dict, late: float = LATE) -> float | None:
    """The best trailing-window mean of the run's score curve among the windows that end at or
    before ``(1 − late)`` of its updates, minus its final score (normalized-score points; > 0: it
    fell). None when no full window ends that early."""
    w = int((rec.get("protocol") or {}).get("score_window", WINDOW))
    points = sorted((int(p["updates"]), float(p[SCORE])) for p in rec["curve"] if p.get(SCORE) is not None)
    scores = np.array([s for _, s in points])
    ends = [i for i, (u, _) in enumerate(points) if i >= w - 1 and u <= (1.0 - late) * rec["updates"]]
    if not ends:
        return None
    return max(float(scores[i - w + 1 : i + 1].mean()) for i in ends) - float(rec["final"][SCORE])


def _drops(test: Test, variant: str, board: "Leaderboard") -> list[tuple[float, int]]:
    """Each run's :func:`late_drop` (with its seed) of ``variant`` on the test's tasks, pooled."""
    recs = [r for t in test.tasks for r in board.runs.get((t, variant)) or []]
    return [(d, r["seed"]) for r in recs if (d := late_drop(r)) is not None]


def _missing_drops(variant: str, test: Test) -> str:
    return f"no runs of {variant} with a full window before the last fifth on {'+'.join(test.tasks)}"


def _run_descends(claim: Claim, test: Test, board: "Leaderboard") -> Result:
    drops = _drops(test, test.a, board)
    if not drops:
        return Result(claim, test, missing=_missing_drops(test.a, test))
    x = np.array([d for d, _ in drops])
    nonzero = int(np.count_nonzero(x))
    if nonzero == 0:
        return Result(claim, test, missing=f"every run of {test.a} ends at its best window")
    up = wilcoxon(x, alternative="greater", method="exact")  # statistic: the rank sum of the drops > 0
    down = wilcoxon(x, alternative="less", method="exact")
    return Result(claim, test, tuple(s for _, s in drops), (), float(up.statistic), bootstrap_mean(x, reps=board.reps, ci=board.ci, seed=board.boot_seed),
                  float(up.pvalue), float(down.pvalue), 2.0 ** -nonzero)


def _run_descends_more(claim: Claim, test: Test, board: "Leaderboard") -> Result:
    """a's late drops against b's, one-sided exact Mann–Whitney: the best-window bias of
    :func:`late_drop` (a noisy flat curve shows a drop too) is the same on both sides."""
    (da, db) = (_drops(test, v, board) for v in (test.a, test.b))
    missing = [v for v, d in ((test.a, da), (test.b, db)) if not d]
    if missing:
        return Result(claim, test, missing=" and ".join(_missing_drops(v, test) for v in missing))
    x, y = np.array([d for d, _ in da]), np.array([d for d, _ in db])
    u, p = exact_mann_whitney(x, y, "greater")
    diff = bootstrap_mean_difference(x, y, reps=board.reps, ci=board.ci, seed=board.boot_seed)
    return Result(claim, test, tuple(s for _, s in da), tuple(s for _, s in db), u, diff, p, exact_mann_whitney(x, y, "less")[1],
                  min_p(x.size, y.size, "greater"))


def run_test(claim: Claim, test: Test, board: "Leaderboard") -> Result:
    """One test on ``board``'s records, before the family's adjustment (``p_holm`` = ``p``)."""
    if test.kind == "descends":
        return _run_descends(claim, test, board)
    if test.kind == "descends-more":
        return _run_descends_more(claim, test, board)
    (task,) = test.tasks
    (x, sa), (y, sb) = (_finals(board.runs.get((task, v)) or [], test.key) for v in (test.a, test.b))
    missing = [v for v, z in ((test.a, x), (test.b, y)) if z.size == 0]
    if missing:
        what = "runs" if test.key == SCORE else f"runs with a final {test.key}"
        return Result(claim, test, missing=f"no {what} of {' or '.join(missing)} on {task}")
    lower = test.key in LOWER_IS_BETTER
    better, worse = ("less", "greater") if lower else ("greater", "less")
    alternative = {"better": better, "no-worse": worse, "like": "two-sided"}[test.kind]
    u, p = exact_mann_whitney(x, y, alternative)
    other = exact_mann_whitney(x, y, worse)[1] if test.kind == "better" else None
    diff = bootstrap_mean_difference(x, y, reps=board.reps, ci=board.ci, seed=board.boot_seed)
    return Result(claim, test, sa, sb, u, diff, p, other, min_p(x.size, y.size, alternative))


def _adjust(results: list[Result], scope: str) -> list[Result]:
    """``results`` with Holm-adjusted p-values over each family (the tests that ran)."""
    from dataclasses import replace

    key = (lambda r: "page") if scope == "page" else (lambda r: "+".join(r.test.tasks))
    groups: dict[str, list[int]] = {}
    for i, r in enumerate(results):
        if r.p is not None:
            groups.setdefault(key(r), []).append(i)
    out = list(results)
    for idx in groups.values():
        for i, q in zip(idx, holm_bonferroni([results[i].p for i in idx]).tolist()):
            out[i] = replace(results[i], p_holm=q, family=len(idx))
    return out


def evaluate(board: "Leaderboard", claims: Sequence[Claim] = CLAIMS, scope: str = SCOPE) -> list[Result]:
    """Every test of ``claims`` on ``board``, with Holm–Bonferroni over ``scope``'s families
    (``page``: all tests that ran; ``task``: per task, a pooled test its own)."""
    if scope not in ("page", "task"):
        raise ValueError(f"scope must be 'page' or 'task', got {scope!r}")
    return _adjust([run_test(c, t, board) for c in claims for t in c.tests], scope)


def modern(board: "Leaderboard", baselines: Sequence[str] = MODERN, ref: str = "mabcq") -> list[Result]:
    """MABCQ against each modern baseline with runs, per task: two-sided exact Mann–Whitney on
    final scores, Holm over these comparisons only (a family of their own)."""
    claim = Claim("modern", "–", f"{ref} against the learners newer than the paper", ())
    tests = [Test((t,), ref, b, kind="like") for b in baselines for t in board.tasks if board.runs.get((t, b))]
    return _adjust([run_test(claim, t, board) for t in tests], "page")


def _num(v: float | None, digits: int = 1) -> str:
    return "–" if v is None else f"{v:.{digits}f}"


def _row(r: Result) -> str:
    t = r.test
    what = f"{t.a} vs {t.b}" if t.b else f"{t.a}: best window before the last fifth vs final"
    quantity = "coord. gap (lower better)" if t.key == GAP else "score"
    if r.p is None:
        return f"| {r.claim.id} | {'+'.join(t.tasks)} | {what} | {t.kind} | {quantity} | – | – | – | – | – | – | {r.verdict} |"
    runs = f"{len(r.seeds_a)} v {len(r.seeds_b)}" if t.b else f"{len(r.seeds_a)} runs"
    diff = f"{r.diff[0]:+.1f} [{r.diff[1]:+.1f}, {r.diff[2]:+.1f}]"
    return (f"| {r.claim.id} | {'+'.join(t.tasks)} | {what} | {t.kind} | {quantity} | {runs} | {_num(r.statistic)} | {diff} "
            f"| {_p_text(r.p)} | {_p_text(r.p_min)} | {_p_text(r.p_holm)} | {r.verdict} |")


def render(board: "Leaderboard", scope: str = SCOPE) -> list[str]:
    """The claims block of ``board``: the claims, the tests' table, the modern baselines, and MABCQ's weights at the end of training (:mod:`~mabcq_bench.report.weights`)."""
    results = evaluate(board, scope=scope)
    ran = [r for r in results if r.p is not None]
    sizes = sorted({r.family for r in ran})
    floor = min((r.family * r.p_min for r in ran), default=None)
    family = "the whole page" if scope == "page" else "each task (a pooled test its own family)"
    lines = [
        f"Generated from the records of board `{board.tier}` by `mabcq-bench leaderboard --findings` "
        "(`mabcq_bench/report/claims.py`); the verdicts are mechanical.",
        "",
        *(f"- **{c.id}** ({c.where}): {c.statement}." for c in CLAIMS),
        "",
        f"Tests on the runs' final values: `better` one-sided and `like` two-sided exact Mann–Whitney; `no-worse` the one-sided "
        "test of \"a worse\", which can only contradict the claim; `descends` the one-sided exact Wilcoxon signed-rank test over "
        "runs of each run's best 5-evaluation window mean before the last fifth of training minus its final score (the runs of "
        "its tasks pooled; the best of several windows is biased upwards). difference: mean(a) − mean(b), or the mean drop, "
        f"with its {board.ci * 100:g}% bootstrap interval ({board.reps} resamples, seed {board.boot_seed}). "
        f"Multiple comparisons: Holm–Bonferroni over {family}: {len(ran)} tests (family size {' or '.join(map(str, sizes)) or '0'}), "
        f"α = {ALPHA:g}; a verdict needs the Holm p ≤ α. `contradicted`: the opposite one-sided p times the family size is ≤ α. "
        "min p: the smallest p the test's runs can give; tests not run are outside the family.",
    ]
    if floor is not None and floor > ALPHA:
        lines[-1] += f" **With these runs no test can reach α**: the smallest attainable Holm p is {_p_text(floor)}."
    lines += [
        "",
        "| claim | task | test | kind | quantity | runs | statistic | difference [CI] | p | min p | p (Holm) | verdict |",
        "|---|---|---|---|---|---:|---:|---:|---:|---:|---:|---|",
        *map(_row, results),
        "",
        *_modern_lines(board),
        "",
        "What MABCQ's weights are at the end of training:",
        "",
        *weights.render(board),
    ]
    return lines


def _modern_lines(board: "Leaderboard") -> list[str]:
    present = [b for b in MODERN if any(board.runs.get((t, b)) for t in board.tasks)]
    if not present:
        return [f"Modern baselines: no runs of {', '.join(MODERN)} on this board."]
    lines = ["Order by mean final score, per task (modern baselines in bold):", ""]
    for t in board.tasks:
        cells = sorted(((r.cells[t].mean, r.variant) for r in board.rows if r.cells.get(t) is not None), reverse=True)
        lines.append(f"- {t}: " + " > ".join(f"**{v}** {m:.1f}" if v in MODERN else f"{v} {m:.1f}" for m, v in cells))
    res = modern(board, present)
    sizes = len([r for r in res if r.p is not None])
    sep = [f"{r.test.tasks[0]}: mabcq {'above' if r.diff[0] > 0 else 'below'} {r.test.b} (Holm p {_p_text(r.p_holm)})"
           for r in res if r.p is not None and r.p_holm <= ALPHA]
    lines += ["", f"MABCQ against each modern baseline, two-sided exact Mann–Whitney, Holm over these {sizes} comparisons "
              f"(a family of their own): {'; '.join(sep) if sep else 'none separates'}."]
    return lines


def fill_findings(text: str, records: Iterable[dict], where: str = "FINDINGS", reps: int = 2000, ci: float = 0.95, seed: int = 0) -> Filled:
    """``text`` with every ``<!-- claims:<board> -->`` block whose board has records filled by
    :func:`render` (bootstrap settings: the board pages')."""
    return fill_kind(text, records, render, where, KIND, reps=reps, ci=ci, seed=seed)


def check_findings(path: "str | Path") -> None:
    """Refuse a file without claims blocks (or with broken ones) before anything is written."""
    from pathlib import Path

    some_blocks(read_markdown(Path(path), "--findings"), str(path), KIND)


def update_findings(path: "str | Path", records: Iterable[dict], reps: int = 2000, ci: float = 0.95, seed: int = 0) -> Filled:
    """Fill the claims blocks of the Markdown file at ``path`` in place, atomically and only when
    the text changes.

    Raises:
        UserError: a missing or unreadable file, no claims block, broken markers, or a file that
            cannot be written.
    """
    from pathlib import Path

    path = Path(path)
    text = read_markdown(path, "--findings")
    some_blocks(text, str(path), KIND)
    result = fill_findings(text, records, str(path), reps=reps, ci=ci, seed=seed)
    write_markdown(path, result, "--findings")
    return result
