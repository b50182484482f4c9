// Holds a Sendmux mailbox stream with the `eventsource` package and prints each event
// as a JSON line {id, type, data} as it arrives; exits after COUNT events.
// Usage: node stream.mjs URL KEY COUNT [LAST_EVENT_ID]
import { EventSource } from "eventsource";

const [url, key, count, lastId] = process.argv.slice(2);
let seen = 0;
const es = new EventSource(url, {
  fetch: (input, init) =>
    fetch(input, {
      ...init,
      headers: {
        ...init.headers,
        Authorization: `Bearer ${key}`,
        ...(lastId ? { "Last-Event-ID": lastId } : {}),
      },
    }),
});
const types = ["message.received", "message.received.spam", "message.sent", "message.delivered"];
for (const type of types) {
  es.addEventListener(type, (ev) => {
    console.log(JSON.stringify({ id: ev.lastEventId, type: ev.type, data: JSON.parse(ev.data) }));
    seen += 1;
    if (seen >= Number(count)) {
      es.close();
      process.exit(0);
    }
  });
}
es.addEventListener("open", () => console.log(JSON.stringify({ open: true })));
es.addEventListener("error", (e) => console.error(JSON.stringify({ error: String(e.message ?? e.type) })));
