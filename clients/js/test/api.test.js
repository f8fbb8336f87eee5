// The client's request API against a real pushgate: send (API key; a token
// with a publish grant where the namespace allows it; refused otherwise),
// history paging both ways, any GraphQL query, and ack. pushgate's schema
// has no ack mutation yet: ack() says UNSUPPORTED and ack: true does
// nothing. The ack path itself is proven through a stand-in: a proxy in
// front of the real server that adds ack(channel: String!, cursor: String!)
// to the schema's introspection and records the acks it is sent.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createClient } from '../src/index.js';
import { startServer, token, uniq, until, freePort, API_KEY } from './helpers/server.js';

let srv;
const clients = [];
before(async () => {
  const dir = mkdtempSync(join(tmpdir(), 'pushgate-sdk-'));
  const config = join(dir, 'pushgate.yaml');
  writeFileSync(config, 'namespaces:\n  chat:\n    token_publish: true\n');
  srv = await startServer({ extra: ['--config', config] });
});
after(async () => {
  for (const c of clients) c.close();
  await srv?.stop();
});

function client(opts) {
  const c = createClient({ url: srv.url, ...opts });
  clients.push(c);
  return c;
}

test('send: with an API key; again with the same idempotencyKey is a duplicate', async () => {
  const c = client({ token: API_KEY });
  const ch = uniq('orders');
  const a = await c.send(ch, { total: 12.5 }, { event: 'paid', idempotencyKey: 'pay-1' });
  assert.equal(a.duplicate, false);
  assert.equal(a.message.channel, ch);
  assert.equal(a.message.id, '1');
  assert.equal(a.message.event, 'paid');
  assert.deepEqual(a.message.data, { total: 12.5 });
  assert.ok(a.message.cursor);
  const b = await c.send(ch, { total: 12.5 }, { event: 'paid', idempotencyKey: 'pay-1' });
  assert.equal(b.duplicate, true);
  assert.equal(b.message.id, '1');
});

test('send: a token with a publish grant in a token_publish namespace; refused (FORBIDDEN) elsewhere', async () => {
  const ch = uniq('chat');
  const c = client({ token: token('alice', ['chat:*'], 3600, ['chat:*']) });
  const got = [];
  c.subscribe(ch, { onMessage: (m) => got.push(m) });
  await until(() => c.state.status === 'connected', 5000, 'connected');
  const sent = await c.send(ch, { text: '你好' });
  await until(() => got.length === 1, 5000, 'its own message');
  assert.equal(got[0].cursor, sent.message.cursor);
  await assert.rejects(c.send(uniq('room'), { text: 'no' }), (e) => e.code === 'FORBIDDEN' && e.name === 'PushgateError');
  await assert.rejects(client({}).send(ch, { anonymous: true }), (e) => e.code === 'FORBIDDEN' || e.code === 'UNAUTHENTICATED');
});

test('history: last/before backward, first/after forward, oldest first', async () => {
  const c = client({ token: API_KEY });
  const ch = uniq('orders');
  for (let n = 1; n <= 5; n++) await c.send(ch, { n });
  const ids = (p) => p.messages.map((m) => m.id);
  const last = await c.history(ch, { last: 2 });
  assert.deepEqual(ids(last), ['4', '5']);
  assert.equal(last.pageInfo.hasPreviousPage, true);
  const before = await c.history(ch, { last: 2, before: last.pageInfo.startCursor });
  assert.deepEqual(ids(before), ['2', '3']);
  const first = await c.history(ch, { first: 2 });
  assert.deepEqual(ids(first), ['1', '2']);
  assert.equal(first.pageInfo.hasNextPage, true);
  const after = await c.history(ch, { first: 2, after: first.pageInfo.endCursor });
  assert.deepEqual(ids(after), ['3', '4']);
  assert.deepEqual(after.messages[0].data, { n: 3 });
  assert.equal(after.messages[0].event, undefined, 'no event field when sent without one');
});

test('graphql: any query; a bad one rejects with its code', async () => {
  const c = client({ token: API_KEY });
  const ch = uniq('orders');
  await c.send(ch, { n: 1 });
  const d = await c.graphql('query($n: String!){ channel(name: $n){ lastId retained cursor } }', { n: ch });
  assert.equal(d.channel.lastId, '1');
  assert.equal(d.channel.retained, 1);
  await assert.rejects(c.graphql('{ nope }'), (e) => /GRAPHQL_VALIDATION_FAILED|BAD_USER_INPUT/.test(e.code));
  await assert.rejects(c.history('bad channel!'), (e) => e.code === 'BAD_USER_INPUT');
});

