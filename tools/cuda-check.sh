#!/usr/bin/env bash
# The GPU checks of `--device cuda`, as one call on a lent GPU machine (bare, no PyPI):
#   the stacking and CUDA-graph tests on cuda, `mabcq-bench bench --device cuda`, and a short
#   hopper run on made-up data, graphed and eager, and 5 of its seeds as one graphed stack (tools/cuda_check.py).
# Needs .devsite/site.tar.xz (tools/make-devsite.sh builds it): the packages that machine lacks (gymnasium,
# gymnasium-robotics without its unused robot assets, mujoco, pettingzoo, minari, glfw).
# Writes logs under $OUT (or ./cuda-check-out); prints a short summary last.
set -o pipefail
OUT=${OUT:-$PWD/cuda-check-out}; mkdir -p "$OUT"
tar -C /tmp -xJf .devsite/site.tar.xz || exit 1
export PYTHONPATH=/tmp/devsite:$PWD PYTHONUNBUFFERED=1 MUJOCO_GL=egl
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm,clocks.max.sm --format=csv | tee "$OUT/gpu.txt"
python3 -c "import torch, sys; print(sys.version.split()[0], torch.__version__, torch.cuda.is_available())"
timeout 150 python3 -m pytest -q -p no:cacheprovider tests/test_graphs.py tests/test_stack.py -k "cuda or graph" 2>&1 | grep -v Adroit | tee "$OUT/pytest.log" | tail -15
timeout 150 python3 -m mabcq_bench.cli bench --device cuda --repeats 7 --json 2>/dev/null > "$OUT/bench.json"; echo "bench rc $?"
timeout 120 python3 tools/cuda_check.py 2000 2>&1 | grep -v Adroit | tee "$OUT/runs.jsonl"
python3 - "$OUT/bench.json" <<'PY'
import json, sys
try:
    r = json.load(open(sys.argv[1]))
except Exception as e:
    sys.exit(f"no bench result: {e}")
print("bench:", {k: r[k] for k in ("bcq_ms", "mabcq_ms", "ratio", "graphed_ms", "gflops", "peak_gflops", "device")})
for task, row in r["joint"].items():
    print(task, "joint", {a: row[a] for a in ("mabcq", "bcq", "td3bc")}, "stacked", r["joint_stacked"].get(task), "graphed", r["joint_graphed"].get(task),
          "5 seeds graphed, per seed", r.get("seeds_graphed", {}).get(task))
PY
