/**
 * The client: one WebSocket to a Herald node, kept alive across network
 * trouble. It owns the connection's life (connect, heartbeat, token
 * refresh, reconnect with backoff), the commands in flight (ids, replies,
 * timeouts, cancellation, batching into frames) and the subscriptions,
 * which it resubscribes after every reconnect; recovery and de-duplication
 * of a channel's publications are the Subscription's (subscription.ts).
 */
import { Emitter } from './emitter';
import { type Codec, jsonCodec } from './codec';
import { backoff, refreshDelay, tokenStale, toPublication } from './util';
import { HeraldError, CLOSE_NO_RECONNECT } from './errors';
import { Subscription } from './subscription';
import type {
  CallOptions, ClientEvents, ClientInfo, ClientOptions, HistoryOptions, HistoryResult,
  PresenceResult, Publication, PublishOptions, PublishResult, State, SubscribeOptions,
  SubscriptionHandlers, WebSocketCtor, WebSocketLike,
} from './types';

type Msg = { [k: string]: any };

/** A command from the moment it is made until it is settled. `id` is 0
 *  while it waits for a connection. */
interface Call {
  id: number;
  cmd: Msg;
  /** Safe to send again on the next connection when this one drops. */
  retry: boolean;
  resolve: (ok: any) => void;
  reject: (e: Error) => void;
  timer?: ReturnType<typeof setTimeout>;
  unlisten?: () => void;
  /** The frame it left in (see _frameTooLarge). */
  frame?: number;
}

/** Only the client's own commands (connect, subscribe, ...) use this: they
 *  belong to one connection and are never queued for the next. */
const INTERNAL = { internal: true } as const;

/** A connection lasting this long counts as a success: the backoff starts
 *  over afterwards (a server that accepts and drops at once is not
 *  hammered). */
const STABLE_MS = 10000;

export class Client extends Emitter<ClientEvents> {
  readonly url: string;
  state: State = 'disconnected';
  /** The server's id of this connection (after `connected`). */
  clientId?: string;
  /** When the connection's token expires (unix s; from the connect reply
   *  and every refresh), undefined when it does not. */
  expires?: number;
  /** The current WebSocket, or null (for tests and diagnostics). */
  transport: WebSocketLike | null = null;

  private _o: Required<Pick<ClientOptions, 'timeout' | 'minReconnectDelay' |
    'maxReconnectDelay' | 'pingTimeout' | 'refreshBefore'>> & ClientOptions;
  private _codec: Codec;
  private _WS: WebSocketCtor;
  private _token?: string;
  private _want = false;          // connect() called, disconnect() not since
  private _gen = 0;               // bumped by every new transport
  private _nextId = 1;
  private _frames = 0;            // frames sent on this client
  private _flight = new Map<number, Call>();
  private _waiting: Call[] = [];
  private _outbox: Msg[] = [];
  private _subs = new Map<string, Subscription>();
  private _attempt = 0;
  private _connectedAt = 0;
  private _pingMs = 25000;
  private _rx = 0;                // when the last frame arrived
  private _push?: { code: number; reason: string; reconnect: boolean };
  private _readyWaiters: Array<[() => void, (e: Error) => void]> = [];
  private _t: { [k in 'reconnect' | 'ping' | 'refresh' | 'open']?: ReturnType<typeof setTimeout> } = {};
  private _unlistenBrowser?: () => void;

  constructor(url: string, options: ClientOptions = {}) {
    super();
    this.url = url;
    this._o = { timeout: 10000, minReconnectDelay: 500, maxReconnectDelay: 20000,
      pingTimeout: 10000, refreshBefore: 30, ...options };
    if (options.encoding === 'msgpack' && !options.codec) {
      throw new Error("herald-client: encoding 'msgpack' needs the codec option (herald-client/msgpack)");
    }
    this._codec = options.codec || jsonCodec;
    const WS = options.WebSocket || (globalThis as any).WebSocket;
    if (!WS) throw new Error('herald-client: no WebSocket here: pass the WebSocket option (e.g. the ws package)');
    this._WS = WS;
    this._token = options.token;
  }

