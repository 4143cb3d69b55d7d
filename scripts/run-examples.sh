#!/usr/bin/env bash
# Runs every bundled example from a build tree, each with a short delay instead of the seed's five
# seconds, and shows what it prints. Fails if any example fails.
set -euo pipefail
build_dir="${1:-build/examples-only}" # the examples preset's; build/dev has them too
delay_ms="${2:-200}"
status=0
shopt -s nullglob
examples=("$build_dir"/examples/example_*)
if [ ${#examples[@]} -eq 0 ]; then
  echo "run-examples: no examples in $build_dir/examples (build first)" >&2
  exit 1
fi
for exe in "${examples[@]}"; do
  [ -x "$exe" ] || continue
  # The websocket feed is a server: it runs until stopped (see the README to try it by hand).
  [ "${exe##*/}" = example_websocket_feed ] && continue
  if [ "${exe##*/}" = example_workers ]; then
    # A server too, with 4 worker processes: its driver presses Ctrl-C once all have started.
    echo "== workers (4 worker processes, then Ctrl-C)"
    run=("$(dirname "$0")/../examples/workers_driver.sh" "$exe" 4)
  else
    echo "== ${exe##*/example_} (delay ${delay_ms} ms)"
    run=("$exe" "$delay_ms")
  fi
  if ! "${run[@]}"; then
    echo "run-examples: ${exe##*/} failed" >&2
    status=1
  fi
done
exit $status
