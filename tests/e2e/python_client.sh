#!/usr/bin/env bash
# End-to-end test of examples/websocket_feed.cpp with a third-party client, Debian's
# python3-websockets (feed_client.py): starts the server on a free loopback port, runs the client,
# checks that the server printed "Received: hello from python", stops it with SIGINT, and checks
# that it exited with status 0 having printed nothing else, on stdout or stderr.
#
# Usage: python_client.sh <example_websocket_feed> <feed_client.py> [wrapper...]
# A wrapper runs the server: python_client.sh server client.py valgrind --error-exitcode=99
# The client runs with $TASKYARD_PYTHON, by default Debian's /usr/bin/python3 (a python3 earlier
# on PATH may be another interpreter, without Debian's packages).
set -euo pipefail

server="$1"
client="$2"
wrapper=("${@:3}")
python="${TASKYARD_PYTHON:-/usr/bin/python3}"

fail() {
  echo "FAILED: $*" >&2
  echo "--- server stdout ---" >&2
  cat "$work/stdout" >&2 || true
  echo "--- server stderr ---" >&2
  cat "$work/err" >&2 || true
  exit 1
}

if ! "$python" -c 'import websockets' 2>/dev/null; then
  echo "FAILED: $python cannot import websockets: install Debian's python3-websockets" >&2
  exit 1
fi

work="$(mktemp -d)"
pid=""
cleanup() {
  if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then kill -KILL "$pid" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT

# The server's stdout comes through a FIFO, read line by line as it comes (and copied to a file).
mkfifo "$work/out"
"${wrapper[@]}" "$server" 0 >"$work/out" 2>"$work/err" &
pid=$!
exec {out}<"$work/out"
: >"$work/stdout"

# Reads the server's next line into $line, waiting at most 10 s; fails on timeout or EOF.
next_line() {
  IFS= read -r -t 10 -u "$out" line || fail "no line from the server ($1)"
  printf '%s\n' "$line" >>"$work/stdout"
}

next_line "the port line"
[[ "$line" =~ ^listening\ on\ 127\.0\.0\.1:([0-9]+)$ ]] || fail "unexpected first line: $line"
port="${BASH_REMATCH[1]}"

timeout 60 "$python" "$client" "$port" || fail "the client failed (status $?)"

# The server printed the message before it read the client's close frame, so before the client's
# close handshake completed: the line is there already.
next_line "Received: hello from python"
[ "$line" = "Received: hello from python" ] || fail "unexpected line: $line"

kill -INT "$pid"
# The server's stdout ends when it exits: nothing more may come before.
if IFS= read -r -t 20 -u "$out" line; then
  printf '%s\n' "$line" >>"$work/stdout"
  fail "unexpected output after SIGINT: $line"
elif [ $? -gt 128 ]; then
  fail "the server did not exit within 20 s of SIGINT"
fi
status=0
wait "$pid" || status=$?
pid=""
[ "$status" -eq 0 ] || fail "the server exited with status $status"
[ ! -s "$work/err" ] || fail "the server printed on stderr"
echo "PASSED: the python client got 'A message', the server printed 'Received: hello from python' and exited cleanly on SIGINT"
