"""Plots of one tier (PNG, drawn by Agg without pyplot), each a panel per task on a grid:

- ``<tier>-curves.png``: normalized score over training (the paper's Figure 2), the main
  algorithms, each curve ending in a hollow diamond at the run's final score (the table's: a
  separate evaluation, so it may sit off the curve's last point); ``<tier>-ablations.png``: the
  same for MABCQ's ablations and ε variants beside MABCQ and BCQ;
- ``<tier>-profiles.png``: performance profiles of the final normalized score (Agarwal et al.
  2021): the fraction of runs above τ against τ, with a stratified-bootstrap band, a panel for
  the main algorithms and one for MABCQ's ablations and ε variants;
- ``<tier>-coordination.png``: the coordination gap over training (Figure 3), variants with a Q;
- ``<tier>-training.png``: the learners' training metrics (Q̂, critic loss, λ_vd and λ_tn batch
  means), a row per task;
- ``<tier>-epsilon.png``: final normalized score against MABCQ's ε, for tasks with runs of at
  least two ε (Figure 4); points joined by a line only from three ε on.

Each variant keeps one (colour, line style) in every plot of a tier, distinct for up to 20
variants. Bands (±1 standard error over seeds; the profiles' bootstrap interval) are drawn only
for panels of at most :data:`BAND_MAX_VARIANTS` variants: beyond, they cover the axes.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from mabcq_bench.report.aggregate import performance_profile
from mabcq_bench.report.tables import Leaderboard, curve_stats, epsilon_points
from mabcq_bench.util import atomic_path


def _figure(n_panels: int, ncols: int = 2):
    """A figure with one panel per task on a grid (``ncols`` per line), drawn by Agg without pyplot."""
    from matplotlib.figure import Figure

    ncols = min(ncols, max(1, n_panels))
    nrows = math.ceil(max(1, n_panels) / ncols)
    # at least 7 inches wide: the title and the legend's row must fit even with one panel
    fig = Figure(figsize=(max(7.0, 4.6 * ncols), 3.4 * nrows + 0.8), layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
    for ax in axes[n_panels:]:
        ax.set_visible(False)
    return fig, axes


def _colors(variants: Sequence[str]) -> dict[str, Any]:
    """One colour per variant, the same in every panel and plot of a tier: tab10's ten distinct
    hues, cycled (tab20's light/dark pairs of one hue read as one colour). With :func:`_styles`
    every (colour, style) is distinct for up to 20 variants, and two variants of one colour never
    share a line style."""
    from matplotlib import colormaps

    cmap = colormaps["tab10"]
    return {v: cmap(i % cmap.N) for i, v in enumerate(variants)}


#: Line styles cycled over the variants, so identical curves stay visible on top of each other.
_STYLES = ("-", "--", "-.", ":")


def _styles(variants: Sequence[str]) -> dict[str, str]:
    return {v: _STYLES[i % len(_STYLES)] for i, v in enumerate(variants)}


#: Most variants in a panel that still get bands; beyond, the bands cover the axes.
BAND_MAX_VARIANTS = 4

#: Marker of the run's final score at the end of a learning curve (a separate evaluation).
FINAL_MARKER = {"marker": "D", "markersize": 6, "markerfacecolor": "white", "markeredgewidth": 1.5, "linestyle": "none", "zorder": 4}


def _tasks_phrase(tasks: Sequence[str]) -> str:
    """``all 4 tasks``, ``both tasks``, or the one task's name (never "all 1 tasks")."""
    if len(tasks) == 1:
        return tasks[0]
    return "both tasks" if len(tasks) == 2 else f"all {len(tasks)} tasks"


#: The ablations and ε variants of MABCQ get a figure of their own (with BCQ, both weights off).
def _is_ablation(variant: str) -> bool:
    return variant.startswith("mabcq-no-") or (variant.startswith("mabcq ") and "epsilon=" in variant)


def _save_png(fig, path: Path) -> Path:
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight")  # never clip a title or legend
    return path


def _legend(fig, axes, order: Sequence[str], extra: dict[str, Any] | None = None) -> None:
    """One legend for the figure, below the panels, with each variant once, in table order, then
    the ``extra`` entries (label -> handle)."""
    handles: dict[str, Any] = {}
    for ax in axes:
        for handle, label in zip(*ax.get_legend_handles_labels()):
            handles.setdefault(label, handle)
    entries = {label: handles[label] for label in order if label in handles}
    if entries:
        entries.update(extra or {})
        fig.legend(list(entries.values()), list(entries), loc="outside lower center", ncols=min(4, len(entries)), frameon=False)


def _plot_over_training(board: Leaderboard, key: str, ylabel: str, title: str, path: Path, variants: Sequence[str] | None = None) -> Path | None:
    fig = over_training_figure(board, key, ylabel, title, variants)
    return None if fig is None else _save_png(fig, path)


def over_training_figure(board: Leaderboard, key: str, ylabel: str, title: str, variants: Sequence[str] | None = None):
    """Per task, one mean line over seeds per variant; None if nothing to draw.

    With at most :data:`BAND_MAX_VARIANTS` variants, a light band of ±1 standard error over seeds.
    For the normalized score, a hollow diamond at the end of each curve marks the mean final
    score (the table's cell), a separate evaluation of more episodes than a curve point. The
    y-range follows the mean lines and final scores (a band may leave the panel rather than
    flatten everyone else's curves)."""
    from matplotlib.lines import Line2D

    order = [r.variant for r in board.rows]
    shown = [v for v in order if variants is None or v in variants]
    colors, styles = _colors(order), _styles(order)
    bands = len(shown) <= BAND_MAX_VARIANTS
    finals = key == "normalized_score"
    fig, axes = _figure(len(board.tasks))
    drawn = False
    episodes: set[int] = set()
    for ax, task in zip(axes, board.tasks):
        lows, highs = [], []
        for variant in shown:
            recs = board.runs.get((task, variant))
            stats_ = curve_stats(recs, key) if recs else None
            if stats_ is None:
                continue
            updates, mean, std = stats_
            ax.plot(updates, mean, color=colors[variant], linestyle=styles[variant], linewidth=1.6, label=variant, marker="." if updates.size < 3 else None)
            if bands and len(recs) > 1:
                se = std / np.sqrt(len(recs))
                ax.fill_between(updates, mean - se, mean + se, color=colors[variant], alpha=0.12, linewidth=0)
            lows.append(float(np.min(mean)))
            highs.append(float(np.max(mean)))
            if finals:
                final = float(np.mean([r["final"]["normalized_score"] for r in recs]))
                ax.plot([max(int(updates[-1]), max(int(r["updates"]) for r in recs))], [final], color=colors[variant], markeredgecolor=colors[variant], **FINAL_MARKER)
                episodes.update(int(r["final"]["episodes"]) for r in recs if "episodes" in r["final"])
                lows.append(final)
                highs.append(final)
            drawn = True
        if lows:
            lo, hi = min(lows), max(highs)
            pad = 0.15 * (hi - lo) if hi > lo else max(1.0, abs(hi) * 0.1)
            ax.set_ylim(lo - pad, hi + pad)
        ax.set_title(task)
        ax.set_xlabel("updates")
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
    if not drawn:
        return None
    band = "band ±1 s.e." if bands else f"no bands: more than {BAND_MAX_VARIANTS} variants"
    fig.suptitle(f"{title} — tier {board.tier} (mean over seeds, {band})")
    extra = {}
    if finals:
        what = f"a separate {' or '.join(map(str, sorted(episodes)))}-episode evaluation" if episodes else "the table's"
        extra[f"final score ({what})"] = Line2D([], [], color="0.3", markeredgecolor="0.3", **FINAL_MARKER)
    _legend(fig, axes, shown, extra)
    return fig


#: Number of thresholds τ of a performance profile (an even grid over the scores' range).
PROFILE_POINTS = 101


def _plot_profiles(board: Leaderboard, path: Path, groups: Sequence[tuple[str, Sequence[str]]]) -> Path | None:
    fig = profiles_figure(board, groups)
    return None if fig is None else _save_png(fig, path)


def profiles_figure(board: Leaderboard, groups: Sequence[tuple[str, Sequence[str]]]):
    """Performance profiles, a panel per (title, variants) group; None if nothing to draw.

    Only variants with runs on every task are drawn: a profile averages over tasks, so one over
    fewer tasks is not comparable. The τ grid spans [0, 100] (random policy to expert) and
    every final score, so each curve falls to 0 inside the panel. The bootstrap band is drawn in
    panels of at most :data:`BAND_MAX_VARIANTS` variants.
    """
    rows = {r.variant: r for r in board.rows if r.complete}
    panels = [(title, [v for v in variants if v in rows]) for title, variants in groups]
    panels = [(title, variants) for title, variants in panels if variants]
    if not panels:
        return None
    scores = np.concatenate([c.scores for r in rows.values() for c in r.cells.values() if c is not None])
    taus = np.linspace(min(0.0, float(scores.min())), max(100.0, float(scores.max())), PROFILE_POINTS)
    order = [r.variant for r in board.rows]
    colors, styles = _colors(order), _styles(order)
    fig, axes = _figure(len(panels))
    for ax, (title, variants) in zip(axes, panels):
        for variant in variants:
            cells = {task: cell.scores for task, cell in rows[variant].cells.items() if cell is not None}
            profile, low, high = performance_profile(cells, taus, reps=board.reps, ci=board.ci, seed=board.boot_seed)
            ax.plot(taus, profile, color=colors[variant], linestyle=styles[variant], linewidth=1.6, label=variant, drawstyle="steps-post")
            if len(variants) <= BAND_MAX_VARIANTS:
                ax.fill_between(taus, low, high, color=colors[variant], alpha=0.12, linewidth=0, step="post")
        ax.set_title(title)
        ax.set_xlabel(r"normalized score $\tau$")
        ax.set_ylabel(r"fraction of runs with score $> \tau$")
        ax.set_ylim(-0.02, 1.02)
        ax.grid(alpha=0.3)
    band = f"band: {board.ci * 100:g}% stratified bootstrap, in panels of at most {BAND_MAX_VARIANTS} variants"
    fig.suptitle(f"Performance profiles — tier {board.tier} (final scores of variants with runs on {_tasks_phrase(board.tasks)}; {band})")
    _legend(fig, axes, order)
    return fig


#: Training metrics drawn in ``<tier>-training.png`` (those a learner logs; others are skipped).
TRAINING_METRICS = (
    ("values/q_mean", "Q̂ batch mean"),
    ("losses/q", "critic loss"),
    ("weights/lambda_vd_mean", "λ_vd batch mean"),
    ("weights/lambda_tn_mean", "λ_tn batch mean"),
)


def metric_curve(recs: Sequence[dict], metric: str) -> tuple[np.ndarray, np.ndarray] | None:
    """Mean over seeds of a training metric at every logged interval all seeds share."""
    per_seed = [{int(m["update"]): float(m[metric]) for m in rec.get("metrics") or [] if metric in m} for rec in recs]
    common = sorted(set.intersection(*(set(d) for d in per_seed))) if per_seed else []
    if not common:
        return None
    return np.array(common), np.array([[d[u] for u in common] for d in per_seed]).mean(axis=0)


def _plot_training(board: Leaderboard, path: Path) -> Path | None:
    """Training metrics (rows: tasks, columns: metrics), a line per variant; None if none logged."""
    order = [r.variant for r in board.rows]
    colors, styles = _colors(order), _styles(order)
    metrics = [(m, label) for m, label in TRAINING_METRICS if any(metric_curve(recs, m) is not None for recs in board.runs.values())]
    if not metrics:
        return None
    from matplotlib.figure import Figure

    fig = Figure(figsize=(3.6 * len(metrics) + 0.5, 2.8 * len(board.tasks) + 0.8), layout="constrained")
    axes = fig.subplots(len(board.tasks), len(metrics), squeeze=False)
    for i, task in enumerate(board.tasks):
        for j, (metric, label) in enumerate(metrics):
            ax = axes[i, j]
            for variant in order:
                recs = board.runs.get((task, variant))
                curve = metric_curve(recs, metric) if recs else None
                if curve is not None:
                    ax.plot(*curve, color=colors[variant], linestyle=styles[variant], linewidth=1.4, label=variant)
            ax.set_title(f"{task}: {label}", fontsize=9)
            ax.grid(alpha=0.3)
            if i == len(board.tasks) - 1:
                ax.set_xlabel("updates")
    fig.suptitle(f"Training metrics — tier {board.tier} (mean over seeds)")
    _legend(fig, axes.ravel(), order)
    return _save_png(fig, path)


def _plot_epsilon(board: Leaderboard, path: Path) -> Path | None:
    fig = epsilon_figure(board)
    return None if fig is None else _save_png(fig, path)


def epsilon_figure(board: Leaderboard):
    """Final normalized score against ε, one panel per task with ≥2 distinct ε; None if none.

    Two ε are drawn as points: a line through two points would show a trend they cannot."""
    panels = {}
    for task in board.tasks:
        points = epsilon_points(board, task)
        if len({e for e, *_ in points}) >= 2:
            panels[task] = points
    if not panels:
        return None
    fig, axes = _figure(len(panels))
    for ax, (task, points) in zip(axes, panels.items()):
        eps, mean, std, _ = zip(*points)
        ax.errorbar(eps, mean, yerr=std, fmt="o-" if len(set(eps)) > 2 else "o", capsize=3)
        ax.set_title(task)
        ax.set_xlabel(r"$\epsilon$ (clip of $\lambda_{vd}$ to $[1-\epsilon, 1+\epsilon]$)")
        ax.set_ylabel("final normalized score")
        ax.grid(alpha=0.3)
    fig.suptitle(f"MABCQ's ε — tier {board.tier} (mean ± std over seeds)")
    return fig


def write_plots(board: Leaderboard, out_dir: Path) -> list[Path]:
    """Write the tier's PNGs into ``out_dir``; an optional plot with nothing to show is not
    written, and an old copy of it (from an earlier, different store) is removed."""
    written = []
    variants = [r.variant for r in board.rows]
    main = [v for v in variants if not _is_ablation(v)]
    ablations = [v for v in variants if _is_ablation(v) or v in ("mabcq", "bcq")] if any(map(_is_ablation, variants)) else []
    plots = [
        (f"{board.tier}-curves.png", lambda p: _plot_over_training(board, "normalized_score", "normalized score", "Learning curves", p, main)),
        (f"{board.tier}-ablations.png", lambda p: _plot_over_training(board, "normalized_score", "normalized score", "MABCQ's ablations and ε", p, ablations) if ablations else None),
        (f"{board.tier}-profiles.png", lambda p: _plot_profiles(board, p, [("algorithms", main), ("MABCQ's ablations and ε", ablations)])),
        (f"{board.tier}-coordination.png", lambda p: _plot_over_training(board, "coordination_gap", r"$\max_i V_i(s) - \min_i V_i(s)$", "Coordination gap", p)),
        (f"{board.tier}-training.png", lambda p: _plot_training(board, p)),
        (f"{board.tier}-epsilon.png", lambda p: _plot_epsilon(board, p)),
    ]
    for name, draw in plots:
        path = out_dir / name
        if draw(path) is not None:
            written.append(path)
        else:
            path.unlink(missing_ok=True)
    return written
