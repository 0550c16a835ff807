"""Per-agent offline datasets (paper §4.1) written as standard Minari datasets.

Agent ``i``'s dataset ``mabcq/<task>/<tier>-agent<i>-v<N>`` mixes four parts:

==================  ==============================================================  ========
part                where the transitions come from                                 default
==================  ==============================================================  ========
early               SAC's experience early in training, re-enacted                   20 %
self_intermediate   agent i acts the intermediate policy, the others the expert     35 %
self_expert         agent i acts the expert, the others the intermediate policy     35 %
all_expert          every agent acts the expert                                      10 %
==================  ==============================================================  ========

"Agent i acts policy π" means agent i's slice of π's joint action. The last three parts add
Gaussian noise (``policy_noise``) to the joint action, clipped to the action box. A transition
holds the full state, agent i's own action, the shared reward, the next state and the
termination/truncation flags: never another agent's action.

Every part is made of complete episodes (reset to termination or the time limit); only a part's
last episode is cut to make its size exact (flagged truncated, listed in the metadata's
``incomplete_episodes``). The early part re-enacts SAC's first ``early_steps`` steps: uniform
random actions until the first saved actor, then each saved stochastic actor for its share of the
window (:func:`early_episodes`). Every policy is evaluated with :mod:`mabcq_bench.data.exact`, so the
datasets made from the shipped experts are the same bits on every x86-64 CPU.

Writes are atomic: a dataset is built in a hidden staging folder inside the Minari root (Minari
skips hidden folders) and renamed into place once complete and verified, so no half-written
dataset is ever visible under its id.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import numpy as np

from mabcq_bench.data.buffer import AgentData
from mabcq_bench.errors import UserError
from mabcq_bench.data.experts import REFERENCES, Expert, early_snapshot_steps, get_expert
from mabcq_bench.data.recipes import PARTS, Recipe
from mabcq_bench.data.rollout import Episode, PolicyFn, collect, random_policy
from mabcq_bench.data.tasks import Task, get_task
from mabcq_bench.util import derive_seed, ensure_writable, exclusive_lock, versions

STAGING = ".mabcq-staging"
AUTHOR = "mabcq-bench"


def datasets_root() -> Path:
    """Minari's local store: ``$MINARI_DATASETS_PATH``, else ``~/.minari/datasets``."""
    env = os.environ.get("MINARI_DATASETS_PATH")
    return Path(env) if env else Path.home() / ".minari" / "datasets"


def dataset_path(dataset_id: str) -> Path:
    return datasets_root() / dataset_id


@dataclass(frozen=True)
class DatasetStatus:
    dataset_id: str
    path: Path
    total_steps: int
    checksum: str
    created: bool  # made by this call (False: it existed and was reused)


def make_data(recipe: Recipe, retrain: bool = False, progress: bool = True, log: Callable[[str], None] = print) -> list[DatasetStatus]:
    """Make (or reuse) every agent's dataset of ``recipe.task`` from its expert: the shipped one,
    or with ``retrain`` (or a recipe nothing ships for) one trained here.

    Existing datasets with the same recipe are kept as they are; a dataset under one of the ids
    that is corrupt or was made by another recipe stops the run before anything is written.

    Raises:
        UserError: the dataset folder is not writable; a dataset is corrupt or from another recipe.
    """
    task = get_task(recipe.task)
    ensure_writable(datasets_root(), "Minari dataset folder (MINARI_DATASETS_PATH)")
    ids = [recipe.dataset_id(i) for i in range(task.n_agents)]
    existing = [verify_dataset(dataset_id, recipe) for dataset_id in ids]
    if all(existing):
        log(f"[{task.name}] {recipe.tier} datasets are up to date: {', '.join(ids)}")
        return [_status(info, False) for info in existing]
    expert = get_expert(recipe, retrain=retrain, progress=progress, log=log)
    return [make_agent_dataset(recipe, agent, expert, progress=progress, log=log) for agent in range(task.n_agents)]


