"""An MCP client of Sendmux's /mcp on the official Python SDK (`mcp`: its `Client` over the
`streamable_http_client` transport), for tests/api/mcp.rs and bench/mcp.sh. Reads one JSON command per line
on stdin and prints one JSON line per answer:

  {"op": "list_tools"}                          -> {"tools": [{"name", "description", "input_schema"}]}
  {"op": "call", "name": N, "arguments": {...}} -> {"is_error": bool, "text": str, "structured": obj|null}

It prints {"ready": true, "protocol": VERSION} once connected, and {"error": "..."} (then
exits 1) when it cannot connect or a request fails at the protocol level.

usage: mcp_client.py URL KEY [MODE]
  MODE  auto (default: server/discover, the current revision) or legacy (the initialize
        handshake of earlier revisions)
"""
import asyncio
import json
import sys

import httpx2
from mcp import Client
from mcp.client.streamable_http import streamable_http_client


# The HTTP statuses of the answers, reported with a failure (the SDK's error does not say).
STATUSES = []


def say(obj):
    print(json.dumps(obj), flush=True)


def describe(exc):
    # anyio wraps failures in task groups: show the innermost causes.
    if isinstance(exc, BaseExceptionGroup):
        return "; ".join(describe(e) for e in exc.exceptions)
    return f"{type(exc).__name__}: {exc}"


async def main(url, key, mode):
    async def record(response):
        STATUSES.append(response.status_code)

    http = httpx2.AsyncClient(
        headers={"Authorization": f"Bearer {key}"},
        timeout=httpx2.Timeout(30, read=400),
        event_hooks={"response": [record]},
    )
    async with http, Client(streamable_http_client(url, http_client=http), mode=mode) as client:
        say({"ready": True, "protocol": client.protocol_version})
        while True:
            line = await asyncio.to_thread(sys.stdin.readline)
            if not line:
                return
            cmd = json.loads(line)
            if cmd["op"] == "list_tools":
                tools = await client.list_tools()
                say({"tools": [{"name": t.name, "description": t.description, "input_schema": t.input_schema}
                               for t in tools.tools]})
            elif cmd["op"] == "call":
                result = await client.call_tool(cmd["name"], cmd.get("arguments") or {})
                text = "".join(c.text for c in result.content if getattr(c, "type", "") == "text")
                say({"is_error": bool(result.is_error), "text": text, "structured": result.structured_content})
            else:
                say({"error": f"unknown op {cmd['op']}"})


if __name__ == "__main__":
    try:
        asyncio.run(main(sys.argv[1], sys.argv[2], sys.argv[3] if len(sys.argv) > 3 else "auto"))
    except BaseException as e:  # noqa: BLE001 - the test reads the reason
        if isinstance(e, (KeyboardInterrupt, SystemExit)):
            raise
        say({"error": f"{describe(e)} (HTTP statuses: {STATUSES})"})
        sys.exit(1)
