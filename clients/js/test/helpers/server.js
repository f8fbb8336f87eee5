// A real pushgate (built from this repository with `go build`) on a free
// loopback port, on a real redis-server this file starts on another, for
// the SDK's tests. restart() stops the server and starts it again on the
// same port, as a rolling restart does; Redis keeps the history.

import { spawn, execFileSync } from 'node:child_process';
import { createHmac, randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join, resolve as resolvePath } from 'node:path';
import { fileURLToPath } from 'node:url';
import { setTimeout as sleep } from 'node:timers/promises';

export const TEST_DIR = dirname(dirname(fileURLToPath(import.meta.url)));
export const REPO_ROOT = join(TEST_DIR, '..', '..', '..');
const BIN_DIR = join(TEST_DIR, '.bin');
export const API_KEY = 'devkey';
export const JWT_SECRET = 'sdk-test-secret-0123456789abcdef-0123456789';

let built = null;

/**
 * Builds cmd/pushgate into test/.bin (once per process). Go leaves a binary
 * that is up to date as it is (about a second to check), where a build to a
 * new path would link it again (8 s); PUSHGATE_BIN names a prebuilt one.
 */
export function buildServer() {
  if (process.env.PUSHGATE_BIN) return resolvePath(process.env.PUSHGATE_BIN);
  if (built) return built;
  mkdirSync(BIN_DIR, { recursive: true });
  const bin = join(BIN_DIR, 'pushgate');
  execFileSync('go', ['build', '-o', bin, './cmd/pushgate'], { cwd: REPO_ROOT, stdio: ['ignore', 'inherit', 'inherit'] });
  built = bin;
  return bin;
}

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

// Children never outlive the test process.
const running = new Set();
process.on('exit', () => {
  for (const c of running) c.kill('SIGKILL');
});

function watchdog(pid) {
  spawn('sh', ['-c', `while kill -0 ${process.pid} 2>/dev/null && kill -0 ${pid} 2>/dev/null; do sleep 1; done; kill -KILL ${pid} 2>/dev/null; exit 0`], {
    stdio: 'ignore',
    detached: true,
  }).unref();
}

function launch(cmd, args, name) {
  const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  running.add(child);
  watchdog(child.pid);
  let tail = '';
  const keep = (b) => {
    tail = (tail + b.toString()).slice(-6000);
  };
  child.stdout.on('data', keep);
  child.stderr.on('data', keep);
  child.exited = new Promise((resolve) =>
    child.on('exit', (code, signal) => {
      running.delete(child);
      resolve({ code, signal });
    }),
  );
  child.tail = () => `${name}: ${tail}`;
  return child;
}

async function waitFor(what, fn, child, ms = 15000) {
  const deadline = Date.now() + ms;
  for (;;) {
    if (child.exitCode !== null || child.signalCode !== null) throw new Error(`${what}: exited\n${child.tail()}`);
    if (await fn().catch(() => false)) return;
    if (Date.now() > deadline) throw new Error(`${what}: not ready within ${ms} ms\n${child.tail()}`);
    await sleep(30);
  }
}

