// The browser tests' harness: the real herald on free loopback ports
// serving the demo (clients/js/dist/www), FerretDB for durable history, a
// token endpoint, headless Chromium from Debian's package (never a
// downloaded browser) and SDK clients in Node. Everything started here is
// registered for cleanup and stopped by cleanup() (each test file's
// after() hook) or, as a last resort, when the process exits, so a failing
// or interrupted test leaves no server behind.
//
// Environment:
//   HERALD_BIN       herald binary (default build/bin/herald)
//   HERALD_SANITIZE  1 for a sanitizer build: timeouts x3, stderr checked
//   CHROMIUM         browser binary (default /usr/bin/chromium)
//   E2E_ARTIFACTS    screenshots and logs (default build/e2e-artifacts)
import { spawn, execFileSync } from 'node:child_process';
import { createHmac, randomBytes } from 'node:crypto';
import {
  accessSync, closeSync, constants, copyFileSync, existsSync, mkdirSync, mkdtempSync, openSync,
  readFileSync, rmSync, writeFileSync,
} from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

// libmongoc's shared-memory counters off for every herald started here: a
// stale /dev/shm/mongoc-<pid> left by a killed herald makes the library
// print a non-JSON warning at load (tests/integration/herald_harness.py).
process.env.MONGOC_DISABLE_SHM ??= '1';

export const HERE = path.dirname(fileURLToPath(import.meta.url));
export const REPO = path.resolve(HERE, '..', '..');
export const HERALD_BIN = process.env.HERALD_BIN || path.join(REPO, 'build', 'bin', 'herald');
export const SANITIZE = !['', '0', 'off', 'OFF', 'false'].includes(process.env.HERALD_SANITIZE || '0');
export const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
export const WWW = path.join(REPO, 'clients', 'js', 'dist', 'www');
export const SDK = path.join(REPO, 'clients', 'js', 'dist', 'herald-client.js');
export const ARTIFACTS = path.resolve(process.env.E2E_ARTIFACTS || path.join(REPO, 'build', 'e2e-artifacts'));
const FERRET = path.join(REPO, 'scripts', 'ferretdb');

/** A timeout (ms) scaled for the build under test. */
export const t = (ms) => Math.round(ms * (SANITIZE ? 3 : 1));

// ---------------------------------------------------------------------------
// Cleanup: a stack of async functions, run newest first.

const cleanups = [];
const children = new Set(); // child processes to SIGKILL at exit
const ferrets = new Set();  // FerretDB data dirs to stop.sh at exit

export function onCleanup(fn) { cleanups.push(fn); }

export async function cleanup() {
  const errors = [];
  while (cleanups.length) {
    const fn = cleanups.pop();
    try { await fn(); } catch (e) { errors.push(e); }
  }
  if (errors.length) throw errors[0];
}

// The last resort: synchronous, for an exit without after() hooks.
process.on('exit', () => {
  for (const c of children) { try { c.kill('SIGKILL'); } catch { /* gone */ } }
  for (const dir of ferrets) {
    try { execFileSync(path.join(FERRET, 'stop.sh'), [dir], { stdio: 'ignore', timeout: 15000 }); } catch { /* best effort */ }
  }
});
for (const sig of ['SIGINT', 'SIGTERM']) {
  process.once(sig, () => process.exit(130));
}

export function artifactPath(name) {
  mkdirSync(ARTIFACTS, { recursive: true });
  return path.join(ARTIFACTS, name);
}

export function tmpDir(prefix) {
  const d = mkdtempSync(path.join(os.tmpdir(), `herald-e2e-${prefix}-`));
  onCleanup(() => rmSync(d, { recursive: true, force: true }));
  return d;
}

// ---------------------------------------------------------------------------
// Waiting

/** Polls pred() (sync or async) until it returns a truthy value. `what` may
 * be a function: called at the timeout, so the message shows the state then. */
export async function waitFor(pred, { timeout = t(10000), interval = 25, what = 'condition' } = {}) {
  const deadline = Date.now() + timeout;
  let lastErr;
  for (;;) {
    try {
      const v = await pred();
      if (v) return v;
    } catch (e) { lastErr = e; }
    if (Date.now() > deadline) {
      const desc = typeof what === 'function' ? await what() : what;
      throw new Error(`timed out after ${timeout} ms waiting for ${desc}` +
        (lastErr ? ` (last error: ${lastErr.message})` : ''));
    }
    await new Promise((r) => setTimeout(r, interval));
  }
}

