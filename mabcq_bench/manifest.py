"""Dataset manifests: what a tier's datasets must be, committed beside the tier's recipe.

``datasets/<tier>.manifest.json`` lists, for every dataset of the tier that was published, its id,
size, content checksum and reference returns, and the package versions it was made with. A user
who regenerates the datasets with ``make-data`` checks them against it with
``mabcq-bench manifest --preset <tier>``: the checksum covers every array of every episode, so an
equal checksum means the same data, transition for transition.
"""

from __future__ import annotations

import json
import platform
from dataclasses import dataclass
from pathlib import Path

from mabcq_bench.datasets import dataset_path, verify_dataset
from mabcq_bench.errors import UserError
from mabcq_bench import recipes
from mabcq_bench.recipes import Recipe
from mabcq_bench.tasks import get_task
from mabcq_bench.util import write_json

MANIFEST_VERSION = 1


def manifest_path(tier: str) -> Path:
    """``datasets/<tier>.manifest.json``, beside the tier's recipe."""
    return recipes.RECIPES_DIR / f"{tier}.manifest.json"


def entry(dataset_id: str, recipe: Recipe) -> dict | None:
    """The manifest entry of one local dataset (``None`` if it is not there); its checksum is
    recomputed from the data, so a damaged file never makes it into a manifest."""
    md = verify_dataset(dataset_id, recipe)
    if md is None:
        return None
    return {
        "dataset_id": dataset_id,
        "task": recipe.task,
        "agent": int(md["agent"]),
        "transitions": int(md["total_steps"]),
        "episodes": max(int(end) for _, end in md["mixture_episodes"].values()),
        "checksum": md["checksum"],
        "recipe_fingerprint": md["recipe_fingerprint"],
        "random_return": round(float(md["random_return"]["mean"]), 3),
        "intermediate_return": round(float(md["intermediate_return"]["mean"]), 3),
        "expert_return": round(float(md["expert_return"]["mean"]), 3),
        "parts": _parts(dataset_id, md),
        "versions": md["versions"],
    }


def _parts(dataset_id: str, md: dict) -> dict[str, dict]:
    """Per part of the mixture: transitions, episodes and the mean return of its episodes (what
    quality of data each part holds; an episode cut at the end of a part counts as it is)."""
    import minari
    import numpy as np

    ds = minari.load_dataset(dataset_id)
    returns = np.array([float(np.sum(ep.rewards)) for ep in ds.iterate_episodes()])
    out = {}
    for part, (lo, hi) in md["mixture_episodes"].items():
        r = returns[int(lo) : int(hi)]
        out[part] = {"transitions": int(md["mixture"][part]), "episodes": int(hi) - int(lo), "mean_return": round(float(r.mean()), 1) if r.size else None}
    return out


def read_manifest(path: Path) -> dict[str, dict]:
    """The manifest's entries by dataset id (empty if there is no manifest)."""
    if not path.exists():
        return {}
    try:
        doc = json.loads(path.read_text())
        return {e["dataset_id"]: e for e in doc["datasets"]}
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise UserError(f"manifest {path} is unreadable or malformed ({type(exc).__name__}: {exc})") from None


def write_manifest(path: Path, tier: str, entries: list[dict]) -> dict[str, dict]:
    """Add or replace ``entries`` in the manifest at ``path`` (others are kept); atomic."""
    merged = read_manifest(path)
    merged.update({e["dataset_id"]: e for e in entries})
    doc = {
        "manifest_version": MANIFEST_VERSION,
        "tier": tier,
        "machine": platform.machine(),
        "how_to_check": f"mabcq-bench make-data --env all --preset {tier} && mabcq-bench manifest --env all --preset {tier}",
        "datasets": [merged[k] for k in sorted(merged)],
    }
    write_json(path, doc)
    return merged


@dataclass(frozen=True)
class Check:
    dataset_id: str
    verdict: str  # "same", "differs", "missing" (not made here), "unlisted" (not in the manifest)
    detail: str

    @property
    def ok(self) -> bool:
        return self.verdict == "same"


def check(recipes: list[Recipe], manifest: dict[str, dict]) -> list[Check]:
    """Compare every agent dataset of ``recipes`` in the local store with the manifest."""
    out = []
    for recipe in recipes:
        for agent in range(get_task(recipe.task).n_agents):
            dataset_id = recipe.dataset_id(agent)
            want = manifest.get(dataset_id)
            got = entry(dataset_id, recipe)
            out.append(_compare(dataset_id, got, want))
    return out


def _compare(dataset_id: str, got: dict | None, want: dict | None) -> Check:
    if want is None:
        return Check(dataset_id, "unlisted", "not in the manifest")
    if got is None:
        return Check(dataset_id, "missing", f"not in {dataset_path(dataset_id)}; make it with make-data")
    if got["recipe_fingerprint"] != want["recipe_fingerprint"]:
        return Check(dataset_id, "differs", f"made by recipe {got['recipe_fingerprint']}, the manifest's is {want['recipe_fingerprint']}")
    if got["checksum"] != want["checksum"]:
        changed = sorted(k for k, v in want["versions"].items() if got["versions"].get(k) != v)
        why = f"package versions differ: {', '.join(changed)}" if changed else "same package versions"
        return Check(dataset_id, "differs", f"checksum {got['checksum'][:16]}, the manifest's {want['checksum'][:16]} ({why})")
    return Check(dataset_id, "same", f"{got['transitions']:,} transitions, sha256 {got['checksum'][:16]}")

