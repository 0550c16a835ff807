"""One agent's offline data as flat transition arrays, the form every learner trains on."""

from __future__ import annotations

from typing import Collection, Iterable, NamedTuple

import numpy as np


class AgentData(NamedTuple):
    """Agent ``i``'s dataset B_i as flat arrays (``N`` transitions).

    Attributes:
        observations: ``(N, state_dim)`` float32, the full state s.
        actions: ``(N, action_dim_i)`` float32, agent i's own action a_i (never the others').
        rewards: ``(N,)`` float32, the shared reward r.
        next_observations: ``(N, state_dim)`` float32, s'.
        terminals: ``(N,)`` float32, 1 where the task ended at s' (no bootstrapping); 0 for a
            time-limit or budget cut, where s' is a real state with a future.
        episode_returns: ``(E,)`` float64, the undiscounted return of each complete episode
            (reset to termination or the time limit; not the pieces cut at a part's end), or
            ``None`` where the episodes are not known. What IQL scales its rewards by.
    """

    observations: np.ndarray
    actions: np.ndarray
    rewards: np.ndarray
    next_observations: np.ndarray
    terminals: np.ndarray
    episode_returns: np.ndarray | None = None

    @property
    def size(self) -> int:
        """Number of transitions (``len()`` of a NamedTuple is its field count, so not that)."""
        return len(self.rewards)

    @classmethod
    def from_episodes(cls, episodes: Iterable, incomplete: Collection[int] = ()) -> "AgentData":
        """Flatten episodes with Minari's fields (``observations`` of length T+1, ``actions``,
        ``rewards``, ``terminations`` of length T) into transitions; ``incomplete`` are the
        indices of the episodes cut short (the metadata's ``incomplete_episodes``), left out of
        ``episode_returns``."""
        obs, act, rew, nxt, term = [], [], [], [], []
        returns, cut = [], set(incomplete)
        for k, ep in enumerate(episodes):
            o = np.asarray(_field(ep, "observations"))
            obs.append(o[:-1])
            nxt.append(o[1:])
            act.append(np.asarray(_field(ep, "actions")))
            rew.append(np.asarray(_field(ep, "rewards")))
            term.append(np.asarray(_field(ep, "terminations")))
            if k not in cut:
                returns.append(float(np.sum(rew[-1], dtype=np.float64)))
        if not obs:
            raise ValueError("no episodes")
        f32 = np.float32
        return cls(
            np.concatenate(obs).astype(f32),
            np.concatenate(act).astype(f32),
            np.concatenate(rew).astype(f32),
            np.concatenate(nxt).astype(f32),
            np.concatenate(term).astype(f32),
            np.asarray(returns, dtype=np.float64),
        )


def _field(episode, name: str):
    return episode[name] if isinstance(episode, dict) else getattr(episode, name)
