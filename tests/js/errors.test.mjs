// How commands fail through the SDK against a real herald: server errors
// as HeraldError with the server's code, the per-command timeout and
// AbortSignal (against a herald stopped with SIGSTOP, which holds the
// connection open and answers nothing), commands waiting for a connection,
// and disconnect() failing what is pending.

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';

import { chan, recorder, requireSdk, scope, t, waitFor } from './harness.mjs';

const CONFIG = {
  shutdown_timeout: 0,
  max_message_size: 4096,
  history_max_limit: 50,
  namespace_defaults: { history_size: 10 },
  namespaces: [
    { name: 'ro', allow_publish: false },
    { name: 'bare', history_size: 0, presence: false },
  ],
};

/** Asserts that promise p rejects with a HeraldError of `code`. */
async function rejectsWith(p, code) {
  const { HeraldError } = requireSdk();
  await assert.rejects(p, (e) => {
    assert.ok(e instanceof HeraldError, `not a HeraldError: ${e && e.stack}`);
    assert.equal(e.code, code, `code ${e.code} (${e.message}), expected ${code}`);
    assert.equal(typeof e.message, 'string');
    return true;
  });
}

describe('errors', { concurrency: true }, () => {
  let env;
  let h;
  before(async () => {
    env = scope();
    h = await env.herald(CONFIG);
  });
  after(() => env.close());

  for (const encoding of ['json', 'msgpack']) {
    test(`${encoding}: server errors reject with their code; the connection stays`, async () => {
      const c = env.client(h.url(), { encoding });
      c.connect();
      await c.ready();
      const id = c.clientId;
      await rejectsWith(c.publish('bad channel!', 1), 102);      // bad channel name
      await rejectsWith(c.publish('nosuchns:x', 1), 102);        // unknown namespace
      await rejectsWith(c.publish(chan('ro:'), 1), 103);         // publishing not allowed
      await rejectsWith(c.history(chan('bare:')), 108);          // no history there
      await rejectsWith(c.presence(chan('bare:')), 108);         // no presence there
      await rejectsWith(c.history(chan(), { limit: 51 }), 106);  // over history_max_limit
      // Over max_message_size: herald answers 112 *without id* (it does
      // not read the frame); replies keep the order of the commands, so
      // the SDK fails the commands of that frame with 112, at once, and
      // reports no stray error.
      const strays = [];
      const off = c.on('error', (ev) => strays.push(ev));
      const t0 = Date.now();
      await rejectsWith(c.publish(chan(), 'x'.repeat(5000), { timeout: t(10000) }), 112);
      assert.ok(Date.now() - t0 < t(5000), 'failed by the 112, not by its timeout');
      off();
      assert.deepEqual(strays, []);
      // None of them cost the connection.
      assert.equal(c.state, 'connected');
      assert.equal(c.clientId, id);
      const ok = await c.publish(chan(), 'fine');
      assert.equal(ok.offset, 1);
    });
  }

  test('a refused subscribe reaches its error handler as a HeraldError', async () => {
    const { HeraldError } = requireSdk();
    const c = env.client(h.url());
    c.connect();
    const r = recorder();
    const s = c.subscribe('nosuchns:x', r.handlers);
    const ready = s.ready({ timeout: 2000 });
    await rejectsWith(ready, 102);
    assert.equal(r.errors.length, 1);
    assert.ok(r.errors[0] instanceof HeraldError);
    assert.equal(r.errors[0].code, 102);
    assert.deepEqual(r.unsubscribed.map((u) => u.code), [102]);
    // Once ended, ready() says so.
    await rejectsWith(s.ready(), 'closed');
    assert.equal(s.state, 'unsubscribed');
    assert.equal(c.state, 'connected');
  });

  test('per-command timeout and AbortSignal while herald answers nothing (SIGSTOP)', async (tc) => {
    // Its own herald: the others' tests must not stall.
    const own = scope(tc);
    const hp = await own.herald({ shutdown_timeout: 0, namespace_defaults: { history_size: 10 } });
    const c = own.client(hp.url(), { pingTimeout: 60000 });
    c.connect();
    await c.ready();
    const ch = chan();
    await c.publish(ch, 'before');
    await hp.pause();
    try {
      const t0 = Date.now();
      await rejectsWith(c.publish(ch, 'timed out', { timeout: 300 }), 'timeout');
      assert.ok(Date.now() - t0 >= 250, 'the timeout fired early');
      await rejectsWith(c.history(ch, { timeout: 300 }), 'timeout');

      const ac = new AbortController();
      const p = c.presence(ch, { signal: ac.signal, timeout: t(10000) });
      ac.abort();
      await rejectsWith(p, 'aborted');
      // An already aborted signal fails the command at once.
      await rejectsWith(c.history(ch, { signal: AbortSignal.abort() }), 'aborted');
      // AbortSignal.timeout() works as a signal too.
      await rejectsWith(c.history(ch, { signal: AbortSignal.timeout(200), timeout: t(10000) }), 'aborted');
    } finally {
      await hp.resume();
    }
    // The connection survived: the next command is answered, and the
    // history holds 'before' and, when herald read it before the stop or
    // after it, the publish that timed out (its fate was unknown).
    const hst = await c.history(ch, { timeout: t(5000) });
    assert.equal(hst.publications[0].data, 'before');
    assert.ok(hst.publications.length <= 2);
  });

  test('commands wait for the connection within their timeout', async (tc) => {
    const own = scope(tc);
    const hp = await own.herald({ shutdown_timeout: 0 });
    const port = hp.port;
    await hp.stop();
    const c = own.client(`ws://127.0.0.1:${port}/ws`);
    c.connect();
    // Nothing listens: the command waits, then times out.
    await rejectsWith(c.publish(chan(), 1, { timeout: 300 }), 'timeout');
    assert.notEqual(c.state, 'connected');
    // herald comes back on the port: a command issued meanwhile is sent
    // once the client has reconnected.
    const pending = c.publish(chan(), 'late', { timeout: t(10000) });
    await hp.start({ port });
    const ack = await pending;
    assert.equal(ack.offset, 1);
    assert.equal(c.state, 'connected');
  });

  test('disconnect() fails pending commands with closed and stops reconnecting', async (tc) => {
    const own = scope(tc);
    const hp = await own.herald({ shutdown_timeout: 0 });
    const c = own.client(hp.url());
    c.connect();
    await c.ready();
    await hp.pause();
    try {
      const p = c.history(chan(), { timeout: t(10000) });
      c.disconnect();
      await rejectsWith(p, 'closed');
      assert.equal(c.state, 'disconnected');
    } finally {
      await hp.resume();
    }
  });
});
