"""The command group and what its commands share: option help texts, recipe planning, folder
checks.

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


_ENV_HELP = "Task name, a comma-separated list, or 'all' (halfcheetah, walker, hopper, ant)."
_PRESET_HELP = "Tier (smoke, lite, paper: datasets/<tier>.toml) or a path to a recipe .toml."


def _plan(env: str, preset: str):
    """Resolve tasks and recipes up front, so bad input fails before any work starts."""
    from mabcq_bench.data.recipes import load_recipe
    from mabcq_bench.data.tasks import resolve_tasks

    tasks = resolve_tasks(env)
    recipe_file = load_recipe(preset)
    return [recipe_file.for_task(t.name) for t in tasks]


def _check_folder(path, option: str) -> None:
    """One line when a folder option names an existing file."""
    if path.exists() and not path.is_dir():
        raise UserError(f"{option} {path} is a file; give a folder")
