// pushgate's GET /events against a WHATWG EventSource: the npm `eventsource`
// package v4 (spec-compliant, built on fetch; v5 needs Node 22). What H5
// pages run in browsers, with the same reconnection rules.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { EventSource } from 'eventsource';
import { startServer, token, uniq, Inbox, assertNoDuplicates, RFC3339_MS, sleep } from './harness.mjs';

let srv;
before(async () => { srv = await startServer({ name: 'eventsource' }); });
after(async () => { await srv?.stop(); });

function eventsUrl(s, channels, params = {}) {
  const u = new URL('/events', s.url);
  for (const ch of channels) u.searchParams.append('channel', ch);
  for (const [k, v] of Object.entries(params)) u.searchParams.set(k, v);
  return u.href;
}

/**
 * A fetch for EventSource that records each request's headers and lets the
 * test cut the current response (as a network drop would): the body ends,
 * EventSource reconnects after the server's retry: delay with Last-Event-ID.
 */
function recordingFetch(extraHeaders = {}) {
  const requests = [];
  let cutCurrent = null;
  const f = async (url, init) => {
    const headers = { ...init.headers, ...extraHeaders };
    requests.push({ url: String(url), headers });
    const res = await fetch(url, { ...init, headers });
    if (!res.body) return res;
    const reader = res.body.getReader();
    let ctrl;
    const body = new ReadableStream({
      start(c) { ctrl = c; },
      async pull(c) {
        try {
          const { done, value } = await reader.read();
          if (done) c.close();
          else c.enqueue(value);
        } catch { /* cut */ }
      },
      cancel(reason) { return reader.cancel(reason); },
    });
    cutCurrent = () => {
      try { ctrl.close(); } catch { /* already closed */ }
      reader.cancel().catch(() => {});
    };
    return new Response(body, { status: res.status, statusText: res.statusText, headers: res.headers });
  };
  f.requests = requests;
  f.cut = () => cutCurrent?.();
  return f;
}

/** Opens an EventSource; messages and resets go to one inbox, in order. */
function open(url, init) {
  const es = new EventSource(url, init);
  const inbox = new Inbox(`EventSource ${url}`);
  es.opens = 0;
  es.errors = [];
  es.onopen = () => { es.opens++; };
  es.onerror = (e) => { es.errors.push({ code: e.code, message: e.message, readyState: es.readyState }); };
  es.onmessage = (e) => inbox.push({ type: e.type, lastEventId: e.lastEventId, data: JSON.parse(e.data) });
  es.addEventListener('reset', (e) => inbox.push({ type: e.type, lastEventId: e.lastEventId, data: JSON.parse(e.data) }));
  es.inbox = inbox;
  es.opened = new Promise((resolve, reject) => {
    es.addEventListener('open', resolve, { once: true });
    es.addEventListener('error', (e) => { if (es.readyState === EventSource.CLOSED) reject(new Error(`EventSource failed: ${e.code} ${e.message}`)); }, { once: true });
  });
  return es;
}

/** What an SSE message event's data must be for a sent message. */
function wire(m) {
  const out = { channel: m.channel, id: m.id, data: m.data, createdAt: m.createdAt };
  if (m.event != null) out.event = m.event;
  return out;
}

