"""The ``mabcq-bench`` command line: it parses options and calls library functions, nothing more.

``app`` holds the command group and what the commands share; ``data``, ``runs``, ``baselines`` and
``algos`` register the commands of each layer on it. A :class:`~mabcq_bench.errors.UserError` raised by the
library becomes one line on stderr and exit status 1; click's own usage errors exit with status 2.

May import: every layer (it is the top one); nothing imports it.
"""

from mabcq_bench.cli import algos, baselines, data, runs  # noqa: F401  (they register their commands)
from mabcq_bench.cli.app import main

__all__ = ["main"]
