"""SAC actors evaluated with the same bits on every x86-64 CPU.

The datasets must be identical wherever they are made, and MuJoCo turns a last-bit difference in
an action into another trajectory. torch, MKL and numpy pick their GEMM, ``tanh`` and ``exp``
kernels per CPU (AVX2, AVX-512, baseline SSE, with or without FMA), and those kernels sum in
different orders or round differently. So every number that reaches the simulator is computed
here from IEEE-754 operations whose result is defined to the last bit, whatever instructions
carry them out:

- elementwise ``+``, ``-``, ``*``, ``/`` on float64 arrays (each correctly rounded; numpy never
  fuses two of its calls into an FMA), ``maximum``, ``minimum``, ``rint``, ``ldexp`` (exact);
- matrix products as a fixed sequence of those: ``y = b + x[:, 0] w[0] + x[:, 1] w[1] + ...``,
  accumulated left to right (:func:`linear`), never a BLAS call;
- ``exp`` and ``tanh`` from range reduction and a polynomial in those operations (:func:`exp`,
  :func:`tanh`), never libm or a SIMD approximation. Their error is below 1e-15 relative: they
  define the policy, they do not need to match libm.

The weights are the actor's float32 parameters, widened to float64 (exact); states are the
environment's float64 observations. The Gaussian noise of the stochastic policy and of the data
comes from numpy's ``Generator`` (PCG64 and the ziggurat method: integer arithmetic and plain
comparisons; its rare ``exp``/``log`` calls decide an acceptance only when a uniform draw falls
within one unit in the last place of the threshold).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

_LN2_HI = 6.93147180369123816490e-01  # ln 2 with its last 32 bits zero: k * _LN2_HI is exact
_LN2_LO = 1.90821492927058770002e-10  # ln 2 - _LN2_HI
_INV_LN2 = 1.44269504088896338700e00
#: 1/k! for k = 0..13: the Taylor polynomial of exp on |r| <= ln(2)/2 (truncation error < 1e-17).
_EXP_COEFFS = tuple(1.0 / float(np.prod(np.arange(1, k + 1, dtype=np.float64))) for k in range(14))


def exp(x: np.ndarray) -> np.ndarray:
    """``e**x`` for float64 ``x`` in [-700, 700] (clipped there), bit-identical on every CPU."""
    x = np.minimum(np.maximum(np.asarray(x, dtype=np.float64), -700.0), 700.0)
    k = np.rint(x * _INV_LN2)
    r = (x - k * _LN2_HI) - k * _LN2_LO
    p = np.full_like(r, _EXP_COEFFS[-1])
    for c in _EXP_COEFFS[-2::-1]:
        p = p * r + c
    return np.ldexp(p, k.astype(np.int64))


def tanh(x: np.ndarray) -> np.ndarray:
    """``tanh(x)`` for float64 ``x``, bit-identical on every CPU: sign(x) (1 - t)/(1 + t), t = e^-2|x|."""
    x = np.asarray(x, dtype=np.float64)
    t = exp(-2.0 * np.abs(x))
    y = (1.0 - t) / (1.0 + t)
    return np.where(x < 0, -y, y)


def linear(x: np.ndarray, weight: np.ndarray, bias: np.ndarray) -> np.ndarray:
    """``x @ weight.T + bias`` for ``x (B, K)``, ``weight (N, K)``, summed over k in order.

    Each step multiplies a column of ``x`` by a row of ``weight.T`` and adds it to the running
    sum: elementwise operations only, so the result does not depend on the CPU's vector width.
    """
    wt = np.ascontiguousarray(weight.T, dtype=np.float64)
    acc = np.empty((x.shape[0], wt.shape[1]), dtype=np.float64)
    acc[:] = bias
    tmp = np.empty_like(acc)
    for k in range(wt.shape[0]):
        np.multiply(x[:, k : k + 1], wt[k], out=tmp)
        np.add(acc, tmp, out=acc)
    return acc


@dataclass(frozen=True)
class Actor:
    """The actor of an SB3 SAC ``MlpPolicy``: ReLU hidden layers, a mean head and a log-std head.

    ``layers`` are ``(weight (N, K), bias (N,))`` float64 pairs of the hidden layers; ``low`` and
    ``high`` are the action box the tanh output is rescaled to.
    """

    layers: tuple[tuple[np.ndarray, np.ndarray], ...]
    mu: tuple[np.ndarray, np.ndarray]
    log_std: tuple[np.ndarray, np.ndarray]
    low: np.ndarray
    high: np.ndarray

    #: SB3's clamp of the log standard deviation (``LOG_STD_MIN``, ``LOG_STD_MAX``).
    LOG_STD_RANGE = (-20.0, 2.0)

    @classmethod
    def from_sb3(cls, model) -> "Actor":
        """The actor of a loaded SB3 SAC model (default MlpPolicy, no gSDE)."""
        import torch

        actor = model.actor
        linears = [m for m in actor.latent_pi if isinstance(m, torch.nn.Linear)]
        relus = sum(isinstance(m, torch.nn.ReLU) for m in actor.latent_pi)
        if actor.use_sde or len(linears) != relus or len(linears) + relus != len(actor.latent_pi):
            raise ValueError("expected SB3's default SAC actor: Linear+ReLU layers, no gSDE")
        pair = lambda lin: (lin.weight.detach().double().numpy().copy(), lin.bias.detach().double().numpy().copy())  # noqa: E731
        return cls(
            tuple(pair(lin) for lin in linears),
            pair(actor.mu),
            pair(actor.log_std),
            model.action_space.low.astype(np.float64),
            model.action_space.high.astype(np.float64),
        )

    def to_arrays(self) -> dict[str, np.ndarray]:
        """Its weights as named arrays (for ``np.savez``); :meth:`from_arrays` reads them back."""
        out = {"low": self.low, "high": self.high}
        for i, (w, b) in enumerate(self.layers):
            out[f"layer{i}.weight"], out[f"layer{i}.bias"] = w, b
        out["mu.weight"], out["mu.bias"] = self.mu
        out["log_std.weight"], out["log_std.bias"] = self.log_std
        return out

    @classmethod
    def from_arrays(cls, arrays, prefix: str = "") -> "Actor":
        get = lambda name: np.asarray(arrays[prefix + name], dtype=np.float64)  # noqa: E731
        n = sum(1 for k in arrays if k.startswith(prefix + "layer") and k.endswith(".weight"))
        return cls(
            tuple((get(f"layer{i}.weight"), get(f"layer{i}.bias")) for i in range(n)),
            (get("mu.weight"), get("mu.bias")),
            (get("log_std.weight"), get("log_std.bias")),
            get("low"),
            get("high"),
        )

    def _latent(self, states: np.ndarray) -> np.ndarray:
        x = np.asarray(states, dtype=np.float64)
        for w, b in self.layers:
            x = np.maximum(linear(x, w, b), 0.0)
        return x

    def _rescale(self, squashed: np.ndarray) -> np.ndarray:
        return self.low + 0.5 * (squashed + 1.0) * (self.high - self.low)

    def deterministic(self, states: np.ndarray) -> np.ndarray:
        """SAC's deterministic action ``tanh(mu(s))`` in the action box, ``(B, action_dim)``."""
        return self._rescale(tanh(linear(self._latent(states), *self.mu)))

    def sample(self, states: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """SAC's stochastic action ``tanh(mu + std * eps)``, ``eps ~ N(0, I)`` from ``rng``."""
        latent = self._latent(states)
        mean = linear(latent, *self.mu)
        log_std = np.minimum(np.maximum(linear(latent, *self.log_std), self.LOG_STD_RANGE[0]), self.LOG_STD_RANGE[1])
        eps = rng.standard_normal(mean.shape)
        return self._rescale(tanh(mean + exp(log_std) * eps))
