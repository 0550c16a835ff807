"""Stacking G agents' learners into one learner whose update is one batched computation.

A run's agents have independent learners of one algorithm and one config (their seeds differ).
On a GPU each agent's small update is bound by kernel launches; stacked, every layer of every
network is one call for all the agents (:mod:`mabcq_bench.algos.common.nets`: weights
``(G·heads, in, out)``, inputs with a leading group dim). A learner class stacks when its update
is written for that group dim (``TorchLearner.stacks``; ``mabcq.MABCQ``), a lone learner being
the case G = 1.

What each agent keeps, so that its numbers are its lone learner's (to float rounding) and never
depend on another agent's:

* its parameters: group g of every stacked net starts as a copy of agent g's;
* its optimizer state: Adam's moments are per element, so agent g's are the group-g rows of the
  stack's (the step counts are equal, as all agents step together);
* its random streams: the stack draws group g's noise from agent g's own ``train`` generator
  (the same object, so it advances exactly as agent g's lone training would advance it);
* its data: the stack's update takes one minibatch per agent.

The agents' lone learners stay the objects that act, value and checkpoint: :func:`unstack`
copies the stack's values back into them (the trainer does so before every evaluation and
checkpoint), so checkpoints keep the per-agent format.
"""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING, Sequence, TypeVar

import torch

from mabcq_bench.algos.common import nets
from mabcq_bench.algos.common.configs import config_dict
from mabcq_bench.algos.common.optim import Adam

if TYPE_CHECKING:  # the learner module imports this one
    from mabcq_bench.algos.common.learner import TorchLearner

L = TypeVar("L", bound="TorchLearner")


def stack(cls: type[L], learners: Sequence[L]) -> L:
    """A learner of class ``cls`` with ``len(learners)`` groups, group g starting from
    ``learners[g]`` (lone learners of ``cls`` with one config, device and update count).

    Raises:
        ValueError: learners that cannot be stacked together.
    """
    if not learners:
        raise ValueError("stack: no learners")
    first = learners[0]
    for other in learners:
        if type(other) is not cls or other.members is not None:
            raise ValueError(f"stack: every learner must be a lone {cls.__name__}")
        if config_dict(other.config) != config_dict(first.config) or other.device != first.device:
            raise ValueError("stack: the learners must share one config and device")
        if other.updates != first.updates or any(other.optimizers[k].steps != o.steps for k, o in first.optimizers.items()):
            raise ValueError("stack: the learners must have taken the same number of updates")
    stacked = copy.copy(first)  # config, sizes and device; everything else is replaced below
    stacked.members = list(learners)
    stacked.seed = None  # type: ignore[assignment]  # each group's seed is its member's
    stacked.generators = {}  # each group's streams are its member's (group_generators)
    stacked._captured, stacked._warmups = None, 0  # a member's CUDA graph updates that member alone
    stacked.modules = {key: nets.stack([l.modules[key] for l in learners]) for key in first.modules}
    # An optimizer steps the flat tensors of some nets: find each one's place (module, net) so
    # that the stack's optimizer steps the stacked net in its place.
    place = {id(net.flat): (key, j) for key, module in first.modules.items() for j, net in enumerate(nets.nets_of(module))}
    stacked.optimizers, stacked._stacked_nets = {}, {}
    for name, lone in first.optimizers.items():
        stacked_nets = [nets.nets_of(stacked.modules[key])[j] for key, j in (place[id(p)] for p in lone.params)]
        opt = Adam([(net.flat, net.flat_grad) for net in stacked_nets], lone.lr, lone.betas, lone.eps)
        opt.steps = lone.steps
        with torch.no_grad():
            for i, net in enumerate(stacked_nets):
                opt.exp_avg[i].copy_(net.from_group_rows(torch.stack([l.optimizers[name].exp_avg[i] for l in learners])))
                opt.exp_avg_sq[i].copy_(net.from_group_rows(torch.stack([l.optimizers[name].exp_avg_sq[i] for l in learners])))
        stacked.optimizers[name], stacked._stacked_nets[name] = opt, stacked_nets
    return stacked


@torch.no_grad()
def unstack(stacked: TorchLearner) -> None:
    """Write a stack's values into its members: networks, Adam moments and step counts, update
    count (their generators are theirs already). Each member is then the learner its lone
    training would have made (to float rounding), to act, value or save."""
    members = stacked.members or []
    for key, module in stacked.modules.items():
        nets.unstack(module, [member.modules[key] for member in members])
    for name, opt in stacked.optimizers.items():
        for i, net in enumerate(stacked._stacked_nets[name]):
            for moments, attr in ((opt.exp_avg[i], "exp_avg"), (opt.exp_avg_sq[i], "exp_avg_sq")):
                for member, row in zip(members, net.group_rows(moments)):
                    getattr(member.optimizers[name], attr)[i].copy_(row)
        for member in members:
            member.optimizers[name].steps = opt.steps
    for member in members:
        member.updates = stacked.updates
