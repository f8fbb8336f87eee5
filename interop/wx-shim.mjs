// A shim of the WeChat mini-program network APIs pushgate's mini-program
// users call, on Node's `ws` and `http`: wx.connectSocket (SocketTask) and
// wx.request (RequestTask, with enableChunked and onChunkReceived).
//
// It keeps the platform behaviours that shape the server, so that code
// written against it meets pushgate as a mini-program would:
// - connectSocket sends `protocols` as Sec-WebSocket-Protocol, and the
//   handshake fails (onError, then onClose) unless the server echoes one of
//   them; no Origin header is sent; at most 5 sockets are open at once.
// - SocketTask.onMessage gets { data } with a string for a text frame and
//   an ArrayBuffer for a binary one; send before open fails.
// - request caps timeout at 60 s (the default, too); HTTP error statuses are
//   success callbacks with statusCode; only network failures call fail.
//   dataType 'json' (default) parses a JSON body, else leaves the string.
//   GET turns an object `data` into a query string; POST sends an object as
//   JSON (or form-encoded with that content-type).
// - enableChunked: the body is delivered only through
//   RequestTask.onChunkReceived({ data: ArrayBuffer }), here in pieces of
//   random length (chunkMin..chunkMax bytes, from a seeded generator) that
//   cut UTF-8 sequences and SSE events anywhere. Each piece is its own
//   ArrayBuffer (never a view of a larger buffer).

import http from 'node:http';
import WebSocket from 'ws';

/** mulberry32: a small seeded generator, so a failing split can be replayed. */
export function seededRandom(seed) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const MAX_SOCKETS = 5;
const MAX_REQUEST_TIMEOUT = 60_000;
const USER_AGENT = 'Mozilla/5.0 (Linux; Android 14) AppleWebKit/537.36 (KHTML, like Gecko) Mobile MicroMessenger/8.0.50 MiniProgramEnv/android';
const REFERER = 'https://servicewechat.com/wx0000000000000000/devtools/page-frame.html';

function call(opts, name, res) {
  try {
    opts?.[name]?.(res);
  } finally {
    opts?.complete?.(res);
  }
}

function copyToArrayBuffer(buf, start = 0, end = buf.length) {
  return buf.buffer.slice(buf.byteOffset + start, buf.byteOffset + end);
}

function headersObject(rawHeaders) {
  // WeChat keeps the server's header names; join repeated ones.
  const out = {};
  for (let i = 0; i < rawHeaders.length; i += 2) {
    const k = rawHeaders[i];
    out[k] = k in out ? `${out[k]}, ${rawHeaders[i + 1]}` : rawHeaders[i + 1];
  }
  return out;
}

function headerGet(headers, name) {
  const n = name.toLowerCase();
  for (const k of Object.keys(headers)) if (k.toLowerCase() === n) return headers[k];
  return undefined;
}

function encodeQuery(obj) {
  return Object.entries(obj)
    .filter(([, v]) => v !== undefined)
    .map(([k, v]) => `${encodeURIComponent(k)}=${encodeURIComponent(typeof v === 'object' && v !== null ? JSON.stringify(v) : String(v))}`)
    .join('&');
}

/**
 * createWx({ seed, chunkMin, chunkMax }) returns a `wx` object. stats
 * records what the platform did (chunk sizes, sockets), for assertions.
 */
