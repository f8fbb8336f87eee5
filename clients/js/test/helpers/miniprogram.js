// A mini-program runtime for the SDK's tests: the `wx` (WeChat) or `my`
// (Alipay) network, storage and lifecycle APIs the SDK calls, over real
// sockets (the `ws` package) and real HTTP (node:http), built from the
// platforms' public documentation, and the SDK's mini-program build loaded
// into a vm context holding nothing else (no TextDecoder, Buffer, fetch,
// WebSocket, EventSource, require or process), as a phone would run it.
//
// What each platform does that shapes a client:
// - connectSocket sends `protocols` as Sec-WebSocket-Protocol and the
//   handshake fails (onError, then onClose) unless the server echoes one;
//   at most 5 sockets are open at once (a 6th fails: "exceed max task
//   count"). Alipay returns a SocketTask only for `multiple: true` (else it
//   has one global socket), and its onMessage gives {data, isBuffer}.
// - request: WeChat takes `header` and answers {data, statusCode, header};
//   Alipay takes `headers` (lower-case) and answers {data, status,
//   headers}, with failures {error, errorMessage}. WeChat caps a request at
//   60 s (its default too); Alipay's default is 30 s. dataType 'json'
//   parses a JSON body.
// - enableChunked (WeChat): the body comes only through
//   RequestTask.onChunkReceived({data: ArrayBuffer}), here in pieces of
//   random size (seeded) that cut characters and events anywhere, mostly
//   small, sometimes hundreds of KB. Alipay's request has no chunks (its
//   RequestTask has abort only), nor has WeChat's with chunked: false.
// - Storage: wx.getStorageSync(key) ('' when missing) and
//   setStorageSync(key, data); my.getStorageSync({key}) -> {data} and
//   setStorageSync({key, data}).
// - Lifecycle: onAppShow/onAppHide, onNetworkStatusChange, and their off*.
//
// control.hide() fires onAppHide and, cutAfter ms later, cuts every socket
// and request and refuses new ones (WeChat cuts a background app's network
// about 5 s after it hides), until control.show(). control.cut() drops every
// connection at once (a network blip); control.freeze() makes open sockets
// silent without closing them (a half-open TCP connection); control.hold()
// keeps what sockets receive until control.release() hands it over at once
// (frames in flight while the app calls close, or hides).
//
// control.timers lists the timers the loaded SDK has set and not yet seen
// fire or cleared: a client that was closed must hold none.

import http from 'node:http';
import vm from 'node:vm';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import WebSocket from 'ws';
import { seededRandom } from './random.js';
import { TEST_DIR } from './server.js';

const MAX_SOCKETS = 5;
const SDK = readFileSync(join(TEST_DIR, '..', 'miniprogram_dist', 'index.js'), 'utf8');

function toArrayBuffer(buf, start = 0, end = buf.length) {
  return buf.buffer.slice(buf.byteOffset + start, buf.byteOffset + end);
}

function headersObject(raw, lower) {
  const out = {};
  for (let i = 0; i < raw.length; i += 2) {
    const k = lower ? raw[i].toLowerCase() : raw[i];
    out[k] = k in out ? `${out[k]}, ${raw[i + 1]}` : raw[i + 1];
  }
  return out;
}

