// The seams between the client and each runtime: a socket, a request, a
// chunked stream, storage and the app's lifecycle, behind one shape.
//
// Only this file touches a runtime's own API. It must not use anything a
// mini-program lacks (TextDecoder, Buffer, require, instanceof across the
// runtime's objects) outside the browser and Node adapters.

import { utf8Decoder } from './utf8.js';

/* global uni, wx, my, tt */

const has = (o, k) => o && typeof o[k] === 'function';

/** The platform this code runs on. */
export function detect() {
  if (typeof uni === 'object' && has(uni, 'connectSocket')) return 'uni';
  if (typeof wx === 'object' && has(wx, 'connectSocket')) return 'wx';
  if (typeof my === 'object' && has(my, 'connectSocket')) return 'my';
  if (typeof tt === 'object' && has(tt, 'connectSocket')) return 'tt';
  if (typeof window === 'object' && typeof document === 'object') return 'browser';
  return 'node';
}

function miniApi(name) {
  return name === 'uni' ? uni : name === 'wx' ? wx : name === 'my' ? my : name === 'tt' ? tt : null;
}

export function netError(message, cause) {
  const e = new Error(message);
  e.name = 'PushgateError';
  e.code = 'NETWORK';
  if (cause !== undefined) e.cause = cause;
  return e;
}

// A mini-program failure callback's text: errMsg (wx, uni, tt) or
// errorMessage with error (my).
const failText = (r) => (r && (r.errMsg || r.errorMessage || (r.error != null && 'error ' + r.error))) || 'failed';

function headerOf(h, name) {
  if (!h) return undefined;
  if (typeof h.get === 'function') return h.get(name);
  for (const k in h) if (k.toLowerCase() === name) return h[k];
  return undefined;
}

/**
 * The runtime for platform name. o: the client's options (api: the
 * mini-program API object when it is not the global one, WebSocket,
 * EventSource, fetch).
 */
export function runtime(name, o) {
  const mini = name === 'uni' || name === 'wx' || name === 'my' || name === 'tt';
  return mini ? miniRuntime(name, o.api || miniApi(name)) : webRuntime(name, o);
}

function miniRuntime(name, api) {
  const alipay = name === 'my';
  const withHeader = (req, header) => {
    // Alipay's request takes headers (lower-case names); the others header.
    if (alipay) {
      const h = {};
      for (const k in header) h[k.toLowerCase()] = header[k];
      req.headers = h;
    } else req.header = header;
    return req;
  };
  const text = (d) => {
    if (typeof d === 'string') return d;
    return utf8Decoder()(new Uint8Array(d), false);
  };
  const listen = (on, off) => (fn) => {
    if (!has(api, on)) return () => {};
    api[on](fn);
    return () => has(api, off) && api[off](fn);
  };
  return {
    name,
    // uni-app in a browser (H5): the page's EventSource reads SSE.
    EventSource: name === 'uni' && typeof window === 'object' && typeof EventSource === 'function' ? EventSource : undefined,
    socket(url, protocols, h) {
      let task;
      const opts = {
        url,
        protocols,
        header: {},
        fail: (r) => h.close(0, failText(r)),
        complete() {},
      };
      // Alipay returns a SocketTask only for multiple: true; without it
      // there is one global socket driven by my.onSocket* (one per app).
      if (alipay) opts.multiple = true;
      try {
        task = api.connectSocket(opts);
      } catch (e) {
        setTimeout(() => h.close(0, String(e && e.message)));
      }
      if (!task || !has(task, 'onOpen')) {
        setTimeout(() => h.close(0, 'connectSocket returned no SocketTask'));
        return { send() {}, close() {} };
      }
      task.onOpen(() => h.open());
      task.onMessage((r) => {
        let d = r && r.data;
        let b64 = r && r.isBuffer;
        // Alipay: {data, isBuffer}, where isBuffer means data is base64
        // (some versions nest it one level deeper).
        if (d && typeof d === 'object' && typeof d.data === 'string') {
          b64 = d.isBuffer;
          d = d.data;
        }
        if (b64 && has(api, 'base64ToArrayBuffer')) d = api.base64ToArrayBuffer(d);
        h.message(text(d));
      });
      task.onError((r) => h.error(failText(r)));
      task.onClose((r) => h.close(r && r.code, r && r.reason));
      return {
        send: (data) => task.send({ data }),
        close: (code, reason) => task.close({ code, reason }),
      };
    },
    request(o) {
      let task;
      const p = new Promise((resolve, reject) => {
        const req = withHeader(
          {
            url: o.url,
            method: o.method || 'GET',
            data: o.body,
            timeout: o.timeout,
            // Alipay's default json fails on anything else; we parse.
            dataType: alipay ? 'text' : 'json',
            success: (r) => {
              const status = r.statusCode != null ? r.statusCode : r.status;
              resolve({ status, body: r.data, header: (k) => headerOf(r.header || r.headers, k) });
            },
            fail: (r) => reject(netError('request: ' + failText(r), r)),
          },
          o.header,
        );
        task = api.request(req);
      });
      p.abort = () => task && has(task, 'abort') && task.abort();
      return p;
    },
    // A chunked request (wx.request with enableChunked). Returns the
    // abort function, or null when this runtime's request has no chunks.
    stream(o, h) {
      let ended = false;
      const end = (err, status) => {
        if (!ended) {
          ended = true;
          h.end(err, status);
        }
      };
      const req = withHeader(
        {
          url: o.url,
          method: 'GET',
          enableChunked: true,
          responseType: 'arraybuffer',
          timeout: 60000, // WeChat's most; the stream resumes after it
          success: (r) => end(null, r.statusCode != null ? r.statusCode : r.status),
          fail: (r) => end(netError('request: ' + failText(r), r)),
        },
        o.header,
      );
      const task = api.request(req);
      if (!task || !has(task, 'onChunkReceived')) {
        ended = true;
        if (task && has(task, 'abort')) task.abort();
        return null;
      }
      if (has(task, 'onHeadersReceived')) task.onHeadersReceived((r) => r && r.statusCode && h.status(r.statusCode));
      task.onChunkReceived((r) => h.chunk(r.data));
      return () => {
        ended = true;
        task.abort();
      };
    },
    storage: alipay
      ? { get: (k) => (api.getStorageSync({ key: k }) || {}).data, set: (k, v) => api.setStorageSync({ key: k, data: v }) }
      : { get: (k) => api.getStorageSync(k), set: (k, v) => api.setStorageSync(k, v) },
    onShow: listen('onAppShow', 'offAppShow'),
    onHide: listen('onAppHide', 'offAppHide'),
    onNetwork: listen('onNetworkStatusChange', 'offNetworkStatusChange'),
  };
}

