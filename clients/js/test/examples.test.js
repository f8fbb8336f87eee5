// The README examples, run: every ```js block of the README (the
// repository's) and of clients/js/README.md is extracted from the file
// itself, not copied, and run against a real pushgate with the package's
// real build, in a process of its own; then the test checks that it did
// what its text says (a message arrives where the example shows it,
// history comes back, a send lands).
//
// Convention: each ```js block is preceded by a line
//   <!-- example: NAME -->
// naming its check in `examples` below. A js block without one fails this
// test, as do a name without a check and a check whose block is gone. The
// example's text runs as written, with two substitutions: its server
// (https://push.example.com, http://localhost:8080) becomes the test's,
// and the globals its text takes for granted (wx, App, Page; window,
// token, render, badge; getToken; push) are set up first by
// test/helpers/example-env.mjs, which reports what the example does.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { startServer, token, until, API_KEY, TEST_DIR, REPO_ROOT } from './helpers/server.js';

const READMES = [join(REPO_ROOT, 'README.md'), join(TEST_DIR, '..', 'README.md')];
const MARK = /^<!-- example: ([a-z0-9-]+) -->$/;

/** The ```js blocks of file: {name (from the marker, or null), code, line}. */
function blocks(file) {
  const lines = readFileSync(file, 'utf8').split('\n');
  const out = [];
  for (let i = 0; i < lines.length; i++) {
    if (!/^```js\s*$/.test(lines[i])) continue;
    let j = i - 1;
    while (j >= 0 && lines[j].trim() === '') j--;
    const m = j >= 0 && lines[j].match(MARK);
    const end = lines.indexOf('```', i + 1);
    assert.ok(end > i, `${file}:${i + 1}: an unclosed code block`);
    out.push({ name: m ? m[1] : null, code: lines.slice(i + 1, end).join('\n'), where: `${file}:${i + 1}` });
    i = end;
  }
  return out;
}

const found = READMES.flatMap(blocks);
const byName = new Map(found.filter((b) => b.name).map((b) => [b.name, b]));

/**
 * Runs example name against srv with env: resolves to {events, next, proc}
 * where next(pred, what) waits for a reported event matching pred.
 */
function run(srv, name, env = {}) {
  const ex = byName.get(name);
  const dir = join(TEST_DIR, '.examples');
  mkdirSync(dir, { recursive: true });
  const file = join(dir, `${name}.mjs`);
  const code = ex.code.replaceAll('https://push.example.com', srv.url).replaceAll('http://localhost:8080', srv.url);
  writeFileSync(file, `import '../helpers/example-env.mjs';\n${code}\n`);
  const proc = spawn(process.execPath, [file], {
    env: { ...process.env, EXAMPLE: name, PUSHGATE_URL: srv.url, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const events = [];
  let out = '';
  let err = '';
  proc.stdout.on('data', (b) => {
    out += b;
    let nl;
    while ((nl = out.indexOf('\n')) >= 0) {
      const line = out.slice(0, nl);
      out = out.slice(nl + 1);
      try {
        events.push(JSON.parse(line));
      } catch {
        events.push({ raw: line });
      }
    }
  });
  proc.stderr.on('data', (b) => (err += b));
  const exited = new Promise((resolve) => proc.on('exit', (code) => resolve(code)));
  const failure = () => events.find((e) => e.error) || (proc.exitCode !== null && proc.exitCode !== 0 && { exit: proc.exitCode, err });
  return {
    events,
    exited,
    stop: () => proc.kill('SIGKILL'),
    /** Waits for an event matching pred (each time calling poke, if given, e.g. to send once more). */
    async next(pred, what, poke) {
      const deadline = Date.now() + 15000;
      for (let n = 0; ; n++) {
        const f = failure();
        if (f) assert.fail(`example ${name} (${ex.where}) failed waiting for ${what}: ${JSON.stringify(f)}`);
        const e = events.find(pred);
        if (e) return e;
        if (Date.now() > deadline) assert.fail(`example ${name} (${ex.where}): no ${what} within 15 s; it reported ${JSON.stringify(events)} ${err}`);
        if (poke && n % 10 === 0) await poke();
        await new Promise((r) => setTimeout(r, 30));
      }
    },
  };
}

async function send(srv, channel, data) {
  await srv.gql('mutation($in: SendInput!) { send(input: $in) { message { id } } }', { in: { channel, data } });
}

async function history(srv, channel) {
  const r = await srv.gql('query($c: String!) { history(channel: $c, last: 100) { nodes { id event data } } }', { c: channel });
  return r.history.nodes;
}

/** Each example's run and check, with a pushgate of its own. */
const examples = {
  // README.md, quick start: a page subscribed to news prints each
  // message's data; the message is the curl's of the line above.
  async quickstart(srv) {
    const ex = run(srv, 'quickstart');
    try {
      const ev = await ex.next((e) => e.log, 'a message printed', () => send(srv, 'news', { hello: 'world' }));
      assert.deepEqual(ev.log, [{ hello: 'world' }]);
    } finally {
      ex.stop();
    }
  },

  // The mini-program: getToken asks the app's backend, the page's
  // subscription shows each message of orders:42 with setData, and the
  // cursors are kept in wx.setStorageSync.
  async wx(srv) {
    const ex = run(srv, 'wx', { EXAMPLE_TOKEN: token('alice', ['orders:*', 'user:alice']) });
    try {
      await ex.next((e) => e.backend === 'https://api.example.com/push-token', 'the token asked of the backend');
      const ev = await ex.next((e) => e.setData, 'setData with a message', () => send(srv, 'orders:42', { status: 'shipped' }));
      const [[key, value]] = Object.entries(ev.setData);
      assert.match(key, /^events\.\d+$/);
      assert.deepEqual(value, { status: 'shipped' });
      await ex.next((e) => e.stored, 'a cursor in wx.setStorageSync');
      assert.ok(!ex.events.some((e) => e.reload || e.stderr), `no reset, no error: ${JSON.stringify(ex.events)}`);
    } finally {
      ex.stop();
    }
  },

  // uni-app: the exported client calls getToken and reads over
  // uni.connectSocket.
  async uni(srv) {
    const ex = run(srv, 'uni', { EXAMPLE_TOKEN: token('u1', ['news']) });
    try {
      const ev = await ex.next((e) => e.message, 'a message', () => send(srv, 'news', { n: 1 }));
      assert.deepEqual(ev.message, { n: 1 });
      assert.ok(ev.sockets >= 1, 'over uni.connectSocket');
      assert.ok(ex.events.some((e) => e.getToken), 'getToken was called');
    } finally {
      ex.stop();
    }
  },

  // A page: render gets each message of news:today, the badge shows the
  // state and the transport, cursors go to localStorage.
  async h5(srv) {
    const ex = run(srv, 'h5', { EXAMPLE_TOKEN: token('reader', ['news:*']) });
    try {
      await ex.next((e) => e.badge === 'connected over ws', 'the badge "connected over ws"');
      const ev = await ex.next((e) => e.render, 'a message rendered', () => send(srv, 'news:today', { headline: '你好' }));
      assert.deepEqual(ev.render, { headline: '你好' });
      await ex.next((e) => e.stored, 'a cursor in localStorage');
    } finally {
      ex.stop();
    }
  },

  // Node with an API key: its own send lands (once, by its idempotency
  // key) and the subscription prints each message's id and data.
  async node(srv) {
    const ex = run(srv, 'node', { PUSHGATE_KEY: API_KEY });
    try {
      await until(async () => (await history(srv, 'orders:42')).some((m) => m.data.status === 'paid'), 15000, 'the example sends');
      const ev = await ex.next((e) => e.log, 'a message printed', () => send(srv, 'orders:42', { status: 'packed' }));
      assert.match(ev.log[0], /^\d+$/);
      assert.ok(['paid', 'packed'].includes(ev.log[1].status), JSON.stringify(ev.log));
    } finally {
      ex.stop();
    }
  },

  // Requests: history pages backwards, send answers the message (and a
  // duplicate flag), graphql answers the query's data.
  async requests(srv) {
    for (let i = 1; i <= 25; i++) await send(srv, 'orders:42', { i });
    const ex = run(srv, 'requests', { EXAMPLE_TOKEN: API_KEY });
    try {
      await ex.next((e) => e.done, 'the example to finish');
      const pages = ex.events.filter((e) => e.history).map((e) => e.history.messages.map((m) => m.data.i));
      assert.deepEqual(pages, [Array.from({ length: 20 }, (_, k) => k + 6), [1, 2, 3, 4, 5]]);
      const sent = ex.events.find((e) => e.send).send;
      assert.equal(sent.duplicate, false);
      assert.deepEqual(sent.message.data, { text: 'hi' });
      assert.deepEqual(await history(srv, 'chat:room1'), [{ id: sent.message.id, event: 'say', data: { text: 'hi' } }]);
      const data = ex.events.find((e) => e.graphql).graphql;
      assert.equal(data.channel.lastId, '25');
    } finally {
      ex.stop();
    }
  },
};

test('every js block of the READMEs is marked, and every mark has its check', () => {
  const unmarked = found.filter((b) => !b.name).map((b) => b.where);
  assert.deepEqual(unmarked, [], 'js blocks without <!-- example: NAME -->');
  assert.deepEqual([...byName.keys()].sort(), Object.keys(examples).sort());
  assert.equal(byName.size, found.length, 'an example name used twice');
});

for (const [name, check] of Object.entries(examples)) {
  test(`README example "${name}" runs and does what its text says`, { skip: !byName.has(name) && 'no such example' }, async () => {
    const srv = await startServer();
    try {
      await check(srv);
    } finally {
      await srv.stop();
    }
  });
}
