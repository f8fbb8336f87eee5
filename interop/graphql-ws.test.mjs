// pushgate against the graphql-ws client (graphql-transport-ws protocol), the
// client Apollo Client, urql and Relay use for subscriptions today.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createClient } from 'graphql-ws';
import WebSocket from 'ws';
import { startServer, token, uniq, Inbox, brief, assertNoDuplicates, FEED, RFC3339_MS, sleep } from './harness.mjs';

let srv;
before(async () => { srv = await startServer({ name: 'graphql-ws' }); });
after(async () => { await srv?.stop(); });

/** A graphql-ws client that records the negotiated subprotocol. */
function client(opts = {}) {
  const sockets = [];
  class RecordingWebSocket extends WebSocket {
    constructor(...args) {
      super(...args);
      sockets.push(this);
    }
  }
  const c = createClient({
    url: srv.wsUrl,
    webSocketImpl: RecordingWebSocket,
    retryAttempts: 0,
    lazy: true,
    ...opts,
  });
  c.sockets = sockets;
  return c;
}

/**
 * Subscribes to feed; every next payload goes to the inbox (data.feed, or
 * {errors} for an execution error), sink errors make it fail.
 */
function subscribe(c, variables, label = 'feed') {
  const inbox = new Inbox(label);
  inbox.completed = false;
  inbox.unsubscribe = c.subscribe({ query: FEED, variables }, {
    next: (v) => inbox.push(v.errors ? { errors: v.errors } : v.data.feed),
    error: (err) => inbox.fail(Array.isArray(err) ? Object.assign(new Error(`graphql errors: ${JSON.stringify(err)}`), { graphqlErrors: err }) : err),
    complete: () => { inbox.completed = true; },
  });
  return inbox;
}

/** The errors a failed subscription produced, however the client surfaced them. */
async function subscriptionErrors(inbox) {
  try {
    const v = await inbox.next(5000);
    assert.ok(v.errors, `expected an error, got a feed event ${JSON.stringify(v)}`);
    return v.errors;
  } catch (err) {
    if (err.graphqlErrors) return err.graphqlErrors;
    throw err;
  }
}

test('new user: live messages in order, then history returns them; resume from a cursor', async () => {
  const ch = uniq('room');
  // A new client asks for the channel's position first and subscribes from
  // it: nothing sent after the query can be missed.
  const state = await srv.channel(ch);
  assert.deepEqual({ ...state, cursor: undefined }, { name: ch, epoch: '', lastId: null, retained: 0, firstId: null, cursor: undefined });

  const c = client();
  try {
    const inbox = subscribe(c, { ch: [ch], c: state.cursor });
    const sent = [];
    for (let i = 1; i <= 3; i++) sent.push(await srv.send(ch, { n: i, text: `hello ${i}`, nested: { ok: true, list: [i, 'x', null] } }, i === 2 ? { event: 'greeting' } : {}));
    assert.deepEqual(sent.map((m) => m.id), ['1', '2', '3']);

    const got = await inbox.take(3);
    assert.equal(c.sockets[0].protocol, 'graphql-transport-ws', 'negotiated subprotocol');
    assert.deepEqual(got.map((m) => m.__typename), ['Message', 'Message', 'Message']);
    assert.deepEqual(got.map(brief), [
      { channel: ch, id: '1', data: { n: 1, text: 'hello 1', nested: { ok: true, list: [1, 'x', null] } } },
      { channel: ch, id: '2', event: 'greeting', data: { n: 2, text: 'hello 2', nested: { ok: true, list: [2, 'x', null] } } },
      { channel: ch, id: '3', data: { n: 3, text: 'hello 3', nested: { ok: true, list: [3, 'x', null] } } },
    ]);
    assert.equal(got[0].event, null);
    for (let i = 0; i < 3; i++) {
      assert.match(got[i].createdAt, RFC3339_MS);
      assert.equal(got[i].createdAt, sent[i].createdAt, 'createdAt as send returned it');
      assert.equal(got[i].cursor, sent[i].cursor, 'a one-channel feed cursor equals the message cursor');
    }
    assert.equal(new Set(got.map((m) => m.cursor)).size, 3, 'every message has its own cursor');
    await inbox.none(200);

    // history returns the same three, oldest first, with the same cursors.
    const h = await srv.history(ch);
    assert.deepEqual(h.nodes.map(brief), got.map(brief));
    assert.deepEqual(h.nodes.map((m) => m.cursor), got.map((m) => m.cursor));
    assert.deepEqual(h.edges.map((e) => brief(e.node)), got.map(brief));
    assert.deepEqual(h.edges.map((e) => e.cursor), got.map((m) => m.cursor));
    assert.deepEqual(h.pageInfo, { hasNextPage: false, hasPreviousPage: false, startCursor: got[0].cursor, endCursor: got[2].cursor });
    const page = await srv.history(ch, { first: 2 });
    assert.deepEqual(page.nodes.map((m) => m.id), ['1', '2']);
    assert.equal(page.pageInfo.hasNextPage, true);
    const rest = await srv.history(ch, { first: 2, after: page.pageInfo.endCursor });
    assert.deepEqual(rest.nodes.map((m) => m.id), ['3']);
    assert.equal(rest.pageInfo.hasNextPage, false);
    const st = await srv.channel(ch);
    assert.equal(st.lastId, '3');
    assert.equal(st.retained, 3);

    // Resume: the cursor of message 2, the connection gone, two more sent.
    const resumeFrom = got[1].cursor;
    inbox.unsubscribe();
    await c.dispose();
    const more = [await srv.send(ch, { n: 4 }), await srv.send(ch, { n: 5 })];
    assert.deepEqual(more.map((m) => m.id), ['4', '5']);

    const c2 = client();
    try {
      const resumed = subscribe(c2, { ch: [ch], c: resumeFrom }, 'resumed feed');
      const backlog = await resumed.take(3);
      assert.deepEqual(backlog.map(brief), [
        { channel: ch, id: '3', data: { n: 3, text: 'hello 3', nested: { ok: true, list: [3, 'x', null] } } },
        { channel: ch, id: '4', data: { n: 4 } },
        { channel: ch, id: '5', data: { n: 5 } },
      ]);
      assert.equal(backlog[0].cursor, got[2].cursor);
      // ...then live ones, without gap or duplicate across the seam.
      await srv.send(ch, { n: 6 });
      const live = await resumed.next();
      assert.deepEqual(brief(live), { channel: ch, id: '6', data: { n: 6 } });
      await resumed.none(200);
      assertNoDuplicates(assert, [...backlog, live]);
    } finally {
      await c2.dispose();
    }
  } finally {
    await c.dispose();
  }
});

