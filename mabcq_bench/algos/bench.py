"""Speed of one training update of BCQ and MABCQ at Table 6's sizes (paper Appendix C), and of
a whole task's agents for every algorithm.

The paper reports 10 ms (BCQ) and 18 ms (MABCQ) per update on a GTX 1080Ti for HalfCheetah
(batch 1024, MLP (64, 64), n = 10, state 17, action 3). :func:`bench_update` times both updates
on this machine, counts the update's floating-point work analytically (the matmuls of the
forward and backward passes, as the learner performs them) and sets the achieved rate beside the
machine's own fp32 matmul peak, so a reader sees how close to the hardware limit the update runs.

``joint`` is what a run pays per update step: every agent of a task updates once, each its own
learner on its own batch (the task's real state and action sizes). ``joint_stacked`` is the same
step for the algorithms that stack (``AlgoSpec.stacks``), the agents' learners stacked into one
batched update as ``mabcq-bench run --stack-agents`` does; each is timed in blocks alternating
with its ``joint`` figure, so both see the same load on the machine. ``adam`` keeps the reason
for the project's own Adam on record: its step beside ``torch.optim.Adam(fused=True)`` on the
same flat parameters.
"""

from __future__ import annotations

import os
import statistics
import time
from dataclasses import dataclass
from typing import Any, Sequence

import torch

from mabcq_bench.algos import ALGOS, Batch, MABCQConfig
from mabcq_bench.algos.common.process import torch_threads, tune_malloc
from mabcq_bench.data.tasks import TASKS, Task
from mabcq_bench.errors import UserError

#: HalfCheetah's sizes in Table 6 (the paper's Table 5 row we compare with).
STATE_DIM, ACTION_DIM = 17, 3


@dataclass(frozen=True)
class _Layer:
    """One batched matmul of a forward pass and which gradients its backward computes."""

    rows: int  # M
    fan_in: int  # K
    fan_out: int  # N
    heads: int
    weight_grad: bool
    input_grad: bool

    def flops(self, backward: bool) -> int:
        f = 2 * self.heads * self.rows * self.fan_in * self.fan_out
        return f * (1 + self.weight_grad + self.input_grad) if backward else f


def _mlp(
    state_rows: int,
    sample_rows: int,
    cond_dim: int,
    x_dim: int,
    hidden: Sequence[int],
    out_dim: int,
    *,
    heads: int = 1,
    weight_grad: bool,
    x_grad: bool = False,
) -> list[_Layer]:
    """The matmuls of ``nets.MLP``: the first layer split into its condition part (one row per
    state) and its input part (one row per sample), then the other layers on the sample rows.
    Conditions (states) never need a gradient here."""
    layers = [_Layer(state_rows, cond_dim, hidden[0], heads, weight_grad, False)]
    if x_dim:
        layers.append(_Layer(sample_rows, x_dim, hidden[0], heads, weight_grad, x_grad))
    dims = [*hidden, out_dim]
    downstream = weight_grad or x_grad  # does anything before these layers need a gradient?
    layers += [_Layer(sample_rows, i, o, heads, weight_grad, downstream) for i, o in zip(dims[:-1], dims[1:])]
    return layers