def make_agent_dataset(
    recipe: Recipe, agent: int, expert: Expert | None = None, retrain: bool = False, progress: bool = True, log: Callable[[str], None] = print
) -> DatasetStatus:
    """Make (or reuse) one agent's dataset: the unit of work a cluster runs in parallel.

    Without ``expert``, the recipe's expert is found (or trained: cached and locked) here.
    """
    task = get_task(recipe.task)
    dataset_id = recipe.dataset_id(agent)
    root = datasets_root()
    name = _staging_prefix(recipe, agent)
    with exclusive_lock(root / STAGING / f"{name}.lock", f"dataset {dataset_id}"):
        for stale in (root / STAGING).glob(f"{name}-*"):
            shutil.rmtree(stale, ignore_errors=True)  # left by a run killed mid-write (even after the rename)
        info = verify_dataset(dataset_id, recipe)  # another process may have made it meanwhile
        if info is not None:
            return _status(info, False)
        expert = expert or get_expert(recipe, retrain=retrain, progress=progress, log=log)
        started = time.perf_counter()
        episodes = agent_episodes(task, recipe, expert, agent, progress=progress)
        info = write_dataset(task, recipe, expert, agent, episodes)
        log(f"[{task.name}] wrote {dataset_id}: {info['total_steps']:,} transitions in {time.perf_counter() - started:.1f}s")
    return _status(info, True)


def _staging_prefix(recipe: Recipe, agent: int) -> str:
    """Names the lock and the staging folders of one dataset (stale ones are found by it)."""
    return f"{recipe.task}-{recipe.tier}-agent{agent}"


def _status(info: dict, created: bool) -> DatasetStatus:
    return DatasetStatus(info["dataset_id"], dataset_path(info["dataset_id"]), info["total_steps"], info["checksum"], created)


def verify_dataset(dataset_id: str, recipe: Recipe) -> dict | None:
    """Check the dataset under ``dataset_id``: ``None`` if absent, its metadata if it is complete
    and was made by ``recipe``.

    Raises:
        UserError: it exists but is unreadable, incomplete, or made by another recipe.
    """
    path = dataset_path(dataset_id)
    if not path.exists():
        return None
    md = read_metadata(dataset_id)
    fingerprint = md.get("recipe_fingerprint")
    if fingerprint != recipe.fingerprint:
        raise UserError(
            f"dataset {dataset_id} at {path} was made by a different recipe "
            f"(fingerprint {fingerprint} here, {recipe.fingerprint} asked for); delete it or use another tier name"
        )
    if md.get("total_steps") != recipe.transitions_per_agent or "checksum" not in md:
        raise UserError(f"dataset {dataset_id} at {path} is corrupt (incomplete); delete it and rerun make-data")
    if md["computed_checksum"] != md["checksum"]:
        raise UserError(f"dataset {dataset_id} at {path} is corrupt (its data does not match its checksum); delete it and rerun make-data")
    return md


def read_metadata(dataset_id: str) -> dict:
    """The dataset's Minari metadata, read in full: ``computed_checksum`` is recomputed from
    the data, so a damaged data file is caught here. One-line error when it cannot be read."""
    import minari

    path = dataset_path(dataset_id)
    try:
        with _quiet():
            ds = minari.load_dataset(dataset_id)
            md = dict(ds.storage.metadata)
            md["total_steps"] = int(ds.total_steps)
            md["computed_checksum"] = dataset_checksum(ds)
    except Exception as exc:
        raise UserError(f"dataset {dataset_id} at {path} is corrupt ({type(exc).__name__}: {_first_line(exc)}); delete it and rerun make-data") from None
    return md


def load_agent_data(dataset_id: str) -> AgentData:
    """Agent data (flat transitions) of one of our Minari datasets."""
    import minari

    try:
        with _quiet():
            ds = minari.load_dataset(dataset_id)
            return AgentData.from_episodes(ds.iterate_episodes())
    except FileNotFoundError:
        raise UserError(f"dataset {dataset_id} not found in {datasets_root()}; make it with `mabcq-bench make-data`") from None
    except Exception as exc:
        raise UserError(f"dataset {dataset_id} is corrupt ({type(exc).__name__}: {_first_line(exc)})") from None


def _first_line(exc: BaseException) -> str:
    return (str(exc).splitlines() or [""])[0][:200]


