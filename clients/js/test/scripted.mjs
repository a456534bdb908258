// A scripted in-process Herald for the SDK's unit tests: a real WebSocket
// server (the ws package) on a loopback port whose answers each test
// writes. It records every command it receives, per connection, and
// answers with the handler the test gives (by default: a plausible ok).
import { WebSocketServer } from 'ws';
import { encode, decodeMulti } from '@msgpack/msgpack';

export class Scripted {
  constructor(handler = () => undefined) {
    this.handler = handler;     // (cmd, conn) -> reply body, 'none', or undefined (default)
    this.conns = [];
    this.commands = [];         // every command, in order, with .conn
    this.frames = [];           // every frame's command count
  }

  async start() {
    this.wss = new WebSocketServer({ host: '127.0.0.1', port: 0,
      handleProtocols: (p) => [...p][0] || false });
    await new Promise((r) => this.wss.once('listening', r));
    this.url = `ws://127.0.0.1:${this.wss.address().port}/ws`;
    this.wss.on('connection', (ws) => this._conn(ws));
    return this;
  }

  _conn(ws) {
    const conn = { ws, n: this.conns.length, msgpack: ws.protocol === 'herald.v1.msgpack', commands: [] };
    this.conns.push(conn);
    ws.on('message', (data, isBinary) => {
      const cmds = isBinary ? [...decodeMulti(data)]
        : data.toString().split('\n').filter(Boolean).map((l) => JSON.parse(l));
      this.frames.push(cmds.length);
      for (const cmd of cmds) {
        cmd.conn = conn.n;
        this.commands.push(cmd);
        conn.commands.push(cmd);
        let r = this.handler(cmd, conn);
        if (r === 'none') continue;
        if (r === undefined) r = defaultReply(cmd, conn);
        if (r && r.error) this.send(conn, { id: cmd.id, error: r.error });
        else this.send(conn, { id: cmd.id, ok: r });
      }
    });
  }

  send(conn, ...msgs) {
    if (conn.ws.readyState !== 1) return;
    if (conn.msgpack) conn.ws.send(Buffer.concat(msgs.map((m) => encode(m))));
    else conn.ws.send(msgs.map((m) => JSON.stringify(m)).join('\n'));
  }

  /** Resolves with the first command matching pred (waiting for it). */
  waitCommand(pred, ms = 3000) {
    return waitFor(() => this.commands.find(pred), ms, 'command');
  }

  last() { return this.conns[this.conns.length - 1]; }

  async stop() {
    for (const c of this.conns) c.ws.terminate();
    await new Promise((r) => this.wss.close(r));
  }
}

export function defaultReply(cmd, conn) {
  switch (cmd.op) {
    case 'connect': return { client: `c${conn.n}`, node: 'n1', ping: 25 };
    case 'subscribe': return { epoch: 'E', offset: 0 };
    case 'publish': return { offset: 1, epoch: 'E' };
    case 'history': return { publications: [], epoch: 'E', offset: 0 };
    case 'presence': return { clients: {} };
    default: return {};
  }
}

/** Polls cond until it returns something truthy (or throws after ms). */
export async function waitFor(cond, ms = 3000, what = 'condition') {
  const end = Date.now() + ms;
  for (;;) {
    const v = cond();
    if (v) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

/** An unsigned JWT-shaped token with these claims (the SDK only reads exp). */
export function fakeToken(claims) {
  const b64 = (o) => Buffer.from(JSON.stringify(o)).toString('base64url');
  return `${b64({ alg: 'HS256' })}.${b64(claims)}.sig`;
}