def update_flops(config: MABCQConfig, state_dim: int = STATE_DIM, action_dim: int = ACTION_DIM) -> int:
    """Floating-point operations of one :class:`~mabcq_bench.algos.MABCQ` update (any of its
    ablations), counting the matmuls of the forward and backward passes as the learner runs them."""
    c, b, n, h, z = config, config.batch_size, config.n_actions, config.hidden, config.latent_dim
    s, a = state_dim, action_dim
    trained: list[_Layer] = []  # forward and backward
    forward_only: list[_Layer] = []

    # 1. VAEs: encoders (s[, s'], a) -> (μ, log σ); decoders (s[, s'], z) -> a, z carries a gradient.
    vaes = [s] + ([2 * s] if c.use_tn else [])
    for cond in vaes:
        trained += _mlp(b, b, cond, a, h, 2 * z, weight_grad=True)
        trained += _mlp(b, b, cond, z, h, a, weight_grad=True, x_grad=True)
    # 2. Target pass: G¹ decodes n actions per s', ξ̂ perturbs them, the twin Q̂ values them
    #    (and (s, a) too when λ_vd needs E).
    forward_only += _mlp(b, b * n, s, z, h, a, weight_grad=False)
    forward_only += _mlp(b, b * n, s, a, h, a, weight_grad=False)
    q_states, q_rows = (2 * b, b * (n + 1)) if c.use_vd else (b, b * n)
    forward_only += _mlp(q_states, q_rows, s, a, h, 1, heads=2, weight_grad=False)
    # 3. Critic on (s, a).
    trained += _mlp(b, b, s, a, h, 1, heads=2, weight_grad=True)
    # 4. ξ: G¹ samples one action per s (no gradient), ξ perturbs it, Q1 (frozen) values it.
    if c.xi_actions == "vae":
        forward_only += _mlp(b, b, s, z, h, a, weight_grad=False)
    trained += _mlp(b, b, s, a, h, a, weight_grad=True)
    trained += _mlp(b, b, s, a, h, 1, weight_grad=False, x_grad=True)
    return sum(l.flops(True) for l in trained) + sum(l.flops(False) for l in forward_only)


def matmul_peak_gflops(device: torch.device, repeats: int = 5) -> float:
    """This machine's fp32 matmul rate: the median of ``repeats`` timings of one large square
    matmul (2048² on CPU, 8192² on GPU)."""
    n = 8192 if device.type == "cuda" else 2048
    gen = torch.Generator(device=device).manual_seed(0)
    x = torch.randn(n, n, device=device, generator=gen)
    y = torch.randn(n, n, device=device, generator=gen)
    out = torch.empty(n, n, device=device)
    times = []
    for i in range(repeats + 2):
        _sync(device)
        t = time.perf_counter()
        torch.mm(x, y, out=out)
        _sync(device)
        if i >= 2:  # the first two warm up
            times.append(time.perf_counter() - t)
    return 2 * n**3 / statistics.median(times) / 1e9


def bench_update(
    device: str = "cpu",
    repeats: int = 7,
    updates: int = 10,
    threads: int | None = None,
    tasks: Sequence[Task] | None = None,
) -> dict[str, Any]:
    """Time one update of ``bcq`` and ``mabcq`` at Table 6's sizes.

    Calls :func:`~mabcq_bench.algos.common.process.tune_malloc` first, as the trainer does.

    The two learners alternate, ``repeats`` blocks of ``updates`` updates each, on a fixed random
    batch; each figure is the median over blocks (robust to other work on the machine).

    Args:
        device: torch device.
        repeats: timed blocks per algorithm.
        updates: updates per block.
        threads: torch CPU threads (``None``: leave torch's setting, all cores by default).
        tasks: the tasks of ``joint`` (``None``: all).

    Returns:
        ``bcq_ms``, ``mabcq_ms``, ``ratio`` (MABCQ/BCQ), ``gflops`` (MABCQ's update), ``peak_gflops``,
        ``graphed_ms`` (on cuda: ``bcq`` and ``mabcq`` replayed from a CUDA graph; else empty),
        ``joint`` (task -> algorithm -> ms of one update of all the task's agents),
        ``joint_stacked`` (the same, stacked, for the algorithms that stack), ``joint_graphed``
        (on cuda: stacked and replayed from a CUDA graph), ``seeds_graphed`` (on cuda: the
        agents of 5 seeds in one graphed stack, ms per seed), ``adam``
        (µs of one step of the critic's optimizer: ``ours`` and ``torch_fused``), and for
        context ``bcq_gflops``, ``bcq_gflop``/``mabcq_gflop`` (work per update), ``device``,
        ``threads``, ``repeats``, ``load_avg`` (1-minute load average before the run, where the OS
        reports it: other work on the machine inflates CPU timings).
    """
    try:
        dev = torch.device(device)
    except RuntimeError:
        raise UserError(f"unknown device {device!r}; e.g. cpu, cuda, cuda:1") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise UserError("--device cuda: no CUDA device is available to torch here")
    if repeats < 1 or updates < 1:
        raise UserError("--repeats must be at least 1")
    load_avg = round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None  # before we add to it
    tune_malloc()
    with torch_threads(threads):
        result = _bench(dev, repeats, updates)
        result["joint"], result["joint_stacked"], result["joint_graphed"], result["seeds_graphed"] = bench_joint(dev, repeats, updates, list(TASKS.values()) if tasks is None else tasks)
        result["adam"] = bench_adam(dev, repeats)
        return {**result, "load_avg": load_avg}


