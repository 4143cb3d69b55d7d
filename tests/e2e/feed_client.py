"""A third-party client for examples/websocket_feed.cpp: Debian's python3-websockets.

Connects to ws://127.0.0.1:<port>/feed, waits until the server's feed waits on the event (GET
/tasks says "waiters 1"), POSTs /notify, receives "A message", sends "hello from python", and closes
politely. Exits non-zero, saying why, if anything differs.

Usage: /usr/bin/python3 feed_client.py <port>
"""

import asyncio
import sys
import urllib.request

import websockets


def http(port, method, target):
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}{target}", method=method, data=b"" if method == "POST" else None
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return response.read().decode()


def wait_for_one_waiter(port):
    # Each request is sent when the previous answer has come; no sleeping.
    for _ in range(1000):
        answer = http(port, "GET", "/tasks")
        if "waiters 1" in answer.splitlines() and "alive 1" in answer.splitlines():
            return
    raise SystemExit(f"the feed never waited on the event; last GET /tasks:\n{answer}")


async def main(port):
    async with websockets.connect(f"ws://127.0.0.1:{port}/feed") as ws:
        wait_for_one_waiter(port)
        woke = http(port, "POST", "/notify")
        if woke != "woke 1\n":
            raise SystemExit(f"POST /notify answered {woke!r}, not 'woke 1'")
        message = await asyncio.wait_for(ws.recv(), timeout=10)
        if message != "A message":
            raise SystemExit(f"received {message!r}, not 'A message'")
        print(f"client received: {message}")
        await ws.send("hello from python")
    # Leaving the block sent a close frame and waited for the server's.
    print(f"client closed: code {ws.close_code}")
    if ws.close_code != 1000:
        raise SystemExit(f"the close handshake ended with code {ws.close_code}, not 1000")


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1])))
