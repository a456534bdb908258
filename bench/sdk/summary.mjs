// Summary of one bench/sdk.sh run: the delivery latency of the JavaScript
// SDK's subscribers (subscribers.mjs: one latency file and one counter line
// per process) beside herald-bench's own subscribers (its JSON report), as
// a Markdown table on stdout and OUT/summary.json.
//
//   node summary.mjs OUT
//
// OUT holds bench.json (herald-bench --json), sdk-K.bin (float64 µs) and
// sdk-K.json (the counter line of process K).

import fs from 'node:fs';
import path from 'node:path';

const out = process.argv[2];
if (!out) {
  console.error('usage: summary.mjs OUT');
  process.exit(2);
}
const bench = JSON.parse(fs.readFileSync(path.join(out, 'bench.json'), 'utf8'));
const files = fs.readdirSync(out).filter((f) => /^sdk-\d+\.bin$/.test(f)).sort();
if (!files.length) throw new Error(`no sdk-K.bin in ${out}`);

const parts = files.map((f) => {
  const b = fs.readFileSync(path.join(out, f));
  return new Float64Array(b.buffer, b.byteOffset, b.length / 8);
});
const lat = new Float64Array(parts.reduce((n, p) => n + p.length, 0));
let at = 0;
for (const p of parts) { lat.set(p, at); at += p.length; }
lat.sort();
const q = (p) => (lat.length ? lat[Math.min(lat.length - 1, Math.max(0, Math.ceil(p * lat.length) - 1))] : NaN);

const counters = { clients: 0, deliveries: 0, measured: 0, gaps: 0, duplicates: 0, bad_stamps: 0, gap_events: 0, disconnects: 0, cpu_s: 0, cpu_deliveries: 0 };
for (const f of files) {
  const c = JSON.parse(fs.readFileSync(path.join(out, f.replace('.bin', '.json')), 'utf8'));
  for (const k of Object.keys(counters)) counters[k] += c[k] || 0;
}

const p = bench.parameters || {};
const perChannelSdk = counters.clients / (p.channels || 1);
const sdk = {
  subscribers: counters.clients,
  deliveries_total: counters.deliveries,
  expected_deliveries: bench.publications_total * perChannelSdk,
  measured: lat.length,
  p50_us: q(0.5), p90_us: q(0.9), p99_us: q(0.99), max_us: lat.length ? lat[lat.length - 1] : NaN,
  gaps: counters.gaps, duplicates: counters.duplicates, gap_events: counters.gap_events,
  bad_stamps: counters.bad_stamps, disconnects: counters.disconnects,
  processes: files.length,
  // CPU of the Node processes per delivery (all of it: ws, the SDK's
  // decoding and de-duplication, the handler).
  cpu_s: counters.cpu_s,
  cpu_us_per_delivery: counters.cpu_deliveries ? (counters.cpu_s * 1e6) / counters.cpu_deliveries : null,
};
const c = bench.latency || {};
const cside = {
  subscribers: bench.subscribers,
  deliveries_total: bench.deliveries_total,
  expected_deliveries: bench.expected_deliveries,
  measured: c.count,
  p50_us: c.p50_us, p90_us: c.p90_us, p99_us: c.p99_us, max_us: c.max_us,
  gaps: bench.gaps, duplicates: bench.duplicates,
  sub_transport: p.sub_transport,
};

const ms = (us) => (Number.isFinite(us) ? (us / 1000).toFixed(2) : '-');
const n = (x) => (Number.isFinite(x) ? Math.round(x).toLocaleString('en-US') : '-');
const rows = [
  [`herald-bench (${cside.sub_transport === 'client' ? 'C client library' : `C, ${cside.sub_transport}`})`, cside],
  [`JS SDK in Node (${sdk.processes} processes)`, sdk],
];
console.log(`${bench.command}`);
console.log(`publications ${n(bench.publications_total)} (${n(bench.publications_per_s)}/s measured), encoding ${p.encoding}; ` +
  `SDK processes: ${sdk.cpu_us_per_delivery === null ? '-' : sdk.cpu_us_per_delivery.toFixed(1)} us CPU per delivery\n`);
console.log('| subscribers | count | deliveries (expected) | measured | p50 ms | p90 ms | p99 ms | max ms | gaps | dups |');
console.log('|---|---|---|---|---|---|---|---|---|---|');
for (const [name, r] of rows) {
  console.log(`| ${name} | ${n(r.subscribers)} | ${n(r.deliveries_total)} (${n(r.expected_deliveries)}) | ${n(r.measured)} | ` +
    `${ms(r.p50_us)} | ${ms(r.p90_us)} | ${ms(r.p99_us)} | ${ms(r.max_us)} | ${r.gaps} | ${r.duplicates} |`);
}
fs.writeFileSync(path.join(out, 'summary.json'), `${JSON.stringify({ command: bench.command, c: cside, sdk }, null, 2)}\n`);
const bad = sdk.gaps || sdk.duplicates || sdk.gap_events || sdk.bad_stamps || cside.gaps || cside.duplicates ||
  sdk.deliveries_total !== sdk.expected_deliveries || !sdk.measured;
process.exit(bad ? 1 : 0);
