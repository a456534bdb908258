// Harness for the Node integration tests of the JavaScript SDK: starts the
// real services the SDK talks to in production (herald from HERALD_BIN,
// redis-server, nginx with conf/nginx.conf, FerretDB from scripts/ferretdb)
// on free loopback ports, each in a temporary directory, and stops every one
// of them at the end of its test, also when the test fails or the process is
// interrupted. It mirrors tests/integration/herald_harness.py (the config
// writer, readiness through GET /healthz, stderr checked for sanitizer
// reports) so that the Python and the Node tests start herald the same way.
//
//   const env = scope(t);                     // t: a node:test context
//   const h = await env.herald({ namespace_defaults: { history_size: 100 } });
//   const c = env.client(h.url(), { encoding: 'msgpack' });
//
// Timeouts are multiplied by SCALE (3 under HERALD_SANITIZE=1), as in the
// Python harness. Waits poll a condition until a deadline (waitFor); nothing
// sleeps for a fixed time and hopes.

import { spawn, spawnSync } from 'node:child_process';
import { createHmac } from 'node:crypto';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

import WS from 'ws';

// libmongoc's shared-memory counters off for every herald started here: a
// stale /dev/shm/mongoc-<pid> left by a killed herald makes the library
// print a non-JSON warning at load (tests/integration/herald_harness.py).
process.env.MONGOC_DISABLE_SHM ??= '1';

const HERE = path.dirname(fileURLToPath(import.meta.url));
export const REPO = path.resolve(HERE, '..', '..');
export const HERALD_BIN = process.env.HERALD_BIN || path.join(REPO, 'build', 'bin', 'herald');
export const SANITIZE = !['', '0', 'OFF', 'off', 'false', undefined].includes(process.env.HERALD_SANITIZE);
export const SCALE = SANITIZE ? 3 : 1;
const NGINX = findExe('nginx', ['/usr/sbin/nginx']);
const REDIS = findExe('redis-server', ['/usr/bin/redis-server']);
const FERRET_DIR = path.join(REPO, 'scripts', 'ferretdb');
const SANITIZER_MARKERS = ['ERROR: AddressSanitizer', 'ERROR: LeakSanitizer', 'runtime error:'];
const KEEP = !!process.env.HERALD_KEEP_TMP;

/** A timeout in ms scaled for the build under test. */
export const t = (ms) => ms * SCALE;

function findExe(name, fallbacks) {
  for (const dir of (process.env.PATH || '').split(':').concat(['/usr/sbin', '/sbin'])) {
    const p = path.join(dir, name);
    try { fs.accessSync(p, fs.constants.X_OK); return p; } catch { /* next */ }
  }
  return fallbacks[0];
}

// --------------------------------------------------------------------------
// The SDK under test (built by `scripts/js.sh build`)

const DIST = path.join(REPO, 'clients', 'js', 'dist');

/** { Client, HeraldError, msgpackCodec } from clients/js/dist. */
export async function loadSdk() {
  const main = path.join(DIST, 'herald-client.js');
  if (!fs.existsSync(main)) {
    throw new Error(`${main} is missing: build the SDK first (scripts/js.sh build)`);
  }
  const sdk = await import(pathToFileURL(main).href);
  const mp = await import(pathToFileURL(path.join(DIST, 'msgpack.js')).href);
  return { ...sdk, msgpackCodec: mp.msgpackCodec };
}
// Loaded once; a missing build is reported by the first test that needs it.
let sdkError = null;
export const sdk = await loadSdk().catch((e) => { sdkError = e; return null; });
/** The SDK, or the reason it could not be loaded. */
export function requireSdk() {
  if (!sdk) throw sdkError;
  return sdk;
}

// --------------------------------------------------------------------------
// Small helpers

let chanSeq = 0;
/** A channel name unique to this process and call ("prefix" may hold "ns:"). */
export function chan(prefix = '') {
  chanSeq += 1;
  return `${prefix}c${process.pid.toString(36)}x${Date.now().toString(36)}x${chanSeq}`;
}

const handedOut = new Set();
/**
 * A free TCP port on 127.0.0.1 (bound and released: the caller binds it
 * next), never the same one twice in this process. For redis-server, nginx
 * and FerretDB, which take a port number; herald picks its own (port 0).
 */
