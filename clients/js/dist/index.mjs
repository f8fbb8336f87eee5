// @pushgate/client: built from src/ by build.js; do not edit.

// src/utf8.js
var RUN = 4096;
function utf8Decoder() {
  let cp = 0;
  let need = 0;
  let lo = 128;
  let hi = 191;
  return (bytes, more) => {
    let out = "";
    const units = [];
    const put = (u) => {
      units.push(u);
      if (units.length >= RUN) {
        out += String.fromCharCode.apply(null, units);
        units.length = 0;
      }
    };
    const n = bytes ? bytes.length : 0;
    for (let i = 0; i < n; i++) {
      const b = bytes[i];
      if (need === 0) {
        if (b < 128) put(b);
        else if (b >= 194 && b <= 223) {
          need = 1;
          cp = b & 31;
        } else if (b >= 224 && b <= 239) {
          if (b === 224) lo = 160;
          if (b === 237) hi = 159;
          need = 2;
          cp = b & 15;
        } else if (b >= 240 && b <= 244) {
          if (b === 240) lo = 144;
          if (b === 244) hi = 143;
          need = 3;
          cp = b & 7;
        } else put(65533);
        continue;
      }
      if (b < lo || b > hi) {
        cp = need = 0;
        lo = 128;
        hi = 191;
        put(65533);
        i--;
        continue;
      }
      lo = 128;
      hi = 191;
      cp = cp << 6 | b & 63;
      if (--need === 0) {
        if (cp > 65535) {
          cp -= 65536;
          put(55296 + (cp >> 10));
          put(56320 + (cp & 1023));
        } else put(cp);
        cp = 0;
      }
    }
    if (!more && need) {
      cp = need = 0;
      lo = 128;
      hi = 191;
      put(65533);
    }
    return units.length ? out + String.fromCharCode.apply(null, units) : out;
  };
}