export function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.unref();
    s.on('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

export function httpGet(port, p, { timeout = t(2000) } = {}) {
  return new Promise((resolve, reject) => {
    const req = http.get({ host: '127.0.0.1', port, path: p, timeout }, (res) => {
      const chunks = [];
      res.on('data', (c) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode, headers: res.headers, body: Buffer.concat(chunks).toString() }));
    });
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.on('error', reject);
  });
}

// ---------------------------------------------------------------------------
// libconfig

function cfgValue(v, indent) {
  const pad = '  '.repeat(indent);
  if (typeof v === 'boolean') return v ? 'true' : 'false';
  if (typeof v === 'number') return String(v);
  if (typeof v === 'string') return JSON.stringify(v);
  if (Array.isArray(v)) {
    const items = v.map((x) => cfgValue(x, indent + 1));
    if (v.every((x) => x && typeof x === 'object' && !Array.isArray(x))) {
      return '(\n' + items.map((i) => pad + '  ' + i).join(',\n') + '\n' + pad + ')';
    }
    return '[' + items.join(', ') + ']';
  }
  if (v && typeof v === 'object') {
    return '{\n' + Object.entries(v).map(([k, x]) => `${pad}  ${k} = ${cfgValue(x, indent + 1)};\n`).join('') + pad + '}';
  }
  throw new TypeError(`cannot write ${v} to a config file`);
}

export function renderConfig(cfg) {
  return Object.entries(cfg).map(([k, v]) => `${k} = ${cfgValue(v, 0)};\n`).join('');
}

// ---------------------------------------------------------------------------
// herald

const SANITIZER_MARKERS = ['ERROR: AddressSanitizer', 'ERROR: LeakSanitizer', 'runtime error:'];

/** One herald process. `config` is an object rendered as libconfig; the
 * demo site (static_dir) and a fast shutdown are added. start() picks a
 * free port unless given one (a restart keeps the port). */
export class Herald {
  constructor(config = {}, { name = 'herald', workers = 1 } = {}) {
    this.name = name;
    this.dir = tmpDir(name);
    this.config = { static_dir: WWW, shutdown_timeout: 0, log_level: 'info', ...config };
    if (this.config.mongodb && !this.config.mongodb_spill_path) {
      this.config.mongodb_spill_path = path.join(this.dir, 'herald.spill');
    }
    this.workers = workers;
    this.port = null;
    this.proc = null;
    this.starts = 0;
    this.stderrPath = artifactPath(`${name}.herald.log`);
    writeFileSync(this.stderrPath, '');
    this.configPath = path.join(this.dir, 'herald.conf');
    writeFileSync(this.configPath, renderConfig(this.config));
    onCleanup(() => this.stop());
  }

  get http() { return `http://127.0.0.1:${this.port}`; }
  get ws() { return `ws://127.0.0.1:${this.port}/ws`; }

  async start({ port } = {}) {
    try { accessSync(HERALD_BIN, constants.X_OK); } catch {
      throw new Error(`herald binary not found: ${HERALD_BIN} (build it, or set HERALD_BIN)`);
    }
    const attempts = port ? 1 : 3;
    for (let attempt = 1; ; attempt++) {
      this.port = port || await freePort();
      const from = readFileSync(this.stderrPath).length;
      try {
        await this._spawn(from);
        this.starts++;
        return this;
      } catch (e) {
        const err = readFileSync(this.stderrPath, 'utf8').slice(from);
        if (attempt < attempts && /in use/i.test(err)) continue; // the port was taken meanwhile
        throw e;
      }
    }
  }

  async _spawn(from) {
    const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('HERALD_')));
    if (SANITIZE) {
      env.ASAN_OPTIONS ??= 'abort_on_error=0:detect_leaks=1';
      env.UBSAN_OPTIONS ??= 'print_stacktrace=1';
    }
    const fd = openSync(this.stderrPath, 'a');
    const proc = spawn(HERALD_BIN, ['--config', this.configPath, '--listen', `127.0.0.1:${this.port}`,
      '--workers', String(this.workers)], { stdio: ['ignore', fd, fd], env });
    closeSync(fd);
    this.proc = proc;
    children.add(proc);
    proc.exited = new Promise((resolve) => proc.on('exit', (code, signal) => {
      children.delete(proc);
      proc.status = { code, signal };
      resolve(proc.status);
    }));
    await waitFor(async () => {
      if (proc.status) throw new Error('exited');
      const r = await httpGet(this.port, '/healthz');
      return r.status === 200;
    }, {
      timeout: t(10000),
      what: () => `herald on port ${this.port} to answer /healthz (${proc.status ? 'it exited: ' +
        JSON.stringify(proc.status) : 'still running'}):\n${readFileSync(this.stderrPath, 'utf8').slice(from).slice(-2000)}`,
    });
  }

  /** SIGTERM, SIGKILL after a timeout; checks stderr for sanitizer reports. */
  async stop({ timeout = t(10000) } = {}) {
    const proc = this.proc;
    if (!proc) return;
    this.proc = null;
    if (!proc.status) {
      proc.kill('SIGTERM');
      const timer = setTimeout(() => proc.kill('SIGKILL'), timeout);
      await proc.exited;
      clearTimeout(timer);
    }
    const err = readFileSync(this.stderrPath, 'utf8');
    const bad = SANITIZER_MARKERS.find((m) => err.includes(m));
    if (bad) throw new Error(`herald ${this.name}: "${bad}" in ${this.stderrPath}`);
  }

  async restart() {
    await this.stop();
    return this.start({ port: this.port });
  }
}

