"""The report layer: from run records to tables, plots, statistics and the CI gate.

``records`` (read and check a results store) → ``aggregate`` (mean ± std; IQM, probability of
improvement and performance profiles with stratified-bootstrap intervals; Holm's adjustment) →
``tables`` → ``plots``, ``separation`` (where algorithms separate over training, Holm-adjusted)
``improvement`` (P(A better than B) of the compared pairs), ``budget`` (where the score and Q̂
stop moving; ``study`` turns a budget study's into learners' own budgets) and ``decentralization`` (a board's centralized reference minus its decentralized
runs) → ``leaderboard`` (writes a tier's
Markdown, CSV and PNGs); ``readme`` puts a board's table into a README's marked block;
``regress`` compares a sweep's scores and training metrics with the committed reference.

Records are plain JSON: this layer reads them and never trains anything. May import:
``mabcq_bench.errors``, ``mabcq_bench.util`` and modules of this package. Never the data, the
algorithms, the runs or the CLI (the CLI hands it the records).
"""
