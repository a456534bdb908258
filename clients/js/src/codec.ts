/**
 * Encodings of protocol v1 (protocol/README.md): a codec turns a batch of
 * messages into one WebSocket frame and a frame back into its messages.
 * JSON is built in; MessagePack is an optional module (msgpack.ts) so that
 * applications that do not use it do not carry its code.
 */
export interface Codec {
  /** The WebSocket subprotocol this codec speaks. */
  readonly protocol: string;
  /** Encodes messages as one frame (the protocol's batching). */
  encode(msgs: object[]): string | Uint8Array;
  /** Decodes a frame into its messages, in order. Throws on a bad frame. */
  decode(frame: string | ArrayBuffer | Uint8Array): unknown[];
}

let text: TextDecoder | undefined; // made when first needed: not every
                                   // React Native engine has one

/** JSON: one message per line, a frame holds lines joined with `\n`. */
export const jsonCodec: Codec = {
  protocol: 'herald.v1.json',
  encode: (msgs) => msgs.map((m) => JSON.stringify(m)).join('\n'),
  decode(frame) {
    const s = typeof frame === 'string' ? frame
      : (text ||= new TextDecoder()).decode(frame instanceof Uint8Array ? frame : new Uint8Array(frame));
    const out: unknown[] = [];
    for (const line of s.split('\n')) {
      const l = line.endsWith('\r') ? line.slice(0, -1) : line;
      if (l) out.push(JSON.parse(l));
    }
    return out;
  },
};

/** Base64 (RFC 4648, standard or URL alphabet, padding optional) to
 *  bytes: JSON carries msgpack bin data that way, marked `binary: true`,
 *  and JWT parts are base64url. Written out because not every React
 *  Native engine has atob. */
export function fromBase64(s: string): Uint8Array {
  const A = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/';
  const clean = s.replace(/[=\s]/g, '').replace(/-/g, '+').replace(/_/g, '/');
  const out = new Uint8Array((clean.length * 3) >> 2);
  let bits = 0, acc = 0, n = 0;
  for (const ch of clean) {
    const v = A.indexOf(ch);
    if (v < 0) throw new Error('invalid base64');
    acc = (acc << 6) | v;
    bits += 6;
    if (bits >= 8) { bits -= 8; out[n++] = (acc >> bits) & 255; }
  }
  return out.subarray(0, n);
}
