// Shared helpers of the interop suite: build pushgate once, run it on a free
// loopback port, and talk to it as a backend does (API key, subscriber JWTs).
//
// Each *.test.mjs file runs in its own process (node --test): a file calls
// startServer() in before() and server.stop() in after(). The binary is built
// with `go build` from the repository root at most once per process; go's
// build cache makes the later builds of a run a relink check (~0.3 s).
// PUSHGATE_RACE=1 (set by `make test`) builds it with the race detector, and
// a server that reports a race fails the file at stop().

import { spawn, execFileSync } from 'node:child_process';
import { createHmac, randomBytes } from 'node:crypto';
import { mkdirSync, renameSync, createWriteStream, readFileSync } from 'node:fs';
import { get as httpsGet } from 'node:https';
import { createServer } from 'node:net';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { setTimeout as sleep } from 'node:timers/promises';

export const INTEROP_DIR = dirname(fileURLToPath(import.meta.url));
export const REPO_ROOT = dirname(INTEROP_DIR);
export const BIN_DIR = join(INTEROP_DIR, '.bin');
export const API_KEY = 'devkey';
export const JWT_SECRET = 'interop-secret-0123456789abcdef-0123456789';

/** The fields every test selects on a Message. */
export const MESSAGE_FIELDS = 'channel id event data createdAt cursor';

/** The feed subscription every WebSocket/SSE GraphQL client test uses. */
export const FEED = `subscription($ch: [String!]!, $c: String) {
  feed(channels: $ch, cursor: $c) {
    __typename
    ... on Message { ${MESSAGE_FIELDS} }
    ... on Reset { channel reason cursor }
  }
}`;

let built = null;

/** Whether servers are built with the race detector (PUSHGATE_RACE=1). */
export const RACE = process.env.PUSHGATE_RACE === '1';

/** Opens every report of the race detector. */
const RACE_MARKER = 'WARNING: DATA RACE';

/**
 * Builds cmd/pushgate into interop/.bin/pushgate (once per process; the
 * PUSHGATE_BIN environment variable names a prebuilt binary instead), with
 * -race when RACE.
 */
export function buildServer() {
  if (process.env.PUSHGATE_BIN) return process.env.PUSHGATE_BIN;
  if (built) return built;
  mkdirSync(BIN_DIR, { recursive: true });
  const bin = join(BIN_DIR, RACE ? 'pushgate-race' : 'pushgate');
  // Build beside, then rename: a concurrent run never sees half a binary.
  const tmp = `${bin}.${process.pid}.tmp`;
  const flags = RACE ? ['-race'] : [];
  execFileSync('go', ['build', ...flags, '-o', tmp, './cmd/pushgate'], { cwd: REPO_ROOT, stdio: ['ignore', 'inherit', 'inherit'] });
  renameSync(tmp, bin);
  built = bin;
  return bin;
}

/** A free loopback TCP port: the OS picks one for a listener we close at once. */
export function freePort() {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.unref();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

// Servers never outlive the test process: killed on exit and on a
// terminating signal (the test runner forwards SIGTERM/SIGINT to its
// children), and a watchdog per server kills it if this process dies
// without either (SIGKILL).
const running = new Set();
function killAll() {
  for (const child of running) child.kill('SIGKILL');
}
process.on('exit', killAll);
for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP']) {
  process.once(sig, () => {
    killAll();
    process.kill(process.pid, sig); // die of the signal, as without the handler
  });
}

function watchdog(serverPid) {
  const w = spawn('sh', ['-c',
    `while kill -0 ${process.pid} 2>/dev/null && kill -0 ${serverPid} 2>/dev/null; do sleep 1; done; kill -KILL ${serverPid} 2>/dev/null; exit 0`,
  ], { stdio: 'ignore', detached: true });
  w.unref();
}

/**
 * Starts pushgate (memory store) on a free loopback port and waits for
 * /healthz. extraArgs are appended to the standard flags, e.g.
 * ['--history-size', '5']. Returns a Server.
 */
