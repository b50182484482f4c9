"""A WebSocket client of the mailbox stream (the `websockets` package), for
tests/api/websocket.rs. Prints one JSON line per happening: {"open": n} when connection
n is up, {"event": {...}} per text frame, {"close": code} when the server closes.

usage: ws_client.py URL KEY [--count N] [--drop-after K] [--send B]
  --count N       stop after N events in all
  --send B        once connected, send the server a text frame of B bytes
  --drop-after K  after the K-th event, cut the TCP connection without a close frame and
                  reconnect with last_event_id set to the last event received
"""
import argparse
import asyncio
import json

import websockets


def say(obj):
    print(json.dumps(obj), flush=True)


async def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("url")
    ap.add_argument("key")
    ap.add_argument("--count", type=int, default=0)
    ap.add_argument("--drop-after", type=int, default=0)
    ap.add_argument("--send", type=int, default=0)
    args = ap.parse_args()
    headers = {"Authorization": f"Bearer {args.key}"}
    got, last, dropped, opened = 0, None, False, 0
    while True:
        url = args.url
        if last:
            url += ("&" if "?" in url else "?") + f"last_event_id={last}"
        async with websockets.connect(url, additional_headers=headers, ping_interval=None) as ws:
            opened += 1
            say({"open": opened})
            if args.send:
                await ws.send("x" * args.send)
            reconnect = False
            try:
                async for msg in ws:
                    event = json.loads(msg)
                    got += 1
                    last = event["id"]
                    say({"event": event})
                    if args.count and got >= args.count:
                        return
                    if args.drop_after and not dropped and got == args.drop_after:
                        dropped = True
                        reconnect = True
                        ws.transport.abort()
                        break
            except websockets.ConnectionClosed:
                pass
            if not reconnect:
                say({"close": ws.close_code if ws.close_code is not None else 1006})
                return


asyncio.run(main())
