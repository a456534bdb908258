/** Small pure helpers of the client and its subscriptions (tokens,
 *  backoff, publication shape), apart so that unit tests reach them. */
import { fromBase64 } from './codec';
import type { Publication } from './types';

type Msg = { [k: string]: any };

/** The `exp` claim of a JWT, in unix seconds, or 0 (none or unreadable).
 *  The SDK never verifies tokens; it only reads when to renew them. */
export function tokenExp(token: string | undefined): number {
  try {
    const p = token!.split('.')[1].replace(/-/g, '+').replace(/_/g, '/');
    const exp = JSON.parse(atob(p + '==='.slice((p.length + 3) % 4))).exp;
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

