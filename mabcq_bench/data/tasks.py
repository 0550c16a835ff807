"""The task registry: the four multi-agent MuJoCo tasks of the paper (Table 6).

Every task is a gymnasium-robotics MaMuJoCo partition of a v5 MuJoCo task. The *joint* task is
the underlying single-agent gymnasium environment (exactly the one MaMuJoCo wraps); every agent
observes its full state ``s`` (MaMuJoCo's ``state()``), the reward is shared, and agent ``i``
controls the joint actuators that MaMuJoCo's partition gives it. Stepping the joint environment
directly, with actions assembled by that partition, is what MaMuJoCo's ``step`` does, minus the
per-agent observation bookkeeping we do not use (``tests/test_tasks.py`` checks the equivalence).

Adding a task is one entry in :data:`TASKS`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import io
import sys
import warnings
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

import gymnasium as gym
import numpy as np

from mabcq_bench.errors import UserError

#: MuJoCo warnings that say nothing about our results (HalfCheetah's XML uses a deprecated
#: attribute); they are dropped, every other MuJoCo warning becomes a Python warning.
_HARMLESS_MUJOCO_WARNINGS = ("'settotalmass' is deprecated",)


def _forward_mujoco_warning(message: str) -> None:
    if not any(h in message for h in _HARMLESS_MUJOCO_WARNINGS):
        warnings.warn(f"MuJoCo: {message}", RuntimeWarning, stacklevel=2)


@functools.cache
def _quiet_simulator() -> None:
    """Route MuJoCo's warnings (printed to stderr and MUJOCO_LOG.TXT by default) through Python."""
    import mujoco

    mujoco.set_mju_user_warning(_forward_mujoco_warning)


@functools.cache
def _mamujoco():
    """gymnasium-robotics' MaMuJoCo, imported without its unrelated notice about Adroit tasks."""
    captured = io.StringIO()
    with contextlib.redirect_stderr(captured):
        import gymnasium_robotics  # noqa: F401  (registers the tasks; prints the notice)
    rest = "\n".join(line for line in captured.getvalue().splitlines() if "Adroit" not in line)
    if rest.strip():
        print(rest, file=sys.stderr)
    from gymnasium_robotics import mamujoco_v1
    from gymnasium_robotics.envs.multiagent_mujoco import obsk

    return mamujoco_v1, obsk


#: Per-agent values keyed by agent index, e.g. one action array per agent.
AgentActions = Sequence[np.ndarray]


