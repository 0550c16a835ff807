"""``python -m mabcq_bench.cli``: the same as the ``mabcq-bench`` command."""

from mabcq_bench.cli import main

main()