export async function startServer({ extraArgs = [], name = 'server', tls = false } = {}) {
  const bin = buildServer();
  let ca = null;
  if (tls) {
    const cert = selfSignedCert(name);
    extraArgs = ['--tls-cert', cert.certFile, '--tls-key', cert.keyFile, ...extraArgs];
    ca = cert.pem;
  }
  let lastErr;
  for (let attempt = 0; attempt < 3; attempt++) {
    const port = await freePort();
    try {
      return await launch(bin, port, extraArgs, name, ca);
    } catch (err) {
      lastErr = err; // most likely the port was taken between close and listen
    }
  }
  throw lastErr;
}

/**
 * A self-signed certificate for 127.0.0.1 and localhost (openssl), written
 * to interop/.bin: { certFile, keyFile, pem }. Clients trust it as their CA.
 */
export function selfSignedCert(name) {
  mkdirSync(BIN_DIR, { recursive: true });
  const certFile = join(BIN_DIR, `${name}-cert.pem`);
  const keyFile = join(BIN_DIR, `${name}-key.pem`);
  execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes',
    '-keyout', keyFile, '-out', certFile, '-days', '1', '-subj', '/CN=localhost',
    '-addext', 'subjectAltName=IP:127.0.0.1,DNS:localhost'], { stdio: ['ignore', 'ignore', 'inherit'] });
  return { certFile, keyFile, pem: readFileSync(certFile, 'utf8') };
}

/** GET url's status, trusting ca (a PEM string) for https. */
function statusOf(url, ca) {
  if (!ca) return fetch(url).then((res) => res.status);
  return new Promise((resolve, reject) => {
    httpsGet(url, { ca }, (res) => {
      res.resume();
      resolve(res.statusCode);
    }).on('error', reject);
  });
}

