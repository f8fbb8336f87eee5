// The SDK beyond WeChat and Alipay: a browser page (the minified <script>
// build in a vm context with window, document, localStorage, the W3C
// WebSocket of the ws package and a real EventSource, the eventsource
// package), Node with and without a WebSocket class, and uni-app and
// Douyin (the same API under uni and tt). Against the memory store, a
// server restart loses every channel's history: the client gets a Reset
// (the app must refetch) and then the messages of the new epoch, whose ids
// start again at 1, are not taken for duplicates.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import vm from 'node:vm';
import WebSocket from 'ws';
import { EventSource } from 'eventsource';
import { createClient } from '../src/index.js';
import { startServer, token, uniq, until, sleep, TEST_DIR } from './helpers/server.js';
import { createRuntime } from './helpers/miniprogram.js';

let srv;
const clients = [];
before(async () => {
  srv = await startServer();
});
after(async () => {
  for (const c of clients) c.close();
  await srv?.stop();
});

let keys = 0;
const send = (ch, n) => srv.send(ch, { n }, `pf-${process.pid}-${++keys}`);
const plain = (v) => JSON.parse(JSON.stringify(v));

/** A browser page with the SDK's <script> build loaded: its globals. */
function browserPage() {
  const listeners = new Map();
  const document = {
    visibilityState: 'visible',
    addEventListener: (type, fn) => listeners.set(fn, type),
    removeEventListener: (type, fn) => listeners.delete(fn),
    show() {
      for (const [fn, type] of listeners) if (type === 'visibilitychange') fn();
    },
  };
  const store = new Map();
  const localStorage = {
    getItem: (k) => (store.has(k) ? store.get(k) : null),
    setItem: (k, v) => store.set(k, String(v)),
  };
  const sources = [];
  class CountedEventSource extends EventSource {
    constructor(url, init) {
      super(url, init);
      sources.push(url);
    }
  }
  const page = vm.createContext({
    document,
    localStorage,
    EventSource: CountedEventSource,
    WebSocket,
    fetch,
    AbortController,
    setTimeout,
    clearTimeout,
    setInterval,
    clearInterval,
    console,
  });
  vm.runInContext('var window = globalThis;', page);
  vm.runInContext(readFileSync(join(TEST_DIR, '..', 'dist', 'pushgate.min.js'), 'utf8'), page, { filename: 'pushgate.min.js' });
  return { Pushgate: page.Pushgate, document, store, sources };
}

test('browser page (<script> build): ws, EventSource SSE and fetch long-poll; a restart of the memory store gives a Reset, then the new epoch', async () => {
  for (const transport of ['ws', 'sse', 'poll']) {
    const page = browserPage();
    assert.equal(page.Pushgate.detectPlatform(), 'browser');
    const client = page.Pushgate.createClient({ url: srv.url, transports: [transport], token: token('h5', ['room:*'], 3600), reconnect: { min: 50, max: 300 } });
    clients.push(client);
    const got = [];
    const resets = [];
    const ch = uniq();
    client.subscribe(ch, { onMessage: (m) => got.push(plain(m)), onReset: (r) => resets.push(plain(r)) });
    await until(() => client.state.status === 'connected', 5000, `${transport}: connected`);
    await send(ch, 1);
    await send(ch, 2);
    await until(() => got.length === 2, 5000, `${transport}: two`);
    await srv.restart('SIGTERM');
    await send(ch, 3);
    await until(() => got.length === 3, 8000, () => `${transport}: after the restart ${JSON.stringify(got.map((m) => m.data))}`);
    assert.deepEqual(got.map((m) => m.data.n), [1, 2, 3], transport);
    assert.deepEqual(got.map((m) => m.id), ['1', '2', '1'], `${transport}: ids start again in the new epoch`);
    assert.equal(resets.length, 1, `${transport}: one Reset`);
    assert.equal(resets[0].channel, ch);
    assert.match(resets[0].reason, /^(epoch_changed|unknown_position)$/);
    if (transport === 'sse') {
      assert.ok(page.sources.length >= 2, 'EventSource was used, and opened again after the restart');
      assert.ok(page.sources.every((u) => /[?&]token=/.test(u)), 'with the token in the query (EventSource sets no header)');
    }
    client.close();
  }
});

