// Tokens that expire while the client reads: getToken is called at start
// and again each time the server says the token expired (WebSocket close
// 4403, SSE "event: expired", a poll answered 401), and reading goes on
// from the newest cursor with nothing lost. A fixed token that expired
// ends its subscription with onError instead of reconnecting forever.
//
// The server runs with --jwt-leeway 0s and tokens live 2 s.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import WebSocket from 'ws';
import { createClient } from '../src/index.js';
import { startServer, token, uniq, until, sleep } from './helpers/server.js';
import { createRuntime } from './helpers/miniprogram.js';

let srv;
const clients = [];
before(async () => {
  srv = await startServer({ extra: ['--jwt-leeway', '0s'] });
});
after(async () => {
  for (const c of clients) c.close();
  await srv?.stop();
});

let keys = 0;

test('getToken refreshes on every transport when tokens expire; every message once, in order', async (t) => {
  const readers = ['ws', 'sse', 'poll'].map((transport) => {
    const rt = createRuntime('wx');
    const calls = [];
    const client = rt.load().createClient({
      url: srv.url,
      transports: [transport],
      getToken: () => {
        calls.push(Date.now());
        return token(`t-${transport}`, ['room:*'], 2);
      },
      reconnect: { min: 50, max: 500 },
    });
    clients.push(client);
    const got = [];
    const ch = uniq();
    client.subscribe(ch, { onMessage: (m) => got.push(m.data.n) });
    return { transport, rt, client, calls, got, ch };
  });
  // And Node, with the ws package, whose getToken is async.
  const nodeCalls = [];
  const node = createClient({
    url: srv.url,
    WebSocket,
    getToken: async () => {
      nodeCalls.push(Date.now());
      await sleep(5);
      return token('t-node', ['room:*'], 2);
    },
    reconnect: { min: 50, max: 500 },
  });
  clients.push(node);
  const nodeGot = [];
  const nodeCh = uniq();
  node.subscribe(nodeCh, { onMessage: (m) => nodeGot.push(m.data.n) });
  readers.push({ transport: 'node ws', client: node, calls: nodeCalls, got: nodeGot, ch: nodeCh });

  await until(() => readers.every((r) => r.client.state.status === 'connected'), 5000, 'connected');
  const chans = readers.map((r) => r.ch);
  let n = 0;
  const end = Date.now() + 5500; // at least two expiries
  while (Date.now() < end) {
    n++;
    await srv.broadcast(chans, { n }, `tok-${process.pid}-${++keys}`);
    await sleep(50);
  }
  for (const r of readers) await until(() => r.got.length >= n, 5000, () => `${r.transport}: ${r.got.length} of ${n}`);
  await sleep(100);
  for (const r of readers) {
    t.diagnostic(`${r.transport}: getToken called ${r.calls.length} times`);
    assert.deepEqual(r.got, Array.from({ length: n }, (_, i) => i + 1), `${r.transport}: every message once, in order`);
    assert.ok(r.calls.length >= 3, `${r.transport}: getToken called ${r.calls.length} times`);
    assert.equal(r.client.stats.duplicates, 0, r.transport);
  }
  // The WebSocket was closed for the token, with 4403, and not otherwise.
  const ws = readers[0];
  assert.ok(ws.rt.stats.closeCodes.length >= 2);
  assert.ok(ws.rt.stats.closeCodes.every((c) => c === 4403), `close codes ${ws.rt.stats.closeCodes}`);
});

test('a fixed token that expired: onError (UNAUTHENTICATED) on every transport, no reconnect loop', async () => {
  for (const transport of ['ws', 'sse', 'poll']) {
    const rt = createRuntime('wx');
    const client = rt.load().createClient({ url: srv.url, transports: [transport], token: token('old', ['room:*'], -60) });
    clients.push(client);
    const errors = [];
    client.subscribe(uniq(), { onError: (e) => errors.push(e) });
    await until(() => errors.length === 1, 5000, `${transport}: onError`);
    assert.equal(errors[0].code, 'UNAUTHENTICATED', `${transport}: ${errors[0].message}`);
    await until(() => client.state.status === 'idle', 2000, `${transport}: idle`);
    const requests = rt.stats.requests + rt.stats.sockets;
    await sleep(300);
    assert.equal(rt.stats.requests + rt.stats.sockets, requests, `${transport}: no more connections`);
    client.close();
  }
});
