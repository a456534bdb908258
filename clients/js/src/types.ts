/** Types of the SDK's public API (the reference is README.md). */
import type { Codec } from './codec';

export type State = 'disconnected' | 'connecting' | 'connected';
export type SubState = 'subscribing' | 'subscribed' | 'unsubscribed';

/** A position in a channel's stream. */
export interface StreamPosition { offset: number; epoch: string }

/** Who published or joined: `user` is absent for anonymous clients;
 *  `conn_info` is the `info` claim of the client's token. */
export interface ClientInfo { client: string; user?: string; conn_info?: unknown }

export interface Publication {
  channel: string;
  offset: number;
  epoch: string;
  /** The published value; a Uint8Array when it was binary (msgpack bin). */
  data: unknown;
  info?: ClientInfo;
  /** Server time of the publication, ms since the epoch. */
  time?: number;
}

export interface CallOptions {
  /** ms; the client's `timeout` option by default. */
  timeout?: number;
  signal?: AbortSignal;
}

export interface PublishOptions extends CallOptions {
  /** 1..64 printable ASCII characters: a repeat within the server's window
   *  publishes nothing and answers `duplicate: true`. With a key, a publish
   *  in flight when the connection drops is sent again after reconnecting. */
  idempotencyKey?: string;
}

export interface HistoryOptions extends CallOptions {
  limit?: number;
  since?: StreamPosition;
  reverse?: boolean;
}

export interface PublishResult { offset: number; epoch: string; duplicate?: boolean }
export interface HistoryResult { publications: Publication[]; epoch: string; offset: number }
export interface PresenceResult { clients: { [client: string]: { user?: string; conn_info?: unknown } } }

/** WebSocket constructors: the browser's, Node 22's global, or the `ws`
 *  package's; React Native's global. */
export interface WebSocketLike {
  binaryType: string;
  readyState: number;
  protocol: string;
  send(data: string | ArrayBufferLike | Uint8Array): void;
  close(code?: number, reason?: string): void;
  onopen: ((ev: any) => void) | null;
  onclose: ((ev: any) => void) | null;
  onerror: ((ev: any) => void) | null;
  onmessage: ((ev: any) => void) | null;
}
export type WebSocketCtor = new (url: string, protocols?: string | string[]) => WebSocketLike;

export interface ClientOptions {
  /** Connection token (JWT). */
  token?: string;
  /** Called for a token on every connect when none is held (or the one
   *  held is expired or was refused), and before the token expires. */
  getToken?: () => Promise<string>;
  /** 'json' (default) or 'msgpack' (then `codec` is required). */
  encoding?: 'json' | 'msgpack';
  codec?: Codec;
  WebSocket?: WebSocketCtor;
  /** Sent in `connect`. */
  name?: string;
  version?: string;
  /** Default per-command timeout, ms (10,000). */
  timeout?: number;
  /** Reconnect backoff bounds, ms (500 and 20,000): the n-th attempt waits
   *  a random time in [0, min(max, min * 2^n)] (full jitter). */
  minReconnectDelay?: number;
  maxReconnectDelay?: number;
  /** ms to wait for the answer to a heartbeat ping (10,000). */
  pingTimeout?: number;
  /** s before a token's expiry to refresh it (30; at most half its life). */
  refreshBefore?: number;
  /** Listen to the browser's online/offline and visibility events (true
   *  where they exist). */
  browserEvents?: boolean;
}

export interface SubscribedContext {
  channel: string;
  epoch: string;
  offset: number;
  /** Present when the subscribe asked to recover (`since`). */
  recovered?: boolean;
  /** True after a reconnect (or token renewal), false the first time. */
  resubscribed: boolean;
  /** The recovered publications (already given to `publication`). */
  publications: Publication[];
}

export interface GapContext { channel: string; epoch: string; offset: number; since: StreamPosition }

export interface SubscriptionHandlers {
  publication?: (pub: Publication) => void;
  join?: (info: ClientInfo) => void;
  leave?: (info: ClientInfo) => void;
  subscribed?: (ctx: SubscribedContext) => void;
  /** The publications after `since` could not be recovered: the
   *  subscription continues from the stream's current top. */
  gap?: (ctx: GapContext) => void;
  unsubscribed?: (ev: { code: number | string; reason: string }) => void;
  error?: (err: Error) => void;
}

export interface SubscribeOptions {
  /** Start from this position (the publications after it are recovered). */
  since?: StreamPosition;
  /** Channel token (JWT), or getToken for it (also used before it expires). */
  token?: string;
  getToken?: (channel: string) => Promise<string>;
  /** Resubscribe with `since` after a reconnect (true). */
  recover?: boolean;
}

export interface ClientEvents {
  state: { state: State; previous: State };
  connecting: { code: number; reason: string };
  connected: { client: string; node: string; expires?: number };
  /** The connection token was renewed (`expires` absent: no expiry now). */
  refreshed: { expires?: number };
  disconnected: { code: number; reason: string; reconnect: boolean };
  error: { type: string; error: Error };
  publication: Publication;
  join: { channel: string; info: ClientInfo };
  leave: { channel: string; info: ClientInfo };
}