# --- building one agent's episodes ------------------------------------------------------------


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
    for j, (lo, hi) in enumerate(zip(starts, ends)):
        last = j == len(starts) - 1
        want = n - done if last else round(n * hi / e.early_steps) - done
        if want <= 0:
            continue
        if lo == 0:
            policy = random_policy(task, derive_seed(seed, "early-random"))
        else:
            policy = lambda states, actor=actors[lo]: actor.sample(states, rng)  # noqa: E731
        episodes = collect(task, policy, want, recipe.num_envs, derive_seed(seed, "early-envs", lo), progress=progress, cut_last=last)
        out += episodes
        done += sum(len(ep) for ep in episodes)
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
    with tqdm(total=recipe.transitions_per_agent, desc=f"{task.name} agent{agent} rollouts", unit="tr", disable=None if progress else True, dynamic_ncols=True) as bar:
        parts["early"] = early_episodes(task, recipe, expert, sizes["early"], derive_seed(recipe.seed, task.name, "early"), progress=bar.update)
        for part, (own, others) in who_acts.items():
            seed = derive_seed(recipe.seed, task.name, part, agent)
            policy = mixed_policy(task, agent, policies[own], policies[others], recipe.policy_noise, seed)
            parts[part] = collect(task, policy, sizes[part], recipe.num_envs, seed, progress=bar.update)
    return parts


# --- writing ----------------------------------------------------------------------------------


def write_dataset(task: Task, recipe: Recipe, expert: Expert, agent: int, parts: dict[str, list[Episode]]) -> dict:
    """Write agent ``agent``'s dataset atomically; returns its metadata."""
    import gymnasium as gym
    import minari
    from minari.data_collector.episode_buffer import EpisodeBuffer

    dataset_id = recipe.dataset_id(agent)
    own_idx = list(task.partition[agent])
    buffers, ranges, first, incomplete = [], {}, 0, []
    for part in PARTS:
        for k, ep in enumerate(parts[part]):
            if not ep.complete:
                incomplete.append(first + k)
            buffers.append(
                EpisodeBuffer(
                    observations=ep.observations,
                    actions=np.ascontiguousarray(ep.actions[:, own_idx], dtype=np.float32),
                    rewards=ep.rewards,
                    terminations=ep.terminations,
                    truncations=ep.truncations,
                )
            )
        ranges[part] = [first, first + len(parts[part])]
        first += len(parts[part])
    sizes = {p: int(sum(len(e) for e in parts[p])) for p in PARTS}

    joint_space = task.make_env().action_space
    obs_space = gym.spaces.Box(-np.inf, np.inf, (task.state_dim,), np.float64)
    act_space = gym.spaces.Box(joint_space.low[own_idx], joint_space.high[own_idx], dtype=np.float32)
    root = datasets_root()
    staging = root / STAGING / f"{_staging_prefix(recipe, agent)}-{uuid.uuid4().hex}"
    final = dataset_path(dataset_id)
    try:
        with _minari_root(staging), _quiet():
            ds = minari.create_dataset_from_buffers(
                dataset_id,
                buffers,
                env=None,
                eval_env=task.env_spec(),
                algorithm_name="SB3 SAC joint expert; per-agent mixture (paper §4.1)",
                author=AUTHOR,
                observation_space=obs_space,
                action_space=act_space,
                ref_min_score=expert.mean_return("random"),
                ref_max_score=expert.mean_return("expert"),
                num_episodes_average_score=recipe.eval_episodes,
                description=dataset_card(task, recipe, expert, agent, sizes, ranges),
                requirements=[f"{k}=={v}" for k, v in versions().items() if k != "mabcq-bench"],
            )
            checksum = dataset_checksum(ds)
            extra = {
                "task": task.name,
                "env_id": task.env_id,
                "agent": agent,
                "n_agents": task.n_agents,
                "partition": [list(p) for p in task.partition],
                "agent_action_indices": own_idx,
                "tier": recipe.tier,
                "seed": recipe.seed,
                "recipe": recipe.as_dict(),
                "recipe_fingerprint": recipe.fingerprint,
                "expert_fingerprint": recipe.expert_fingerprint,
                "mixture": sizes,
                "mixture_episodes": ranges,
                "incomplete_episodes": incomplete,
                **{f"{p}_return": expert.returns[p] for p in REFERENCES},
                "normalized_references": expert.info["normalized"],
                "expert_steps": {"expert": expert.info["expert_step"], "intermediate": expert.info["intermediate_step"], "trained": expert.info["sac_steps_trained"]},
                "expert_name": recipe.expert.name,
                "eval_seeds": expert.info["eval_seeds"],
                "versions": versions(),
                "checksum": checksum,
            }
            ds.storage.update_metadata(extra)
            built = staging / dataset_id
        if final.exists():
            raise UserError(f"dataset {dataset_id} appeared at {final} while it was being made; rerun make-data to check it")
        _ensure_namespaces(task, recipe)
        final.parent.mkdir(parents=True, exist_ok=True)
        os.rename(built, final)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    md = read_metadata(dataset_id)
    if md.get("checksum") != checksum or md["computed_checksum"] != checksum:
        raise UserError(f"dataset {dataset_id} at {final} did not read back as written")
    return md


