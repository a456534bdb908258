// Dead-connection detection against a real herald that stops answering
// (SIGSTOP: the TCP connection stays up, nothing comes back): after the
// server's ping interval of silence the SDK sends a `ping` command, gives
// up after pingTimeout, and reconnects once herald runs again. Across that
// reconnect: a publish with an idempotency key that was in flight is sent
// again and published exactly once; one without a key fails with
// 'disconnected' (it may or may not have been published); the
// subscription recovers from its last offset.

import { test } from 'node:test';
import assert from 'node:assert/strict';

import { chan, recorder, requireSdk, scope, t, waitFor } from './harness.mjs';

test('heartbeat: a silent server is detected, in-flight publishes resent by key or failed', async (tc) => {
  const { HeraldError } = requireSdk();
  const env = scope(tc);
  const h = await env.herald({
    shutdown_timeout: 0,
    ping_interval: 1,
    pong_timeout: 30,  // herald itself keeps the stale connection meanwhile
    namespace_defaults: { history_size: 100 },
  });
  const ch = chan();
  const c = env.client(h.url(), { pingTimeout: t(1000) });
  const disconnects = [];
  c.on('disconnected', (ev) => disconnects.push(ev));
  c.connect();
  const r = recorder();
  const s = c.subscribe(ch, r.handlers);
  await s.ready();
  const id = c.clientId;
  await c.publish(ch, 'p1');
  await r.waitPubs(1);

  await h.pause();
  const keyed = c.publish(ch, 'keyed', { idempotencyKey: 'hb-1', timeout: t(15000) });
  const unkeyed = c.publish(ch, 'unkeyed', { timeout: t(15000) });
  // Caught now, asserted below: its rejection must not go unhandled meanwhile.
  const unkeyedResult = unkeyed.then(() => null, (e) => e);
  try {
    await waitFor(() => disconnects.length === 1, { timeout: 5000, what: 'the heartbeat to give up' });
  } finally {
    await h.resume();
  }
  assert.equal(disconnects[0].reconnect, true);
  const err = await unkeyedResult;
  assert.ok(err instanceof HeraldError, `the unkeyed publish: ${err}`);
  assert.equal(err.code, 'disconnected');

  const ack = await keyed;
  await waitFor(() => c.state === 'connected' && c.clientId !== id, { timeout: 5000, what: 'a new connection' });
  await waitFor(() => r.subscribed.length === 2, { what: 'the resubscribe' });
  assert.equal(r.subscribed[1].recovered, true);
  const hist = await c.history(ch);
  const datas = hist.publications.map((p) => p.data);
  // 'keyed' exactly once, at the offset its ack names; 'unkeyed' at most
  // once (herald may have read it from the old connection when it ran again).
  assert.equal(datas.filter((d) => d === 'keyed').length, 1, JSON.stringify(datas));
  assert.ok(datas.filter((d) => d === 'unkeyed').length <= 1, JSON.stringify(datas));
  assert.equal(hist.publications.find((p) => p.data === 'keyed').offset, ack.offset);
  // The subscriber saw every publication of the channel once, in order.
  await r.waitPubs(hist.publications.length);
  assert.deepEqual(r.offsets(), hist.publications.map((p) => p.offset));
  assert.deepEqual(r.gaps, []);
});
