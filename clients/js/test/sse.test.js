// The SDK's own SSE parser (mini-programs have no EventSource): pushgate's
// stream cut at every point (one and two cuts), line endings of every kind
// cut between "\r" and "\n", comments, id-only blocks, and random streams in
// random pieces against eventsource-parser as the reference.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createParser } from 'eventsource-parser';
import { sseParser } from '../src/sse.js';
import { utf8Decoder } from '../src/utf8.js';
import { seededRandom } from './helpers/random.js';

function parsePieces(text, cuts) {
  const events = [];
  const feed = sseParser((e) => events.push(e));
  let prev = 0;
  for (const c of [...cuts, text.length]) {
    feed(text.slice(prev, c));
    prev = c;
  }
  return events;
}

// What pushgate writes on GET /events (server/sse.go): a retry hint and an
// id-only block, messages, a heartbeat, a reset, an expired end.
const STREAM =
  'retry: 2000\nid: AQEIb3JkZXJzOjQyDTZiMDgxMzZhODBjNGEF\n\n' +
  'id: AQEIb3JkZXJzOjQyDTZiMDgxMzZhODBjNGEG\ndata: {"channel":"orders:42","id":"6","data":{"s":"héllo 你好 🚀"},"createdAt":"2026-11-26T11:03:24.570Z"}\n\n' +
  ': heartbeat\n\n' +
  'id: AQEIb3JkZXJzOjQyDTZiMDgxMzZhODBjNGEH\nevent: reset\ndata: {"channel":"orders:42","reason":"expired","cursor":"AQEIb3JkZXJzOjQyDTZiMDgxMzZhODBjNGEH"}\n\n' +
  'event: expired\ndata: {"reason":"token expired","cursor":"AQEIb3JkZXJzOjQyDTZiMDgxMzZhODBjNGEH"}\n\n';

const EXPECTED = [
  { id: 'AQEIb3JkZXJzOjQyDTZiMDgxMzZhODBjNGEF', event: 'message', data: null },
  {
    id: 'AQEIb3JkZXJzOjQyDTZiMDgxMzZhODBjNGEG',
    event: 'message',
    data: '{"channel":"orders:42","id":"6","data":{"s":"héllo 你好 🚀"},"createdAt":"2026-11-26T11:03:24.570Z"}',
  },
  {
    id: 'AQEIb3JkZXJzOjQyDTZiMDgxMzZhODBjNGEH',
    event: 'reset',
    data: '{"channel":"orders:42","reason":"expired","cursor":"AQEIb3JkZXJzOjQyDTZiMDgxMzZhODBjNGEH"}',
  },
  // An event without an id keeps the last one, as EventSource's lastEventId.
  { id: 'AQEIb3JkZXJzOjQyDTZiMDgxMzZhODBjNGEH', event: 'expired', data: '{"reason":"token expired","cursor":"AQEIb3JkZXJzOjQyDTZiMDgxMzZhODBjNGEH"}' },
];

test("pushgate's stream parses to its events", () => {
  assert.deepEqual(parsePieces(STREAM, []), EXPECTED);
});

test('every split point, one cut and two cuts', () => {
  for (let i = 0; i <= STREAM.length; i++) {
    assert.deepEqual(parsePieces(STREAM, [i]), EXPECTED, `cut at ${i}`);
    for (let j = i; j <= STREAM.length; j += 3) assert.deepEqual(parsePieces(STREAM, [i, j]), EXPECTED, `cuts at ${i}, ${j}`);
  }
});

test('every split point of the bytes, through the UTF-8 decoder', () => {
  const bytes = new Uint8Array(Buffer.from(STREAM, 'utf8'));
  for (let i = 0; i <= bytes.length; i++) {
    const events = [];
    const feed = sseParser((e) => events.push(e));
    const dec = utf8Decoder();
    feed(dec(bytes.subarray(0, i), true));
    feed(dec(bytes.subarray(i), true));
    assert.deepEqual(events, EXPECTED, `byte cut at ${i}`);
  }
});

test('CRLF, CR and LF line endings, cut between CR and LF', () => {
  const body = 'id: 1\r\ndata: a\r\ndata: b\r\n\r\nid: 2\rdata: c\r\rid: 3\ndata: d\n\n';
  const want = [
    { id: '1', event: 'message', data: 'a\nb' },
    { id: '2', event: 'message', data: 'c' },
    { id: '3', event: 'message', data: 'd' },
  ];
  for (let i = 0; i <= body.length; i++) assert.deepEqual(parsePieces(body, [i]), want, `cut at ${i}`);
});

test('field rules: no space after the colon, no colon, id with NUL, unknown fields, BOM, trailing partial event', () => {
  const body = '\ufeffdata:x\ndata\nid: a\0b\nfoo: bar\n\n: only a comment\n\nfoo: bar\n\nid: 9\ndata: partial';
  assert.deepEqual(parsePieces(body, []), [{ id: '', event: 'message', data: 'x\n' }]);
});

test('random streams in random pieces agree with eventsource-parser (seeded)', () => {
  const seed = Number(process.env.SDK_SEED) || (Math.random() * 2 ** 32) >>> 0;
  const random = seededRandom(seed);
  const pick = (a) => a[Math.floor(random() * a.length)];
  for (let round = 0; round < 200; round++) {
    let text = '';
    for (let e = 0; e < 8; e++) {
      const nl = pick(['\n', '\r\n', '\r']);
      if (random() < 0.3) text += `: heartbeat${nl}`;
      if (random() < 0.7) text += `id: c${round}-${e}${nl}`;
      if (random() < 0.3) text += `event: ${pick(['reset', 'expired', 'x'])}${nl}`;
      const lines = 1 + Math.floor(random() * 3);
      for (let l = 0; l < lines; l++) text += `data:${pick([' ', ''])}${pick(['{"a":1}', 'ü你🚀', '', 'x: y'])}${nl}`;
      text += nl;
    }
    // eventsource-parser waits for what follows a final "\r" (it may be a
    // "\r\n"); a comment line lets it go.
    text += ':\n';
    const cuts = [];
    for (let i = 1; i < text.length; i++) if (random() < 0.15) cuts.push(i);
    const ours = parsePieces(text, cuts).filter((e) => e.data !== null);
    const ref = [];
    const p = createParser({ onEvent: (e) => ref.push({ id: e.id ?? '', event: e.event ?? 'message', data: e.data }) });
    let prev = 0;
    for (const c of [...cuts, text.length]) {
      p.feed(text.slice(prev, c));
      prev = c;
    }
    // eventsource-parser gives an event's own id only; EventSource (and we)
    // keep the last one seen: compare ids where the event carried one.
    assert.equal(ours.length, ref.length, `seed ${seed} round ${round}`);
    ours.forEach((e, i) => {
      assert.equal(e.data, ref[i].data, `seed ${seed} round ${round} event ${i}`);
      assert.equal(e.event, ref[i].event, `seed ${seed} round ${round} event ${i}`);
      if (ref[i].id) assert.equal(e.id, ref[i].id, `seed ${seed} round ${round} event ${i}`);
    });
  }
});

test('a 1 MB event cut into 1-byte pieces is parsed once, in linear time', () => {
  const data = 'x'.repeat(1 << 20);
  const events = [];
  const feed = sseParser((e) => events.push(e));
  const text = `id: big\ndata: ${data}\n\n`;
  for (let i = 0; i < text.length; i += 1) feed(text[i]);
  assert.equal(events.length, 1);
  assert.equal(events[0].data.length, data.length);
});
