/**
 * A subscription to one channel. It remembers the last position it
 * delivered (epoch + offset), resubscribes from there after every
 * reconnect, delivers what the server recovered exactly once and in order
 * (de-duplicated by offset), and says so honestly: `subscribed` carries
 * `recovered`, and a position the server could not recover fires `gap`.
 * It also keeps its channel token fresh (getToken) when it has one.
 */
import { HeraldError, TEMPORARY_ERRORS } from './errors';
import { backoff, guard, refreshDelay, tokenExp, tokenStale, toPublication } from './util';
import type {
  CallOptions, ClientInfo, HistoryOptions, HistoryResult, PresenceResult, Publication,
  PublishOptions, PublishResult, StreamPosition, SubState, SubscribeOptions, SubscriptionHandlers,
} from './types';

/** What a subscription needs from its client. */
interface Owner {
  state: string;
  _call(cmd: object, opts?: CallOptions & { internal?: boolean }, retry?: boolean): Promise<any>;
  _delivered(pub: Publication): void;
  _removeSub(sub: Subscription): void;
  _wait(list: Array<[() => void, (e: Error) => void]>, opts: CallOptions): Promise<void>;
  publish(channel: string, data: unknown, opts?: PublishOptions): Promise<PublishResult>;
  history(channel: string, opts?: HistoryOptions): Promise<HistoryResult>;
  presence(channel: string, opts?: CallOptions): Promise<PresenceResult>;
  /** Reports an application handler's error (the client's `error` event). */
  readonly _failed: (e: unknown) => void;
  /** The client's refreshBefore option (s). */
  readonly _refreshBefore: number;
}

const INTERNAL = { internal: true } as const;

export class Subscription {
  readonly channel: string;
  state: SubState = 'subscribing';
  /** The position of the last publication delivered (or of the stream's
   *  top when subscribed), undefined before the first subscribe. */
  offset?: number;
  epoch?: string;

  private _c: Owner;
  private _h: SubscriptionHandlers;
  private _o: SubscribeOptions;
  private _token?: string;
  private _busy = false;          // a subscribe is being prepared or in flight
  private _gen = 0;               // bumped when a connection is lost or it ends:
                                  // work begun before (getToken) is dropped
  private _once = false;          // subscribed at least once
  private _attempt = 0;
  private _timer?: ReturnType<typeof setTimeout>;
  private _readyWaiters: Array<[() => void, (e: Error) => void]> = [];

  constructor(client: Owner, channel: string, handlers: SubscriptionHandlers, options: SubscribeOptions) {
    this._c = client;
    this.channel = channel;
    this._h = handlers;
    this._o = options;
    this._token = options.token;
  }

  publish(data: unknown, opts?: PublishOptions): Promise<PublishResult> {
    return this._c.publish(this.channel, data, opts);
  }

  history(opts?: HistoryOptions): Promise<HistoryResult> {
    return this._c.history(this.channel, opts);
  }

  presence(opts?: CallOptions): Promise<PresenceResult> {
    return this._c.presence(this.channel, opts);
  }

  /** Resolves once subscribed (again, after a reconnect). */
  ready(opts: CallOptions = {}): Promise<void> {
    if (this.state === 'subscribed') return Promise.resolve();
    if (this.state === 'unsubscribed') return Promise.reject(new HeraldError('closed', 'unsubscribed'));
    return this._c._wait(this._readyWaiters, opts);
  }

  /** Ends the subscription (also on the server when connected). */
  unsubscribe(): void {
    if (this.state === 'unsubscribed') return;
    if (this._c.state === 'connected') {
      this._c._call({ op: 'unsubscribe', channel: this.channel }, INTERNAL).catch(() => {});
    }
    this._end('unsubscribe', 'unsubscribe called');
  }

  /* ---- driven by the client ---- */

  /** (Re)subscribes on the current connection: from the last position seen
   *  (or `since` the first time), with a fresh channel token if needed. */
  async _subscribe(): Promise<void> {
    if (this.state === 'unsubscribed' || this._busy) return;
    this._busy = true;
    clearTimeout(this._timer);
    const gen = this._gen;
    const o = this._o;
    if (o.getToken && tokenStale(this._token)) {
      let token: string | undefined;
      let err: Error | undefined;
      try {
        token = await o.getToken(this.channel);
      } catch (e) {
        err = e as Error;
      }
      if (gen !== this._gen) return; // the connection it was for is gone
      this._busy = false;
      if (err) return this._fault(err, true);
      this._token = token;
      if (this._c.state !== 'connected') return;
      this._busy = true;
    }
    const since: StreamPosition | undefined = this.epoch !== undefined
      ? (o.recover !== false ? { offset: this.offset!, epoch: this.epoch } : undefined)
      : o.since && { offset: o.since.offset, epoch: o.since.epoch };
    const cmd: { [k: string]: unknown } = { op: 'subscribe', channel: this.channel };
    if (this._token) cmd.token = this._token;
    if (since) cmd.since = since;
    this._c._call(cmd, INTERNAL).then((ok) => gen === this._gen && this._subscribed(ok, since),
      (e: HeraldError) => gen === this._gen && this._refused(e));
  }