def _random_batch(state_dim: int, action_dim: int, size: int, gen: torch.Generator, dev: torch.device) -> Batch:
    """A batch of uniform states and actions in [-1, 1], rewards in [0, 1] and 1 % terminals."""

    def rand(*shape: int) -> torch.Tensor:
        return torch.rand(*shape, generator=gen, device=dev)

    return Batch(rand(size, state_dim) * 2 - 1, rand(size, action_dim) * 2 - 1, rand(size), rand(size, state_dim) * 2 - 1, (rand(size) < 0.01).float())


def _median_ms(step: Any, repeats: int, updates: int, dev: torch.device) -> float:
    """Median over ``repeats`` blocks of the ms per call of ``step()``, ``updates`` calls a block."""
    return _interleaved_ms({"step": step}, repeats, updates, dev)["step"]


def _interleaved_ms(steps: dict[str, Any], repeats: int, updates: int, dev: torch.device) -> dict[str, float]:
    """For each of ``steps`` the median over ``repeats`` blocks of the ms per call, ``updates``
    calls a block; the steps' blocks alternate, so that each sees the same load on the machine."""
    times: dict[str, list[float]] = {name: [] for name in steps}
    for _ in range(repeats):
        for name, step in steps.items():
            _sync(dev)
            t = time.perf_counter()
            for _ in range(updates):
                step()
            _sync(dev)
            times[name].append((time.perf_counter() - t) / updates)
    return {name: round(statistics.median(t) * 1e3, 3) for name, t in times.items()}


#: Seeds in the seed-stacked figure of :func:`bench_joint` (a sweep's seeds per cell).
BENCH_SEEDS = 5

Table = dict[str, dict[str, float]]


def bench_joint(dev: torch.device, repeats: int, updates: int, tasks: Sequence[Task]) -> tuple[Table, Table, Table, Table]:
    """ms of one joint update step per task and algorithm: each agent's learner (seed = its
    index) takes one update on its own random batch, one agent after the other, as a run does.
    Reference rows, whose updates do nothing, are left out.

    Returns:
        ``joint`` (task -> algorithm -> ms), ``joint_stacked``: for the algorithms that stack
        on the task, the same step with the agents' learners stacked into one update, timed in
        blocks alternating with the ``joint`` ones, and ``joint_graphed`` (on a CUDA device, for
        the algorithms whose update captures; else empty): the stacked update replayed from a
        CUDA graph, as ``run --device cuda`` does, and ``seeds_graphed`` (likewise): the agents of
        :data:`BENCH_SEEDS` seeds in one graphed stack, as ``run --device cuda`` trains a cell's
        seeds (``--stack-seeds``), in ms per seed: what one run's update step costs there.
    """
    joint: dict[str, dict[str, float]] = {}
    stacked: dict[str, dict[str, float]] = {}
    graphed_all: dict[str, dict[str, float]] = {}
    seeds_all: dict[str, dict[str, float]] = {}
    for task in tasks:
        row: dict[str, float] = {}
        stacked_row: dict[str, float] = {}
        graphed_row: dict[str, float] = {}
        seeds_row: dict[str, float] = {}
        for name, spec in ALGOS.items():
            if not getattr(spec.learner, "trains", True):
                continue
            gen = torch.Generator(device=dev).manual_seed(0)
            config = spec.config(task)

            def agents(run: int = 0) -> list[Any]:
                return [spec.learner(task.state_dim, dim, config, seed=100 * run + i, device=dev) for i, dim in enumerate(task.action_dims)]

            learners = agents()
            batches = [_random_batch(task.state_dim, dim, config.batch_size, gen, dev) for dim in task.action_dims]
            steps = {"joint": lambda learners=learners, batches=batches: [l.train(b) for l, b in zip(learners, batches)]}
            if spec.stacks_on(task):
                stack = spec.learner.stack(agents())
                steps["stacked"] = lambda stack=stack, batches=batches: stack.train_stacked(batches)
                if dev.type == "cuda" and getattr(spec.learner, "captures", False):
                    graphed = spec.learner.stack(agents())
                    graphed.cuda_graph = True  # what `run --device cuda` does
                    steps["graphed"] = lambda graphed=graphed, batches=batches: graphed.train_stacked(batches)
                    seeds = spec.learner.stack([learner for run in range(BENCH_SEEDS) for learner in agents(run)])
                    seeds.cuda_graph = True
                    steps["seeds"] = lambda seeds=seeds, batches=batches * BENCH_SEEDS: seeds.train_stacked(batches)
            for _ in range(5):  # warm-up (and a graph's capture)
                for step in steps.values():
                    step()
            times = _interleaved_ms(steps, repeats, updates, dev)
            row[name] = times["joint"]
            if "stacked" in times:
                stacked_row[name] = times["stacked"]
            if "graphed" in times:
                graphed_row[name] = times["graphed"]
            if "seeds" in times:
                seeds_row[name] = round(times["seeds"] / BENCH_SEEDS, 3)
        joint[task.name] = row
        stacked[task.name] = stacked_row
        if graphed_row:
            graphed_all[task.name] = graphed_row
        if seeds_row:
            seeds_all[task.name] = seeds_row
    return joint, stacked, graphed_all, seeds_all