test('browser page: localStorage keeps the cursor; a page shown again reconnects at once', async () => {
  const page = browserPage();
  // A backoff of 20 s: only the visibilitychange can bring it back in time.
  const client = page.Pushgate.createClient({ url: srv.url, transports: ['ws'], storage: true, reconnect: { min: 20000, max: 20000 } });
  clients.push(client);
  const got = [];
  const ch = uniq();
  client.subscribe(ch, { onMessage: (m) => got.push(m.data.n) });
  await until(() => client.state.status === 'connected', 5000, 'connected');
  await send(ch, 1);
  await until(() => got.length === 1, 5000, 'one');
  const saved = JSON.parse([...page.store.values()][0]);
  assert.ok(saved.c, 'the cursor is in localStorage');
  assert.equal(saved.l[ch], '1');

  await srv.stop();
  await until(() => client.state.status === 'connecting', 5000, 'lost');
  await sleep(300); // the first retries fail: the next one is 10-20 s away
  await srv.start();
  await send(ch, 2);
  page.document.show();
  await until(() => got.length === 2, 3000, 'at once after visibilitychange');
  client.close();
});

test('Node: without a WebSocket class SSE over a streamed fetch; with one, WebSocket', async () => {
  const expected = typeof globalThis.WebSocket === 'function' ? 'ws' : 'sse'; // Node 22 has one
  for (const [opts, want] of [
    [{}, expected],
    [{ transports: ['sse'] }, 'sse'],
    [{ WebSocket }, 'ws'],
  ]) {
    const client = createClient({ url: srv.url, ...opts });
    clients.push(client);
    assert.equal(client.platform, 'node');
    const got = [];
    const ch = uniq();
    client.subscribe(ch, { onMessage: (m) => got.push(m.data.n) });
    await until(() => client.state.status === 'connected', 5000, 'connected');
    assert.equal(client.state.transport, want);
    await send(ch, 1);
    await send(ch, 2);
    await until(() => got.length === 2, 5000, `${want}: two`);
    assert.deepEqual(got, [1, 2]);
    client.close();
  }
});

test('Node: a custom async store {get, set} keeps the cursor across clients', async () => {
  const saved = new Map();
  const storage = {
    get: async (k) => saved.get(k),
    set: async (k, v) => void saved.set(k, v),
  };
  const ch = uniq();
  const a = createClient({ url: srv.url, WebSocket, storage });
  clients.push(a);
  const got = [];
  a.subscribe(ch, { onMessage: (m) => got.push(m.data.n) });
  await until(() => a.state.status === 'connected', 5000, 'connected');
  await send(ch, 1);
  await until(() => got.length === 1, 5000, 'one');
  a.close();
  await send(ch, 2);
  const b = createClient({ url: srv.url, transports: ['poll'], storage });
  clients.push(b);
  b.subscribe(ch, { onMessage: (m) => got.push(m.data.n) });
  await until(() => got.length === 2, 5000, () => JSON.stringify(got));
  await sleep(200);
  assert.deepEqual(got, [1, 2]);
  b.close();
});

test('uni-app and Douyin: detected as uni and tt, read over one socket and over long-poll', async () => {
  for (const name of ['uni', 'tt']) {
    for (const transport of ['ws', 'poll']) {
      const rt = createRuntime('wx');
      const sdk = rt.load(name);
      assert.equal(sdk.detectPlatform(), name);
      const client = sdk.createClient({ url: srv.url, transports: [transport], storage: true });
      clients.push(client);
      assert.equal(client.platform, name);
      const got = [];
      const ch = uniq();
      client.subscribe(ch, { onMessage: (m) => got.push(m.data.n) });
      await until(() => client.state.status === 'connected', 5000, `${name} ${transport}: connected`);
      await send(ch, 1);
      await until(() => got.length === 1, 5000, `${name} ${transport}: the message`);
      assert.equal(rt.storage.size, 1, `${name}: the cursor in ${name}.setStorageSync`);
      client.close();
    }
  }
});