// src/platform.js
var has = (o, k) => o && typeof o[k] === "function";
function detect() {
  if (typeof uni === "object" && has(uni, "connectSocket")) return "uni";
  if (typeof wx === "object" && has(wx, "connectSocket")) return "wx";
  if (typeof my === "object" && has(my, "connectSocket")) return "my";
  if (typeof tt === "object" && has(tt, "connectSocket")) return "tt";
  if (typeof window === "object" && typeof document === "object") return "browser";
  return "node";
}
function miniApi(name) {
  return name === "uni" ? uni : name === "wx" ? wx : name === "my" ? my : name === "tt" ? tt : null;
}
function netError(message, cause) {
  const e = new Error(message);
  e.name = "PushgateError";
  e.code = "NETWORK";
  if (cause !== void 0) e.cause = cause;
  return e;
}
var failText = (r) => r && (r.errMsg || r.errorMessage || r.error != null && "error " + r.error) || "failed";
function headerOf(h, name) {
  if (!h) return void 0;
  if (typeof h.get === "function") return h.get(name);
  for (const k in h) if (k.toLowerCase() === name) return h[k];
  return void 0;
}
function runtime(name, o) {
  const mini = name === "uni" || name === "wx" || name === "my" || name === "tt";
  return mini ? miniRuntime(name, o.api || miniApi(name)) : webRuntime(name, o);
}
function miniRuntime(name, api) {
  const alipay = name === "my";
  const withHeader = (req, header) => {
    if (alipay) {
      const h = {};
      for (const k in header) h[k.toLowerCase()] = header[k];
      req.headers = h;
    } else req.header = header;
    return req;
  };
  const text = (d) => {
    if (typeof d === "string") return d;
    return utf8Decoder()(new Uint8Array(d), false);
  };
  const listen = (on, off) => (fn) => {
    if (!has(api, on)) return () => {
    };
    api[on](fn);
    return () => has(api, off) && api[off](fn);
  };
  return {
    name,
    // uni-app in a browser (H5): the page's EventSource reads SSE.
    EventSource: name === "uni" && typeof window === "object" && typeof EventSource === "function" ? EventSource : void 0,
    socket(url, protocols, h) {
      let task;
      const opts = {
        url,
        protocols,
        header: {},
        fail: (r) => h.close(0, failText(r)),
        complete() {
        }
      };
      if (alipay) opts.multiple = true;
      try {
        task = api.connectSocket(opts);
      } catch (e) {
        setTimeout(() => h.close(0, String(e && e.message)));
      }
      if (!task || !has(task, "onOpen")) {
        setTimeout(() => h.close(0, "connectSocket returned no SocketTask"));
        return { send() {
        }, close() {
        } };
      }
      task.onOpen(() => h.open());
      task.onMessage((r) => {
        let d = r && r.data;
        let b64 = r && r.isBuffer;
        if (d && typeof d === "object" && typeof d.data === "string") {
          b64 = d.isBuffer;
          d = d.data;
        }
        if (b64 && has(api, "base64ToArrayBuffer")) d = api.base64ToArrayBuffer(d);
        h.message(text(d));
      });
      task.onError((r) => h.error(failText(r)));
      task.onClose((r) => h.close(r && r.code, r && r.reason));
      return {
        send: (data) => task.send({ data }),
        close: (code, reason) => task.close({ code, reason })
      };
    },
    request(o) {
      let task;
      const p = new Promise((resolve, reject) => {
        const req = withHeader(
          {
            url: o.url,
            method: o.method || "GET",
            data: o.body,
            timeout: o.timeout,
            // Alipay's default json fails on anything else; we parse.
            dataType: alipay ? "text" : "json",
            success: (r) => {
              const status = r.statusCode != null ? r.statusCode : r.status;
              resolve({ status, body: r.data, header: (k) => headerOf(r.header || r.headers, k) });
            },
            fail: (r) => reject(netError("request: " + failText(r), r))
          },
          o.header
        );
        task = api.request(req);
      });
      p.abort = () => task && has(task, "abort") && task.abort();
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
          method: "GET",
          enableChunked: true,
          responseType: "arraybuffer",
          timeout: 6e4,
          // WeChat's most; the stream resumes after it
          success: (r) => end(null, r.statusCode != null ? r.statusCode : r.status),
          fail: (r) => end(netError("request: " + failText(r), r))
        },
        o.header
      );
      const task = api.request(req);
      if (!task || !has(task, "onChunkReceived")) {
        ended = true;
        if (task && has(task, "abort")) task.abort();
        return null;
      }
      if (has(task, "onHeadersReceived")) task.onHeadersReceived((r) => r && r.statusCode && h.status(r.statusCode));
      task.onChunkReceived((r) => h.chunk(r.data));
      return () => {
        ended = true;
        task.abort();
      };
    },
    storage: alipay ? { get: (k) => (api.getStorageSync({ key: k }) || {}).data, set: (k, v) => api.setStorageSync({ key: k, data: v }) } : { get: (k) => api.getStorageSync(k), set: (k, v) => api.setStorageSync(k, v) },
    onShow: listen("onAppShow", "offAppShow"),
    onHide: listen("onAppHide", "offAppHide"),
    onNetwork: listen("onNetworkStatusChange", "offNetworkStatusChange")
  };
}
function webRuntime(name, o) {
  const g = typeof globalThis === "object" ? globalThis : typeof self === "object" ? self : {};
  const WS = o.WebSocket || g.WebSocket;
  const doFetch = o.fetch || g.fetch && g.fetch.bind(g);
  const browser = name === "browser";
  const event = (target, type) => (fn) => {
    if (!target || !has(target, "addEventListener")) return () => {
    };
    target.addEventListener(type, fn);
    return () => target.removeEventListener(type, fn);
  };
  const doc = browser && typeof document === "object" ? document : null;
  let ls = null;
  try {
    ls = browser ? g.localStorage : null;
  } catch (e) {
  }
  return {
    name,
    EventSource: o.EventSource || (browser ? g.EventSource : void 0),
    socket: WS ? (url, protocols, h) => {
      let s;
      try {
        s = new WS(url, protocols);
      } catch (e) {
        setTimeout(() => h.close(0, String(e && e.message)));
        return { send() {
        }, close() {
        } };
      }
      s.binaryType = "arraybuffer";
      s.onopen = () => h.open();
      s.onmessage = (e) => h.message(typeof e.data === "string" ? e.data : utf8Decoder()(new Uint8Array(e.data), false));
      s.onerror = (e) => h.error(e && e.message || "error");
      s.onclose = (e) => h.close(e.code, e.reason);
      return { send: (d) => s.send(d), close: (code, reason) => s.close(code, reason) };
    } : null,
    request(r) {
      const ac = typeof AbortController === "function" ? new AbortController() : null;
      let timer;
      const p = new Promise((resolve, reject) => {
        if (r.timeout) timer = setTimeout(() => ac && ac.abort(), r.timeout);
        doFetch(r.url, { method: r.method || "GET", headers: r.header, body: r.body, signal: ac && ac.signal }).then((res) => res.text().then((body) => resolve({ status: res.status, body, header: (k) => res.headers.get(k) }))).catch((e) => reject(netError("fetch: " + (e && e.message), e))).then(() => clearTimeout(timer));
      });
      p.abort = () => ac && ac.abort();
      return p;
    },
    // A streamed fetch; the body's bytes go to h.chunk as they arrive.
    stream: doFetch ? (r, h) => {
      const ac = new AbortController();
      let ended = false;
      const end = (err, status) => {
        if (!ended) {
          ended = true;
          h.end(err, status);
        }
      };
      doFetch(r.url, { headers: r.header, signal: ac.signal }).then((res) => {
        h.status(res.status);
        const rd = res.body && res.body.getReader();
        if (!rd) return res.text().then((t) => (h.chunk(t), end(null, res.status)));
        const pump = () => rd.read().then(({ done, value }) => {
          if (done) return end(null, res.status);
          if (!ended) h.chunk(value);
          return pump();
        });
        return pump();
      }).catch((e) => end(netError("fetch: " + (e && e.message), e)));
      return () => {
        ended = true;
        ac.abort();
      };
    } : null,
    storage: ls ? { get: (k) => ls.getItem(k), set: (k, v) => ls.setItem(k, v) } : null,
    onShow: (fn) => event(doc, "visibilitychange")(() => doc.visibilityState === "visible" && fn()),
    onHide: () => () => {
    },
    // a browser does not cut a hidden page's connections
    onNetwork: (fn) => event(browser ? g : null, "online")(() => fn({ isConnected: true }))
  };
}

