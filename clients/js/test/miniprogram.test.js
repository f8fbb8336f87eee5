// The SDK on mini-program runtimes (test/helpers/miniprogram.js) against a
// real pushgate: one socket for every subscription, the fallbacks when a
// socket or chunked request cannot be had, Alipay's API, the 5-socket cap,
// dead sockets, reconnecting at once on app show and network change, and
// cursors kept in the platform's storage across an app restart.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startServer, token, uniq, until, sleep } from './helpers/server.js';
import { createRuntime } from './helpers/miniprogram.js';

let srv;
const clients = []; // closed at the end, should a test fail half-way
before(async () => {
  srv = await startServer();
});
after(async () => {
  for (const c of clients) c.close();
  await srv?.stop();
});

let keys = 0;
const send = (ch, data) => srv.send(ch, data, `mp-${process.pid}-${++keys}`);

/** A client on runtime rt, recording what it sees. */
function start(rt, opts = {}) {
  const sdk = rt.load();
  const client = sdk.createClient({ url: srv.url, getToken: () => token('alice', ['room:*', 'user:alice'], 3600), ...opts });
  clients.push(client);
  const seen = { states: [], errors: [] };
  client.on('state', (s) => seen.states.push(`${s.status}/${s.transport}`));
  client.on('error', (e) => seen.errors.push(`${e.code}: ${e.message}`));
  return { client, seen };
}

function inbox() {
  const got = [];
  const errors = [];
  // Copies: what the SDK hands over was made in the runtime's realm.
  const plain = (v) => JSON.parse(JSON.stringify(v));
  return { got, errors, onMessage: (m) => got.push(m), onError: (e) => errors.push(e), data: () => plain(got.map((m) => m.data)) };
}

test('one wx.connectSocket carries every subscription (graphql-transport-ws), and closes with the last', async () => {
  const rt = createRuntime('wx');
  const { client } = start(rt, { transports: ['ws'] });
  const chans = [uniq(), uniq(), uniq()];
  const boxes = chans.map(() => inbox());
  const offs = chans.map((c, i) => client.subscribe(c, boxes[i]));
  await until(() => client.state.status === 'connected', 5000, 'connected');
  await sleep(100);
  for (const [i, c] of chans.entries()) await send(c, { i });
  await until(() => boxes.every((b) => b.got.length === 1), 5000, 'one message each');
  assert.equal(rt.stats.sockets, 1);
  assert.equal(JSON.stringify(rt.stats.handshakeProtocols), '[["graphql-transport-ws"]]');

  offs[0]();
  await send(chans[0], { i: 'after unsubscribe' });
  await send(chans[1], { i: 'still' });
  await until(() => boxes[1].got.length === 2, 5000, 'the others go on');
  assert.equal(boxes[0].got.length, 1, 'nothing after unsubscribe');
  offs[1]();
  offs[2]();
  await until(() => rt.openSockets === 0, 5000, 'the socket closes with the last subscription');
  assert.equal(client.state.status, 'idle');
  client.close();
});

test('chunked SSE: a catch-up of 40 messages of 10 KB in chunks of up to 400 KB, cut anywhere', async () => {
  const rt = createRuntime('wx', { pieceSize: (r) => (r() < 0.5 ? 1 + Math.floor(r() * 7) : 100_000 + Math.floor(r() * 300_000)) });
  const ch = uniq();
  const first = await send(ch, { n: 0 });
  for (let n = 1; n <= 40; n++) await send(ch, { n, s: `${n}:` + 'é你🚀'.repeat(1100) });
  const { client } = start(rt, { transports: ['sse'] });
  const box = inbox();
  client.subscribe(ch, { ...box, cursor: first.cursor });
  await until(() => box.got.length === 40, 10000, () => `${box.got.length} of 40`);
  assert.deepEqual(box.data().map((d) => d.n), Array.from({ length: 40 }, (_, i) => i + 1));
  assert.equal(box.got[39].data.s, '40:' + 'é你🚀'.repeat(1100));
  assert.ok(rt.stats.largestChunk > 125_000, `largest chunk ${rt.stats.largestChunk}`);
  client.close();
});

