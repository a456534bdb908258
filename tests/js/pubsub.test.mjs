// The SDK against one real herald: connect, subscribe, publish, history,
// presence, join/leave and unsubscribe in both encodings, publications
// crossing encodings (binary data included), and idempotent publish. The
// scenarios share one server and run side by side; each uses its own
// channels.

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';

import { chan, nextEvent, recorder, scope, waitFor } from './harness.mjs';

const CONFIG = {
  shutdown_timeout: 0,
  namespace_defaults: { history_size: 100, history_ttl: 300, presence: true, join_leave: true },
};

describe('pub/sub through the SDK', { concurrency: true }, () => {
  let env;
  let h;
  before(async () => {
    env = scope();
    h = await env.herald(CONFIG);
  });
  after(() => env.close());

  for (const encoding of ['json', 'msgpack']) {
    test(`${encoding}: connect, subscribe, publish, history, presence, join/leave, unsubscribe`, async () => {
      const ch = chan();
      const a = env.client(h.url(), { encoding, name: 'it-a', version: '0.0.1' });
      const states = [];
      a.on('state', ({ state, previous }) => states.push(`${previous}>${state}`));
      const connected = nextEvent(a, 'connected');
      assert.equal(a.state, 'disconnected');
      a.connect();
      const info = await connected;
      await a.ready();
      assert.equal(a.state, 'connected');
      assert.deepEqual(states, ['disconnected>connecting', 'connecting>connected']);
      assert.equal(typeof info.client, 'string');
      assert.ok(info.client.length > 0);
      assert.equal(a.clientId, info.client);
      assert.equal(typeof info.node, 'string');

      const ra = recorder();
      const sa = a.subscribe(ch, ra.handlers);
      assert.equal(a.getSubscription(ch), sa);
      await sa.ready();
      assert.equal(sa.state, 'subscribed');
      assert.equal(ra.subscribed.length, 1);
      assert.equal(ra.subscribed[0].channel, ch);
      assert.equal(ra.subscribed[0].resubscribed, false);

      // A second client in the same encoding joins: a sees the join push.
      const b = env.client(h.url(), { encoding });
      b.connect();
      const rb = recorder();
      const sb = b.subscribe(ch, rb.handlers);
      await sb.ready();
      await waitFor(() => ra.joins.find((j) => j.client === b.clientId),
        { what: () => `a's join push for b (${JSON.stringify(ra.joins)})` });

      const sent = [{ text: 'héllo', n: 1 }, { text: 'wörld', n: 2, nested: { list: [1, 2.5, null, true] } }, 'str', 42];
      const acks = [];
      for (const d of sent) acks.push(await sb.publish(d));
      assert.deepEqual(acks.map((x) => x.offset), [1, 2, 3, 4]);
      assert.ok(acks.every((x) => x.epoch === acks[0].epoch && typeof x.epoch === 'string'));
      await ra.waitPubs(4);
      await rb.waitPubs(4);
      for (const r of [ra, rb]) {
        assert.deepEqual(r.offsets(), [1, 2, 3, 4]);
        assert.deepEqual(r.datas(), sent);
        assert.ok(r.pubs.every((p) => p.channel === ch && p.epoch === acks[0].epoch));
        // The publisher is named in every publication.
        assert.ok(r.pubs.every((p) => p.info && p.info.client === b.clientId), JSON.stringify(r.pubs[0]));
      }
      assert.equal(sa.offset, 4);
      assert.equal(sa.epoch, acks[0].epoch);

      const hist = await sa.history({ limit: 10 });
      assert.equal(hist.offset, 4);
      assert.equal(hist.epoch, acks[0].epoch);
      assert.deepEqual(hist.publications.map((p) => p.data), sent);
      const rev = await a.history(ch, { limit: 2, reverse: true });
      assert.deepEqual(rev.publications.map((p) => p.offset), [4, 3]);
      const since = await a.history(ch, { since: { offset: 2, epoch: acks[0].epoch } });
      assert.deepEqual(since.publications.map((p) => p.offset), [3, 4]);

      const pres = await sa.presence();
      assert.deepEqual(Object.keys(pres.clients).sort(), [a.clientId, b.clientId].sort());
      assert.deepEqual(Object.keys((await b.presence(ch)).clients).sort(), [a.clientId, b.clientId].sort());

      // b leaves: a gets the leave push and presence no longer lists b.
      sb.unsubscribe();
      await waitFor(() => sb.state === 'unsubscribed', { what: 'b unsubscribed' });
      await waitFor(() => ra.leaves.find((l) => l.client === b.clientId), { what: "a's leave push for b" });
      await waitFor(async () => !((await a.presence(ch)).clients[b.clientId]), { what: 'b out of presence' });
      assert.equal(b.getSubscription(ch) ?? null, null);

      // Nothing of the channel reaches b any more: a publishes, a sees it
      // (the fan-out is done), a round trip on b later b still has 4.
      await sa.publish('after');
      await ra.waitPubs(5);
      await b.presence(ch);
      assert.equal(rb.pubs.length, 4);
      assert.deepEqual(ra.errors, []);
      assert.deepEqual(rb.errors, []);
    });
  }

  test('publications cross encodings (json <-> msgpack), binary data in msgpack', async () => {
    const ch = chan();
    const j = env.client(h.url(), { encoding: 'json' });
    const m = env.client(h.url(), { encoding: 'msgpack' });
    j.connect();
    m.connect();
    const rj = recorder();
    const rm = recorder();
    await Promise.all([j.subscribe(ch, rj.handlers).ready(), m.subscribe(ch, rm.handlers).ready()]);

    const fromJson = { kind: 'json', text: 'snow ☃', ints: [0, -1, 2 ** 40], real: 0.5, t: true, f: false, z: null };
    const fromMsgpack = { kind: 'msgpack', text: 'ünïcode', ints: [7, -300, 2 ** 33], real: -1.25 };
    const bytes = new Uint8Array(300);
    for (let i = 0; i < bytes.length; i++) bytes[i] = (i * 37) & 0xff;

    await j.publish(ch, fromJson);
    await m.publish(ch, fromMsgpack);
    const binAck = await m.publish(ch, bytes);
    assert.equal(binAck.offset, 3);
    await rj.waitPubs(3);
    await rm.waitPubs(3);
    for (const r of [rj, rm]) {
      assert.deepEqual(r.offsets(), [1, 2, 3]);
      assert.deepEqual(r.pubs[0].data, fromJson);
      assert.deepEqual(r.pubs[1].data, fromMsgpack);
      // Binary data arrives as bytes in both encodings (JSON: base64 with
      // binary:true on the wire, decoded by the SDK).
      const got = r.pubs[2].data;
      assert.ok(got instanceof Uint8Array, `binary data as ${Object.prototype.toString.call(got)}: ${String(got).slice(0, 40)}`);
      assert.deepEqual(Buffer.from(got), Buffer.from(bytes));
    }
    // History returns the bytes too.
    for (const c of [j, m]) {
      const hst = await c.history(ch, { since: { offset: 2, epoch: binAck.epoch } });
      assert.equal(hst.publications.length, 1);
      assert.deepEqual(Buffer.from(hst.publications[0].data), Buffer.from(bytes));
    }
  });

  test('client-level publish with an idempotency key publishes once', async () => {
    const ch = chan();
    const c = env.client(h.url(), { encoding: 'msgpack' });
    c.connect();
    const first = await c.publish(ch, { once: true }, { idempotencyKey: 'k-1' });
    const again = await c.publish(ch, { once: true }, { idempotencyKey: 'k-1' });
    assert.equal(again.offset, first.offset);
    assert.equal(again.epoch, first.epoch);
    assert.equal(again.duplicate, true);
    assert.ok(!first.duplicate);
    const other = await c.publish(ch, { once: false }, { idempotencyKey: 'k-2' });
    assert.equal(other.offset, first.offset + 1);
    const hst = await c.history(ch);
    assert.deepEqual(hst.publications.map((p) => p.data), [{ once: true }, { once: false }]);
  });

  test("the client-level 'publication' event carries every subscription's publications", async () => {
    const ch1 = chan();
    const ch2 = chan();
    const c = env.client(h.url());
    const all = [];
    c.on('publication', (p) => all.push(`${p.channel === ch1 ? 1 : 2}:${p.offset}`));
    c.connect();
    await Promise.all([c.subscribe(ch1, {}).ready(), c.subscribe(ch2, {}).ready()]);
    await c.publish(ch1, 'a');
    await c.publish(ch2, 'b');
    await c.publish(ch1, 'c');
    await waitFor(() => all.length === 3, { what: () => `3 publications (${all})` });
    assert.deepEqual(all.filter((x) => x.startsWith('1:')), ['1:1', '1:2']);
    assert.deepEqual(all.filter((x) => x.startsWith('2:')), ['2:1']);
  });

  test('subscribe with since recovers from a position', async () => {
    const ch = chan();
    const c = env.client(h.url());
    c.connect();
    const acks = [];
    for (let i = 1; i <= 5; i++) acks.push(await c.publish(ch, { i }));
    const r = recorder();
    const s = c.subscribe(ch, r.handlers, { since: { offset: 2, epoch: acks[0].epoch } });
    await s.ready();
    assert.equal(r.subscribed[0].recovered, true);
    assert.deepEqual(r.subscribed[0].publications.map((p) => p.offset), [3, 4, 5]);
    // Recovered publications went to publication() before subscribed fired.
    assert.deepEqual(r.offsets(), [3, 4, 5]);
    assert.deepEqual(r.gaps, []);
  });
});
