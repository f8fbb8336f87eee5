// Preloaded by test/run.js into every test file's process (node --require):
// should the process still be alive at SDK_HANDLES_AT (epoch ms, a little
// before run.js kills it), it writes to SDK_HANDLES_FILE what keeps it
// alive, and again every half second: each timer with where it was set,
// each socket, server and child process. A file that finished its tests
// and hangs then says why.
//
// Timers are not in process._getActiveHandles(), so setTimeout and
// setInterval are wrapped to remember where each live one was set. The
// report is armed with an unref'd timer: it never keeps a process alive.
// CommonJS, so --require loads it on every Node >= 18.

'use strict';

const { writeFileSync } = require('node:fs');
const { promisify } = require('node:util');

const at = Number(process.env.SDK_HANDLES_AT);
const file = process.env.SDK_HANDLES_FILE;
// The test runner's own process (node --test) passes its execArgv, this
// preload with it, to each file's process: only those report.
if (at && file && !process.execArgv.includes('--test')) {
  const { setTimeout: realSetTimeout, setInterval: realSetInterval, clearTimeout: realClearTimeout, clearInterval: realClearInterval } = globalThis;
  const live = new Map(); // Timeout -> where it was set

  const where = (kind, ms) => {
    const o = {};
    Error.captureStackTrace(o, where);
    const frames = o.stack
      .split('\n')
      .slice(2) // "Error" and this file's wrapper
      .map((l) => l.trim().replace(/^at /, ''))
      .filter((l) => !/(^|\()node:/.test(l))
      .slice(0, 4);
    return `${kind} ${ms} ms, set at ${frames.join(' < ') || '(node internals)'}`;
  };

  globalThis.setTimeout = function setTimeout(fn, ms, ...args) {
    const t = realSetTimeout(
      typeof fn === 'function'
        ? (...a) => {
            live.delete(t);
            return fn(...a);
          }
        : fn,
      ms,
      ...args,
    );
    live.set(t, where('setTimeout', ms));
    return t;
  };
  globalThis.setTimeout[promisify.custom] = realSetTimeout[promisify.custom];
  globalThis.setInterval = function setInterval(fn, ms, ...args) {
    const t = realSetInterval(fn, ms, ...args);
    live.set(t, where('setInterval', ms));
    return t;
  };
  // Node's clearTimeout and clearInterval clear either kind.
  globalThis.clearTimeout = function clearTimeout(t) {
    live.delete(t);
    return realClearTimeout(t);
  };
  globalThis.clearInterval = function clearInterval(t) {
    live.delete(t);
    return realClearInterval(t);
  };

  const describe = (h) => {
    const name = (h && h.constructor && h.constructor.name) || typeof h;
    if (name === 'ChildProcess') return `child process ${h.pid}: ${(h.spawnargs || []).join(' ').slice(0, 200)}`;
    if (name === 'Server' && typeof h.address === 'function') return `server listening on ${JSON.stringify(h.address())}`;
    if (typeof h.remotePort === 'number' || typeof h.localPort === 'number') {
      const ref = h._handle && typeof h._handle.hasRef === 'function' && !h._handle.hasRef() ? ' (unref)' : '';
      return `socket ${h.localAddress}:${h.localPort} -> ${h.remoteAddress}:${h.remotePort}${ref}`;
    }
    if (typeof h.fd === 'number') return `${name} fd ${h.fd}`;
    return name;
  };

  const report = () => {
    const lines = [`pid ${process.pid}, ${Math.round(process.uptime())} s up; what keeps it alive:`];
    const handles = typeof process._getActiveHandles === 'function' ? process._getActiveHandles() : [];
    for (const h of handles) if (h !== process.stdout && h !== process.stderr && h !== process.stdin) lines.push(`  ${describe(h)}`);
    for (const [t, w] of live) {
      const ref = typeof t.hasRef === 'function' && !t.hasRef() ? ' (unref)' : '';
      lines.push(`  ${w}${ref}`);
    }
    if (typeof process.getActiveResourcesInfo === 'function') {
      const counts = {};
      for (const r of process.getActiveResourcesInfo()) counts[r] = (counts[r] || 0) + 1;
      lines.push(`  resources: ${JSON.stringify(counts)}`);
    }
    try {
      writeFileSync(file, lines.join('\n') + '\n');
    } catch (e) {
      process.stderr.write(lines.join('\n') + '\n');
    }
  };

  // Written again every half second until the kill, so it is fresh.
  realSetTimeout(() => {
    report();
    realSetInterval(report, 500).unref();
  }, Math.max(0, at - Date.now())).unref();
}