export async function freePort() {
  for (;;) {
    const port = await new Promise((resolve, reject) => {
      const srv = net.createServer();
      srv.unref();
      srv.on('error', reject);
      srv.listen(0, '127.0.0.1', () => {
        const { port: p } = srv.address();
        srv.close(() => resolve(p));
      });
    });
    if (!handedOut.has(port)) {
      handedOut.add(port);
      return port;
    }
  }
}

const delay = (ms) => new Promise((r) => setTimeout(r, ms));

/**
 * Polls pred() (sync or async) until it returns a truthy value, which is
 * returned. `what` (a string, or a function evaluated at the timeout so the
 * message shows the state at the failure) names the condition.
 */
export async function waitFor(pred, { timeout = 5000, interval = 20, what = 'condition' } = {}) {
  const deadline = Date.now() + t(timeout);
  let lastErr;
  for (;;) {
    try {
      const v = await pred();
      if (v) return v;
    } catch (e) {
      lastErr = e;
    }
    if (Date.now() > deadline) {
      const w = typeof what === 'function' ? what() : what;
      throw new Error(`timed out after ${t(timeout)} ms waiting for ${w}` +
        (lastErr ? ` (last error: ${lastErr.message || lastErr})` : ''));
    }
    await delay(interval);
  }
}

/** Resolves with the first event `name` of `emitter` (SDK Client) matching `pred`. */
export function nextEvent(client, name, { timeout = 5000, pred = () => true } = {}) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => { off(); reject(new Error(`no '${name}' event within ${t(timeout)} ms`)); }, t(timeout));
    const off = client.on(name, (ev) => {
      if (!pred(ev)) return;
      clearTimeout(timer);
      off();
      resolve(ev);
    });
  });
}

const b64url = (buf) => Buffer.from(buf).toString('base64url');

/** An HS256 JWT (node:crypto), as herald's token_secret verifies it. */
export function makeJwt(secret, claims) {
  const head = b64url(JSON.stringify({ alg: 'HS256', typ: 'JWT' }));
  const body = b64url(JSON.stringify(claims));
  const sig = createHmac('sha256', secret).update(`${head}.${body}`).digest('base64url');
  return `${head}.${body}.${sig}`;
}

/** A libconfig rendering of a plain object (the Python harness's render_config). */
export function renderConfig(cfg) {
  const value = (v, ind) => {
    const pad = '  '.repeat(ind);
    if (typeof v === 'boolean') return v ? 'true' : 'false';
    if (typeof v === 'number') {
      if (!Number.isFinite(v)) throw new TypeError(`config: ${v} is not finite`);
      return String(v);
    }
    if (typeof v === 'string') return JSON.stringify(v);
    if (Array.isArray(v)) {
      const items = v.map((x) => value(x, ind + 1));
      if (v.length && v.every((x) => x && typeof x === 'object' && !Array.isArray(x))) {
        return `(\n${items.map((i) => `${pad}  ${i}`).join(',\n')}\n${pad})`;
      }
      return `[${items.join(', ')}]`;
    }
    if (v && typeof v === 'object') {
      const inner = Object.entries(v).map(([k, x]) => `${pad}  ${k} = ${value(x, ind + 1)};\n`).join('');
      return `{\n${inner}${pad}}`;
    }
    throw new TypeError(`cannot write ${v} to a config file`);
  };
  return Object.entries(cfg).map(([k, v]) => `${k} = ${value(v, 0)};\n`).join('');
}

/** The status of GET http://127.0.0.1:PORT/PATH (0: no answer). */
export async function httpStatus(port, p = '/healthz') {
  try {
    const r = await fetch(`http://127.0.0.1:${port}${p}`, { signal: AbortSignal.timeout(1000) });
    await r.arrayBuffer();
    return r.status;
  } catch {
    return 0;
  }
}

function tail(file, n = 40) {
  try {
    const lines = fs.readFileSync(file, 'utf8').split('\n');
    return lines.slice(-n).join('\n');
  } catch {
    return `(no ${file})`;
  }
}