export function createRuntime(kind = 'wx', opts = {}) {
  const alipay = kind === 'my';
  // opts: seed, chunked (WeChat's request has chunks; false: an old base
  // library), pieceSize(random) (the sizes chunks are cut to), storage (a
  // Map, shared to survive an app restart).
  const { seed = (Math.random() * 2 ** 32) >>> 0, chunked = !alipay } = opts;
  const random = seededRandom(seed);
  const sockets = new Set(); // open SocketTasks
  const requests = new Set(); // requests in flight: {cut}
  const listeners = { show: new Set(), hide: new Set(), net: new Set() };
  const storage = opts.storage || new Map();
  let offline = false;
  let blockSockets = false;
  let holding = false;
  const tasks = new Set(); // every SocketTask not yet closed, open or closing
  const timers = new Map(); // the SDK's pending timers -> what they are
  const stats = { seed, appCloses: [], closeCodes: [], sockets: 0, maxOpen: 0, capRefusals: 0, singleInstance: 0, chunks: 0, largestChunk: 0, requests: 0, maxInflight: 0, handshakeProtocols: [] };

  const callback = (o, name, res) => {
    try {
      o?.[name]?.(res);
    } finally {
      o?.complete?.(res);
    }
  };
  const later = (fn) => setImmediate(fn);
  const requestFail = (errMsg) => (alipay ? { error: 12, errorMessage: errMsg } : { errMsg: `request:fail ${errMsg}`, errno: 600001 });

  // Pieces of a chunked body: mostly small, some medium, a few up to 300 KB
  // (what several events arriving at once make).
  function nextPieceSize() {
    if (opts.pieceSize) return opts.pieceSize(random);
    const r = random();
    if (r < 0.7) return 1 + Math.floor(random() * 64);
    if (r < 0.95) return 64 + Math.floor(random() * 4096);
    return 4096 + Math.floor(random() * 300_000);
  }

  function connectSocket(o) {
    if (alipay && !o.multiple) {
      // Alipay's single-instance mode: no SocketTask, my.onSocket* instead.
      stats.singleInstance++;
      return undefined;
    }
    const task = new SocketTask(alipay, stats);
    if (holding) task._held = [];
    if (offline || blockSockets) {
      // A refused handshake (no network, or a proxy without WebSocket).
      later(() => {
        callback(o, 'fail', alipay ? { error: 6, errorMessage: 'connect timeout' } : { errMsg: 'connectSocket:fail network unavailable' });
        task._emit('error', { errMsg: 'connectSocket:fail' });
        task._emit('close', { code: 1006, reason: 'abnormal closure' });
      });
      return task;
    }
    if (sockets.size >= MAX_SOCKETS) {
      stats.capRefusals++;
      later(() => {
        callback(o, 'fail', { errMsg: `connectSocket:fail exceed max task count ${MAX_SOCKETS}` });
        task._emit('error', { errMsg: 'exceed max task count' });
      });
      return task;
    }
    const protocols = o.protocols && o.protocols.length ? o.protocols : undefined;
    stats.handshakeProtocols.push(protocols);
    const ws = new WebSocket(o.url, protocols, { headers: o.header || {}, perMessageDeflate: false, handshakeTimeout: 60_000 });
    stats.sockets++;
    sockets.add(task);
    stats.maxOpen = Math.max(stats.maxOpen, sockets.size);
    tasks.add(task);
    task._attach(ws, () => {
      sockets.delete(task);
      tasks.delete(task);
    });
    later(() => callback(o, 'success', { errMsg: 'connectSocket:ok' }));
    return task;
  }

  function request(o) {
    const task = alipay ? new AlipayRequestTask() : new RequestTask(chunked);
    const method = (o.method || 'GET').toUpperCase();
    const header = { ...((alipay ? o.headers : o.header) || {}) };
    const timeout = alipay ? o.timeout ?? 30_000 : Math.min(o.timeout ?? 60_000, 60_000);
    const dataType = o.dataType ?? 'json';
    const streaming = chunked && !alipay && o.enableChunked;
    let settled = false;
    let timer = null;
    let req = null;
    const settle = (name, res) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      requests.delete(handle);
      callback(o, name, res);
    };
    const handle = {
      frozen: false,
      cut: (why) => {
        settle('fail', requestFail(why));
        req?.destroy();
      },
    };
    task._abort = () => handle.cut('abort');
    stats.requests++;
    if (offline) {
      later(() => settle('fail', requestFail('network unavailable')));
      return task;
    }
    requests.add(handle);
    stats.maxInflight = Math.max(stats.maxInflight, requests.size);
    const url = new URL(o.url);
    let body;
    if (o.data != null && method !== 'GET') {
      body = Buffer.from(typeof o.data === 'string' ? o.data : JSON.stringify(o.data), 'utf8');
      header['content-type'] ??= header['Content-Type'] ?? 'application/json';
      delete header['Content-Type'];
    }
    timer = setTimeout(() => handle.cut('timeout'), timeout);
    req = http.request(url, { method, headers: header });
    req.on('error', (err) => settle('fail', requestFail(err.message)));
    req.on('response', (res) => {
      const resHeader = headersObject(res.rawHeaders, alipay);
      task._headers({ header: resHeader, statusCode: res.statusCode });
      const parts = [];
      let pending = Buffer.alloc(0);
      let target = nextPieceSize();
      let flushTimer = null;
      const emit = (n) => {
        const piece = pending.subarray(0, n);
        pending = pending.subarray(n);
        stats.chunks++;
        stats.largestChunk = Math.max(stats.largestChunk, piece.length);
        task._chunk({ data: toArrayBuffer(piece) });
      };
      const drain = (all) => {
        while (pending.length >= target) {
          emit(target);
          target = nextPieceSize();
        }
        if (all && pending.length) emit(pending.length);
      };
      res.on('data', (buf) => {
        if (handle.frozen) return; // a half-open connection: nothing arrives
        if (!streaming) return parts.push(buf);
        pending = Buffer.concat([pending, buf]);
        drain(false);
        // What has not made a whole piece goes out soon: a platform does
        // not hold bytes back for long.
        clearTimeout(flushTimer);
        flushTimer = setTimeout(() => !settled && drain(true), target > 4096 ? 25 : 3);
      });
      res.on('error', (err) => settle('fail', requestFail(err.message)));
      res.on('end', () => {
        clearTimeout(flushTimer);
        if (settled) return;
        let data = '';
        if (streaming) drain(true);
        else {
          data = Buffer.concat(parts).toString('utf8');
          if (dataType === 'json') {
            try {
              data = JSON.parse(data);
            } catch {
              if (alipay) return settle('fail', { error: 14, errorMessage: 'JSON parse error' });
            }
          }
        }
        settle(
          'success',
          alipay ? { data, status: res.statusCode, headers: resHeader } : { data, statusCode: res.statusCode, header: resHeader, cookies: [], errMsg: 'request:ok' },
        );
      });
    });
    if (body) req.write(body);
    req.end();
    return task;
  }

  const clone = (v) => (v === undefined ? v : JSON.parse(JSON.stringify(v)));
  const api = {
    connectSocket,
    request,
    getStorageSync: alipay ? ({ key }) => ({ data: storage.has(key) ? clone(storage.get(key)) : null }) : (key) => (storage.has(key) ? clone(storage.get(key)) : ''),
    setStorageSync: alipay ? ({ key, data }) => void storage.set(key, clone(data)) : (key, data) => void storage.set(key, clone(data)),
    onAppShow: (fn) => listeners.show.add(fn),
    offAppShow: (fn) => listeners.show.delete(fn),
    onAppHide: (fn) => listeners.hide.add(fn),
    offAppHide: (fn) => listeners.hide.delete(fn),
    onNetworkStatusChange: (fn) => listeners.net.add(fn),
    offNetworkStatusChange: (fn) => listeners.net.delete(fn),
  };

  function cutAll() {
    const n = sockets.size + requests.size;
    for (const t of sockets) t._cut();
    for (const r of [...requests]) r.cut('interrupted');
    return n;
  }

  const control = {
    kind,
    api,
    stats,
    storage,
    get openSockets() {
      return sockets.size;
    },
    get inflight() {
      return requests.size;
    },
    /** Drops every socket and request at once; returns how many there were. */
    cut: cutAll,
    /** Open sockets and requests in flight stop delivering (and sending) without closing. */
    freeze() {
      for (const t of sockets) t._frozen = true;
      for (const r of requests) r.frozen = true;
    },
    blockSockets(on) {
      blockSockets = on;
    },
    /** What sockets receive from now on is kept, in order, until release(). */
    hold() {
      holding = true;
      for (const t of tasks) t._held ||= [];
    },
    /** Hands every kept frame to its socket's onMessage, now. */
    release() {
      holding = false;
      for (const t of tasks) t._release();
    },
    /** Frames kept by hold(). */
    get held() {
      let n = 0;
      for (const t of tasks) n += t._held ? t._held.length : 0;
      return n;
    },
    /** The SDK's timers that are set and have neither fired nor been cleared: ["setInterval 15000 ms: <its code>"]. */
    get timers() {
      return [...timers.values()];
    },
    /** onAppHide now; after cutAfter ms, every connection is cut and the network is gone until show(). */
    async hide(cutAfter = 50) {
      for (const fn of [...listeners.hide]) fn();
      await new Promise((r) => setTimeout(r, cutAfter));
      offline = true;
      cutAll();
    },
    show() {
      offline = false;
      for (const fn of [...listeners.show]) fn({ scene: 1001, path: 'pages/index/index', query: {} });
    },
    network(isConnected) {
      offline = !isConnected;
      if (!isConnected) cutAll();
      for (const fn of [...listeners.net]) fn({ isConnected, networkType: isConnected ? 'wifi' : 'none' });
    },
    /**
     * Loads the SDK's mini-program build with only this runtime's API
     * object in scope, as the global `name` (uni-app and Douyin offer the
     * same API as uni and tt).
     */
    load(name = kind) {
      const what = (kind, fn, ms) => `${kind} ${ms ?? 0} ms: ${String(fn).slice(0, 120)}`;
      const ctx = vm.createContext({
        [name]: api,
        setTimeout(fn, ms, ...args) {
          const t = setTimeout(() => {
            timers.delete(t);
            fn(...args);
          }, ms);
          timers.set(t, what('setTimeout', fn, ms));
          return t;
        },
        setInterval(fn, ms, ...args) {
          const t = setInterval(fn, ms, ...args);
          timers.set(t, what('setInterval', fn, ms));
          return t;
        },
        clearTimeout(t) {
          timers.delete(t);
          clearTimeout(t);
        },
        clearInterval(t) {
          timers.delete(t);
          clearInterval(t);
        },
        console,
      });
      const module = { exports: {} };
      vm.runInContext(`(function (module, exports) {${SDK}\n})`, ctx, { filename: 'miniprogram_dist/index.js' })(module, module.exports);
      return module.exports;
    },
  };
  return control;
}

