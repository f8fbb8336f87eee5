// test/run.js, the runner npm test uses: a file that passes its tests and
// then never exits is killed at its deadline, with its process group, and
// the run says what kept it alive (test/fixtures/hangs.js leaves an
// interval behind).

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { TEST_DIR, buildServer, until } from './helpers/server.js';

test('a file that hangs after its tests is killed, and the run names the timer that held it and where it was set', async () => {
  const env = { ...process.env, PUSHGATE_BIN: buildServer(), SDK_TEST_DEADLINE: '6000' };
  delete env.NODE_TEST_CONTEXT; // a run of its own, not a file of this one
  const child = spawn(process.execPath, [join(TEST_DIR, 'run.js'), join(TEST_DIR, 'fixtures', 'hangs.js')], {
    env,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  child.stdout.on('data', (b) => (out += b));
  child.stderr.on('data', (b) => (out += b));
  const code = await new Promise((resolve) => child.on('exit', resolve));
  assert.equal(code, 1, out);
  assert.match(out, /^ok 1 - passes, and leaves an interval behind$/m, 'its test passed');
  assert.match(out, /^# test\/fixtures\/hangs\.js: over 6 s, killed$/m);
  assert.match(out, /^# {5}setInterval 60000 ms, set at .*fixtures\/hangs\.js:\d+:\d+\)$/m, out);
  assert.match(out, /^# 1 files in [\d.]+ s; failed: test\/fixtures\/hangs\.js$/m);
  // The file's own process (run under node --test's) was killed too; it
  // is gone once its new parent has reaped it.
  const pid = Number(out.match(/^# {3}pid (\d+),/m)[1]);
  const alive = () => {
    try {
      process.kill(pid, 0);
      return true;
    } catch (e) {
      return e.code !== 'ESRCH';
    }
  };
  await until(() => !alive(pid), 5000, `pid ${pid} still alive`);
});
