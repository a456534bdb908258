/**
 * The one error type every command rejects with.
 *
 * `code` is the server's error code (100..112, protocol/README.md) when the
 * server answered, or a string when the SDK gave up on the command itself:
 * - `'timeout'`: no reply within the command's timeout;
 * - `'aborted'`: the command's AbortSignal fired;
 * - `'disconnected'`: the connection dropped while the command was in
 *   flight and the command is not safe to repeat (a publish without an
 *   idempotency key: it may or may not have been published);
 * - `'closed'`: `client.disconnect()` was called, or the subscription ended.
 */
export class HeraldError extends Error {
  readonly code: number | string;
  constructor(code: number | string, message: string) {
    super(message);
    this.name = 'HeraldError';
    this.code = code;
  }
}

/** Close codes after which the SDK does not reconnect on its own. */
export const CLOSE_NO_RECONNECT: readonly number[] = [1000, 4100, 4101, 4102];

/** Server error codes worth retrying a subscription after: internal error,
 *  store unavailable, rate limited. The others are final. */
export const TEMPORARY_ERRORS: readonly number[] = [100, 108, 110];
