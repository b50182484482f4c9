// Verifies one recorded webhook delivery the way a receiver would:
//  1. the product page's JavaScript snippet, unchanged, against X-Sendmux-Signature;
//  2. the `standardwebhooks` library against webhook-id/-timestamp/-signature.
// Usage: node verify.mjs delivery.json   (JSON: {secret, body, headers})
// Prints {"sendmux": bool, "standard": bool} and exits 0.
import crypto from "node:crypto";
import { readFileSync } from "node:fs";
import { Webhook } from "standardwebhooks";

const { secret, body: rawBody, headers } = JSON.parse(readFileSync(process.argv[2], "utf8"));
const req = { headers, text: async () => rawBody };

async function productPageSnippet() {
  // verify X-Sendmux-Signature before parsing the body
  const body = await req.text();
  const mac = crypto.createHmac("sha256", secret).update(body).digest("hex");
  const sig = req.headers["x-sendmux-signature"] ?? "";
  const expected = `sha256=${mac}`;
  // constant-time compare avoids a signature timing oracle
  const ok = expected.length === sig.length &&
             crypto.timingSafeEqual(Buffer.from(expected), Buffer.from(sig));
  return ok;
}

let standard = false;
try {
  new Webhook(secret).verify(rawBody, {
    "webhook-id": headers["webhook-id"],
    "webhook-timestamp": headers["webhook-timestamp"],
    "webhook-signature": headers["webhook-signature"],
  });
  standard = true;
} catch (e) {
  standard = false;
}
console.log(JSON.stringify({ sendmux: await productPageSnippet(), standard }));
