/** Small pure helpers of the client and its subscriptions (tokens,
 *  backoff, publication shape), apart so that unit tests reach them. */
import { fromBase64 } from './codec';

/** Calls an application handler so that a throw cannot break the SDK's
 *  bookkeeping (the rest of a frame, a recovery): the error goes to
 *  `report` (the client's `error` event, type 'handler'). */
export function guard<A>(fn: ((a: A) => void) | undefined, a: A, report: (e: unknown) => void): void {
  if (!fn) return;
  try {
    fn(a);
  } catch (e) {
    report(e);
  }
}
import type { Publication } from './types';

type Msg = { [k: string]: any };

/** The `exp` claim of a JWT, in unix seconds, or 0 (none or unreadable).
 *  The SDK never verifies tokens; it only reads when to renew them. */
export function tokenExp(token: string | undefined): number {
  try {
    const bytes = fromBase64(token!.split('.')[1]);
    // Only `exp` is read, so bytes as Latin-1 are enough for JSON.parse.
    const exp = JSON.parse(String.fromCharCode(...bytes)).exp;
    return typeof exp === 'number' ? exp : 0;
  } catch {
    return 0;
  }
}

/** True when a token is missing or expires within a second. */
export function tokenStale(token: string | undefined): boolean {
  if (!token) return true;
  const exp = tokenExp(token);
  return exp > 0 && exp * 1000 <= Date.now() + 1000;
}

/** When to renew a token that expires at `exp` (unix s): `before` seconds
 *  ahead, but no earlier than half-way through what is left. */
export function refreshDelay(exp: number, before: number, now = Date.now()): number {
  const left = exp * 1000 - now;
  return Math.max(0, left - Math.min(before * 1000, left / 2));
}

/** Full jitter: a random wait in [0, min(max, min * 2^attempt)]. */
export function backoff(attempt: number, min: number, max: number, rnd = Math.random): number {
  return rnd() * Math.min(max, min * 2 ** Math.min(attempt, 30));
}

export function toPublication(raw: Msg): Publication {
  const p: Msg = { ...raw };
  delete p.push;
  if (p.binary === true && typeof p.data === 'string') p.data = fromBase64(p.data);
  delete p.binary;
  return p as Publication;
}

