// pushgate as a WeChat mini-program meets it: the mini-program code in
// wx-miniprogram.mjs, run against the wx API shim in wx-shim.mjs (one
// multiplexed graphql-transport-ws socket; long-poll with wx.request; SSE
// through a chunked wx.request cut into random 1..50-byte ArrayBuffers).
//
// The chunk split is seeded: set WX_SEED=<n> to replay a run (the seed is
// printed as a diagnostic).

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { createWx } from './wx-shim.mjs';
import { utf8Decode, graphqlRequest, createSocketClient, startPolling, openChunkedEvents, parseSSEBlock } from './wx-miniprogram.mjs';
import { startServer, token, uniq, Inbox, brief, assertNoDuplicates, FEED, MESSAGE_FIELDS, sleep, RFC3339_MS } from './harness.mjs';

const SEED = process.env.WX_SEED ? Number(process.env.WX_SEED) : (Math.random() * 2 ** 32) >>> 0;

let srv;
before(async () => { srv = await startServer({ name: 'wx' }); });
after(async () => { await srv?.stop(); });

/** What an SSE/long-poll message is on the wire for a sent message. */
function wire(m) {
  const out = { channel: m.channel, id: m.id, data: m.data, createdAt: m.createdAt };
  if (m.event != null) out.event = m.event;
  return out;
}

function headerGet(headers, name) {
  for (const k of Object.keys(headers || {})) if (k.toLowerCase() === name.toLowerCase()) return headers[k];
  return undefined;
}

