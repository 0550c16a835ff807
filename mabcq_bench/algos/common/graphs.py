"""One learner's update captured in a CUDA graph and replayed.

On a GPU an update of these small networks is bound by kernel launches: an eager MABCQ update
launches several hundred kernels, each doing microseconds of work (measured on an H100: 13.2 ms
eager, 1.39 ms replayed; ``mabcq-bench bench --device cuda``). A CUDA graph records the launches
once and replays them as one.

What a replay must reproduce, and how:

* its inputs: the minibatch is copied into the graph's own input tensors before each replay;
* its random numbers: each group's ``train`` generator is registered with the graph, so a replay
  draws from where the generator stands and advances it as the eager update would;
* Adam's step count: the optimizers step with the count and its bias corrections on the device
  (:meth:`~mabcq_bench.algos.common.optim.Adam.capturable`), the Python counts advancing beside it;
* the update count: the learner's ``updates`` is advanced as the eager update advances it.

A graph is captured once the update has the form it keeps (after the learner's pretraining,
``TorchLearner.eager_updates``), after a few eager updates of the learner object on a side
stream (also after a resume) that warm up what capture cannot allocate (cuBLAS workspaces,
autograd's streams). Those are real updates of the run; capture records and does not compute,
so the first replay makes the capturing update.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable

import torch
from torch import Tensor

from mabcq_bench.algos.common.batch import Batch

if TYPE_CHECKING:
    from mabcq_bench.algos.common.learner import TorchLearner

#: Eager updates on a side stream before capture.
WARMUP = 3


class CapturedUpdate:
    """``learner._update`` for minibatches shaped like ``example``, as a CUDA graph."""

    def __init__(self, learner: "TorchLearner", update: Callable[["Batch"], dict[str, Tensor]], example: "Batch") -> None:
        self.learner = learner
        self.inputs = Batch(*(t.clone() for t in example))
        for opt in learner.optimizers.values():
            opt.capturable()
        self.graph = torch.cuda.CUDAGraph()
        for gen in {id(g): g for g in learner.group_generators("train")}.values():
            self.graph.register_generator_state(gen)
        updates, steps = learner.updates, {name: opt.steps for name, opt in learner.optimizers.items()}
        with torch.cuda.graph(self.graph):
            self.logs = update(self.inputs)
        # Capture ran the update's Python (counts advanced) but none of its kernels: put the
        # counts back, and have every replay, the first one included, advance them as it did.
        self.advance = learner.updates - updates, {name: opt.steps - steps[name] for name, opt in learner.optimizers.items()}
        learner.updates = updates
        for name, opt in learner.optimizers.items():
            opt.steps = steps[name]

    def __call__(self, batch: "Batch") -> dict[str, Tensor]:
        for mine, theirs in zip(self.inputs, batch):
            mine.copy_(theirs)
        self.graph.replay()
        self.learner.updates += self.advance[0]
        for name, opt in self.learner.optimizers.items():
            opt.steps += self.advance[1][name]
        return self.logs


def run_update(learner: "TorchLearner", update: Callable[["Batch"], dict[str, Tensor]], batch: "Batch") -> dict[str, Tensor]:
    """One update of ``learner`` on ``batch``: eager, or through its captured graph where the
    learner captures (``learner.cuda_graph``, on a CUDA device) and its update has its lasting form."""
    captured: CapturedUpdate | None = learner._captured
    if captured is not None and all(a.shape == b.shape for a, b in zip(captured.inputs, batch)):
        return captured(batch)
    if not (learner.cuda_graph and learner.captures and learner.device.type == "cuda") or learner.updates < learner.eager_updates():
        return update(batch)
    if learner._warmups < WARMUP:  # warm-up, of this object: eager, on a side stream
        learner._warmups += 1
        side = torch.cuda.Stream(learner.device)
        side.wait_stream(torch.cuda.current_stream(learner.device))
        with torch.cuda.stream(side):
            logs = update(batch)
        torch.cuda.current_stream(learner.device).wait_stream(side)
        return logs
    learner._captured = CapturedUpdate(learner, update, batch)
    return learner._captured(batch)
