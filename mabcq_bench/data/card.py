"""The dataset card: the Markdown description every dataset carries (``minari show`` prints it)."""

from __future__ import annotations

from mabcq_bench.data.experts import REFERENCES, Expert
from mabcq_bench.data.recipes import PARTS, Recipe
from mabcq_bench.data.tasks import Task

#: What loading the datasets without mabcq-bench needs (checked in a fresh environment; datasets/CARD.md).
LOADING_INSTALL = 'pip install "minari[hdf5]==0.5.4" pillow "gymnasium[mujoco]==1.4.0" "mujoco==4.0.0"'


def dataset_card(task: Task, recipe: Recipe, expert: Expert, agent: int, sizes: dict[str, int], ranges: dict[str, list[int]]) -> str:
    """The dataset card: Markdown, shown by ``minari show``."""
    e = recipe.expert
    info = expert.info
    seeds, chosen = info["references"]["seeds"], info["references"]["selection_seeds"]
    picked = expert.selection_returns["expert"]["mean"]
    own = ", ".join(str(i) for i in task.partition[agent])
    rows = {
        "early": f"SAC's first {e.early_steps:,} training steps, re-enacted from its saved actors",
        "self_intermediate": f"agent {agent} acts the intermediate policy, the others the expert",
        "self_expert": f"agent {agent} acts the expert, the others the intermediate policy",
        "all_expert": "every agent acts the expert",
    }
    table = "\n".join(
        f"| {p} | {sizes[p]:,} | {ranges[p][0]}–{ranges[p][1] - 1 if ranges[p][1] > ranges[p][0] else '–'} | {rows[p]} |" for p in PARTS
    )
    refs = _reference_rows(expert)
    target = f"until its deterministic policy returned {e.target_return:g} on the checkpoint-selection seeds" if e.target_return is not None else f"for {e.total_steps:,} steps"
    return f"""Agent {agent} of {task.n_agents} in {task.scenario} {task.agent_conf} (MaMuJoCo partition of {task.env_id}), tier `{recipe.tier}`: \
{recipe.transitions_per_agent:,} transitions for offline, fully decentralized multi-agent RL (the MABCQ benchmark).

**Contents.** Each transition holds the full state s ({task.state_dim} numbers, the {task.env_id} observation), agent {agent}'s own action \
a_{agent} ({task.action_dims[agent]} of the {task.joint_action_dim} joint-action numbers: indices [{own}] of {task.env_id}), the shared reward, the next state, and termination/truncation flags. \
It never holds another agent's action. Episodes are complete (a reset to termination or the 1000-step time limit), except the last \
episode of each part, cut to the part's size and flagged truncated (`incomplete_episodes` in the metadata).

**How it was made** (paper §4.1). A Stable-Baselines3 SAC policy (expert `{e.name}`, shipped with mabcq-bench) was trained on the joint task \
{target} (seed {e.seed}, {info['sac_steps_trained']:,} steps). The *expert* is that checkpoint, the *intermediate* the checkpoint whose return is \
nearest {e.intermediate_fraction:.2f} of the expert's. The dataset mixes four parts (Gaussian noise of std {recipe.policy_noise} on the joint action in the last three):

| part | transitions | episodes | source |
|---|---|---|---|
{table}

**Reference returns** (undiscounted, mean ± std over one episode on each of the seeds {seeds['first']:,}–{seeds['last']:,}; \
normalized: 0 = random, 100 = expert). These seeds never chose a checkpoint: the checkpoints were chosen on seeds \
{chosen['first']:,}–{chosen['last']:,}, where the expert returned {picked:.1f} (`checkpoint_selection` in the metadata), a figure \
biased by the choice and not a reference.

| policy | return | episodes | normalized |
|---|---|---|---|
{refs}

`ref_min_score` is the random policy's return and `ref_max_score` the expert's, so `minari.get_normalized_score(dataset, returns)` \
gives 0 for random and 1 for the expert. Scores are for the *joint* decentralized policy in the evaluation environment \
(`dataset.recover_environment(eval_env=True)`), whose action is all agents' actions assembled by the partition. \
The dataset has no environment of its own (`recover_environment()` without `eval_env=True` fails): its action space is agent \
{agent}'s own action, and no environment acts on one agent's action alone.

**Get it.** These datasets are not hosted: `minari download` does not know them. Make them locally, in minutes, from the experts \
shipped with mabcq-bench: `mabcq-bench make-data --env {task.name} --preset {recipe.tier}` (recipe fingerprint `{recipe.fingerprint}`), \
then `mabcq-bench manifest --env {task.name} --preset {recipe.tier}` checks that they are the published bits. The package versions \
they were made with are in the metadata under `versions`. To load a copy without mabcq-bench: \
`{LOADING_INSTALL}` (Minari's HDF5 storage needs pillow without requiring it; `recover_environment` needs MuJoCo). {recipe.description}
"""


