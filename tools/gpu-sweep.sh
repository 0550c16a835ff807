#!/usr/bin/env bash
# Train whole cells of the lite sweep (every seed of a task and algorithm) on a lent GPU, as one call:
#   tools/gpu-sweep.sh TASK ALGOS [MINUTES] [SEEDS]
# e.g. tools/gpu-sweep.sh hopper mabcq,mabcq-no-tn,mabcq-no-vd,bcq 6
# The GPU machine is bare and offline: it needs .devsite/site.tar.xz (tools/make-devsite.sh builds it; carry
# .devsite) for the packages it lacks, and makes the task's lite datasets there from the shipped experts (the
# manifest's bits: `make-data` says so per dataset). Runs go to gpu-results/ (git-ignored; carry it, so a later
# call resumes the checkpoints of an earlier one). `run --device cuda` stacks each cell's seeds and agents into
# one graphed update (--stack-seeds; the mabcq family; the other learners run seed by seed on the GPU). After
# MINUTES of training the runs are stopped (their checkpoints kept), and gpu-results comes back under $OUT as
# one tarball. Back here: tools/gpu-sweep.sh --collect FILES_AT copies the finished records into
# leaderboard/records (where the board reads them) and keeps the checkpoints in gpu-results/. A CPU queue line of
# a cell the GPU made then fails with one line (its records are another configuration: the device is part of the
# fingerprint) and trains nothing; take such lines out of tools/queues/lite.txt.
# CHECK_DEVICE=cpu PRESET=smoke tools/gpu-sweep.sh hopper mabcq 1   tries the whole script on this machine.
set -o pipefail
if [ "${1:-}" = "--collect" ]; then
    tar -xJf "$2/gpu-results.tar.xz" || exit 1
    find gpu-results -name 'seed*.json' ! -name '*.ckpt.json' | while read -r rec; do
        dest="leaderboard/records/${rec#gpu-results/}"
        if [ -e "$dest" ]; then echo "kept $dest (already there)"; else mkdir -p "$(dirname "$dest")" && cp "$rec" "$dest" && echo "added $dest"; fi
    done
    exit 0
fi
task=$1 algos=$2 minutes=${3:-6} seeds=${4:-5}
device=${CHECK_DEVICE:-cuda} preset=${PRESET:-lite}
OUT=${OUT:-$PWD/gpu-sweep-out}; mkdir -p "$OUT"
if [ "$device" = cuda ]; then
    tar -C /tmp -xJf .devsite/site.tar.xz || exit 1
    export PYTHONPATH=/tmp/devsite:$PWD MUJOCO_GL=egl MINARI_DATASETS_PATH=/tmp/minari MABCQ_BENCH_HOME=/tmp/mabcq-home
    cli="python3 -m mabcq_bench.cli"
    nvidia-smi --query-gpu=name,memory.total --format=csv,noheader | tee "$OUT/gpu.txt"
else
    cli=${MABCQ_BENCH:-.venv/bin/mabcq-bench}
fi
export PYTHONUNBUFFERED=1
$cli make-data --env "$task" --preset "$preset" --no-joint --no-progress 2>&1 | grep -v Adroit | tee "$OUT/make-data.log" | tail -5
timeout --signal=TERM "${minutes}m" $cli run --preset "$preset" --algo "$algos" --env "$task" --seeds "$seeds" --device "$device" \
    --results gpu-results --workers "${WORKERS:-4}" --no-progress 2>&1 | grep -v Adroit | tee "$OUT/run.log" | tail -25
echo "run rc ${PIPESTATUS[0]} (124: stopped after $minutes min; rerun the same call to resume)"
tar -cJf "$OUT/gpu-results.tar.xz" gpu-results && ls -l "$OUT/gpu-results.tar.xz"
