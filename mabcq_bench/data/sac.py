"""Training the joint SAC expert in resumable segments (Stable-Baselines3), for
:func:`mabcq_bench.data.experts.train_expert`.

A training folder holds a checkpoint per segment (``checkpoints/step-<N>.zip``), each
checkpoint's return on the checkpoint-selection seeds (``evals.json``), and the model and replay
buffer to resume from (``state.json``, ``resume/``). Every segment reseeds every generator from
(seed, segment start), so a killed and resumed run computes what an uninterrupted one does.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import torch

from mabcq_bench.data.exact import Actor
from mabcq_bench.data.recipes import Recipe
from mabcq_bench.data.rollout import PolicyFn, evaluate
from mabcq_bench.data.tasks import Task
from mabcq_bench.errors import UserError
from mabcq_bench.util import atomic_path, bars_fit, derive_seed, write_json


def sac_policy(model) -> PolicyFn:
    """The deterministic action of an SB3 SAC model for a batch of states, in env units,
    computed with :mod:`mabcq_bench.data.exact` (equal to ``model.predict(s, deterministic=True)``
    up to float32 rounding; ``tests/test_experts.py``)."""
    return Actor.from_sb3(model).deterministic


def _segment_ends(e) -> list[int]:
    return list(range(e.checkpoint_every, e.total_steps + 1, e.checkpoint_every))


def checkpoint_path(training: Path, step: int) -> Path:
    return training / "checkpoints" / f"step-{step:08d}.zip"


def read_evals(training: Path) -> dict[int, dict]:
    path = training / "evals.json"
    return {int(k): v for k, v in json.loads(path.read_text()).items()} if path.exists() else {}


def reached(recipe: Recipe, evals: dict[int, dict]) -> int | None:
    """The first evaluated checkpoint past the early window that reaches the target, if any."""
    e = recipe.expert
    if e.target_return is None:
        return None
    hits = [s for s, r in sorted(evals.items()) if s >= e.early_steps and r["mean"] >= e.target_return]
    return hits[0] if hits else None


def train_segments(task: Task, recipe: Recipe, training: Path, progress: bool, log) -> None:
    """Train SAC in ``training/`` from where it stopped until ``total_steps`` or the target."""
    from stable_baselines3 import SAC
    from stable_baselines3.common.callbacks import BaseCallback
    from stable_baselines3.common.logger import Logger
    from tqdm.auto import tqdm

    e = recipe.expert
    state_file = training / "state.json"
    state = json.loads(state_file.read_text()) if state_file.exists() else {"num_timesteps": 0, "train_wall_s": 0.0}
    at = state["num_timesteps"]
    evals = read_evals(training)
    if at >= e.total_steps or reached(recipe, evals) is not None:
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
            with atomic_path(checkpoint_path(training, at), suffix=".zip") as tmp:
                model.save(tmp)
            r = evaluate(task, sac_policy(model), recipe.eval_episodes, recipe.eval_seed)
            evals[at] = {"mean": float(r.mean()), "std": float(r.std())}
            write_json(training / "evals.json", {str(k): v for k, v in sorted(evals.items())})
            state = {"num_timesteps": at, "train_wall_s": state["train_wall_s"] + time.perf_counter() - started}
            _save_state(model, training, state)
            bar.set_postfix_str(f"return {evals[at]['mean']:.0f}")
            if bar.disable and progress:  # no terminal (a log file, a 0-column terminal): one line per checkpoint
                log(f"[{task.name}] step {at:,}: return {evals[at]['mean']:.1f} ± {evals[at]['std']:.1f}")
            if reached(recipe, evals) is not None:
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
        model = SAC.load(checkpoint_path(training, at), env=task.make_env(), device="cpu")
        model.load_replay_buffer(training / "resume" / f"buffer-{at}.pkl")
    except Exception as exc:
        raise UserError(f"saved SAC training state in {training} is corrupt ({type(exc).__name__}); delete {training.parent} to retrain") from None
    if model.num_timesteps != at:
        raise UserError(f"saved SAC training state in {training} is inconsistent; delete {training.parent} to retrain")
    return model
