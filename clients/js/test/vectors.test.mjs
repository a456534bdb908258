// protocol/vectors/ run by the SDK: the JSON and msgpack codecs of the SDK
// and of the C server agree byte for byte on commands, and both encodings
// of every server message decode to the same values.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import WebSocket from 'ws';
import { encode, decode } from '@msgpack/msgpack';
import { Client, jsonCodec } from '../dist/herald-client.js';
import { msgpackCodec } from '../dist/msgpack.js';
import { Scripted, fakeToken } from './scripted.mjs';

const dir = new URL('../../../protocol/vectors/', import.meta.url);
const load = (f) => JSON.parse(readFileSync(new URL(f, dir), 'utf8')).vectors;
const hex = (h) => new Uint8Array(Buffer.from(h, 'hex'));
const hasBin = (v) => v instanceof Uint8Array || (v && typeof v === 'object' && Object.values(v).some(hasBin));
const num = (v) => Number(v); // vectors write integers above 2^53 as strings

/** What an application sees of a decoded message: publications normalised
 *  the way the client does (base64 + binary:true becomes bytes). */
function view(m) {
  const fix = (p) => {
    const q = { ...p };
    if (q.binary === true && typeof q.data === 'string') q.data = new Uint8Array(Buffer.from(q.data, 'base64'));
    delete q.binary;
    return q;
  };
  if (m.push === 'pub') return fix(m);
  if (m.ok && m.ok.publications) return { ...m, ok: { ...m.ok, publications: m.ok.publications.map(fix) } };
  return m;
}

test('server messages decode alike from JSON and msgpack', () => {
  let n = 0;
  for (const v of load('encode.json')) {
    if (v.kind === 'cmd') continue;
    const [j] = jsonCodec.decode(v.json);
    const [m] = msgpackCodec.decode(hex(v.msgpack_hex));
    assert.equal(jsonCodec.decode(v.json).length, 1, v.name);
    assert.deepEqual(view(j), view(m), v.name);
    const a = v.args;
    if (v.kind === 'push_pub') {
      assert.equal(j.channel, a.channel);
      assert.equal(j.offset, num(a.offset), v.name);
      assert.equal(j.epoch, a.epoch);
      if (a.time) assert.equal(j.time, a.time);
    } else if (a.id !== undefined && a.id !== 0) {
      assert.equal(j.id, a.id, v.name);
    }
    if (v.kind === 'ok_connect') {
      assert.equal(j.ok.client, a.client);
      assert.equal(j.ok.ping, a.ping);
      assert.equal(j.ok.expires, a.expires || undefined);
    }
    if (v.kind === 'error') assert.equal(j.error.code, a.code);
    if (v.kind === 'push_disconnect') assert.deepEqual([j.code, j.reconnect], [a.code, a.reconnect]);
    n++;
  }
  assert.ok(n >= 25, `only ${n} vectors`);
});

test('publication data: both encodings give the application the same value', () => {
  let n = 0;
  for (const v of load('data.json')) {
    if (v.error) continue;
    const m = decode(hex(v.msgpack_hex));
    // Bin nested in a value reaches JSON clients as base64 without a marker
    // (protocol/README.md); only whole-value bin is marked `binary`.
    if (hasBin(m)) continue;
    // A float32 reaches JSON clients as float32 text ("0.1"), msgpack ones
    // as the float32 itself: the same float32 value.
    const same = (a, b) => (typeof a === 'number' && typeof b === 'number'
      ? a === b || Math.fround(a) === Math.fround(b)
      : a && typeof a === 'object' ? Object.keys(a).length === Object.keys(b).length
        && Object.keys(a).every((k) => same(a[k], b[k])) : a === b);
    assert.ok(same(JSON.parse(v.json), m), v.name);
    n++;
  }
  assert.ok(n >= 10);
});

test('command frames the server decodes split the same way in the SDK', () => {
  for (const v of load('decode.json')) {
    if (v.enc !== 'msgpack' || !v.expect.every((e) => e.op)) continue;
    const got = msgpackCodec.decode(hex(v.input_hex));
    assert.equal(got.length, v.expect.length, v.name);
    got.forEach((g, i) => {
      assert.equal(g.id, num(v.expect[i].id), v.name);
      assert.equal(g.op, v.expect[i].op, v.name);
    });
  }
});

/* The client's own command bytes against the vectors of kind "cmd": each
 * command is made through the public API against a scripted server that
 * keeps the raw frame; the id (and for refresh the token, which the SDK
 * must be able to read an expiry from) is set to the vector's. */
for (const enc of ['json', 'msgpack']) {
  test(`command bytes match the vectors (${enc})`, async () => {
    const raw = [];
    const server = await new Scripted((cmd) => {
      if (cmd.op === 'connect') return { client: 'c', node: 'n', ping: 25, expires: Math.floor(Date.now() / 1000) + 2 };
      return undefined;
    }).start();
    server.wss.on('connection', (ws) => ws.on('message', (d) => raw.push(d)));
    const vec = Object.fromEntries(load('encode.json').filter((v) => v.kind === 'cmd').map((v) => [v.args.op, v]));
    const c = new Client(server.url, {
      WebSocket, name: vec.connect.args.name, version: vec.connect.args.version,
      token: vec.connect.args.token, getToken: async () => fakeToken({ exp: Math.floor(Date.now() / 1000) + 60 }),
      refreshBefore: 30,
      ...(enc === 'msgpack' ? { encoding: 'msgpack', codec: msgpackCodec } : {}),
    });
    c.connect();
    await c.ready();
    const a = (op) => vec[op].args;
    const sub = c.subscribe(a('subscribe').channel, {}, { token: a('subscribe').token, since: a('subscribe').since });
    await sub.ready();
    await c.history(a('history').channel, { limit: a('history').limit, reverse: a('history').reverse });
    await c.publish(a('publish').channel, JSON.parse(a('publish').data_json));
    await c._call({ op: 'ping' });
    await server.waitCommand((x) => x.op === 'refresh', 5000);
    c.disconnect();
    await server.stop();

    const frames = raw.map((d) => (enc === 'json' ? [d.toString()] : [...msgpackCodec.decode(d)]));
    const byOp = {};
    for (const f of frames.flat()) {
      const m = enc === 'json' ? JSON.parse(f) : f;
      byOp[m.op] = { m, text: f };
    }
    for (const op of ['connect', 'subscribe', 'history', 'publish', 'ping', 'refresh']) {
      const v = vec[op];
      assert.ok(byOp[op], `no ${op} command sent`);
      const { m, text } = byOp[op];
      if (op === 'refresh') assert.ok(m.token.split('.').length === 3);
      const fixed = { ...m, id: v.args.id, ...(op === 'refresh' ? { token: v.args.token } : {}) };
      if (enc === 'json') {
        if (op !== 'refresh') {
          assert.equal(text.replace(/^\{"id":\d+/, `{"id":${v.args.id}`), v.json, `${op} (json)`);
        }
        assert.equal(JSON.stringify(fixed), v.json, `${op} (json)`);
      } else {
        assert.equal(Buffer.from(encode(fixed)).toString('hex'), v.msgpack_hex, `${op} (msgpack)`);
      }
    }
  });
}
