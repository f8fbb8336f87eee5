// The SDK in mini-program runtimes (wx and my, test/helpers/miniprogram.js)
// against a real pushgate on a real Redis, through a storm: 20 forced
// disconnects, 3 server restarts (SIGTERM, SIGKILL, SIGTERM) and 5
// background cycles that cut every connection, while a backend sends
// without pause. Every client is one phone with one transport forced
// (WebSocket, chunked SSE, long-poll) and two subscriptions over three
// channels; each must hand the app every message exactly once, in order,
// and never receive one it already had (the newest cursor is what every
// reconnect resumes from).
//
// Seeded: SDK_SEED=<n> replays the chunk cuts and the storm's order.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startRedis, startServer, token, uniq, until, sleep } from './helpers/server.js';
import { createRuntime } from './helpers/miniprogram.js';
import { seededRandom } from './helpers/random.js';

const SEED = Number(process.env.SDK_SEED) || (Math.random() * 2 ** 32) >>> 0;
let redis;
let srv;
const clients = []; // closed at the end, should the test fail half-way

before(async () => {
  redis = await startRedis();
  srv = await startServer({ redisUrl: redis.url, extra: ['--history-size', '100000'] });
});
after(async () => {
  for (const c of clients) c.close();
  await srv?.stop();
  await redis?.stop();
});

// Text that cuts into every UTF-8 length, and now and then a message of
// 60 KB, so a chunk may hold several events or part of one.
function payload(k) {
  const s = `k${k} héllo 你好 🚀 ${'ж'.repeat(k % 7)}`;
  return k % 50 === 0 ? { k, s, big: '你好🚀é'.repeat(5000) } : { k, s };
}

function phone(kind, transport, i) {
  const rt = createRuntime(kind, { seed: SEED + i });
  const sdk = rt.load();
  const channels = [uniq('storm'), uniq('storm'), uniq('storm')];
  const got = Object.fromEntries(channels.map((c) => [c, []]));
  const states = [];
  const errors = [];
  const client = sdk.createClient({
    url: srv.url,
    transports: [transport],
    getToken: () => token(`phone${i}`, ['storm:*'], 3600),
    reconnect: { min: 200, max: 2000 },
  });
  clients.push(client);
  client.on('state', (s) => states.push(`${s.status}/${s.transport}`));
  client.on('error', (e) => errors.push(`${e.code}: ${e.message}`));
  const handlers = {
    onMessage: (m) => got[m.channel].push(m),
    onReset: (r) => errors.push(`reset ${JSON.stringify(r)}`),
    onError: (e) => errors.push(`subscription: ${e.code} ${e.message}`),
  };
  client.subscribe([channels[0], channels[1]], handlers);
  client.subscribe([channels[2]], handlers);
  return { name: `${kind} ${transport}`, kind, transport, rt, client, channels, got, states, errors, cutsHit: 0 };
}