test('the mini-program code uses no API a mini-program lacks', () => {
  const src = readFileSync(new URL('./wx-miniprogram.mjs', import.meta.url), 'utf8')
    .replace(/\/\*[\s\S]*?\*\//g, '')
    .replace(/\/\/.*$/gm, '');
  for (const name of ['TextDecoder', 'TextEncoder', 'Buffer', 'fetch', 'EventSource', 'WebSocket', 'require', 'import', 'process', 'XMLHttpRequest']) {
    assert.doesNotMatch(src, new RegExp(`\\b${name}\\b`), `mini-program code must not use ${name}`);
  }
});

test('the hand-written UTF-8 decoder agrees with TextDecoder', () => {
  const samples = ['', 'ascii', 'é ß Ж ع ह', '你好，世界', '🚀🎉👍🏽𝄞', '\u0000\u007f\u0080\u07ff\u0800\uffff', '\u{10000}\u{10ffff}', 'a\u2028b'];
  for (const s of samples) {
    const bytes = new Uint8Array(Buffer.from(s, 'utf8'));
    assert.equal(utf8Decode(bytes), s);
  }
  const big = '你好🚀'.repeat(5000);
  assert.equal(utf8Decode(new Uint8Array(Buffer.from(big, 'utf8'))), big);
  // Invalid input becomes U+FFFD as TextDecoder does for these cases.
  for (const bad of [[0xff], [0xc0, 0x80], [0xe4, 0xbd], [0xed, 0xa0, 0x80], [0x80]]) {
    const b = new Uint8Array(bad);
    assert.equal(utf8Decode(b).replace(/\ufffd+/g, '?'), new TextDecoder().decode(b).replace(/\ufffd+/g, '?'), JSON.stringify(bad));
  }
});

test('(a) one wx.connectSocket carries graphql-transport-ws subscriptions to 2 channels', async (t) => {
  const wx = createWx({ seed: SEED });
  const tok = token('alice', ['room:*']);
  const a = uniq('room');
  const b = uniq('room');
  // The mini-program asks for both channels' positions, then subscribes from them.
  const state = await graphqlRequest(wx, srv.url, tok, 'query($a: String!, $b: String!){ a: channel(name: $a){ cursor } b: channel(name: $b){ cursor } }', { a, b });
  assert.ok(state.data, JSON.stringify(state));

  const client = createSocketClient(wx, { url: srv.wsUrl, token: tok });
  try {
    await client.connect();
    // WeChat fails the handshake unless the protocol is echoed.
    assert.equal(headerGet(client.openHeader, 'Sec-WebSocket-Protocol'), 'graphql-transport-ws');
    assert.equal(client.task.protocol, 'graphql-transport-ws');
    assert.equal(wx.stats.sockets, 1);

    const ia = new Inbox('channel a');
    const ib = new Inbox('channel b');
    const handlers = (inbox) => ({
      next: (p) => inbox.push(p.errors ? { errors: p.errors } : p.data.feed),
      error: (errs) => inbox.fail(new Error(JSON.stringify(errs))),
      complete: () => inbox.push({ complete: true }),
    });
    const ida = client.subscribe(FEED, { ch: [a], c: state.data.a.cursor }, handlers(ia));
    const idb = client.subscribe(FEED, { ch: [b], c: state.data.b.cursor }, handlers(ib));
    assert.notEqual(ida, idb);

    const sent = [];
    sent.push(await srv.send(a, { to: 'a', n: 1, text: '你好' }));
    sent.push(await srv.send(b, { to: 'b', n: 1 }, { event: 'order.paid' }));
    sent.push(await srv.send(a, { to: 'a', n: 2 }));
    sent.push(...await srv.broadcast([a, b], { to: 'both' }, { event: 'notice' }));
    sent.push(await srv.send(b, { to: 'b', n: 3, emoji: '🎉' }));

    const gotA = await ia.take(3);
    const gotB = await ib.take(3);
    assert.deepEqual(gotA.map(brief), sent.filter((m) => m.channel === a).map(brief));
    assert.deepEqual(gotB.map(brief), sent.filter((m) => m.channel === b).map(brief));
    assert.deepEqual(gotA.map((m) => m.id), ['1', '2', '3']);
    assert.deepEqual(gotB.map((m) => m.id), ['1', '2', '3']);
    assert.deepEqual(gotB.map((m) => m.cursor), sent.filter((m) => m.channel === b).map((m) => m.cursor));

    // Unsubscribing one leaves the other live on the same socket.
    client.unsubscribe(ida);
    await srv.send(a, { to: 'a', n: 4 });
    const lastB = await srv.send(b, { to: 'b', n: 4 });
    assert.deepEqual(brief(await ib.next()), brief(lastB));
    await ia.none(200);
    await ib.none(100);
    assert.equal(wx.stats.sockets, 1, 'everything on one socket');
    assert.deepEqual(client.errors, []);
    t.diagnostic(`seed ${SEED}`);
  } finally {
    client.close();
  }

  // A protocol the server does not echo fails the handshake, as on WeChat.
  const errors = [];
  let opened = false;
  const closed = new Promise((resolve) => {
    const task = wx.connectSocket({ url: srv.wsUrl, protocols: ['not-a-graphql-protocol'] });
    task.onOpen(() => { opened = true; });
    task.onError((e) => errors.push(e.errMsg));
    task.onClose(resolve);
  });
  await closed;
  assert.equal(opened, false);
  assert.equal(errors.length, 1);
  assert.match(errors[0], /subprotocol/i);
});

test('(b) a wx.request long-poll loop receives 50 messages sent while it polls, in order, once each', async () => {
  const wx = createWx({ seed: SEED });
  const a = uniq('room');
  const b = uniq('room');
  const received = [];
  const resets = [];
  let onMore = () => {};
  const loop = startPolling(wx, {
    base: srv.url,
    channels: [a, b],
    timeout: 2,
    token: token('alice', ['room:*']),
    onMessages: (ms) => { received.push(...ms); onMore(); },
    onReset: (r) => resets.push(r),
  });
  try {
    // The first poll has no cursor and is answered at once.
    const t0 = Date.now();
    while (loop.answers.length === 0) {
      assert.ok(Date.now() - t0 < 5000, `no first answer: ${JSON.stringify(loop.failures)}`);
      await sleep(10);
    }
    assert.deepEqual({ ...loop.answers[0], ms: undefined, cursor: undefined }, { hadCursor: false, ms: undefined, n: 0, cursor: undefined });
    assert.ok(loop.answers[0].ms < 1000, `the cursor-less poll took ${loop.answers[0].ms} ms`);

    const sent = [];
    for (let i = 1; i <= 50; i++) {
      sent.push(await srv.send(i % 3 === 0 ? b : a, { i, s: '消息' + i }));
      if (i % 7 === 0) await sleep(Math.floor(Math.random() * 120)); // some arrive in a held poll, some between polls
    }
    await new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`only ${received.length} of 50 within 15 s; failures ${JSON.stringify(loop.failures)}`)), 15_000);
      onMore = () => { if (received.length >= 50) { clearTimeout(timer); resolve(); } };
      onMore();
    });
    await sleep(100);
    assert.equal(received.length, 50);
    assertNoDuplicates(assert, received);
    for (const ch of [a, b]) {
      assert.deepEqual(received.filter((m) => m.channel === ch), sent.filter((m) => m.channel === ch).map(wire), `channel ${ch} in order`);
    }
    assert.deepEqual(resets, []);
    assert.deepEqual(loop.failures, []);
    for (const m of received) assert.match(m.createdAt, RFC3339_MS);

    // Nothing more: the next poll is held for the 2 s timeout and comes back
    // empty with the same cursor.
    const before = loop.answers.length;
    const cursor = loop.cursor();
    const deadline = Date.now() + 6000;
    while (loop.answers.length === before) {
      assert.ok(Date.now() < deadline, 'the held poll never came back');
      await sleep(20);
    }
    const held = loop.answers[before];
    assert.equal(held.n, 0);
    assert.equal(held.cursor, cursor);
    assert.ok(held.ms >= 1500 && held.ms < 5000, `held ${held.ms} ms for timeout=2`);
    assert.equal(received.length, 50);
  } finally {
    loop.stop();
  }
});