class SocketTask {
  constructor(alipay, stats) {
    this._alipay = alipay;
    this._stats = stats;
    this._on = { open: [], message: [], close: [], error: [] };
    this._ws = null;
    this._closed = false;
    this._frozen = false;
    this._held = null; // frames kept by control.hold()
  }

  onOpen(cb) { this._on.open.push(cb); }
  onMessage(cb) { this._on.message.push(cb); }
  onClose(cb) { this._on.close.push(cb); }
  onError(cb) { this._on.error.push(cb); }

  send(o) {
    if (!this._ws || this._ws.readyState !== WebSocket.OPEN) {
      setImmediate(() => o?.fail?.({ errMsg: 'sendSocketMessage:fail WebSocket is not connected' }));
      return;
    }
    if (this._frozen) return; // a half-open connection: it goes nowhere
    this._ws.send(o.data, (err) => (err ? o?.fail?.({ errMsg: `sendSocketMessage:fail ${err.message}` }) : o?.success?.({ errMsg: 'sendSocketMessage:ok' })));
  }

  close(o = {}) {
    this._stats.appCloses.push(o.code);
    if (this._ws && this._ws.readyState <= WebSocket.OPEN) this._ws.close(o.code ?? 1000, o.reason ?? '');
    setImmediate(() => o?.success?.({ errMsg: 'closeSocket:ok' }));
  }

