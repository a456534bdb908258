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

const text = new TextDecoder();

/** JSON: one message per line, a frame holds lines joined with `\n`. */
export const jsonCodec: Codec = {
  protocol: 'herald.v1.json',
  encode: (msgs) => msgs.map((m) => JSON.stringify(m)).join('\n'),
  decode(frame) {
    const s = typeof frame === 'string' ? frame
      : text.decode(frame instanceof Uint8Array ? frame : new Uint8Array(frame));
    const out: unknown[] = [];
    for (const line of s.split('\n')) {
      const l = line.endsWith('\r') ? line.slice(0, -1) : line;
      if (l) out.push(JSON.parse(l));
    }
    return out;
  },
};

/** Base64 (RFC 4648, padded) to bytes: JSON carries msgpack bin data that
 *  way, marked `binary: true`. */
export function fromBase64(s: string): Uint8Array {
  const bin = atob(s);
  const out = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
  return out;
}
