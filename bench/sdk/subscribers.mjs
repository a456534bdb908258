// N subscribers through the JavaScript SDK (clients/js/dist) in one Node
// process, for bench/sdk.sh: they subscribe to the channels herald-bench
// publishes to (its names P<run>.<i>, fixed with --run-id), decode each
// publication's stamp (bench/src/stamp.h: "HB1:<send time, CLOCK_MONOTONIC
// ns, 16 hex>:<seq>:<publisher>:pad") and record the publish-to-delivery
// latency as the application sees it: in the SDK's publication handler.
// Node's process.hrtime is CLOCK_MONOTONIC, the clock herald-bench stamps
// with (both run on this host).
//
//   node subscribers.mjs --url ws://127.0.0.1:18700/ws --prefix sdk. --run-id 5d4 \
//        --channels 10 --clients 100 [--first 0] [--encoding json|msgpack] \
//        --warmup 2 --duration 10 --out FILE
//
// Client k (counting from --first) subscribes to channel k mod channels.
// Prints "ready <clients>" once every subscription is confirmed, then
// records; on SIGTERM (or SIGINT) it drains (until nothing
// arrived for 0.5 s, at most 5 s), writes the latencies of the measured
// window (from warmup s after the first stamp, for duration
// s) to FILE as little-endian float64 microseconds, prints one JSON line
// of counters and exits.

import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';

import WS from 'ws';

const here = path.dirname(fileURLToPath(import.meta.url));
const dist = path.join(here, '..', '..', 'clients', 'js', 'dist');
const { Client } = await import(pathToFileURL(path.join(dist, 'herald-client.js')).href);
const { msgpackCodec } = await import(pathToFileURL(path.join(dist, 'msgpack.js')).href);

const { values: a } = parseArgs({
  options: {
    url: { type: 'string' },
    prefix: { type: 'string', default: 'bench.' },
    'run-id': { type: 'string' },
    channels: { type: 'string', default: '1' },
    clients: { type: 'string', default: '100' },
    first: { type: 'string', default: '0' },
    encoding: { type: 'string', default: 'json' },
    warmup: { type: 'string', default: '1' },
    duration: { type: 'string', default: '10' },
    out: { type: 'string' },
  },
});
if (!a.url || !a['run-id'] || !a.out) {
  console.error('subscribers.mjs: --url, --run-id and --out are required');
  process.exit(2);
}
const channels = Number(a.channels);
const nClients = Number(a.clients);
const first = Number(a.first);
const runId = Number.parseInt(a['run-id'], 16).toString(16).padStart(6, '0');
const warmupNs = BigInt(Math.round(Number(a.warmup) * 1e9));
const durationNs = BigInt(Math.round(Number(a.duration) * 1e9));

// Latencies of the measured window, µs; grown by doubling.
let lat = new Float64Array(1 << 16);
let nLat = 0;
let firstStamp = null;
const counters = { deliveries: 0, measured: 0, gaps: 0, duplicates: 0, bad_stamps: 0, gap_events: 0, disconnects: 0 };

function record(us) {
  if (nLat === lat.length) {
    const bigger = new Float64Array(lat.length * 2);
    bigger.set(lat);
    lat = bigger;
  }
  lat[nLat++] = us;
}

/** The send time of a stamp (a string "HB1:<16 hex>:..."), or null. */
function stampTime(data) {
  if (typeof data !== 'string' || !data.startsWith('HB1:') || data.length < 47) return null;
  return BigInt(`0x${data.slice(4, 20)}`);
}

let lastDelivery = Date.now();

function onPublication(track, pub) {
  const now = process.hrtime.bigint();
  counters.deliveries += 1;
  lastDelivery = Date.now();
  const sent = stampTime(pub.data);
  if (sent === null) { counters.bad_stamps += 1; return; }
  // The SDK de-duplicates and announces gaps itself; this counts apart.
  if (track.epoch === pub.epoch && track.offset !== null) {
    if (pub.offset <= track.offset) counters.duplicates += 1;
    else if (pub.offset !== track.offset + 1) counters.gaps += 1;
  }
  track.epoch = pub.epoch;
  track.offset = pub.offset;
  if (firstStamp === null) firstStamp = sent;
  if (sent >= firstStamp + warmupNs && sent < firstStamp + warmupNs + durationNs) {
    counters.measured += 1;
    record(Number(now - sent) / 1000);
  }
}

const clients = [];
const ready = [];
for (let k = first; k < first + nClients; k++) {
  const c = new Client(a.url, {
    WebSocket: WS,
    encoding: a.encoding,
    codec: a.encoding === 'msgpack' ? msgpackCodec : undefined,
    name: 'herald-bench-sdk',
    timeout: 60000,
  });
  c.on('disconnected', () => { counters.disconnects += 1; });
  c.connect();
  const track = { epoch: null, offset: null };
  const sub = c.subscribe(`${a.prefix}${runId}.${k % channels}`, {
    publication: (pub) => onPublication(track, pub),
    gap: () => { counters.gap_events += 1; },
  });
  clients.push(c);
  ready.push(sub.ready({ timeout: 60000 }));
}
await Promise.all(ready);
// CPU from here to the end: decoding, de-duplication and delivery of
// every publication (the set-up is not counted).
const cpu0 = process.cpuUsage();
const deliveries0 = counters.deliveries;
process.stdout.write(`ready ${nClients}\n`);

let finished = false;
let draining = false;
function drain() {
  if (draining) return;
  draining = true;
  const until = Date.now() + 5000;
  const tick = setInterval(() => {
    if (Date.now() - lastDelivery >= 500 || Date.now() > until) {
      clearInterval(tick);
      finish();
    }
  }, 100);
}

function finish() {
  if (finished) return;
  finished = true;
  fs.writeFileSync(a.out, Buffer.from(lat.buffer, 0, nLat * 8));
  const cpu = process.cpuUsage(cpu0);
  counters.cpu_s = (cpu.user + cpu.system) / 1e6;
  counters.cpu_deliveries = counters.deliveries - deliveries0;
  process.stdout.write(`${JSON.stringify({ clients: nClients, ...counters })}\n`);
  for (const c of clients) c.disconnect();
  // The sockets close in the background; nothing else is left to do.
  process.exit(0);
}
process.on('SIGTERM', drain);
process.on('SIGINT', drain);