test('EventSource: onmessage gets each message; lastEventId is its cursor; resume by ?cursor= and Last-Event-ID', async () => {
  const ch = uniq('room');
  const { cursor: start } = await srv.channel(ch);
  const es = open(eventsUrl(srv, [ch], { cursor: start }));
  let sent;
  try {
    const named = [];
    es.addEventListener('greeting', (e) => named.push(e)); // a message's event is data, not an SSE event type
    await es.opened;
    sent = [];
    sent.push(await srv.send(ch, { n: 1, text: 'line1\nline2' }));
    sent.push(await srv.send(ch, { n: 2 }, { event: 'greeting' }));
    sent.push(await srv.send(ch, 'just a string'));
    const got = await es.inbox.take(3);
    assert.deepEqual(got, sent.map((m) => ({ type: 'message', lastEventId: m.cursor, data: wire(m) })));
    assert.equal(Object.hasOwn(got[0].data, 'event'), false, 'no "event" key for a message without one');
    assert.match(got[0].data.createdAt, RFC3339_MS);
    await es.inbox.none(200);
    assert.equal(named.length, 0, 'no SSE event: field on messages');
    assert.deepEqual(es.errors, []);
  } finally {
    es.close();
  }
  const last = sent[2].cursor;

  // Missed while closed: two more.
  const missed = [await srv.send(ch, { n: 4 }), await srv.send(ch, { n: 5 })];

  // A new EventSource from ?cursor=.
  const byParam = open(eventsUrl(srv, [ch], { cursor: last }));
  try {
    const got = await byParam.inbox.take(2);
    assert.deepEqual(got, missed.map((m) => ({ type: 'message', lastEventId: m.cursor, data: wire(m) })));
    await byParam.inbox.none(200);
  } finally {
    byParam.close();
  }

  // A new EventSource with a Last-Event-ID header (and a stale ?cursor=,
  // which the header overrides).
  const f = recordingFetch({ 'Last-Event-ID': last });
  const byHeader = open(eventsUrl(srv, [ch], { cursor: start }), { fetch: f });
  try {
    const got = await byHeader.inbox.take(2);
    assert.deepEqual(got, missed.map((m) => ({ type: 'message', lastEventId: m.cursor, data: wire(m) })));
    const live = await srv.send(ch, { n: 6 });
    assert.deepEqual(await byHeader.inbox.next(), { type: 'message', lastEventId: live.cursor, data: wire(live) });
    await byHeader.inbox.none(200);
    assert.equal(f.requests.length, 1);
    assert.equal(f.requests[0].headers['Last-Event-ID'], last);
  } finally {
    byHeader.close();
  }
});

test('the stream starts with retry: and an id-only block naming the start position', async () => {
  const ch = uniq('room');
  const { cursor } = await srv.channel(ch);
  const ctrl = new AbortController();
  const res = await fetch(eventsUrl(srv, [ch]), { headers: { Accept: 'text/event-stream' }, signal: ctrl.signal });
  try {
    assert.equal(res.status, 200);
    assert.match(res.headers.get('content-type'), /^text\/event-stream/);
    assert.equal(res.headers.get('cache-control'), 'no-cache');
    const reader = res.body.getReader();
    let text = '';
    while (!text.includes('\n\n')) {
      const { value, done } = await reader.read();
      assert.ok(!done, 'stream ended early');
      text += Buffer.from(value).toString('utf8');
    }
    assert.equal(text, `retry: 2000\nid: ${cursor}\n\n`);
  } finally {
    ctrl.abort();
  }
});

test('EventSource reconnects by itself after a drop and resumes with Last-Event-ID', async (t) => {
  const ch = uniq('room');
  const { cursor: start } = await srv.channel(ch);
  const f = recordingFetch();
  // The URL carries the start cursor. (A browser would also remember the
  // stream's id-only first block as its last event ID; the npm eventsource
  // package does not -- its parser drops blocks without data, see
  // eventsource-parser dispatchEvent -- so without ?cursor= a drop before
  // the first message would resume "now" and lose what was sent meanwhile.)
  const es = open(eventsUrl(srv, [ch], { cursor: start }), { fetch: f });
  try {
    await es.opened;
    await sleep(100);
    // Drop before any message: the reconnection (after the server's
    // retry: 2000) starts from the URL's cursor.
    f.cut();
    const gap1 = await srv.send(ch, { during: 'gap 1' });
    const r1 = await es.inbox.next(6000);
    assert.deepEqual(r1, { type: 'message', lastEventId: gap1.cursor, data: wire(gap1) });
    assert.equal(f.requests.length, 2);
    assert.equal(es.opens, 2);
    if (!f.requests[1].headers['Last-Event-ID']) {
      t.diagnostic('npm eventsource did not send the id-only block as Last-Event-ID (known client deviation)');
    }

    const live = await srv.send(ch, { live: 2 });
    assert.deepEqual(await es.inbox.next(), { type: 'message', lastEventId: live.cursor, data: wire(live) });

    // Drop after messages: the reconnection sends Last-Event-ID, which wins
    // over the URL's older cursor, so nothing is delivered twice.
    f.cut();
    const gap2 = [await srv.send(ch, { during: 'gap 2', k: 1 }), await srv.send(ch, { during: 'gap 2', k: 2 })];
    const r2 = await es.inbox.take(2, 6000);
    assert.deepEqual(r2, gap2.map((m) => ({ type: 'message', lastEventId: m.cursor, data: wire(m) })));
    assert.equal(f.requests.length, 3);
    assert.equal(f.requests[2].headers['Last-Event-ID'], live.cursor);
    assert.equal(es.opens, 3);
    await es.inbox.none(200);
    const all = [r1, { data: wire(live) }, ...r2].map((e) => e.data);
    assertNoDuplicates(assert, all);
    assert.deepEqual(all.map((m) => m.id), ['1', '2', '3', '4']);
  } finally {
    es.close();
  }
});