function webRuntime(name, o) {
  const g = typeof globalThis === 'object' ? globalThis : typeof self === 'object' ? self : {};
  const WS = o.WebSocket || g.WebSocket;
  const doFetch = o.fetch || (g.fetch && g.fetch.bind(g));
  const browser = name === 'browser';
  const event = (target, type) => (fn) => {
    if (!target || !has(target, 'addEventListener')) return () => {};
    target.addEventListener(type, fn);
    return () => target.removeEventListener(type, fn);
  };
  const doc = browser && typeof document === 'object' ? document : null;
  let ls = null;
  try {
    ls = browser ? g.localStorage : null;
  } catch (e) {
    // storage may be denied (private mode, sandboxed frames)
  }
  return {
    name,
    EventSource: o.EventSource || (browser ? g.EventSource : undefined),
    socket: WS
      ? (url, protocols, h) => {
          let s;
          try {
            s = new WS(url, protocols);
          } catch (e) {
            setTimeout(() => h.close(0, String(e && e.message)));
            return { send() {}, close() {} };
          }
          s.binaryType = 'arraybuffer';
          s.onopen = () => h.open();
          s.onmessage = (e) => h.message(typeof e.data === 'string' ? e.data : utf8Decoder()(new Uint8Array(e.data), false));
          s.onerror = (e) => h.error((e && e.message) || 'error');
          s.onclose = (e) => h.close(e.code, e.reason);
          return { send: (d) => s.send(d), close: (code, reason) => s.close(code, reason) };
        }
      : null,
    request(r) {
      const ac = typeof AbortController === 'function' ? new AbortController() : null;
      let timer;
      const p = new Promise((resolve, reject) => {
        if (r.timeout) timer = setTimeout(() => ac && ac.abort(), r.timeout);
        doFetch(r.url, { method: r.method || 'GET', headers: r.header, body: r.body, signal: ac && ac.signal })
          .then((res) => res.text().then((body) => resolve({ status: res.status, body, header: (k) => res.headers.get(k) })))
          .catch((e) => reject(netError('fetch: ' + (e && e.message), e)))
          .then(() => clearTimeout(timer));
      });
      p.abort = () => ac && ac.abort();
      return p;
    },
    // A streamed fetch; the body's bytes go to h.chunk as they arrive.
    stream: doFetch
      ? (r, h) => {
          const ac = new AbortController();
          let ended = false;
          const end = (err, status) => {
            if (!ended) {
              ended = true;
              h.end(err, status);
            }
          };
          doFetch(r.url, { headers: r.header, signal: ac.signal })
            .then((res) => {
              h.status(res.status);
              const rd = res.body && res.body.getReader();
              if (!rd) return res.text().then((t) => (h.chunk(t), end(null, res.status)));
              const pump = () =>
                rd.read().then(({ done, value }) => {
                  if (done) return end(null, res.status);
                  if (!ended) h.chunk(value);
                  return pump();
                });
              return pump();
            })
            .catch((e) => end(netError('fetch: ' + (e && e.message), e)));
          return () => {
            ended = true;
            ac.abort();
          };
        }
      : null,
    storage: ls ? { get: (k) => ls.getItem(k), set: (k, v) => ls.setItem(k, v) } : null,
    onShow: (fn) => event(doc, 'visibilitychange')(() => doc.visibilityState === 'visible' && fn()),
    onHide: () => () => {}, // a browser does not cut a hidden page's connections
    onNetwork: (fn) => event(browser ? g : null, 'online')(() => fn({ isConnected: true })),
  };
}
