// Connection tokens through the SDK against a herald with token_secret
// (HS256 tokens made here with node:crypto) and anonymous connections
// refused: getToken is called on connect and again before the token
// expires, and the connection, its client id and its subscriptions live
// on; a token that expires without a getToken ends the connection with
// 4100 for good; a refused token is replaced through getToken.

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';

import { chan, makeJwt, recorder, scope, waitFor } from './harness.mjs';

const SECRET = 'js-integration-secret-0123456789';
const now = () => Math.floor(Date.now() / 1000);

describe('tokens', { concurrency: true }, () => {
  let env;
  let h;
  before(async () => {
    env = scope();
    h = await env.herald({
      shutdown_timeout: 0,
      token_secret: SECRET,
      allow_anonymous: false,
      namespace_defaults: { history_size: 10 },
      namespaces: [{ name: 'priv', private: true, history_size: 10 }],
    });
  });
  after(() => env.close());

  test('getToken refreshes the token before it expires; the subscription lives on', async () => {
    const issued = [];
    const getToken = async () => {
      const exp = now() + 3;
      issued.push(exp);
      return makeJwt(SECRET, { sub: 'alice', exp });
    };
    const c = env.client(h.url(), { getToken, refreshBefore: 1 });
    const disconnects = [];
    c.on('disconnected', (ev) => disconnects.push(ev));
    const refreshErrors = [];
    c.on('error', (ev) => refreshErrors.push(ev));
    c.connect();
    await c.ready();
    const id = c.clientId;
    const ch = chan();
    const r = recorder();
    await c.subscribe(ch, r.handlers).ready();

    // Past the first token's expiry (and past a second refresh).
    await waitFor(() => issued.length >= 3 && now() > issued[0] + 1,
      { timeout: 10000, what: () => `refreshes (issued ${issued})` });
    const other = env.client(h.url(), { token: makeJwt(SECRET, { sub: 'bob' }) });
    other.connect();
    await other.publish(ch, 'after expiry');
    await r.waitPubs(1);
    assert.equal(r.pubs[0].data, 'after expiry');
    assert.deepEqual(disconnects, []);
    assert.equal(c.clientId, id);
    assert.equal(c.state, 'connected');
    assert.deepEqual(refreshErrors, []);
    assert.equal(r.subscribed.length, 1);
  });

  test("a channel token from the subscription's getToken is renewed before it expires", async () => {
    const ch = chan('priv:');
    const issued = [];
    const getToken = async (channel) => {
      const exp = now() + 3;
      issued.push(exp);
      return makeJwt(SECRET, { sub: 'erin', channel, exp });
    };
    const c = env.client(h.url(), { token: makeJwt(SECRET, { sub: 'erin' }) });
    c.connect();
    const r = recorder();
    const s = c.subscribe(ch, r.handlers, { getToken });
    await s.ready();
    await waitFor(() => issued.length >= 3 && now() > issued[0] + 1,
      { timeout: 10000, what: () => `channel token renewals (issued ${issued})` });
    // Publishing needs a grant or this subscription (made with a token).
    await s.publish('still here');
    await r.waitPubs(1);
    assert.equal(r.pubs[0].data, 'still here');
    assert.equal(s.state, 'subscribed');
    assert.deepEqual(r.unsubscribed, []);
    assert.deepEqual(r.errors, []);
    assert.equal(r.subscribed.length, 1);
  });

  test('a channel token that cannot be had: the subscription fails with 103', async () => {
    const c = env.client(h.url(), { token: makeJwt(SECRET, { sub: 'frank' }) });
    c.connect();
    const r = recorder();
    // A token for another user is refused.
    const s = c.subscribe(chan('priv:'), r.handlers, { token: makeJwt(SECRET, { sub: 'mallory', channel: 'x' }) });
    await assert.rejects(s.ready({ timeout: 5000 }), (e) => e.code === 103);
    assert.equal(s.state, 'unsubscribed');
    assert.equal(c.state, 'connected');
  });

  test('a token that expires without getToken: 4100, no reconnect', async () => {
    const c = env.client(h.url(), { token: makeJwt(SECRET, { sub: 'carol', exp: now() + 3 }) });
    const disconnects = [];
    c.on('disconnected', (ev) => disconnects.push(ev));
    c.connect();
    await c.ready();
    await waitFor(() => disconnects.length === 1, { timeout: 8000, what: 'the expiry disconnect' });
    assert.equal(disconnects[0].code, 4100);
    assert.equal(disconnects[0].reconnect, false);
    await waitFor(() => c.state === 'disconnected', { what: () => `state disconnected (is ${c.state})` });
    // It stays so: no reconnect attempt (a command fails instead of waiting forever).
    await assert.rejects(c.publish(chan(), 1, { timeout: 300 }));
    assert.equal(c.state, 'disconnected');
  });

  test('a refused token (bad signature, then expired) is replaced through getToken', async () => {
    const tokens = [
      makeJwt('another-secret-0123456789', { sub: 'dave', exp: now() + 60 }), // 101
      makeJwt(SECRET, { sub: 'dave', exp: now() - 10 }),                       // 109
    ];
    let calls = 0;
    const getToken = async () => {
      calls += 1;
      return tokens.shift() ?? makeJwt(SECRET, { sub: 'dave', exp: now() + 60 });
    };
    const c = env.client(h.url(), { getToken });
    const disconnects = [];
    c.on('disconnected', (ev) => disconnects.push(ev));
    c.connect();
    await c.ready({ timeout: 10000 });
    assert.equal(calls, 3);
    assert.ok(disconnects.every((d) => d.code === 4100), JSON.stringify(disconnects));
    const ack = await c.publish(chan(), 'in');
    assert.equal(ack.offset, 1);
  });

  test('without a token the connection is refused and not retried', async () => {
    const c = env.client(h.url());
    const disconnects = [];
    const errors = [];
    c.on('disconnected', (ev) => disconnects.push(ev));
    c.on('error', (ev) => errors.push(ev));
    c.connect();
    await waitFor(() => c.state === 'disconnected' && disconnects.length > 0,
      { what: () => `the refusal (state ${c.state}, ${JSON.stringify(disconnects)})` });
    assert.equal(disconnects.at(-1).code, 4100);
    assert.equal(disconnects.at(-1).reconnect, false);
    assert.ok(errors.some((e) => e.error && e.error.code === 101), JSON.stringify(errors.map((e) => [e.type, e.error && e.error.code])));
  });
});
