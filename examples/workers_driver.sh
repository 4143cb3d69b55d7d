#!/usr/bin/env bash
# Runs the workers example as a user would, and presses Ctrl-C once every worker has started: it
# reads the example's output as it comes, sends SIGINT to the example's process group (the main
# process and its workers, as a terminal does) when each of the N workers has printed
# "slow_work started", then checks the whole output and the exit status.
#
# Usage: workers_driver.sh path/to/example_workers [workers [wrapper...]]   (default 4 workers)
#   a wrapper runs the example: workers_driver.sh example_workers 2 valgrind --error-exitcode=99
set -euo pipefail
exe="$1"
workers="${2:-4}"
wrapper=("${@:3}")
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
mkfifo "$dir/output"
set -m # the example runs in a process group of its own, as in a terminal
"${wrapper[@]}" "$exe" "$workers" >"$dir/output" 2>&1 &
pid=$!
set +m
started=0
: >"$dir/log"
while IFS= read -r line; do
  echo "$line"
  echo "$line" >>"$dir/log"
  case "$line" in
  *": slow_work started")
    started=$((started + 1))
    # Ctrl-C: SIGINT to the whole process group, the main process and every worker.
    if [ "$started" -eq "$workers" ]; then kill -INT -- "-$pid"; fi
    ;;
  esac
done <"$dir/output"
status=0
wait "$pid" || status=$?

fail() {
  echo "workers_driver: $*" >&2
  exit 1
}
[ "$status" -eq 0 ] || fail "the example exited with status $status"
[ "$(head -n 1 "$dir/log")" = "main process: warm_up done" ] ||
  fail "warm_up did not run first, in the main process"
[ "$(grep -c '^main process: warm_up done$' "$dir/log")" -eq 1 ] || fail "warm_up did not run once"
for ((i = 0; i < workers; i++)); do
  for what in "slow_work started" "slow_work cancelled" "stopped"; do
    [ "$(grep -c "^worker $i: $what\$" "$dir/log")" -eq 1 ] || fail "no single 'worker $i: $what'"
  done
done
[ "$(wc -l <"$dir/log")" -eq $((2 + 3 * workers)) ] || fail "unexpected lines in the output"
[ "$(tail -n 1 "$dir/log")" = "main process: $workers workers stopped cleanly" ] ||
  fail "the main process did not report a clean stop last"
echo "workers_driver: $workers workers started and stopped cleanly"
