/**
 * herald-client: the JavaScript SDK of Herald (protocol v1) for browsers,
 * Node 20+ and React Native. See README.md for the guide and reference.
 */
export { Client } from './client';
export { Subscription } from './subscription';
export { HeraldError } from './errors';
export { jsonCodec } from './codec';
export type { Codec } from './codec';
export type * from './types';
