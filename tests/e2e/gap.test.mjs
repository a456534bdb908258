// The other side of recovery: herald keeps history in memory only and is
// restarted, so the channel's history (and epoch) is gone. The page's
// resubscribe says recovered:false, the SDK raises `gap`, and the dashboard
// shows it: a lost stretch is never hidden. Publications of the new epoch
// then arrive as usual.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import * as h from './harness.mjs';

after(h.cleanup);

const CHANNEL = 'demo:gap';

test('a restart that loses history shows a gap on the dashboard', { timeout: h.t(60000) }, async () => {
  const herald = await new h.Herald({ namespaces: [h.DEMO_NAMESPACE] }, { name: 'gap' }).start();
  const browser = await h.launchBrowser();
  const context = await browser.newContext();
  const pages = [];
  try {
    const dash = await h.openDemo(context, herald, 'dashboard.html', { channel: CHANNEL }, { label: 'dashboard' });
    pages.push([dash, 'd-gap-dashboard']);
    const pub = await h.nodeClient(herald.ws, { name: 'e2e-publisher' });
    for (let i = 1; i <= 5; i++) await pub.publish(CHANNEL, { name: 'publisher', text: `old ${i}`, i }, { timeout: h.t(10000) });
    await h.waitPage(dash, () => window.heraldDemo.messages.length === 5, null, { what: 'five messages' });
    const oldEpoch = (await h.demoState(dash)).recoveries[0].epoch;

    await herald.restart();
    await h.waitPage(dash, () => window.heraldDemo.gaps.length === 1 && window.heraldDemo.state === 'connected',
      null, { what: 'the gap after the restart' });
    await pub.publish(CHANNEL, { name: 'publisher', text: 'new 1', i: 6 }, { timeout: h.t(10000) });
    await h.waitPage(dash, () => window.heraldDemo.messages.length === 6, null, { what: 'the first message of the new epoch' });

    const s = await h.demoState(dash);
    const [gap] = s.gaps;
    assert.equal(gap.since.offset, 5, `the gap starts after what the page had: ${JSON.stringify(gap)}`);
    assert.equal(gap.since.epoch, oldEpoch);
    assert.notEqual(gap.epoch, oldEpoch, 'a new epoch');
    const last = s.recoveries.at(-1);
    assert.equal(last.resubscribed, true);
    assert.equal(last.recovered, false);
    assert.deepEqual(s.messages.map((m) => m.data.i), [1, 2, 3, 4, 5, 6]);
    assert.equal(s.messages[5].offset, 1, 'the new epoch starts at offset 1');
    await h.waitPage(dash, () => document.querySelectorAll('[data-testid=gap]').length === 1 &&
      document.querySelectorAll('[data-testid=epoch-change]').length === 1 &&
      document.querySelector('[data-testid=recovery-log] [data-recovered=false]'), null,
    { what: 'the recovery log to show recovered: false and the gap' });
  } finally {
    for (const [p, name] of pages) await h.keep(p, name).catch(() => {});
  }
});