test('EventSource: ?token= grants room:*; a token for another channel fails with 403 and a JSON error', async () => {
  const ch = uniq('room');
  const { cursor } = await srv.channel(ch);
  const es = open(eventsUrl(srv, [ch], { cursor, token: token('alice', ['room:*']) }));
  try {
    await es.opened;
    const m = await srv.send(ch, { hi: 'alice' });
    assert.deepEqual(await es.inbox.next(), { type: 'message', lastEventId: m.cursor, data: wire(m) });
  } finally {
    es.close();
  }

  const badUrl = eventsUrl(srv, [ch], { token: token('bob', ['other:*']) });
  const denied = open(badUrl);
  await assert.rejects(denied.opened, /403/);
  assert.equal(denied.readyState, EventSource.CLOSED, 'a non-200 answer fails the EventSource for good');
  denied.close();
  const res = await fetch(badUrl, { headers: { Accept: 'text/event-stream' } });
  assert.equal(res.status, 403);
  assert.match(res.headers.get('content-type'), /^application\/json/);
  const body = await res.json();
  assert.equal(body.error.code, 'FORBIDDEN');
  assert.equal(typeof body.error.message, 'string');
});

test('EventSource: a cursor older than retention gets a reset event, then the retained messages', async () => {
  const small = await startServer({ name: 'eventsource-history5', extraArgs: ['--history-size', '5'] });
  try {
    const ch = uniq('room');
    const first = await small.send(ch, { n: 1 });
    const sent = [first];
    for (let i = 2; i <= 9; i++) sent.push(await small.send(ch, { n: i }));
    const es = open(eventsUrl(small, [ch], { cursor: first.cursor }));
    let resetCursor;
    try {
      const reset = await es.inbox.next();
      resetCursor = reset.lastEventId;
      assert.equal(reset.type, 'reset');
      assert.deepEqual(reset.data, { channel: ch, reason: 'expired', cursor: reset.lastEventId });
      const retained = await es.inbox.take(5);
      assert.deepEqual(retained, sent.slice(4).map((m) => ({ type: 'message', lastEventId: m.cursor, data: wire(m) })));
      const live = await small.send(ch, { n: 10 });
      assert.deepEqual(await es.inbox.next(), { type: 'message', lastEventId: live.cursor, data: wire(live) });
      await es.inbox.none(200);
    } finally {
      es.close();
    }
    // Message 10 pushed message 5 out too: the reset's cursor (right
    // before 5) is now too old as well and resets again; the cursor of a
    // retained message resumes without a reset.
    const again = open(eventsUrl(small, [ch], { cursor: resetCursor }));
    try {
      const got = await again.inbox.take(6);
      assert.equal(got[0].type, 'reset');
      assert.deepEqual(got[0].data, { channel: ch, reason: 'expired', cursor: got[0].lastEventId });
      assert.deepEqual(got.slice(1).map((e) => e.data.id), ['6', '7', '8', '9', '10']);
      await again.inbox.none(200);
    } finally {
      again.close();
    }
    const fromSix = open(eventsUrl(small, [ch], { cursor: sent[5].cursor }));
    try {
      const got = await fromSix.inbox.take(4);
      assert.deepEqual(got.map((e) => [e.type, e.data.id]), [['message', '7'], ['message', '8'], ['message', '9'], ['message', '10']]);
      await fromSix.inbox.none(200);
    } finally {
      fromSix.close();
    }
  } finally {
    await small.stop();
  }
});
