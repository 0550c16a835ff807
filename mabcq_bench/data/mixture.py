"""The four parts of an agent's dataset (paper §4.1), as joint-action episodes in the real task.

==================  ==============================================================  ========
part                where the transitions come from                                 default
==================  ==============================================================  ========
early               SAC's experience early in training, re-enacted                   20 %
self_intermediate   agent i acts the intermediate policy, the others the expert     35 %
self_expert         agent i acts the expert, the others the intermediate policy     35 %
all_expert          every agent acts the expert                                      10 %
==================  ==============================================================  ========

"Agent i acts policy π" means agent i's slice of π's joint action. The last three parts add
Gaussian noise (``policy_noise``) to the joint action, clipped to the action box. Every part is
made of complete episodes; only its last episode is cut to the part's size. Every policy is
evaluated with :mod:`mabcq_bench.data.exact`, so the same expert gives the same bits on every CPU.
"""

from __future__ import annotations

import numpy as np

from mabcq_bench.data.experts import Expert, early_snapshot_steps
from mabcq_bench.data.recipes import PARTS, Recipe
from mabcq_bench.data.rollout import Episode, PolicyFn, collect, random_policy
from mabcq_bench.data.tasks import Task
from mabcq_bench.errors import UserError
from mabcq_bench.util import bars_fit, derive_seed


def mixed_policy(task: Task, agent: int, own: PolicyFn, others: PolicyFn, noise: float, seed: int) -> PolicyFn:
    """Joint policy where ``agent`` acts ``own``'s slice and every other agent acts ``others``',
    plus Gaussian noise of std ``noise`` on the joint action, clipped to the action box."""
    rng = np.random.default_rng(seed)
    space = task.make_env().action_space
    own_idx = list(task.partition[agent])

    def act(states: np.ndarray) -> np.ndarray:
        joint = np.array(others(states), dtype=np.float64)
        if own is not others:
            joint[:, own_idx] = own(states)[:, own_idx]
        joint += rng.normal(0.0, noise, joint.shape)
        return np.clip(joint, space.low, space.high)

    return act


def early_episodes(task: Task, recipe: Recipe, expert: Expert, n: int, seed: int, progress=None) -> list[Episode]:
    """``n`` transitions re-enacting SAC's experience over its first ``early_steps`` steps.

    SAC acts uniformly at random until its first saved actor, then each saved stochastic actor
    until the next one. Each of those policies gets its share of the window, in complete
    episodes, in training order; a policy's last episode is kept whole and the next one's share
    shrinks by the overshoot, so only the part's very last episode is cut.
    """
    e = recipe.expert
    actors = dict(expert.early_actors())
    if sorted(actors) != early_snapshot_steps(e):
        raise UserError(f"expert {expert.dir} holds early actors at steps {sorted(actors)}, the recipe wants {early_snapshot_steps(e)}")
    starts = [0, *actors]
    ends = [*actors, e.early_steps]
    rng = np.random.default_rng(derive_seed(seed, "early-policy"))
    out: list[Episode] = []
    done = 0
    counted = [0]  # transitions reported to ``progress``; topped up to what is kept, so a bar ends at n

    def count(k: int) -> None:
        counted[0] += k
        if progress is not None:
            progress(k)

    for j, (lo, hi) in enumerate(zip(starts, ends)):
        last = j == len(starts) - 1
        want = n - done if last else round(n * hi / e.early_steps) - done
        if want <= 0:
            continue
        if lo == 0:
            policy = random_policy(task, derive_seed(seed, "early-random"))
        else:
            policy = lambda states, actor=actors[lo]: actor.sample(states, rng)  # noqa: E731
        episodes = collect(task, policy, want, recipe.num_envs, derive_seed(seed, "early-envs", lo), progress=count, cut_last=last)
        out += episodes
        done += sum(len(ep) for ep in episodes)
        if min(done, n) > counted[0]:  # the policy's last episode is kept whole, past its share
            count(min(done, n) - counted[0])
    if done > n:  # an earlier policy's last episode overshot the whole part: cut that one
        out[-1] = out[-1].cut(len(out[-1]) - (done - n))
    return out


def agent_episodes(task: Task, recipe: Recipe, expert: Expert, agent: int, progress: bool = True) -> dict[str, list[Episode]]:
    """Joint-action episodes of every part of agent ``agent``'s dataset, in :data:`PARTS` order."""
    from tqdm.auto import tqdm

    sizes = recipe.part_sizes()
    policies = {name: expert.policy(name) for name in ("intermediate", "expert")}
    who_acts = {  # part -> (policy of agent i, policy of the others)
        "self_intermediate": ("intermediate", "expert"),
        "self_expert": ("expert", "intermediate"),
        "all_expert": ("expert", "expert"),
    }
    parts: dict[str, list[Episode]] = {}
    with tqdm(total=recipe.transitions_per_agent, desc=f"{task.name} agent{agent} rollouts", unit="tr", disable=not bars_fit(progress), dynamic_ncols=True) as bar:
        parts["early"] = early_episodes(task, recipe, expert, sizes["early"], derive_seed(recipe.seed, task.name, "early"), progress=bar.update)
        for part, (own, others) in who_acts.items():
            seed = derive_seed(recipe.seed, task.name, part, agent)
            policy = mixed_policy(task, agent, policies[own], policies[others], recipe.policy_noise, seed)
            parts[part] = collect(task, policy, sizes[part], recipe.num_envs, seed, progress=bar.update)
    return parts


def joint_parts(agents: list[dict[str, list[Episode]]]) -> dict[str, list[Episode]]:
    """The parts of a task's joint-action dataset from every agent's parts: each transition once.

    The early part is one SAC's experience, re-enacted from seeds that do not depend on the agent,
    so every agent's dataset holds the same early episodes: they are kept once (checked). The
    other three parts are rollouts of each agent's own (its own seeds, even ``all_expert``), kept
    as ``agent<i>/<part>``, agent by agent.

    Raises:
        RuntimeError: the agents' early parts differ (the mixture's seeds changed).
    """
    early = agents[0]["early"]
    for i, parts in enumerate(agents[1:], 1):
        same = len(parts["early"]) == len(early) and all(
            np.array_equal(a.observations, b.observations) and np.array_equal(a.actions, b.actions) and np.array_equal(a.rewards, b.rewards)
            for a, b in zip(parts["early"], early)
        )
        if not same:
            raise RuntimeError(f"agent {i}'s early part differs from agent 0's: the joint dataset would hold it twice")
    out = {"early": early}
    for i, parts in enumerate(agents):
        out.update({f"agent{i}/{p}": parts[p] for p in PARTS[1:]})
    return out