/** The state letter of /proc/PID/stat (R, S, T, Z...), null when gone. */
function procState(pid) {
  try {
    return fs.readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1][0];
  } catch {
    return null;
  }
}

/** Whether pid runs (a zombie, exited but not yet reaped, does not). */
function alive(pid) {
  const st = procState(pid);
  return st !== null && st !== 'Z';
}

// --------------------------------------------------------------------------
// Every process started, so that an exit of the test process, however it
// happens, leaves none behind. Children started with spawn() are killed
// with SIGKILL synchronously in the 'exit' handler; FerretDB is not our
// child (start.sh backgrounds it) and is killed by the pid in its file.

const LIVE = new Set();
function track(pid) { LIVE.add(pid); return () => LIVE.delete(pid); }
process.on('exit', () => {
  for (const pid of LIVE) {
    try { process.kill(pid, 'SIGKILL'); } catch { /* gone */ }
  }
});
for (const sig of ['SIGINT', 'SIGTERM']) {
  process.once(sig, () => process.exit(130));
}

/** Waits for a child process's exit (resolves with its code or signal). */
function exited(child, ms) {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve(true);
  return new Promise((resolve) => {
    const timer = setTimeout(() => resolve(false), ms);
    child.once('exit', () => { clearTimeout(timer); resolve(true); });
  });
}

async function stopChild(child, sig = 'SIGTERM', ms = t(10000)) {
  if (!child || child.exitCode !== null || child.signalCode !== null) return;
  child.kill(sig);
  if (!(await exited(child, ms))) {
    child.kill('SIGKILL');
    await exited(child, ms);
  }
}

// --------------------------------------------------------------------------
// herald

export class Herald {
  /**
   * config: an object (rendered as libconfig) or a string; null: no --config.
   * opts.workers (2), opts.env (extra environment), opts.args, opts.name.
   */
  constructor(dir, config, { workers = 2, env = {}, args = [], name = 'herald' } = {}) {
    this.dir = dir;
    this.config = config;
    this.workers = workers;
    this.env = env;
    this.args = args;
    this.name = name;
    this.port = null;
    this.proc = null;
    this.starts = 0;
    this.stopping = false;
    this.stderrPath = null;
    this.died = [];
  }

  url(p = '/ws') { return `ws://127.0.0.1:${this.port}${p}`; }

  command() {
    const cmd = [];
    if (this.config !== null) {
      const cfgPath = path.join(this.dir, `${this.name}.conf`);
      fs.writeFileSync(cfgPath, typeof this.config === 'string' ? this.config : renderConfig(this.config));
      cmd.push('--config', cfgPath);
    }
    cmd.push('--listen', `127.0.0.1:${this.port}`);
    if (this.workers !== null) cmd.push('--workers', String(this.workers));
    return cmd.concat(this.args);
  }