test('(b2) long-poll pages a backlog with limit, without gap or duplicate', async () => {
  const wx = createWx({ seed: SEED });
  const ch = uniq('room');
  const { cursor: start } = await srv.channel(ch);
  const sent = [];
  for (let i = 1; i <= 5; i++) sent.push(await srv.send(ch, { i }));
  const get = (params) => new Promise((resolve, reject) => wx.request({
    url: `${srv.url}/poll`,
    data: params,
    success: resolve,
    fail: (e) => reject(new Error(e.errMsg)),
  }));
  let cursor = start;
  const pages = [];
  for (let k = 0; k < 3; k++) {
    const t0 = Date.now();
    const res = await get({ channel: ch, cursor, limit: 2, timeout: 2 });
    assert.equal(res.statusCode, 200, JSON.stringify(res.data));
    assert.ok(Date.now() - t0 < 1000, 'a poll with a backlog answers at once');
    assert.equal(res.data.reset, null);
    pages.push(res.data.messages);
    cursor = res.data.cursor;
  }
  assert.deepEqual(pages.map((p) => p.map((m) => m.id)), [['1', '2'], ['3', '4'], ['5']]);
  assert.deepEqual(pages.flat(), sent.map(wire));
  assert.equal(cursor, sent[4].cursor, 'the last page ends at the cursor of the last message');

  // Plain-HTTP errors are 4xx JSON {error:{code,message}}, and a success callback on WeChat.
  const bad = await get({ channel: ch, cursor: 'not a cursor!' });
  assert.equal(bad.statusCode, 400);
  assert.equal(bad.data.error.code, 'BAD_USER_INPUT');
  const denied = await get({ channel: ch, token: token('bob', ['other:*']) });
  assert.equal(denied.statusCode, 403);
  assert.equal(denied.data.error.code, 'FORBIDDEN');
});

test('(b3) GET /poll?timeout=0 with a cursor answers at once with the retained messages', async () => {
  const wx = createWx({ seed: SEED });
  const ch = uniq('room');
  const { cursor: start } = await srv.channel(ch);
  const sent = [await srv.send(ch, { i: 1 }), await srv.send(ch, { i: 2 })];
  const res = await new Promise((resolve, reject) => wx.request({
    url: `${srv.url}/poll`,
    data: { channel: ch, cursor: start, timeout: 0 },
    success: resolve,
    fail: (e) => reject(new Error(e.errMsg)),
  }));
  assert.equal(res.statusCode, 200);
  assert.deepEqual(res.data, { messages: sent.map(wire), cursor: sent[1].cursor, reset: null });
});

