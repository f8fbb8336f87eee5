// The console's page-free parts (static/lib.js) in Node: Prometheus text
// parsing and rates across a restart, the GraphQL completion on every kind
// of position it must tell apart, the bounded log. lib.js runs here as the
// page runs it: a classic script that sets a global.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import vm from 'node:vm';

vm.runInThisContext(readFileSync(new URL('../static/lib.js', import.meta.url), 'utf8'), { filename: 'lib.js' });
const L = globalThis.PushgateConsoleLib;

test('parseMetrics reads samples, labels with escapes, special values, and skips the rest', () => {
  const text = [
    '# HELP pushgate_connections Streaming connections open, by transport.',
    '# TYPE pushgate_connections gauge',
    'pushgate_connections{transport="websocket"} 3',
    'pushgate_connections{transport="sse"} 1',
    'pushgate_connections{transport="poll"} 0',
    'pushgate_connections{transport="graphql_sse"} 2',
    'pushgate_messages_sent_total 1.234e+03',
    'weird{a="x\\"y",b="back\\\\slash",c="new\\nline",} 7 1712345678000',
    'pushgate_delivery_latency_seconds_bucket{transport="sse",le="+Inf"} 12',
    'nan_metric NaN',
    'broken{transport="ws" 5',
    'no_value',
    'bad_value{} abc',
    '',
  ].join('\n');
  const m = L.parseMetrics(text);
  assert.deepEqual(
    m.pushgate_connections.map((s) => [s.labels.transport, s.value]),
    [['websocket', 3], ['sse', 1], ['poll', 0], ['graphql_sse', 2]],
  );
  assert.equal(m.pushgate_messages_sent_total[0].value, 1234);
  assert.deepEqual({ ...m.weird[0].labels }, { a: 'x"y', b: 'back\\slash', c: 'new\nline' });
  assert.equal(m.weird[0].value, 7);
  assert.equal(m.pushgate_delivery_latency_seconds_bucket[0].labels.le, '+Inf');
  assert.ok(Number.isNaN(m.nan_metric[0].value));
  assert.equal(m.broken, undefined);
  assert.equal(m.no_value, undefined);
  assert.equal(m.bad_value, undefined);
});

test('summarize: connections and subscriptions by transport, counters summed over labels', () => {
  const s = L.summarize(
    L.parseMetrics(
      [
        'pushgate_connections{transport="websocket"} 4',
        'pushgate_connections{transport="sse"} 1',
        'pushgate_subscriptions{transport="websocket"} 9',
        'pushgate_messages_sent_total 50',
        'pushgate_messages_delivered_total{transport="websocket"} 70',
        'pushgate_messages_delivered_total{transport="sse"} 30',
        'pushgate_dropped_total{reason="slow_client"} 2',
        'pushgate_dropped_total{reason="shutdown"} 1',
        'process_start_time_seconds 1.7e9',
      ].join('\n'),
    ),
  );
  assert.deepEqual({ ...s.connections }, { websocket: 4, sse: 1, poll: 0, graphql_sse: 0 });
  assert.deepEqual({ ...s.subscriptions }, { websocket: 9, sse: 0, poll: 0, graphql_sse: 0 });
  assert.equal(s.sent, 50);
  assert.equal(s.delivered, 100);
  assert.equal(s.dropped, 3);
  assert.equal(s.start, 1.7e9);
  assert.equal(s.pushgate, true);
  assert.equal(L.summarize(L.parseMetrics('go_goroutines 8')).pushgate, false);
});

test('Rate: per second between scrapes; a counter that went down or a new start is a restart', () => {
  const r = new L.Rate();
  assert.equal(r.push(1000, 10, 100), null); // the first scrape has no rate
  assert.equal(r.push(3000, 30, 100), 10); // 20 in 2 s
  assert.equal(r.push(5000, 4, 200), 2); // restarted: 4 since, in 2 s
  assert.equal(r.push(6000, 4, 200), 0);
  assert.equal(r.push(8000, 10, 300), 5); // new start, counter above the old value: still a restart
  assert.equal(r.push(8000, 12, 300), null); // no time passed
});

