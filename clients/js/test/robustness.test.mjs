// The client's robustness: commands keep their bounds across a drop,
// application handlers that throw or call back into the client, a
// getToken that is slow or hangs, listeners and timers that must not pile
// up. (First written as failing tests by a review of the SDK.)
import { test } from 'node:test';
import assert from 'node:assert/strict';
import WebSocket from 'ws';
import { Client } from '../dist/herald-client.js';
import { Scripted, waitFor, fakeToken } from './scripted.mjs';

const fast = { WebSocket, minReconnectDelay: 5, maxReconnectDelay: 40, timeout: 2000 };
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
async function setup(handler, opts = {}) {
  const server = await new Scripted(handler).start();
  const client = new Client(server.url, { ...fast, ...opts });
  const events = [];
  for (const e of ['state', 'connecting', 'connected', 'disconnected', 'error']) client.on(e, (ev) => events.push([e, ev]));
  return { server, client, events, async done() { client.disconnect(); await server.stop(); } };
}
const settled = (p, ms) => Promise.race([p.then(() => 'resolved', (e) => `rejected:${e.code}`), sleep(ms).then(() => 'pending')]);

test('a retried command (history) keeps its timeout and AbortSignal after a drop', async () => {
  const t = await setup((cmd, conn) => {
    if (conn.n > 0 && cmd.op === 'connect') return 'none'; // never connected again
    if (cmd.op === 'history') { conn.ws.terminate(); return 'none'; }
    return undefined;
  }, { timeout: 60000 });
  t.client.connect();
  await t.client.ready();
  const ac = new AbortController();
  const p1 = t.client.history('h', { timeout: 300 });
  const p2 = t.client.presence('p', { signal: ac.signal }); // leaves in the same frame
  p1.catch(() => {});
  p2.catch(() => {}); // settled() below looks at them after the fact
  await waitFor(() => t.client.state === 'connecting');
  ac.abort();
  assert.equal(await settled(p1, 1000), 'rejected:timeout', 'history({timeout:300}) must reject within its timeout');
  assert.equal(await settled(p2, 100), 'rejected:aborted', 'abort must still work');
  await t.done();
});

test('a throwing publication handler does not lose the rest of the frame; the error is reported', async () => {
  const t = await setup();
  try {
    t.client.connect();
    const got = [];
    const sub = t.client.subscribe('ch', { publication: (p) => { got.push(p.offset); if (p.offset === 1) throw new Error('app bug'); } });
    await sub.ready();
    t.server.send(t.server.last(), { push: 'pub', channel: 'ch', offset: 1, epoch: 'E', data: 1 },
      { push: 'pub', channel: 'ch', offset: 2, epoch: 'E', data: 2 }, { id: 999, ok: {} });
    const h = t.client.history('ch'); // its reply follows in the next frame
    assert.deepEqual((await h).publications, []);
    await waitFor(() => got.length === 2);
    assert.deepEqual(got, [1, 2], 'pub 2 (same frame) must be delivered');
    const handler = t.events.filter(([e, ev]) => e === 'error' && ev.type === 'handler');
    assert.deepEqual(handler.map(([, ev]) => ev.error.message), ['app bug']);
  } finally { await t.done(); }
});

test('unsubscribe() inside a recovered publication handler leaves the subscription unsubscribed', async () => {
  const t = await setup((cmd) => {
    if (cmd.op !== 'subscribe') return undefined;
    if (!cmd.since) return { epoch: 'E', offset: 1 };
    return { epoch: 'E', offset: 3, recovered: true, publications: [2, 3].map((o) => ({ channel: 'ch', offset: o, epoch: 'E', data: o })) };
  });
  t.client.connect();
  const calls = [];
  let sub;
  sub = t.client.subscribe('ch', { publication: (p) => { calls.push(['pub', p.offset]); sub.unsubscribe(); }, subscribed: () => calls.push(['subscribed']) });
  await sub.ready();
  t.server.last().ws.close(4000, 'restart');
  await waitFor(() => t.server.conns.length === 2 && t.client.state === 'connected');
  await sleep(100);
  assert.equal(sub.state, 'unsubscribed');
  assert.deepEqual(calls, [['subscribed'], ['pub', 2]], 'no subscribed after unsubscribe');
  await t.done();
});

test('connect() from a disconnected(reconnect:false) handler is honoured', async () => {
  const t = await setup();
  let again = true;
  t.client.on('disconnected', (d) => { if (!d.reconnect && again) { again = false; t.client.connect(); } });
  t.client.connect();
  await t.client.ready();
  t.server.last().ws.close(4102, 'kicked');
  await sleep(300);
  assert.equal(t.client.state, 'connected', `state is ${t.client.state}`);
  await t.done();
});