  /** Starts connecting, and keeps the connection up until disconnect(). */
  connect(): void {
    if (this._want) return;
    this._want = true;
    this._attempt = 0;
    this._listenBrowser();
    this._setState('connecting');
    this.emit('connecting', { code: 0, reason: 'connect called' });
    this._open();
  }

  /** Closes the connection and stops reconnecting. Commands waiting or in
   *  flight fail with 'closed'; subscriptions are kept and resubscribe
   *  (recovering) on the next connect(). */
  disconnect(): void {
    const was = this.state;
    this._stop();
    const closed = new HeraldError('closed', 'client disconnected');
    this._drop(1000, 'disconnect called', closed);
    this._failAll(closed);
    if (was !== 'disconnected') {
      this._setState('disconnected');
      this.emit('disconnected', { code: 1000, reason: 'disconnect called', reconnect: false });
    }
  }

  /** Resolves once connected. */
  ready(opts: CallOptions = {}): Promise<void> {
    if (this.state === 'connected') return Promise.resolve();
    return this._wait(this._readyWaiters, opts);
  }

  /** React Native: pass AppState changes (`AppState.addEventListener('change',
   *  s => client.handleAppState(s))`); 'active' reconnects at once when the
   *  connection was lost in the background, and checks it otherwise. */
  handleAppState(appState: string): void {
    if (appState === 'active') this._wake();
  }

  subscribe(channel: string, handlers: SubscriptionHandlers = {}, options: SubscribeOptions = {}): Subscription {
    const old = this._subs.get(channel);
    if (old && old.state !== 'unsubscribed') throw new HeraldError(105, `already subscribed to ${channel}`);
    const sub = new Subscription(this as any, channel, handlers, options);
    this._subs.set(channel, sub);
    if (this.state === 'connected') (sub as any)._subscribe();
    return sub;
  }

  getSubscription(channel: string): Subscription | undefined {
    return this._subs.get(channel);
  }

  publish(channel: string, data: unknown, opts: PublishOptions = {}): Promise<PublishResult> {
    if (this._codec === jsonCodec && (data instanceof Uint8Array || data instanceof ArrayBuffer)) {
      // JSON.stringify would turn bytes into an object of indices.
      return Promise.reject(new HeraldError(107, 'binary data needs the msgpack encoding'));
    }
    const cmd: Msg = { op: 'publish', channel, data };
    if (opts.idempotencyKey !== undefined) cmd.idempotency_key = opts.idempotencyKey;
    return this._call(cmd, opts, opts.idempotencyKey !== undefined);
  }

  async history(channel: string, opts: HistoryOptions = {}): Promise<HistoryResult> {
    const cmd: Msg = { op: 'history', channel };
    if (opts.since) cmd.since = { offset: opts.since.offset, epoch: opts.since.epoch };
    if (opts.limit !== undefined) cmd.limit = opts.limit;
    if (opts.reverse) cmd.reverse = true;
    const ok = await this._call(cmd, opts, true);
    return { ...ok, publications: (ok.publications || []).map(toPublication) };
  }

  presence(channel: string, opts: CallOptions = {}): Promise<PresenceResult> {
    return this._call({ op: 'presence', channel }, opts, true);
  }

  /* ---- commands ---- */

  /** Makes a command and settles it with the reply's `ok` or error. */
  _call(cmd: Msg, opts: CallOptions & { internal?: boolean } = {}, retry = false): Promise<any> {
    return new Promise((resolve, reject) => {
      const c: Call = { id: 0, cmd, retry, resolve, reject };
      const fail = (e: Error) => { this._forget(c); reject(e); };
      const signal = opts.signal;
      if (signal) {
        if (signal.aborted) return reject(new HeraldError('aborted', 'command aborted'));
        const onAbort = () => fail(new HeraldError('aborted', 'command aborted'));
        signal.addEventListener('abort', onAbort, { once: true });
        c.unlisten = () => signal.removeEventListener('abort', onAbort);
      }
      const ms = opts.timeout ?? this._o.timeout;
      c.timer = setTimeout(() => fail(new HeraldError('timeout', `${cmd.op}: no reply within ${ms} ms`)), ms);
      if (this.state === 'connected' || cmd.op === 'connect') this._send(c);
      else if (opts.internal) fail(new HeraldError('disconnected', 'not connected'));
      else this._waiting.push(c);
    });
  }

