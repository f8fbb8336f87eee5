// Mini-program code: what a WeChat mini-program runs to receive from
// pushgate, written only against `wx` (passed in) and plain JavaScript. A
// mini-program has no TextDecoder, TextEncoder, Buffer, fetch, EventSource
// or Node modules, so this file uses none (wx.test.mjs checks it): UTF-8
// bytes become strings by hand, SSE is parsed by hand.

// ---------------------------------------------------------------- UTF-8

/** Decodes UTF-8 bytes (a Uint8Array holding whole characters) to a string. */
export function utf8Decode(bytes) {
  const units = [];
  let out = '';
  const n = bytes.length;
  let i = 0;
  while (i < n) {
    const b0 = bytes[i];
    let cp = 0xfffd;
    let len = 1;
    if (b0 < 0x80) {
      cp = b0;
    } else if (b0 >= 0xc2 && b0 <= 0xdf) {
      if (i + 1 < n && (bytes[i + 1] & 0xc0) === 0x80) {
        cp = ((b0 & 0x1f) << 6) | (bytes[i + 1] & 0x3f);
        len = 2;
      }
    } else if (b0 >= 0xe0 && b0 <= 0xef) {
      const b1 = bytes[i + 1];
      const b2 = bytes[i + 2];
      if (i + 2 < n && (b1 & 0xc0) === 0x80 && (b2 & 0xc0) === 0x80) {
        const c = ((b0 & 0x0f) << 12) | ((b1 & 0x3f) << 6) | (b2 & 0x3f);
        if (c >= 0x800 && (c < 0xd800 || c > 0xdfff)) {
          cp = c;
          len = 3;
        }
      }
    } else if (b0 >= 0xf0 && b0 <= 0xf4) {
      const b1 = bytes[i + 1];
      const b2 = bytes[i + 2];
      const b3 = bytes[i + 3];
      if (i + 3 < n && (b1 & 0xc0) === 0x80 && (b2 & 0xc0) === 0x80 && (b3 & 0xc0) === 0x80) {
        const c = ((b0 & 0x07) << 18) | ((b1 & 0x3f) << 12) | ((b2 & 0x3f) << 6) | (b3 & 0x3f);
        if (c >= 0x10000 && c <= 0x10ffff) {
          cp = c;
          len = 4;
        }
      }
    }
    if (cp > 0xffff) {
      const v = cp - 0x10000;
      units.push(0xd800 + (v >> 10), 0xdc00 + (v & 0x3ff));
    } else {
      units.push(cp);
    }
    i += len;
    if (units.length >= 4096) {
      out += String.fromCharCode.apply(null, units);
      units.length = 0;
    }
  }
  return out + String.fromCharCode.apply(null, units);
}

function concatBytes(a, b) {
  const out = new Uint8Array(a.length + b.length);
  out.set(a, 0);
  out.set(b, a.length);
  return out;
}

function query(params) {
  const parts = [];
  for (const key of Object.keys(params)) {
    const v = params[key];
    if (v === undefined || v === null) continue;
    for (const item of Array.isArray(v) ? v : [v]) parts.push(encodeURIComponent(key) + '=' + encodeURIComponent(item));
  }
  return parts.join('&');
}

// ---------------------------------------------------------------- GraphQL over HTTP

/** POST /graphql through wx.request; resolves with the response body. */
export function graphqlRequest(wx, base, token, queryText, variables) {
  return new Promise((resolve, reject) => {
    wx.request({
      url: base + '/graphql',
      method: 'POST',
      header: { 'content-type': 'application/json', Authorization: 'Bearer ' + token },
      data: { query: queryText, variables: variables || {} },
      success: (res) => resolve(res.data),
      fail: (err) => reject(new Error(err.errMsg)),
    });
  });
}

// ---------------------------------------------------------------- graphql-transport-ws over wx.connectSocket

/**
 * One socket, many subscriptions (a mini-program may hold only 5 sockets).
 * connect() resolves on connection_ack; subscribe() returns an id whose
 * events go to handlers { next(payload), error(errors), complete() }.
 */
export function createSocketClient(wx, opts) {
  const subs = {};
  let nextId = 1;
  let ackResolve;
  let ackReject;
  const acked = new Promise((resolve, reject) => { ackResolve = resolve; ackReject = reject; });
  const client = { openHeader: null, closed: null, errors: [] };

  const task = wx.connectSocket({
    url: opts.url,
    protocols: ['graphql-transport-ws'],
    header: opts.header || {},
  });
  const sendJSON = (msg) => task.send({ data: JSON.stringify(msg) });

  task.onOpen((res) => {
    client.openHeader = res.header;
    sendJSON({ type: 'connection_init', payload: opts.token ? { token: opts.token } : {} });
  });
  task.onMessage((res) => {
    const msg = JSON.parse(typeof res.data === 'string' ? res.data : utf8Decode(new Uint8Array(res.data)));
    const sub = msg.id !== undefined ? subs[msg.id] : undefined;
    switch (msg.type) {
      case 'connection_ack':
        ackResolve();
        break;
      case 'ping':
        sendJSON({ type: 'pong' });
        break;
      case 'next':
        if (sub) sub.next(msg.payload);
        break;
      case 'error':
        if (sub) { delete subs[msg.id]; sub.error(msg.payload); }
        break;
      case 'complete':
        if (sub) { delete subs[msg.id]; sub.complete(); }
        break;
      default:
        break;
    }
  });
  task.onError((res) => {
    client.errors.push(res.errMsg);
    ackReject(new Error(res.errMsg));
  });
  task.onClose((res) => {
    client.closed = res;
    ackReject(new Error('socket closed: ' + res.code + ' ' + res.reason));
  });

  client.connect = () => acked;
  client.subscribe = (queryText, variables, handlers) => {
    const id = String(nextId++);
    subs[id] = handlers;
    sendJSON({ id, type: 'subscribe', payload: { query: queryText, variables } });
    return id;
  };
  client.unsubscribe = (id) => {
    if (subs[id]) {
      delete subs[id];
      sendJSON({ id, type: 'complete' });
    }
  };
  client.close = () => task.close({ code: 1000, reason: 'bye' });
  client.task = task;
  return client;
}

