// pushgate serving TLS itself (--tls-cert, --tls-key): the graphql-ws client
// over wss:// (an HTTP/1.1 upgrade, as browsers and wx.connectSocket open it)
// receives a message sent over HTTPS.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { request } from 'node:https';
import { createClient } from 'graphql-ws';
import WebSocket from 'ws';
import { startServer, uniq, Inbox, FEED, API_KEY } from './harness.mjs';

let srv;
before(async () => { srv = await startServer({ name: 'tls', tls: true }); });
after(async () => { await srv?.stop(); });

/** POST /graphql over HTTPS, trusting the server's certificate. */
function post(query, variables) {
  const body = JSON.stringify({ query, variables });
  return new Promise((resolve, reject) => {
    const req = request(srv.graphqlUrl, {
      method: 'POST',
      ca: srv.ca,
      headers: { 'Content-Type': 'application/json', Authorization: `Bearer ${API_KEY}` },
    }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (c) => { text += c; });
      res.on('end', () => resolve(JSON.parse(text)));
    });
    req.on('error', reject);
    req.end(body);
  });
}

test('graphql-ws over wss:// receives a message sent over https://', async () => {
  assert.match(srv.wsUrl, /^wss:\/\//);
  const ca = srv.ca;
  class TrustingWebSocket extends WebSocket {
    constructor(url, protocols) { super(url, protocols, { ca }); }
  }
  const client = createClient({ url: srv.wsUrl, webSocketImpl: TrustingWebSocket, retryAttempts: 0 });
  const ch = uniq('tls');
  const inbox = new Inbox('wss feed');
  try {
    // Subscribe from the channel's current position, so a message sent
    // after it arrives whether or not the subscription is live yet.
    const state = await post('query($n: String!){ channel(name: $n){ cursor } }', { n: ch });
    assert.ok(state.data?.channel?.cursor, JSON.stringify(state));
    client.subscribe({ query: FEED, variables: { ch: [ch], c: state.data.channel.cursor } }, {
      next: (v) => inbox.push(v.data.feed),
      error: (err) => inbox.fail(err instanceof Error ? err : new Error(JSON.stringify(err))),
      complete: () => {},
    });
    const sent = await post('mutation($in: SendInput!){ send(input: $in){ message { id } } }',
      { in: { channel: ch, data: { over: 'wss' } } });
    assert.ok(sent.data?.send?.message?.id, JSON.stringify(sent));
    const got = await inbox.next(10_000);
    assert.equal(got.__typename, 'Message');
    assert.equal(got.id, sent.data.send.message.id);
    assert.deepEqual(got.data, { over: 'wss' });
  } finally {
    await client.dispose();
  }
});