async function launch(bin, port, extraArgs, name, ca) {
  const args = [
    '--addr', `127.0.0.1:${port}`,
    '--api-key', `dev:${API_KEY}`,
    '--jwt-secret', JWT_SECRET,
    '--allow-anonymous',
    ...extraArgs,
  ];
  mkdirSync(BIN_DIR, { recursive: true });
  const logPath = join(BIN_DIR, `${name}.log`);
  const log = createWriteStream(logPath);
  const child = spawn(bin, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  running.add(child);
  watchdog(child.pid);
  let tail = '';
  let race = null; // the first race report: from its marker, what followed it
  const keep = (chunk) => {
    log.write(chunk);
    const text = chunk.toString();
    if (race !== null) {
      race = (race + text).slice(0, 8000);
    } else {
      // The marker may straddle two chunks: look in the tail with the new text.
      const seen = tail.slice(-RACE_MARKER.length) + text;
      const i = seen.indexOf(RACE_MARKER);
      if (i >= 0) race = seen.slice(i, i + 8000);
    }
    tail = (tail + text).slice(-4000);
  };
  child.stdout.on('data', keep);
  child.stderr.on('data', keep);
  const exited = new Promise((resolve) => child.on('exit', (code, signal) => {
    running.delete(child);
    resolve({ code, signal });
  }));
  let exitInfo = null;
  exited.then((info) => { exitInfo = info; });

  const base = `${ca ? 'https' : 'http'}://127.0.0.1:${port}`;
  const deadline = Date.now() + 15_000;
  for (;;) {
    if (exitInfo) throw new Error(`pushgate exited (${JSON.stringify(exitInfo)}) before /healthz answered:\n${tail}`);
    try {
      if (await statusOf(`${base}/healthz`, ca) === 200) break;
    } catch { /* not listening yet */ }
    if (Date.now() > deadline) {
      child.kill('SIGKILL');
      throw new Error(`pushgate did not answer /healthz within 15 s:\n${tail}`);
    }
    await sleep(50);
  }
  return new Server({ base, port, child, exited, logPath, logTail: () => tail, raceReport: () => race, log, ca });
}

export class Server {
  constructor({ base, port, child, exited, logPath, logTail, raceReport, log, ca = null }) {
    this.url = base; // http://127.0.0.1:PORT, or https:// with tls
    this.port = port;
    this.ca = ca; // with tls: the self-signed certificate to trust (PEM)
    this.graphqlUrl = `${base}/graphql`;
    this.wsUrl = `${ca ? 'wss' : 'ws'}://127.0.0.1:${port}/graphql`;
    this.child = child;
    this.exited = exited;
    this.logPath = logPath;
    this.logTail = logTail;
    this.raceReport = raceReport;
    this.log = log;
  }

  /**
   * Stops the server: SIGTERM, then SIGKILL after graceMs. (net/http's
   * Shutdown waits up to 5 s for connections on which no request was ever
   * sent, and fetch's pool sometimes opens one; graceful shutdown is not
   * what this suite tests.) Throws if the server reported a data race.
   */
  async stop(graceMs = 2000) {
    if (this.child.exitCode === null && this.child.signalCode === null) {
      this.child.kill('SIGTERM');
      const timer = setTimeout(() => this.child.kill('SIGKILL'), graceMs);
      await this.exited;
      clearTimeout(timer);
    }
    this.log.end();
    const report = this.raceReport();
    if (report !== null) throw new Error(`pushgate (${this.logPath}) reported a data race:\n${report}`);
  }

  /**
   * POST /graphql with a JSON body; returns the parsed response body.
   * auth: a credential for Authorization: Bearer (default: the API key; null: none).
   */
  async gql(query, variables = {}, { auth = API_KEY, headers = {} } = {}) {
    const h = { 'Content-Type': 'application/json', Accept: 'application/graphql-response+json, application/json', ...headers };
    if (auth) h.Authorization = `Bearer ${auth}`;
    const res = await fetch(this.graphqlUrl, { method: 'POST', headers: h, body: JSON.stringify({ query, variables }) });
    const text = await res.text();
    let body;
    try {
      body = JSON.parse(text);
    } catch {
      throw new Error(`POST /graphql answered ${res.status} with non-JSON: ${text}`);
    }
    body.status = res.status;
    return body;
  }

  /** Like gql, but throws on errors and returns data. */
  async gqlData(query, variables = {}, opts = {}) {
    const body = await this.gql(query, variables, opts);
    if (body.errors || !body.data) {
      throw new Error(`GraphQL errors (HTTP ${body.status}): ${JSON.stringify(body.errors ?? body)}\nquery: ${query}\nvariables: ${JSON.stringify(variables)}`);
    }
    return body.data;
  }

  /** Sends data to channel with the API key; returns the Message. */
  async send(channel, data, { event, idempotencyKey } = {}) {
    const input = { channel, data };
    if (event !== undefined) input.event = event;
    if (idempotencyKey !== undefined) input.idempotencyKey = idempotencyKey;
    const d = await this.gqlData(
      `mutation($in: SendInput!){ send(input:$in){ message { ${MESSAGE_FIELDS} } } }`,
      { in: input },
    );
    return d.send.message;
  }

  /** Sends the same data to several channels; returns the Messages. */
  async broadcast(channels, data, { event, idempotencyKey } = {}) {
    const input = { channels, data };
    if (event !== undefined) input.event = event;
    if (idempotencyKey !== undefined) input.idempotencyKey = idempotencyKey;
    const d = await this.gqlData(
      `mutation($in: BroadcastInput!){ broadcast(input:$in){ messages { ${MESSAGE_FIELDS} } } }`,
      { in: input },
    );
    return d.broadcast.messages;
  }

  /** history(channel, ...args) as { nodes, edges, pageInfo }. */
  async history(channel, args = {}) {
    const d = await this.gqlData(
      `query($ch: String!, $first: Int, $after: String, $last: Int, $before: String) {
        history(channel: $ch, first: $first, after: $after, last: $last, before: $before) {
          nodes { ${MESSAGE_FIELDS} }
          edges { cursor node { ${MESSAGE_FIELDS} } }
          pageInfo { hasNextPage hasPreviousPage startCursor endCursor }
        }
      }`,
      { ch: channel, ...args },
    );
    return d.history;
  }

  /** channel(name) state, cursor included. */
  async channel(name) {
    const d = await this.gqlData(
      `query($n: String!){ channel(name: $n){ name epoch lastId retained firstId cursor } }`,
      { n: name },
    );
    return d.channel;
  }
}

function b64url(buf) {
  return Buffer.from(buf).toString('base64url');
}

/**
 * Mints an HS256 subscriber JWT with claims sub, exp (now + ttlSeconds; a
 * negative ttl gives an expired token) and channels (glob patterns).
 */
export function token(sub, channels, ttlSeconds = 300, secret = JWT_SECRET) {
  const header = { alg: 'HS256', typ: 'JWT' };
  const now = Math.floor(Date.now() / 1000);
  const payload = { sub, iat: now, exp: now + ttlSeconds, channels };
  const signingInput = `${b64url(JSON.stringify(header))}.${b64url(JSON.stringify(payload))}`;
  const sig = createHmac('sha256', secret).update(signingInput).digest();
  return `${signingInput}.${b64url(sig)}`;
}

/** A channel name no other test uses: `${prefix}:<random>`. */
export function uniq(prefix = 'room') {
  return `${prefix}:${randomBytes(6).toString('hex')}`;
}

/**
 * An async queue of things a client receives: push() from callbacks,
 * next()/take() in tests with a deadline, none() to assert silence.
 */
export class Inbox {
  constructor(label = 'inbox') {
    this.label = label;
    this.items = [];
    this.waiters = [];
    this.all = []; // every item ever pushed, for diagnostics
    this.failure = null;
  }

  push(item) {
    this.all.push(item);
    const w = this.waiters.shift();
    if (w) w.resolve(item);
    else this.items.push(item);
  }

  /** Makes every pending and later next() reject with err. */
  fail(err) {
    this.failure = err;
    for (const w of this.waiters.splice(0)) w.reject(err);
  }

  next(timeoutMs = 5000) {
    if (this.items.length) return Promise.resolve(this.items.shift());
    if (this.failure) return Promise.reject(this.failure);
    return new Promise((resolve, reject) => {
      const w = {
        resolve: (v) => { clearTimeout(timer); resolve(v); },
        reject: (e) => { clearTimeout(timer); reject(e); },
      };
      const timer = setTimeout(() => {
        const i = this.waiters.indexOf(w);
        if (i >= 0) this.waiters.splice(i, 1);
        reject(new Error(`${this.label}: nothing received within ${timeoutMs} ms; received so far: ${JSON.stringify(this.all).slice(0, 2000)}`));
      }, timeoutMs);
      this.waiters.push(w);
    });
  }

  async take(n, timeoutMs = 5000) {
    const out = [];
    const deadline = Date.now() + timeoutMs;
    while (out.length < n) out.push(await this.next(Math.max(1, deadline - Date.now())));
    return out;
  }

  /** Resolves when nothing arrives for ms; rejects with what did arrive. */
  async none(ms = 300) {
    await sleep(ms);
    if (this.items.length) {
      throw new Error(`${this.label}: expected nothing more, got ${JSON.stringify(this.items)}`);
    }
    if (this.failure) throw this.failure;
  }
}

/** Only the fields a message is compared by (createdAt and cursor vary). */
export function brief(m) {
  const out = { channel: m.channel, id: m.id, data: m.data };
  if (m.event != null) out.event = m.event;
  return out;
}

/** Asserts a list of messages has no (channel, id) twice. */
export function assertNoDuplicates(assert, messages) {
  const seen = new Set();
  for (const m of messages) {
    const k = `${m.channel}#${m.id}`;
    assert.ok(!seen.has(k), `duplicate message ${k}`);
    seen.add(k);
  }
}

export const RFC3339_MS = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$/;

export { sleep };