export function createWx({ seed = Date.now() >>> 0, chunkMin = 1, chunkMax = 50 } = {}) {
  const random = seededRandom(seed);
  const openSockets = new Set();
  const stats = { seed, chunks: [], sockets: 0, handshakeHeaders: [] };

  function connectSocket(opts) {
    const task = new SocketTask();
    if (openSockets.size >= MAX_SOCKETS) {
      const res = { errMsg: `connectSocket:fail exceed max task count ${MAX_SOCKETS}` };
      queueMicrotask(() => { call(opts, 'fail', res); task._error(res.errMsg); });
      return task;
    }
    const headers = { 'User-Agent': USER_AGENT, Referer: REFERER, ...(opts.header || {}) };
    const protocols = opts.protocols && opts.protocols.length ? opts.protocols : undefined;
    let ws;
    try {
      ws = new WebSocket(opts.url, protocols, {
        headers,
        perMessageDeflate: !!opts.perMessageDeflate,
        handshakeTimeout: Math.min(opts.timeout ?? MAX_REQUEST_TIMEOUT, MAX_REQUEST_TIMEOUT),
      });
    } catch (err) {
      const res = { errMsg: `connectSocket:fail ${err.message}` };
      queueMicrotask(() => call(opts, 'fail', res));
      return task;
    }
    stats.sockets++;
    openSockets.add(task);
    task._attach(ws, () => openSockets.delete(task), stats);
    queueMicrotask(() => call(opts, 'success', { errMsg: 'connectSocket:ok' }));
    return task;
  }

  function request(opts) {
    const task = new RequestTask();
    const method = (opts.method || 'GET').toUpperCase();
    const header = { ...(opts.header || {}) };
    const timeout = Math.min(opts.timeout ?? MAX_REQUEST_TIMEOUT, MAX_REQUEST_TIMEOUT);
    const url = new URL(opts.url);
    let body;
    if (opts.data !== undefined && opts.data !== null) {
      if (method === 'GET') {
        const q = typeof opts.data === 'string' ? opts.data : encodeQuery(opts.data);
        if (q) url.search = url.search ? `${url.search}&${q}` : `?${q}`;
      } else {
        const ct = headerGet(header, 'content-type');
        if (!ct) header['content-type'] = 'application/json';
        if (typeof opts.data === 'string') body = Buffer.from(opts.data, 'utf8');
        else if (opts.data instanceof ArrayBuffer) body = Buffer.from(opts.data);
        else if (ct && /x-www-form-urlencoded/i.test(ct)) body = Buffer.from(encodeQuery(opts.data), 'utf8');
        else body = Buffer.from(JSON.stringify(opts.data), 'utf8');
      }
    }
    header['User-Agent'] ??= USER_AGENT;
    header.Referer ??= REFERER;
    if (body) header['Content-Length'] = String(body.length);

    let settled = false;
    const settle = (name, res) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      call(opts, name, res);
    };
    const req = http.request(url, { method, headers: header });
    const timer = setTimeout(() => {
      settle('fail', { errMsg: 'request:fail timeout', errno: 5 });
      req.destroy();
    }, timeout);
    task._abort = () => {
      settle('fail', { errMsg: 'request:fail abort', errno: 1 });
      req.destroy();
    };
    req.on('error', (err) => settle('fail', { errMsg: `request:fail ${err.message}`, errno: 600001 }));
    req.on('response', (res) => {
      const resHeader = headersObject(res.rawHeaders);
      task._headers({ header: resHeader, statusCode: res.statusCode, cookies: [] });
      const parts = [];
      res.on('data', (buf) => {
        if (!opts.enableChunked) {
          parts.push(buf);
          return;
        }
        // Cut the bytes anywhere: random pieces of chunkMin..chunkMax.
        for (let off = 0; off < buf.length;) {
          const n = Math.min(buf.length - off, chunkMin + Math.floor(random() * (chunkMax - chunkMin + 1)));
          stats.chunks.push(n);
          task._chunk({ data: copyToArrayBuffer(buf, off, off + n) });
          off += n;
        }
      });
      res.on('error', (err) => settle('fail', { errMsg: `request:fail ${err.message}`, errno: 600001 }));
      res.on('end', () => {
        let data = '';
        if (!opts.enableChunked) {
          const all = Buffer.concat(parts);
          if (opts.responseType === 'arraybuffer') data = copyToArrayBuffer(all);
          else {
            data = all.toString('utf8');
            if ((opts.dataType ?? 'json') === 'json') {
              try { data = JSON.parse(data); } catch { /* stays a string */ }
            }
          }
        }
        settle('success', { data, statusCode: res.statusCode, header: resHeader, cookies: [], errMsg: 'request:ok' });
      });
    });
    if (body) req.write(body);
    req.end();
    return task;
  }

  return { connectSocket, request, stats };
}

export class SocketTask {
  constructor() {
    this._on = { open: [], message: [], close: [], error: [] };
    this._ws = null;
    this._closed = false;
  }

  onOpen(cb) { this._on.open.push(cb); }
  onMessage(cb) { this._on.message.push(cb); }
  onClose(cb) { this._on.close.push(cb); }
  onError(cb) { this._on.error.push(cb); }

  send(opts) {
    if (!this._ws || this._ws.readyState !== WebSocket.OPEN) {
      queueMicrotask(() => call(opts, 'fail', { errMsg: 'sendSocketMessage:fail WebSocket is not connected' }));
      return;
    }
    const data = opts.data instanceof ArrayBuffer ? Buffer.from(opts.data) : opts.data;
    this._ws.send(data, { binary: opts.data instanceof ArrayBuffer }, (err) => {
      if (err) call(opts, 'fail', { errMsg: `sendSocketMessage:fail ${err.message}` });
      else call(opts, 'success', { errMsg: 'sendSocketMessage:ok' });
    });
  }

  close(opts = {}) {
    if (this._ws && this._ws.readyState <= WebSocket.OPEN) this._ws.close(opts.code ?? 1000, opts.reason ?? '');
    queueMicrotask(() => call(opts, 'success', { errMsg: 'closeSocket:ok' }));
  }

  _emit(name, res) {
    for (const cb of this._on[name]) cb(res);
  }

  _error(errMsg) {
    this._emit('error', { errMsg });
  }

  _attach(ws, release, stats) {
    this._ws = ws;
    let opened = false;
    let handshakeHeader = null;
    ws.on('upgrade', (res) => {
      handshakeHeader = headersObject(res.rawHeaders);
      stats.handshakeHeaders.push(handshakeHeader);
    });
    ws.on('open', () => {
      opened = true;
      this.protocol = ws.protocol;
      this._emit('open', { header: handshakeHeader, profile: {} });
    });
    ws.on('message', (buf, isBinary) => {
      this._emit('message', { data: isBinary ? copyToArrayBuffer(buf) : buf.toString('utf8') });
    });
    ws.on('error', (err) => {
      // e.g. "Server sent no subprotocol": WeChat fails the handshake too.
      this._error(`${opened ? '' : 'connectSocket:fail '}${err.message}`);
    });
    ws.on('close', (code, reason) => {
      if (this._closed) return;
      this._closed = true;
      release();
      this._emit('close', { code, reason: reason.toString('utf8') });
    });
  }
}

export class RequestTask {
  constructor() {
    this._onChunk = [];
    this._onHeaders = [];
    this._abort = () => {};
  }

  abort() { this._abort(); }
  onChunkReceived(cb) { this._onChunk.push(cb); }
  offChunkReceived(cb) { this._onChunk = cb ? this._onChunk.filter((f) => f !== cb) : []; }
  onHeadersReceived(cb) { this._onHeaders.push(cb); }
  offHeadersReceived(cb) { this._onHeaders = cb ? this._onHeaders.filter((f) => f !== cb) : []; }

  _chunk(res) { for (const cb of this._onChunk) cb(res); }
  _headers(res) { for (const cb of this._onHeaders) cb(res); }
}
