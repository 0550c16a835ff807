"""Where our Minari datasets live and how one is written: atomically, with its metadata.

Writes are atomic: a dataset is built in a hidden staging folder inside the Minari root (Minari
skips hidden folders) and renamed into place once complete and verified, so no half-written
dataset is ever visible under its id. :mod:`mabcq_bench.data.datasets` decides what is written
(an agent's dataset, the joint-action dataset); this module writes and reads it.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shlex
import shutil
import uuid
from pathlib import Path
from typing import Iterator

import numpy as np

from mabcq_bench.data.card import dataset_card, joint_dataset_card
from mabcq_bench.data.experts import REFERENCES, Expert
from mabcq_bench.data.mixture import joint_parts
from mabcq_bench.data.recipes import PARTS, Recipe
from mabcq_bench.data.rollout import Episode
from mabcq_bench.data.tasks import Task
from mabcq_bench.errors import UserError
from mabcq_bench.util import versions

STAGING = ".mabcq-staging"
AUTHOR = "mabcq-bench"


def datasets_root() -> Path:
    """Minari's local store: ``$MINARI_DATASETS_PATH``, else ``~/.minari/datasets``."""
    env = os.environ.get("MINARI_DATASETS_PATH")
    return Path(env) if env else Path.home() / ".minari" / "datasets"


def dataset_path(dataset_id: str) -> Path:
    return datasets_root() / dataset_id


def remake_instruction(dataset_id: str, command: str = "make-data") -> str:
    """What to do about a dataset that must be made again, in the same words whoever finds it
    bad (make-data, run): the exact command that deletes it, then ``command``, which makes it.
    make-data never deletes a dataset itself: nothing under a dataset id is overwritten, and a
    checksum that does not match may be a copy still arriving as well as damage."""
    return f"delete it with `rm -r {shlex.quote(str(dataset_path(dataset_id)))}` and rerun {command}"



def _staging_prefix(recipe: Recipe, agent: int | None) -> str:
    """Names the lock and the staging folders of one dataset (stale ones are found by it);
    ``agent=None``: the joint dataset."""
    return f"{recipe.task}-{recipe.tier}-{'joint' if agent is None else f'agent{agent}'}"


def read_metadata(dataset_id: str, remake: str = "make-data") -> dict:
    """The dataset's Minari metadata, read in full: ``computed_checksum`` is recomputed from
    the data, so a damaged data file is caught here. One-line error when it cannot be read,
    whose advice ends with ``remake`` (see :func:`remake_instruction`)."""
    import minari

    try:
        with _quiet():
            ds = minari.load_dataset(dataset_id)
            md = dict(ds.storage.metadata)
            md["total_steps"] = int(ds.total_steps)
            md["computed_checksum"] = dataset_checksum(ds)
    except Exception as exc:
        raise UserError(f"dataset {dataset_id} is corrupt ({type(exc).__name__}: {_first_line(exc)}); {remake_instruction(dataset_id, remake)}") from None
    return md

def _first_line(exc: BaseException) -> str:
    return (str(exc).splitlines() or [""])[0][:200]


# --- writing ----------------------------------------------------------------------------------


def write_dataset(task: Task, recipe: Recipe, expert: Expert, agent: int, parts: dict[str, list[Episode]]) -> dict:
    """Write agent ``agent``'s dataset atomically; returns its metadata."""
    import gymnasium as gym

    own_idx = list(task.partition[agent])
    episodes, ranges, incomplete = _layout({p: parts[p] for p in PARTS})
    sizes = {p: int(sum(len(e) for e in parts[p])) for p in PARTS}
    joint_space = task.make_env().action_space
    act_space = gym.spaces.Box(joint_space.low[own_idx], joint_space.high[own_idx], dtype=np.float32)
    extra = {"agent": agent, "agent_action_indices": own_idx}
    return _write(
        task, recipe, expert, recipe.dataset_id(agent), _staging_prefix(recipe, agent), [ep.actions[:, own_idx] for ep in episodes], episodes,
        act_space, "SB3 SAC joint expert; per-agent mixture (paper §4.1)", dataset_card(task, recipe, expert, agent, sizes, ranges),
        sizes, ranges, incomplete, extra,
    )  # fmt: skip


