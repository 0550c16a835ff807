#!/usr/bin/env bash
# Run a queue of `mabcq-bench run` jobs in the background, one at a time per call, resumably.
#
#   tools/queue.sh QUEUE_FILE [LOG_DIR]
#
# QUEUE_FILE holds one job per line: the options of one `mabcq-bench run` (lines starting with #
# are skipped). Start it once per core; the calls share the queue, and each takes the first line
# no other call has taken (claims under flock in LOG_DIR/<queue>.claimed). A line is done when its
# run exits 0 (<queue>.done, and the start and end of each in <queue>.events); a call that was
# stopped leaves its line claimed: remove <queue>.claimed before starting the calls again, and
# `run` skips what finished and resumes the rest from their checkpoints. Lines may be added or
# reordered while the calls run. MABCQ_BENCH is the command (default .venv/bin/mabcq-bench).
set -u
queue=$1
logs=${2:-runs/queue/logs}
mkdir -p "$logs"
state="$logs/$(basename "$queue")"
bench=${MABCQ_BENCH:-.venv/bin/mabcq-bench}
touch "$state.claimed" "$state.done"
while true; do
  job=$(
    flock "$state.lock" bash -c '
      while IFS= read -r line; do
        case "$line" in ""|"#"*) continue ;; esac
        grep -qxF -- "$line" "$2.claimed" && continue
        echo "$line" >> "$2.claimed"
        echo "$line"
        break
      done < "$1"' _ "$queue" "$state"
  )
  [ -n "$job" ] || break
  log="$logs/$(echo "$job" | tr -s -c 'A-Za-z0-9=.' '_' | sed 's/^_//' | cut -c1-120).log"
  echo "$(date -u +%FT%TZ) start $job" >> "$state.events"
  # shellcheck disable=SC2086
  $bench run $job --workers 1 --no-progress >> "$log" 2>&1
  rc=$?
  if [ "$rc" -eq 0 ]; then
    echo "$job" >> "$state.done"
    echo "$(date -u +%FT%TZ) done $job" >> "$state.events"
  else
    echo "$(date -u +%FT%TZ) failed (exit $rc) $job" >> "$state.events"
  fi
done
