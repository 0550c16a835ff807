"""The paper's matrix game (Tables 1-4 of Appendix B), its extensions, and the CLI's errors."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

from mabcq_bench.cli import main
from mabcq_bench.errors import UserError
from mabcq_bench.algos.matrix_game import ALGOS, solve

# Table 1: agent 1 picks the row, agent 2 the column; behaviours [0.8, 0.2] and [0.4, 0.6].
PAYOFF = np.array([[1.0, 5.0], [6.0, 1.0]])
BEHAVIOR = [np.array([0.8, 0.2]), np.array([0.4, 0.6])]
TABLE_ARGS = ["--payoff", "[[1,5],[6,1]]", "--behavior", "0.8,0.2", "--behavior", "0.4,0.6"]


def _p(result, agent: int, action: int) -> dict[float, float]:
    """Modified transition probabilities of one action, keyed by payoff (unique in Table 1)."""
    return {t.payoff: t.p for t in result.actions[agent][action].transitions}


def _run(*args: str):
    return CliRunner().invoke(main, ["matrix-game", *args])


# --- the paper --------------------------------------------------------------------------------


def test_table2_bcq():
    result = solve(PAYOFF, BEHAVIOR, "bcq")
    assert result.values == [[pytest.approx(3.4), pytest.approx(3.0)], [pytest.approx(2.0), pytest.approx(4.2)]]
    assert _p(result, 0, 0) == {1.0: pytest.approx(0.4), 5.0: pytest.approx(0.6)}
    assert result.joint_action == (0, 1)
    assert result.payoff_return == 5.0


def test_table3_value_deviation_alone():
    result = solve(PAYOFF, BEHAVIOR, "mabcq-no-tn")
    # The paper prints 4.52 = 0.12*1 + 0.88*5 from rounded probabilities; exact is 15.4/3.4 = 4.529.
    assert result.values[0] == [pytest.approx(4.52, abs=0.01), pytest.approx(5.0, abs=0.005)]
    assert _p(result, 0, 0) == {1.0: pytest.approx(0.12, abs=0.005), 5.0: pytest.approx(0.88, abs=0.005)}
    assert _p(result, 0, 1) == {6.0: pytest.approx(0.8), 1.0: pytest.approx(0.2)}
    # Agent 2's biased transitions keep a_1 underestimated: 4.0 < 20.2/4.2.
    assert result.values[1] == [pytest.approx(4.0), pytest.approx(20.2 / 4.2)]
    assert result.joint_action == (1, 1)
    assert result.payoff_return == 1.0


def test_table4_mabcq():
    result = solve(PAYOFF, BEHAVIOR, "mabcq")
    assert result.values[0] == [pytest.approx(4.33, abs=0.005), pytest.approx(5.29, abs=0.005)]
    assert result.values[1] == [pytest.approx(5.29, abs=0.005), pytest.approx(4.33, abs=0.005)]
    assert _p(result, 0, 0) == {1.0: pytest.approx(0.17, abs=0.005), 5.0: pytest.approx(0.83, abs=0.005)}
    assert _p(result, 1, 0) == {1.0: pytest.approx(0.14, abs=0.005), 6.0: pytest.approx(0.86, abs=0.005)}
    assert result.joint_action == (1, 0)
    assert result.payoff_return == 6.0


def test_table4_through_cli_json():
    out = _run(*TABLE_ARGS, "--algo", "mabcq", "--json")
    assert out.exit_code == 0, out.output
    data = json.loads(out.output)
    assert data["algo"] == "mabcq"
    assert data["joint_action"] == [1, 0]
    assert data["return"] == 6
    assert np.allclose(data["values"], [[26 / 6, 37 / 7], [37 / 7, 26 / 6]])
    probs = [t["p"] for t in data["transitions"][0][1]]
    assert probs == [pytest.approx(6 / 7), pytest.approx(1 / 7)]


def test_cli_table_output():
    out = _run(*TABLE_ARGS, "--algo", "bcq")
    assert out.exit_code == 0, out.output
    assert "joint action (0, 1), return 5" in out.output
    assert "3.40" in out.output and "4.20" in out.output


# --- beyond the paper's game ------------------------------------------------------------------


def test_three_agents_hand_computed():
    # payoff[i, j, k] = 1 + i + 2j + 4k
    payoff = np.array(json.loads("[[[1,5],[3,7]],[[2,6],[4,8]]]"), dtype=float)
    behavior = [np.array([0.5, 0.5]), np.array([0.2, 0.8]), np.array([0.6, 0.4])]
    # bcq, agent 0, action 0: E[1 + 2j + 4k] = 1 + 2*0.8 + 4*0.4
    assert solve(payoff, behavior, "bcq").values[0][0] == pytest.approx(4.2)
    # mabcq: uniform over payoffs 1, 3, 5, 7 (E = 4), then p ~ V: sum V^2 / sum V = 84/16
    result = solve(payoff, behavior, "mabcq")
    assert result.values[0][0] == pytest.approx(5.25)
    assert len(result.joint_action) == 3
    assert result.payoff_return == payoff[result.joint_action]


def test_equal_payoff_cells_are_distinct_states():
    # Agent 0 has one action; its next cells pay 1, 1, 5. Three states, not two.
    payoff = np.array([[1.0, 1.0, 5.0]])
    behavior = [np.array([1.0]), np.array([0.25, 0.25, 0.5])]
    # lambda_tn: uniform over 3 cells -> 7/3 (merging the two 1s would give 0.5*1 + 0.5*5 = 3)
    result = solve(payoff, behavior, "mabcq-no-vd")
    assert result.values[0][0] == pytest.approx(7 / 3)
    assert [t.cell for t in result.actions[0][0].transitions] == [(0, 0), (0, 1), (0, 2)]
    assert solve(payoff, behavior, "bcq").values[0][0] == pytest.approx(3.0)


def test_epsilon_clips_value_deviation():
    # Agent 1, a_1, mabcq: uniform over payoffs 1, 5 (E = 3); lambda_vd = 1/3, 5/3 -> clipped to
    # 0.8, 1.2, so p = 0.4, 0.6 and the value is 3.4 (4.33 unclipped). a_2: 6, 1 -> 0.6, 0.4 -> 4.0.
    result = solve(PAYOFF, BEHAVIOR, "mabcq", epsilon=0.2)
    assert result.values[0] == [pytest.approx(3.4), pytest.approx(4.0)]
    assert result.joint_action == (1, 0)
    out = _run(*TABLE_ARGS, "--epsilon", "0.2", "--json")
    assert json.loads(out.output)["values"][0][0] == pytest.approx(3.4)


def test_zero_behavior_actions_are_never_chosen():
    behavior = [np.array([1.0, 0.0]), np.array([0.4, 0.6])]
    result = solve(PAYOFF, behavior, "mabcq")
    assert result.values[0][1] is None  # out of distribution, even though a_2 could reach 6
    # Agent 2 never sees row 1: each of its actions has a single next state.
    assert [len(act.transitions) for act in result.actions[1]] == [1, 1]
    assert result.values[1] == [pytest.approx(1.0), pytest.approx(5.0)]
    assert result.joint_action == (0, 1)
    data = json.loads(_run("--payoff", "[[1,5],[6,1]]", "--behavior", "1,0", "--behavior", "0.4,0.6", "--json").output)
    assert data["values"][0][1] is None and data["in_dataset"][0] == [True, False]


def test_negative_weight_clamped_and_zero_expectation_means_no_deviation():
    behavior = [np.array([1.0]), np.array([0.5, 0.5])]
    # E = 1: lambda_vd(-1) = 1 + (-2)/1 = -1 -> clamped to 0, so all mass goes to payoff 3.
    assert solve(np.array([[-1.0, 3.0]]), behavior, "mabcq-no-tn").values[0][0] == pytest.approx(3.0)
    # E = 0: no deviation, the dataset probabilities stay 0.5, 0.5.
    result = solve(np.array([[-1.0, 1.0]]), behavior, "mabcq-no-tn")
    assert result.values[0][0] == pytest.approx(0.0)
    assert [t.p for t in result.actions[0][0].transitions] == [0.5, 0.5]


def test_single_agent_and_ties_go_to_lowest_index():
    result = solve(np.array([3.0, 7.0, 7.0]), [np.array([0.2, 0.3, 0.5])], "mabcq")
    assert result.values == [[3.0, 7.0, 7.0]]
    assert result.joint_action == (1,)


def test_registry_covers_every_combination():
    assert sorted(ALGOS.values()) == sorted({(vd, tn) for vd in (False, True) for tn in (False, True)})


def test_library_rejects_mismatched_behavior():
    with pytest.raises(UserError, match="give 2 --behavior"):
        solve(PAYOFF, BEHAVIOR[:1], "bcq")


# --- bad input: one line, non-zero exit, no traceback -----------------------------------------


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--behavior", "1.2,-0.2", "--behavior", "0.4,0.6"], "negative"),
        (["--behavior", "0.5,0.4", "--behavior", "0.4,0.6"], "must sum to 1"),
        (["--behavior", "0.5,0.3,0.2", "--behavior", "0.4,0.6"], "has 3 probabilities"),
        (["--behavior", "a,b", "--behavior", "0.4,0.6"], "comma-separated probabilities"),
        (["--behavior", "0.8,0.2"], "give 2 --behavior (one per agent); got 1"),
        (["--behavior", "0.8,0.2", "--behavior", "0.4,0.6", "--behavior", "1"], "got 3"),
        (TABLE_ARGS[2:] + ["--algo", "cql"], "unknown algo 'cql'; choose one of: bcq, mabcq-no-tn, mabcq-no-vd, mabcq"),
        (TABLE_ARGS[2:] + ["--epsilon", "-0.1"], "epsilon must be a finite number >= 0"),
    ],
)
def test_cli_rejects_bad_behavior_algo_epsilon(args, message):
    out = _run("--payoff", "[[1,5],[6,1]]", *args)
    assert out.exit_code != 0
    assert message in out.output
    assert "Error:" in out.output
    assert "Traceback" not in out.output


@pytest.mark.parametrize(
    ("payoff", "message"),
    [
        ("[[1,5],[6,1]", "not valid JSON"),
        ("[[1,5],[6]]", "not rectangular"),
        ("[[1,5],6]", "not rectangular"),
        ('[[1,"a"],[6,1]]', "only numbers"),
        ("[[1,true],[6,1]]", "only numbers"),
        ("[[1,NaN],[6,1]]", "finite"),
        ("[]", "empty"),
        ("[[],[]]", "empty"),
        ("5", "nested list"),
    ],
)
def test_cli_rejects_bad_payoff(payoff, message):
    out = _run("--payoff", payoff, "--behavior", "0.8,0.2", "--behavior", "0.4,0.6")
    assert out.exit_code != 0
    assert message in out.output
    assert out.output.startswith("Error:") and out.output.count("\n") == 1
    assert "Traceback" not in out.output


def test_behavior_within_tolerance_is_accepted():
    out = _run("--payoff", "[[1,5],[6,1]]", "--behavior", "0.8,0.2000001", "--behavior", "0.4,0.6", "--json")
    assert out.exit_code == 0, out.output