  /**
   * Starts herald and waits for /healthz 200. Without `port` herald listens
   * on port 0 and the port is read from its "listening" log line: herald
   * binds with SO_REUSEPORT, so a port probed free and then bound could be
   * shared with another herald started at the same moment by a test running
   * side by side. `port` (a restart on the previous port) is bound as given.
   */
  async start({ port = null, timeout = 10000 } = {}) {
    try { fs.accessSync(HERALD_BIN, fs.constants.X_OK); } catch {
      throw new Error(`herald binary not found or not executable: ${HERALD_BIN} (set HERALD_BIN or build it)`);
    }
    this.port = port || 0;
    this.starts += 1;
    this.stopping = false;
    this.stderrPath = path.join(this.dir, `${this.name}-${this.starts}.stderr`);
    const fd = fs.openSync(this.stderrPath, 'a');
    const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('HERALD_')));
    if (SANITIZE) {
      env.ASAN_OPTIONS ??= 'abort_on_error=0:detect_leaks=1';
      env.UBSAN_OPTIONS ??= 'print_stacktrace=1';
    }
    Object.assign(env, this.env);
    this.proc = spawn(HERALD_BIN, this.command(), { stdio: ['ignore', fd, fd], env });
    fs.closeSync(fd);
    const untrack = track(this.proc.pid);
    const proc = this.proc;
    proc.once('exit', (code, sig) => {
      untrack();
      // A herald that ends without being stopped (a crash, an abort) fails
      // the test at its end, whatever the test itself saw.
      if (!this.stopping) this.died.push(`${this.name} (run ${this.starts}) exited by itself: ${code ?? sig}`);
    });
    try {
      await waitFor(async () => {
        if (proc.exitCode !== null || proc.signalCode !== null) throw new Error('herald exited');
        if (!this.port) this.port = this.listeningPort();
        return this.port && (await httpStatus(this.port)) === 200;
      }, { timeout, what: () => `${this.name} /healthz 200 on port ${this.port}; stderr:\n${tail(this.stderrPath)}` });
      return this;
    } catch (e) {
      this.stopping = true;
      await stopChild(proc, 'SIGKILL');
      throw new Error(`${this.name} did not start (exit ${proc.exitCode ?? proc.signalCode}): ${e.message}`);
    }
  }

  /** The port of herald's "listening" log line (JSON lines on stderr), or 0. */
  listeningPort() {
    for (const line of this.stderr().split('\n')) {
      if (!line.includes('"listening"')) continue;
      try {
        const v = JSON.parse(line);
        if (v.msg === 'listening' && v.port) return v.port;
      } catch { /* a partial line */ }
    }
    return 0;
  }

  alive() { return !!this.proc && this.proc.exitCode === null && this.proc.signalCode === null; }

  /** SIGTERM (herald drains for shutdown_timeout, then closes with 4000); SIGKILL after timeout. */
  async stop({ signal = 'SIGTERM', timeout = 10000 } = {}) {
    this.stopping = true;
    await stopChild(this.proc, signal, t(timeout));
  }

  /** SIGSTOP: the sockets stay open but nothing is answered. Resolves once
   *  the process is stopped (the signal takes effect asynchronously: a
   *  command sent right after kill() could still be answered). */
  async pause() {
    this.proc.kill('SIGSTOP');
    await waitFor(() => procState(this.proc.pid) === 'T', { what: `${this.name} stopped (SIGSTOP)` });
  }

  async resume() {
    this.proc.kill('SIGCONT');
    await waitFor(() => procState(this.proc.pid) !== 'T', { what: `${this.name} running (SIGCONT)` });
  }

  stderr() {
    try { return fs.readFileSync(this.stderrPath, 'utf8'); } catch { return ''; }
  }

  stderrTail(n = 40) { return tail(this.stderrPath, n); }

  /** Every run's stderr checked for sanitizer reports; returns the first or null. */
  sanitizerReport() {
    for (let i = 1; i <= this.starts; i++) {
      let text = '';
      try { text = fs.readFileSync(path.join(this.dir, `${this.name}-${i}.stderr`), 'utf8'); } catch { continue; }
      for (const m of SANITIZER_MARKERS) {
        const at = text.indexOf(m);
        if (at >= 0) return text.slice(Math.max(0, at - 200), at + 4000);
      }
    }
    return null;
  }
}

/**
 * Runs start() up to three times while it fails because its port was taken
 * (a port probed free can be bound by a test running side by side before
 * the server binds it); only for a first start on a fresh port (`fresh`):
 * a restart must keep its port.
 */
async function retryOnPortTaken(fresh, start) {
  for (let attempt = 1; ; attempt++) {
    try {
      return await start();
    } catch (e) {
      if (!fresh || attempt >= 3 || !/in use/i.test(e.message)) throw e;
    }
  }
}

// --------------------------------------------------------------------------
// redis-server (persisting to an append-only file, fsync always, as
// tests/integration/cluster_harness.py runs it, so a restart keeps its data)

export class Redis {
  constructor(dir) { this.dir = dir; this.port = null; this.proc = null; }

  url() { return `redis://127.0.0.1:${this.port}`; }

  async start() {
    try { fs.accessSync(REDIS, fs.constants.X_OK); } catch {
      throw new Error(`redis-server not found (${REDIS}): scripts/deps.sh test installs it`);
    }
    fs.mkdirSync(this.dir, { recursive: true });
    const fresh = !this.port;
    return retryOnPortTaken(fresh, async () => {
      this.port ??= await freePort();
      try {
        return await this.startOnce();
      } catch (e) {
        if (fresh) this.port = null;
        throw e;
      }
    });
  }