def write_joint_dataset(task: Task, recipe: Recipe, expert: Expert, agents: list[dict[str, list[Episode]]]) -> dict:
    """Write the task's joint-action dataset atomically (see the module's docstring); returns
    its metadata.

    Args:
        agents: every agent's joint-action episodes by part (:func:`mabcq_bench.data.mixture.agent_episodes`).
    """
    parts = joint_parts(agents)
    episodes, ranges, incomplete = _layout(parts)
    sizes = {p: int(sum(len(e) for e in eps)) for p, eps in parts.items()}
    # where each agent's episode k lies in the joint dataset: the early part is shared
    n_early = len(agents[0]["early"])
    sources = {
        f"agent{a}": list(range(n_early)) + [j for p in PARTS[1:] for j in range(*ranges[f"agent{a}/{p}"])] for a in range(task.n_agents)
    }
    extra = {
        "agents": task.n_agents,
        "agent_action_indices": [list(p) for p in task.agent_partition],
        "agent_datasets": [recipe.dataset_id(a) for a in range(task.n_agents)],
        "agent_episode_index": sources,
    }
    return _write(
        task, recipe, expert, recipe.joint_dataset_id, _staging_prefix(recipe, None), [ep.actions for ep in episodes], episodes,
        task.make_env().action_space, "SB3 SAC joint expert; every agent's mixture (paper §4.1) with the joint action",
        joint_dataset_card(task, recipe, expert, sizes, ranges), sizes, ranges, incomplete, extra, env=task.env_spec(),
    )  # fmt: skip


def _layout(parts: dict[str, list[Episode]]) -> tuple[list[Episode], dict[str, list[int]], list[int]]:
    """Episodes in the order of ``parts``, each part's episode range ``[first, stop)``, and the
    indices of the pieces cut at a part's end."""
    episodes, ranges, incomplete = [], {}, []
    for part, eps in parts.items():
        incomplete += [len(episodes) + k for k, ep in enumerate(eps) if not ep.complete]
        ranges[part] = [len(episodes), len(episodes) + len(eps)]
        episodes += eps
    return episodes, ranges, incomplete


def _write(
    task: Task,
    recipe: Recipe,
    expert: Expert,
    dataset_id: str,
    staging_name: str,
    actions: list[np.ndarray],
    episodes: list[Episode],
    act_space,
    algorithm_name: str,
    card: str,
    sizes: dict[str, int],
    ranges: dict[str, list[int]],
    incomplete: list[int],
    extra: dict,
    env=None,
) -> dict:
    """Write one dataset (its episodes with ``actions`` in place of theirs) atomically, with the
    metadata every dataset of ours holds plus ``extra``; returns its metadata read back.

    ``env``: the dataset's own environment spec (the joint task, for the joint dataset); ``None``
    for a dataset whose actions no environment takes alone (an agent's)."""
    import gymnasium as gym
    import minari
    from minari.data_collector.episode_buffer import EpisodeBuffer

    buffers = [
        EpisodeBuffer(
            observations=ep.observations,
            actions=np.ascontiguousarray(act, dtype=np.float32),
            rewards=ep.rewards,
            terminations=ep.terminations,
            truncations=ep.truncations,
        )
        for ep, act in zip(episodes, actions)
    ]
    obs_space = gym.spaces.Box(-np.inf, np.inf, (task.state_dim,), np.float64)
    root = datasets_root()
    staging = root / STAGING / f"{staging_name}-{uuid.uuid4().hex}"
    final = dataset_path(dataset_id)
    try:
        with _minari_root(staging), _quiet():
            ds = minari.create_dataset_from_buffers(
                dataset_id,
                buffers,
                env=env,
                eval_env=task.env_spec(),
                algorithm_name=algorithm_name,
                author=AUTHOR,
                observation_space=obs_space,
                action_space=act_space,
                ref_min_score=expert.mean_return("random"),
                ref_max_score=expert.mean_return("expert"),
                num_episodes_average_score=recipe.reference_episodes,
                description=card,
                requirements=[f"{k}=={v}" for k, v in versions().items() if k != "mabcq-bench"],
            )
            checksum = dataset_checksum(ds)
            metadata = {
                "task": task.name,
                "env_id": task.env_id,
                **({"agent": extra["agent"]} if "agent" in extra else {}),
                "n_agents": task.n_agents,
                "partition": [list(p) for p in task.agent_partition],
                **{k: v for k, v in extra.items() if k != "agent"},
                "tier": recipe.tier,
                "seed": recipe.seed,
                "recipe": recipe.as_dict(),
                "recipe_fingerprint": recipe.fingerprint,
                "expert_fingerprint": recipe.expert_fingerprint,
                "mixture": sizes,
                "mixture_episodes": ranges,
                "incomplete_episodes": incomplete,
                **{f"{p}_return": expert.references[p] for p in REFERENCES},
                "normalized_references": expert.info["references"]["normalized"],
                "reference_seeds": expert.info["references"]["seeds"],
                "checkpoint_selection": {
                    "seeds": expert.info["references"]["selection_seeds"],
                    "returns": {p: round(expert.selection_returns[p]["mean"], 3) for p in REFERENCES},
                },
                "expert_steps": {"expert": expert.info["expert_step"], "intermediate": expert.info["intermediate_step"], "trained": expert.info["sac_steps_trained"]},
                "expert_name": recipe.expert.name,
                "versions": versions(),
                "checksum": checksum,
            }
            ds.storage.update_metadata(metadata)
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

    Identical for identical data whatever the file layout, and blind to the metadata (reference
    returns, card, recipe): two versions of a dataset that differ only there have one checksum.
    The manifest under ``datasets/`` records it so a user who regenerates a dataset can check
    they got the same data.
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
