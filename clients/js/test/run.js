// npm test: builds pushgate once, then runs each test file in a process of
// its own, one after the other (they start servers and time deliveries: on
// 2 cores they should not compete), with a deadline each, and ends with
// one summary line. Only flags every Node >= 18 knows are used.
//
// A file still running at its deadline is killed; just before, a preload
// (helpers/handles.cjs) writes what keeps its process alive (timers with
// where they were set, sockets, child processes), and that is printed, so
// a file that finished its tests and hangs says why. The kill takes the
// file's whole process group (its test process and what that started).
//
//   node test/run.js [file...]     (default: test/*.test.js)

import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { buildServer, TEST_DIR } from './helpers/server.js';

const DEADLINE = Number(process.env.SDK_TEST_DEADLINE) || 150_000; // ms per file
const REPORT_BEFORE = 3_000; // the handles report, this long before the kill
const GROUP = process.platform !== 'win32'; // a process group of its own, killed whole
const PRELOAD = join(TEST_DIR, 'helpers', 'handles.cjs');
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
const reports = mkdtempSync(join(tmpdir(), 'pushgate-sdk-handles-'));
let current = null; // the file's process running now

// A process group of its own is out of reach of the terminal's Ctrl-C:
// run.js passes it on.
const killFile = (child, signal) => {
  try {
    if (GROUP) process.kill(-child.pid, signal);
    else child.kill(signal);
  } catch {
    // already gone
  }
};
for (const signal of ['SIGINT', 'SIGTERM']) {
  process.on(signal, () => {
    if (current) killFile(current, signal);
    rmSync(reports, { recursive: true, force: true });
    process.exit(1);
  });
}

for (const file of files) {
  const name = relative(join(TEST_DIR, '..'), file);
  const t0 = Date.now();
  const report = join(reports, `${files.indexOf(file)}.txt`);
  const code = await new Promise((resolve) => {
    const child = spawn(process.execPath, ['--require', PRELOAD, '--test', '--test-reporter=tap', file], {
      env: { ...env, SDK_HANDLES_AT: String(t0 + DEADLINE - REPORT_BEFORE), SDK_HANDLES_FILE: report },
      stdio: ['ignore', 'pipe', 'inherit'],
      detached: GROUP,
    });
    current = child;
    let out = '';
    child.stdout.on('data', (b) => {
      process.stdout.write(b);
      out += b;
    });
    const timer = setTimeout(() => {
      console.log(`# ${name}: over ${DEADLINE / 1000} s, killed`);
      let why;
      try {
        why = readFileSync(report, 'utf8');
      } catch {
        why = 'no handles report (the process did not get to write it)\n';
      }
      process.stdout.write(why.replace(/^/gm, '#   ').replace(/#   $/, ''));
      killFile(child, 'SIGKILL');
    }, DEADLINE);
    child.on('exit', (c) => {
      clearTimeout(timer);
      current = null;
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

rmSync(reports, { recursive: true, force: true });
console.log(`# ${files.length} files in ${((Date.now() - began) / 1000).toFixed(1)} s${failing.length ? `; failed: ${failing.join(', ')}` : ''}`);
console.log(`sdk: ${passed} passed, ${failed} failed`);
process.exit(failing.length ? 1 : 0);
