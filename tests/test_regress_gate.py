"""The regression gate catches real bugs: the committed smoke reference, against MABCQ runs on the
shipped smoke datasets with a bug put into the update. (The gate passing on correct code is what
CI's own `mabcq-bench regress` shows on every submission.)"""

from __future__ import annotations

import pytest

from mabcq_bench.runs import execute, plan, protocol
from mabcq_bench.runs.protocol import load_protocol
from mabcq_bench.report import regress
from mabcq_bench.algos import mabcq as mabcq_module
from mabcq_bench.data.datasets import make_data
from mabcq_bench.data.recipes import load_recipe

REFERENCE = protocol.BASELINES_DIR.parent / "leaderboard" / "regress-reference.json"


def _flip_lambda_vd_sign(monkeypatch):
    """λ_vd = 1 − (V − E)/|E| instead of 1 + (V − E)/|E| (the clip range is symmetric)."""
    original = mabcq_module.W.value_deviation
    monkeypatch.setattr(mabcq_module.W, "value_deviation", lambda *a, **k: 2.0 - original(*a, **k))


def _target_from_online_critic(monkeypatch):
    """The target networks copy the online ones after every update (τ = 1): the target is the
    online critic of the previous step, not a slow average."""
    original = mabcq_module.soft_update
    monkeypatch.setattr(mabcq_module, "soft_update", lambda target, online, tau: original(target, online, 1.0))


@pytest.mark.parametrize("bug", [_flip_lambda_vd_sign, _target_from_online_critic], ids=["lambda_vd-sign", "online-target"])
def test_a_real_bug_fails_the_gate(bug, monkeypatch, tmp_path):
    ref = regress.load_reference(REFERENCE)
    assert ref["metrics"]["hopper/mabcq"], "the reference holds MABCQ's training metrics"
    make_data(load_recipe(ref["tier"]).for_task("hopper"), progress=False, log=lambda _: None)
    bug(monkeypatch)
    protocol = load_protocol(ref["tier"])
    specs = [plan.RunSpec(protocol.tier, "hopper", "mabcq", seed, ()) for seed in ref["seeds"]]
    records = [execute.execute(run, tmp_path) for run in plan.prepare(specs, protocol, protocol.datasets)]
    only = {**ref, "scores": {"hopper/mabcq": ref["scores"]["hopper/mabcq"]}}
    assert {r["tier"] for r in records} == {"smoke-v2-p2"}  # v2 smoke datasets, protocol 2: filed apart
    table, ok = regress.compare(only, records, {}, board="smoke-v2-p2")
    assert not ok, table
    row = next(line for line in table.splitlines() if line.startswith("hopper/mabcq "))
    assert row.split()[-1] in ("METRIC", "DRIFT"), table
