// Two herald nodes sharing a Redis, behind nginx with conf/nginx.conf (its
// @listen and @node lines carrying the test's ports). SDK clients connect
// through nginx and land on different nodes (least_conn); they exchange
// publications across the nodes. One node is stopped: its client gets 4000,
// reconnects through nginx, lands on the other node and, because the
// channel's stream and hot window live in Redis (docs/cluster.md, "A node
// is stopped": nothing lost), recovers every publication it missed with
// recovered: true, in order and without duplicates. And with Redis away,
// publish fails with 108 and a new subscription is retried until it is back.

import { describe, test } from 'node:test';
import assert from 'node:assert/strict';

import { chan, gatedWebSocket, httpStatus, recorder, scope, waitFor } from './harness.mjs';

describe('cluster', { concurrency: true }, () => {
  test('cluster of two nodes behind nginx: exchange, node stopped, recovery on the other node', async (tc) => {
    const env = scope(tc);
    const redis = await env.redis();
    const nodeConfig = (name) => ({
      node_name: name,
      shutdown_timeout: 0,
      redis: redis.url(),
      namespace_defaults: { history_size: 100, history_ttl: 300, presence: true },
    });
    const [a, b] = await Promise.all([env.herald(nodeConfig('a'), { name: 'a' }),
      env.herald(nodeConfig('b'), { name: 'b' })]);
    const nodes = { a, b };
    const ngx = await env.nginx([a.port, b.port]);
    const ch = chan();

    // c1 first: least_conn then sends c2 to the other node.
    const gate = gatedWebSocket();
    const c1 = env.client(ngx.url(), { encoding: 'msgpack', WebSocket: gate.WebSocket });
    const c1Connects = [];
    const c1Disconnects = [];
    c1.on('connected', (ev) => c1Connects.push(ev));
    c1.on('disconnected', (ev) => c1Disconnects.push(ev));
    c1.connect();
    const r1 = recorder();
    const s1 = c1.subscribe(ch, r1.handlers);
    await s1.ready();
    const c2 = env.client(ngx.url());
    const c2Connects = [];
    c2.on('connected', (ev) => c2Connects.push(ev));
    c2.connect();
    const r2 = recorder();
    const s2 = c2.subscribe(ch, r2.handlers);
    await s2.ready();
    const node1 = c1Connects[0].node;
    const node2 = c2Connects[0].node;
    assert.deepEqual([node1, node2].sort(), ['a', 'b'], `clients on ${node1} and ${node2}`);

    // Publications cross the nodes both ways with one offset sequence.
    await s1.publish({ from: 'c1', i: 1 });
    await s2.publish({ from: 'c2', i: 2 });
    await s1.publish({ from: 'c1', i: 3 });
    await r1.waitPubs(3);
    await r2.waitPubs(3);
    for (const r of [r1, r2]) {
      assert.deepEqual(r.offsets(), [1, 2, 3]);
      assert.deepEqual(r.datas().map((d) => d.from), ['c1', 'c2', 'c1']);
    }
    assert.equal(r1.pubs[0].epoch, r2.pubs[0].epoch);
    // Presence is cluster-wide.
    const pres = await c1.presence(ch);
    assert.deepEqual(Object.keys(pres.clients).sort(), [c1.clientId, c2.clientId].sort());

    // c1's node stops; c1's network is down until c2 has published more.
    gate.open = false;
    await nodes[node1].stop();
    await waitFor(() => c1Disconnects.length === 1, { what: "c1's disconnect" });
    assert.equal(c1Disconnects[0].code, 4000, JSON.stringify(c1Disconnects[0]));
    assert.equal(c1Disconnects[0].reconnect, true);
    for (let i = 4; i <= 10; i++) await s2.publish({ from: 'c2', i });
    await r2.waitPubs(10);

    gate.open = true;
    await waitFor(() => r1.subscribed.length === 2, { timeout: 15000, what: "c1's resubscribe through nginx" });
    assert.equal(c1Connects.at(-1).node, node2, 'c1 reconnected to the remaining node');
    const ctx = r1.subscribed[1];
    assert.equal(ctx.recovered, true);
    assert.deepEqual(ctx.publications.map((p) => p.offset), [4, 5, 6, 7, 8, 9, 10]);
    assert.deepEqual(r1.gaps, []);
    assert.deepEqual(r1.offsets(), [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
    assert.deepEqual(r1.datas().map((d) => d.i), [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
    assert.ok(r1.pubs.every((p) => p.epoch === r2.pubs[0].epoch));

    // Both on one node now, still exchanging.
    await s1.publish({ from: 'c1', i: 11 });
    await r2.waitPubs(11);
    await r1.waitPubs(11);
    assert.equal(r2.pubs[10].offset, 11);
  });

  test('Redis away: publish fails with 108, a new subscription is retried until the broker is back', async (tc) => {
    const env = scope(tc);
    const redis = await env.redis();
    const h = await env.herald({
      shutdown_timeout: 0,
      redis: redis.url(),
      redis_timeout_ms: 500,
      namespace_defaults: { history_size: 100 },
    });
    const ch = chan();
    const c = env.client(h.url());
    c.connect();
    const r = recorder();
    const s = c.subscribe(ch, r.handlers);
    await s.ready();
    await c.publish(ch, 'before');
    await r.waitPubs(1);

    await redis.stop();
    // The node notices at once (the link closed): publish is refused, never lost silently.
    await waitFor(async () => {
      try {
        await c.publish(chan(), 'probe', { timeout: 2000 });
        return false;
      } catch (e) {
        return e.code === 108;
      }
    }, { timeout: 10000, what: 'publish to fail with 108' });
    const ch2 = chan();
    const r2 = recorder();
    const s2 = c.subscribe(ch2, r2.handlers);
    await waitFor(() => r2.errors.length > 0, { timeout: 10000, what: 'the refused subscribe' });
    assert.equal(r2.errors[0].code, 108);
    assert.equal(s2.state, 'subscribing', 'a 108 is temporary: the SDK keeps trying');
    // The first subscription stays (docs/cluster.md: subscribers stay).
    assert.equal(s.state, 'subscribed');
    assert.equal(c.state, 'connected');

    await redis.start();
    await s2.ready({ timeout: 20000 });
    // Each worker of the node has its own links, reconnected with backoff:
    // /healthz says 200 once all are up (before, a channel of a worker
    // whose link is still down gets 108 on publish).
    await waitFor(async () => (await httpStatus(h.port)) === 200, { timeout: 20000, what: 'the node healthy again' });
    await c.publish(ch2, 'after');
    await r2.waitPubs(1);
    await c.publish(ch, 'after');
    await r.waitPubs(2);
    assert.deepEqual(r.datas(), ['before', 'after']);
    assert.deepEqual(r.gaps, []);
  });
});