  private _forget(c: Call): void {
    clearTimeout(c.timer);
    c.unlisten?.();
    if (c.id) this._flight.delete(c.id);
    else this._waiting = this._waiting.filter((w) => w !== c);
  }

  /** Gives a command an id and queues it for the next frame: commands made
   *  in one turn of the event loop leave together (batching). */
  private _send(c: Call): void {
    c.id = this._nextId;
    this._nextId = this._nextId >= 0xffffffff ? 1 : this._nextId + 1;
    this._flight.set(c.id, c);
    this._outbox.push({ id: c.id, ...c.cmd });
    if (this._outbox.length === 1) queueMicrotask(() => this._flush());
  }

  private _flush(): void {
    const msgs = this._outbox;
    this._outbox = [];
    this._frames++;
    for (const m of msgs) { const c = this._flight.get(m.id); if (c) c.frame = this._frames; }
    const ws = this.transport;
    if (!msgs.length || !ws || ws.readyState !== 1) return;
    try {
      ws.send(this._codec.encode(msgs));
    } catch (e) {
      this.emit('error', { type: 'transport', error: e as Error });
    }
  }

  /** Fails every command, in flight or waiting, and every ready(). */
  private _failAll(err: Error): void {
    for (const c of [...this._flight.values(), ...this._waiting]) { this._forget(c); c.reject(err); }
    for (const [, rej] of [...this._readyWaiters]) rej(err);
  }

  /* ---- the connection ---- */

  private _setState(s: State): void {
    const previous = this.state;
    if (s === previous) return;
    this.state = s;
    this.emit('state', { state: s, previous });
  }

  private async _open(): Promise<void> {
    const gen = ++this._gen;
    clearTimeout(this._t.reconnect);
    const o = this._o;
    // One timeout covers the whole attempt: getToken, the opening
    // handshake and the connect reply.
    clearTimeout(this._t.open);
    this._t.open = setTimeout(() => this._openTimeout(gen), o.timeout);
    if (o.getToken && tokenStale(this._token)) {
      let err: Error | undefined;
      try {
        this._token = await o.getToken();
      } catch (e) {
        err = e as Error;
      }
      if (gen !== this._gen || !this._want) return;
      if (err) {
        clearTimeout(this._t.open);
        this.emit('error', { type: 'token', error: err });
        if (gen === this._gen && this._want) this._retry(0, 'getToken failed');
        return;
      }
    }
    let ws: WebSocketLike;
    try {
      ws = new this._WS(this.url, this._codec.protocol);
    } catch (e) {
      this.emit('error', { type: 'transport', error: e as Error });
      this._retry(0, 'cannot open WebSocket');
      return;
    }
    ws.binaryType = 'arraybuffer';
    this.transport = ws;
    ws.onopen = () => this.transport === ws && this._connectCmd(ws);
    ws.onmessage = (ev) => this.transport === ws && this._frame(ev.data);
    ws.onclose = (ev) => this._lost(ws, ev.code || 1006, ev.reason || '');
    ws.onerror = () => { /* a close event follows */ };
  }

  private _openTimeout(gen: number): void {
    if (gen !== this._gen) return;
    if (this.transport) return this._lost(this.transport, 4002, 'connect timeout');
    this._gen++; // the getToken still running is forgotten
    this.emit('error', { type: 'token', error: new HeraldError('timeout', 'getToken did not answer in time') });
    this._retry(0, 'getToken timeout');
  }