// A schema as introspection gives it: pushgate's shapes, trimmed.
const nn = (t) => ({ kind: 'NON_NULL', name: null, ofType: t });
const list = (t) => ({ kind: 'LIST', name: null, ofType: t });
const named = (name, kind = 'OBJECT') => ({ kind, name, ofType: null });
const S = named('String', 'SCALAR');
const field = (name, type, args = [], description = '') => ({ name, type, args, description, isDeprecated: false });
const arg = (name, type) => ({ name, type, description: '' });
const schema = L.buildSchema({
  __schema: {
    queryType: { name: 'Query' },
    mutationType: { name: 'Mutation' },
    subscriptionType: { name: 'Subscription' },
    types: [
      {
        kind: 'OBJECT',
        name: 'Query',
        fields: [
          field('history', nn(named('MessageConnection')), [arg('channel', nn(S)), arg('first', named('Int', 'SCALAR')), arg('after', S)]),
          field('channel', named('Channel'), [arg('name', nn(S))], "A channel's current state."),
        ],
      },
      { kind: 'OBJECT', name: 'Mutation', fields: [field('send', nn(named('SendPayload')), [arg('input', nn(named('SendInput', 'INPUT_OBJECT')))])] },
      { kind: 'OBJECT', name: 'Subscription', fields: [field('feed', nn(named('FeedEvent', 'UNION')), [arg('channels', nn(list(nn(S)))), arg('cursor', S)])] },
      { kind: 'OBJECT', name: 'MessageConnection', fields: [field('nodes', nn(list(nn(named('Message'))))), field('pageInfo', nn(named('PageInfo')))] },
      { kind: 'OBJECT', name: 'PageInfo', fields: [field('hasNextPage', nn(named('Boolean', 'SCALAR'))), field('endCursor', S)] },
      { kind: 'OBJECT', name: 'SendPayload', fields: [field('message', nn(named('Message'))), field('duplicate', nn(named('Boolean', 'SCALAR')))] },
      {
        kind: 'OBJECT',
        name: 'Message',
        fields: ['channel', 'id', 'event', 'data', 'createdAt', 'cursor'].map((n) => field(n, nn(S))),
      },
      { kind: 'OBJECT', name: 'Reset', fields: ['channel', 'reason', 'cursor'].map((n) => field(n, nn(S))) },
      { kind: 'UNION', name: 'FeedEvent', fields: null, possibleTypes: [{ name: 'Message' }, { name: 'Reset' }] },
      {
        kind: 'OBJECT',
        name: 'Channel',
        fields: [field('name', nn(S)), field('lastId', named('ID', 'SCALAR'), [], 'The id of the newest message.'), field('lastMessageAt', named('Time', 'SCALAR')), field('retained', nn(named('Int', 'SCALAR'))), field('presence', named('Presence'))],
      },
      { kind: 'OBJECT', name: 'Presence', fields: [field('count', nn(named('Int', 'SCALAR'))), field('subjects', nn(list(nn(S))))] },
      { kind: 'INPUT_OBJECT', name: 'SendInput', fields: null, inputFields: [] },
      { kind: 'SCALAR', name: 'String' },
    ],
  },
});

// The labels completed where | is, or null.
function at(q) {
  const pos = q.indexOf('|');
  const c = L.complete(schema, q.slice(0, pos) + q.slice(pos + 1), pos);
  return c && c.items.map((i) => i.label);
}

