"""The joint SAC expert of a task: trained once with Stable-Baselines3, shipped, checksummed.

An expert is a folder of four files (see :data:`FILES`):

- ``expert.zip`` and ``intermediate.zip``: ordinary SB3 checkpoints (``SAC.load`` opens them);
- ``early.npz``: the stochastic actors SAC had early in training (one every
  ``early_snapshot_every`` steps), from which the dataset's ``early`` part is re-enacted;
- ``expert.json``: how it was made, every checkpoint's evaluation, the returns of the reference
  policies (random, zero-action, intermediate, expert) and each file's SHA-256 and size.

The folders the project publishes live in the repository under ``datasets/experts/<name>/<task>/``
(:func:`shipped_dir`) and ``make-data`` uses them: the datasets are then made from the same
weights on every machine. SAC itself is trained only when asked (``--retrain``) or when no
shipped expert has the recipe's fingerprint; such an expert goes to the local store
``<home>/experts/<name>/<task>/<fingerprint>/``.

Training (:func:`train_expert`, :mod:`mabcq_bench.data.sac`) runs in segments of ``checkpoint_every`` steps. After each segment
the model is saved as a checkpoint and its deterministic policy is evaluated on the fixed
evaluation seeds; training stops at the first checkpoint past ``early_steps`` that reaches
``target_return``, or at ``total_steps``. The expert is that checkpoint (without a target, or if
none reached it: the best one); the intermediate is the checkpoint whose return is closest to
``intermediate_fraction`` of the expert's. Every segment starts from the model and replay buffer
saved on disk and reseeds every generator from (seed, segment start), so a run that was killed
and resumed makes the same computation as one that never stopped.

The reference policies' returns are kept twice (:mod:`mabcq_bench.data.references`): on the
seeds that chose the checkpoints (``returns``, the record of the choice) and on fresh seeds
(``references``, what the datasets are scored against).

Why re-enact the early part instead of shipping SAC's experience: the paper tier needs 200k
early transitions per task (hundreds of MB of float64 states), while a handful of actors is a few
MB and, evaluated with :mod:`mabcq_bench.data.exact`, gives the same bits on every CPU.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from mabcq_bench.data import recipes
from mabcq_bench.errors import UserError
from mabcq_bench.data.exact import Actor
from mabcq_bench.data.recipes import Recipe
from mabcq_bench.data.references import REFERENCES, measure_references, normalized, reference_settings, selection_returns  # noqa: F401 (REFERENCES re-exported)
from mabcq_bench.data.rollout import PolicyFn
from mabcq_bench.data.sac import checkpoint_path, read_evals, reached, sac_policy, train_segments  # noqa: F401 (sac_policy re-exported)
from mabcq_bench.data.tasks import Task, get_task
from mabcq_bench.util import atomic_path, exclusive_lock, home, versions, write_json

POLICIES = ("intermediate", "expert")
#: The files of a finished expert; ``expert.json`` lists the others with their SHA-256.
FILES = ("expert.zip", "intermediate.zip", "early.npz")


def shipped_dir(recipe: Recipe) -> Path:
    """Where the repository publishes the expert of ``recipe``: ``datasets/experts/<name>/<task>``."""
    return recipes.RECIPES_DIR / "experts" / recipe.expert.name / recipe.task


def local_dir(recipe: Recipe) -> Path:
    """Where an expert trained on this machine goes (keyed by its recipe's fingerprint)."""
    return home() / "experts" / recipe.expert.name / recipe.task / recipe.expert_fingerprint


@dataclass(frozen=True)
class Expert:
    """A finished expert: where its files are and what its policies score."""

    dir: Path
    info: dict  # contents of expert.json

    @property
    def selection_returns(self) -> dict:
        """Returns by policy (:data:`REFERENCES`) on the checkpoint-selection seeds: how the
        checkpoints were chosen, not what they score (see :attr:`references`)."""
        return self.info["returns"]

    @property
    def references(self) -> dict:
        """The reference returns by policy (:data:`REFERENCES`), on fresh seeds: mean, std, n,
        seeds and every episode's return.

        Raises:
            UserError: the expert has none yet (measure them with ``mabcq-bench references``).
        """
        block = self.info.get("references")
        if block is None:
            raise UserError(f"expert {self.dir} has no reference returns on fresh seeds; measure them with `mabcq-bench references`")
        return block["returns"]

    def path(self, policy: str) -> Path:
        return self.dir / f"{policy}.zip"

    def load(self, policy: str):
        """The SB3 SAC model of ``policy`` (``intermediate`` or ``expert``)."""
        from stable_baselines3 import SAC

        try:
            return SAC.load(self.path(policy), device="cpu")
        except Exception as exc:  # a damaged zip raises many kinds of errors
            raise UserError(f"expert checkpoint {self.path(policy)} is unreadable ({type(exc).__name__})") from None

    def actor(self, policy: str) -> Actor:
        return Actor.from_sb3(self.load(policy))

    def policy(self, which: str) -> PolicyFn:
        """The deterministic joint policy of ``which``, bit-identical on every CPU."""
        return self.actor(which).deterministic

    def early_actors(self) -> list[tuple[int, Actor]]:
        """The early-training actors as ``(SAC step it was saved at, actor)``, by step."""
        try:
            with np.load(self.dir / "early.npz") as f:
                arrays = {k: f[k] for k in f.files}
        except Exception as exc:
            raise UserError(f"early-training actors {self.dir / 'early.npz'} are unreadable ({type(exc).__name__})") from None
        return [(int(s), Actor.from_arrays(arrays, f"s{int(s)}.")) for s in arrays["steps"]]

    def mean_return(self, policy: str) -> float:
        """The reference return of ``policy`` (:attr:`references`): the dataset's scale."""
        return float(self.references[policy]["mean"])

    def has_references(self, recipe: Recipe) -> bool:
        """Whether :attr:`references` were measured as ``recipe`` asks (episodes and seeds)."""
        block = self.info.get("references")
        return block is not None and {k: block.get(k) for k in ("episodes", "seeds")} == reference_settings(recipe)


def find_expert(recipe: Recipe, retrain: bool = False) -> Expert | None:
    """The expert ``make-data`` uses: the shipped one (unless ``retrain``), else one trained here.

    ``None`` when neither exists yet. A shipped expert is used only if it was made by this
    recipe's expert fingerprint, and only after its files pass their checksums.

    Raises:
        UserError: a shipped or local expert's file is missing or fails its checksum.
    """
    if not retrain:
        shipped = _read_expert(shipped_dir(recipe), recipe, shipped=True)
        if shipped is not None:
            return shipped
    return _read_expert(local_dir(recipe), recipe, shipped=False)


def _read_expert(d: Path, recipe: Recipe, shipped: bool) -> Expert | None:
    info_path = d / "expert.json"
    try:
        info = json.loads(info_path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        raise UserError(f"expert description {info_path} is unreadable or corrupt") from None
    if info.get("expert_fingerprint") != recipe.expert_fingerprint:
        if shipped:
            return None  # a user's own expert recipe: it is trained, the shipped one stays as it is
        raise UserError(f"expert {d} was made by a different recipe; delete it to retrain")
    fix = "restore it with `git checkout -- datasets/experts`" if shipped else f"delete {d} and rerun to retrain it"
    for name, want in info["files"].items():
        try:
            digest = file_sha256(d / name)
        except FileNotFoundError:
            raise UserError(f"expert file {d / name} is missing; {fix}") from None
        if digest != want["sha256"]:
            raise UserError(f"expert file {d / name} fails its checksum (sha256 {digest[:16]}, expected {want['sha256'][:16]}); {fix}")
    return Expert(d, info)


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def get_expert(recipe: Recipe, retrain: bool = False, progress: bool = True, log: Callable[[str], None] = print) -> Expert:
    """The shipped expert of ``recipe``, else the local one, training it first if needed; with its
    reference returns as the recipe asks (measured here for a local expert that lacks them).

    Raises:
        UserError: the shipped expert has no reference returns of the recipe's episodes and seeds.
    """
    expert = find_expert(recipe, retrain)
    if expert is None:
        if not retrain:
            log(f"[{recipe.task}] no shipped expert for this expert recipe (fingerprint {recipe.expert_fingerprint}); training SAC here")
        expert = train_expert(recipe, progress=progress, log=log)
    if expert.has_references(recipe):
        return expert
    if expert.dir == shipped_dir(recipe):
        raise UserError(
            f"the shipped expert {expert.dir} has no reference returns on {recipe.reference_episodes} episodes from seed {recipe.reference_seed}; "
            f"measure them with `mabcq-bench references --env {recipe.task} --preset {recipe.tier}` (it writes them into its expert.json)"
        )
    return add_references(recipe, expert, log=log)


def train_expert(recipe: Recipe, progress: bool = True, log: Callable[[str], None] = print) -> Expert:
    """Train (or resume, or reuse) the local expert of ``recipe`` and measure its references."""
    done = _read_expert(local_dir(recipe), recipe, shipped=False)
    if done is not None:
        return done
    task = get_task(recipe.task)
    d = local_dir(recipe)
    with exclusive_lock(d.parent / f".{d.name}.lock", f"the {task.name} expert"):
        done = _read_expert(d, recipe, shipped=False)  # another process may have finished it
        if done is not None:
            return done
        write_json(d / "recipe.json", {"expert_fingerprint": recipe.expert_fingerprint, "recipe": recipe.as_dict()})
        training = d / "training"
        train_segments(task, recipe, training, progress, log)
        log(f"[{task.name}] choosing the expert and intermediate checkpoints; evaluating the reference policies")
        info = _finish(task, recipe, training, d)
        write_json(d / "expert.json", info)
        shutil.rmtree(training / "resume", ignore_errors=True)  # the replay buffer (GBs at 1M steps) is no longer needed; checkpoints stay
        e = info["references"]["returns"]
        log(
            f"[{task.name}] expert: step {info['expert_step']:,} ({e['expert']['mean']:.1f}), intermediate: step "
            f"{info['intermediate_step']:,} ({e['intermediate']['mean']:.1f}), random {e['random']['mean']:.1f}, "
            f"zero-action {e['zero_action']['mean']:.1f} (reference returns over {e['expert']['n']} fresh seeds)"
        )
        return _read_expert(d, recipe, shipped=False)  # what is on disk, exactly as a later run sees it


def ship_expert(recipe: Recipe, log: Callable[[str], None] = print) -> Path:
    """Copy the finished local expert of ``recipe`` into the repository (``datasets/experts``)."""
    expert = _read_expert(local_dir(recipe), recipe, shipped=False)
    if expert is None:
        raise UserError(f"no finished local expert for {recipe.task} (recipe {recipe.expert.name}); train it first with `mabcq-bench train-expert`")
    target = shipped_dir(recipe)
    staging = target.parent / f".{target.name}.staging"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    for name in (*FILES, "expert.json"):
        shutil.copy2(expert.dir / name, staging / name)
    if target.exists():
        shutil.rmtree(target)
    staging.rename(target)
    size = sum((target / n).stat().st_size for n in (*FILES, "expert.json"))
    log(f"shipped {target} ({size / 1e6:.2f} MB)")
    return target


def _finish(task: Task, recipe: Recipe, training: Path, d: Path) -> dict:
    """Choose the expert and intermediate checkpoints, save the early actors, measure references."""
    from stable_baselines3 import SAC

    e = recipe.expert
    evals = read_evals(training)
    expert_step = reached(recipe, evals)
    if expert_step is None:  # no target, or not reached within total_steps: the best checkpoint
        expert_step = max(evals, key=lambda s: (evals[s]["mean"], -s))
    goal = e.intermediate_fraction * evals[expert_step]["mean"]
    candidates = [s for s in evals if s < expert_step] or [expert_step]
    intermediate_step = min(candidates, key=lambda s: (abs(evals[s]["mean"] - goal), s))
    shutil.copyfile(checkpoint_path(training, expert_step), d / "expert.zip")
    shutil.copyfile(checkpoint_path(training, intermediate_step), d / "intermediate.zip")

    steps = early_snapshot_steps(e)
    arrays: dict[str, np.ndarray] = {"steps": np.array(steps, dtype=np.int64)}
    for s in steps:
        actor = Actor.from_sb3(SAC.load(checkpoint_path(training, s), device="cpu"))
        arrays.update({f"s{s}.{k}": v.astype(np.float32) if "weight" in k or "bias" in k else v for k, v in actor.to_arrays().items()})
    with atomic_path(d / "early.npz", suffix=".npz") as tmp:
        with open(tmp, "wb") as fh:
            np.savez_compressed(fh, **arrays)

    policies = {p: Actor.from_sb3(SAC.load(d / f"{p}.zip", device="cpu")).deterministic for p in POLICIES}
    returns = selection_returns(task, recipe, policies)
    selection = [recipe.eval_seed + k for k in range(recipe.eval_episodes)]
    references = measure_references(task, recipe, policies, selection)
    state = json.loads((training / "state.json").read_text())
    return {
        "expert_fingerprint": recipe.expert_fingerprint,
        "recipe": recipe.expert_dict(),
        "task": task.name,
        "env_id": task.env_id,
        "expert_step": expert_step,
        "intermediate_step": intermediate_step,
        "target_return": e.target_return,
        "target_met": reached(recipe, evals) is not None,
        "sac_steps_trained": state["num_timesteps"],
        "train_wall_s": round(state["train_wall_s"], 1),
        "checkpoint_returns": {str(s): round(evals[s]["mean"], 1) for s in sorted(evals)},
        "eval_seeds": selection,
        "returns": returns,
        "normalized": normalized(returns),
        "references": references,
        "early_snapshot_steps": steps,
        "versions": versions(),
        "files": {name: {"sha256": file_sha256(d / name), "bytes": (d / name).stat().st_size} for name in FILES},
    }


def early_snapshot_steps(e) -> list[int]:
    """SAC steps whose actors re-enact the early part: every ``early_snapshot_every`` below
    ``early_steps``. Before the first one SAC acts uniformly at random (``learning_starts``)."""
    return list(range(e.early_snapshot_every, e.early_steps, e.early_snapshot_every))


def add_references(recipe: Recipe, expert: Expert, log: Callable[[str], None] = print) -> Expert:
    """Measure the reference returns of ``expert`` as ``recipe`` asks and write them into its
    expert.json (atomically; the other files are untouched). A no-op when they are there already.

    Resumable: each policy's returns are kept under ``<home>/references/`` as soon as they are
    measured, and a rerun measures only the missing ones.

    Raises:
        UserError: another process is measuring them; the seeds overlap; a checkpoint is unreadable.
    """
    if expert.has_references(recipe):
        return expert
    task = get_task(recipe.task)
    settings = reference_settings(recipe)
    scratch = home() / "references" / recipe.expert.name / recipe.task
    partial = scratch / f"{recipe.expert_fingerprint}-{settings['seeds']['first']}-{settings['episodes']}.json"
    with exclusive_lock(scratch / f".{recipe.expert_fingerprint}.lock", f"the reference returns of the {task.name} expert"):
        again = _read_expert(expert.dir, recipe, shipped=expert.dir == shipped_dir(recipe))  # another process may have finished
        if again is not None and again.has_references(recipe):
            return again
        done = {}
        if partial.exists():
            try:
                done = json.loads(partial.read_text())
            except ValueError:
                done = {}  # a damaged scratch file: measure again
            if done:
                log(f"[{task.name}] resuming the reference returns: {', '.join(done)} already measured")
        policies = {p: expert.policy(p) for p in POLICIES}
        block = measure_references(task, recipe, policies, expert.info["eval_seeds"], done, save=lambda d: write_json(partial, d), log=log)
        info_path = expert.dir / "expert.json"
        try:
            info = json.loads(info_path.read_text())
        except (OSError, ValueError):
            raise UserError(f"expert description {info_path} is unreadable or corrupt") from None
        info["references"] = block
        write_json(info_path, info)
        partial.unlink(missing_ok=True)
    out = _read_expert(expert.dir, recipe, shipped=expert.dir == shipped_dir(recipe))
    if out is None or not out.has_references(recipe):
        raise UserError(f"expert description {expert.dir / 'expert.json'} did not read back as written")
    return out