  async startOnce() {
    const log = fs.openSync(path.join(this.dir, 'redis.log'), 'a');
    this.proc = spawn(REDIS, ['--port', String(this.port), '--bind', '127.0.0.1',
      '--save', '', '--appendonly', 'yes', '--appendfsync', 'always',
      '--dir', this.dir, '--daemonize', 'no'], { stdio: ['ignore', log, log] });
    fs.closeSync(log);
    this.proc.once('exit', track(this.proc.pid));
    const proc = this.proc;
    await waitFor(async () => {
      if (proc.exitCode !== null) throw new Error(`redis-server exited with ${proc.exitCode}`);
      return this.ping();
    }, { timeout: 10000, what: () => `redis-server to answer PING; log:\n${tail(path.join(this.dir, 'redis.log'))}` })
      .catch((e) => { throw new Error(`${e.message}\n${tail(path.join(this.dir, 'redis.log'), 10)}`); });
    return this;
  }

  ping() {
    return new Promise((resolve) => {
      const s = net.connect(this.port, '127.0.0.1');
      let buf = '';
      s.setTimeout(1000, () => { s.destroy(); resolve(false); });
      s.on('error', () => resolve(false));
      s.on('connect', () => s.write('PING\r\n'));
      s.on('data', (d) => { buf += d; if (buf.includes('\r\n')) { s.destroy(); resolve(buf.startsWith('+PONG')); } });
    });
  }

  async stop() { await stopChild(this.proc); }
}

// --------------------------------------------------------------------------
// nginx with conf/nginx.conf: the lines marked `# @listen` and `# @node`
// carry the test's ports, everything else is the shipped file (the same
// substitution as tests/integration/test_nginx_proxy.py).

export function renderNginxConf(listenPort, nodePorts) {
  const text = fs.readFileSync(path.join(REPO, 'conf', 'nginx.conf'), 'utf8');
  const out = [];
  let listens = 0;
  let nodes = 0;
  for (const line of text.split(/(?<=\n)/)) {
    const mark = line.trimEnd();
    if (mark.endsWith('# @listen')) {
      const l2 = line.replace(/\blisten\s+[^\s;]+/, `listen 127.0.0.1:${listenPort}`);
      if (l2 === line) throw new Error(`conf/nginx.conf: cannot substitute the @listen line: ${line}`);
      out.push(l2);
      listens += 1;
    } else if (mark.endsWith('# @node')) {
      nodes += 1;
      if (nodes > 1) continue;
      for (const p of nodePorts) out.push(line.replace(/\bserver\s+[^\s;]+/, `server 127.0.0.1:${p}`));
    } else {
      out.push(line);
    }
  }
  if (listens !== 1) throw new Error(`conf/nginx.conf: expected one '# @listen' line, got ${listens}`);
  if (nodes < 1) throw new Error("conf/nginx.conf: no '# @node' line");
  return out.join('');
}

export class Nginx {
  constructor(dir, nodePorts) { this.dir = dir; this.nodePorts = nodePorts; this.port = null; this.proc = null; }

  url(p = '/ws') { return `ws://127.0.0.1:${this.port}${p}`; }

  async start() {
    try { fs.accessSync(NGINX, fs.constants.X_OK); } catch {
      throw new Error(`nginx not found (${NGINX}): scripts/deps.sh test installs it`);
    }
    fs.mkdirSync(this.dir, { recursive: true });
    this.port = await freePort();
    const conf = path.join(this.dir, 'nginx.conf');
    fs.writeFileSync(conf, renderNginxConf(this.port, this.nodePorts));
    const base = ['-p', `${this.dir}/`, '-e', 'error.log', '-c', conf];
    const check = spawnSync(NGINX, [...base, '-t', '-q'], { encoding: 'utf8' });
    if (check.status !== 0) throw new Error(`nginx -t failed:\n${check.stdout}${check.stderr}`);
    const log = fs.openSync(path.join(this.dir, 'stdout.log'), 'a');
    this.proc = spawn(NGINX, [...base, '-g', 'daemon off;'], { stdio: ['ignore', log, log] });
    fs.closeSync(log);
    this.proc.once('exit', track(this.proc.pid));
    const proc = this.proc;
    await waitFor(async () => {
      if (proc.exitCode !== null) throw new Error(`nginx exited with ${proc.exitCode}`);
      return (await httpStatus(this.port, '/nginx-ready-probe')) !== 0;
    }, { timeout: 10000, what: () => `nginx on port ${this.port}; error.log:\n${tail(path.join(this.dir, 'error.log'))}` });
    return this;
  }

