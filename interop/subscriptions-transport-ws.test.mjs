// pushgate against Apollo's legacy subscriptions-transport-ws client
// (SubscriptionClient, the "graphql-ws" subprotocol), still shipped by many
// Apollo Client 2/3 apps and GraphQL IDEs.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { SubscriptionClient } from 'subscriptions-transport-ws';
import WebSocket from 'ws';
import { startServer, token, uniq, Inbox, brief, assertNoDuplicates, FEED, RFC3339_MS } from './harness.mjs';

let srv;
before(async () => { srv = await startServer({ name: 'subscriptions-transport-ws' }); });
after(async () => { await srv?.stop(); });

/** A connected SubscriptionClient (connection_ack received). */
async function connect(connectionParams) {
  const c = new SubscriptionClient(srv.wsUrl, { reconnect: false, lazy: false, connectionParams, timeout: 5000 }, WebSocket);
  await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('no connection_ack within 5 s')), 5000);
    c.onConnected(() => { clearTimeout(timer); resolve(); });
    c.onError((err) => { clearTimeout(timer); reject(err instanceof Error ? err : new Error(`socket error: ${err?.message ?? err?.type ?? err}`)); });
  });
  return c;
}

/** Subscribes to feed; next payloads go to the inbox ({errors} on execution errors). */
function subscribe(c, variables, label = 'feed') {
  const inbox = new Inbox(label);
  inbox.completed = false;
  const sub = c.request({ query: FEED, variables }).subscribe({
    next: (v) => inbox.push(v.errors ? { errors: v.errors } : v.data.feed),
    error: (err) => inbox.fail(Object.assign(new Error(`subscription error: ${JSON.stringify(err)}`), { graphqlErrors: [err] })),
    complete: () => { inbox.completed = true; },
  });
  inbox.unsubscribe = () => sub.unsubscribe();
  return inbox;
}

test('legacy graphql-ws protocol: live messages in order, then resume from a cursor', async () => {
  const ch = uniq('room');
  const { cursor: start } = await srv.channel(ch);

  const c = await connect({ token: token('alice', ['room:*']) });
  let resumeFrom;
  let got;
  try {
    assert.equal(c.client.protocol, 'graphql-ws', 'the server echoes the legacy subprotocol');
    const inbox = subscribe(c, { ch: [ch], c: start });
    const sent = [];
    for (let i = 1; i <= 3; i++) sent.push(await srv.send(ch, { n: i, s: 'ü€𝄞' }, { event: `e${i}` }));

    got = await inbox.take(3);
    assert.deepEqual(got.map((m) => m.__typename), ['Message', 'Message', 'Message']);
    assert.deepEqual(got.map(brief), [1, 2, 3].map((i) => ({ channel: ch, id: String(i), event: `e${i}`, data: { n: i, s: 'ü€𝄞' } })));
    for (let i = 0; i < 3; i++) {
      assert.match(got[i].createdAt, RFC3339_MS);
      assert.equal(got[i].cursor, sent[i].cursor);
    }
    await inbox.none(200);
    resumeFrom = got[1].cursor;
    inbox.unsubscribe();
  } finally {
    c.close();
  }

  await srv.send(ch, { n: 4 });
  await srv.send(ch, { n: 5 });

  const c2 = await connect({ token: token('alice', ['room:*']) });
  try {
    const inbox = subscribe(c2, { ch: [ch], c: resumeFrom }, 'resumed feed');
    const backlog = await inbox.take(3);
    assert.deepEqual(backlog.map(brief), [
      { channel: ch, id: '3', event: 'e3', data: { n: 3, s: 'ü€𝄞' } },
      { channel: ch, id: '4', data: { n: 4 } },
      { channel: ch, id: '5', data: { n: 5 } },
    ]);
    await srv.send(ch, { n: 6 });
    const live = await inbox.next();
    assert.deepEqual(brief(live), { channel: ch, id: '6', data: { n: 6 } });
    await inbox.none(200);
    assertNoDuplicates(assert, [...got.slice(0, 2), ...backlog, live]); // resumed after message 2
  } finally {
    c2.close();
  }
});

test('legacy graphql-ws protocol: two subscriptions on one socket, then a FORBIDDEN channel', async () => {
  const a = uniq('room');
  const b = uniq('room');
  const [sa, sb] = await Promise.all([srv.channel(a), srv.channel(b)]);
  const c = await connect({ token: token('alice', ['room:*']) });
  try {
    const ia = subscribe(c, { ch: [a], c: sa.cursor }, 'feed a');
    const ib = subscribe(c, { ch: [b], c: sb.cursor }, 'feed b');
    await srv.broadcast([a, b], { all: true });
    await srv.send(b, { only: 'b' });
    assert.deepEqual(brief(await ia.next()), { channel: a, id: '1', data: { all: true } });
    assert.deepEqual((await ib.take(2)).map(brief), [
      { channel: b, id: '1', data: { all: true } },
      { channel: b, id: '2', data: { only: 'b' } },
    ]);
    await ia.none(100);

    const denied = subscribe(c, { ch: ['other:1'] }, 'forbidden feed');
    let errors;
    try {
      const v = await denied.next();
      errors = v.errors;
      assert.ok(errors, `expected errors, got ${JSON.stringify(v)}`);
    } catch (err) {
      if (!err.graphqlErrors) throw err;
      errors = err.graphqlErrors;
    }
    assert.equal(errors[0].extensions?.code, 'FORBIDDEN', JSON.stringify(errors));
    // The socket and the other subscriptions live on.
    await srv.send(a, { after: 'denied' });
    assert.deepEqual(brief(await ia.next()), { channel: a, id: '2', data: { after: 'denied' } });
  } finally {
    c.close();
  }
});
