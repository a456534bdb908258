// herald restarted under connected SDK clients. SIGTERM makes herald send
// the disconnect push and close with 4000 (reconnect: true); the clients
// reconnect by themselves and resubscribe with `since`:
// - an in-memory namespace loses its streams with the process: the client
//   gets an honest `gap` (recovered: false) with the new epoch;
// - a durable namespace (FerretDB) keeps them: the client recovers every
//   publication it missed (recovered: true), in order, without duplicates.
//
// To be sure that publications are missed, the subscriber's network is
// "down" (a gated WebSocket constructor: see harness.mjs) from the stop
// until the publisher, connected to the restarted herald, has published.

import { describe, test } from 'node:test';
import assert from 'node:assert/strict';

import { chan, gatedWebSocket, nextEvent, recorder, scope, waitFor } from './harness.mjs';

/** Subscribes a gated client; returns what the scenario needs. */
async function gatedSubscriber(env, h, ch, encoding) {
  const gate = gatedWebSocket();
  const c = env.client(h.url(), { encoding, WebSocket: gate.WebSocket });
  const disconnects = [];
  const connects = [];
  c.on('disconnected', (ev) => disconnects.push(ev));
  c.on('connected', (ev) => connects.push(ev));
  c.connect();
  const r = recorder();
  const s = c.subscribe(ch, r.handlers);
  await s.ready();
  return { gate, c, r, s, disconnects, connects };
}

describe('herald restart', { concurrency: true }, () => {
  for (const encoding of ['json', 'msgpack']) {
    test(`${encoding}: in-memory namespace: 4000 on stop, reconnect, gap with the new epoch`, async (tc) => {
      const env = scope(tc);
      const h = await env.herald({ shutdown_timeout: 0, namespace_defaults: { history_size: 100 } });
      const ch = chan();
      const sub = await gatedSubscriber(env, h, ch, encoding);
      const pub = env.client(h.url(), { encoding });
      const pubConnects = [];
      pub.on('connected', (ev) => pubConnects.push(ev));
      pub.connect();
      const before = [];
      for (let i = 1; i <= 3; i++) before.push(await pub.publish(ch, { i }));
      await sub.r.waitPubs(3);
      const oldEpoch = before[0].epoch;

      sub.gate.open = false;
      const port = h.port;
      await h.stop();
      // The shutdown push: code 4000, reconnect true; the SDK keeps going.
      await waitFor(() => sub.disconnects.length >= 1, { what: 'the disconnected event' });
      assert.equal(sub.disconnects[0].code, 4000, JSON.stringify(sub.disconnects[0]));
      assert.equal(sub.disconnects[0].reconnect, true);
      await waitFor(() => sub.c.state === 'connecting', { what: () => `state connecting (is ${sub.c.state})` });

      await h.start({ port });
      // The publisher (ungated) reconnects by itself and publishes into the
      // new process: a new stream, a new epoch.
      await waitFor(() => pubConnects.length >= 2, { timeout: 10000, what: 'the publisher to reconnect' });
      const missed = [];
      for (let i = 4; i <= 5; i++) missed.push(await pub.publish(ch, { i }));
      assert.notEqual(missed[0].epoch, oldEpoch);
      assert.equal(missed[0].offset, 1);

      sub.gate.open = true;
      await waitFor(() => sub.r.gaps.length === 1, { timeout: 10000, what: 'the gap event' });
      const g = sub.r.gaps[0];
      assert.equal(g.channel, ch);
      assert.equal(g.epoch, missed[0].epoch);
      assert.deepEqual(g.since, { offset: 3, epoch: oldEpoch });
      await waitFor(() => sub.r.subscribed.length === 2, { what: 'the resubscribe' });
      const ctx = sub.r.subscribed[1];
      assert.equal(ctx.resubscribed, true);
      assert.equal(ctx.recovered, false);
      assert.equal(ctx.epoch, missed[0].epoch);
      assert.equal(sub.s.epoch, missed[0].epoch);
      // Nothing of the new epoch before the resubscribe is passed off as
      // recovered; what comes next is delivered.
      assert.deepEqual(sub.r.offsets(), [1, 2, 3]);
      const next = await pub.publish(ch, { i: 6 });
      await sub.r.waitPubs(4);
      const last = sub.r.pubs[3];
      assert.deepEqual([last.offset, last.epoch, last.data], [next.offset, next.epoch, { i: 6 }]);
      assert.equal(sub.connects.length, 2);
    });
  }

  test('durable namespace (FerretDB): every missed publication recovered after a restart', async (tc) => {
    const env = scope(tc);
    const fdb = await env.ferretdb();
    const config = {
      shutdown_timeout: 0,
      mongodb: fdb.uri(),
      mongodb_spill_path: `${env.dir}/herald.spill`,
      // A ring of 5: most of the missed publications are read back from
      // the store, not from memory.
      namespaces: [{ name: 'd', durable: true, history_size: 5 }],
    };
    const h = await env.herald(config);
    const ch = chan('d:');
    const sub = await gatedSubscriber(env, h, ch, 'msgpack');
    const pub = env.client(h.url());
    pub.connect();
    for (let i = 1; i <= 3; i++) await pub.publish(ch, { i });
    await sub.r.waitPubs(3);
    const epoch = sub.s.epoch;

    sub.gate.open = false;
    const port = h.port;
    const closed = nextEvent(sub.c, 'disconnected');
    await h.stop();
    assert.equal((await closed).code, 4000);
    await h.start({ port });
    const acks = [];
    for (let i = 4; i <= 15; i++) {
      acks.push(await pub.publish(ch, { i }, { idempotencyKey: `k${i}`, timeout: 10000 }));
    }
    // The stream survived the restart: same epoch, offsets go on.
    assert.deepEqual(acks.map((a) => a.offset), [...Array(12).keys()].map((k) => k + 4));
    assert.ok(acks.every((a) => a.epoch === epoch), `epoch ${acks[0].epoch} != ${epoch}`);

    sub.gate.open = true;
    await waitFor(() => sub.r.subscribed.length === 2, { timeout: 10000, what: 'the resubscribe' });
    const ctx = sub.r.subscribed[1];
    assert.equal(ctx.recovered, true);
    assert.equal(ctx.resubscribed, true);
    assert.deepEqual(ctx.publications.map((p) => p.offset), [...Array(12).keys()].map((k) => k + 4));
    assert.deepEqual(sub.r.gaps, []);
    // Every publication exactly once, in order.
    assert.deepEqual(sub.r.offsets(), [...Array(15).keys()].map((k) => k + 1));
    assert.deepEqual(sub.r.datas(), [...Array(15).keys()].map((k) => ({ i: k + 1 })));
    const live = await pub.publish(ch, { i: 16 });
    await sub.r.waitPubs(16);
    assert.equal(sub.r.pubs[15].offset, live.offset);
  });
});