test('Alipay: SocketTask with multiple: true, headers (not header) on my.request, SSE found missing, long-poll', async () => {
  // user:alice is readable with alice's token only: a request whose token
  // did not reach the server would be refused.
  for (const transports of [['ws'], ['sse', 'poll']]) {
    const rt = createRuntime('my');
    const { client, seen } = start(rt, { transports });
    const box = inbox();
    client.subscribe('user:alice', box);
    await until(() => client.state.status === 'connected', 5000, () => seen.states.join(' '));
    await sleep(100);
    await send('user:alice', { via: transports.join() });
    await until(() => box.got.length === 1, 5000, 'the message');
    assert.deepEqual(box.errors, []);
    assert.equal(rt.stats.singleInstance, 0);
    if (transports[0] === 'sse') {
      // my.request has no chunked reading: straight on to long-polling.
      assert.deepEqual(seen.states, ['connecting/sse', 'connecting/poll', 'connected/poll']);
    }
    client.close();
  }
});

test('fallbacks: no WebSocket through the proxy -> chunked SSE; no chunks either -> long-poll', async () => {
  for (const [chunked, want] of [
    [true, 'sse'],
    [false, 'poll'],
  ]) {
    const rt = createRuntime('wx', { chunked });
    rt.blockSockets(true);
    const { client, seen } = start(rt, { reconnect: { min: 50, max: 200 } });
    const box = inbox();
    const ch = uniq();
    client.subscribe(ch, box);
    await until(() => client.state.status === 'connected', 5000, () => seen.states.join(' '));
    assert.equal(client.state.transport, want, seen.states.join(' '));
    assert.equal(seen.states[0], 'connecting/ws');
    await send(ch, { want });
    await until(() => box.got.length === 1, 5000, 'the message');
    client.close();
  }
});

test('on a fallback, the first transport is tried again after upgradeAfter, and kept once it works', async () => {
  const rt = createRuntime('wx');
  rt.blockSockets(true);
  const { client, seen } = start(rt, { reconnect: { min: 50, max: 200 }, upgradeAfter: 500 });
  const box = inbox();
  const ch = uniq();
  client.subscribe(ch, box);
  await until(() => client.state.transport === 'sse' && client.state.status === 'connected', 5000, () => seen.states.join(' '));
  rt.blockSockets(false); // the proxy lets WebSockets through again
  await until(() => client.state.transport === 'ws' && client.state.status === 'connected', 5000, () => seen.states.join(' '));
  await send(ch, { back: 'on ws' });
  await until(() => box.got.length === 1, 5000, 'the message');
  await sleep(700);
  assert.equal(client.state.transport, 'ws', 'stays on the first transport');
  client.close();
});

test('the 5-socket cap: with 5 sockets held by the app, the client reads over SSE', async () => {
  const rt = createRuntime('wx');
  const held = [];
  for (let i = 0; i < 5; i++) {
    const task = rt.api.connectSocket({ url: srv.wsUrl, protocols: ['graphql-transport-ws'] });
    await new Promise((r) => task.onOpen(r));
    held.push(task);
  }
  const { client, seen } = start(rt, { reconnect: { min: 50, max: 200 } });
  const box = inbox();
  const ch = uniq();
  client.subscribe(ch, box);
  await until(() => client.state.status === 'connected', 5000, () => seen.states.join(' '));
  assert.equal(client.state.transport, 'sse');
  assert.ok(rt.stats.capRefusals >= 2);
  await send(ch, { over: 'sse' });
  await until(() => box.got.length === 1, 5000, 'the message');
  client.close();
  for (const t of held) t.close({});
});