  private _connectCmd(ws: WebSocketLike): void {
    const cmd: Msg = { op: 'connect' };
    if (this._token) cmd.token = this._token;
    if (this._o.name) cmd.name = this._o.name;
    if (this._o.version) cmd.version = this._o.version;
    this._call(cmd, INTERNAL).then((ok) => {
      if (this.transport !== ws) return;
      clearTimeout(this._t.open);
      this.clientId = ok.client;
      this.expires = ok.expires;
      this._connectedAt = Date.now();
      this._pingMs = (ok.ping || 25) * 1000;
      this._setState('connected');
      this.emit('connected', { client: ok.client, node: ok.node, expires: ok.expires });
      if (this.transport !== ws) return; // a listener disconnected
      this._scheduleRefresh(ok.expires);
      this._heartbeat();
      for (const sub of this._subs.values()) (sub as any)._subscribe();
      for (const c of this._waiting.splice(0)) this._send(c);
      for (const [res] of [...this._readyWaiters]) res();
    }, (e: HeraldError) => {
      if (this.transport !== ws) return;
      // 101/109 come with the close 4100 that follows; a refused token is
      // not used again when getToken can make another.
      if (typeof e.code === 'number' && this._o.getToken) this._token = undefined;
      this.emit('error', { type: 'connect', error: e });
    });
  }

  /** One incoming frame: replies settle their commands, pushes go to the
   *  subscriptions. */
  private _frame(data: string | ArrayBuffer): void {
    let msgs: unknown[];
    try {
      msgs = this._codec.decode(data);
    } catch (e) {
      this.emit('error', { type: 'decode', error: e as Error });
      return;
    }
    this._rx = Date.now();
    for (const m of msgs as Msg[]) {
      if (!m || typeof m !== 'object') continue;
      if (m.id) {
        const c = this._flight.get(m.id);
        if (!c) continue; // timed out or aborted earlier
        this._forget(c);
        if (m.error) c.reject(new HeraldError(m.error.code, m.error.message || ''));
        else c.resolve(m.ok || {});
      } else if (m.push) {
        this._pushMsg(m);
      } else if (m.error) {
        const err = new HeraldError(m.error.code, m.error.message || '');
        if (m.error.code === 112) this._frameTooLarge(err);
        else this.emit('error', { type: 'protocol', error: err });
      }
    }
  }

  private _pushMsg(m: Msg): void {
    const sub = this._subs.get(m.channel) as any;
    switch (m.push) {
      case 'pub':
        if (sub) sub._pub(toPublication(m));
        break;
      case 'join':
      case 'leave':
        if (sub && sub.state === 'subscribed') {
          sub._presence(m.push, m.info as ClientInfo);
          this.emit(m.push, { channel: m.channel, info: m.info });
        }
        break;
      case 'unsubscribe':
        if (sub) sub._serverUnsubscribe(m.code, m.reason || '');
        break;
      case 'disconnect':
        this._push = { code: m.code, reason: m.reason || '', reconnect: !!m.reconnect };
        break;
    }
  }

  /** Called by a subscription for every publication it delivers. */
  _delivered(pub: Publication): void {
    this.emit('publication', pub);
  }

  /** The server refused a whole frame as too large (112 has no id: it is
   *  decided before the frame is read). Replies come in the order commands
   *  were sent, so the frame is the one of the oldest command still
   *  waiting for its reply: every command in it fails with 112. */
  private _frameTooLarge(err: HeraldError): void {
    const oldest = this._flight.values().next().value as Call | undefined;
    if (!oldest) return this.emit('error', { type: 'protocol', error: err });
    for (const c of [...this._flight.values()]) {
      if (c.frame === oldest.frame) { this._forget(c); c.reject(err); }
    }
  }

  /** Heartbeat: after `ping` seconds of silence from the server, ask it;
   *  no answer within pingTimeout means the connection is dead (a socket
   *  can stay "open" for minutes after the network went away). */
  private _heartbeat(): void {
    clearTimeout(this._t.ping);
    const ws = this.transport!;
    const tick = () => {
      const idle = Date.now() - this._rx;
      if (idle >= this._pingMs) this._probe(ws);
      this._t.ping = setTimeout(tick, idle >= this._pingMs ? this._pingMs : this._pingMs - idle);
    };
    this._t.ping = setTimeout(tick, this._pingMs);
  }

