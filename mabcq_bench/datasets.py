"""Per-agent offline datasets (paper §4.1) written as standard Minari datasets.

Agent ``i``'s dataset ``mabcq/<task>/<tier>-agent<i>-v0`` mixes four parts:

==================  ==============================================================  ========
part                where the transitions come from                                 default
==================  ==============================================================  ========
early               SAC's experience early in training                               20 %
self_intermediate   agent i acts the intermediate policy, the others the expert     35 %
self_expert         agent i acts the expert, the others the intermediate policy     35 %
all_expert          every agent acts the expert                                      10 %
==================  ==============================================================  ========

"Agent i acts policy π" means agent i's slice of π's joint action. The last three parts add
Gaussian noise (``policy_noise``) to the joint action, clipped to the action box. A transition
holds the full state, agent i's own action, the shared reward, the next state and the
termination/truncation flags: never another agent's action.

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

from mabcq_bench.buffer import AgentData
from mabcq_bench.errors import UserError
from mabcq_bench.experts import Expert, train_expert
from mabcq_bench.recipes import PARTS, Recipe
from mabcq_bench.rollout import Episode, PolicyFn, collect
from mabcq_bench.tasks import Task, get_task
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


def make_data(recipe: Recipe, progress: bool = True, log: Callable[[str], None] = print) -> list[DatasetStatus]:
    """Make (or reuse) every agent's dataset of ``recipe.task``, training the expert if missing.

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
    expert = train_expert(recipe, progress=progress, log=log)
    return [make_agent_dataset(recipe, agent, expert, progress=progress, log=log) for agent in range(task.n_agents)]


def make_agent_dataset(
    recipe: Recipe, agent: int, expert: Expert | None = None, progress: bool = True, log: Callable[[str], None] = print
) -> DatasetStatus:
    """Make (or reuse) one agent's dataset: the unit of work a cluster runs in parallel.

    The expert must exist or is trained here (``train_expert`` is cached and locked).
    """
    task = get_task(recipe.task)
    dataset_id = recipe.dataset_id(agent)
    info = verify_dataset(dataset_id, recipe)
    if info is not None:
        return _status(info, False)
    expert = expert or train_expert(recipe, progress=progress, log=log)
    root = datasets_root()
    name = _staging_prefix(recipe, agent)
    with exclusive_lock(root / STAGING / f"{name}.lock", f"dataset {dataset_id}"):
        info = verify_dataset(dataset_id, recipe)  # another process may have made it meanwhile
        if info is not None:
            return _status(info, False)
        for stale in (root / STAGING).glob(f"{name}-*"):
            shutil.rmtree(stale, ignore_errors=True)  # left by a run that was killed mid-write
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


def early_episodes(early: dict[str, np.ndarray], n: int) -> list[Episode]:
    """The first ``n`` transitions of SAC's early experience, split into episodes."""
    if n > len(early["rewards"]):
        raise UserError(f"the early part needs {n} transitions but the expert kept {len(early['rewards'])}")
    ends = np.flatnonzero(early["terminations"][:n] | early["truncations"][:n])
    out, start = [], 0
    for stop in list(ends + 1) + ([n] if not len(ends) or ends[-1] + 1 < n else []):
        sl = slice(start, stop)
        trunc = early["truncations"][sl].copy()
        if stop == n and not early["terminations"][stop - 1]:
            trunc[-1] = True  # cut at the end of the part
        out.append(
            Episode(
                np.concatenate([early["observations"][sl], early["next_observations"][stop - 1][None]]),
                early["actions"][sl],
                early["rewards"][sl],
                early["terminations"][sl].copy(),
                trunc,
            )
        )
        start = stop
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
    parts: dict[str, list[Episode]] = {"early": early_episodes(expert.early(), sizes["early"])}
    total = sum(sizes[p] for p in who_acts)
    with tqdm(total=total, desc=f"{task.name} agent{agent} rollouts", unit="tr", disable=None if progress else True, dynamic_ncols=True) as bar:
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
    buffers, ranges, first = [], {}, 0
    for part in PARTS:
        for ep in parts[part]:
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
                "random_return": expert.returns["random"],
                "intermediate_return": expert.returns["intermediate"],
                "expert_return": expert.returns["expert"],
                "eval_seeds": expert.returns["eval_seeds"],
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
    r = expert.returns
    own = ", ".join(str(i) for i in task.partition[agent])
    rows = {
        "early": f"SAC's experience over its first {e.early_steps:,} training steps (first {sizes['early']:,} transitions)",
        "self_intermediate": f"agent {agent} acts the intermediate policy, the others the expert",
        "self_expert": f"agent {agent} acts the expert, the others the intermediate policy",
        "all_expert": "every agent acts the expert",
    }
    table = "\n".join(
        f"| {p} | {sizes[p]:,} | {ranges[p][0]}–{ranges[p][1] - 1 if ranges[p][1] > ranges[p][0] else '–'} | {rows[p]} |" for p in PARTS
    )
    return f"""Agent {agent} of {task.n_agents} in {task.scenario} {task.agent_conf} (MaMuJoCo partition of {task.env_id}), tier `{recipe.tier}`: \
{recipe.transitions_per_agent:,} transitions for offline, fully decentralized multi-agent RL (the MABCQ benchmark).

**Contents.** Each transition holds the full state s ({task.state_dim} numbers, the {task.env_id} observation), agent {agent}'s own action \
a_{agent} ({task.action_dims[agent]} of the {task.joint_action_dim} joint-action numbers: indices [{own}] of {task.env_id}), the shared reward, the next state, and termination/truncation flags. \
It never holds another agent's action. Truncation marks the time limit (1000 steps) and cuts at the end of a part.

**How it was made** (paper §4.1). A Stable-Baselines3 SAC policy was trained on the joint task for {e.total_steps:,} steps (seed {recipe.seed}); \
its policy at step {e.intermediate_step:,} is the *intermediate* policy and its final one the *expert*. The dataset mixes four parts \
(Gaussian noise of std {recipe.policy_noise} on the joint action in the last three):

| part | transitions | episodes | source |
|---|---|---|---|
{table}

**Reference returns** (undiscounted, one episode on each of {recipe.eval_episodes} evaluation seeds from {recipe.eval_seed}): random \
{r['random']['mean']:.1f}, intermediate {r['intermediate']['mean']:.1f}, expert {r['expert']['mean']:.1f}. `ref_min_score` is the random \
policy's and `ref_max_score` the expert's, so `minari.get_normalized_score(dataset, returns)` gives 0 for random and 1 for the expert. \
Scores are for the *joint* decentralized policy in the evaluation environment (`dataset.recover_environment(eval_env=True)`), \
whose action is all agents' actions assembled by the partition.

**Reproduce.** `mabcq-bench make-data --env {task.name} --preset {recipe.tier}` (recipe fingerprint `{recipe.fingerprint}`; the package \
versions it was made with are in the metadata under `versions`). {recipe.description}
"""