// ---------------------------------------------------------------------------
// FerretDB (scripts/ferretdb), the MongoDB-protocol store of durable history

export class FerretDB {
  constructor({ name = 'ferretdb' } = {}) {
    this.name = name;
    this.dir = tmpDir('ferretdb');
    this.port = null;
  }

  async start() {
    const bin = path.join(FERRET, 'bin', 'ferretdb');
    if (!existsSync(bin)) {
      throw new Error(`FerretDB is not built: ${bin} is missing (scripts/ferretdb/setup.sh, or scripts/deps.sh test)`);
    }
    this.port = await freePort();
    ferrets.add(this.dir);
    onCleanup(() => this.stop());
    await run(path.join(FERRET, 'start.sh'), [this.dir, String(this.port)],
      { env: { ...process.env, FERRETDB_START_TIMEOUT_S: String(Math.round(t(30000) / 1000)) } });
    return this;
  }

  async stop() {
    if (!ferrets.has(this.dir)) return;
    ferrets.delete(this.dir);
    await run(path.join(FERRET, 'stop.sh'), [this.dir]);
    const log = path.join(this.dir, 'ferretdb.log');
    if (existsSync(log)) copyFileSync(log, artifactPath(`${this.name}.ferretdb.log`));
  }

  uri(db = '') { return `mongodb://127.0.0.1:${this.port}/${db}?serverSelectionTimeoutMS=1000`; }
}

function run(cmd, args, opts = {}) {
  return new Promise((resolve, reject) => {
    const p = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'], ...opts });
    let out = '';
    p.stdout.on('data', (c) => { out += c; });
    p.stderr.on('data', (c) => { out += c; });
    p.on('error', reject);
    p.on('exit', (code) => (code === 0 ? resolve(out) : reject(new Error(`${cmd} ${args.join(' ')}: exit ${code}\n${out}`))));
  });
}

// ---------------------------------------------------------------------------
// Tokens: HS256 JWTs, and an endpoint the pages fetch them from

const b64url = (b) => Buffer.from(b).toString('base64url');

export function makeJwt(secret, claims) {
  const input = b64url(JSON.stringify({ alg: 'HS256', typ: 'JWT' })) + '.' + b64url(JSON.stringify(claims));
  return input + '.' + createHmac('sha256', secret).update(input).digest('base64url');
}

export const newSecret = () => randomBytes(24).toString('hex');

/** GET /token?name=NAME -> {"token": ...} for user NAME, expiring `ttl`
 * seconds from now, with CORS for the demo's origin (another port). Keeps
 * every token it issued (with its exp) in `issued`. */
export class TokenServer {
  constructor(secret, { ttl = 4 } = {}) {
    this.secret = secret;
    this.ttl = ttl;
    this.issued = [];
    this.server = http.createServer((req, res) => this._handle(req, res));
  }

  async start() {
    await new Promise((resolve) => this.server.listen(0, '127.0.0.1', resolve));
    this.port = this.server.address().port;
    onCleanup(() => new Promise((resolve) => { this.server.closeAllConnections(); this.server.close(() => resolve()); }));
    return this;
  }

  get url() { return `http://127.0.0.1:${this.port}/token`; }

  _handle(req, res) {
    const u = new URL(req.url, 'http://x');
    const cors = { 'Access-Control-Allow-Origin': '*', 'Cache-Control': 'no-store' };
    if (u.pathname !== '/token' || req.method !== 'GET') {
      res.writeHead(404, cors).end();
      return;
    }
    const name = (u.searchParams.get('name') || 'anonymous').slice(0, 64);
    const exp = Math.floor(Date.now() / 1000) + this.ttl;
    const token = makeJwt(this.secret, { sub: name, exp, info: { name } });
    this.issued.push({ name, exp, time: Date.now() });
    res.writeHead(200, { ...cors, 'Content-Type': 'application/json' }).end(JSON.stringify({ token }));
  }
}

