// The world a README example assumes, for examples.test.js: imported first
// by each extracted example (test/.examples/<name>.mjs), in a process of its
// own, it sets up the globals the example's text takes for granted (a
// mini-program's wx, App and Page; a page's window, localStorage, render
// and badge; the app's getToken, token or push) and reports what the
// example does as JSON lines on stdout, for the test to check. The SDK the
// examples load is the package's own build, found by its name
// ('@pushgate/client' resolves to dist/ inside the package; a mini-program's
// require to miniprogram_dist/, as WeChat's "build npm" does).
//
// Environment: EXAMPLE (the example's name), PUSHGATE_URL, EXAMPLE_TOKEN
// (a subscriber token or the API key).

import { createRequire } from 'node:module';
import { pathToFileURL } from 'node:url';
import WebSocket from 'ws';
import { createRuntime } from './miniprogram.js';

const name = process.env.EXAMPLE;
const tok = process.env.EXAMPLE_TOKEN;
const report = (ev) => process.stdout.write(JSON.stringify(ev) + '\n');
console.log = (...args) => report({ log: args });
console.error = (...args) => report({ stderr: args.map(String) });
const fail = (e) => {
  report({ error: String((e && e.stack) || e) });
  process.exit(1);
};
process.on('unhandledRejection', fail);
process.on('uncaughtException', fail);

// Runs after the example's module has been evaluated: hands its exports
// to then.
function afterExample(then) {
  setImmediate(() => import(pathToFileURL(process.argv[1]).href).then(then, fail));
}

// A mini-program runtime (test/helpers/miniprogram.js) whose request
// answers the app's own backend (https://api.example.com) itself.
function miniprogram() {
  const rt = createRuntime('wx');
  const request = rt.api.request;
  rt.api.request = (o) => {
    if (!o.url.startsWith('https://api.example.com/')) return request(o);
    report({ backend: o.url });
    setImmediate(() => {
      o.success?.({ data: { token: tok }, statusCode: 200, header: {} });
      o.complete?.();
    });
    return { abort() {} };
  };
  const set = rt.api.setStorageSync;
  rt.api.setStorageSync = (key, data) => {
    report({ stored: key });
    return set(key, data);
  };
  return rt;
}

const setups = {
  quickstart() {},
  node() {},

  // app.js and a page: App() launches at once, the page loads with
  // {id: '42'}; setData and reload are the page's.
  wx() {
    const rt = miniprogram();
    globalThis.wx = rt.api;
    const localRequire = createRequire(import.meta.url);
    globalThis.require = (m) => (m === '@pushgate/client' ? rt.load() : localRequire(m));
    let app;
    globalThis.App = (o) => {
      app = o;
      o.onLaunch();
    };
    globalThis.getApp = () => app;
    globalThis.Page = (o) => {
      o.setData = (d) => report({ setData: d });
      o.reload = (channel) => report({ reload: channel });
      setImmediate(() => o.onLoad.call(o, { id: '42' }));
    };
  },

  // uni-app on a mini-program target: the module exports the client; the
  // app subscribes with it.
  uni() {
    const rt = miniprogram();
    globalThis.uni = rt.api;
    globalThis.getToken = () => {
      report({ getToken: true });
      return tok;
    };
    afterExample(({ push }) =>
      push.subscribe('news', { onMessage: (m) => report({ message: m.data, sockets: rt.stats.sockets }) }),
    );
  },

  // A page: window, document, localStorage, WebSocket, and the page's
  // token, render and badge.
  h5() {
    const store = new Map();
    globalThis.window = globalThis;
    globalThis.document = { visibilityState: 'visible', hidden: false };
    globalThis.localStorage = {
      getItem: (k) => (store.has(k) ? store.get(k) : null),
      setItem: (k, v) => {
        report({ stored: k });
        store.set(k, String(v));
      },
      removeItem: (k) => store.delete(k),
    };
    globalThis.WebSocket = WebSocket;
    globalThis.token = tok;
    globalThis.render = (data) => report({ render: data });
    globalThis.badge = {
      set textContent(v) {
        report({ badge: v });
      },
    };
  },

  // A client made by the app beforehand, whose answers are reported.
  async requests() {
    const { createClient } = await import('@pushgate/client');
    const push = createClient({ url: process.env.PUSHGATE_URL, token: tok });
    for (const m of ['history', 'send', 'graphql']) {
      const f = push[m].bind(push);
      push[m] = (...args) => f(...args).then((r) => (report({ [m]: r }), r));
    }
    globalThis.push = push;
    afterExample(() => report({ done: true }));
  },
};

if (!setups[name]) fail(new Error(`no setup for example ${name}`));
await setups[name]();
