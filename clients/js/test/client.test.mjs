// The client's logic against a scripted in-process server: commands and
// replies, batching, timeouts and cancellation, reconnect and its close
// code rules, recovery and de-duplication, gaps, heartbeat, tokens.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import WebSocket from 'ws';
import { Client, HeraldError } from '../dist/herald-client.js';
import { msgpackCodec } from '../dist/msgpack.js';
import { Scripted, waitFor, fakeToken } from './scripted.mjs';

const fast = { WebSocket, minReconnectDelay: 5, maxReconnectDelay: 40, timeout: 2000 };
const now = () => Math.floor(Date.now() / 1000);

async function setup(handler, opts = {}) {
  const server = await new Scripted(handler).start();
  const client = new Client(server.url, { ...fast, ...opts });
  const events = [];
  for (const e of ['state', 'connecting', 'connected', 'disconnected', 'error']) {
    client.on(e, (ev) => events.push([e, ev]));
  }
  return { server, client, events, async done() { client.disconnect(); await server.stop(); } };
}

test('replies settle their commands; server errors reject with their code', async () => {
  const t = await setup((cmd) => (cmd.op === 'publish' && cmd.channel === 'bad' ? { error: { code: 102, message: 'invalid channel name' } } : undefined));
  t.client.connect();
  await t.client.ready();
  assert.equal(t.client.clientId, 'c0');
  assert.deepEqual(await t.client.publish('a', { x: 1 }), { offset: 1, epoch: 'E' });
  await assert.rejects(t.client.publish('bad', 1), (e) => e instanceof HeraldError && e.code === 102);
  await assert.rejects(t.client.publish('a', new Uint8Array([1])), (e) => e.code === 107);
  await t.done();
});

test('commands made in one turn leave in one frame; batched replies are split', async () => {
  const t = await setup((cmd, conn) => {
    if (cmd.op !== 'history') return undefined;
    if (cmd.channel === 'h3') {
      // Answer all three in one frame, as the server may.
      const ids = conn.commands.filter((c) => c.op === 'history').map((c) => c.id);
      t.server.send(conn, ...ids.map((id) => ({ id, ok: { publications: [], epoch: 'E', offset: id } })));
    }
    return 'none';
  });
  t.client.connect();
  await t.client.ready();
  const before = t.server.frames.length;
  const r = await Promise.all(['h1', 'h2', 'h3'].map((c) => t.client.history(c)));
  assert.deepEqual(t.server.frames.slice(before), [3]);
  assert.deepEqual(r.map((x) => x.offset), t.server.commands.filter((c) => c.op === 'history').map((c) => c.id));
  await t.done();
});

test('per-command timeout and AbortSignal', async () => {
  const t = await setup((cmd) => (cmd.op === 'presence' ? 'none' : undefined));
  t.client.connect();
  await t.client.ready();
  await assert.rejects(t.client.presence('p', { timeout: 50 }), (e) => e.code === 'timeout');
  const ac = new AbortController();
  const p = t.client.presence('p', { signal: ac.signal });
  ac.abort();
  await assert.rejects(p, (e) => e.code === 'aborted');
  await assert.rejects(t.client.presence('p', { signal: AbortSignal.abort() }), (e) => e.code === 'aborted');
  // Still usable afterwards.
  assert.deepEqual(await t.client.publish('a', 1), { offset: 1, epoch: 'E' });
  await t.done();
});

test('commands made before connecting wait for the connection', async () => {
  const t = await setup();
  const p = t.client.publish('a', 1);
  t.client.connect();
  assert.deepEqual(await p, { offset: 1, epoch: 'E' });
  await t.done();
});

