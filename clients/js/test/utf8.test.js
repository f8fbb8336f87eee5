// The SDK's own UTF-8 decoder (mini-programs have no TextDecoder) against
// TextDecoder, the WHATWG reference: whole inputs, every split point of
// one and two cuts, invalid input, random bytes in random pieces, and
// inputs far larger than a call can take as arguments.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { utf8Decoder } from '../src/utf8.js';
import { seededRandom } from './helpers/random.js';

const enc = (s) => new Uint8Array(Buffer.from(s, 'utf8'));

function decodePieces(bytes, cuts) {
  const d = utf8Decoder();
  let out = '';
  let prev = 0;
  for (const c of cuts) {
    out += d(bytes.subarray(prev, c), true);
    prev = c;
  }
  return out + d(bytes.subarray(prev), false);
}

function reference(bytes, cuts) {
  const d = new TextDecoder('utf-8', { ignoreBOM: true });
  let out = '';
  let prev = 0;
  for (const c of cuts) {
    out += d.decode(bytes.subarray(prev, c), { stream: true });
    prev = c;
  }
  return out + d.decode(bytes.subarray(prev));
}

const SAMPLES = [
  '',
  'ascii only',
  'é ß Ж ع ह',
  '你好，世界',
  '🚀🎉👍🏽𝄞',
  '\u0000\u007f\u0080\u07ff\u0800\uffff',
  '\u{10000}\u{10ffff}',
  'a\u2028b\ufeffc',
  'data: {"s":"héllo 你好 🚀"}\n\n',
];

test('whole inputs decode as TextDecoder decodes them', () => {
  for (const s of SAMPLES) assert.equal(decodePieces(enc(s), []), s);
});

test('every split point, one cut and two cuts, of text mixing 1- to 4-byte characters', () => {
  const bytes = enc('aé你🚀b\u0800𝄞z');
  const s = Buffer.from(bytes).toString('utf8');
  for (let i = 0; i <= bytes.length; i++) {
    assert.equal(decodePieces(bytes, [i]), s, `cut at ${i}`);
    for (let j = i; j <= bytes.length; j++) assert.equal(decodePieces(bytes, [i, j]), s, `cuts at ${i}, ${j}`);
  }
});

test('every byte in a piece of its own', () => {
  const bytes = enc(SAMPLES.join('|'));
  assert.equal(decodePieces(bytes, [...bytes.keys()].slice(1)), SAMPLES.join('|'));
});

const INVALID = [
  [0xff],
  [0x80],
  [0xc0, 0x80],
  [0xc1, 0xbf],
  [0xe4, 0xbd],
  [0xe4, 0xbd, 0x41],
  [0xed, 0xa0, 0x80], // a surrogate
  [0xe0, 0x80, 0x80], // overlong
  [0xf0, 0x80, 0x80, 0x80],
  [0xf4, 0x90, 0x80, 0x80], // past U+10FFFF
  [0xf5, 0x80],
  [0xf0, 0x9f, 0x9a],
  [0xf0, 0x9f, 0x9a, 0x41, 0xf0, 0x9f, 0x9a, 0x80],
  [0x41, 0xc3],
];

test('invalid input: the same U+FFFD as TextDecoder, at every split point', () => {
  for (const bad of INVALID) {
    const bytes = new Uint8Array(bad);
    for (let i = 0; i <= bytes.length; i++) {
      assert.equal(decodePieces(bytes, [i]), reference(bytes, [i]), `${JSON.stringify(bad)} cut at ${i}`);
    }
  }
});

test('random bytes in random pieces agree with TextDecoder (seeded)', () => {
  const seed = Number(process.env.SDK_SEED) || (Math.random() * 2 ** 32) >>> 0;
  const random = seededRandom(seed);
  for (let round = 0; round < 300; round++) {
    const n = 1 + Math.floor(random() * 64);
    const bytes = new Uint8Array(n);
    // Mostly valid text, with raw bytes mixed in.
    const text = enc(SAMPLES[Math.floor(random() * SAMPLES.length)].repeat(2));
    for (let i = 0; i < n; i++) bytes[i] = random() < 0.7 && i < text.length ? text[i] : Math.floor(random() * 256);
    const cuts = [];
    for (let i = 1; i < n; i++) if (random() < 0.3) cuts.push(i);
    assert.equal(decodePieces(bytes, cuts), reference(bytes, cuts), `seed ${seed} round ${round} bytes ${[...bytes]} cuts ${cuts}`);
  }
});

test('a 3 MB chunk decodes in one call (no spread into a single call)', () => {
  const s = 'aé你🚀'.repeat(300_000); // 3,000,000 bytes
  const bytes = enc(s);
  assert.equal(bytes.length, 3_000_000);
  assert.equal(utf8Decoder()(bytes, false), s);
  // And cut in two mid-character.
  assert.equal(decodePieces(bytes, [1_500_001]), s);
});
