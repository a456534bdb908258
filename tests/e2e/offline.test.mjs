// Scenario (a): two browsers in the chat; the second one's network goes
// away (context.setOffline) while the first keeps publishing, then comes
// back. The SDK reconnects on the browser's `online` event and resubscribes
// from its last offset: every missed message appears, in order, once, with
// recovered:true, from the default in-memory history (no store).
//
// Chromium's offline emulation does not close an open WebSocket: it holds
// its frames (both ways) until the network is back, and fires `offline`.
// The SDK must take that event as a lost connection (else the page would
// show nothing until its heartbeat gives up); this test checks it does.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import * as h from './harness.mjs';

after(h.cleanup);

const MISSED = 20;
const PACE_MS = 150; // between two of alice's messages while bob is offline

test('offline page catches up on reconnect with recovered:true', { timeout: h.t(60000) }, async () => {
  const herald = await new h.Herald({ namespaces: [h.DEMO_NAMESPACE] }, { name: 'offline' }).start();
  const browser = await h.launchBrowser();
  const ctxA = await browser.newContext();
  const ctxB = await browser.newContext();
  const pages = [];
  try {
    const alice = await h.openDemo(ctxA, herald, 'chat.html', { name: 'alice' }, { label: 'alice', via: 'link-chat' });
    pages.push([alice, 'a-offline-alice-chat']);
    const bob = await h.openDemo(ctxB, herald, 'chat.html', { name: 'bob' }, { label: 'bob' });
    pages.push([bob, 'a-offline-bob-chat']);
    const dash = await h.openDemo(ctxB, herald, 'dashboard.html', {}, { label: 'bob-dashboard' });
    pages.push([dash, 'a-offline-bob-dashboard']);

    // Everyone is online: alice's list has the three clients (presence at
    // subscribe, then join pushes), with bob by name once he spoke.
    await h.waitPage(alice, () => window.heraldDemo && Object.keys(window.heraldDemo.presence).length === 3,
      null, { what: 'three clients online in alice\'s presence list' });

    // One publishes through the send box, the others show it.
    await alice.getByTestId('send-text').fill('hello from alice');
    await alice.getByTestId('send-button').click();
    await bob.getByTestId('messages').getByText('hello from alice').waitFor({ timeout: h.t(10000) });
    await h.waitPage(dash, () => window.heraldDemo.messages.length === 1, null, { what: 'the first message on the dashboard' });
    await bob.getByTestId('send-text').fill('hi alice');
    await bob.getByTestId('send-button').click();
    await alice.getByTestId('messages').getByText('hi alice').waitFor({ timeout: h.t(10000) });
    await h.waitPage(alice, () => [...document.querySelectorAll('[data-testid=presence-item]')]
      .some((li) => li.textContent === 'bob'), null, { what: 'bob by name in alice\'s online list' });

    // Bob's browser goes offline: both of its pages must notice.
    await ctxB.setOffline(true);
    for (const p of [bob, dash]) {
      await h.waitPage(p, () => window.heraldDemo.state !== 'connected', null,
        { what: 'the SDK to drop the connection on the browser\'s offline event' });
    }

    // Alice keeps talking meanwhile, paced so that bob stays away for a
    // few seconds (his SDK's reconnect attempts fail in between).
    await alice.evaluate(async ([n, gap]) => {
      for (let i = 1; i <= n; i++) {
        await window.heraldDemo.say(`missed ${i}`);
        await new Promise((r) => setTimeout(r, gap));
      }
    }, [MISSED, PACE_MS]);
    const total = 2 + MISSED;
    await h.waitPage(alice, (n) => window.heraldDemo.messages.length === n, total, { what: `alice to see ${total} messages` });
    // Still offline: nothing arrived on bob's side.
    assert.equal((await h.demoState(bob)).messages.length, 2);

    await ctxB.setOffline(false);
    for (const p of [bob, dash]) {
      await h.waitPage(p, (n) => window.heraldDemo.state === 'connected' && window.heraldDemo.messages.length >= n &&
        window.heraldDemo.recoveries.length >= 2, total, { what: `reconnect and ${total} messages` });
      const s = await h.demoState(p);
      assert.deepEqual(s.messages.map((m) => m.offset), Array.from({ length: total }, (_, i) => i + 1),
        `${p.label}: every message once, in offset order`);
      assert.deepEqual(s.messages.slice(2).map((m) => m.data.text),
        Array.from({ length: MISSED }, (_, i) => `missed ${i + 1}`));
      assert.equal(s.duplicates, 0);
      assert.equal(s.gaps.length, 0, `${p.label}: no gap`);
      const last = s.recoveries.at(-1);
      assert.equal(s.recoveries.length, 2, `${p.label}: one resubscribe: ${JSON.stringify(s.recoveries)}`);
      assert.equal(last.resubscribed, true);
      assert.equal(last.recovered, true, `${p.label}: recovered: ${JSON.stringify(last)}`);
      assert.equal(last.count, MISSED, `${p.label}: the missed ones came with the resubscribe`);
      assert.ok(s.messages.slice(2).every((m) => m.recovered), 'the missed ones are marked recovered');
    }
    // What the pages show: bob's chat lists them all, the dashboard logs the recovery.
    await h.waitPage(bob, (n) => document.querySelectorAll('[data-testid=message]').length === n &&
      document.querySelectorAll('[data-testid=message].recovered').length === n - 2, total,
    { what: 'bob\'s chat to list every message, the missed ones marked' });
    await h.waitPage(dash, (n) => {
      const rec = [...document.querySelectorAll('[data-testid=recovery]')];
      return rec.length === 2 && rec[1].dataset.recovered === 'true' && rec[1].dataset.count === String(n);
    }, MISSED, { what: 'the recovery log to show recovered: true' });

    // Alice's online list is three again: bob's two new connections in.
    const bobIds = [(await h.demoState(bob)).clientId, (await h.demoState(dash)).clientId];
    await h.waitPage(alice, (ids) => {
      const p = Object.keys(window.heraldDemo.presence);
      return p.length === 3 && ids.every((id) => p.includes(id));
    }, bobIds, { what: 'alice\'s presence to show bob\'s new connections and not the old ones' });

    // And live messages flow again.
    await alice.evaluate(() => window.heraldDemo.say('welcome back'));
    await bob.getByTestId('messages').getByText('welcome back').waitFor({ timeout: h.t(10000) });
  } finally {
    for (const [p, name] of pages) await h.keep(p, name).catch(() => {});
  }
});