test('close codes that allow it reconnect with backoff; 4101, 4102 and 1000 do not', async () => {
  for (const [code, again] of [[4000, true], [4001, true], [4003, true], [4103, true], [1006, true], [4101, false], [4102, false], [1000, false]]) {
    const t = await setup();
    t.client.connect();
    await t.client.ready();
    if (code === 1006) t.server.last().ws.terminate();
    else t.server.last().ws.close(code, 'bye');
    await waitFor(() => t.events.find(([e]) => e === 'disconnected'), 2000, `disconnected after ${code}`);
    const d = t.events.find(([e]) => e === 'disconnected')[1];
    assert.equal(d.code, code);
    assert.equal(d.reconnect, again, `reconnect after ${code}`);
    if (again) {
      await waitFor(() => t.server.conns.length === 2 && t.client.state === 'connected', 2000, `reconnect after ${code}`);
    } else {
      await waitFor(() => t.client.state === 'disconnected');
      await assert.rejects(t.client.publish('a', 1, { timeout: 100 }), (e) => e.code === 'timeout');
      assert.equal(t.server.conns.length, 1);
    }
    await t.done();
  }
});

test('the disconnect push decides reconnect over the close code', async () => {
  const t = await setup();
  t.client.connect();
  await t.client.ready();
  const conn = t.server.last();
  t.server.send(conn, { push: 'disconnect', code: 4003, reason: 'broker lost', reconnect: false });
  conn.ws.close(4003, 'broker lost');
  await waitFor(() => t.client.state === 'disconnected');
  assert.deepEqual(t.events.find(([e]) => e === 'disconnected')[1], { code: 4003, reason: 'broker lost', reconnect: false });
  await t.done();
});

test('a publish in flight at a drop fails with "disconnected"; one with an idempotency key is sent again', async () => {
  let drop = true;
  const t = await setup((cmd, conn) => {
    if (cmd.op === 'publish' && drop) { drop = cmd.idempotency_key ? false : drop; conn.ws.terminate(); return 'none'; }
    return undefined;
  });
  t.client.connect();
  await t.client.ready();
  await assert.rejects(t.client.publish('a', 1), (e) => e.code === 'disconnected');
  await t.client.ready();
  const r = await t.client.publish('a', 2, { idempotencyKey: 'k-1' });
  assert.deepEqual(r, { offset: 1, epoch: 'E' });
  const sent = t.server.commands.filter((c) => c.op === 'publish' && c.idempotency_key === 'k-1');
  assert.equal(sent.length, 2);
  assert.notEqual(sent[0].conn, sent[1].conn);
  await t.done();
});

test('resubscribe recovers from the last offset, without duplicates, in order', async () => {
  let top = 0;
  const pubs = [];
  const pub = (n) => ({ channel: 'ch', offset: n, epoch: 'E', data: { n } });
  const t = await setup((cmd, conn) => {
    if (cmd.op !== 'subscribe') return undefined;
    if (!cmd.since) return { epoch: 'E', offset: top };
    // Recovery repeats the last seen one too (the SDK must drop it).
    const from = cmd.since.offset;
    return { epoch: 'E', offset: top, recovered: true, publications: [pub(from), ...Array.from({ length: top - from }, (_, i) => pub(from + 1 + i))] };
  });
  const contexts = [];
  t.client.connect();
  const sub = t.client.subscribe('ch', { publication: (p) => pubs.push(p.offset), subscribed: (c) => contexts.push(c) });
  await sub.ready();
  for (top = 1; top <= 3; top++) t.server.send(t.server.last(), { push: 'pub', ...pub(top) });
  top = 3;
  await waitFor(() => pubs.length === 3);
  t.server.send(t.server.last(), { push: 'pub', ...pub(2) }); // a duplicate push is dropped
  t.server.last().ws.close(4000, 'restart');
  top = 7;
  await waitFor(() => contexts.length === 2, 3000, 'resubscribe');
  const sub2 = t.server.commands.filter((c) => c.op === 'subscribe')[1];
  assert.deepEqual(sub2.since, { offset: 3, epoch: 'E' });
  assert.deepEqual(pubs, [1, 2, 3, 4, 5, 6, 7]);
  assert.equal(contexts[1].recovered, true);
  assert.equal(contexts[1].resubscribed, true);
  assert.deepEqual(contexts[1].publications.map((p) => p.offset), [4, 5, 6, 7]);
  assert.equal(sub.offset, 7);
  await t.done();
});