  _emit(name, res) {
    for (const cb of this._on[name]) cb(res);
  }

  _cut() {
    this._ws?.terminate();
  }

  _release() {
    const held = this._held || [];
    this._held = null;
    for (const res of held) this._emit('message', res);
  }

  _attach(ws, release) {
    this._ws = ws;
    let opened = false;
    ws.on('open', () => {
      opened = true;
      this._emit('open', { header: {} });
    });
    ws.on('message', (buf, isBinary) => {
      if (this._frozen) return;
      const data = isBinary ? toArrayBuffer(buf) : buf.toString('utf8');
      const res = this._alipay ? { data, isBuffer: false } : { data };
      if (this._held) this._held.push(res);
      else this._emit('message', res);
    });
    ws.on('error', (err) => this._emit('error', { errMsg: `${opened ? '' : 'connectSocket:fail '}${err.message}` }));
    ws.on('close', (code, reason) => {
      if (this._closed) return;
      this._closed = true;
      release();
      this._stats.closeCodes.push(code);
      this._emit('close', { code, reason: reason.toString('utf8') });
    });
  }
}

class RequestTask {
  constructor(chunked) {
    this._onChunk = [];
    this._onHeaders = [];
    this._abort = () => {};
    if (!chunked) {
      // An old base library: no chunk events at all.
      this.onChunkReceived = undefined;
      this.offChunkReceived = undefined;
    }
  }

  abort() { this._abort(); }
  onChunkReceived(cb) { this._onChunk.push(cb); }
  offChunkReceived(cb) { this._onChunk = cb ? this._onChunk.filter((f) => f !== cb) : []; }
  onHeadersReceived(cb) { this._onHeaders.push(cb); }
  offHeadersReceived(cb) { this._onHeaders = cb ? this._onHeaders.filter((f) => f !== cb) : []; }
  _chunk(res) { for (const cb of this._onChunk) cb(res); }
  _headers(res) { for (const cb of this._onHeaders) cb(res); }
}

// Alipay's RequestTask: abort only.
class AlipayRequestTask {
  constructor() {
    this._abort = () => {};
  }

  abort() { this._abort(); }
  _chunk() {}
  _headers() {}
}