// src/ws.js
var FEED = "subscription($c:[String!]!,$k:String){feed(channels:$c,cursor:$k){__typename ...on Message{channel id event data createdAt cursor}...on Reset{channel reason cursor}}}";
var PROTOCOL = { 1002: 1, 1009: 1, 4400: 1, 4401: 1, 4409: 1 };
function wsSession(ctx) {
  let sock = null;
  let acked = false;
  let done = false;
  let n = 0;
  let heard = Date.now();
  let ackTimer;
  let pingTimer;
  const ops = /* @__PURE__ */ new Map();
  const ids = /* @__PURE__ */ new Map();
  const s = { add, remove, close: () => finish() };
  ctx.auth().then(
    (token) => {
      if (done) return;
      sock = ctx.env.socket(ctx.wsUrl, ["graphql-transport-ws"], {
        open() {
          if (done) return sock.close(1e3, "bye");
          send({ type: "connection_init", payload: token ? { token } : {} });
          ackTimer = setTimeout(() => kill("fail", "no connection_ack within 10 s"), 1e4);
        },
        message,
        error() {
        },
        // the close that follows says what happened
        close: closed
      });
    },
    (err) => end("auth", err)
  );
  function send(m) {
    try {
      sock.send(JSON.stringify(m));
    } catch (e) {
    }
  }
  function message(text) {
    if (done) return;
    heard = Date.now();
    let m;
    try {
      m = JSON.parse(text);
    } catch (e) {
      return;
    }
    const sub = ops.get(m.id);
    switch (m.type) {
      case "connection_ack":
        acked = true;
        clearTimeout(ackTimer);
        keepAlive();
        Promise.all(ctx.subs().map(add)).then(() => !done && ctx.ok(s));
        break;
      case "ping":
        send(m.payload ? { type: "pong", payload: m.payload } : { type: "pong" });
        break;
      case "next":
        if (!sub) break;
        if (m.payload && m.payload.errors) failed(sub, m.id, m.payload.errors);
        else if (m.payload && m.payload.data && m.payload.data.feed) feed(sub, m.payload.data.feed);
        break;
      case "error":
        if (sub) failed(sub, m.id, m.payload);
        break;
      case "complete":
        if (sub) {
          forget(sub);
          ctx.later(() => add(sub));
        }
        break;
    }
  }
  function feed(sub, ev) {
    if (ev.__typename === "Reset") ctx.reset(sub, ev);
    else ctx.msg(sub, ev, ev.cursor);
  }
  function forget(sub) {
    ops.delete(ids.get(sub));
    ids.delete(sub);
  }
  function failed(sub, id, errors) {
    if (ops.get(id) !== sub) return;
    forget(sub);
    ctx.opError(sub, errors, {
      retry: () => add(sub),
      reauth: () => kill("auth")
      // connection_init carries the token
    });
  }
  function keepAlive() {
    const every = ctx.opts.keepAlive || 15e3;
    pingTimer = setInterval(() => {
      if (Date.now() - heard > every * 2.5) kill("lost", "no answer to pings");
      else send({ type: "ping" });
    }, every);
  }
  function add(sub) {
    if (!acked || done || ids.has(sub) || !ctx.has(sub)) return;
    ids.set(sub, "");
    return ctx.position(sub).then(() => {
      if (done || ids.get(sub) !== "" || !ctx.has(sub)) return;
      const id = String(++n);
      ops.set(id, sub);
      ids.set(sub, id);
      send({ id, type: "subscribe", payload: { query: FEED, variables: { c: sub.channels, k: sub.cursor || null } } });
    });
  }
  function remove(sub) {
    const id = ids.get(sub);
    forget(sub);
    if (id) send({ id, type: "complete" });
  }
  function closed(code, reason) {
    if (done) return;
    const why = "socket closed" + (code ? " " + code : "") + (reason ? ": " + reason : "");
    if (code === 4403) {
      ctx.expired();
      end("now", why);
    } else if (code === 1012) end("now", why);
    else if (code === 4429) end("slow", why);
    else if (PROTOCOL[code]) end("lost", why, true);
    else end(acked ? "lost" : "fail", why);
  }
  function kill(how, why) {
    if (done) return;
    end(how, why);
    if (sock) sock.close(1e3, "reconnect");
  }
  function finish() {
    if (done) return;
    done = true;
    clearTimeout(ackTimer);
    clearInterval(pingTimer);
    if (sock) sock.close(1e3, "bye");
  }
  function end(how, why, report) {
    if (done) return;
    done = true;
    clearTimeout(ackTimer);
    clearInterval(pingTimer);
    ctx.ended(s, how, why, report);
  }
  return s;
}

