"""The joint SAC expert of a task: Stable-Baselines3 SAC, trained in resumable segments.

Artifacts (under ``<home>/experts/<task>/<tier>-<expert fingerprint>/``, see :func:`expert_dir`):

- ``intermediate.zip`` and ``expert.zip``: ordinary SB3 checkpoints (``SAC.load`` opens them);
- ``early.npz``: SAC's experience over its first ``early_steps`` environment steps;
- ``returns.json``: joint returns of the random, intermediate and expert policies on the fixed
  evaluation seeds, with the recipe and package versions. It is written last: its presence marks
  a finished expert, which a rerun with the same recipe reuses.

Resume and determinism: training runs in segments that end at every multiple of
``checkpoint_every`` (and at the early, intermediate and final steps). Every segment starts from
the model and replay buffer saved on disk, reseeds every generator from (seed, segment start)
and resets the environment, so a run that was killed and resumed follows exactly the same
computation as one that never stopped.
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from mabcq_bench.errors import UserError
from mabcq_bench.recipes import Recipe
from mabcq_bench.rollout import PolicyFn, evaluate, random_policy
from mabcq_bench.tasks import Task, get_task
from mabcq_bench.util import atomic_path, derive_seed, exclusive_lock, home, versions, write_json

POLICIES = ("intermediate", "expert")


def expert_dir(recipe: Recipe) -> Path:
    return home() / "experts" / recipe.task / f"{recipe.tier}-{recipe.expert_fingerprint}"


@dataclass(frozen=True)
class Expert:
    """A finished expert: where its files are and what its policies score."""

    dir: Path
    returns: dict  # contents of returns.json

    def path(self, policy: str) -> Path:
        return self.dir / f"{policy}.zip"

    def load(self, policy: str):
        """The SB3 SAC model of ``policy`` (``intermediate`` or ``expert``)."""
        from stable_baselines3 import SAC

        try:
            return SAC.load(self.path(policy), device="cpu")
        except Exception as exc:  # a damaged zip raises many kinds of errors
            raise UserError(f"expert checkpoint {self.path(policy)} is corrupt ({type(exc).__name__}); delete {self.dir} to retrain it") from None

    def policy(self, which: str) -> PolicyFn:
        return sac_policy(self.load(which))

    def early(self) -> dict[str, np.ndarray]:
        try:
            with np.load(self.dir / "early.npz") as f:
                return {k: f[k] for k in f.files}
        except Exception as exc:
            raise UserError(f"early experience {self.dir / 'early.npz'} is unreadable ({type(exc).__name__}); delete {self.dir} to retrain the expert") from None

    def mean_return(self, policy: str) -> float:
        return float(self.returns[policy]["mean"])


def sac_policy(model) -> PolicyFn:
    """The deterministic action of an SB3 SAC model for a batch of states, in env units.

    SAC's deterministic action is ``tanh(mu(latent_pi(s)))`` rescaled to the action box. It is
    evaluated with torch's functional ops on the actor's weights: at collection batch sizes
    (16-64 states) the per-module dispatch of ``actor(...)`` costs more than the arithmetic
    (numpy is no better here: its BLAS threads collapse when another job shares the cores). The
    result equals ``model.predict(s, deterministic=True)`` (``tests/test_experts.py``).
    """
    actor = model.actor
    layers = [m for m in actor.latent_pi if isinstance(m, torch.nn.Linear)]
    if actor.use_sde or len(layers) != sum(isinstance(m, torch.nn.ReLU) for m in actor.latent_pi):
        raise ValueError("sac_policy expects SB3's default SAC actor: Linear+ReLU layers, no gSDE")
    weights = [(lin.weight.detach().clone(), lin.bias.detach().clone()) for lin in [*layers, actor.mu]]
    low = model.action_space.low.astype(np.float32)
    high = model.action_space.high.astype(np.float32)

    def act(states: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            x = torch.from_numpy(np.asarray(states, dtype=np.float32))
            for w, b in weights[:-1]:
                x = torch.relu(torch.nn.functional.linear(x, w, b))
            scaled = torch.tanh(torch.nn.functional.linear(x, *weights[-1])).numpy()
        return low + 0.5 * (scaled + 1.0) * (high - low)

    return act


def load_expert(recipe: Recipe) -> Expert | None:
    """The finished expert of ``recipe``, or ``None`` if it has not been trained yet."""
    d = expert_dir(recipe)
    try:
        returns = json.loads((d / "returns.json").read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        raise UserError(f"expert cache {d / 'returns.json'} is corrupt; delete {d} to retrain it") from None
    if returns.get("expert_fingerprint") != recipe.expert_fingerprint:
        raise UserError(f"expert cache {d} was made by a different recipe; delete it to retrain")
    return Expert(d, returns)


def train_expert(recipe: Recipe, progress: bool = True, log: Callable[[str], None] = print) -> Expert:
    """Train (or resume, or reuse) the expert of ``recipe`` and measure its reference returns."""
    done = load_expert(recipe)
    if done is not None:
        return done
    task = get_task(recipe.task)
    d = expert_dir(recipe)
    with exclusive_lock(d.parent / f".{d.name}.lock", f"the {task.name} expert"):
        done = load_expert(recipe)  # another process may have finished it while we waited
        if done is not None:
            return done
        write_json(d / "recipe.json", {"expert_fingerprint": recipe.expert_fingerprint, "recipe": recipe.as_dict()})
        started = time.perf_counter()
        _train_segments(task, recipe, d / "training", progress, log)
        train_wall = time.perf_counter() - started
        log(f"[{task.name}] evaluating random, intermediate and expert policies on {recipe.eval_episodes} seeds")
        returns = _reference_returns(task, recipe, d)
        returns.update(
            expert_fingerprint=recipe.expert_fingerprint,
            recipe=recipe.as_dict(),
            versions=versions(),
            train_wall_s=round(train_wall, 1),
        )
        write_json(d / "returns.json", returns)
        shutil.rmtree(d / "training", ignore_errors=True)  # the replay buffer is no longer needed
        return load_expert(recipe)  # what is on disk, exactly as a later run will see it


def _segment_ends(e) -> list[int]:
    ends = set(range(e.checkpoint_every, e.total_steps, e.checkpoint_every))
    ends |= {e.early_steps, e.intermediate_step, e.total_steps}
    return sorted(ends)


def _train_segments(task: Task, recipe: Recipe, state_dir: Path, progress: bool, log) -> None:
    from stable_baselines3 import SAC
    from stable_baselines3.common.callbacks import BaseCallback
    from tqdm.auto import tqdm

    e = recipe.expert
    out = state_dir.parent
    if all((out / f).exists() for f in ("early.npz", "intermediate.zip", "expert.zip")):
        return  # training finished earlier; only the evaluation was missing
    torch.set_num_threads(e.torch_threads)
    state_file = state_dir / "state.json"
    at = json.loads(state_file.read_text())["num_timesteps"] if state_file.exists() else 0
    if at:
        log(f"[{task.name}] resuming SAC training at step {at:,} of {e.total_steps:,}")
    else:
        log(f"[{task.name}] training the SAC joint expert for {e.total_steps:,} steps")

    bar = tqdm(total=e.total_steps, initial=at, desc=f"{task.name} SAC", unit="step", disable=None if progress else True, dynamic_ncols=True)

    class Bar(BaseCallback):
        def _on_step(self) -> bool:
            bar.update(1)
            return True

    try:
        for end in _segment_ends(e):
            if end <= at:
                continue
            if at == 0:
                model = SAC(
                    "MlpPolicy",
                    task.make_env(),
                    learning_rate=e.learning_rate,
                    buffer_size=e.total_steps,
                    learning_starts=e.learning_starts,
                    batch_size=e.batch_size,
                    policy_kwargs={"net_arch": list(e.net_arch)},
                    seed=derive_seed(recipe.seed, task.name, "sac-init"),
                    device="cpu",
                    verbose=0,
                )
            else:
                model = _load_state(state_dir, at, task)
            # Everything random in this segment depends only on (seed, segment start).
            model.set_random_seed(derive_seed(recipe.seed, task.name, "sac-segment", at))
            model._last_obs = None  # makes learn() reset the env with the seed just set
            model.learn(end - at, reset_num_timesteps=False, callback=Bar())
            at = end
            if at == e.early_steps:
                _save_early(model, task, out / "early.npz", e.early_steps)
            if at == e.intermediate_step:
                _save_model(model, out / "intermediate.zip")
            if at == e.total_steps:
                _save_model(model, out / "expert.zip")
            else:
                _save_state(model, state_dir, at)
    finally:
        bar.close()


def _save_model(model, target: Path) -> None:
    with atomic_path(target, suffix=".zip") as tmp:
        model.save(tmp)


def _save_state(model, state_dir: Path, at: int) -> None:
    """Model and replay buffer at step ``at``; ``state.json`` is switched to them last."""
    state_dir.mkdir(parents=True, exist_ok=True)
    _save_model(model, state_dir / f"model-{at}.zip")
    with atomic_path(state_dir / f"buffer-{at}.pkl", suffix=".pkl") as tmp:
        model.save_replay_buffer(tmp)
    write_json(state_dir / "state.json", {"num_timesteps": at})
    for old in state_dir.glob("*-*.*"):
        if old.stem.rsplit("-", 1)[-1] != str(at):
            old.unlink(missing_ok=True)


def _load_state(state_dir: Path, at: int, task: Task):
    from stable_baselines3 import SAC

    try:
        model = SAC.load(state_dir / f"model-{at}.zip", env=task.make_env(), device="cpu")
        model.load_replay_buffer(state_dir / f"buffer-{at}.pkl")
    except Exception as exc:
        raise UserError(f"saved SAC training state in {state_dir} is corrupt ({type(exc).__name__}); delete {state_dir.parent} to retrain") from None
    if model.num_timesteps != at:
        raise UserError(f"saved SAC training state in {state_dir} is inconsistent; delete {state_dir.parent} to retrain")
    return model


def _save_early(model, task: Task, target: Path, n: int) -> None:
    """SAC's first ``n`` transitions as flat arrays with episode boundaries.

    ``terminations`` marks the task ending; ``truncations`` marks every other cut: the time limit,
    a segment boundary (where training reset the environment) and the end of the window.
    """
    rb = model.replay_buffer
    obs = rb.observations[:n, 0].astype(np.float64)
    nxt = rb.next_observations[:n, 0].astype(np.float64)
    dones = rb.dones[:n, 0].astype(bool)
    timeouts = rb.timeouts[:n, 0].astype(bool)
    terminations = dones & ~timeouts
    truncations = timeouts.copy()
    discontinuous = np.zeros(n, dtype=bool)
    discontinuous[:-1] = np.any(nxt[:-1] != obs[1:], axis=1)
    truncations |= discontinuous & ~dones
    truncations[-1] |= not terminations[-1]
    actions = model.policy.unscale_action(rb.actions[:n, 0]).astype(np.float32)
    with atomic_path(target, suffix=".npz") as tmp:
        with open(tmp, "wb") as fh:
            np.savez(
                fh,
                observations=obs,
                next_observations=nxt,
                actions=actions,
                rewards=rb.rewards[:n, 0].astype(np.float64),
                terminations=terminations,
                truncations=truncations,
            )


def _reference_returns(task: Task, recipe: Recipe, d: Path) -> dict:
    from stable_baselines3 import SAC

    def summary(policy: PolicyFn) -> dict:
        r = evaluate(task, policy, recipe.eval_episodes, recipe.eval_seed)
        return {"mean": float(r.mean()), "std": float(r.std()), "returns": [float(x) for x in r]}

    out = {"eval_seeds": [recipe.eval_seed + k for k in range(recipe.eval_episodes)]}
    out["random"] = summary(random_policy(task, derive_seed(recipe.seed, task.name, "random-policy")))
    for which in POLICIES:
        out[which] = summary(sac_policy(SAC.load(d / f"{which}.zip", device="cpu")))
    return out
