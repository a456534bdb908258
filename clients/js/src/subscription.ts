/**
 * A subscription to one channel. It remembers the last position it
 * delivered (epoch + offset), resubscribes from there after every
 * reconnect, delivers what the server recovered exactly once and in order
 * (de-duplicated by offset), and says so honestly: `subscribed` carries
 * `recovered`, and a position the server could not recover fires `gap`.
 * It also keeps its channel token fresh (getToken) when it has one.
 */
import { HeraldError, TEMPORARY_ERRORS } from './errors';
import { backoff, refreshDelay, tokenExp, tokenStale, toPublication } from './util';
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
  emit?: unknown;
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
    const o = this._o;
    if (o.getToken && tokenStale(this._token)) {
      try {
        this._token = await o.getToken(this.channel);
      } catch (e) {
        this._busy = false;
        this._fault(e as Error, true);
        return;
      }
      if (this._c.state !== 'connected' || (this.state as SubState) === 'unsubscribed') {
        this._busy = false;
        return;
      }
    }
    const since: StreamPosition | undefined = this.epoch !== undefined
      ? (o.recover !== false ? { offset: this.offset!, epoch: this.epoch } : undefined)
      : o.since && { offset: o.since.offset, epoch: o.since.epoch };
    const cmd: { [k: string]: unknown } = { op: 'subscribe', channel: this.channel };
    if (this._token) cmd.token = this._token;
    if (since) cmd.since = since;
    this._c._call(cmd, INTERNAL).then((ok) => this._subscribed(ok, since),
      (e: HeraldError) => this._refused(e));
  }

  private _subscribed(ok: any, since?: StreamPosition): void {
    this._busy = false;
    if (this.state === 'unsubscribed') return;
    this._attempt = 0;
    const recovered: Publication[] = [];
    if (since && ok.recovered) {
      this.state = 'subscribed';
      for (const raw of ok.publications || []) {
        const pub = toPublication(raw);
        if (this._pub(pub)) recovered.push(pub);
      }
    } else if (since && ok.recovered === false) {
      this._h.gap?.({ channel: this.channel, epoch: ok.epoch, offset: ok.offset, since });
    }
    this.epoch = ok.epoch;
    this.offset = ok.offset;
    this.state = 'subscribed';
    const ctx = { channel: this.channel, epoch: ok.epoch, offset: ok.offset, resubscribed: this._once,
      publications: recovered, ...(since ? { recovered: !!ok.recovered } : {}) };
    this._once = true;
    this._h.subscribed?.(ctx);
    for (const [res] of [...this._readyWaiters]) res();
    this._scheduleRefresh();
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
    this._h.error?.(e);
    if (!temporary) {
      const code = e instanceof HeraldError ? e.code : 'error';
      this._end(code, e.message);
      return;
    }
    this._timer = setTimeout(() => this._c.state === 'connected' && this._subscribe(),
      backoff(this._attempt++, 500, 20000));
  }

  /** A publication of this channel: delivered unless already seen. */
  _pub(pub: Publication): boolean {
    if (this.state !== 'subscribed') return false;
    if (pub.epoch === this.epoch && this.offset !== undefined && pub.offset <= this.offset) return false;
    this.offset = pub.offset;
    this.epoch = pub.epoch;
    this._h.publication?.(pub);
    this._c._delivered(pub);
    return true;
  }

  _presence(kind: 'join' | 'leave', info: ClientInfo): void {
    this._h[kind]?.(info);
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
    this._busy = false;
    if (this.state === 'subscribed') this.state = 'subscribing';
  }

  private _scheduleRefresh(): void {
    clearTimeout(this._timer);
    const exp = tokenExp(this._token);
    if (!exp || !this._o.getToken) return;
    this._timer = setTimeout(() => this._refresh(exp), refreshDelay(exp, 30));
  }

  private async _refresh(exp: number): Promise<void> {
    try {
      const token = await this._o.getToken!(this.channel);
      await this._c._call({ op: 'sub_refresh', channel: this.channel, token }, INTERNAL);
      this._token = token;
      this._scheduleRefresh();
    } catch (e) {
      this._h.error?.(e as Error);
      // Retry while the old token lasts; once expired the server ends the
      // subscription (push 109) and _serverUnsubscribe takes over.
      if (this.state === 'subscribed' && exp * 1000 > Date.now() + 2000) {
        this._timer = setTimeout(() => this._refresh(exp), Math.min(5000, (exp * 1000 - Date.now()) / 2));
      }
    }
  }

  private _end(code: number | string, reason: string): void {
    clearTimeout(this._timer);
    this.state = 'unsubscribed';
    this._c._removeSub(this);
    for (const [, rej] of [...this._readyWaiters]) rej(new HeraldError(code, reason));
    this._h.unsubscribed?.({ code, reason });
  }
}
