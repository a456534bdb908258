/**
 * The optional MessagePack codec (subprotocol herald.v1.msgpack). It needs
 * the @msgpack/msgpack package, which is why it lives in its own module:
 *
 *   import { Client } from 'herald-client';
 *   import { msgpackCodec } from 'herald-client/msgpack';
 *   new Client(url, { encoding: 'msgpack', codec: msgpackCodec });
 *
 * Publication data may be binary (Uint8Array, packed as bin). Integers
 * above 2^53 (offsets) lose precision as JavaScript numbers.
 */
import { decodeMulti, encode } from '@msgpack/msgpack';
import type { Codec } from './codec';

export const msgpackCodec: Codec = {
  protocol: 'herald.v1.msgpack',
  encode(msgs) {
    const parts = msgs.map((m) => encode(m));
    if (parts.length === 1) return parts[0];
    const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
    let at = 0;
    for (const p of parts) { out.set(p, at); at += p.length; }
    return out;
  },
  decode(frame) {
    if (typeof frame === 'string') throw new Error('text frame on a msgpack connection');
    return [...decodeMulti(frame instanceof Uint8Array ? frame : new Uint8Array(frame))];
  },
};