test('a position the server cannot recover fires gap and continues from the top', async () => {
  let epoch = 'E1';
  const t = await setup((cmd) => (cmd.op === 'subscribe'
    ? { epoch, offset: epoch === 'E1' ? 5 : 2, ...(cmd.since ? { recovered: cmd.since.epoch === epoch, publications: [] } : {}) }
    : undefined));
  const gaps = [];
  const ctx = [];
  t.client.connect();
  const sub = t.client.subscribe('ch', { gap: (g) => gaps.push(g), subscribed: (c) => ctx.push(c) });
  await sub.ready();
  epoch = 'E2'; // the stream was lost: a new epoch
  t.server.last().ws.close(4000, 'restart');
  await waitFor(() => ctx.length === 2);
  assert.deepEqual(gaps, [{ channel: 'ch', epoch: 'E2', offset: 2, since: { offset: 5, epoch: 'E1' } }]);
  assert.equal(ctx[1].recovered, false);
  assert.deepEqual([sub.epoch, sub.offset], ['E2', 2]);
  await t.done();
});

test('a subscribe refused for good ends the subscription; a temporary error is retried', async () => {
  let fails = 2;
  const t = await setup((cmd) => {
    if (cmd.op !== 'subscribe') return undefined;
    if (cmd.channel === 'no') return { error: { code: 103, message: 'permission denied' } };
    if (fails-- > 0) return { error: { code: 108, message: 'durable store unavailable' } };
    return undefined;
  });
  t.client.connect();
  const ended = [];
  const errors = [];
  const no = t.client.subscribe('no', { unsubscribed: (e) => ended.push(e), error: (e) => errors.push(e.code) });
  await assert.rejects(no.ready(), (e) => e.code === 103);
  assert.deepEqual(ended, [{ code: 103, reason: 'permission denied' }]);
  assert.equal(t.client.getSubscription('no'), undefined);
  const yes = t.client.subscribe('yes', { error: (e) => errors.push(e.code) });
  await yes.ready({ timeout: 5000 });
  assert.deepEqual(errors, [103, 108, 108]);
  await t.done();
});

test('heartbeat: a server that stops answering is left, and the client reconnects', async () => {
  let silent = false;
  const t = await setup((cmd) => {
    if (cmd.op === 'connect') return { client: 'c', node: 'n', ping: 0.1 };
    if (cmd.op === 'ping' && silent) return 'none';
    return undefined;
  }, { pingTimeout: 1000 });
  t.client.connect();
  await t.client.ready();
  await t.server.waitCommand((c) => c.op === 'ping'); // answered: stays
  assert.equal(t.server.conns.length, 1);
  silent = true;
  await waitFor(() => t.server.conns.length === 2, 3000, 'reconnect after a dead heartbeat');
  const d = t.events.find(([e]) => e === 'disconnected')[1];
  assert.deepEqual([d.code, d.reconnect], [4002, true]);
  await t.done();
});

test('the connection token is refreshed through getToken before it expires', async () => {
  let n = 0;
  const t = await setup((cmd) => {
    if (cmd.op === 'connect') return { client: 'c', node: 'n', ping: 25, expires: now() + 2 };
    if (cmd.op === 'refresh') return { expires: now() + 600 };
    return undefined;
  }, { getToken: async () => fakeToken({ sub: 'u', n: ++n, exp: now() + 600 }) });
  t.client.connect();
  await t.client.ready();
  const refreshed = new Promise((res) => t.client.on('refreshed', res));
  const r = await t.server.waitCommand((c) => c.op === 'refresh', 3000);
  assert.equal(n, 2);
  const ev = await refreshed;
  assert.ok(ev.expires > now() + 500);
  assert.equal(t.client.expires, ev.expires);
  assert.equal(r.conn, 0);
  assert.equal(t.client.state, 'connected');
  await t.done();
});

