"""The joint SAC expert of a task: trained once with Stable-Baselines3, shipped, checksummed.

An expert is a folder of four files (see :data:`FILES`):

- ``expert.zip`` and ``intermediate.zip``: ordinary SB3 checkpoints (``SAC.load`` opens them);
- ``early.npz``: the stochastic actors SAC had early in training (one every
  ``early_snapshot_every`` steps), from which the dataset's ``early`` part is re-enacted;
- ``expert.json``: how it was made, every checkpoint's evaluation, the reference returns
  (random, zero-action, intermediate, expert) and each file's SHA-256 and size.

The folders the project publishes live in the repository under ``datasets/experts/<name>/<task>/``
(:func:`shipped_dir`) and ``make-data`` uses them: the datasets are then made from the same
weights on every machine. SAC itself is trained only when asked (``--retrain``) or when no
shipped expert has the recipe's fingerprint; such an expert goes to the local store
``<home>/experts/<name>/<task>/<fingerprint>/``.

Training (:func:`train_expert`) runs in segments of ``checkpoint_every`` steps. After each segment
the model is saved as a checkpoint and its deterministic policy is evaluated on the fixed
evaluation seeds; training stops at the first checkpoint past ``early_steps`` that reaches
``target_return``, or at ``total_steps``. The expert is that checkpoint (without a target, or if
none reached it: the best one); the intermediate is the checkpoint whose return is closest to
``intermediate_fraction`` of the expert's. Every segment starts from the model and replay buffer
saved on disk and reseeds every generator from (seed, segment start), so a run that was killed
and resumed makes the same computation as one that never stopped.

Why re-enact the early part instead of shipping SAC's experience: the paper tier needs 200k
early transitions per task (hundreds of MB of float64 states), while a handful of actors is a few
MB and, evaluated with :mod:`mabcq_bench.data.exact`, gives the same bits on every CPU.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from mabcq_bench.data import recipes
from mabcq_bench.errors import UserError
from mabcq_bench.data.exact import Actor
from mabcq_bench.data.recipes import Recipe
from mabcq_bench.data.rollout import PolicyFn, evaluate, random_policy, zero_policy
from mabcq_bench.data.tasks import Task, get_task
from mabcq_bench.util import atomic_path, bars_fit, derive_seed, exclusive_lock, home, versions, write_json

POLICIES = ("intermediate", "expert")
#: The files of a finished expert; ``expert.json`` lists the others with their SHA-256.
FILES = ("expert.zip", "intermediate.zip", "early.npz")
#: Reference policies whose returns every expert records, in the order they are shown.
REFERENCES = ("random", "zero_action", "intermediate", "expert")


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
    def returns(self) -> dict:
        """Reference returns by policy (:data:`REFERENCES`): mean, std and every episode."""
        return self.info["returns"]

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
        return float(self.returns[policy]["mean"])


def sac_policy(model) -> PolicyFn:
    """The deterministic action of an SB3 SAC model for a batch of states, in env units,
    computed with :mod:`mabcq_bench.data.exact` (equal to ``model.predict(s, deterministic=True)``
    up to float32 rounding; ``tests/test_experts.py``)."""
    return Actor.from_sb3(model).deterministic


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
    """The shipped expert of ``recipe``, else the local one, training it first if needed."""
    expert = find_expert(recipe, retrain)
    if expert is not None:
        return expert
    if not retrain:
        log(f"[{recipe.task}] no shipped expert for this expert recipe (fingerprint {recipe.expert_fingerprint}); training SAC here")
    return train_expert(recipe, progress=progress, log=log)


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
        _train_segments(task, recipe, training, progress, log)
        log(f"[{task.name}] choosing the expert and intermediate checkpoints; evaluating the reference policies")
        info = _finish(task, recipe, training, d)
        write_json(d / "expert.json", info)
        shutil.rmtree(training / "resume", ignore_errors=True)  # the replay buffer (GBs at 1M steps) is no longer needed; checkpoints stay
        e = info["returns"]
        log(
            f"[{task.name}] expert: step {info['expert_step']:,} ({e['expert']['mean']:.1f}), intermediate: step "
            f"{info['intermediate_step']:,} ({e['intermediate']['mean']:.1f}), random {e['random']['mean']:.1f}, "
            f"zero-action {e['zero_action']['mean']:.1f}"
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


# --- training ---------------------------------------------------------------------------------


def _segment_ends(e) -> list[int]:
    return list(range(e.checkpoint_every, e.total_steps + 1, e.checkpoint_every))


def _checkpoint(training: Path, step: int) -> Path:
    return training / "checkpoints" / f"step-{step:08d}.zip"


def _read_evals(training: Path) -> dict[int, dict]:
    path = training / "evals.json"
    return {int(k): v for k, v in json.loads(path.read_text()).items()} if path.exists() else {}


def _reached(recipe: Recipe, evals: dict[int, dict]) -> int | None:
    """The first evaluated checkpoint past the early window that reaches the target, if any."""
    e = recipe.expert
    if e.target_return is None:
        return None
    hits = [s for s, r in sorted(evals.items()) if s >= e.early_steps and r["mean"] >= e.target_return]
    return hits[0] if hits else None


def _train_segments(task: Task, recipe: Recipe, training: Path, progress: bool, log) -> None:
    from stable_baselines3 import SAC
    from stable_baselines3.common.callbacks import BaseCallback
    from stable_baselines3.common.logger import Logger
    from tqdm.auto import tqdm

    e = recipe.expert
    state_file = training / "state.json"
    state = json.loads(state_file.read_text()) if state_file.exists() else {"num_timesteps": 0, "train_wall_s": 0.0}
    at = state["num_timesteps"]
    evals = _read_evals(training)
    if at >= e.total_steps or _reached(recipe, evals) is not None:
        return
    torch.set_num_threads(e.torch_threads)
    target = f", until the deterministic policy returns {e.target_return:g}" if e.target_return is not None else ""
    log(f"[{task.name}] {'resuming' if at else 'training'} the SAC joint expert at step {at:,} of at most {e.total_steps:,}{target}")
    bar = tqdm(total=e.total_steps, initial=at, desc=f"{task.name} SAC", unit="step", disable=not bars_fit(progress), dynamic_ncols=True)

    class Bar(BaseCallback):
        def _on_step(self) -> bool:
            bar.update(1)
            return True

    try:
        for end in _segment_ends(e):
            if end <= at:
                continue
            started = time.perf_counter()
            if at == 0:
                model = SAC(
                    "MlpPolicy",
                    task.make_env(),
                    learning_rate=e.learning_rate,
                    buffer_size=e.buffer_size or e.total_steps,
                    learning_starts=e.learning_starts,
                    batch_size=e.batch_size,
                    policy_kwargs={"net_arch": list(e.net_arch)},
                    seed=derive_seed(e.seed, task.name, "sac-init"),
                    device="cpu",
                    verbose=0,
                )
            else:
                model = _load_state(training, at, task)
            model.set_random_seed(derive_seed(e.seed, task.name, "sac-segment", at))  # all this segment's randomness: (seed, start)
            model._last_obs = None  # makes learn() reset the env with the seed just set
            model.set_logger(Logger(folder=None, output_formats=[]))  # SB3's own leaves an empty /tmp/SB3-<time> per learn()
            model.learn(end - at, reset_num_timesteps=False, callback=Bar())
            at = end
            with atomic_path(_checkpoint(training, at), suffix=".zip") as tmp:
                model.save(tmp)
            r = evaluate(task, sac_policy(model), recipe.eval_episodes, recipe.eval_seed)
            evals[at] = {"mean": float(r.mean()), "std": float(r.std())}
            write_json(training / "evals.json", {str(k): v for k, v in sorted(evals.items())})
            state = {"num_timesteps": at, "train_wall_s": state["train_wall_s"] + time.perf_counter() - started}
            _save_state(model, training, state)
            bar.set_postfix_str(f"return {evals[at]['mean']:.0f}")
            if bar.disable and progress:  # no terminal (a log file, a 0-column terminal): one line per checkpoint
                log(f"[{task.name}] step {at:,}: return {evals[at]['mean']:.1f} ± {evals[at]['std']:.1f}")
            if _reached(recipe, evals) is not None:
                break
    finally:
        bar.close()


def _save_state(model, training: Path, state: dict) -> None:
    """Model and replay buffer at the current step; ``state.json`` is switched to them last."""
    at = state["num_timesteps"]
    folder = training / "resume"
    with atomic_path(folder / f"buffer-{at}.pkl", suffix=".pkl") as tmp:
        model.save_replay_buffer(tmp)
    write_json(training / "state.json", state)
    for old in folder.glob("buffer-*.pkl"):
        if old.stem != f"buffer-{at}":
            old.unlink(missing_ok=True)


def _load_state(training: Path, at: int, task: Task):
    from stable_baselines3 import SAC

    try:
        model = SAC.load(_checkpoint(training, at), env=task.make_env(), device="cpu")
        model.load_replay_buffer(training / "resume" / f"buffer-{at}.pkl")
    except Exception as exc:
        raise UserError(f"saved SAC training state in {training} is corrupt ({type(exc).__name__}); delete {training.parent} to retrain") from None
    if model.num_timesteps != at:
        raise UserError(f"saved SAC training state in {training} is inconsistent; delete {training.parent} to retrain")
    return model


def _finish(task: Task, recipe: Recipe, training: Path, d: Path) -> dict:
    """Choose the expert and intermediate checkpoints, save the early actors, measure references."""
    from stable_baselines3 import SAC

    e = recipe.expert
    evals = _read_evals(training)
    expert_step = _reached(recipe, evals)
    if expert_step is None:  # no target, or not reached within total_steps: the best checkpoint
        expert_step = max(evals, key=lambda s: (evals[s]["mean"], -s))
    goal = e.intermediate_fraction * evals[expert_step]["mean"]
    candidates = [s for s in evals if s < expert_step] or [expert_step]
    intermediate_step = min(candidates, key=lambda s: (abs(evals[s]["mean"] - goal), s))
    shutil.copyfile(_checkpoint(training, expert_step), d / "expert.zip")
    shutil.copyfile(_checkpoint(training, intermediate_step), d / "intermediate.zip")

    steps = early_snapshot_steps(e)
    arrays: dict[str, np.ndarray] = {"steps": np.array(steps, dtype=np.int64)}
    for s in steps:
        actor = Actor.from_sb3(SAC.load(_checkpoint(training, s), device="cpu"))
        arrays.update({f"s{s}.{k}": v.astype(np.float32) if "weight" in k or "bias" in k else v for k, v in actor.to_arrays().items()})
    with atomic_path(d / "early.npz", suffix=".npz") as tmp:
        with open(tmp, "wb") as fh:
            np.savez_compressed(fh, **arrays)

    returns = reference_returns(task, recipe, {p: Actor.from_sb3(SAC.load(d / f"{p}.zip", device="cpu")).deterministic for p in POLICIES})
    state = json.loads((training / "state.json").read_text())
    return {
        "expert_fingerprint": recipe.expert_fingerprint,
        "recipe": recipe.expert_dict(),
        "task": task.name,
        "env_id": task.env_id,
        "expert_step": expert_step,
        "intermediate_step": intermediate_step,
        "target_return": e.target_return,
        "target_met": _reached(recipe, evals) is not None,
        "sac_steps_trained": state["num_timesteps"],
        "train_wall_s": round(state["train_wall_s"], 1),
        "checkpoint_returns": {str(s): round(evals[s]["mean"], 1) for s in sorted(evals)},
        "eval_seeds": [recipe.eval_seed + k for k in range(recipe.eval_episodes)],
        "returns": returns,
        "normalized": {p: round(100 * (returns[p]["mean"] - returns["random"]["mean"]) / (returns["expert"]["mean"] - returns["random"]["mean"]), 1) for p in REFERENCES},
        "early_snapshot_steps": steps,
        "versions": versions(),
        "files": {name: {"sha256": file_sha256(d / name), "bytes": (d / name).stat().st_size} for name in FILES},
    }


def early_snapshot_steps(e) -> list[int]:
    """SAC steps whose actors re-enact the early part: every ``early_snapshot_every`` below
    ``early_steps``. Before the first one SAC acts uniformly at random (``learning_starts``)."""
    return list(range(e.early_snapshot_every, e.early_steps, e.early_snapshot_every))


def reference_returns(task: Task, recipe: Recipe, policies: dict[str, PolicyFn]) -> dict:
    """Returns of the random, zero-action and given policies on the recipe's evaluation seeds."""

    def summary(policy: PolicyFn) -> dict:
        r = evaluate(task, policy, recipe.eval_episodes, recipe.eval_seed)
        return {"mean": float(r.mean()), "std": float(r.std()), "returns": [float(x) for x in r]}

    out = {"random": summary(random_policy(task, derive_seed(recipe.expert.seed, task.name, "random-policy")))}
    out["zero_action"] = summary(zero_policy(task))
    out.update({name: summary(policy) for name, policy in policies.items()})
    return out
