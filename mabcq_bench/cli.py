"""The ``mabcq-bench`` command line: it parses options and calls library functions, nothing more.

A :class:`~mabcq_bench.errors.UserError` raised by the library becomes one line on stderr and
exit status 1; click's own usage errors exit with status 2.
"""

from __future__ import annotations

import click

from mabcq_bench.errors import UserError


class _Group(click.Group):
    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except UserError as exc:
            raise click.ClickException(str(exc)) from None


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="mabcq-bench")
def main() -> None:
    """Datasets and benchmark for offline, fully decentralized multi-agent RL (MABCQ)."""


# --- data: datasets, experts, collection benchmark -------------------------------------------


# --- algorithms: matrix game, update benchmark -----------------------------------------------


if __name__ == "__main__":
    main()