def bench_adam(dev: torch.device, repeats: int, steps: int = 50) -> dict[str, float]:
    """µs of one optimizer step on MABCQ's critic at Table 6's sizes (one flat tensor of
    parameters): this project's :class:`~mabcq_bench.algos.common.optim.Adam` and
    ``torch.optim.Adam(fused=True)``, which compute the same update."""
    learner = ALGOS["mabcq"].learner(STATE_DIM, ACTION_DIM, ALGOS["mabcq"].config(), seed=0, device=dev)
    ours = learner.optimizers["critic"]
    params = [torch.nn.Parameter(p.detach().clone()) for p in ours.params]
    for p, g in zip(params, ours.grads):
        p.grad = torch.randn_like(g)
        g.copy_(p.grad)
    theirs = torch.optim.Adam(params, lr=ours.lr, fused=True)
    result = {}
    for name, opt in (("ours", ours), ("torch_fused", theirs)):
        for _ in range(3):
            opt.step()
        result[name] = round(_median_ms(opt.step, repeats, steps, dev) * 1e3, 1)
    return result


def _bench(dev: torch.device, repeats: int, updates: int) -> dict[str, Any]:
    learners = {name: ALGOS[name].learner(STATE_DIM, ACTION_DIM, ALGOS[name].config(), seed=0, device=dev) for name in ("bcq", "mabcq")}
    config = learners["mabcq"].config
    gen = torch.Generator(device=dev).manual_seed(0)
    b = config.batch_size

    def rand(*shape: int) -> torch.Tensor:
        return torch.rand(*shape, generator=gen, device=dev)

    batch = Batch(rand(b, STATE_DIM) * 2 - 1, rand(b, ACTION_DIM) * 2 - 1, rand(b), rand(b, STATE_DIM) * 2 - 1, (rand(b) < 0.01).float())
    for learner in learners.values():
        for _ in range(5):
            learner.train(batch)
    times: dict[str, list[float]] = {name: [] for name in learners}
    for _ in range(repeats):
        for name, learner in learners.items():
            _sync(dev)
            t = time.perf_counter()
            for _ in range(updates):
                learner.train(batch)
            _sync(dev)
            times[name].append((time.perf_counter() - t) / updates)

    graphed: dict[str, float] = {}
    if dev.type == "cuda":  # the same updates replayed from CUDA graphs, as a cuda run does
        for name in ("bcq", "mabcq"):
            learner = ALGOS[name].learner(STATE_DIM, ACTION_DIM, ALGOS[name].config(), seed=0, device=dev)
            learner.cuda_graph = True
            for _ in range(5):  # warm-up and capture
                learner.train(batch)
            graphed[name] = _median_ms(lambda learner=learner: learner.train(batch), repeats, updates, dev)
    bcq_s, mabcq_s = statistics.median(times["bcq"]), statistics.median(times["mabcq"])
    bcq_flop = update_flops(learners["bcq"].config)
    mabcq_flop = update_flops(config)
    return {
        "bcq_ms": round(bcq_s * 1e3, 3),
        "mabcq_ms": round(mabcq_s * 1e3, 3),
        "ratio": round(mabcq_s / bcq_s, 3),
        "gflops": round(mabcq_flop / mabcq_s / 1e9, 1),
        "peak_gflops": round(matmul_peak_gflops(dev), 1),
        "bcq_gflops": round(bcq_flop / bcq_s / 1e9, 1),
        "bcq_gflop": round(bcq_flop / 1e9, 4),
        "mabcq_gflop": round(mabcq_flop / 1e9, 4),
        "graphed_ms": graphed,
        "device": str(dev),
        "threads": torch.get_num_threads(),
        "repeats": repeats,
    }