def dataset_checksum(ds) -> str:
    """SHA-256 over every episode's observations, actions, rewards and flags, in order.

    Identical for identical data whatever the file layout; the manifest under ``datasets/``
    records it so a user who regenerates a dataset can check they got the same data.
    """
    h = hashlib.sha256()
    for ep in ds.iterate_episodes():
        for arr in (ep.observations, ep.actions, ep.rewards, ep.terminations, ep.truncations):
            a = np.ascontiguousarray(arr)
            h.update(str(a.dtype).encode() + str(a.shape).encode())
            h.update(a.tobytes())
    return h.hexdigest()


def _ensure_namespaces(task: Task, recipe: Recipe) -> None:
    from minari.namespace import create_namespace, list_local_namespaces

    wanted = {
        "mabcq": "mabcq-bench: per-agent datasets for offline, fully decentralized multi-agent RL.",
        f"mabcq/{task.name}": f"Per-agent datasets of the {task.scenario} {task.agent_conf} MaMuJoCo task.",
    }
    with _minari_root(datasets_root()), _quiet():
        for namespace, description in wanted.items():
            if namespace in set(list_local_namespaces()):
                continue
            try:
                create_namespace(namespace, description=description)
            except ValueError:  # made by a concurrent writer (another agent's dataset) meanwhile
                if namespace not in set(list_local_namespaces()):
                    raise


@contextlib.contextmanager
def _minari_root(path: Path) -> Iterator[None]:
    """Point Minari at ``path`` for the duration (Minari reads the variable on every call)."""
    old = os.environ.get("MINARI_DATASETS_PATH")
    os.environ["MINARI_DATASETS_PATH"] = str(path)
    try:
        yield
    finally:
        if old is None:
            os.environ.pop("MINARI_DATASETS_PATH", None)
        else:
            os.environ["MINARI_DATASETS_PATH"] = old


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


def dataset_card(task: Task, recipe: Recipe, expert: Expert, agent: int, sizes: dict[str, int], ranges: dict[str, list[int]]) -> str:
    """The dataset card: Markdown, shown by ``minari show``."""
    e = recipe.expert
    info = expert.info
    r, norm = expert.returns, info["normalized"]
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
    names = {"random": "uniform random actions", "zero_action": "zero actions (doing nothing)", "intermediate": f"intermediate (SAC step {info['intermediate_step']:,})", "expert": f"expert (SAC step {info['expert_step']:,})"}
    refs = "\n".join(f"| {names[p]} | {r[p]['mean']:.1f} ± {r[p]['std']:.1f} | {norm[p]:.1f} |" for p in REFERENCES)
    target = f"until its deterministic policy returned {e.target_return:g}" if e.target_return is not None else f"for {e.total_steps:,} steps"
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

**Reference returns** (undiscounted, one episode on each of {recipe.eval_episodes} evaluation seeds from {recipe.eval_seed}; normalized: 0 = random, 100 = expert):

| policy | return | normalized |
|---|---|---|
{refs}

`ref_min_score` is the random policy's return and `ref_max_score` the expert's, so `minari.get_normalized_score(dataset, returns)` \
gives 0 for random and 1 for the expert. Scores are for the *joint* decentralized policy in the evaluation environment \
(`dataset.recover_environment(eval_env=True)`), whose action is all agents' actions assembled by the partition. \
The dataset has no environment of its own (`recover_environment()` without `eval_env=True` fails): its action space is agent \
{agent}'s own action, and no environment acts on one agent's action alone.

**Get it.** These datasets are not hosted: `minari download` does not know them. Make them locally, in minutes, from the experts \
shipped with mabcq-bench: `mabcq-bench make-data --env {task.name} --preset {recipe.tier}` (recipe fingerprint `{recipe.fingerprint}`), \
then `mabcq-bench manifest --env {task.name} --preset {recipe.tier}` checks that they are the published bits. The package versions \
they were made with are in the metadata under `versions`. {recipe.description}
"""
