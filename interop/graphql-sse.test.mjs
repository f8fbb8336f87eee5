// pushgate against the graphql-sse client in "distinct connections mode"
// (singleConnection: false): every operation is its own
// POST /graphql with Accept: text/event-stream, answered with `next` events
// and a final `complete`.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createClient } from 'graphql-sse';
import { startServer, token, uniq, Inbox, brief, assertNoDuplicates, FEED, RFC3339_MS } from './harness.mjs';

let srv;
before(async () => { srv = await startServer({ name: 'graphql-sse' }); });
after(async () => { await srv?.stop(); });

function client(opts = {}) {
  const events = []; // every stream message the client parsed: { event, data }
  const c = createClient({
    url: srv.graphqlUrl,
    singleConnection: false,
    retryAttempts: 0,
    onMessage: (m) => events.push(m),
    ...opts,
  });
  c.events = events;
  return c;
}

function subscribe(c, query, variables, label = 'feed') {
  const inbox = new Inbox(label);
  inbox.completed = false;
  inbox.unsubscribe = c.subscribe({ query, variables }, {
    next: (v) => inbox.push(v.errors ? { errors: v.errors } : (v.data.feed ?? v.data)),
    error: (err) => inbox.fail(err instanceof Error ? err : new Error(`graphql-sse error: ${JSON.stringify(err)}`)),
    complete: () => { inbox.completed = true; inbox.push({ complete: true }); },
  });
  return inbox;
}

test('graphql-sse: feed delivers messages in order, resumes from a cursor', async () => {
  const ch = uniq('room');
  const { cursor: start } = await srv.channel(ch);
  const c = client({ headers: { Authorization: `Bearer ${token('alice', ['room:*'])}` } });
  let got;
  try {
    const inbox = subscribe(c, FEED, { ch: [ch], c: start });
    const sent = [];
    for (let i = 1; i <= 3; i++) sent.push(await srv.send(ch, { n: i, zh: '你好' }));
    got = await inbox.take(3);
    assert.deepEqual(got.map((m) => m.__typename), ['Message', 'Message', 'Message']);
    assert.deepEqual(got.map(brief), [1, 2, 3].map((i) => ({ channel: ch, id: String(i), data: { n: i, zh: '你好' } })));
    for (let i = 0; i < 3; i++) {
      assert.match(got[i].createdAt, RFC3339_MS);
      assert.equal(got[i].cursor, sent[i].cursor);
      assert.equal(got[i].event, null);
    }
    await inbox.none(200);
    assert.deepEqual(c.events.map((e) => e.event), ['next', 'next', 'next'], 'the stream carries graphql-sse "next" events');
    inbox.unsubscribe();
  } finally {
    c.dispose();
  }

  await srv.send(ch, { n: 4 });
  const c2 = client({ url: `${srv.graphqlUrl}?token=${token('alice', ['room:*'])}` });
  try {
    const inbox = subscribe(c2, FEED, { ch: [ch], c: got[0].cursor }, 'resumed feed');
    const backlog = await inbox.take(3);
    assert.deepEqual(backlog.map((m) => m.id), ['2', '3', '4']);
    assert.deepEqual(brief(backlog[2]), { channel: ch, id: '4', data: { n: 4 } });
    await srv.send(ch, { n: 5 });
    const live = await inbox.next();
    assert.deepEqual(brief(live), { channel: ch, id: '5', data: { n: 5 } });
    await inbox.none(200);
    assertNoDuplicates(assert, [got[0], ...backlog, live]);
    inbox.unsubscribe();
  } finally {
    c2.dispose();
  }
});

test('graphql-sse: a query is one next then complete; a forbidden feed is an error with FORBIDDEN', async () => {
  const ch = uniq('room');
  await srv.send(ch, { x: 1 });
  const c = client({ headers: { Authorization: `Bearer ${token('bob', ['other:*', 'room:*'])}` } });
  try {
    const q = subscribe(c, 'query($n: String!){ channel(name: $n){ name lastId retained } }', { n: ch }, 'query');
    assert.deepEqual(await q.next(), { channel: { name: ch, lastId: '1', retained: 1 } });
    assert.deepEqual(await q.next(), { complete: true });
  } finally {
    c.dispose();
  }

  const denied = client({ headers: { Authorization: `Bearer ${token('bob', ['other:*'])}` } });
  try {
    const inbox = subscribe(denied, FEED, { ch: [ch] }, 'forbidden feed');
    const v = await inbox.next();
    assert.ok(v.errors, `expected errors, got ${JSON.stringify(v)}`);
    assert.equal(v.errors.length, 1);
    assert.equal(v.errors[0].extensions?.code, 'FORBIDDEN', JSON.stringify(v.errors));
    assert.deepEqual(await inbox.next(), { complete: true });
  } finally {
    denied.dispose();
  }
});