test('complete: the fields of the selection set the caret is in', () => {
  assert.deepEqual(at('{ chan|'), ['channel']);
  assert.deepEqual(at('query { |'), ['channel', 'history', '__schema', '__type', '__typename']);
  assert.deepEqual(at('{ channel(name: "x") { la| } }'), ['lastId', 'lastMessageAt']);
  assert.deepEqual(at('{ channel(name: "x") { presence { c|'), ['count']);
  assert.deepEqual(at('{ history(channel: "a") { nodes { cur|'), ['cursor']);
  assert.deepEqual(at('{ history(channel: "a") { pageInfo { endCursor } nodes { ch|'), ['channel']);
  assert.deepEqual(at('mutation { send(input: {channel: "a", data: {x: {y: [1, {z: 2}]}}}) { mes|'), ['message']);
  assert.deepEqual(at('subscription { feed(channels: ["a"]) { ... on Message { cur|'), ['cursor']);
  assert.deepEqual(at('subscription { feed(channels: ["a"]) { |'), ['... on Message', '... on Reset', '__typename']);
  // An alias, variables with a default object, a directive with arguments.
  assert.deepEqual(at('query Q($n: String = "{", $o: In = {a: {b: 1}}) { last: channel(name: $n) { retai|'), ['retained']);
  assert.deepEqual(at('{ channel(name: "x") @include(if: true) { last|'), ['lastId', 'lastMessageAt']);
  assert.deepEqual(at('fragment F on Channel { pres|'), ['presence']);
  // Matching inside the name comes after matching its start.
  assert.deepEqual(at('{ channel(name: "x") { id|'), ['lastId']);
  // The name under the caret is replaced whole.
  const c = L.complete(schema, '{ chanXYZ }', 4);
  assert.deepEqual([c.from, c.to], [2, 9]);
  assert.equal(c.items[0].detail, 'Channel');
  assert.equal(c.items[0].doc, "A channel's current state.");
});

test('complete: arguments, type conditions, keywords', () => {
  assert.deepEqual(at('{ history(|'), ['after', 'channel', 'first']);
  assert.deepEqual(at('{ history(channel: "a{", f|'), ['first']);
  assert.equal(L.complete(schema, '{ history(|', 10).items[1].insert, 'channel: ');
  assert.deepEqual(at('subscription { feed(channels: ["a"]) { ... |'), ['on']);
  assert.deepEqual(at('subscription { feed(channels: ["a"]) { ... on |'), ['Message', 'Reset']);
  assert.deepEqual(at('|'), ['fragment', 'mutation', 'query', 'subscription']);
  assert.deepEqual(at('{ channel { name } }\nmut|'), ['mutation']);
});

test('complete: nothing inside strings, comments, argument values, numbers, or names typed out', () => {
  assert.equal(at('{ channel(name: "cha|'), null);
  assert.equal(at('{ channel(name: """ a { b\n cha|'), null);
  assert.equal(at('{ # cha|'), null);
  assert.equal(at('{ history(channel: cha|'), null); // a value: an enum or a variable, not an argument
  assert.equal(at('{ history(channel: "a", first: 1|'), null);
  assert.equal(at('{ channel|'), null);
  assert.equal(at('query Q($n: Str|'), null);
  assert.equal(at('{ nosuchfield { a|'), null);
  assert.equal(L.complete(null, '{ a', 3), null); // no schema
});

test('Log keeps the newest cap entries and drops the oldest in chunks', () => {
  const log = new L.Log(100);
  let dropped = 0;
  for (let i = 1; i <= 1000; i++) dropped += log.push(i);
  assert.ok(log.items.length >= 100 && log.items.length <= 100 + (100 >> 4), String(log.items.length));
  assert.equal(log.items[log.items.length - 1], 1000);
  assert.equal(dropped + log.items.length, 1000);
  assert.equal(log.dropped, dropped);
  assert.deepEqual(log.items, Array.from({ length: log.items.length }, (_, i) => 1001 - log.items.length + i));
});

test('formatting', () => {
  assert.equal(L.preview({ a: 'x'.repeat(50) }, 20).length, 20);
  assert.ok(L.preview({ a: 'x'.repeat(50) }, 20).endsWith('…'));
  assert.equal(L.preview('text', 20), '"text"');
  assert.equal(L.shortCursor('AQEEbm9ZjNhQ'), 'AQEEbm9ZjNhQ');
  assert.equal(L.shortCursor('AQEEbmV3cwAAAAAAAAAAAAAADhQ'), 'AQEEbm…AAAAADhQ');
  assert.equal(L.rate(1234.4), '1,234');
  assert.equal(L.rate(12.34), '12.3');
  assert.equal(L.rate(0.5), '0.50');
  assert.equal(L.rate(null), '–');
  assert.ok(L.CHANNEL.test('orders:42') && !L.CHANNEL.test('a b') && !L.CHANNEL.test(''));
});
