// The console page in headless Chromium (Debian's /usr/bin/chromium, driven
// by playwright-core) against a real pushgate on a real Redis, both started
// here on free loopback ports:
// - the page loads with no console error and no request to another origin;
// - a message sent by the test appears with its cursor and the transport
//   that brought it;
// - the page keeps receiving across a restart of pushgate, nothing lost and
//   nothing twice, messages sent meanwhile through another node on the same
//   Redis included;
// - the metrics panel shows the page's own connection, asks for the metrics
//   token when the server wants one, and shows a send rate;
// - a query typed with completion returns; history pages back and forth;
// - a switch to SSE goes on without a gap;
// - the list stays bounded and virtual under thousands of messages;
// - no area moves when messages and errors arrive.
//
//   PUSHGATE_BIN=<path>  a prebuilt pushgate (else go build from the repo)
//   CHROMIUM=<path>      default /usr/bin/chromium
//   SCREENSHOT=<path>    where to save a screenshot (npm run screenshot: docs/console.png)

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import net from 'node:net';
import { chromium } from 'playwright-core';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
const KEY = 'console-test-key';
const METRICS_TOKEN = 'console-metrics-token';
const WAIT = 15000; // ms: the longest wait for any condition

function freePort() {
  return new Promise((res, rej) => {
    const s = net.createServer();
    s.on('error', rej);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => res(port));
    });
  });
}

// p, or an error after ms: no step of the test waits without a bound.
function bounded(what, p, ms) {
  let timer;
  const late = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: nothing after ${ms} ms`)), ms);
  });
  return Promise.race([p, late]).finally(() => clearTimeout(timer));
}

async function until(what, fn, ms = WAIT) {
  const end = Date.now() + ms;
  let last;
  for (;;) {
    try {
      const v = await bounded(what, Promise.resolve().then(fn), Math.max(200, end - Date.now()));
      if (v) return v;
    } catch (e) {
      last = e;
    }
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}${last ? ': ' + last.message : ''}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

// A child process whose output is kept for the failure message.
function run(cmd, args) {
  const p = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  p.output = '';
  const keep = (d) => {
    p.output = (p.output + d).slice(-20000);
  };
  p.stdout.on('data', keep);
  p.stderr.on('data', keep);
  p.exited = new Promise((r) => p.on('exit', (code, signal) => r({ code, signal })));
  return p;
}

async function startRedis() {
  const port = await freePort();
  const p = run('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no']);
  p.on('error', () => {});
  await until('redis-server', () =>
    new Promise((res) => {
      const c = net.connect(port, '127.0.0.1');
      c.on('connect', () => c.end('PING\r\n'));
      c.on('data', (d) => res(String(d).startsWith('+PONG')));
      c.on('error', () => res(false));
    }),
  );
  return { port, proc: p };
}

class Pushgate {
  constructor(bin, port, redisPort) {
    this.bin = bin;
    this.port = port;
    this.url = `http://127.0.0.1:${port}`;
    this.redis = `redis://127.0.0.1:${redisPort}`;
  }

  async start(...extra) {
    this.proc = run(this.bin, [
      '--addr', `127.0.0.1:${this.port}`,
      '--redis-url', this.redis,
      '--api-key', `test:${KEY}`,
      '--console',
      '--send-rate-per-key', 'off',
      '--connect-rate-per-ip', 'off',
      '--shutdown-timeout', '3s',
      '--log-level', 'warn',
      ...extra,
    ]);
    await until('pushgate /readyz', async () => {
      if (this.proc.exitCode !== null) throw new Error('pushgate exited:\n' + this.proc.output);
      return (await fetch(this.url + '/readyz', { signal: AbortSignal.timeout(2000) })).ok;
    });
  }

  async stop() {
    const p = this.proc;
    if (!p || p.exitCode !== null || p.signalCode !== null) return;
    p.kill('SIGTERM');
    const { code, signal } = await bounded('pushgate to exit on SIGTERM', p.exited, 10000).catch((e) => {
      p.kill('SIGKILL');
      throw new Error(`${e.message}\n${p.output}`);
    });
    assert.ok(code === 0, `pushgate exit ${code} ${signal}:\n${p.output}`);
  }

  // GraphQL over HTTP with the API key, as a backend sends.
  async graphql(query, variables) {
    const r = await fetch(this.url + '/graphql', {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: 'Bearer ' + KEY },
      body: JSON.stringify({ query, variables }),
      signal: AbortSignal.timeout(10000),
    });
    const b = await r.json();
    assert.equal(b.errors, undefined, JSON.stringify(b.errors));
    return b.data;
  }

  // The value of a series of /metrics (name{labels} as exposed), or null.
  async metric(series) {
    const r = await fetch(this.url + '/metrics', { headers: { authorization: 'Bearer ' + METRICS_TOKEN }, signal: AbortSignal.timeout(10000) });
    const line = (await r.text()).split('\n').find((l) => l.startsWith(series + ' '));
    return line ? Number(line.slice(series.length + 1)) : null;
  }

  async send(channel, data, event) {
    const d = await this.graphql('mutation($i: SendInput!) { send(input: $i) { message { channel id cursor } } }', {
      i: { channel, data, event },
    });
    return d.send.message;
  }
}

