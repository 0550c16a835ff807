"""The run layer: one scoring protocol for every algorithm, a resumable results store, executors.

``protocol`` (the tier files under ``baselines/``) → ``plan`` (run specs resolved against the
protocol and the datasets; where records go) → ``learn`` (each agent trains on its own dataset;
the joint decentralized policy is evaluated) → ``execute`` (one run, checkpointed, to its record)
→ ``executors`` (a local process pool; ``ray`` on a cluster) → ``sweep`` (every run without a
record); ``cost`` prices a plan from recorded runs' wall times (``run --dry-run``).

May import: ``mabcq_bench.data``, ``mabcq_bench.algos``, ``mabcq_bench.errors``,
``mabcq_bench.util`` and modules of this package. Never the reports or the CLI.
"""