test("ack: pushgate's own ack mutation is found and sent; a server without WeChat answers UNAVAILABLE, passed through with its code", async () => {
  let gql = 0;
  const counting = (url, init) => {
    if (String(url).endsWith('/graphql')) gql++;
    return fetch(url, init);
  };
  const c = client({ token: API_KEY, fetch: counting, transports: ['poll'] });
  const ch = uniq('orders');
  const got = [];
  c.subscribe(ch, { onMessage: (m) => got.push(m) });
  await until(() => c.state.status === 'connected', 5000, 'connected');
  await srv.send(ch, { n: 1 }, `ack-${ch}-1`);
  await until(() => got.length === 1, 5000, 'one');
  await assert.rejects(c.ack(ch, got[0].cursor), (e) => e.code === 'UNAVAILABLE' && /WeChat is not configured/.test(e.message));
  assert.ok(gql >= 1, 'the ack went to /graphql');
  c.close();
});

// A stand-in for a pushgate whose schema has ack: a proxy to the real one
// that answers the Mutation type's introspection with an ack field added,
// and records ack mutations.
async function ackProxy() {
  const acks = [];
  const port = await freePort();
  const server = http.createServer(async (req, res) => {
    const chunks = [];
    for await (const c of req) chunks.push(c);
    const body = Buffer.concat(chunks);
    const text = body.toString('utf8');
    if (req.method === 'POST' && text.includes('ack(channel:')) {
      const { variables } = JSON.parse(text);
      acks.push(variables);
      res.setHeader('Content-Type', 'application/json');
      return res.end(JSON.stringify({ data: { ack: true } }));
    }
    const headers = { ...req.headers };
    delete headers.host;
    delete headers['content-length'];
    const up = await fetch(srv.url + req.url, { method: req.method, headers, body: req.method === 'POST' ? body : undefined });
    let out = Buffer.from(await up.arrayBuffer());
    if (text.includes('__type(name:\\"Mutation\\")')) {
      const d = JSON.parse(out.toString('utf8'));
      const nn = (name) => ({ kind: 'NON_NULL', name: null, ofType: { kind: 'SCALAR', name } });
      d.data.__type.fields.push({ name: 'ack', args: [{ name: 'channel', type: nn('String') }, { name: 'cursor', type: nn('String') }], type: nn('Boolean') });
      out = Buffer.from(JSON.stringify(d));
    }
    res.writeHead(up.status, { 'Content-Type': up.headers.get('content-type') || 'application/json' });
    res.end(out);
  });
  await new Promise((r) => server.listen(port, '127.0.0.1', r));
  return { url: `http://127.0.0.1:${port}`, acks, close: () => server.close() };
}

test('ack (stand-in server with ack): the newest cursor per channel, after onMessage returned; ack() by hand', async () => {
  const proxy = await ackProxy();
  try {
    const c = createClient({ url: proxy.url, token: API_KEY, ack: true, transports: ['poll'] });
    clients.push(c);
    const ch = uniq('orders');
    const got = [];
    let acksSeenInHandler = 0;
    c.subscribe(ch, {
      onMessage: (m) => {
        acksSeenInHandler += proxy.acks.length;
        got.push(m);
      },
    });
    await until(() => c.state.status === 'connected', 5000, 'connected');
    const sent = [];
    for (let n = 1; n <= 3; n++) sent.push(await srv.send(ch, { n }, `ackp-${ch}-${n}`));
    await until(() => got.length === 3, 5000, 'three');
    await until(() => proxy.acks.some((a) => a.k === sent[2].cursor), 3000, () => JSON.stringify(proxy.acks));
    assert.equal(acksSeenInHandler, 0, 'no ack before onMessage returned');
    assert.ok(proxy.acks.every((a) => a.c === ch));
    assert.ok(proxy.acks.length <= 3);
    await c.ack(ch, sent[0].cursor);
    assert.deepEqual(proxy.acks.at(-1), { c: ch, k: sent[0].cursor });
    c.close();
  } finally {
    proxy.close();
  }
});