// src/sse.js
function sseParser(onEvent) {
  let buf = "";
  let first = true;
  let skipLF = false;
  let id = "";
  let event = "";
  let data = null;
  let fields = false;
  const line = (s) => {
    if (s === "") {
      if (fields) {
        const ev = { id, event: event || "message", data };
        event = "";
        data = null;
        fields = false;
        onEvent(ev);
      }
      return;
    }
    if (s.charCodeAt(0) === 58) return;
    const c = s.indexOf(":");
    const name = c < 0 ? s : s.slice(0, c);
    let value = c < 0 ? "" : s.slice(c + 1);
    if (value.charCodeAt(0) === 32) value = value.slice(1);
    if (name === "data") data = data === null ? value : data + "\n" + value;
    else if (name === "event") event = value;
    else if (name === "id") {
      if (value.indexOf("\0") < 0) id = value;
    } else if (name !== "retry") return;
    fields = true;
  };
  return (text) => {
    if (skipLF && text) {
      skipLF = false;
      if (text.charCodeAt(0) === 10) text = text.slice(1);
    }
    if (first && text) {
      first = false;
      if (text.charCodeAt(0) === 65279) text = text.slice(1);
    }
    let start = 0;
    for (let i = 0; i < text.length; i++) {
      const ch = text.charCodeAt(i);
      if (ch !== 10 && ch !== 13) continue;
      line(buf + text.slice(start, i));
      buf = "";
      if (ch === 13) {
        if (i + 1 === text.length) skipLF = true;
        else if (text.charCodeAt(i + 1) === 10) i++;
      }
      start = i + 1;
    }
    buf += text.slice(start);
  };
}

// src/stream.js
function sseSession(ctx) {
  let done = false;
  const streams = /* @__PURE__ */ new Map();
  const s = {
    add,
    remove(sub) {
      const abort = streams.get(sub);
      streams.delete(sub);
      if (abort) abort();
    },
    close: () => stop()
  };
  ctx.subs().forEach(add);
  function add(sub) {
    if (done || streams.has(sub) || !ctx.has(sub)) return;
    streams.set(sub, () => {
    });
    open(sub);
  }
  function stop() {
    done = true;
    streams.forEach((abort) => abort());
    streams.clear();
  }
  function end(how, why, report) {
    if (done) return;
    stop();
    ctx.ended(s, how, why, report);
  }
  function live(sub, abort) {
    return !done && streams.get(sub) === abort;
  }
  function reopen(sub) {
    if (done || !streams.has(sub)) return;
    ctx.stats.reconnects++;
    streams.set(sub, () => {
    });
    open(sub);
  }
  function refused(sub, status, body) {
    let e = {};
    try {
      e = JSON.parse(body).error || {};
    } catch (x) {
    }
    const how = ctx.httpError(sub, status, e);
    if (how !== "drop") end(how, "GET /events answered " + status);
  }
  function open(sub) {
    const mark = streams.get(sub);
    ctx.auth().then(
      (token) => {
        if (!live(sub, mark)) return;
        if (ctx.env.EventSource) {
          ctx.position(sub).then(() => live(sub, mark) && openES(sub, token));
          return;
        }
        openChunked(sub, token);
      },
      (err) => end("auth", err)
    );
  }
  function openChunked(sub, token) {
    const decode = utf8Decoder();
    let status = 0;
    let got = false;
    let head = "";
    const began = Date.now();
    const silence = ctx.opts.sseTimeout || 45e3;
    let heard = began;
    let watch = null;
    let abort = null;
    const parse = sseParser((ev) => {
      if (!live(sub, abort)) return;
      if (!got) {
        got = true;
        ctx.ok(s);
      }
      event(sub, ev);
    });
    const raw = ctx.env.stream(
      { url: ctx.url("/events", sub), header: ctx.header(token) },
      {
        status(code) {
          status = code;
        },
        chunk(d) {
          if (!live(sub, abort)) return;
          heard = Date.now();
          const text = typeof d === "string" ? d : decode(new Uint8Array(d), true);
          if (head.length < 2048) head += text;
          if (!status || status === 200) parse(text);
        },
        end(err, code) {
          clearInterval(watch);
          if (!live(sub, abort)) return;
          if (code) status = code;
          if (status && status !== 200) refused(sub, status, head);
          else if (!got) end("fail", err || "GET /events ended before its first event");
          else if (Date.now() - began < 1e3 && !err) end("lost", "GET /events ended at once");
          else reopen(sub);
        }
      }
    );
    if (!raw) return ctx.unsupported("sse", s);
    abort = () => {
      clearInterval(watch);
      raw();
    };
    streams.set(sub, abort);
    watch = setInterval(() => {
      if (Date.now() - heard < silence) return;
      abort();
      if (!live(sub, abort)) return;
      if (got) reopen(sub);
      else end("fail", "GET /events: silent for " + silence + " ms");
    }, silence / 3);
  }
  function openES(sub, token) {
    let opened = false;
    const es = new ctx.env.EventSource(ctx.url("/events", sub, token));
    const abort = () => es.close();
    streams.set(sub, abort);
    const on = (type, fn) => es.addEventListener(type, (e) => {
      if (live(sub, abort)) fn(e);
    });
    on("open", () => {
      opened = true;
      ctx.ok(s);
    });
    on("message", (e) => event(sub, { id: e.lastEventId, event: "message", data: e.data }));
    on("reset", (e) => event(sub, { id: e.lastEventId, event: "reset", data: e.data }));
    on("expired", (e) => {
      event(sub, { event: "expired", data: e.data });
      es.close();
      reopen(sub);
    });
    on("error", () => {
      es.close();
      if (opened) return reopen(sub);
      ctx.probe(sub).then(
        (r) => {
          if (!live(sub, abort)) return;
          if (r.status !== 200) refused(sub, r.status, typeof r.body === "string" ? r.body : JSON.stringify(r.body));
          else end("fail", "EventSource failed");
        },
        (err) => live(sub, abort) && end("fail", err)
      );
    });
  }
  function event(sub, ev) {
    if (ev.event === "expired") {
      ctx.expired();
      try {
        const c = JSON.parse(ev.data).cursor;
        if (c) ctx.cursor(sub, c);
      } catch (e) {
      }
    } else if (ev.event === "reset") ctx.reset(sub, JSON.parse(ev.data));
    else if (ev.data != null) ctx.msg(sub, JSON.parse(ev.data), ev.id);
    else if (ev.id) ctx.cursor(sub, ev.id);
  }
  return s;
}