def _reference_rows(expert: Expert) -> str:
    """The rows of the reference-returns table of a card."""
    info, r = expert.info, expert.references
    norm = info["references"]["normalized"]
    names = {"random": "uniform random actions", "zero_action": "zero actions (doing nothing)", "intermediate": f"intermediate (SAC step {info['intermediate_step']:,})", "expert": f"expert (SAC step {info['expert_step']:,})"}
    return "\n".join(f"| {names[p]} | {r[p]['mean']:.1f} ± {r[p]['std']:.1f} | {r[p]['n']} | {norm[p]:.1f} |" for p in REFERENCES)


def joint_dataset_card(task: Task, recipe: Recipe, expert: Expert, sizes: dict[str, int], ranges: dict[str, list[int]]) -> str:
    """The joint-action dataset's card: Markdown, shown by ``minari show``."""
    n = task.n_agents
    total = sum(sizes.values())
    own = "; ".join(f"agent {i}: [{', '.join(str(j) for j in p)}]" for i, p in enumerate(task.agent_partition))
    seeds = expert.info["references"]["seeds"]
    table = "\n".join(f"| {p} | {sizes[p]:,} | {ranges[p][0]}–{ranges[p][1] - 1 if ranges[p][1] > ranges[p][0] else '–'} |" for p in sizes)
    ids = ", ".join(f"`{recipe.dataset_id(i)}`" for i in range(n))
    return f"""Joint-action dataset of {task.scenario} {task.agent_conf} (MaMuJoCo partition of {task.env_id}), tier `{recipe.tier}`: \
{total:,} transitions, the data of the centralized reference (one learner owning every joint) of the MABCQ benchmark.

**Contents.** Every transition of the {n} per-agent datasets ({ids}), each once, with the joint action \
({task.joint_action_dim} numbers, the {task.env_id} action) in place of an agent's own action; states, rewards, next states and \
termination/truncation flags are those datasets', bit for bit. Agent i's own action is its slice of the joint action by the task's \
partition (`agent_action_indices` in the metadata: {own}). The early part (SAC's first {recipe.expert.early_steps:,} steps, re-enacted) \
is one experience that every agent's dataset holds whole: it is here once. Each agent's other three parts are rollouts of its own \
(its own seeds, the all-expert part too) and are all here, agent by agent, so this dataset holds {sizes['early']:,} + {n} × \
{recipe.transitions_per_agent - sizes['early']:,} transitions, not {n} × {recipe.transitions_per_agent:,}. `agent_episode_index` in the \
metadata gives, for each agent, where each episode of its dataset lies here. Episodes are complete except the last of each part \
(`incomplete_episodes`).

| part | transitions | episodes |
|---|---|---|
{table}

**Reference returns** (the per-agent datasets', one episode on each of the seeds {seeds['first']:,}–{seeds['last']:,}; normalized: \
0 = random, 100 = expert). `ref_min_score` and `ref_max_score` are the same as the per-agent datasets', so a centralized score and \
a decentralized one are on one scale.

| policy | return | episodes | normalized |
|---|---|---|---|
{_reference_rows(expert)}

The dataset's environment is the joint task itself (`dataset.recover_environment()`, or with `eval_env=True`).

**Get it.** Made locally with the per-agent datasets: `mabcq-bench make-data --env {task.name} --preset {recipe.tier}` (skip it with \
`--no-joint`; recipe fingerprint `{recipe.fingerprint}`). To load a copy without mabcq-bench: `{LOADING_INSTALL}`. {recipe.description}
"""