test('every message once, in order, across 20 disconnects, 3 server restarts on Redis and 5 background cycles', async (t) => {
  t.diagnostic(`SDK_SEED=${SEED}`);
  const random = seededRandom(SEED);
  const phones = [
    phone('wx', 'ws', 0),
    phone('wx', 'sse', 1),
    phone('wx', 'poll', 2),
    phone('my', 'ws', 3),
    phone('my', 'poll', 4),
  ];
  const all = phones.flatMap((p) => p.channels);
  await until(() => phones.every((p) => p.client.state.status === 'connected'), 10000, () => phones.map((p) => p.states.join(' ')).join('\n'));
  // Every subscription has its start position before the first message
  // (a subscription without a cursor learns it first), so waiting for the
  // first message to arrive everywhere proves nothing is subscribed late.
  let sent = 0;
  const sendOne = async () => {
    const k = sent + 1;
    await srv.broadcast(all, payload(k), `storm-${k}`);
    sent = k;
  };
  await sendOne();
  await until(() => phones.every((p) => p.channels.every((c) => p.got[c].length === 1)), 10000, 'the first message everywhere');

  // The backend sends all the time, retrying with the same key while the
  // server is down: each message is appended exactly once.
  let sending = true;
  const sender = (async () => {
    while (sending) {
      await sendOne();
      await sleep(10);
    }
  })();

  const actions = [
    ...Array(20).fill('cut'),
    ...Array(5).fill('background'),
    'restart:SIGTERM',
    'restart:SIGKILL',
    'restart:SIGTERM',
  ];
  for (let i = actions.length - 1; i > 0; i--) {
    const j = Math.floor(random() * (i + 1));
    [actions[i], actions[j]] = [actions[j], actions[i]];
  }
  const started = Date.now();
  for (const a of actions) {
    if (a === 'cut') {
      // Each phone is cut while it has a connection (a poller may be
      // between two polls, a client waiting out its backoff).
      await Promise.all(
        phones.map(async (p) => {
          await until(() => p.rt.openSockets + p.rt.inflight > 0, 3000, `${p.name}: a connection to cut`).catch(() => {});
          p.cutsHit += p.rt.cut() > 0 ? 1 : 0;
        }),
      );
    }
    else if (a === 'background') {
      await Promise.all(phones.map((p) => p.rt.hide(50)));
      await sleep(150 + random() * 200); // messages pile up meanwhile
      for (const p of phones) p.rt.show();
    } else await srv.restart(a.split(':')[1]);
    await sleep(150 + random() * 250);
  }
  await sleep(300);
  sending = false;
  await sender;
  t.diagnostic(`storm: ${actions.length} actions in ${Date.now() - started} ms, ${sent} messages to each of ${all.length} channels`);

  for (const p of phones) {
    await until(
      () => p.channels.every((c) => p.got[c].length >= sent),
      30000,
      () => `${p.name}: ${p.channels.map((c) => p.got[c].length).join('/')} of ${sent}; states ${p.states.slice(-12).join(' ')}; errors ${p.errors.slice(-5).join(' | ')}`,
    );
  }
  t.diagnostic(`all caught up ${Date.now() - started} ms after the storm began`);
  await sleep(200); // anything more would be a duplicate
  for (const p of phones) {
    await t.test(p.name, () => {
      for (const c of p.channels) {
        const ks = p.got[c].map((m) => m.data.k);
        const want = Array.from({ length: sent }, (_, i) => i + 1);
        assert.deepEqual(ks, want, `${p.name} ${c}: every message once, in order`);
        assert.deepEqual(p.got[c].map((m) => m.id), want.map(String), `${p.name} ${c}: ids 1..${sent}`);
        const big = p.got[c].find((m) => m.data.big);
        assert.equal(big.data.big, payload(50).big, 'a 60 KB message arrives whole');
        assert.equal(p.got[c][6].data.s, payload(7).s, 'text of every UTF-8 length arrives whole');
      }
      // No event reached the client twice: each reconnect resumed from the
      // newest cursor delivered, so nothing had to be dropped as a duplicate.
      assert.equal(p.client.stats.duplicates, 0, `${p.name}: duplicates at the wire`);
      assert.equal(p.client.stats.messages, sent * 3);
      // Not every cut finds a connection to cut (a poller between polls, a
      // client waiting out its backoff), but most do.
      t.diagnostic(`${p.name}: ${p.client.stats.reconnects} sessions lost, ${p.cutsHit} cuts hit a connection`);
      assert.ok(p.cutsHit >= 18, `${p.name}: only ${p.cutsHit} cuts hit a connection`);
      assert.equal(p.states.filter((s) => s.startsWith('paused')).length, 5, `${p.name}: paused on every onAppHide`);
      assert.ok(p.states.every((s) => s.endsWith(`/${p.transport}`) || s.endsWith('/null')), `${p.name}: stayed on ${p.transport}`);
      assert.deepEqual(p.errors.filter((e) => !/^(NETWORK|DISCONNECTED|HTTP_|UNAVAILABLE)/.test(e)), [], `${p.name}: no error but lost connections`);
      assert.equal(p.rt.stats.capRefusals, 0, 'never over the 5-socket cap');
      assert.equal(p.rt.stats.singleInstance, 0, "Alipay: always a SocketTask (multiple: true)");
      if (p.transport === 'ws') {
        // One socket carries both subscriptions; a new one may open while
        // the old one is closing.
        assert.ok(p.rt.stats.maxOpen <= 2, `${p.name}: at most 2 sockets at once, saw ${p.rt.stats.maxOpen}`);
      }
      if (p.transport === 'sse') t.diagnostic(`${p.name}: ${p.rt.stats.chunks} chunks, the largest ${p.rt.stats.largestChunk} bytes`);
    });
  }
  for (const p of phones) p.client.close();
});
