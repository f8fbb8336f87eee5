// index.d.ts against the API's documented uses: test/types/usage.ts
// compiles with tsc --strict, and its @ts-expect-error misuses are errors.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import { TEST_DIR } from './helpers/server.js';

test('index.d.ts: the documented uses type-check under tsc --strict', () => {
  const tsc = join(TEST_DIR, '..', 'node_modules', '.bin', 'tsc');
  const args = ['--noEmit', '--strict', '--target', 'es2020', '--module', 'nodenext', '--moduleResolution', 'nodenext', '--skipLibCheck', 'false', join(TEST_DIR, 'types', 'usage.ts')];
  try {
    execFileSync(tsc, args, { cwd: join(TEST_DIR, '..'), encoding: 'utf8', stdio: 'pipe' });
  } catch (e) {
    assert.fail(`tsc: ${e.stdout}${e.stderr}`);
  }
});
