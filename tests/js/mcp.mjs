// An MCP client of Sendmux's /mcp on the official TypeScript SDK
// (@modelcontextprotocol/sdk: Client over StreamableHTTPClientTransport), for
// tests/api/mcp.rs. Reads one JSON command per line on stdin and prints one JSON line per
// answer, as tests/support/mcp_client.py does:
//   {"op": "list_tools"}                          -> {"tools": [{name, description, input_schema}]}
//   {"op": "call", "name": N, "arguments": {...}} -> {"is_error", "text", "structured"}
// It prints {"ready": true, "protocol": VERSION} once connected and {"error": "..."} (then
// exits 1) when it cannot connect or a request fails at the protocol level.
// usage: node mcp.mjs URL KEY
import { createInterface } from "node:readline";
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";

const [url, key] = process.argv.slice(2);
const say = (o) => process.stdout.write(JSON.stringify(o) + "\n");
const fail = (e) => {
  say({ error: String(e && e.stack ? `${e.name}: ${e.message}` : e) });
  process.exit(1);
};

try {
  const transport = new StreamableHTTPClientTransport(new URL(url), {
    requestInit: { headers: { Authorization: `Bearer ${key}` } },
  });
  const client = new Client({ name: "sendmux-tests", version: "1.0.0" });
  await client.connect(transport);
  say({ ready: true, protocol: transport.protocolVersion ?? null });
  const lines = createInterface({ input: process.stdin });
  for await (const line of lines) {
    const cmd = JSON.parse(line);
    if (cmd.op === "list_tools") {
      const { tools } = await client.listTools();
      say({ tools: tools.map((t) => ({ name: t.name, description: t.description, input_schema: t.inputSchema })) });
    } else if (cmd.op === "call") {
      // wait_for_message may hold up to 300 s.
      const result = await client.callTool({ name: cmd.name, arguments: cmd.arguments ?? {} }, undefined, {
        timeout: 400_000,
      });
      const text = result.content.filter((c) => c.type === "text").map((c) => c.text).join("");
      say({ is_error: Boolean(result.isError), text, structured: result.structuredContent ?? null });
    } else {
      say({ error: `unknown op ${cmd.op}` });
    }
  }
  await client.close();
} catch (e) {
  fail(e);
}
