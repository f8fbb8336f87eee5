// What ships: dist/ and miniprogram_dist/ are what build.js makes of src/
// today, the package fits its size budget, each build loads where it is
// meant to (Node's require and import, a mini-program's CommonJS with
// nothing but the wx object), and index.d.ts declares what is exported.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import vm from 'node:vm';
import { gzipSync } from 'node:zlib';
import { buildAll, ROOT } from '../build.js';

const BUDGET = 10 * 1024; // minified and gzipped

test('dist/ and miniprogram_dist/ are up to date with src/ (run npm run build)', async () => {
  const fresh = await buildAll();
  for (const [path, text] of Object.entries(fresh)) {
    const file = join(ROOT, path);
    assert.ok(existsSync(file), `${path} is missing: run npm run build`);
    assert.ok(readFileSync(file, 'utf8') === text, `${path} is stale: run npm run build and commit it`);
  }
});

test(`size budget: at most ${BUDGET} bytes minified and gzipped`, (t) => {
  for (const path of ['dist/pushgate.min.js', 'miniprogram_dist/index.js']) {
    const min = readFileSync(join(ROOT, path));
    const gz = gzipSync(min, { level: 9 }).length;
    t.diagnostic(`${path}: ${min.length} bytes minified, ${gz} gzipped`);
    assert.ok(gz <= BUDGET, `${path}: ${gz} bytes gzipped, over the budget of ${BUDGET}`);
  }
});

test('package.json points at files that exist', () => {
  const pkg = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8'));
  for (const f of [pkg.main, pkg.module, pkg.types, pkg.exports['.'].import, pkg.exports['.'].require, pkg.exports['.'].types, join(pkg.miniprogram, 'index.js')]) {
    assert.ok(existsSync(join(ROOT, f)), f);
  }
  assert.deepEqual(Object.keys(pkg.dependencies || {}), [], 'no runtime dependencies');
});

test('Node: require and import give the same API', async () => {
  const cjs = createRequire(import.meta.url)('@pushgate/client');
  const esm = await import('@pushgate/client');
  assert.deepEqual(Object.keys(cjs).sort(), ['createClient', 'detectPlatform']);
  assert.deepEqual(Object.keys(esm).sort(), ['createClient', 'detectPlatform']);
  assert.equal(esm.detectPlatform(), 'node');
});

// What a mini-program's JavaScript has: no require, process, Buffer,
// TextDecoder, fetch, WebSocket or EventSource.
const FORBIDDEN = ['require', 'process', 'Buffer', 'TextDecoder', 'TextEncoder', 'fetch', 'WebSocket', 'EventSource', 'XMLHttpRequest'];

test('the mini-program build runs with nothing but wx (and my) in scope', () => {
  const code = readFileSync(join(ROOT, 'miniprogram_dist/index.js'), 'utf8');
  for (const api of ['wx', 'my']) {
    const stub = { connectSocket() {}, request() {} };
    const ctx = vm.createContext({ [api]: stub, setTimeout, clearTimeout, setInterval, clearInterval });
    for (const name of FORBIDDEN) assert.equal(vm.runInContext(`typeof ${name}`, ctx), 'undefined');
    const module = { exports: {} };
    vm.runInContext(`(function (module, exports) {${code}\n})`, ctx)(module, module.exports);
    assert.equal(module.exports.detectPlatform(), api);
    const client = module.exports.createClient({ url: 'https://push.example.com' });
    assert.equal(client.platform, api);
    assert.equal(client.state.status, 'idle');
    assert.equal(client.state.transport, null);
    client.close();
  }
});

test('the mini-program build names no Node module and calls no require', () => {
  for (const path of ['miniprogram_dist/index.js', 'dist/index.cjs']) {
    const code = readFileSync(join(ROOT, path), 'utf8');
    assert.doesNotMatch(code, /\brequire\s*\(/, path);
    assert.doesNotMatch(code, /["']node:/, path);
  }
});

test('index.d.ts declares every export', async () => {
  const dts = readFileSync(join(ROOT, 'index.d.ts'), 'utf8');
  const esm = await import('@pushgate/client');
  for (const name of Object.keys(esm)) assert.match(dts, new RegExp(`export function ${name}\\(`), name);
});