test('4100 (token refused) reconnects with a new token from getToken, and stops without one', async () => {
  const tokens = [];
  const t = await setup(undefined, { getToken: async () => { const k = fakeToken({ n: tokens.length }); tokens.push(k); return k; } });
  t.client.connect();
  await t.client.ready();
  t.server.send(t.server.last(), { push: 'disconnect', code: 4100, reason: 'token expired', reconnect: false });
  t.server.last().ws.close(4100, 'token expired');
  await waitFor(() => t.server.conns.length === 2 && t.client.state === 'connected');
  const connects = t.server.commands.filter((c) => c.op === 'connect');
  assert.deepEqual(connects.map((c) => c.token), tokens);
  assert.equal(tokens.length, 2);
  await t.done();

  const s = await setup(undefined, { token: fakeToken({}) });
  s.client.connect();
  await s.client.ready();
  s.server.last().ws.close(4100, 'token expired');
  await waitFor(() => s.client.state === 'disconnected');
  assert.equal(s.server.conns.length, 1);
  await s.done();
});

test('an expired channel token (unsubscribe push 109) is renewed and the subscription recovers', async () => {
  let n = 0;
  const t = await setup((cmd) => (cmd.op === 'subscribe'
    ? { epoch: 'E', offset: 4, ...(cmd.since ? { recovered: true, publications: [] } : {}) } : undefined));
  t.client.connect();
  const ctx = [];
  const sub = t.client.subscribe('priv', { subscribed: (c) => ctx.push(c) },
    { getToken: async (ch) => fakeToken({ channel: ch, n: ++n }) });
  await sub.ready();
  t.server.send(t.server.last(), { push: 'unsubscribe', channel: 'priv', code: 109, reason: 'channel token expired' });
  await waitFor(() => ctx.length === 2);
  const subs = t.server.commands.filter((c) => c.op === 'subscribe');
  assert.equal(subs.length, 2);
  assert.notEqual(subs[0].token, subs[1].token);
  assert.deepEqual(subs[1].since, { offset: 4, epoch: 'E' });
  assert.equal(t.server.conns.length, 1);
  await t.done();
});

test('unsubscribe tells the server and ends the subscription', async () => {
  const t = await setup();
  t.client.connect();
  const ended = [];
  const sub = t.client.subscribe('x', { unsubscribed: (e) => ended.push(e.code) });
  await sub.ready();
  assert.throws(() => t.client.subscribe('x'), (e) => e.code === 105);
  sub.unsubscribe();
  await t.server.waitCommand((c) => c.op === 'unsubscribe' && c.channel === 'x');
  assert.deepEqual(ended, ['unsubscribe']);
  assert.equal(sub.state, 'unsubscribed');
  t.client.subscribe('x'); // may subscribe again
  await t.done();
});

test('msgpack: binary publication data both ways', async () => {
  const t = await setup((cmd, conn) => {
    if (cmd.op === 'publish') {
      t.server.send(conn, { push: 'pub', channel: cmd.channel, offset: 1, epoch: 'E', data: cmd.data });
    }
    return undefined;
  }, { encoding: 'msgpack', codec: msgpackCodec });
  t.client.connect();
  const got = [];
  await t.client.subscribe('b', { publication: (p) => got.push(p.data) }).ready();
  await t.client.publish('b', new Uint8Array([0, 255, 7]));
  await waitFor(() => got.length === 1);
  assert.deepEqual([...got[0]], [0, 255, 7]);
  await t.done();
});

test('JSON: binary data from a msgpack publisher arrives as bytes', async () => {
  const t = await setup();
  t.client.connect();
  const got = [];
  await t.client.subscribe('b', { publication: (p) => got.push(p) }).ready();
  t.server.send(t.server.last(), { push: 'pub', channel: 'b', offset: 1, epoch: 'E', data: 'AQI=', binary: true });
  await waitFor(() => got.length === 1);
  assert.deepEqual([...got[0].data], [1, 2]);
  assert.equal('binary' in got[0], false);
  await t.done();
});