  private _probe(ws: WebSocketLike): void {
    this._call({ op: 'ping' }, { internal: true, timeout: this._o.pingTimeout }).catch((e) => {
      if (e.code === 'timeout') this._lost(ws, 4002, 'no answer to ping');
    });
  }

  private _scheduleRefresh(expires?: number): void {
    clearTimeout(this._t.refresh);
    if (!expires || !this._o.getToken) return;
    const ws = this.transport;
    this._t.refresh = setTimeout(() => this._refresh(ws, expires),
      refreshDelay(expires, this._o.refreshBefore));
  }

  private async _refresh(ws: WebSocketLike | null, expires: number): Promise<void> {
    try {
      const token = await this._o.getToken!();
      const ok = await this._call({ op: 'refresh', token }, INTERNAL);
      this._token = token;
      this.expires = ok.expires;
      this.emit('refreshed', { expires: ok.expires });
      if (this.transport === ws) this._scheduleRefresh(ok.expires);
    } catch (e) {
      this.emit('error', { type: 'refresh', error: e as Error });
      // Try again while the old token lasts; past it the server closes with
      // 4100 and the reconnect gets a new token.
      if (this.transport === ws && expires * 1000 > Date.now() + 2000) {
        this._t.refresh = setTimeout(() => this._refresh(ws, expires),
          Math.min(5000, (expires * 1000 - Date.now()) / 2));
      }
    }
  }

  /** Stops using a transport without deciding what comes next. */
  private _drop(code: number, reason: string, err?: Error): WebSocketLike | null {
    const ws = this.transport;
    this.transport = null;
    this._push = undefined;
    this._gen++;
    for (const k of Object.keys(this._t) as Array<keyof Client['_t']>) clearTimeout(this._t[k]);
    if (ws) {
      ws.onopen = ws.onmessage = ws.onclose = ws.onerror = null;
      // A socket the server already closed needs no close of ours.
      if (ws.readyState < 2) try { ws.close(code, reason); } catch { /* closing */ }
    }
    this._outbox = [];
    // Commands safe to repeat wait for the next connection; the others
    // cannot know whether they took effect.
    for (const c of [...this._flight.values()]) {
      if (c.retry && !err) {
        // Waits for the next connection, its timeout and signal still armed.
        this._flight.delete(c.id);
        c.id = 0;
        this._waiting.push(c);
      } else {
        this._forget(c);
        c.reject(err || new HeraldError('disconnected', `connection lost during ${c.cmd.op}`));
      }
    }
    for (const sub of this._subs.values()) (sub as any)._lost();
    return ws;
  }

  /** The transport `ws` ended (close event, heartbeat or connect timeout,
   *  browser offline): decide whether and when to reconnect. */
  private _lost(ws: WebSocketLike, code: number, reason: string): void {
    if (this.transport !== ws) return;
    const push = this._push;
    this._push = undefined;
    if (push) ({ code, reason } = push);
    const wasConnected = this.state === 'connected';
    if (wasConnected && Date.now() - this._connectedAt > STABLE_MS) this._attempt = 0;
    let reconnect = push ? push.reconnect : !CLOSE_NO_RECONNECT.includes(code);
    if (code === 4100) {
      // The token was refused or expired: only a new one helps.
      this._token = undefined;
      reconnect = !!this._o.getToken;
    }
    reconnect = reconnect && this._want;
    this._drop(code < 4000 && code !== 1000 ? 1000 : 4000, reason);
    // The state is settled before listeners run, so that they see it and
    // may call connect() or disconnect() themselves.
    if (reconnect) {
      this._setState('connecting');
      if (wasConnected) this.emit('disconnected', { code, reason, reconnect });
      if (this.state === 'connecting' && !this.transport && this._want) this._retry(code, reason);
    } else {
      this._stop();
      this._failAll(new HeraldError('closed', `connection closed (${code} ${reason})`));
      this._setState('disconnected');
      this.emit('disconnected', { code, reason, reconnect });
    }
  }

