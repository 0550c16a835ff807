"""What MABCQ's two weights are at the end of training, from the records' training metrics.

The paper motivates λ_vd (value deviation) and λ_tn (transition normalization) by what they do to
the loss, but their size on real data is an empirical question: once Q̂ has converged, λ_vd's batch
mean sits near one, and only a clip [1 − ε, 1 + ε] tight enough to reach its batch extremes can
change an update. This module reads, per run, the logged batch statistics of each weight
(``weights/lambda_<w>_{mean,std,min,max}``, one row per ``log_every`` updates) over the last
:data:`LATE` of training, where the budgets of the budget study put a converged Q̂, and summarizes
them per task and variant:

- **mean**: the batch mean, averaged over the late logs and then over runs (± the sd over runs);
- **sd**: the spread of the weight within a batch, averaged the same way;
- **range**: the smallest batch minimum and the largest batch maximum of any late log of any run;
- **at clip** (λ_vd only): the share of late logs whose batch reaches the clip 1 ± ε, within 1e-6;
- **largest weight**: the batch's largest loss weight λ_vd·λ_tn/c (``weights/w_max``; with
  ``weight_norm = "batch_mean"`` c is the product's batch mean, so only the weights' spread
  within a batch acts, not their level: λ_tn's mean below one changes nothing), averaged like the
  mean.

A variant that switches a weight off (``use_vd`` or ``use_tn`` false in its config) shows "off";
one with both off (BCQ) is left out.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Sequence

import numpy as np

if TYPE_CHECKING:
    from mabcq_bench.report.tables import Leaderboard

#: The fraction of training at the end whose logs are summarized.
LATE = 0.2

#: The weights and their config switch.
WEIGHTS: tuple[tuple[str, str], ...] = (("lambda_vd", "use_vd"), ("lambda_tn", "use_tn"))

_AT_CLIP = 1e-6


@dataclass(frozen=True)
class Summary:
    """One weight of one (task, variant), over its runs' late logs."""

    runs: int
    mean: float  # batch mean, averaged over late logs, then over runs
    mean_sd: float  # sd of the per-run means over runs (0 for one run)
    sd: float  # within-batch sd, averaged the same way
    low: float  # smallest batch minimum
    high: float  # largest batch maximum
    at_clip: float | None  # share of late logs whose batch touches 1 ± ε (λ_vd with a clip only)
    w_max: float | None  # the batch's largest normalized loss weight, averaged like ``mean``


def _late_logs(rec: dict, late: float = LATE) -> list[dict]:
    start = (1.0 - late) * float(rec["updates"])
    return [m for m in rec.get("metrics") or [] if float(m.get("update", -1)) > start]


def _switched_off(rec: dict, switch: str) -> bool:
    return (rec.get("config") or {}).get(switch) is False


def summarize(recs: Sequence[dict], weight: str, late: float = LATE) -> Summary | None:
    """The :class:`Summary` of ``weight`` (``lambda_vd`` or ``lambda_tn``) over ``recs``; None when
    no run logged it in its last ``late`` of training."""
    keys = [f"weights/{weight}_{s}" for s in ("mean", "std", "min", "max")]
    means, sds, lows, highs, touches, w_max = [], [], [], [], [], []
    for rec in recs:
        logs = [m for m in _late_logs(rec, late) if all(m.get(k) is not None for k in keys)]
        if not logs:
            continue
        rows = np.array([[float(m[k]) for k in keys] for m in logs])
        means.append(rows[:, 0].mean())
        sds.append(rows[:, 1].mean())
        lows.append(rows[:, 2].min())
        highs.append(rows[:, 3].max())
        w = [float(m["weights/w_max"]) for m in logs if m.get("weights/w_max") is not None]
        if w:
            w_max.append(float(np.mean(w)))
        eps = (rec.get("config") or {}).get("epsilon") if weight == "lambda_vd" else None
        if eps is not None:
            touch = (rows[:, 2] <= 1.0 - float(eps) + _AT_CLIP) | (rows[:, 3] >= 1.0 + float(eps) - _AT_CLIP)
            touches.extend(touch.tolist())
    if not means:
        return None
    m = np.array(means)
    return Summary(len(m), float(m.mean()), float(m.std(ddof=1)) if len(m) > 1 else 0.0, float(np.mean(sds)),
                   float(min(lows)), float(max(highs)), float(np.mean(touches)) if touches else None,
                   float(np.mean(w_max)) if w_max else None)


def _cells(recs: Sequence[dict]) -> list[str]:
    """The row's cells after task, variant and runs: λ_vd's four, λ_tn's three, the largest weight."""
    cells, w_max = [], None
    for weight, switch in WEIGHTS:
        width = 4 if weight == "lambda_vd" else 3
        off = all(_switched_off(r, switch) for r in recs)
        s = None if off else summarize(recs, weight)
        if s is None:
            cells += ["off" if off else "–"] + [""] * (width - 1)
            continue
        w_max = s.w_max if s.w_max is not None else w_max
        cells += [f"{s.mean:.3f}" + (f" ± {s.mean_sd:.3f}" if s.runs > 1 else ""), f"{s.sd:.3f}", f"{s.low:.2f}–{s.high:.2f}"]
        if weight == "lambda_vd":
            cells.append("–" if s.at_clip is None else f"{100 * s.at_clip:.0f}%")
    return cells + ["–" if w_max is None else f"{w_max:.2f}"]


def _weighted(recs: Sequence[dict]) -> bool:
    """Whether the runs log the weights and switch at least one of them on."""
    logs = any(str(k).startswith("weights/lambda_") for r in recs for m in (r.get("metrics") or [])[:1] for k in m)
    return logs and not all(_switched_off(r, switch) for r in recs for _, switch in WEIGHTS)


def render(board: "Leaderboard", late: float = LATE) -> list[str]:
    """The table of λ_vd and λ_tn at the end of training for every (task, variant) of ``board``
    whose runs log them; a one-line note when none does."""
    cells = [(t, v, recs) for (t, v), recs in sorted(board.runs.items()) if recs and _weighted(recs)]
    if not cells:
        return [f"MABCQ's weights: no run on board `{board.tier}` logs λ_vd or λ_tn."]
    eps = {t: sorted({float(e) for _, _, recs in cells for r in recs if r["task"] == t and (e := (r.get("config") or {}).get("epsilon")) is not None})
           for t in board.tasks}
    lines = [
        f"Per task and variant, over the last {late:.0%} of each run's training (where the budget study puts a converged Q̂; "
        "`mabcq_bench/report/weights.py`): the batch mean of each weight (averaged over the logs, then over runs, ± the sd over "
        "runs when there are several), its within-batch sd, the range of its batch minima and maxima, and for λ_vd the share of logs whose batch "
        "reaches the clip 1 ± ε; and the batch's largest loss weight λ_vd·λ_tn/c, c the product's batch mean, so that only "
        "the spread of the weights within a batch acts, not their level. ε per task: "
        + "; ".join(f"{t} {', '.join(f'{e:g}' for e in es)}" for t, es in eps.items() if es) + ".",
        "",
        "| task | variant | runs | λ_vd mean | λ_vd sd | λ_vd range | at clip | λ_tn mean | λ_tn sd | λ_tn range | largest weight |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    lines += ["| " + " | ".join([t, v, str(len(recs)), *_cells(recs)]) + " |" for t, v, recs in cells]
    return lines
