// Scenario (c): herald requires tokens (token_secret, no anonymous
// connections). The page gets its token from a token endpoint on another
// origin (CORS) through getToken; each token lives 4 s. Before one expires
// the SDK fetches the next and sends `refresh` on the same connection: the
// page keeps its connection and its subscription (no reconnect, no
// resubscribe) and messages published after the first token's expiry
// still arrive.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import * as h from './harness.mjs';

after(h.cleanup);

const TTL = 4; // s, each token's lifetime
const CHANNEL = 'demo:tokens';

test('page refreshes its expiring token and keeps its subscription', { timeout: h.t(60000) }, async () => {
  const secret = h.newSecret();
  const tokens = await new h.TokenServer(secret, { ttl: TTL }).start();
  const herald = await new h.Herald({
    token_secret: secret, allow_anonymous: false, namespaces: [h.DEMO_NAMESPACE],
  }, { name: 'token' }).start();
  const browser = await h.launchBrowser();
  const context = await browser.newContext();
  const pages = [];
  try {
    const dash = await h.openDemo(context, herald, 'dashboard.html',
      { channel: CHANNEL, token_url: tokens.url, refresh_before: '2', name: 'carol' }, { label: 'dashboard' });
    pages.push([dash, 'c-token-dashboard']);
    const first = await h.demoState(dash);
    assert.equal(first.tokenFetches, 1);
    assert.ok(first.expires, 'the connect reply gave the token\'s expiry');

    // The control: a client with a token as short and no getToken is
    // closed by herald when it expires (4100), so the page's survival below
    // is the refresh's doing.
    const control = await h.nodeClient(herald.ws, {
      token: h.makeJwt(secret, { sub: 'control', exp: Math.floor(Date.now() / 1000) + TTL }),
    });
    const controlClosed = new Promise((resolve) => control.on('disconnected', resolve));

    // A publisher with a token that outlives the test.
    const pub = await h.nodeClient(herald.ws, {
      token: h.makeJwt(secret, { sub: 'publisher', exp: Math.floor(Date.now() / 1000) + 600 }),
    });
    await pub.ready({ timeout: h.t(10000) });
    let n = 0;
    const say = () => pub.publish(CHANNEL, { name: 'publisher', text: `tick ${++n}`, i: n });
    await say();
    await h.waitPage(dash, () => window.heraldDemo.messages.length === 1, null, { what: 'the first message' });

    // Past the first token's expiry (plus a second, as herald checks whole
    // seconds) with a new token in force: the page must still be on its
    // first connection.
    await h.waitFor(() => Date.now() / 1000 > first.expires + 1, { timeout: h.t((TTL + 3) * 1000), what: 'the first token to expire' });
    await h.waitPage(dash, () => window.heraldDemo.tokenFetches >= 2, null, { what: 'a second token' });
    await say();
    await say();
    await h.waitPage(dash, () => window.heraldDemo.messages.length === 3, null, { what: 'messages after the first token expired' });

    // And past the second token's expiry too.
    const second = tokens.issued[1];
    await h.waitFor(() => Date.now() / 1000 > second.exp + 1, { timeout: h.t((TTL + 3) * 1000), what: 'the second token to expire' });
    await say();
    await h.waitPage(dash, () => window.heraldDemo.messages.length === 4, null, { what: 'a message after the second token expired' });

    const closed = await controlClosed;
    assert.equal(closed.code, 4100, `the control client's close: ${JSON.stringify(closed)}`);
    assert.equal(closed.reconnect, false);

    const s = await h.demoState(dash);
    assert.ok(s.tokenFetches >= 3, `tokens fetched: ${s.tokenFetches}`);
    assert.equal(s.tokenFetches, tokens.issued.length, 'every fetch went to the token endpoint');
    assert.equal(s.connects, 1, `one connection: ${JSON.stringify(s.disconnects)}`);
    assert.equal(s.disconnects.length, 0);
    assert.equal(s.recoveries.length, 1, `subscribed once, never again: ${JSON.stringify(s.recoveries)}`);
    assert.deepEqual(s.messages.map((m) => m.data.i), [1, 2, 3, 4]);
    assert.equal(s.state, 'connected');
    assert.ok(s.expires > second.exp, `the dashboard shows the renewed expiry: ${s.expires}`);
    await h.waitPage(dash, (k) => document.querySelector('[data-testid=token-fetches]').textContent === String(k) &&
      document.querySelector('[data-testid=connects]').textContent === '1', s.tokenFetches, { what: 'the dashboard to show it' });
  } finally {
    for (const [p, name] of pages) await h.keep(p, name).catch(() => {});
  }
});
