// The part of the demo pages they share: the SDK client built from the
// page's URL parameters, one subscription, and the state both pages show.
// The state is kept in plain objects (window.heraldDemo) so that the
// browser tests (tests/e2e) can read what the page saw, not only its DOM.
//
// URL parameters (all optional):
//   url             WebSocket URL (default: this page's host, path /ws)
//   channel         channel to join (default demo:chat)
//   token_url       a token endpoint: getToken() fetches it (GET, with
//                   ?name=NAME) and takes the body's text, or its `token`
//                   member when the answer is JSON
//   name            the chat name (default guest-NNNN)
//   min_delay, max_delay   reconnect backoff bounds, ms
//   refresh_before  seconds before a token's expiry to fetch a new one
//   timeout         per-command timeout, ms
import { Client } from './herald-client.js';

export const params = new URLSearchParams(location.search);

function num(key, fallback) {
  const v = params.get(key);
  if (v === null || v === '') return fallback;
  const n = Number(v);
  return Number.isFinite(n) && n >= 0 ? n : fallback;
}

function defaultUrl() {
  const scheme = location.protocol === 'https:' ? 'wss' : 'ws';
  return `${scheme}://${location.host}/ws`;
}

// An idempotency key for the send box: a resend after a reconnect must not
// publish twice. crypto.randomUUID needs a secure context (not plain http
// to a remote host), hence the fallback.
export function newKey() {
  if (globalThis.crypto && typeof crypto.randomUUID === 'function') return crypto.randomUUID();
  return Date.now().toString(36) + '-' + Math.random().toString(36).slice(2, 12);
}

export function defaultName() {
  return params.get('name') || 'guest-' + String(Math.floor(1000 + Math.random() * 9000));
}

// Most entries a page keeps in memory and in the DOM: a demo left open for
// a day must not grow without bound.
const KEEP = 2000;
function push(list, item) {
  list.push(item);
  if (list.length > KEEP) list.splice(0, list.length - KEEP);
}

