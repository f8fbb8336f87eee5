// The SSE transport: GET /events, one stream per subscription (a stream's
// cursor covers its own channels). EventSource where the runtime has one
// (browsers, uni-app H5); elsewhere a chunked request (wx.request with
// enableChunked) or a streamed fetch (Node), read with this package's own
// UTF-8 decoder and SSE parser.
//
// A stream that ends after it was established (the server closed it, a
// mini-program's 60 s request limit, an expired token) is opened again at
// once from the newest cursor; one that cannot be established ends the
// session, and the client decides what follows.

import { utf8Decoder } from './utf8.js';
import { sseParser } from './sse.js';

export function sseSession(ctx) {
  let done = false;
  const streams = new Map(); // sub -> abort
  const s = {
    add,
    remove(sub) {
      const abort = streams.get(sub);
      streams.delete(sub);
      if (abort) abort();
    },
    close: () => stop(),
  };
  ctx.subs().forEach(add);

  function add(sub) {
    if (done || streams.has(sub) || !ctx.has(sub)) return;
    streams.set(sub, () => {});
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
    streams.set(sub, () => {});
    open(sub);
  }

  // An answer other than 200: {"error": {"code", "message"}}.
  function refused(sub, status, body) {
    let e = {};
    try {
      e = JSON.parse(body).error || {};
    } catch (x) {
      // not pushgate's answer (a proxy's page)
    }
    const how = ctx.httpError(sub, status, e);
    if (how !== 'drop') end(how, 'GET /events answered ' + status);
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
      (err) => end('auth', err),
    );
  }

  function openChunked(sub, token) {
    const decode = utf8Decoder();
    let status = 0;
    let got = false;
    let head = ''; // the first bytes, should the answer be an error
    const began = Date.now();
    // The server writes a heartbeat on an idle stream (every 15 s by
    // default): a stream silent for longer than sseTimeout is dead, though
    // nothing closed it (a half-open connection).
    const silence = ctx.opts.sseTimeout || 45000;
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
      { url: ctx.url('/events', sub), header: ctx.header(token) },
      {
        status(code) {
          status = code;
        },
        chunk(d) {
          if (!live(sub, abort)) return;
          heard = Date.now();
          const text = typeof d === 'string' ? d : decode(new Uint8Array(d), true);
          if (head.length < 2048) head += text;
          if (!status || status === 200) parse(text);
        },
        end(err, code) {
          clearInterval(watch);
          if (!live(sub, abort)) return;
          if (code) status = code;
          if (status && status !== 200) refused(sub, status, head);
          else if (!got) end('fail', err || 'GET /events ended before its first event');
          // A stream that ends at once, again and again, is a failure.
          else if (Date.now() - began < 1000 && !err) end('lost', 'GET /events ended at once');
          else reopen(sub);
        },
      },
    );
    if (!raw) return ctx.unsupported('sse', s);
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
      else end('fail', 'GET /events: silent for ' + silence + ' ms');
    }, silence / 3);
  }

  function openES(sub, token) {
    let opened = false;
    const es = new ctx.env.EventSource(ctx.url('/events', sub, token));
    const abort = () => es.close();
    streams.set(sub, abort);
    const on = (type, fn) =>
      es.addEventListener(type, (e) => {
        if (live(sub, abort)) fn(e);
      });
    on('open', () => {
      opened = true;
      ctx.ok(s);
    });
    on('message', (e) => event(sub, { id: e.lastEventId, event: 'message', data: e.data }));
    on('reset', (e) => event(sub, { id: e.lastEventId, event: 'reset', data: e.data }));
    on('expired', (e) => {
      event(sub, { event: 'expired', data: e.data });
      es.close();
      reopen(sub);
    });
    on('error', () => {
      // EventSource would retry by itself, with the token it started
      // with: we take over. It hides the status of a refused request, so
      // a poll without a hold asks for it.
      es.close();
      if (opened) return reopen(sub);
      ctx.probe(sub).then(
        (r) => {
          if (!live(sub, abort)) return;
          if (r.status !== 200) refused(sub, r.status, typeof r.body === 'string' ? r.body : JSON.stringify(r.body));
          else end('fail', 'EventSource failed');
        },
        (err) => live(sub, abort) && end('fail', err),
      );
    });
  }

  function event(sub, ev) {
    if (ev.event === 'expired') {
      // The last block of a stream whose token expired: the stream ends
      // next, and opens again with a fresh token.
      ctx.expired();
      try {
        const c = JSON.parse(ev.data).cursor;
        if (c) ctx.cursor(sub, c);
      } catch (e) {
        // no cursor: resume from the newest delivered
      }
    } else if (ev.event === 'reset') ctx.reset(sub, JSON.parse(ev.data));
    else if (ev.data != null) ctx.msg(sub, JSON.parse(ev.data), ev.id);
    else if (ev.id) ctx.cursor(sub, ev.id); // the opening block: where the stream starts
  }

  return s;
}