test('subscription without a cursor receives what is sent after it starts', async () => {
  const ch = uniq('room');
  const probe = uniq('probe');
  const c = client();
  try {
    const inbox = subscribe(c, { ch: [probe, ch] });
    // Without a cursor the feed starts "now": probe until it is live.
    let first;
    for (let i = 0; !first; i++) {
      assert.ok(i < 50, 'the subscription never became live');
      await srv.send(probe, { probe: i });
      first = await inbox.next(100).catch(() => null);
    }
    const drained = [first];
    await sleep(150);
    while (inbox.items.length) drained.push(inbox.items.shift());
    assert.ok(drained.every((m) => m.channel === probe));

    for (let i = 1; i <= 3; i++) await srv.send(ch, { i });
    const got = await inbox.take(3);
    assert.deepEqual(got.map(brief), [1, 2, 3].map((i) => ({ channel: ch, id: String(i), data: { i } })));
    await inbox.none(200);
  } finally {
    await c.dispose();
  }
});

test('auth: token in connectionParams grants room:*, a token for another channel is FORBIDDEN', async () => {
  const ch = uniq('room');
  const start = (await srv.channel(ch)).cursor;

  // A token for room:* reads room:<x>.
  const ok = client({ connectionParams: { token: token('alice', ['room:*']) } });
  try {
    const inbox = subscribe(ok, { ch: [ch], c: start });
    await srv.send(ch, { hi: 'alice' });
    assert.deepEqual(brief(await inbox.next()), { channel: ch, id: '1', data: { hi: 'alice' } });
  } finally {
    await ok.dispose();
  }

  // A token for other:* does not.
  const denied = client({ connectionParams: { token: token('bob', ['other:*']) } });
  try {
    const inbox = subscribe(denied, { ch: [ch], c: start }, 'forbidden feed');
    const errors = await subscriptionErrors(inbox);
    assert.equal(errors.length, 1, JSON.stringify(errors));
    assert.equal(errors[0].extensions?.code, 'FORBIDDEN', JSON.stringify(errors));
    assert.match(errors[0].message, new RegExp(ch));
  } finally {
    await denied.dispose();
  }

  // The same token as ?token= on the URL (for clients that cannot send a payload).
  const viaQuery = client({ url: `${srv.wsUrl}?token=${token('carol', ['room:*'])}` });
  try {
    const inbox = subscribe(viaQuery, { ch: [ch], c: start });
    assert.deepEqual(brief(await inbox.next()), { channel: ch, id: '1', data: { hi: 'alice' } });
  } finally {
    await viaQuery.dispose();
  }

  // An expired token is UNAUTHENTICATED; user:<x> needs x's token.
  const expired = client({ connectionParams: { token: token('alice', ['room:*'], -60) } });
  try {
    const errors = await subscriptionErrors(subscribe(expired, { ch: [ch] }, 'expired feed'));
    assert.equal(errors[0].extensions?.code, 'UNAUTHENTICATED', JSON.stringify(errors));
  } finally {
    await expired.dispose();
  }
  const other = client({ connectionParams: { token: token('bob', ['user:*']) } });
  try {
    const errors = await subscriptionErrors(subscribe(other, { ch: ['user:alice'] }, 'user feed'));
    assert.equal(errors[0].extensions?.code, 'FORBIDDEN', JSON.stringify(errors));
  } finally {
    await other.dispose();
  }
});
