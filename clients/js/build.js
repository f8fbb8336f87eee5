// Builds dist/ and miniprogram_dist/ from src/ with esbuild. The outputs are
// committed (the console page and `go install` users never need Node), and
// test/build.test.js fails when they differ from what this builds.
//
//   dist/index.mjs            ESM, for bundlers (uni-app, Vite, webpack) and Node
//   dist/index.cjs            CommonJS, for Node's require
//   dist/pushgate.min.js      minified, a <script> global `Pushgate` (the console page)
//   miniprogram_dist/index.js minified CommonJS: what a mini-program's "build npm" copies

import * as esbuild from 'esbuild';
import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

export const ROOT = dirname(fileURLToPath(import.meta.url));

const BANNER = '// @pushgate/client: built from src/ by build.js; do not edit.';

export const OUTPUTS = {
  'dist/index.mjs': { format: 'esm' },
  'dist/index.cjs': { format: 'cjs' },
  'dist/pushgate.min.js': { format: 'iife', globalName: 'Pushgate', minify: true },
  'miniprogram_dist/index.js': { format: 'cjs', minify: true },
};

/** Builds one output in memory and returns its text. */
export async function buildOne(opts) {
  const r = await esbuild.build({
    entryPoints: [join(ROOT, 'src/index.js')],
    bundle: true,
    write: false,
    platform: 'neutral',
    // ES2017: what WeChat's, Alipay's and Douyin's runtimes and older
    // mobile browsers run without a transpiler.
    target: 'es2017',
    legalComments: 'none',
    banner: { js: BANNER },
    ...opts,
  });
  return r.outputFiles[0].text;
}

/** Builds every output in memory: {path: text}. */
export async function buildAll() {
  const out = {};
  for (const [path, opts] of Object.entries(OUTPUTS)) out[path] = await buildOne(opts);
  return out;
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const out = await buildAll();
  for (const [path, text] of Object.entries(out)) {
    mkdirSync(dirname(join(ROOT, path)), { recursive: true });
    writeFileSync(join(ROOT, path), text);
    console.log(`${path}  ${text.length} bytes`);
  }
}