  private _subscribed(ok: any, since?: StreamPosition): void {
    this._busy = false;
    if (this.state === 'unsubscribed') return;
    this._attempt = 0;
    const recovered: Publication[] = [];
    if (since && ok.recovered) {
      this.state = 'subscribed';
      // From the position asked for: a publication at or below it (the
      // application's own `since` too) is not delivered again.
      this.epoch = since.epoch;
      this.offset = since.offset;
      for (const raw of ok.publications || []) {
        const pub = toPublication(raw);
        if (this._pub(pub)) recovered.push(pub);
        if (this.state !== 'subscribed') return; // a handler unsubscribed
      }
    } else if (since && ok.recovered === false) {
      guard(this._h.gap, { channel: this.channel, epoch: ok.epoch, offset: ok.offset, since }, this._c._failed);
      if ((this.state as SubState) === 'unsubscribed') return;
    }
    this.epoch = ok.epoch;
    this.offset = ok.offset;
    this.state = 'subscribed';
    const ctx = { channel: this.channel, epoch: ok.epoch, offset: ok.offset, resubscribed: this._once,
      publications: recovered, ...(since ? { recovered: !!ok.recovered } : {}) };
    this._once = true;
    this._scheduleRefresh();
    for (const [res] of [...this._readyWaiters]) res();
    guard(this._h.subscribed, ctx, this._c._failed);
  }

  private _refused(e: HeraldError): void {
    this._busy = false;
    if (this.state === 'unsubscribed' || e.code === 'disconnected' || e.code === 'closed') return;
    if (e.code === 105) {
      // The server still has us from a subscribe whose reply timed out:
      // start over so that recovery runs from our own position.
      this._c._call({ op: 'unsubscribe', channel: this.channel }, INTERNAL)
        .then(() => this._subscribe(), () => {});
      return;
    }
    if (e.code === 109 && this._o.getToken) this._token = undefined;
    const temporary = e.code === 'timeout' || TEMPORARY_ERRORS.includes(e.code as number) ||
      (e.code === 109 && !!this._o.getToken);
    this._fault(e, temporary);
  }

  /** Reports an error; a temporary one is retried with backoff, anything
   *  else ends the subscription. */
  private _fault(e: Error, temporary: boolean): void {
    if (this.state === 'unsubscribed') return;
    guard(this._h.error, e, this._c._failed);
    if ((this.state as SubState) === 'unsubscribed') return;
    if (!temporary) {
      const code = e instanceof HeraldError ? e.code : 'error';
      this._end(code, e.message);
      return;
    }
    // Retried on this connection; a new one resubscribes anyway.
    if (this._c.state !== 'connected') return;
    this._timer = setTimeout(() => this._c.state === 'connected' && this._subscribe(),
      backoff(this._attempt++, 500, 20000));
  }

  /** A publication of this channel: delivered unless already seen. */
  _pub(pub: Publication): boolean {
    if (this.state !== 'subscribed') return false;
    if (pub.epoch === this.epoch && this.offset !== undefined && pub.offset <= this.offset) return false;
    this.offset = pub.offset;
    this.epoch = pub.epoch;
    guard(this._h.publication, pub, this._c._failed);
    this._c._delivered(pub);
    return true;
  }

  _presence(kind: 'join' | 'leave', info: ClientInfo): void {
    guard(this._h[kind], info, this._c._failed);
  }

  /** The server ended the subscription (push `unsubscribe`): an expired
   *  channel token is renewed when getToken can, resubscribing from the
   *  last position; anything else ends it. */
  _serverUnsubscribe(code: number, reason: string): void {
    if (code === 109 && this._o.getToken && this.state !== 'unsubscribed') {
      this._token = undefined;
      this.state = 'subscribing';
      clearTimeout(this._timer);
      this._subscribe();
      return;
    }
    this._end(code, reason);
  }

  /** The connection dropped: wait for the next one. */
  _lost(): void {
    clearTimeout(this._timer);
    this._gen++;
    this._busy = false;
    if (this.state === 'subscribed') this.state = 'subscribing';
  }

  private _scheduleRefresh(): void {
    clearTimeout(this._timer);
    const exp = tokenExp(this._token);
    if (!exp || !this._o.getToken) return;
    this._timer = setTimeout(() => this._refresh(exp), refreshDelay(exp, this._c._refreshBefore));
  }

  private async _refresh(exp: number): Promise<void> {
    const gen = this._gen;
    try {
      const token = await this._o.getToken!(this.channel);
      if (gen !== this._gen) return;
      await this._c._call({ op: 'sub_refresh', channel: this.channel, token }, INTERNAL);
      if (gen !== this._gen) return;
      this._token = token;
      this._scheduleRefresh();
    } catch (e) {
      if (gen !== this._gen) return;
      guard(this._h.error, e as Error, this._c._failed);
      // Retry while the old token lasts; once expired the server ends the
      // subscription (push 109) and _serverUnsubscribe takes over.
      if (this.state === 'subscribed' && exp * 1000 > Date.now() + 2000) {
        this._timer = setTimeout(() => this._refresh(exp), Math.min(5000, (exp * 1000 - Date.now()) / 2));
      }
    }
  }

  private _end(code: number | string, reason: string): void {
    clearTimeout(this._timer);
    this._gen++;
    this._busy = false;
    this.state = 'unsubscribed';
    this._c._removeSub(this);
    for (const [, rej] of [...this._readyWaiters]) rej(new HeraldError(code, reason));
    guard(this._h.unsubscribed, { code, reason }, this._c._failed);
  }
}