// src/poll.js
var HOLD = 25;
function pollSession(ctx) {
  let done = false;
  let up = false;
  const loops = /* @__PURE__ */ new Map();
  const s = {
    add,
    remove(sub) {
      const abort = loops.get(sub);
      loops.delete(sub);
      if (abort) abort();
    },
    close: () => stop()
  };
  ctx.subs().forEach(add);
  function add(sub) {
    if (done || loops.has(sub) || !ctx.has(sub)) return;
    loops.set(sub, () => {
    });
    poll(sub);
  }
  function stop() {
    done = true;
    loops.forEach((abort) => abort());
    loops.clear();
  }
  function end(how, why) {
    if (done) return;
    stop();
    ctx.ended(s, how, why);
  }
  function poll(sub) {
    const mark = loops.get(sub);
    ctx.auth().then((token) => {
      if (done || loops.get(sub) !== mark) return;
      const hold = sub.cursor ? ctx.opts.pollTimeout != null ? ctx.opts.pollTimeout : HOLD : 0;
      const req = ctx.env.request({
        url: ctx.url("/poll", sub) + "&timeout=" + hold,
        header: ctx.header(token),
        timeout: (hold + 15) * 1e3
      });
      const abort = req.abort;
      loops.set(sub, abort);
      req.then(
        (r) => {
          if (done || loops.get(sub) !== abort) return;
          let b = r.body;
          try {
            if (typeof b === "string") b = JSON.parse(b);
          } catch (e) {
            b = null;
          }
          if (r.status !== 200) {
            const how = ctx.httpError(sub, r.status, b && b.error || {});
            if (how !== "drop") end(how, "GET /poll answered " + r.status);
            return;
          }
          if (!b || !Array.isArray(b.messages)) return end("fail", "GET /poll: not a poll answer");
          up = true;
          ctx.ok(s);
          if (b.reset) ctx.reset(sub, b.reset);
          const last = b.messages.length - 1;
          b.messages.forEach((m, i) => ctx.msg(sub, m, i === last ? b.cursor : void 0));
          ctx.cursor(sub, b.cursor);
          if (loops.get(sub) !== abort) return;
          if (last < 0 || last >= 99) return poll(sub);
          const t = setTimeout(() => poll(sub), 100);
          loops.set(sub, () => clearTimeout(t));
        },
        (err) => {
          if (!done && loops.get(sub) === abort) end(up ? "lost" : "fail", err);
        }
      );
    }, (err) => end("auth", err));
  }
  return s;
}