  /** [emerg], [alert] and [crit] lines of error.log (an upstream refusing is only [error]). */
  seriousLogLines() {
    let text = '';
    try { text = fs.readFileSync(path.join(this.dir, 'error.log'), 'utf8'); } catch { return []; }
    return text.split('\n').filter((l) => /\[(emerg|alert|crit)\]/.test(l));
  }

  /** SIGTERM (fast shutdown), SIGKILL after 10 s; the workers follow their master. */
  async stop() {
    if (!this.proc || this.proc.exitCode !== null) return;
    const workers = childrenOf(this.proc.pid);
    await stopChild(this.proc);
    for (const pid of workers) {
      try { process.kill(pid, 'SIGKILL'); } catch { /* gone with the master */ }
    }
  }
}

function childrenOf(pid) {
  const out = [];
  try {
    for (const task of fs.readdirSync(`/proc/${pid}/task`)) {
      const c = fs.readFileSync(`/proc/${pid}/task/${task}/children`, 'utf8').trim();
      if (c) out.push(...c.split(/\s+/).map(Number));
    }
  } catch { /* gone */ }
  return out;
}

// --------------------------------------------------------------------------
// FerretDB (the MongoDB-protocol store of durable history), through
// scripts/ferretdb/start.sh and stop.sh

export class FerretDB {
  constructor(dir) { this.dir = dir; this.port = null; this.pid = null; }

  uri(db = '', query = 'serverSelectionTimeoutMS=1000&connectTimeoutMS=1000&socketTimeoutMS=2000') {
    return `mongodb://127.0.0.1:${this.port}/${db}${query ? `?${query}` : ''}`;
  }

  async start() {
    const bin = path.join(FERRET_DIR, 'bin', 'ferretdb');
    try { fs.accessSync(bin, fs.constants.X_OK); } catch {
      throw new Error(`FerretDB is not built: run scripts/ferretdb/setup.sh (or scripts/deps.sh test); ${bin} is missing`);
    }
    const fresh = !this.port;
    await retryOnPortTaken(fresh, async () => {
      this.port ??= await freePort();
      const r = await run(path.join(FERRET_DIR, 'start.sh'), [this.dir, String(this.port)],
        { ...process.env, FERRETDB_START_TIMEOUT_S: String(30 * SCALE) });
      if (r.code !== 0) {
        if (fresh) this.port = null;
        throw new Error(`ferretdb start.sh failed (${r.code}):\n${r.out}`);
      }
    });
    this.pid = Number(fs.readFileSync(path.join(this.dir, 'ferretdb.pid'), 'utf8'));
    this.untrack = track(this.pid);
    return this;
  }

  async stop() {
    if (this.pid === null) return;
    const r = await run(path.join(FERRET_DIR, 'stop.sh'), [this.dir], process.env);
    if (alive(this.pid)) process.kill(this.pid, 'SIGKILL');
    this.untrack();
    this.pid = null;
    if (r.code !== 0) throw new Error(`ferretdb stop.sh failed (${r.code}): ${r.out}`);
  }
}