// ---------------------------------------------------------------------------
// SDK clients in Node (the `ws` package: Node 20 has no global WebSocket)

export async function nodeClient(url, options = {}) {
  if (!existsSync(SDK)) throw new Error(`${SDK} is missing: run scripts/js.sh build first`);
  const { Client } = await import(pathToFileURL(SDK).href);
  const { default: WebSocket } = await import('ws');
  const client = new Client(url, { WebSocket, minReconnectDelay: 100, maxReconnectDelay: 1000, ...options });
  onCleanup(() => client.disconnect());
  client.connect();
  return client;
}

// ---------------------------------------------------------------------------
// Chromium

export async function launchBrowser() {
  const { chromium } = await import('playwright-core');
  try { accessSync(CHROMIUM, constants.X_OK); } catch {
    throw new Error(`${CHROMIUM} not found: install Debian's chromium (scripts/deps.sh test)`);
  }
  const browser = await chromium.launch({ executablePath: CHROMIUM, headless: true });
  onCleanup(() => browser.close());
  return browser;
}

/** A new page in `context` on herald's demo page `file` with URL
 * parameters `params` (opened from the index page's link `via` if given); returns once the page's client is connected and its
 * subscription is live. The page's console goes to the artefacts log. */
export async function openDemo(context, herald, file, params = {}, { label = file, via } = {}) {
  const page = await context.newPage();
  const lines = [];
  page.on('console', (m) => lines.push(`[${label}] ${m.type()}: ${m.text()}`));
  page.on('pageerror', (e) => lines.push(`[${label}] pageerror: ${e.message}`));
  page.consoleLines = lines;
  page.label = label;
  const qs = new URLSearchParams({ min_delay: '100', max_delay: '1000', ...params });
  if (via) {
    // Through the demo's index page (served at /) and its link.
    await page.goto(`${herald.http}/?${qs}`);
    await page.getByTestId(via).click();
    await page.waitForURL(`${herald.http}/${file}?${qs}`, { timeout: t(10000) });
  } else {
    await page.goto(`${herald.http}/${file}?${qs}`);
  }
  await waitPage(page, () => window.heraldDemo && window.heraldDemo.state === 'connected' &&
    window.heraldDemo.subState === 'subscribed', null, { what: `${label} to connect and subscribe` });
  return page;
}

/** page.waitForFunction with a message that shows the page's state. */
export async function waitPage(page, fn, arg, { timeout = t(15000), what = 'condition' } = {}) {
  try {
    await page.waitForFunction(fn, arg, { timeout, polling: 50 });
  } catch (e) {
    const s = await summary(page).catch((x) => `(no summary: ${x.message})`);
    throw new Error(`${page.label || 'page'}: timed out waiting for ${what}: ${e.message.split('\n')[0]}\n` +
      `page state: ${s}\nconsole:\n${(page.consoleLines || []).slice(-20).join('\n')}`);
  }
}

/** What the page's demo saw, compact, for assertion messages. */
export function summary(page) {
  return page.evaluate(() => {
    const d = window.heraldDemo;
    if (!d) return 'no window.heraldDemo';
    return JSON.stringify({
      state: d.state, subState: d.subState, connects: d.connects, lastClose: d.lastClose,
      offsets: d.messages.map((m) => m.offset), recoveries: d.recoveries, gaps: d.gaps,
      errors: d.errors.slice(-5), tokenFetches: d.tokenFetches, log: d.log.slice(-15),
    });
  });
}

/** The page's messages, offsets, recovery log and counters. */
export function demoState(page) {
  return page.evaluate(() => {
    const d = window.heraldDemo;
    return {
      state: d.state, clientId: d.clientId, connects: d.connects, expires: d.expires,
      disconnects: d.disconnects, messages: d.messages.map((m) => ({ offset: m.offset, data: m.data, recovered: m.recovered })),
      recoveries: d.recoveries, gaps: d.gaps, tokenFetches: d.tokenFetches, duplicates: d.duplicates,
      presence: Object.keys(d.presence), errors: d.errors,
    };
  });
}

/** Screenshot and console log of a page into the artefacts directory. */
export async function keep(page, name) {
  await page.screenshot({ path: artifactPath(`${name}.png`), fullPage: true });
  writeFileSync(artifactPath(`${name}.console.log`), (page.consoleLines || []).join('\n') + '\n');
}

/** The config of the `demo` namespace as conf/demo.conf has it. */
export const DEMO_NAMESPACE = { name: 'demo', history_size: 100, history_ttl: 120, presence: true, join_leave: true };
