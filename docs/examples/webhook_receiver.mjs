// A Herald webhook receiver with Node's standard library only (Node 18+).
// HERALD_WEBHOOK_SECRET: the server's webhook_secret; PORT: where to listen
// (default 9000). Prints each verified event as one JSON line.
import { createHmac, timingSafeEqual } from "node:crypto";
import { createServer } from "node:http";

const SECRET = process.env.HERALD_WEBHOOK_SECRET;
const TOLERANCE = 300; // seconds: older signatures are refused (replays)

// True when Herald-Signature "t=<unix s>,v1=<hex>" is the HMAC-SHA256 of
// "<t>.<body>" with the secret, and t is recent. body: the raw bytes.
export function verify(secret, header, body, now = Date.now() / 1000) {
  const parts = Object.fromEntries(
    (header || "").split(",").map((p) => p.split("=", 2)));
  const t = Number(parts.t);
  if (!Number.isInteger(t) || !parts.v1 || Math.abs(now - t) > TOLERANCE)
    return false;
  const expected = createHmac("sha256", secret)
    .update(`${t}.`).update(body).digest();
  const given = Buffer.from(parts.v1, "hex");
  return given.length === expected.length &&
    timingSafeEqual(given, expected); // constant time
}

const seen = new Set(); // ids already handled (keep them in your database)

createServer((req, res) => {
  const chunks = [];
  req.on("data", (c) => chunks.push(c));
  req.on("end", () => {
    const body = Buffer.concat(chunks);
    if (!verify(SECRET, req.headers["herald-signature"], body)) {
      res.writeHead(401).end();
      return;
    }
    const event = JSON.parse(body);
    // At least once: a retry carries the same id; handle it only once.
    if (!seen.has(event.id)) {
      seen.add(event.id);
      console.log(JSON.stringify(event));
    }
    res.writeHead(204).end(); // any 2xx: delivered
  });
}).listen(Number(process.env.PORT || 9000), "127.0.0.1",
  () => console.log("listening"));