def format_report(result: dict[str, Any]) -> str:
    """The human-readable form of :func:`bench_update`'s result."""
    lines = [
        f"one update, Table 6 sizes (batch 1024, MLP (64, 64), n = 10, state {STATE_DIM}, action {ACTION_DIM}), "
        f"{result['device']}, {result['threads']} threads, median of {result['repeats']}:",
        f"  bcq    {result['bcq_ms']:8.2f} ms   {result['bcq_gflop']:.3f} GFLOP   {result['bcq_gflops']:6.1f} GFLOP/s",
        f"  mabcq  {result['mabcq_ms']:8.2f} ms   {result['mabcq_gflop']:.3f} GFLOP   {result['gflops']:6.1f} GFLOP/s",
        f"  mabcq/bcq {result['ratio']:.2f}   (paper, GTX 1080Ti: 18 ms / 10 ms = 1.8)",
        *([f"  replayed from a CUDA graph (what a cuda run does): bcq {result['graphed_ms']['bcq']:.2f} ms, mabcq {result['graphed_ms']['mabcq']:.2f} ms"] if result.get("graphed_ms") else []),
        f"  fp32 matmul peak of this machine: {result['peak_gflops']:.1f} GFLOP/s",
    ]
    joint = result.get("joint") or {}
    if joint:
        algos = list(next(iter(joint.values())))
        lines.append("one update of all a task's agents (ms), each agent on its own batch:")
        lines.append("  " + f"{'task':<12}" + "".join(f"{a:>13}" for a in algos))
        for task, row in joint.items():
            lines.append("  " + f"{task:<12}" + "".join(f"{row[a]:>13.2f}" for a in algos))
    for key, title in (
        ("joint_stacked", "the same with the agents stacked into one batched update (ms, and × the joint figure; --stack-agents):"),
        ("joint_graphed", "stacked and replayed from a CUDA graph (ms, and × the joint figure; what run --device cuda does):"),
        ("seeds_graphed", f"{BENCH_SEEDS} seeds' agents in one graphed stack, ms per seed (and × the joint figure; run --device cuda, --stack-seeds):"),
    ):
        lines += _beside_joint(title, result.get(key) or {}, joint)
    if "adam" in result:
        adam = result["adam"]
        lines.append(f"one Adam step of the critic: ours {adam['ours']:.1f} µs, torch.optim.Adam(fused=True) {adam['torch_fused']:.1f} µs")
    cores = os.cpu_count() or 1
    if result["device"] == "cpu" and result["load_avg"] is not None and result["load_avg"] > 0.5:
        hint = " (with more threads than free cores, try --threads 1)" if result["threads"] > 1 else ""
        lines.append(f"  note: 1-minute load average {result['load_avg']} on {cores} cores before the run: if other work shares the CPU, timings are inflated{hint}")
    return "\n".join(lines)


def _beside_joint(title: str, table: dict[str, dict[str, float]], joint: dict[str, dict[str, float]]) -> list[str]:
    """Report lines of a per-task table of ms beside the joint figures (nothing for an empty one)."""
    table = {task: row for task, row in table.items() if row}
    if not table:
        return []
    algos = list(next(iter(table.values())))
    lines = [title, "  " + f"{'task':<12}" + "".join(f"{a:>20}" for a in algos)]
    for task, row in table.items():
        lines.append("  " + f"{task:<12}" + "".join(f"{f'{row[a]:.2f} ({row[a] / joint[task][a]:.2f}×)':>20}" for a in algos))
    return lines


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
