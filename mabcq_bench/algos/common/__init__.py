"""What the learners share, a layer below them: the batch type and the learner interface
(``batch``), networks (``nets``), their flat parameters, target copies and Polyak updates
(``params``), Adam (``optim``), the ``TorchLearner`` base with seeding and checkpoints
(``learner``), configs as plain values (``configs``), thread and allocator settings
(``process``), stacking G agents' learners into one batched update (``stacking``), an update
captured in a CUDA graph (``graphs``), and state and reward normalization (``normalize``).

May import: ``mabcq_bench.data``, ``mabcq_bench.errors``, ``mabcq_bench.util`` and modules of
this subpackage. Never a learner, the registry (``mabcq_bench.algos``), the runs, reports or
the CLI.
"""