// ---------------------------------------------------------------- long-poll over wx.request

/**
 * Polls GET /poll until stop() is called: first without a cursor (answered
 * at once with the current position), then with the cursor of each answer.
 * onMessages(messages) and onReset(reset) get what arrives; polls that fail
 * are retried after a second, with the same cursor.
 */
export function startPolling(wx, opts) {
  let stopped = false;
  let cursor = null;
  let current = null;
  const state = { polls: 0, failures: [], answers: [] };

  function poll() {
    if (stopped) return;
    const params = { channel: opts.channels, timeout: cursor === null ? undefined : opts.timeout, limit: opts.limit, cursor, token: opts.token };
    const started = Date.now();
    state.polls++;
    current = wx.request({
      url: opts.base + '/poll?' + query(params),
      method: 'GET',
      timeout: 60000,
      success: (res) => {
        if (stopped) return;
        if (res.statusCode !== 200) {
          state.failures.push(res.statusCode + ' ' + JSON.stringify(res.data));
          setTimeout(poll, 1000);
          return;
        }
        const body = res.data;
        state.answers.push({ hadCursor: cursor !== null, ms: Date.now() - started, n: body.messages.length, cursor: body.cursor });
        if (body.reset && opts.onReset) opts.onReset(body.reset);
        if (body.messages.length && opts.onMessages) opts.onMessages(body.messages);
        cursor = body.cursor;
        poll();
      },
      fail: (err) => {
        if (stopped) return;
        state.failures.push(err.errMsg);
        setTimeout(poll, 1000);
      },
    });
  }

  poll();
  state.stop = () => {
    stopped = true;
    if (current) current.abort();
  };
  state.cursor = () => cursor;
  return state;
}

// ---------------------------------------------------------------- SSE over a chunked wx.request

/** Parses one SSE event block (a string without its blank line). */
export function parseSSEBlock(block) {
  const ev = { id: undefined, event: undefined, data: undefined, retry: undefined, comments: [] };
  const dataLines = [];
  const lines = block.split('\n');
  for (let k = 0; k < lines.length; k++) {
    let line = lines[k];
    if (line.length && line.charCodeAt(line.length - 1) === 13) line = line.slice(0, -1);
    if (line === '') continue;
    if (line.charAt(0) === ':') {
      ev.comments.push(line.slice(1).trim());
      continue;
    }
    const colon = line.indexOf(':');
    const field = colon < 0 ? line : line.slice(0, colon);
    let value = colon < 0 ? '' : line.slice(colon + 1);
    if (value.charAt(0) === ' ') value = value.slice(1);
    if (field === 'id') ev.id = value;
    else if (field === 'event') ev.event = value;
    else if (field === 'data') dataLines.push(value);
    else if (field === 'retry') ev.retry = Number(value);
  }
  if (dataLines.length) ev.data = dataLines.join('\n');
  return ev;
}

/**
 * Opens GET /events with wx.request({enableChunked: true}) and calls
 * onEvent(event) for every SSE block, reassembled from the chunks: bytes are
 * kept until a blank line (LF LF) completes a block, and only then decoded,
 * so a chunk that ends inside a UTF-8 sequence or a line costs nothing.
 */
export function openChunkedEvents(wx, opts) {
  let pending = new Uint8Array(0);
  const stats = { chunks: 0, bytes: 0, headers: null, statusCode: 0 };
  const params = { channel: opts.channels, cursor: opts.cursor };
  const task = wx.request({
    url: opts.base + '/events?' + query(params),
    method: 'GET',
    enableChunked: true,
    timeout: 60000,
    header: Object.assign({ Accept: 'text/event-stream' }, opts.token ? { Authorization: 'Bearer ' + opts.token } : {}),
    success: (res) => { if (opts.onEnd) opts.onEnd(res); },
    fail: (err) => { if (opts.onEnd) opts.onEnd(err); },
  });
  task.onHeadersReceived((res) => {
    stats.headers = res.header;
    stats.statusCode = res.statusCode;
  });
  task.onChunkReceived((res) => {
    const bytes = new Uint8Array(res.data);
    stats.chunks++;
    stats.bytes += bytes.length;
    pending = concatBytes(pending, bytes);
    let start = 0;
    for (let i = 0; i + 1 < pending.length; i++) {
      // A block ends at LF LF (or LF CR LF).
      let end = -1;
      if (pending[i] === 10 && pending[i + 1] === 10) end = i + 2;
      else if (pending[i] === 10 && pending[i + 1] === 13 && pending[i + 2] === 10) end = i + 3;
      if (end < 0) continue;
      const block = utf8Decode(pending.subarray(start, i));
      opts.onEvent(parseSSEBlock(block));
      start = end;
      i = end - 1;
    }
    if (start > 0) pending = pending.slice(start);
  });
  return { abort: () => task.abort(), stats, task };
}