function run(cmd, args, env) {
  return new Promise((resolve) => {
    const p = spawn(cmd, args, { env, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    p.stdout.on('data', (d) => { out += d; });
    p.stderr.on('data', (d) => { out += d; });
    p.on('exit', (code) => resolve({ code, out }));
  });
}

// --------------------------------------------------------------------------
// A WebSocket constructor for the SDK with a switch: while the gate is
// closed every new connection goes to a port where nothing listens (as if
// the network were down), so a test decides when a client may reconnect.

export function gatedWebSocket() {
  const gate = { open: true, attempts: 0 };
  class GatedWebSocket extends WS {
    constructor(url, protocols, options) {
      gate.attempts += 1;
      super(gate.open ? url : 'ws://127.0.0.1:1/ws', protocols, options);
    }
  }
  gate.WebSocket = GatedWebSocket;
  return gate;
}

// --------------------------------------------------------------------------
// A test's scope: what it starts is stopped at its end (t.after), in reverse
// order; herald's stderr is checked for sanitizer reports then.

const CLIENT_DEFAULTS = {
  WebSocket: WS,
  minReconnectDelay: 50,
  maxReconnectDelay: 400,
  timeout: 5000 * SCALE,
};

/**
 * scope(t): everything started through the returned object is stopped at the
 * end of test t. scope() without a test: the caller runs `env.close()` (e.g.
 * in a suite's after() hook).
 */
export function scope(testContext = null) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'herald-js-'));
  const cleanups = [];
  const heralds = [];
  let n = 0;
  const sub = (name) => path.join(dir, `${name}${++n}`);

  const env = {
    dir,
    async herald(config = {}, opts = {}) {
      const name = opts.name || 'herald';
      const h = new Herald(dir, config, { ...opts, name: `${name}${++n}` });
      heralds.push(h);
      cleanups.push(() => h.stop({ timeout: 5000 }));
      await h.start();
      return h;
    },
    async redis() {
      const r = new Redis(sub('redis'));
      cleanups.push(() => r.stop());
      return r.start();
    },
    async nginx(nodePorts) {
      const g = new Nginx(sub('nginx'), nodePorts);
      cleanups.push(async () => {
        await g.stop();
        const bad = g.seriousLogLines();
        if (bad.length) throw new Error(`nginx error.log:\n${bad.join('\n')}`);
      });
      return g.start();
    },
    async ferretdb() {
      const f = new FerretDB(sub('ferretdb'));
      cleanups.push(() => f.stop());
      return f.start();
    },
    /** An SDK client with short reconnect delays, disconnected at the end. */
    client(url, opts = {}) {
      const { Client, msgpackCodec } = requireSdk();
      const o = { ...CLIENT_DEFAULTS, ...opts };
      if (o.encoding === 'msgpack' && !o.codec) o.codec = msgpackCodec;
      const c = new Client(url, o);
      cleanups.push(() => c.disconnect());
      return c;
    },
    defer(fn) { cleanups.push(fn); },
  };

  env.close = async () => {
    const errors = [];
    for (const fn of cleanups.reverse()) {
      try { await fn(); } catch (e) { errors.push(e); }
    }
    for (const h of heralds) {
      for (const d of h.died) errors.push(new Error(`${d}; stderr:\n${h.stderrTail()}`));
      const rep = h.sanitizerReport();
      if (rep) errors.push(new Error(`sanitizer report in ${h.name}'s stderr:\n${rep}`));
    }
    if (!KEEP && !errors.length) fs.rmSync(dir, { recursive: true, force: true });
    if (errors.length) throw new Error(`cleanup (files kept in ${dir}): ${errors.map((e) => e.message).join('\n')}`);
  };
  if (testContext) testContext.after(env.close);
  return env;
}

/** A recorder of a subscription's events, for the `handlers` argument of subscribe(). */
export function recorder() {
  const r = {
    pubs: [], subscribed: [], gaps: [], joins: [], leaves: [], errors: [], unsubscribed: [],
    handlers: {
      publication: (p) => r.pubs.push(p),
      subscribed: (c) => r.subscribed.push(c),
      gap: (g) => r.gaps.push(g),
      join: (i) => r.joins.push(i),
      leave: (i) => r.leaves.push(i),
      error: (e) => r.errors.push(e),
      unsubscribed: (u) => r.unsubscribed.push(u),
    },
    offsets: () => r.pubs.map((p) => p.offset),
    datas: () => r.pubs.map((p) => p.data),
    /** Waits until `n` publications have arrived. */
    waitPubs: (n, timeout = 5000) => waitFor(() => r.pubs.length >= n,
      { timeout, what: () => `${n} publications (have ${r.pubs.length}: offsets ${r.offsets().join(',')})` }),
  };
  return r;
}