@dataclass(frozen=True)
class Task:
    """One multi-agent task.

    Attributes:
        name: registry key used on the command line (``hopper``).
        scenario: MaMuJoCo scenario, also the gymnasium MuJoCo task name (``Hopper``).
        agent_conf: MaMuJoCo partition (``3x1``: three agents, one joint each).
        epsilon: the optimism level ε of Table 6 (clip range of λ_vd).
        env_kwargs: keyword arguments of ``gymnasium.make`` for the joint task.
        local_categories: MaMuJoCo observation categories; only needed where MaMuJoCo's default
            mapping breaks (Ant without contact forces).
        setting: ``decentralized`` (MaMuJoCo's agents, one per part of the partition) or
            ``centralized`` (one agent owning every joint: its action is the joint action); see
            :meth:`centralized` and :data:`SETTINGS`.
    """

    name: str
    scenario: str
    agent_conf: str
    epsilon: float
    env_kwargs: Mapping[str, Any] = field(default_factory=dict)
    local_categories: tuple[tuple[str, ...], ...] | None = None
    setting: str = "decentralized"

    @property
    def env_id(self) -> str:
        """The gymnasium id of the joint task, e.g. ``Hopper-v5``."""
        return f"{self.scenario}-v5"

    @functools.cached_property
    def partition(self) -> tuple[tuple[int, ...], ...]:
        """Joint-action indices controlled by each agent, in MaMuJoCo's order.

        ``partition[i][k]`` is the index in the joint action of agent ``i``'s ``k``-th action.
        In the centralized setting the one agent holds every index, in the joint action's order.
        """
        parts, _, _ = _mamujoco()[1].get_parts_and_edges(self.scenario, self.agent_conf)
        partition = tuple(tuple(int(node.act_ids) for node in part) for part in parts)
        if self.setting == "centralized":
            return (tuple(sorted(i for part in partition for i in part)),)
        return partition

    @functools.cached_property
    def agent_partition(self) -> tuple[tuple[int, ...], ...]:
        """MaMuJoCo's partition of the joint action among the task's agents, whatever the
        setting: what the joint datasets' ``agent_action_indices`` give."""
        return dataclasses.replace(self, setting="decentralized").partition

    def centralized(self) -> Task:
        """The same task with one agent owning every joint (the centralized reference): its
        policy maps the state to the whole joint action; evaluation, rewards and references are
        the joint task's, as in the decentralized setting."""
        return self.in_setting("centralized")

    def in_setting(self, setting: str) -> Task:
        """This task in ``setting`` (one of :data:`SETTINGS`).

        Raises:
            UserError: an unknown setting.
        """
        if setting not in SETTINGS:
            raise UserError(f"unknown setting {setting!r}; valid settings: {', '.join(SETTINGS)}")
        return self if setting == self.setting else dataclasses.replace(self, setting=setting)

    @property
    def n_agents(self) -> int:
        return len(self.partition)

    @property
    def action_dims(self) -> tuple[int, ...]:
        """Size of each agent's action."""
        return tuple(len(p) for p in self.partition)

    @property
    def joint_action_dim(self) -> int:
        return sum(self.action_dims)

    @functools.cached_property
    def state_dim(self) -> int:
        """Size of the full state every agent observes."""
        return int(self.make_env().observation_space.shape[0])

    def make_env(self, **kwargs: Any) -> gym.Env:
        """The joint task as a gymnasium environment (what MaMuJoCo wraps)."""
        _quiet_simulator()
        return gym.make(self.env_id, **{**self.env_kwargs, **kwargs})

    def env_spec(self) -> gym.envs.registration.EnvSpec:
        """The joint task's spec, with our kwargs; stored in every dataset for evaluation."""
        return self.make_env().spec

    def make_vector_env(self, num_envs: int) -> gym.vector.SyncVectorEnv:
        """``num_envs`` copies of the joint task stepped as one batch.

        Uses same-step autoreset, so every step of the vector env is a real transition and the
        final observation of an episode is in ``info["final_obs"]``.
        """
        return gym.vector.SyncVectorEnv(
            [functools.partial(self.make_env) for _ in range(num_envs)],
            autoreset_mode=gym.vector.AutoresetMode.SAME_STEP,
        )

    def make_mamujoco(self, **kwargs: Any):
        """The MaMuJoCo parallel env of this task (PettingZoo API).

        ``agent_obsk=0`` keeps the partition (``None`` would collapse it to one agent).
        """
        mamujoco_v1 = _mamujoco()[0]
        _quiet_simulator()
        extra: dict[str, Any] = {}
        if self.local_categories is not None:
            extra["local_categories"] = [list(c) for c in self.local_categories]
        return mamujoco_v1.parallel_env(
            self.scenario, self.agent_conf, agent_obsk=0, **extra, **{**self.env_kwargs, **kwargs}
        )

    def split(self, joint_action: np.ndarray) -> list[np.ndarray]:
        """Cut joint actions ``(..., joint_action_dim)`` into one array ``(..., a_i)`` per agent."""
        return [joint_action[..., list(p)] for p in self.partition]

    def assemble(self, actions: AgentActions) -> np.ndarray:
        """Put per-agent actions ``(..., a_i)`` together into joint actions ``(..., joint_dim)``."""
        if len(actions) != self.n_agents:
            raise ValueError(f"{self.name} has {self.n_agents} agents, got {len(actions)} actions")
        first = np.asarray(actions[0])
        joint = np.empty(first.shape[:-1] + (self.joint_action_dim,), dtype=first.dtype)
        for part, act in zip(self.partition, actions):
            joint[..., list(part)] = act
        return joint


#: How the joint is owned: ``decentralized`` (the benchmark: one learner per MaMuJoCo agent, each
#: on its own dataset) or ``centralized`` (the reference: one learner owning every joint, trained
#: on the joint-action dataset of the same transitions; what decentralization costs is the gap).
SETTINGS: dict[str, str] = {
    "decentralized": "one learner per agent, each on its own dataset (its own action only)",
    "centralized": "one learner owning every joint, on the joint-action dataset (the same transitions)",
}


#: The registry. Values of Table 6: agents, state size, action size per agent, ε.
TASKS: dict[str, Task] = {
    "halfcheetah": Task("halfcheetah", "HalfCheetah", "2x3", epsilon=0.80),
    "walker": Task("walker", "Walker2d", "2x3", epsilon=0.48),
    "hopper": Task("hopper", "Hopper", "3x1", epsilon=0.80),
    # Contact forces are left out so the state has 27 dimensions as in the paper; MaMuJoCo's
    # default observation mapping then indexes cfrc_ext and fails, hence local_categories.
    "ant": Task(
        "ant",
        "Ant",
        "4x2",
        epsilon=0.64,
        env_kwargs={"include_cfrc_ext_in_observation": False},
        local_categories=(("qpos", "qvel"),),
    ),
}


def get_task(name: str) -> Task:
    """Look a task up by name, with a one-line error listing the valid names."""
    try:
        return TASKS[name]
    except KeyError:
        raise UserError(f"unknown task {name!r}; valid tasks: {', '.join(TASKS)}") from None


def resolve_tasks(spec: str) -> list[Task]:
    """Parse ``all`` or a comma-separated list of task names (a repeated name counts once).

    Raises:
        UserError: an unknown name, or no name at all (``""``).
    """
    if spec == "all":
        return list(TASKS.values())
    names = dict.fromkeys(name.strip() for name in spec.split(",") if name.strip())  # in order, once each
    if not names:
        raise UserError(f"no task given ({spec!r}); give a name, a comma-separated list or 'all' (valid tasks: {', '.join(TASKS)})")
    return [get_task(name) for name in names]