function buildPushgate(dir) {
  if (process.env.PUSHGATE_BIN) return process.env.PUSHGATE_BIN;
  const bin = join(dir, 'pushgate');
  execFileSync('go', ['build', '-o', bin, './cmd/pushgate'], { cwd: ROOT, stdio: 'inherit' });
  return bin;
}

// Browser messages that a server going away makes, and nothing else: a
// WebSocket or a request refused while pushgate restarts, /metrics answering
// 401 before the page has the metrics token.
const RESTART_NOISE = [/net::ERR_CONNECTION_REFUSED/, /net::ERR_CONNECTION_RESET/, /net::ERR_EMPTY_RESPONSE/, /WebSocket connection to .* failed/, /net::ERR_INCOMPLETE_CHUNKED_ENCODING/];
const METRICS_401 = /status of 401/;

// The timeout bounds a run on a loaded machine, the go build included; a
// run takes 15-45 s on 2 cores with a built pushgate.
test('the console in Chromium against pushgate on Redis', { timeout: 240000 }, async (t) => {
  assert.ok(existsSync(CHROMIUM), `${CHROMIUM} is missing: apt-get install -y chromium`);
  // Everything started is stopped at the end, newest first, each step
  // bounded, whatever happened.
  const cleanup = [];
  t.after(async () => {
    for (const [what, f] of cleanup.reverse()) {
      await bounded(what, Promise.resolve().then(f), 15000).catch((e) => process.stderr.write(`cleanup: ${e.message}\n`));
    }
  });
  const dir = mkdtempSync(join(tmpdir(), 'pushgate-console-'));
  cleanup.push(['the temporary directory', () => rmSync(dir, { recursive: true, force: true })]);
  const bin = buildPushgate(dir);
  const redis = await startRedis();
  cleanup.push(['redis-server', () => {
    redis.proc.kill('SIGKILL');
    return redis.proc.exited;
  }]);
  const server = new Pushgate(bin, await freePort(), redis.port);
  const origin = server.url;
  cleanup.push(['pushgate', () => server.stop()]);
  await server.start();

  // Playwright gives each launch a fresh profile (a temporary
  // --user-data-dir, removed at close); the flags keep Chromium's own
  // traffic (updates, sync, QUIC) out.
  const browser = await chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
  cleanup.push(['chromium', () =>
    bounded('browser.close', browser.close(), 10000).catch((e) => {
      browser.process()?.kill('SIGKILL');
      throw e;
    }),
  ]);
  const context = await browser.newContext({ viewport: { width: 1360, height: 820 }, colorScheme: 'light' });
  const page = await context.newPage();
  let phase = 'load';
  const consoleProblems = []; // {phase, type, text}
  const pageErrors = [];
  const foreign = [];
  page.on('console', (m) => {
    if (m.type() === 'error' || m.type() === 'warning') consoleProblems.push({ phase, type: m.type(), text: m.text() });
  });
  page.on('pageerror', (e) => pageErrors.push(String(e && e.stack ? e.stack : e)));
  page.on('request', (r) => {
    const u = new URL(r.url());
    if (u.host !== new URL(origin).host) foreign.push(r.url());
  });
  page.on('websocket', (ws) => {
    if (new URL(ws.url()).host !== new URL(origin).host) foreign.push(ws.url());
  });

  const ch = 'console:live';
  const messages = () => bounded('the page', page.evaluate(() => window.pushgateConsole.messages()), WAIT);
  const ids = async (channel) => (await messages()).filter((m) => m.channel === channel && m.kind === 'msg').map((m) => Number(m.id));
  const state = () => bounded('the page', page.evaluate(() => window.pushgateConsole.state()), WAIT);
  const connectedOver = (transport) =>
    until(`the page connected over ${transport}`, async () => {
      const s = await state();
      return s.status === 'connected' && s.transport === transport;
    });
  // Every subscription of the page running on the server: each was sent
  // once its start position was known, so nothing sent after is missed.
  // (The page's state stays connected while new ones start on its socket.)
  const subscribed = (n) =>
    until(`${n} subscriptions on the server`, async () => (await server.metric('pushgate_subscriptions{transport="websocket"}')) === n);
  const layout = () =>
    bounded(
      'the page',
      page.evaluate(() =>
        ['header', '.toolbar', '.chips', '.listbar', '.list', '.detail', '.side', '.tabs'].map((s) => {
          const r = document.querySelector(s).getBoundingClientRect();
          return [s, r.x, r.y, r.width, r.height].join(' ');
        }),
      ),
      WAIT,
    );

  await t.test('the page loads with its headers, no console error and nothing from elsewhere', async () => {
    const res = await page.goto(origin + '/console');
    assert.equal(res.status(), 200);
    const h = res.headers();
    assert.match(h['content-type'], /^text\/html/);
    assert.match(h['content-security-policy'], /default-src 'none'; script-src 'self'/);
    await until('the schema', async () => /schema: \d+ types/.test(await page.textContent('#schema-status')));
    await until('the first metrics', async () => (await page.getAttribute('#metrics-table', 'data-fresh')) === 'true');
    assert.deepEqual(consoleProblems, []);
    assert.deepEqual(pageErrors, []);
    assert.deepEqual(foreign, []);
  });

  let first;
  const before = await layout();
  await t.test('a message sent by the test appears with its cursor and transport', async () => {
    phase = 'live';
    await page.fill('#token', KEY);
    await page.press('#token', 'Tab'); // change: a client with the key
    await page.fill('#channel', ch);
    await page.press('#channel', 'Enter');
    await page.waitForSelector(`.chip[data-channel="${ch}"][data-state="live"]`);
    // Connected means subscribed from a known position: what is sent now is delivered.
    await connectedOver('ws');
    first = await server.send(ch, { order: 1041, status: 'paid' }, 'status');
    const row = page.locator(`.list .row[data-channel="${ch}"][data-id="${first.id}"]`);
    await row.waitFor({ timeout: WAIT });
    assert.equal(await row.locator('.k').getAttribute('data-cursor'), first.cursor, 'the row carries the message cursor');
    assert.equal(await row.locator('.v').textContent(), 'ws');
    assert.equal(await row.locator('.e').textContent(), 'status');
    assert.equal(await row.locator('.d').textContent(), '{"order":1041,"status":"paid"}');
    assert.match(await page.textContent('#state'), /connected · ws/);
    // The cursor resumes right after the message: history after it is empty.
    const after = await server.graphql('query($c: String!, $a: String) { history(channel: $c, after: $a) { nodes { id } } }', { c: ch, a: first.cursor });
    assert.deepEqual(after.history.nodes, []);
    await row.click();
    assert.match(await page.textContent('#detail-title'), new RegExp(`${ch} · #${first.id} · status`));
    assert.match(await page.textContent('#detail-body'), /"order": 1041/);
  });

  await t.test('the metrics panel shows the page\'s WebSocket', async () => {
    await page.locator('#list').focus();
    await page.keyboard.press('4');
    await until('one WebSocket in the metrics', async () => (await page.textContent('#metrics-rows tr[data-transport="websocket"] .conn')) === '1');
    assert.match(await page.textContent('#server-summary'), /server: 1 conn/);
  });

  await t.test('it keeps receiving across a restart of pushgate: nothing lost, nothing twice', async () => {
    phase = 'restart';
    await server.stop();
    await until('the page to notice', async () => (await state()).status === 'connecting');
    // While the page's server is down, two messages go in through another
    // node on the same Redis: the page can only get them by resuming.
    const other = new Pushgate(bin, await freePort(), redis.port);
    cleanup.push(['the other pushgate', () => other.stop()]);
    await other.start();
    const sent = [];
    for (let i = 0; i < 2; i++) sent.push(await other.send(ch, { order: 1042 + i, status: 'shipped' }, 'status'));
    await other.stop();
    assert.notEqual((await state()).status, 'connected');
    // The same port, the same Redis; /metrics now wants a token.
    await server.start('--metrics-token', METRICS_TOKEN);
    sent.push(await server.send(ch, { order: 1044, status: 'shipped' }, 'status'));
    await until('every message', async () => (await ids(ch)).length >= 4);
    await connectedOver('ws');
    assert.deepEqual(await ids(ch), [1, 2, 3, 4]);
    const rows = await messages();
    for (const m of sent) assert.equal(rows.find((r) => r.id === m.id).cursor, m.cursor);
    phase = 'after restart';
  });

  await t.test('the metrics panel asks for the metrics token, then shows the connection', async () => {
    await page.waitForSelector('#metrics-auth:not([hidden])');
    await page.fill('#metrics-token', METRICS_TOKEN);
    await page.press('#metrics-token', 'Enter');
    await until('one WebSocket in the metrics', async () =>
      (await page.getAttribute('#metrics-table', 'data-fresh')) === 'true' && (await page.textContent('#metrics-rows tr[data-transport="websocket"] .conn')) === '1',
    );
    assert.ok(await page.isHidden('#metrics-auth'));
  });

  await t.test('a query typed with completion returns', async () => {
    await page.locator('#list').focus();
    await page.keyboard.press('3');
    await page.fill('#gql', '');
    await page.focus('#gql');
    await page.keyboard.type('{ chan');
    await page.waitForSelector('#complete:not([hidden])');
    assert.equal(await page.textContent('#complete-list li[aria-selected="true"] .l'), 'channel');
    await page.keyboard.press('Enter');
    assert.equal(await page.inputValue('#gql'), '{ channel');
    await page.keyboard.type(`(name: "${ch}") { las`);
    await page.waitForSelector('#complete:not([hidden])');
    const labels = await page.locator('#complete-list li .l').allTextContents();
    assert.deepEqual(labels, ['lastId', 'lastMessageAt']);
    await page.keyboard.press('Tab');
    await page.keyboard.type(' reta');
    await page.waitForSelector('#complete:not([hidden])');
    await page.keyboard.press('Enter');
    await page.keyboard.type(' } }');
    assert.equal(await page.inputValue('#gql'), `{ channel(name: "${ch}") { lastId retained } }`);
    await page.keyboard.press('Control+Enter');
    await until('the result', async () => /"lastId"/.test(await page.textContent('#gql-out')));
    assert.deepEqual(JSON.parse(await page.textContent('#gql-out')), { data: { channel: { lastId: '4', retained: 4 } } });
    assert.match(await page.textContent('#gql-status'), /^ok/);
  });

  await t.test('the send rate shows, and history pages back and forth', async () => {
    for (let i = 0; i < 21; i++) {
      await server.send(ch, { order: 1045 + i, status: ['paid', 'packed', 'shipped'][i % 3], amount: 20 + i * 7.5 }, i % 4 ? 'status' : 'refund');
    }
    // The scrape after the sends (one before them is done: the table is
    // fresh) shows a rate above zero until the next one, 2 s later.
    await until('a send rate', async () => Number((await page.textContent('#m-sent')).replace(/,/g, '')) > 0);
    await until('25 messages in the page', async () => (await ids(ch)).length === 25);
    assert.deepEqual(await ids(ch), Array.from({ length: 25 }, (_, i) => i + 1));
    await page.locator('#list').focus();
    await page.keyboard.press('2');
    await page.fill('#hist-channel', ch);
    await page.selectOption('#hist-size', '10');
    const page_ = async () => (await page.locator('#hist-list .row').evaluateAll((rs) => rs.map((r) => Number(r.dataset.id))));
    const range = (a, b) => Array.from({ length: b - a + 1 }, (_, i) => a + i);
    const shows = (want) => until(`history ${want[0]}..${want[want.length - 1]}`, async () => JSON.stringify(await page_()) === JSON.stringify(want));
    await page.click('#hist-form button[type="submit"]');
    await shows(range(16, 25));
    assert.ok(await page.isDisabled('#hist-newer'));
    await page.click('#hist-older');
    await shows(range(6, 15));
    await page.click('#hist-older');
    await shows(range(1, 5));
    assert.ok(await page.isDisabled('#hist-older'));
    await page.click('#hist-newer');
    await shows(range(6, 15));
    await page.click('#hist-oldest');
    await shows(range(1, 10));
  });

  await t.test('another transport: a new client goes on from the newest cursor', async () => {
    await page.selectOption('#transport', 'sse');
    await connectedOver('sse');
    const m = await server.send(ch, { order: 1066, status: 'paid' }, 'status');
    const row = page.locator(`.list .row[data-channel="${ch}"][data-id="${m.id}"]`);
    await row.waitFor({ timeout: WAIT });
    assert.equal(await row.locator('.v').textContent(), 'sse');
    assert.equal(await row.locator('.k').getAttribute('data-cursor'), m.cursor);
    await page.selectOption('#transport', '');
    await connectedOver('ws');
    assert.deepEqual(await ids(ch), Array.from({ length: 26 }, (_, i) => i + 1));
  });

  await t.test('no area moved while messages, a restart and errors came', async () => {
    assert.deepEqual(await layout(), before);
  });

  if (process.env.SCREENSHOT) {
    await t.test('screenshot', async () => {
      for (const c of ['orders:1058', 'chat:room1']) {
        await page.fill('#channel', c);
        await page.press('#channel', 'Enter');
      }
      await subscribed(3);
      for (const [c, d, e] of [
        ['orders:1058', { status: 'paid', amount: 129.5, items: 3 }, 'status'],
        ['chat:room1', { from: 'bob', text: 'on my way' }, 'say'],
        ['orders:1058', { status: 'packed' }, 'status'],
        ['chat:room1', { from: 'alice', text: 'see you at 6' }, 'say'],
      ]) await server.send(c, d, e);
      await until('the last one', async () => (await messages()).some((m) => m.channel === 'chat:room1' && m.id === '2'));
      await page.locator('#list').focus();
      await page.keyboard.press('3');
      await page.fill(
        '#gql',
        '{\n  channel(name: "orders:1058") {\n    lastId\n    retained\n    lastMessageAt\n  }\n' +
          '  history(channel: "orders:1058", last: 1) {\n    nodes { id event data }\n  }\n}\n',
      );
      await page.click('#gql-run');
      await until('the result', async () => /"retained"/.test(await page.textContent('#gql-out')));
      await page.locator('#list').focus();
      await page.keyboard.press('G');
      await page.keyboard.press('k');
      await page.keyboard.press('k');
      await page.evaluate(() => document.activeElement.blur());
      await page.mouse.move(0, 0);
      await page.screenshot({ path: resolve(process.env.SCREENSHOT) });
    });
  }

  await t.test('thousands of messages: the list keeps the newest 5,000 and draws only the rows in view', async () => {
    // 60 channels, 100 broadcasts to all of them: 6,000 messages in 100 requests.
    const floods = Array.from({ length: 60 }, (_, i) => `flood:${i}`);
    const R = 100;
    await page.check('#follow');
    await page.fill('#channel', floods.join(' '));
    await page.press('#channel', 'Enter');
    await subscribed(61 + (process.env.SCREENSHOT ? 2 : 0));
    const t0 = Date.now();
    for (let n = 1; n <= R; n++) {
      await server.graphql('mutation($i: BroadcastInput!) { broadcast(input: $i) { messages { id } } }', { i: { channels: floods, data: { n } } });
    }
    t.diagnostic(`6,000 messages broadcast in ${Date.now() - t0} ms`);
    const newest = () =>
      page.evaluate((r) => window.pushgateConsole.messages().filter((x) => x.channel.startsWith('flood:') && x.id === r).length, String(R));
    await until('the newest message of every channel', async () => (await newest()) === floods.length, 30000).catch(async (e) => {
      const m = await messages();
      const top = {};
      for (const x of m) top[x.channel] = x.id;
      throw new Error(`${e.message}: ${m.length} entries, state ${JSON.stringify(await state())}, newest ids ${JSON.stringify(top)}`);
    });
    t.diagnostic(`and all in the page ${Date.now() - t0} ms after the first`);
    const all = await messages();
    assert.ok(all.length <= 5000 + (5000 >> 4) && all.length >= 5000, `${all.length} entries`);
    for (const c of floods) {
      const got = all.filter((m) => m.channel === c).map((m) => Number(m.id));
      assert.deepEqual(got, Array.from({ length: got.length }, (_, i) => R - got.length + 1 + i), `${c}: the newest, in order, each once`);
    }
    const drawn = await page.locator('.list .row:not([hidden])').count();
    assert.ok(drawn > 10 && drawn < 80, `${drawn} rows in the DOM`);
    await page.locator(`.list .row[data-channel="${floods[floods.length - 1]}"][data-id="${R}"]`).waitFor({ timeout: WAIT });
  });

  await t.test('no console error but a server going away, no page error, nothing from elsewhere', () => {
    const unexpected = consoleProblems.filter(
      (p) => !((p.phase === 'restart' || p.phase === 'after restart') && (RESTART_NOISE.some((r) => r.test(p.text)) || METRICS_401.test(p.text))),
    );
    assert.deepEqual(unexpected, []);
    assert.deepEqual(pageErrors, []);
    assert.deepEqual(foreign, []);
  });
});