test('browser listeners do not pile up when the server stops the client and the app connects again', async () => {
  const win = new EventTarget();
  const doc = new EventTarget();
  doc.visibilityState = 'visible';
  let live = 0;
  globalThis.addEventListener = (...a) => { live++; win.addEventListener(...a); };
  globalThis.removeEventListener = (...a) => { live--; win.removeEventListener(...a); };
  globalThis.document = doc;
  try {
    const t = await setup();
    for (let i = 0; i < 3; i++) {
      t.client.connect();
      await t.client.ready();
      t.server.last().ws.close(4102, 'kicked');
      await waitFor(() => t.client.state === 'disconnected');
    }
    t.client.disconnect();
    assert.equal(live, 0, `${live} window listeners left after disconnect()`);
    await t.server.stop();
  } finally { delete globalThis.addEventListener; delete globalThis.removeEventListener; delete globalThis.document; }
});

test('a channel getToken still pending when the connection drops does not subscribe twice', async () => {
  let n = 0;
  const t = await setup();
  t.client.connect();
  await t.client.ready();
  const ctx = [];
  const errors = [];
  const sub = t.client.subscribe('priv', { subscribed: (c) => ctx.push(c), error: (e) => errors.push(e.code) },
    { getToken: async () => { n++; await sleep(200); return fakeToken({ n }); } });
  await sleep(20);
  t.server.last().ws.close(4000, 'restart'); // while getToken #1 runs
  await waitFor(() => t.server.conns.length === 2 && t.client.state === 'connected');
  await sleep(800);
  const subs = t.server.commands.filter((c) => c.op === 'subscribe' && c.conn === 1);
  const unsubs = t.server.commands.filter((c) => c.op === 'unsubscribe');
  assert.equal(subs.length, 1, `subscribe sent ${subs.length}x on conn 1 (unsubscribes: ${unsubs.length}, subscribed callbacks: ${ctx.length})`);
  await t.done();
});

test('a getToken that never settles does not leave the client connecting forever', async () => {
  let calls = 0;
  const t = await setup(undefined, { timeout: 200, getToken: () => { calls++; return new Promise(() => {}); } });
  t.client.connect();
  await sleep(1000);
  assert.ok(calls > 1, `getToken called ${calls}x in 1 s with timeout 200 ms: no retry`);
  await t.done();
});

test('since given by the app: the publication at since.offset is not delivered again', async () => {
  const t = await setup((cmd) => cmd.op === 'subscribe'
    ? { epoch: 'E', offset: 4, recovered: true, publications: [3, 4].map((o) => ({ channel: 'ch', offset: o, epoch: 'E', data: o })) } : undefined);
  t.client.connect();
  const got = [];
  await t.client.subscribe('ch', { publication: (p) => got.push(p.offset) }, { since: { offset: 3, epoch: 'E' } }).ready();
  assert.deepEqual(got, [4]);
  await t.done();
});

test('a throwing subscribed handler does not cause an unhandled rejection', async () => {
  const unh = [];
  const h = (e) => unh.push(e);
  process.on('unhandledRejection', h);
  const t = await setup();
  try {
    t.client.connect();
    const sub = t.client.subscribe('ch', { subscribed: () => { throw new Error('app bug'); } });
    await sub.ready();
    await waitFor(() => t.events.some(([e, ev]) => e === 'error' && ev.type === 'handler'));
    await sleep(50);
    assert.equal(unh.length, 0, `unhandled rejections: ${unh.map(String)}`);
    assert.equal(sub.state, 'subscribed');
  } finally { await t.done(); process.off('unhandledRejection', h); }
});

test('a channel-token refresh that completes after unsubscribe() leaves no timer and asks no token', async () => {
  let replyRefresh;
  let n = 0;
  const t = await setup((cmd, conn) => {
    if (cmd.op === 'sub_refresh') { replyRefresh = () => t.server.send(conn, { id: cmd.id, ok: { expires: 0 } }); return 'none'; }
    return undefined;
  }, { refreshBefore: 30 });
  t.client.connect();
  const sub = t.client.subscribe('priv', {}, { getToken: async () => { n++; return fakeToken({ exp: Math.floor(Date.now() / 1000) + 2 }); } });
  await sub.ready();
  await waitFor(() => replyRefresh, 3000, 'sub_refresh');
  sub.unsubscribe();
  const calls = n;
  replyRefresh();
  await sleep(1500);
  assert.equal(n, calls, `getToken called ${n - calls}x after unsubscribe()`);
  await t.done();
});

test('a disconnected client leaves no timer behind', async () => {
  const before = process.getActiveResourcesInfo().filter((r) => r === 'Timeout').length;
  const t = await setup((cmd) => (cmd.op === 'connect'
    ? { client: 'c', node: 'n', ping: 1, expires: Math.floor(Date.now() / 1000) + 600 } : undefined),
  { getToken: async () => fakeToken({ exp: Math.floor(Date.now() / 1000) + 600 }) });
  t.client.connect();
  const sub = t.client.subscribe('priv', {}, { getToken: async () => fakeToken({ exp: Math.floor(Date.now() / 1000) + 600 }) });
  await sub.ready();
  t.client.presence('p').catch(() => {});
  await t.done();
  await sleep(20);
  const after = process.getActiveResourcesInfo().filter((r) => r === 'Timeout').length;
  assert.ok(after <= before, `timers left running: ${after} now, ${before} before`);
});
