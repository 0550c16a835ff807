"""The data layer: tasks, recipes, SAC experts and the per-agent Minari datasets.

``tasks`` (the registry of the four MaMuJoCo tasks) → ``recipes`` (tier files) → ``exact`` (SAC
actors with the same bits on every CPU) and ``rollout`` (batched episodes in the real task) →
``experts`` (train with ``sac``, ship, find the joint SAC experts; their ``references``) → ``mixture`` (the four parts of an agent's
data) → ``datasets`` (written as Minari datasets by ``store``, with their ``card``) → ``manifest`` (what the
published datasets must be); ``buffer`` is an agent's data as flat arrays, ``bench`` measures
collection.

May import: ``mabcq_bench.errors``, ``mabcq_bench.util`` and modules of this package. Never the
algorithms, runs, reports or the CLI.
"""