/** A redis-server on a free port, without persistence. */
export async function startRedis() {
  const port = await freePort();
  const dir = mkdtempSync(join(tmpdir(), 'pushgate-sdk-redis-'));
  const child = launch('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', dir], 'redis');
  await waitFor('redis-server', () => canConnect(port), child);
  return {
    url: `redis://127.0.0.1:${port}`,
    async stop() {
      child.kill('SIGKILL');
      await child.exited;
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

function canConnect(port) {
  return new Promise((resolve) => {
    import('node:net').then(({ connect }) => {
      const s = connect(port, '127.0.0.1');
      s.on('connect', () => {
        s.destroy();
        resolve(true);
      });
      s.on('error', () => resolve(false));
    });
  });
}

/**
 * Starts pushgate on a free loopback port: --api-key dev:devkey, the JWT
 * secret, --allow-anonymous, Redis when redisUrl is given, then extra.
 */
export async function startServer({ redisUrl, extra = [] } = {}) {
  const bin = buildServer();
  const port = await freePort();
  const args = [
    '--addr', `127.0.0.1:${port}`,
    '--api-key', `dev:${API_KEY}`,
    '--jwt-secret', JWT_SECRET,
    '--allow-anonymous',
    '--log-level', 'warn',
    // Every client of a test comes from 127.0.0.1.
    '--connect-rate-per-ip', '2000/4000',
    '--max-connections-per-ip', '10000',
    ...(redisUrl ? ['--redis-url', redisUrl] : []),
    ...extra,
  ];
  const srv = new Server(bin, args, port);
  await srv.start();
  return srv;
}

export class Server {
  constructor(bin, args, port) {
    this.bin = bin;
    this.args = args;
    this.port = port;
    this.url = `http://127.0.0.1:${port}`;
    this.wsUrl = `ws://127.0.0.1:${port}/graphql`;
    this.child = null;
    this.restarts = 0;
  }

  async start() {
    // The port may be held a moment after the last process exited.
    for (let i = 0; ; i++) {
      this.child = launch(this.bin, this.args, 'pushgate');
      try {
        await waitFor('pushgate', () => fetch(`${this.url}/readyz`).then((r) => r.ok), this.child);
        return;
      } catch (e) {
        if (i >= 20 || !/address already in use/.test(e.message)) throw e;
        await sleep(100);
      }
    }
  }

  /** Stops the server: SIGTERM (a rolling restart; WebSockets get 1012) or SIGKILL (a crash). */
  async stop(signal = 'SIGTERM') {
    const c = this.child;
    if (!c || c.exitCode !== null || c.signalCode !== null) return;
    c.kill(signal);
    const t = setTimeout(() => c.kill('SIGKILL'), 3000);
    await c.exited;
    clearTimeout(t);
  }

  async restart(signal = 'SIGTERM', downMs = 0) {
    await this.stop(signal);
    if (downMs) await sleep(downMs);
    await this.start();
    this.restarts++;
  }

  async gql(query, variables = {}, auth = API_KEY) {
    const headers = { 'Content-Type': 'application/json' };
    if (auth) headers.Authorization = `Bearer ${auth}`;
    const res = await fetch(`${this.url}/graphql`, { method: 'POST', headers, body: JSON.stringify({ query, variables }) });
    const body = await res.json();
    if (body.errors) throw new Error(`GraphQL: ${JSON.stringify(body.errors)}`);
    return body.data;
  }

  /**
   * Sends data to every channel in one broadcast, retrying (same
   * idempotencyKey) while the server restarts: appended exactly once.
   */
  async broadcast(channels, data, key, deadlineMs = 20000) {
    const deadline = Date.now() + deadlineMs;
    for (;;) {
      try {
        const d = await this.gql(
          'mutation($in: BroadcastInput!){ broadcast(input: $in){ messages { channel id cursor } } }',
          { in: { channels, data, idempotencyKey: key } },
        );
        return d.broadcast.messages;
      } catch (e) {
        if (Date.now() > deadline) throw new Error(`broadcast ${key}: ${e.message}`);
        await sleep(50);
      }
    }
  }

  send(channel, data, key) {
    return this.broadcast([channel], data, key).then((m) => m[0]);
  }
}

function b64url(s) {
  return Buffer.from(s).toString('base64url');
}

/** An HS256 subscriber token: sub, exp = now + ttl seconds, channels (and publish). */
export function token(sub, channels, ttlSeconds = 300, publish) {
  const now = Math.floor(Date.now() / 1000);
  const payload = { sub, iat: now, exp: now + ttlSeconds, channels };
  if (publish) payload.publish = publish;
  const input = `${b64url(JSON.stringify({ alg: 'HS256', typ: 'JWT' }))}.${b64url(JSON.stringify(payload))}`;
  return `${input}.${createHmac('sha256', JWT_SECRET).update(input).digest('base64url')}`;
}

export function uniq(prefix = 'room') {
  return `${prefix}:${randomBytes(6).toString('hex')}`;
}

/** Waits until cond() holds, or throws what() after ms. */
export async function until(cond, ms, what) {
  const deadline = Date.now() + ms;
  while (!(await cond())) {
    if (Date.now() > deadline) throw new Error(`not within ${ms} ms: ${typeof what === 'function' ? what() : what}`);
    await sleep(20);
  }
}

export { sleep };