  /** No more reconnecting: forget the browser's events too. */
  private _stop(): void {
    this._want = false;
    this._unlistenBrowser?.();
    this._unlistenBrowser = undefined;
  }

  private _retry(code: number, reason: string): void {
    this._setState('connecting');
    this.emit('connecting', { code, reason });
    const o = this._o;
    const ms = backoff(this._attempt++, o.minReconnectDelay, o.maxReconnectDelay);
    clearTimeout(this._t.reconnect);
    this._t.reconnect = setTimeout(() => this._open(), ms);
  }

  /** The network is back or the app came to the foreground: reconnect now
   *  instead of at the end of the backoff, or check a connection that may
   *  have died meanwhile. */
  private _wake(): void {
    if (!this._want) return;
    if (this.state === 'connected') return this._probe(this.transport!);
    // An attempt still opening was probably started while offline and will
    // fail only after a timeout: start over. One waiting for its connect
    // reply is let be.
    const ws = this.transport;
    if (ws && ws.readyState !== 0) return;
    this._attempt = 0;
    if (ws) this._drop(1000, 'network back');
    this._open();
  }

  private _listenBrowser(): void {
    const g = globalThis as any;
    if (this._unlistenBrowser || this._o.browserEvents === false ||
      typeof g.addEventListener !== 'function' || !g.document) return;
    const online = () => this._wake();
    const offline = () => this.transport && this._lost(this.transport, 4002, 'browser offline');
    const visible = () => g.document.visibilityState === 'visible' && this._wake();
    g.addEventListener('online', online);
    g.addEventListener('offline', offline);
    g.document.addEventListener('visibilitychange', visible);
    this._unlistenBrowser = () => {
      g.removeEventListener('online', online);
      g.removeEventListener('offline', offline);
      g.document.removeEventListener('visibilitychange', visible);
    };
  }

  /** Waits for a condition another path completes (ready()). */
  _wait(list: Array<[() => void, (e: Error) => void]>, opts: CallOptions): Promise<void> {
    return new Promise((resolve, reject) => {
      let timer: ReturnType<typeof setTimeout> | undefined;
      const entry: [() => void, (e: Error) => void] = [
        () => { done(); resolve(); }, (e) => { done(); reject(e); }];
      const onAbort = () => entry[1](new HeraldError('aborted', 'wait aborted'));
      const done = () => {
        clearTimeout(timer);
        opts.signal?.removeEventListener('abort', onAbort);
        const i = list.indexOf(entry);
        if (i >= 0) list.splice(i, 1);
      };
      if (opts.signal?.aborted) return reject(new HeraldError('aborted', 'wait aborted'));
      opts.signal?.addEventListener('abort', onAbort, { once: true });
      const ms = opts.timeout ?? this._o.timeout;
      timer = setTimeout(() => entry[1](new HeraldError('timeout', `not ready within ${ms} ms`)), ms);
      list.push(entry);
    });
  }

  /** An application listener or handler threw: the `error` event (type
   *  'handler') when the application listens to it, else thrown again on
   *  its own so that it is not lost. */
  protected override failed(e: unknown, event?: keyof ClientEvents): void {
    if (event !== 'error' && this.has('error')) {
      this.emit('error', { type: 'handler', error: e instanceof Error ? e : new Error(String(e)) });
    } else {
      super.failed(e);
    }
  }

  /** The same for subscription handlers (subscription.ts). */
  readonly _failed = (e: unknown): void => this.failed(e);

  /** The refreshBefore option, for channel tokens (subscription.ts). */
  get _refreshBefore(): number {
    return this._o.refreshBefore;
  }

  /** Forgets an ended subscription (subscription.ts). */
  _removeSub(sub: Subscription): void {
    if (this._subs.get(sub.channel) === sub) this._subs.delete(sub.channel);
  }
}