test('a socket that goes silent (half-open) is dropped after 2.5 ping intervals; nothing is lost', async () => {
  const rt = createRuntime('wx');
  const { client } = start(rt, { transports: ['ws'], keepAlive: 200, reconnect: { min: 50, max: 200 } });
  const box = inbox();
  const ch = uniq();
  client.subscribe(ch, box);
  await until(() => client.state.status === 'connected', 5000, 'connected');
  await sleep(100);
  await send(ch, { n: 1 });
  await until(() => box.got.length === 1, 5000, 'first');
  rt.freeze();
  await send(ch, { n: 2 }); // sent into the frozen socket
  await until(() => rt.stats.sockets === 2, 5000, 'a new socket');
  await send(ch, { n: 3 });
  await until(() => box.got.length === 3, 5000, () => JSON.stringify(box.data()));
  assert.deepEqual(box.data(), [{ n: 1 }, { n: 2 }, { n: 3 }]);
  client.close();
});

test('a chunked SSE stream that goes silent is opened again after sseTimeout; nothing is lost', async () => {
  const rt = createRuntime('wx');
  const { client } = start(rt, { transports: ['sse'], sseTimeout: 300 });
  const box = inbox();
  const ch = uniq();
  client.subscribe(ch, box);
  await until(() => client.state.status === 'connected', 5000, 'connected');
  await send(ch, { n: 1 });
  await until(() => box.got.length === 1, 5000, 'first');
  const requests = rt.stats.requests;
  rt.freeze();
  await send(ch, { n: 2 }); // written into the silent stream
  await until(() => rt.stats.requests > requests, 5000, 'a new stream');
  await send(ch, { n: 3 });
  await until(() => box.got.length === 3, 5000, () => JSON.stringify(box.data()));
  assert.deepEqual(box.data(), [{ n: 1 }, { n: 2 }, { n: 3 }]);
  client.close();
});

test('onAppHide closes cleanly; onAppShow and a network change reconnect at once, not after the backoff', async () => {
  for (const kind of ['wx', 'my']) {
    const rt = createRuntime(kind);
    // A backoff of 20 s: only "at once" can pass within the deadlines below.
    const { client, seen } = start(rt, { transports: ['ws'], reconnect: { min: 20000, max: 20000 } });
    const box = inbox();
    const ch = uniq();
    client.subscribe(ch, box);
    await until(() => client.state.status === 'connected', 5000, 'connected');
    await sleep(100);

    const hidden = rt.hide(50);
    await until(() => client.state.status === 'paused', 1000, () => seen.states.join(' '));
    assert.equal(JSON.stringify(rt.stats.appCloses), '[1000]', 'closed (1000) on onAppHide, before the platform cut it');
    await hidden;
    await send(ch, { n: 1 }); // while in the background
    rt.show();
    await until(() => box.got.length === 1, 3000, () => `after show: ${seen.states.join(' ')}`);

    // The network drops (the client would wait 20 s to retry), and comes back.
    rt.network(false);
    await until(() => client.state.status === 'connecting', 1000, () => seen.states.join(' '));
    await send(ch, { n: 2 });
    rt.network(true);
    await until(() => box.got.length === 2, 3000, () => `after the network came back: ${seen.states.join(' ')}`);
    assert.deepEqual(box.data(), [{ n: 1 }, { n: 2 }]);
    client.close();
  }
});

// What a closed client left behind once its sockets finished closing and
// its requests ended: the timers the SDK set and that are still pending.
async function leftBehind(rt) {
  await until(() => rt.openSockets === 0 && rt.inflight === 0, 5000, () => `${rt.openSockets} sockets, ${rt.inflight} requests after close()`);
  await new Promise((r) => setImmediate(r)); // what their last events set off
  return rt.timers;
}

test('close() in onMessage leaves no timer, socket or request behind, on every transport (ack on)', async () => {
  for (const transport of ['ws', 'sse', 'poll']) {
    const rt = createRuntime('wx');
    const { client } = start(rt, { transports: [transport], ack: true });
    const box = inbox();
    let atClose = null;
    const ch = uniq();
    client.subscribe(ch, {
      onMessage(m) {
        box.onMessage(m);
        client.close();
        // What close() and the rest of this delivery armed (an ack batch,
        // a poll's pause before the next request).
        setImmediate(() => (atClose = rt.timers));
      },
    });
    await until(() => client.state.status === 'connected', 5000, `${transport}: connected`);
    await sleep(100);
    await send(ch, { n: 1 });
    await until(() => atClose !== null, 5000, `${transport}: the message`);
    assert.equal(client.state.status, 'closed');
    assert.deepEqual(atClose, [], `${transport}: timers right after close()`);
    assert.deepEqual(await leftBehind(rt), [], `${transport}: timers once closed`);
    assert.deepEqual(box.data(), [{ n: 1 }]);
  }
});