test('backoff has full jitter within its bounds and grows to the cap', async () => {
  const { backoff, refreshDelay } = await import('../dist/util.js');
  assert.equal(backoff(0, 500, 20000, () => 0.999999) < 500, true);
  assert.equal(Math.round(backoff(3, 500, 20000, () => 1)), 4000);
  assert.equal(backoff(20, 500, 20000, () => 1), 20000);
  assert.equal(backoff(5, 500, 20000, () => 0), 0);
  const t0 = 1_000_000_000_000;
  assert.equal(refreshDelay(t0 / 1000 + 600, 30, t0), 570_000);
  assert.equal(refreshDelay(t0 / 1000 + 10, 30, t0), 5_000);
  assert.equal(refreshDelay(t0 / 1000 - 5, 30, t0), 0);
});

test('browser events: offline drops the socket at once, online reconnects without waiting for the backoff', async () => {
  const win = new EventTarget();
  const doc = new EventTarget();
  doc.visibilityState = 'visible';
  globalThis.addEventListener = win.addEventListener.bind(win);
  globalThis.removeEventListener = win.removeEventListener.bind(win);
  globalThis.document = doc;
  try {
    // A backoff far longer than the test: only the events can bring it back.
    const t = await setup(undefined, { minReconnectDelay: 60000, maxReconnectDelay: 60000 });
    t.client.connect();
    await t.client.ready();
    win.dispatchEvent(new Event('offline'));
    assert.equal(t.client.state, 'connecting');
    const d = t.events.find(([e]) => e === 'disconnected')[1];
    assert.deepEqual(d, { code: 4002, reason: 'browser offline', reconnect: true });
    win.dispatchEvent(new Event('online'));
    await waitFor(() => t.client.state === 'connected' && t.server.conns.length === 2, 2000, 'reconnect on online');
    // Visible again while connected: the connection is checked at once.
    const pings = t.server.commands.filter((c) => c.op === 'ping').length;
    doc.dispatchEvent(new Event('visibilitychange'));
    await t.server.waitCommand((c) => c.op === 'ping' && t.server.commands.filter((x) => x.op === 'ping').length > pings);
    await t.done();
  } finally {
    delete globalThis.addEventListener;
    delete globalThis.removeEventListener;
    delete globalThis.document;
  }
});

test('React Native: handleAppState("active") reconnects without waiting for the backoff', async () => {
  const t = await setup(undefined, { minReconnectDelay: 60000, maxReconnectDelay: 60000 });
  t.client.connect();
  await t.client.ready();
  t.server.last().ws.terminate();
  await waitFor(() => t.client.state === 'connecting');
  t.client.handleAppState('background');
  t.client.handleAppState('active');
  await waitFor(() => t.client.state === 'connected' && t.server.conns.length === 2, 2000, 'reconnect on active');
  await t.done();
});

test('112 (frame too large, no id) fails the commands of that frame, not later ones', async () => {
  let later;
  const t = await setup((cmd, conn) => {
    if (cmd.op === 'publish' && cmd.data === 'big') return 'none';
    if (cmd.op === 'publish' && cmd.data === 'later') { later = { conn, id: cmd.id }; return 'none'; }
    return undefined;
  });
  t.client.connect();
  await t.client.ready();
  const a = t.client.publish('x', 'big');
  const b = t.client.publish('x', 'big'); // same frame
  await t.server.waitCommand((c) => c.data === 'big');
  const c = t.client.publish('x', 'later'); // a later frame, still unanswered
  await waitFor(() => later);
  const errors = [];
  t.client.on('error', (e) => errors.push(e));
  t.server.send(later.conn, { error: { code: 112, message: 'message too large' } });
  await assert.rejects(a, (e) => e.code === 112);
  await assert.rejects(b, (e) => e.code === 112);
  t.server.send(later.conn, { id: later.id, ok: { offset: 1, epoch: 'E' } });
  assert.deepEqual(await c, { offset: 1, epoch: 'E' });
  assert.equal(errors.length, 0);
  await t.done();
});