test('(c) SSE through a chunked wx.request: every event reassembled exactly from random 1..50-byte chunks', async (t) => {
  const wx = createWx({ seed: SEED, chunkMin: 1, chunkMax: 50 });
  t.diagnostic(`seed ${SEED}`);
  const ch = uniq('room');
  const tok = token('alice', ['room:*']);
  const { cursor: start } = await srv.channel(ch);
  const events = new Inbox('mini-program SSE events');
  const firstBytes = [];
  const es = openChunkedEvents(wx, { base: srv.url, channels: [ch], cursor: start, token: tok, onEvent: (ev) => events.push(ev) });
  es.task.onChunkReceived((res) => firstBytes.push(new Uint8Array(res.data)[0]));

  // A reference reader of the same stream (Node's own decoding), to compare
  // the reassembled events against byte for byte.
  const ctrl = new AbortController();
  const refRes = await fetch(`${srv.url}/events?channel=${encodeURIComponent(ch)}&cursor=${start}`, {
    headers: { Accept: 'text/event-stream', Authorization: `Bearer ${tok}` },
    signal: ctrl.signal,
  });
  const refEvents = new Inbox('reference SSE events');
  (async () => {
    let text = '';
    const decoder = new TextDecoder();
    try {
      for await (const chunk of refRes.body) {
        text += decoder.decode(chunk, { stream: true });
        let i;
        while ((i = text.indexOf('\n\n')) >= 0) {
          refEvents.push(text.slice(0, i));
          text = text.slice(i + 2);
        }
      }
    } catch { /* aborted */ }
  })();

  try {
    const first = await events.next();
    assert.equal(es.stats.statusCode, 200);
    assert.match(headerGet(es.stats.headers, 'Content-Type'), /^text\/event-stream/);
    assert.deepEqual(first, { id: start, event: undefined, data: undefined, retry: 2000, comments: [] });

    const payloads = [
      [{ text: '你好，世界！'.repeat(120) }, {}],
      [{ emoji: '🚀🎉👍🏽'.repeat(40) }, { event: 'party' }],
      ['plain string', {}],
      [{ mixed: 'é ß Ж ع ह 𝄞 \u2028 line\nbreak tab\t quote" backslash\\ <script>' }, {}],
      [[1, 2.5, -3e21, true, false, null, { deep: [{ x: '中' }] }], {}],
      [{ long: 'x'.repeat(3000) + '尾' }, { event: 'big' }],
    ];
    for (let i = 0; i < 20; i++) payloads.push([{ i, zh: '第' + i + '条' }, {}]);
    const sent = [];
    for (const [data, o] of payloads) sent.push(await srv.send(ch, data, o));

    const got = await events.take(sent.length, 10_000);
    // Each event: id = the message's cursor, no event: field, data = the message JSON.
    assert.deepEqual(got.map((e) => ({ id: e.id, event: e.event, data: JSON.parse(e.data), retry: e.retry, comments: e.comments })),
      sent.map((m) => ({ id: m.cursor, event: undefined, data: wire(m), retry: undefined, comments: [] })));
    // ...and exactly the blocks the server sent, character for character.
    const ref = await refEvents.take(sent.length + 1, 10_000);
    assert.deepEqual([first, ...got], ref.map(parseSSEBlock));
    await events.none(200);
    assertNoDuplicates(assert, got.map((e) => JSON.parse(e.data)));

    // The split was real: many small pieces, some cutting a UTF-8 sequence.
    assert.ok(wx.stats.chunks.length > sent.length * 3, `${wx.stats.chunks.length} chunks`);
    assert.ok(wx.stats.chunks.every((n) => n >= 1 && n <= 50));
    assert.equal(es.stats.chunks, wx.stats.chunks.length);
    assert.ok(firstBytes.slice(1).some((b0) => (b0 & 0xc0) === 0x80), 'some chunk starts inside a multi-byte character');
  } finally {
    es.abort();
    ctrl.abort();
  }
});