// Starts the client and the subscription. `view` gets:
//   view.message(msg)   a publication (in offset order, once each)
//   view.recovered(offsets)  those publications came with a resubscribe
//   view.changed()      anything else changed (state, presence, recovery log)
// Returns the state object, also set as window.heraldDemo.
export function startDemo(view) {
  const channel = params.get('channel') || 'demo:chat';
  const tokenUrl = params.get('token_url');
  const demo = {
    channel,
    name: defaultName(),
    state: 'disconnected',
    clientId: null, node: null, expires: null,
    connects: 0,          // 'connected' events
    lastClose: null,      // { code, reason, reconnect, time }
    disconnects: [],      // every 'disconnected' event
    subState: 'subscribing',
    epoch: null, offset: null,
    messages: [],         // { offset, epoch, data, client, time, recovered }
    recoveries: [],       // every 'subscribed': { time, resubscribed, recovered, count, from, to, epoch, offset }
    gaps: [],             // every 'gap' event
    errors: [],           // { type, message, time }
    presence: {},         // client id -> { user, conn_info }
    names: {},            // client id -> chat name seen in its messages
    tokenFetches: 0,
    log: [],              // one line per event, newest last
    client: null, sub: null,
  };
  window.heraldDemo = demo;

  const note = (line) => {
    push(demo.log, `${new Date().toISOString().slice(11, 23)} ${line}`);
  };
  const changed = () => view.changed && view.changed();

  const options = {
    name: 'herald-demo', version: '1',
    minReconnectDelay: num('min_delay', 500),
    maxReconnectDelay: num('max_delay', 10000),
  };
  if (params.has('timeout')) options.timeout = num('timeout', 10000);
  if (params.has('refresh_before')) options.refreshBefore = num('refresh_before', 30);
  if (tokenUrl) {
    options.getToken = async () => {
      demo.tokenFetches++;
      changed();
      const u = new URL(tokenUrl, location.href);
      u.searchParams.set('name', demo.name);
      const r = await fetch(u, { cache: 'no-store' });
      if (!r.ok) throw new Error(`token endpoint answered ${r.status}`);
      const type = r.headers.get('content-type') || '';
      const token = type.includes('json') ? (await r.json()).token : (await r.text()).trim();
      note(`token fetched (#${demo.tokenFetches})`);
      return token;
    };
  }

  const client = new Client(params.get('url') || defaultUrl(), options);
  demo.client = client;

  client.on('state', ({ state }) => { demo.state = state; note(`state ${state}`); changed(); });
  client.on('connected', (ctx) => {
    demo.connects++;
    demo.clientId = ctx.client; demo.node = ctx.node; demo.expires = ctx.expires ?? null;
    note(`connected as ${ctx.client} on ${ctx.node}`);
    changed();
  });
  client.on('refreshed', ({ expires }) => {
    demo.expires = expires ?? null;
    note(`token refreshed${expires ? `, expires ${new Date(expires * 1000).toISOString()}` : ''}`);
    changed();
  });
  client.on('disconnected', ({ code, reason, reconnect }) => {
    demo.lastClose = { code, reason: reason || '', reconnect, time: Date.now() };
    push(demo.disconnects, demo.lastClose);
    note(`disconnected ${code} ${reason || ''}${reconnect ? ' (reconnecting)' : ''}`);
    changed();
  });
  client.on('error', ({ type, error }) => {
    const message = (error && (error.message || String(error))) || '';
    push(demo.errors, { type, message, time: Date.now() });
    note(`error ${type}: ${message}`);
    changed();
  });

  // Publications not after the previous one of the same epoch: a duplicate
  // or out of order, which the SDK promises never to deliver. Counted, so
  // that the tests see it.
  demo.duplicates = 0;
  let last = null;
  const sub = client.subscribe(channel, {
    publication(pub) {
      if (last && last.epoch === pub.epoch && pub.offset <= last.offset) {
        demo.duplicates++;
        note(`offset ${pub.offset} after ${last.offset}: duplicate or out of order`);
      }
      last = pub;
      const msg = {
        offset: pub.offset, epoch: pub.epoch, data: pub.data,
        client: pub.info ? pub.info.client : null, time: Date.now(), recovered: false,
      };
      if (msg.client && pub.data && typeof pub.data.name === 'string') {
        if (Object.keys(demo.names).length >= KEEP) demo.names = {};
        demo.names[msg.client] = pub.data.name;
      }
      demo.offset = pub.offset; demo.epoch = pub.epoch;
      push(demo.messages, msg);
      view.message && view.message(msg);
    },
    subscribed(ctx) {
      const pubs = ctx.publications || [];
      const offsets = new Set(pubs.map((p) => p.offset));
      // They were delivered to publication() just before: the newest messages.
      for (let i = demo.messages.length - 1; i >= 0 && pubs.length; i--) {
        const m = demo.messages[i];
        if (m.offset < pubs[0].offset) break;
        if (offsets.has(m.offset)) m.recovered = true;
      }
      if (pubs.length && view.recovered) view.recovered([...offsets]);
      const entry = {
        time: Date.now(), resubscribed: !!ctx.resubscribed,
        recovered: ctx.recovered === undefined ? null : ctx.recovered,
        count: pubs.length,
        from: pubs.length ? pubs[0].offset : null,
        to: pubs.length ? pubs[pubs.length - 1].offset : null,
        epoch: ctx.epoch, offset: ctx.offset,
      };
      push(demo.recoveries, entry);
      demo.subState = 'subscribed'; demo.epoch = ctx.epoch;
      if (demo.offset === null || ctx.offset > demo.offset) demo.offset = ctx.offset;
      note(`${entry.resubscribed ? 're' : ''}subscribed to ${channel}` +
        (entry.recovered === null ? '' : ` recovered=${entry.recovered}, ${entry.count} publication(s)`));
      refreshPresence();
      changed();
    },
    gap(ctx) {
      push(demo.gaps, { ...ctx, time: Date.now() });
      note(`GAP: publications after offset ${ctx.since && ctx.since.offset} were lost (epoch ${ctx.epoch})`);
      changed();
    },
    join(info) {
      demo.presence[info.client] = { user: info.user, conn_info: info.conn_info };
      note(`join ${info.client}`);
      changed();
    },
    leave(info) {
      delete demo.presence[info.client];
      note(`leave ${info.client}`);
      changed();
    },
    unsubscribed({ code, reason }) {
      demo.subState = 'unsubscribed';
      note(`unsubscribed ${code} ${reason || ''}`);
      changed();
    },
    error(err) {
      push(demo.errors, { type: 'subscription', message: err && err.message, time: Date.now() });
      note(`subscription error: ${err && err.message}`);
      changed();
    },
  });
  demo.sub = sub;

  // Presence is read whenever the subscription (re)starts; join and leave
  // keep it current in between. A namespace without presence answers 108:
  // the list then stays empty.
  async function refreshPresence() {
    try {
      const r = await sub.presence();
      demo.presence = { ...r.clients };
      changed();
    } catch (e) {
      note(`presence: ${e.message}`);
    }
  }

  demo.publish = (data, opts = {}) =>
    sub.publish(data, { idempotencyKey: newKey(), ...opts });
  demo.say = (text) => demo.publish({ name: demo.name, text });
  demo.displayName = (id) => {
    const p = demo.presence[id];
    const info = p && (p.conn_info || p.info);
    return (info && info.name) || demo.names[id] || (p && p.user) || id.slice(0, 8);
  };

  client.connect();
  return demo;
}

// Small DOM helpers for the pages.
export function el(tag, attrs = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null) continue;
    if (k === 'class') e.className = v;
    else if (k === 'text') e.textContent = v;
    else e.setAttribute(k, v);
  }
  for (const c of children) e.append(c);
  return e;
}

export function $(testid) {
  return document.querySelector(`[data-testid="${testid}"]`);
}

export function setText(testid, text) {
  const e = $(testid);
  if (e && e.textContent !== String(text)) e.textContent = String(text);
}

// Re-renders at most once per task: a burst of recovered publications
// updates the panels once.
export function coalesce(fn) {
  let queued = false;
  return () => {
    if (queued) return;
    queued = true;
    setTimeout(() => { queued = false; fn(); }, 0);
  };
}

export function renderPresence(demo, list) {
  list.replaceChildren();
  const ids = Object.keys(demo.presence).sort();
  for (const id of ids) {
    const me = id === demo.clientId;
    list.append(el('li', { 'data-testid': 'presence-item', 'data-client': id, class: me ? 'me' : null,
      text: demo.displayName(id) + (me ? ' (you)' : '') }));
  }
  setText('presence-count', ids.length);
}
