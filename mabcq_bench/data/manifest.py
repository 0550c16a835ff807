"""Dataset manifests: what a tier's datasets must be, committed beside the tier's recipe.

``datasets/<tier>.manifest.json`` lists, for every dataset of the tier that was published, its id,
size, content checksum and reference returns, and the package versions it was made with. A user
who regenerates the datasets with ``make-data`` checks them against it with
``mabcq-bench manifest --preset <tier>``: the checksum covers every array of every episode, so an
equal checksum means the same data, transition for transition.

An entry may be *derived* (``derived_from``) rather than made: a version whose datasets hold the
same transitions as an earlier one's, with other metadata (the reference returns), gets the
earlier entries' checksums, sizes and per-part returns, and its own id, recipe fingerprint and
references (:func:`derive_entries`; the manifest's ``notes`` say which). Making the datasets and
writing the manifest again replaces a derived entry by a made one.

Verdicts: ``identical`` (equal checksums: what every x86-64 CPU gives from the shipped experts with
the pinned versions), ``equivalent`` (other bits, but every part's mean return within
:data:`EQUIVALENT_TOLERANCE` of the expert-random span of the manifest's: e.g. other package
versions), ``differs``, ``missing`` (not made here) or ``unlisted`` (not in the manifest).
"""

from __future__ import annotations

import json
import platform
from dataclasses import dataclass
from pathlib import Path

from mabcq_bench.data.datasets import dataset_path, verify_dataset
from mabcq_bench.errors import UserError
from mabcq_bench.data.experts import REFERENCES
from mabcq_bench.data import recipes
from mabcq_bench.data.recipes import Recipe
from mabcq_bench.data.tasks import get_task
from mabcq_bench.util import write_json

MANIFEST_VERSION = 2
#: ``equivalent``: every part's mean return within this fraction of (expert - random) of the manifest's.
EQUIVALENT_TOLERANCE = 0.05


def manifest_path(tier: str) -> Path:
    """``datasets/<tier>.manifest.json``, beside the tier's recipe."""
    return recipes.RECIPES_DIR / f"{tier}.manifest.json"


def entry(dataset_id: str, recipe: Recipe) -> dict | None:
    """The manifest entry of one local dataset (``None`` if it is not there); its checksum is
    recomputed from the data, so a damaged file never makes it into a manifest."""
    md = verify_dataset(dataset_id, recipe)
    if md is None:
        return None
    returns, lengths = _returns_and_lengths(dataset_id)
    return {
        "dataset_id": dataset_id,
        "task": recipe.task,
        **({"agent": int(md["agent"])} if "agent" in md else {"joint_of_agents": int(md["agents"])}),
        "transitions": int(md["total_steps"]),
        "episodes": max(int(end) for _, end in md["mixture_episodes"].values()),
        "checksum": md["checksum"],
        "recipe_fingerprint": md["recipe_fingerprint"],
        **{f"{p}_return": round(float(md[f"{p}_return"]["mean"]), 3) for p in REFERENCES},
        "incomplete_episodes": len(md["incomplete_episodes"]),
        "transitions_in_complete_episodes": _complete_share(lengths, md),
        "parts": _parts(returns, md),
        "versions": md["versions"],
    }


def _returns_and_lengths(dataset_id: str):
    import minari
    import numpy as np

    ds = minari.load_dataset(dataset_id)
    eps = list(ds.iterate_episodes())
    return np.array([float(np.sum(ep.rewards)) for ep in eps]), np.array([len(ep.rewards) for ep in eps])


def _complete_share(lengths, md: dict) -> float:
    """Fraction of the transitions that lie in complete episodes (not cut at a part's end)."""
    cut = sum(int(lengths[i]) for i in md["incomplete_episodes"])
    return round(1.0 - cut / int(lengths.sum()), 4)


def _parts(returns, md: dict) -> dict[str, dict]:
    """Per part of the mixture: transitions, episodes and the mean return of its complete
    episodes (the quality of data each part holds; the piece cut at a part's end is left out)."""
    cut = set(md["incomplete_episodes"])
    out = {}
    for part, (lo, hi) in md["mixture_episodes"].items():
        r = [returns[i] for i in range(int(lo), int(hi)) if i not in cut]
        out[part] = {"transitions": int(md["mixture"][part]), "episodes": int(hi) - int(lo), "mean_return": round(float(sum(r) / len(r)), 1) if r else None}
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


