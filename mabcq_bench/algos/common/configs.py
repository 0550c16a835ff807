"""Config dataclasses as plain values: what checkpoints and results store and compare."""

from __future__ import annotations

import dataclasses
from typing import Any


def plain(obj: Any) -> Any:
    """Tuples as lists (recursively), so a config compares equal after a checkpoint round trip."""
    if isinstance(obj, dict):
        return {k: plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [plain(v) for v in obj]
    return obj


def config_dict(config: Any) -> dict[str, Any]:
    """A config dataclass as a dict of plain values (what checkpoints and results store)."""
    return plain(dataclasses.asdict(config))
