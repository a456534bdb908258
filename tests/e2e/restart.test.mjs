// Scenario (b): a durable namespace (history in FerretDB, the tests'
// MongoDB-protocol store). herald is stopped and started again on the same
// port while a Node SDK client keeps publishing with idempotency keys (its
// publishes wait for the connection; one in flight when it dropped would be
// sent again and answered once). The browser pages show
// every publication once, in order, and its resubscribe after the restart
// says recovered:true: the missed ones came from the store.
//
// The page must miss publications for the recovery to mean something, and
// not only those the restarted herald holds in memory: after herald goes,
// the pages' browser context is kept offline until the publisher is done, and the
// namespace's memory ring is smaller (5) than what the page missed, so most
// of the recovery is read from the store.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import * as h from './harness.mjs';

after(h.cleanup);

const TOTAL = 30;
const RING = 5;
const STOP_AT = 10; // published before herald is stopped
const CHANNEL = 'store:chat';

test('page recovers from durable history across a herald restart', { timeout: h.t(60000) }, async () => {
  const ferret = await new h.FerretDB({ name: 'restart' }).start();
  const herald = await new h.Herald({
    mongodb: ferret.uri(),
    namespaces: [{ name: 'store', history_size: RING, presence: true, join_leave: true, durable: true }],
  }, { name: 'restart' }).start();
  const browser = await h.launchBrowser();
  const context = await browser.newContext();
  const pages = [];
  try {
    const chat = await h.openDemo(context, herald, 'chat.html', { channel: CHANNEL, name: 'reader' }, { label: 'chat' });
    pages.push([chat, 'b-restart-chat']);
    const dash = await h.openDemo(context, herald, 'dashboard.html', { channel: CHANNEL }, { label: 'dashboard' });
    pages.push([dash, 'b-restart-dashboard']);

    const pub = await h.nodeClient(herald.ws, { name: 'e2e-publisher' });
    await pub.ready({ timeout: h.t(10000) });
    const results = [];
    let published = 0;
    let stopping = null;
    // One after the other, each with its own key. After STOP_AT, herald is
    // stopped (SIGTERM; until its workers drain, a few tens of ms, it would
    // still answer, hence the wait for its exit), and the publishes after
    // it wait for the connection: their timeout covers the restart.
    const publishing = (async () => {
      for (let i = 1; i <= TOTAL; i++) {
        if (i === STOP_AT + 1) await (stopping = herald.stop());
        results.push(await pub.publish(CHANNEL, { name: 'publisher', text: `message ${i}`, i },
          { idempotencyKey: `e2e-restart-${i}`, timeout: h.t(30000) }));
        published = i;
      }
    })();
    publishing.catch(() => {});

    await h.waitFor(() => stopping !== null, { what: `the publisher at message ${STOP_AT + 1}` });
    await stopping;
    const before = published;
    for (const p of [chat, dash]) {
      await h.waitPage(p, () => window.heraldDemo.state !== 'connected', null, { what: 'the page to see herald go' });
    }
    // Herald is gone: the page stays away until publishing is over.
    await context.setOffline(true);
    const seen = (await h.demoState(dash)).messages.length;
    await herald.start({ port: herald.port });
    await publishing;
    assert.equal(published, TOTAL);
    assert.equal(before, STOP_AT, 'published before the stop');
    assert.ok(TOTAL - seen > RING, `the page missed more (${TOTAL - seen}) than the memory ring holds`);
    await context.setOffline(false);

    for (const p of [chat, dash]) {
      await h.waitPage(p, (n) => window.heraldDemo.state === 'connected' && window.heraldDemo.messages.length >= n,
        TOTAL, { what: `all ${TOTAL} messages after the restart` });
      const s = await h.demoState(p);
      assert.deepEqual(s.messages.map((m) => m.data.i), Array.from({ length: TOTAL }, (_, i) => i + 1),
        `${p.label}: every message once, in order`);
      const offsets = s.messages.map((m) => m.offset);
      assert.deepEqual(offsets, Array.from({ length: TOTAL }, (_, i) => offsets[0] + i), 'consecutive offsets');
      assert.deepEqual(offsets, results.map((r) => r.offset), 'the offsets the publisher was given');
      assert.equal(s.duplicates, 0);
      assert.equal(s.gaps.length, 0, `${p.label}: no gap: ${JSON.stringify(s.gaps)}`);
      const resubs = s.recoveries.filter((r) => r.resubscribed);
      assert.ok(resubs.length >= 1, `${p.label}: resubscribed after the restart`);
      assert.ok(resubs.every((r) => r.recovered === true), `${p.label}: recovered: ${JSON.stringify(resubs)}`);
      const recovered = s.messages.filter((m) => m.recovered).map((m) => m.data.i);
      assert.ok(recovered.length > RING, `${p.label}: recovered ${recovered.length}`);
      assert.deepEqual(recovered, Array.from({ length: recovered.length }, (_, i) => TOTAL - recovered.length + 1 + i),
        `${p.label}: the recovered ones are the last ones, those it missed`);
    }
    await h.waitPage(dash, () => [...document.querySelectorAll('[data-testid=recovery]')]
      .some((li) => li.dataset.recovered === 'true'), null, { what: 'the recovery log to show recovered: true' });
    await chat.getByTestId('messages').getByText(`message ${TOTAL}`).waitFor({ timeout: h.t(5000) });
  } finally {
    for (const [p, name] of pages) await h.keep(p, name).catch(() => {});
  }
});