def write_manifest(path: Path, tier: str, entries: list[dict], note: str | None = None) -> dict[str, dict]:
    """Add or replace ``entries`` in the manifest at ``path`` (others are kept); atomic.

    ``note`` is added to the manifest's ``notes`` (kept across writes, each once)."""
    merged = read_manifest(path)
    merged.update({e["dataset_id"]: e for e in entries})
    notes = _read_notes(path) + ([note] if note else [])
    doc = {
        "manifest_version": MANIFEST_VERSION,
        "tier": tier,
        "machine": platform.machine(),
        "how_to_check": f"mabcq-bench make-data --env all --preset {tier} && mabcq-bench manifest --env all --preset {tier}",
        **({"notes": list(dict.fromkeys(notes))} if notes else {}),
        "datasets": [merged[k] for k in sorted(merged)],
    }
    write_json(path, doc)
    return merged


def _read_notes(path: Path) -> list[str]:
    try:
        return list(json.loads(path.read_text()).get("notes", []))
    except (OSError, ValueError, AttributeError):
        return []


def derive_entries(recipe: Recipe, version: int, listed: dict[str, dict], references: dict) -> list[dict]:
    """Entries of ``recipe``'s datasets derived from the manifest's entries of ``version``,
    without making them: same transitions (checksums, sizes, parts, package versions), the
    recipe's own id and fingerprint, and the reference returns ``references`` (by policy).

    Raises:
        UserError: an entry of ``version`` is missing, or was made by a recipe whose transitions
            differ from ``recipe``'s (see :meth:`Recipe.fingerprint_at`).
    """
    import dataclasses

    out = []
    old = dataclasses.replace(recipe, dataset_version=version)
    for agent in range(get_task(recipe.task).n_agents):
        source = listed.get(old.dataset_id(agent))
        if source is None:
            raise UserError(f"cannot derive {recipe.dataset_id(agent)}: the manifest has no entry {old.dataset_id(agent)}")
        if source["recipe_fingerprint"] != recipe.fingerprint_at(version):
            raise UserError(
                f"cannot derive {recipe.dataset_id(agent)} from {source['dataset_id']}: that was made by recipe {source['recipe_fingerprint']}, "
                f"whose transitions are not this recipe's ({recipe.fingerprint_at(version)}); make the datasets instead"
            )
        entry = {
            **source,
            "dataset_id": recipe.dataset_id(agent),
            "recipe_fingerprint": recipe.fingerprint,
            **{f"{p}_return": round(float(references[p]["mean"]), 3) for p in REFERENCES},
            "derived_from": source["dataset_id"],
        }
        out.append(entry)
    return out


@dataclass(frozen=True)
class Check:
    dataset_id: str
    verdict: str  # "identical", "equivalent", "differs", "missing" (not made here), "unlisted" (not in the manifest)
    detail: str

    @property
    def ok(self) -> bool:
        return self.verdict in ("identical", "equivalent")


def dataset_ids(recipe: Recipe, joint: bool = True) -> list[str]:
    """The ids of ``recipe``'s datasets: every agent's, then (with ``joint``) the joint-action one."""
    ids = [recipe.dataset_id(agent) for agent in range(get_task(recipe.task).n_agents)]
    return ids + ([recipe.joint_dataset_id] if joint else [])


def check(recipes: list[Recipe], manifest: dict[str, dict], joint: bool = True) -> list[Check]:
    """Compare every dataset of ``recipes`` in the local store with the manifest: every agent's,
    and with ``joint`` the joint-action dataset."""
    out = []
    for recipe in recipes:
        for dataset_id in dataset_ids(recipe, joint):
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
        span = abs(float(want["expert_return"]) - float(want["random_return"]))
        gaps = {p: abs(got["parts"][p]["mean_return"] - w["mean_return"]) for p, w in want["parts"].items() if w["mean_return"] is not None and got["parts"].get(p, {}).get("mean_return") is not None}
        worst = max(gaps, key=gaps.get) if gaps else None
        detail = f"checksum {got['checksum'][:16]}, the manifest's {want['checksum'][:16]} ({why})"
        if worst is not None and len(gaps) == len(want["parts"]) and gaps[worst] <= EQUIVALENT_TOLERANCE * span:
            return Check(dataset_id, "equivalent", f"{detail}; every part's mean return within {EQUIVALENT_TOLERANCE:.0%} of expert-random (largest gap {gaps[worst]:.1f}, {worst})")
        gap = f"; part {worst}'s mean return is {gaps[worst]:.1f} off (tolerance {EQUIVALENT_TOLERANCE * span:.1f})" if worst is not None else ""
        return Check(dataset_id, "differs", detail + gap)
    return Check(dataset_id, "identical", f"{got['transitions']:,} transitions, sha256 {got['checksum'][:16]}")

