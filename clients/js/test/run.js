// npm test: builds pushgate once, then runs each test file in a process of
// its own, one after the other (they start servers and time deliveries: on
// 2 cores they should not compete), with a deadline each, and ends with
// one summary line. Only flags every Node >= 18 knows are used.
//
//   node test/run.js [file...]     (default: test/*.test.js)

import { spawn } from 'node:child_process';
import { readdirSync } from 'node:fs';
import { join, relative } from 'node:path';
import { buildServer, TEST_DIR } from './helpers/server.js';

const DEADLINE = 150_000; // per file
const files = process.argv.slice(2).length
  ? process.argv.slice(2)
  : readdirSync(TEST_DIR)
      .filter((f) => f.endsWith('.test.js'))
      .sort()
      .map((f) => join(TEST_DIR, f));

const env = { ...process.env, PUSHGATE_BIN: buildServer() };
let passed = 0;
let failed = 0;
const failing = [];
const began = Date.now();

for (const file of files) {
  const name = relative(join(TEST_DIR, '..'), file);
  const t0 = Date.now();
  const code = await new Promise((resolve) => {
    const child = spawn(process.execPath, ['--test', '--test-reporter=tap', file], { env, stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    child.stdout.on('data', (b) => {
      process.stdout.write(b);
      out += b;
    });
    const timer = setTimeout(() => {
      console.log(`# ${name}: over ${DEADLINE / 1000} s, killed`);
      child.kill('SIGKILL');
    }, DEADLINE);
    child.on('exit', (c) => {
      clearTimeout(timer);
      const count = (k) => Number((out.match(new RegExp(`^# ${k} (\\d+)$`, 'm')) || [])[1] || 0);
      passed += count('pass');
      failed += count('fail') + count('cancelled');
      resolve(c);
    });
  });
  console.log(`# ${name}: ${code === 0 ? 'ok' : 'FAILED'} in ${((Date.now() - t0) / 1000).toFixed(1)} s`);
  if (code !== 0) {
    failing.push(name);
    if (!failed) failed = 1; // it died before counting
  }
}

console.log(`# ${files.length} files in ${((Date.now() - began) / 1000).toFixed(1)} s${failing.length ? `; failed: ${failing.join(', ')}` : ''}`);
console.log(`sdk: ${passed} passed, ${failed} failed`);
process.exit(failing.length ? 1 : 0);