test('a connection_ack that arrives after close() or onAppHide starts no ping timer', async () => {
  for (const how of ['close', 'onAppHide']) {
    const rt = createRuntime('wx');
    const { client, seen } = start(rt, { transports: ['ws'] });
    const box = inbox();
    const ch = uniq();
    rt.hold(); // connection_ack is on its way when the app acts
    client.subscribe(ch, box);
    await until(() => rt.held > 0, 5000, 'connection_ack');
    const hidden = how === 'close' ? client.close() : rt.hide(50);
    rt.release();
    await hidden;
    assert.equal(client.state.status, how === 'close' ? 'closed' : 'paused', seen.states.join(' '));
    assert.deepEqual(await leftBehind(rt), [], `${how}: timers once the socket closed`);
    if (how === 'close') continue;
    // Shown again: one socket, one ping timer.
    rt.show();
    await until(() => client.state.status === 'connected', 5000, () => seen.states.join(' '));
    await sleep(100);
    await send(ch, { n: 1 });
    await until(() => box.got.length === 1, 5000, 'a message after show');
    assert.deepEqual(rt.timers.filter((t) => t.startsWith('setInterval')).length, 1, rt.timers.join('\n'));
    client.close();
    assert.deepEqual(await leftBehind(rt), [], 'timers after close()');
  }
});

test('storage: the cursor survives an app restart (wx and my storage APIs); nothing is replayed', async () => {
  for (const kind of ['wx', 'my']) {
    const storage = new Map(); // the phone's, kept across launches
    const ch = uniq();
    const first = start(createRuntime(kind, { storage }), { transports: ['ws'], storage: true });
    const box1 = inbox();
    first.client.subscribe(ch, box1);
    await until(() => first.client.state.status === 'connected', 5000, 'connected');
    await sleep(100);
    for (let n = 1; n <= 3; n++) await send(ch, { n });
    await until(() => box1.got.length === 3, 5000, 'three');
    first.client.close(); // the app is closed

    for (let n = 4; n <= 5; n++) await send(ch, { n });
    const second = start(createRuntime(kind, { storage }), { transports: ['poll'], storage: true });
    const box2 = inbox();
    second.client.subscribe(ch, box2);
    await until(() => box2.got.length === 2, 5000, () => JSON.stringify(box2.data()));
    await sleep(200);
    assert.deepEqual(box2.data(), [{ n: 4 }, { n: 5 }], `${kind}: only what came while the app was closed`);
    assert.equal(second.client.stats.duplicates, 0);
    assert.equal(storage.size, 1);
    second.client.close();
  }
});

test('a refused subscription gets onError (FORBIDDEN) and ends; the others go on, on every transport', async () => {
  for (const transports of [['ws'], ['sse'], ['poll']]) {
    const rt = createRuntime('wx');
    const { client } = start(rt, { transports });
    const bad = inbox();
    const good = inbox();
    client.subscribe('user:bob', bad); // alice's token cannot read it
    const ch = uniq();
    client.subscribe(ch, good);
    await until(() => bad.errors.length === 1, 5000, `${transports}: onError`);
    assert.equal(bad.errors[0].code, 'FORBIDDEN', `${transports}: ${bad.errors[0].message}`);
    await until(() => client.state.status === 'connected', 5000, 'connected');
    await sleep(100);
    await send(ch, { ok: 1 });
    await send('user:bob', { secret: 1 });
    await until(() => good.got.length === 1, 5000, 'the good one');
    await sleep(100);
    assert.equal(bad.got.length, 0);
    client.close();
  }
});
