// A WebSocket client of the mailbox stream (the `ws` package), for
// tests/api/websocket.rs. Prints one JSON line per happening: {"open": true},
// {"event": {...}} per text frame, {"ping": true} per WebSocket ping,
// {"close": code} when the connection ends.
// usage: node ws.mjs URL KEY
import WebSocket from "ws";

const [url, key] = process.argv.slice(2);
const say = (o) => process.stdout.write(JSON.stringify(o) + "\n");
const ws = new WebSocket(url, { headers: { Authorization: `Bearer ${key}` } });
ws.on("open", () => say({ open: true }));
ws.on("message", (data, isBinary) => say(isBinary ? { binary: true } : { event: JSON.parse(data.toString()) }));
ws.on("ping", () => say({ ping: true }));
ws.on("unexpected-response", (_req, res) => {
  say({ status: res.statusCode });
  process.exit(0);
});
ws.on("close", (code) => {
  say({ close: code });
  process.exit(0);
});
ws.on("error", (e) => {
  say({ error: String(e) });
});
