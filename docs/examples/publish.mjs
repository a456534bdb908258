// Publishes from a Node.js backend (Node 18 or later: fetch is built in).
// HERALD_API: the api_listen address, e.g. http://127.0.0.1:8081;
// HERALD_API_KEY: a key of api_keys.
const API = process.env.HERALD_API;
const KEY = process.env.HERALD_API_KEY;

async function publish(channel, data) {
  const r = await fetch(`${API}/api/v1/publish`, {
    method: "POST",
    headers: { Authorization: `apikey ${KEY}`, "Content-Type": "application/json" },
    body: JSON.stringify({ channel, data }),
  });
  const body = await r.json();
  if (!r.ok) throw new Error(`publish: ${r.status} ${body.error.code} ${body.error.message}`);
  return body; // { offset, epoch }
}

console.log(JSON.stringify(await publish("news", { headline: "Hello from Node" })));
