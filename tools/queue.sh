#!/usr/bin/env bash
# Run a queue of `mabcq-bench run` jobs in the background, one at a time per call, resumably.
#
#   tools/queue.sh QUEUE_FILE [LOG_DIR]
#
# QUEUE_FILE holds one job per line: the options of one `mabcq-bench run` (lines starting with #
# are skipped). Start it once per core; the calls share the queue, and each takes the first line
# no other call has taken (claims under flock in QUEUE_FILE.claimed). A line is done when its run
# exits 0 (QUEUE_FILE.done); a call that was stopped leaves its line claimed: remove
# QUEUE_FILE.claimed before starting the calls again, and `run` resumes the job from its checkpoint.
# Lines may be added or reordered while the calls run.
set -u
queue=$1
logs=${2:-$(dirname "$queue")/logs}
mkdir -p "$logs"
bench=${MABCQ_BENCH:-.venv/bin/mabcq-bench}
touch "$queue.claimed" "$queue.done"
while true; do
  job=$(
    flock "$queue.lock" bash -c '
      while IFS= read -r line; do
        case "$line" in ""|"#"*) continue ;; esac
        grep -qxF -- "$line" "$1.claimed" && continue
        echo "$line" >> "$1.claimed"
        echo "$line"
        break
      done < "$1"' _ "$queue"
  )
  [ -n "$job" ] || break
  log="$logs/$(echo "$job" | tr -s -c 'A-Za-z0-9=.' '_' | sed 's/^_//' | cut -c1-120).log"
  echo "$(date -u +%FT%TZ) start $job" >> "$queue.events"
  # shellcheck disable=SC2086
  $bench run $job --workers 1 --no-progress >> "$log" 2>&1
  rc=$?
  if [ "$rc" -eq 0 ]; then
    echo "$job" >> "$queue.done"
    echo "$(date -u +%FT%TZ) done $job" >> "$queue.events"
  else
    echo "$(date -u +%FT%TZ) failed (exit $rc) $job" >> "$queue.events"
  fi
done