// src/client.js
var SESSIONS = { ws: wsSession, sse: sseSession, poll: pollSession };
var MSG = "channel id event data createdAt cursor";
function pushgateError(code, message, extra) {
  const e = new Error(message || code);
  e.name = "PushgateError";
  e.code = code;
  if (extra) for (const k in extra) e[k] = extra[k];
  return e;
}
function gqlError(errors) {
  const list = Array.isArray(errors) ? errors : [errors];
  const first = list[0] || {};
  const ext = first.extensions || {};
  return pushgateError(ext.code || "GRAPHQL_ERROR", first.message, { errors: list, retryAfter: ext.retryAfter });
}
var cmpId = (a, b) => {
  a = String(a);
  b = String(b);
  return a.length !== b.length ? a.length - b.length : a < b ? -1 : a > b ? 1 : 0;
};
var json = (b) => {
  if (typeof b !== "string") return b;
  try {
    return JSON.parse(b);
  } catch (e) {
    return null;
  }
};
function clean(m) {
  const out = { channel: m.channel, id: m.id, data: m.data, createdAt: m.createdAt };
  if (m.event != null) out.event = m.event;
  if (m.cursor) out.cursor = m.cursor;
  return out;
}
function storageOf(s, env) {
  if (!s) return null;
  if (s === true) return env.storage;
  if (typeof s.get === "function" && typeof s.set === "function") return s;
  if (typeof s.getItem === "function") return { get: (k) => s.getItem(k), set: (k, v) => s.setItem(k, v) };
  if (typeof s.getStorageSync === "function") {
    if (env.name === "my") return env.storage;
    return { get: (k) => s.getStorageSync(k), set: (k, v) => s.setStorageSync(k, v) };
  }
  throw new TypeError("storage: true, localStorage, wx (getStorageSync) or {get, set}");
}
function createClient(o) {
  if (!o || !o.url) throw new TypeError("createClient: url is required");
  const platform = o.platform || detect();
  const env = runtime(platform, o);
  const base = String(o.url).replace(/\/+$/, "").replace(/\/graphql$/, "").replace(/^ws(s?):/, "http$1:");
  const rc = o.reconnect || {};
  const minDelay = rc.min || 500;
  const maxDelay = rc.max || 15e3;
  let order = (o.transports || ["ws", "sse", "poll"]).filter(
    (t) => SESSIONS[t] && (t !== "ws" || env.socket) && (t !== "sse" || env.stream || env.EventSource)
  );
  const store = storageOf(o.storage, env);
  const subs = /* @__PURE__ */ new Set();
  const listeners = { state: [], error: [] };
  let token = o.token;
  let stale = token == null && !!o.getToken;
  let tokenP = null;
  let ti = 0;
  let fails = 0;
  let attempt = 0;
  let worked = {};
  let cur = null;
  let timer = null;
  let upTimer = null;
  let paused = false;
  let closed = false;
  let ackP = null;
  let acks = null;
  let ackTimer = null;
  let laters = [];
  const stats = { messages: 0, duplicates: 0, reconnects: 0 };
  const client = {
    platform,
    state: { status: "idle", transport: null },
    stats,
    subscribe,
    history,
    send,
    ack,
    graphql,
    on,
    close
  };
  function emit(type, v) {
    listeners[type].slice().forEach((fn) => {
      try {
        fn(v);
      } catch (e) {
        if (type !== "error") emit("error", e);
      }
    });
  }
  function on(type, fn) {
    const l = listeners[type];
    if (!l) throw new TypeError('on: "state" or "error"');
    l.push(fn);
    return () => {
      const i = l.indexOf(fn);
      if (i >= 0) l.splice(i, 1);
    };
  }
  function setState(status, transport) {
    if (transport === void 0) transport = client.state.transport;
    if (client.state.status === status && client.state.transport === transport) return;
    client.state = { status, transport };
    emit("state", client.state);
  }
  function auth() {
    if (!o.getToken || !stale && token != null) return Promise.resolve(token);
    if (!tokenP) {
      tokenP = new Promise((resolve) => resolve(o.getToken())).then(
        (t) => {
          token = t;
          stale = false;
          tokenP = null;
          return t;
        },
        (e) => {
          tokenP = null;
          throw e;
        }
      );
    }
    return tokenP;
  }
  const header = (t) => t ? { Authorization: "Bearer " + t } : {};
  function backoff() {
    const d = Math.min(maxDelay, minDelay * Math.pow(2, attempt++));
    return d / 2 + Math.random() * d / 2;
  }
  function start() {
    clearTimeout(timer);
    timer = null;
    if (cur || closed || paused) return;
    if (!subs.size) return setState("idle", null);
    if (!order.length) {
      emit("error", pushgateError("NO_TRANSPORT", "no transport works on " + platform));
      return setState("idle", null);
    }
    setState("connecting", order[ti]);
    cur = SESSIONS[order[ti]](ctx);
  }
  function drop() {
    clearTimeout(timer);
    clearTimeout(upTimer);
    timer = upTimer = null;
    laters.forEach(clearTimeout);
    laters = [];
    if (cur) {
      const c = cur;
      cur = null;
      c.close();
    }
  }
  function restart() {
    drop();
    start();
  }
  function save(sub) {
    if (!store) return;
    try {
      const r = store.set(sub.key, JSON.stringify({ c: sub.cursor, l: sub.last }));
      if (r && typeof r.catch === "function") r.catch((e) => emit("error", e));
    } catch (e) {
      emit("error", e);
    }
  }
  function call(sub, name, arg) {
    const fn = sub.h[name];
    if (!fn) return;
    try {
      fn(arg);
    } catch (e) {
      emit("error", e);
    }
  }
  function fatal(sub, err) {
    if (!subs.delete(sub)) return;
    if (cur) cur.remove(sub);
    if (store && err.code === "BAD_USER_INPUT") store.set(sub.key, "");
    call(sub, "onError", err);
    if (!subs.size) idle();
  }
  function idle() {
    drop();
    if (!closed) setState(paused ? "paused" : "idle", null);
  }
  function probe(sub) {
    return auth().then((t) => env.request({ url: ctx.url("/poll", sub) + "&timeout=0", header: header(t), timeout: 15e3 }));
  }
  function position(sub) {
    if (sub.cursor) return Promise.resolve();
    if (!sub.pos) {
      sub.pos = probe(sub).then(
        (r) => {
          const b = json(r.body);
          if (r.status === 200 && b && b.cursor && !sub.cursor) {
            sub.cursor = b.cursor;
            save(sub);
          }
        },
        () => {
        }
      ).then(() => {
        sub.pos = null;
      });
    }
    return sub.pos;
  }
  const ctx = {
    env,
    opts: o,
    stats,
    wsUrl: base.replace(/^http/, "ws") + "/graphql",
    subs: () => Array.from(subs),
    has: (sub) => subs.has(sub),
    auth,
    header,
    position,
    probe,
    expired() {
      if (o.getToken) stale = true;
    },
    url(path, sub, t) {
      const q = sub.channels.map((c) => "channel=" + encodeURIComponent(c));
      if (sub.cursor) q.push("cursor=" + encodeURIComponent(sub.cursor));
      if (t) q.push("token=" + encodeURIComponent(t));
      return base + path + "?" + q.join("&");
    },
    later(fn) {
      laters.push(setTimeout(fn, backoff()));
    },
    ok(s) {
      if (s !== cur) return;
      fails = 0;
      worked[order[ti]] = true;
      setState("connected", order[ti]);
      if (ti > 0 && !upTimer) {
        upTimer = setTimeout(() => {
          upTimer = null;
          if (ti > 0 && cur && !paused) {
            ti = fails = 0;
            restart();
          }
        }, o.upgradeAfter || 3e5);
      }
    },
    // A session is over. how: 'now' (reconnect at once: a restarting node,
    // an expired token), 'lost' (it was connected), 'fail' (it could not
    // connect: enough of these and the next transport is tried), 'slow'
    // (refused for load: wait long), 'auth' (no token).
    ended(s, how, why, report) {
      if (s !== cur) return;
      cur = null;
      clearTimeout(upTimer);
      upTimer = null;
      const err = why && why.message ? why : pushgateError("DISCONNECTED", String(why || how));
      err.transport = order[ti];
      if (report || how === "auth") emit("error", err);
      if (closed || paused) return;
      stats.reconnects++;
      if (how === "fail" && ++fails >= (worked[order[ti]] ? 8 : 2) && order.length > 1) {
        fails = 0;
        ti = (ti + 1) % order.length;
      }
      if (how === "lost") attempt = 0;
      const d = how === "now" ? 0 : how === "slow" ? maxDelay : backoff();
      setState("connecting", order[ti]);
      timer = setTimeout(start, d);
    },
    unsupported(name, s) {
      order = order.filter((t) => t !== name);
      if (s !== cur) return;
      cur = null;
      s.close();
      if (ti >= order.length) ti = 0;
      fails = 0;
      start();
    },
    msg(sub, m, cursor) {
      if (!subs.has(sub)) return;
      const last = sub.last[m.channel];
      if (last != null && cmpId(m.id, last) <= 0) {
        stats.duplicates++;
        return;
      }
      sub.last[m.channel] = String(m.id);
      if (cursor) sub.cursor = cursor;
      stats.messages++;
      const out = clean(m);
      if (cursor) out.cursor = cursor;
      else delete out.cursor;
      call(sub, "onMessage", out);
      save(sub);
      if (cursor && o.ack) autoAck(m.channel, cursor);
    },
    reset(sub, r) {
      if (!subs.has(sub)) return;
      delete sub.last[r.channel];
      if (r.cursor) sub.cursor = r.cursor;
      save(sub);
      call(sub, "onReset", { channel: r.channel, reason: r.reason, cursor: r.cursor });
    },
    cursor(sub, c) {
      if (!subs.has(sub) || !c || c === sub.cursor) return;
      sub.cursor = c;
      save(sub);
    },
    // A subscription's GraphQL errors: a refreshed token, a retry, or its end.
    opError(sub, errors, k) {
      const e = gqlError(errors);
      if (e.code === "UNAUTHENTICATED" && o.getToken) {
        stale = true;
        return k.reauth();
      }
      if (e.code === "UNAVAILABLE" || e.code === "RATE_LIMITED" || e.code === "INTERNAL") {
        emit("error", e);
        return ctx.later(k.retry);
      }
      fatal(sub, e);
    },
    // An answer other than 200 on /events or /poll, as what to do next:
    // 'auth', 'slow', 'fail', or 'drop' (the subscription was refused).
    httpError(sub, status, e) {
      const err = pushgateError(e.code || "HTTP_" + status, e.message || "HTTP " + status, { status });
      if (status === 401 && o.getToken) {
        stale = true;
        return "auth";
      }
      if (status === 400 || status === 401 || status === 403) {
        fatal(sub, err);
        return "drop";
      }
      emit("error", err);
      return status === 429 || status === 503 ? "slow" : "fail";
    }
  };
  function subscribe(channels, h) {
    h = h || {};
    if (typeof channels === "string") channels = [channels];
    channels = channels.filter((c, i) => channels.indexOf(c) === i);
    if (!channels.length) throw new TypeError("subscribe: at least one channel");
    const sub = {
      channels,
      h,
      cursor: h.cursor || null,
      last: {},
      key: "pushgate:" + base + ":" + channels.slice().sort().join(","),
      pos: null
    };
    let gone = false;
    const go = (saved2) => {
      if (gone || closed) return;
      const v = !h.cursor && json(saved2);
      if (v && v.c) {
        sub.cursor = v.c;
        sub.last = v.l || {};
      }
      subs.add(sub);
      if (cur) cur.add(sub);
      else start();
    };
    let saved;
    try {
      saved = store && store.get(sub.key);
    } catch (e) {
      emit("error", e);
    }
    if (saved && typeof saved.then === "function") saved.then(go, () => go());
    else go(saved);
    return function unsubscribe() {
      gone = true;
      if (!subs.delete(sub)) return;
      if (cur) cur.remove(sub);
      if (!subs.size) idle();
    };
  }
  function graphql(query, variables, retried) {
    return auth().then(
      (t) => env.request({
        url: base + "/graphql",
        method: "POST",
        header: Object.assign({ "Content-Type": "application/json" }, header(t)),
        body: JSON.stringify({ query, variables: variables || {} }),
        timeout: 3e4
      })
    ).then((r) => {
      const b = json(r.body);
      if (b && b.errors && b.errors.length) {
        const e = gqlError(b.errors);
        if (e.code === "UNAUTHENTICATED" && o.getToken && !retried) {
          stale = true;
          return graphql(query, variables, true);
        }
        throw e;
      }
      if (!b || r.status >= 300) {
        const x = b && b.error || {};
        throw pushgateError(x.code || "HTTP_" + r.status, x.message || "POST /graphql answered " + r.status, { status: r.status });
      }
      return b.data;
    });
  }
  function history(channel, a) {
    a = a || {};
    return graphql(
      "query($c:String!,$f:Int,$a:String,$l:Int,$b:String){history(channel:$c,first:$f,after:$a,last:$l,before:$b){nodes{" + MSG + "}pageInfo{hasNextPage hasPreviousPage startCursor endCursor}}}",
      { c: channel, f: a.first, a: a.after, l: a.last, b: a.before }
    ).then((d) => ({ messages: d.history.nodes.map(clean), pageInfo: d.history.pageInfo }));
  }
  function send(channel, data, a) {
    a = a || {};
    return graphql("mutation($i:SendInput!){send(input:$i){duplicate message{" + MSG + "}}}", {
      i: { channel, data, event: a.event, idempotencyKey: a.idempotencyKey }
    }).then((d) => ({ message: clean(d.send.message), duplicate: d.send.duplicate }));
  }
  function ackMutation() {
    if (!ackP) {
      const T = "type{kind name ofType{kind name}}";
      ackP = graphql('{__type(name:"Mutation"){fields{name args{name ' + T + "} " + T + "}}}").then(
        (d) => {
          const f = (d && d.__type && d.__type.fields || []).filter((x) => x.name === "ack")[0];
          const arg = (n) => f && f.args.filter((x) => x.name === n)[0];
          if (!f || !arg("channel") || !arg("cursor")) return null;
          const name = (t) => t.kind === "NON_NULL" ? t.ofType.name + "!" : t.name;
          const kind = (t) => t.kind === "NON_NULL" ? t.ofType.kind : t.kind;
          const obj = /OBJECT|INTERFACE|UNION/.test(kind(f.type));
          return "mutation($c:" + name(arg("channel").type) + ",$k:" + name(arg("cursor").type) + "){ack(channel:$c,cursor:$k)" + (obj ? "{__typename}" : "") + "}";
        },
        (e) => {
          ackP = null;
          if (e.code === "BAD_USER_INPUT" || e.code === "GRAPHQL_VALIDATION_FAILED") return null;
          throw e;
        }
      );
    }
    return ackP;
  }
  function ack(channel, cursor) {
    return ackMutation().then((m) => {
      if (!m) throw pushgateError("UNSUPPORTED", "this server has no ack mutation");
      return graphql(m, { c: channel, k: cursor });
    }).then(() => void 0);
  }
  function autoAck(channel, cursor) {
    if (closed) return;
    if (!acks) {
      acks = {};
      ackTimer = setTimeout(() => {
        const a = acks;
        acks = null;
        for (const ch in a) ack(ch, a[ch]).catch((e) => e.code !== "UNSUPPORTED" && emit("error", e));
      }, 200);
    }
    acks[channel] = cursor;
  }
  function close() {
    if (closed) return;
    closed = true;
    clearTimeout(ackTimer);
    acks = null;
    drop();
    subs.clear();
    offs.forEach((f) => f());
    setState("closed", null);
  }
  const offs = [
    env.onHide(() => {
      if (closed) return;
      paused = true;
      drop();
      setState("paused", null);
    }),
    env.onShow(() => {
      if (closed) return;
      paused = false;
      attempt = 0;
      if (!cur) start();
    }),
    env.onNetwork((r) => {
      if (closed || paused || r && r.isConnected === false) return;
      ti = fails = attempt = 0;
      worked = {};
      restart();
    })
  ];
  return client;
}
export {
  createClient,
  detect as detectPlatform
};
