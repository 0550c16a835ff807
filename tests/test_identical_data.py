"""The same datasets on every x86-64 CPU: made under different CPU-dispatch settings, the shipped
smoke experts give the same bits, and those are the committed manifest's.

torch, MKL and numpy pick their kernels per CPU; these settings make them pick others on this
machine (AVX2 or baseline instead of AVX-512, MKL's conditional-reproducibility paths), which is
how another CPU would differ. Each setting runs the real CLI in a fresh process, as it must be
set before the libraries load.
"""

import json
import os
import platform
import subprocess
import sys

import pytest

from mabcq_bench.data import manifest
from mabcq_bench.util import versions

#: A setting is the environment a CPU of another kind would effectively run under.
DISPATCH = {
    "native": {},
    "avx2": {"ATEN_CPU_CAPABILITY": "avx2", "MKL_CBWR": "AVX2", "ONEDNN_MAX_CPU_ISA": "AVX2", "NPY_DISABLE_CPU_FEATURES": "X86_V4 AVX512_ICL AVX512_SPR"},
    "baseline": {"ATEN_CPU_CAPABILITY": "default", "MKL_CBWR": "COMPATIBLE", "ONEDNN_MAX_CPU_ISA": "SSE41", "NPY_DISABLE_CPU_FEATURES": "X86_V3 X86_V4 AVX512_ICL AVX512_SPR"},
}


def _listed() -> dict:
    return {e["dataset_id"]: e for e in json.loads(manifest.manifest_path("smoke").read_text())["datasets"]}


def listed_versions_match() -> bool:
    """The manifest's bits are promised with the pinned package versions only."""
    return _listed()["mabcq/hopper/smoke-agent0-v2"]["versions"] == versions()


def _supported(setting: dict) -> bool:
    """numpy refuses to disable a feature it was built to require: skip such a setting there."""
    probe = subprocess.run([sys.executable, "-c", "import numpy"], env={**os.environ, **setting}, capture_output=True)
    return probe.returncode == 0


@pytest.mark.skipif(platform.machine() != "x86_64", reason="the promise is for x86-64 CPUs")
def test_datasets_are_identical_under_every_cpu_dispatch_setting(tmp_path):
    checksums = {}
    procs = {}
    for name, setting in DISPATCH.items():
        if not _supported(setting):
            continue
        env = {**os.environ, **setting, "MINARI_DATASETS_PATH": str(tmp_path / name / "minari"), "MABCQ_BENCH_HOME": str(tmp_path / name / "home")}
        procs[name] = subprocess.Popen(
            [sys.executable, "-m", "mabcq_bench.cli", "make-data", "--env", "hopper", "--preset", "smoke", "--no-progress"],
            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )
    for name, proc in procs.items():
        out, _ = proc.communicate(timeout=600)
        assert proc.returncode == 0, out
        assert "training SAC" not in out  # the shipped experts are used
        # the three agents' datasets, then the joint-action dataset of the same transitions
        checksums[name] = [line.split("\t")[2] for line in out.splitlines() if line.startswith("mabcq/hopper/smoke-") and line.endswith("\tnew")]
        assert len(checksums[name]) == 4, out
        if listed_versions_match():
            assert out.count("\tmatches the manifest\t") == 4, out
    assert len(checksums) >= 2
    first = next(iter(checksums.values()))
    assert all(c == first for c in checksums.values()), checksums
    if listed_versions_match():
        listed = _listed()
        ids = [f"mabcq/hopper/smoke-agent{i}-v2" for i in range(3)] + ["mabcq/hopper/smoke-joint-v2"]
        assert first == [f"sha256 {listed[i]['checksum'][:16]}" for i in ids]
