"""What the learners share, a layer below them: networks (``nets``) and state and reward
normalization (``normalize``).

May import: ``mabcq_bench.data``, ``mabcq_bench.errors``, ``mabcq_bench.util`` and modules of
this subpackage. Never a learner, the registry (``mabcq_bench.algos``), the runs, reports or
the CLI.
"""
