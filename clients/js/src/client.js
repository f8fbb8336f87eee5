// The client: subscriptions, their cursors and de-duplication, the token,
// and the choice of transport and of when to connect again.
//
// Every event a transport delivers goes through msg/reset/cursor here, so
// the rules hold on every transport alike: a subscription resumes from the
// newest cursor delivered, a message whose (channel, id) is not newer than
// the last one handed to the app is dropped, and with storage both survive
// an app restart.

import { detect, runtime } from './platform.js';
import { wsSession } from './ws.js';
import { sseSession } from './stream.js';
import { pollSession } from './poll.js';

const SESSIONS = { ws: wsSession, sse: sseSession, poll: pollSession };
const MSG = 'channel id event data createdAt cursor';

export function pushgateError(code, message, extra) {
  const e = new Error(message || code);
  e.name = 'PushgateError';
  e.code = code;
  if (extra) for (const k in extra) e[k] = extra[k];
  return e;
}

function gqlError(errors) {
  const list = Array.isArray(errors) ? errors : [errors];
  const first = list[0] || {};
  const ext = first.extensions || {};
  return pushgateError(ext.code || 'GRAPHQL_ERROR', first.message, { errors: list, retryAfter: ext.retryAfter });
}

// Message ids are decimal offsets: compared as numbers, exactly, at any length.
const cmpId = (a, b) => {
  a = String(a);
  b = String(b);
  return a.length !== b.length ? a.length - b.length : a < b ? -1 : a > b ? 1 : 0;
};

const json = (b) => {
  if (typeof b !== 'string') return b;
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
  if (typeof s.get === 'function' && typeof s.set === 'function') return s;
  if (typeof s.getItem === 'function') return { get: (k) => s.getItem(k), set: (k, v) => s.setItem(k, v) };
  if (typeof s.getStorageSync === 'function') {
    if (env.name === 'my') return env.storage;
    return { get: (k) => s.getStorageSync(k), set: (k, v) => s.setStorageSync(k, v) };
  }
  throw new TypeError('storage: true, localStorage, wx (getStorageSync) or {get, set}');
}

export function createClient(o) {
  if (!o || !o.url) throw new TypeError('createClient: url is required');
  const platform = o.platform || detect();
  const env = runtime(platform, o);
  const base = String(o.url)
    .replace(/\/+$/, '')
    .replace(/\/graphql$/, '')
    .replace(/^ws(s?):/, 'http$1:');
  const rc = o.reconnect || {};
  const minDelay = rc.min || 500;
  const maxDelay = rc.max || 15000;
  let order = (o.transports || ['ws', 'sse', 'poll']).filter(
    (t) => SESSIONS[t] && (t !== 'ws' || env.socket) && (t !== 'sse' || env.stream || env.EventSource),
  );
  const store = storageOf(o.storage, env);
  const subs = new Set();
  const listeners = { state: [], error: [] };
  let token = o.token;
  let stale = token == null && !!o.getToken;
  let tokenP = null;
  let ti = 0; // the transport: order[ti]
  let fails = 0; // attempts in a row on it that could not connect
  let attempt = 0; // of the backoff
  let worked = {}; // transports that connected on this network
  let cur = null; // the session
  let timer = null;
  let upTimer = null;
  let paused = false;
  let closed = false;
  let ackP = null;
  let acks = null;
  let ackTimer = null;
  let laters = []; // the session's retries, cleared with it
  const stats = { messages: 0, duplicates: 0, reconnects: 0 };

  const client = {
    platform,
    state: { status: 'idle', transport: null },
    stats,
    subscribe,
    history,
    send,
    ack,
    graphql,
    on,
    close,
  };

  function emit(type, v) {
    listeners[type].slice().forEach((fn) => {
      try {
        fn(v);
      } catch (e) {
        if (type !== 'error') emit('error', e);
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
    if (transport === undefined) transport = client.state.transport;
    if (client.state.status === status && client.state.transport === transport) return;
    client.state = { status, transport };
    emit('state', client.state);
  }

  function auth() {
    if (!o.getToken || (!stale && token != null)) return Promise.resolve(token);
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
        },
      );
    }
    return tokenP;
  }

  const header = (t) => (t ? { Authorization: 'Bearer ' + t } : {});

  function backoff() {
    const d = Math.min(maxDelay, minDelay * Math.pow(2, attempt++));
    return d / 2 + (Math.random() * d) / 2;
  }

  function start() {
    clearTimeout(timer);
    timer = null;
    if (cur || closed || paused) return;
    if (!subs.size) return setState('idle', null);
    if (!order.length) {
      emit('error', pushgateError('NO_TRANSPORT', 'no transport works on ' + platform));
      return setState('idle', null);
    }
    setState('connecting', order[ti]);
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
      if (r && typeof r.catch === 'function') r.catch((e) => emit('error', e));
    } catch (e) {
      emit('error', e);
    }
  }

  function call(sub, name, arg) {
    const fn = sub.h[name];
    if (!fn) return;
    try {
      fn(arg);
    } catch (e) {
      emit('error', e);
    }
  }

  // A subscription that cannot go on: the server refused it.
  function fatal(sub, err) {
    if (!subs.delete(sub)) return;
    if (cur) cur.remove(sub);
    if (store && err.code === 'BAD_USER_INPUT') store.set(sub.key, ''); // a bad saved cursor
    call(sub, 'onError', err);
    if (!subs.size) idle();
  }

  function idle() {
    drop();
    if (!closed) setState(paused ? 'paused' : 'idle', null);
  }

  // GET /poll without a hold: its status, and the current position of the
  // subscription's channels when it names none.
  function probe(sub) {
    return auth().then((t) => env.request({ url: ctx.url('/poll', sub) + '&timeout=0', header: header(t), timeout: 15000 }));
  }

  // A subscription started without a cursor learns its start position
  // before it subscribes, so a reconnect before its first message misses
  // nothing sent meanwhile. Should the request fail, it starts live.
  function position(sub) {
    if (sub.cursor) return Promise.resolve();
    if (!sub.pos) {
      sub.pos = probe(sub)
        .then(
          (r) => {
            const b = json(r.body);
            if (r.status === 200 && b && b.cursor && !sub.cursor) {
              sub.cursor = b.cursor;
              save(sub);
            }
          },
          () => {},
        )
        .then(() => {
          sub.pos = null;
        });
    }
    return sub.pos;
  }

  const ctx = {
    env,
    opts: o,
    stats,
    wsUrl: base.replace(/^http/, 'ws') + '/graphql',
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
      const q = sub.channels.map((c) => 'channel=' + encodeURIComponent(c));
      if (sub.cursor) q.push('cursor=' + encodeURIComponent(sub.cursor));
      if (t) q.push('token=' + encodeURIComponent(t));
      return base + path + '?' + q.join('&');
    },
    later(fn) {
      laters.push(setTimeout(fn, backoff()));
    },
    ok(s) {
      if (s !== cur) return;
      fails = 0;
      worked[order[ti]] = true;
      setState('connected', order[ti]);
      // On a fallback: try the first transport again now and then.
      if (ti > 0 && !upTimer) {
        upTimer = setTimeout(() => {
          upTimer = null;
          if (ti > 0 && cur && !paused) {
            ti = fails = 0;
            restart();
          }
        }, o.upgradeAfter || 300000);
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
      const err = why && why.message ? why : pushgateError('DISCONNECTED', String(why || how));
      err.transport = order[ti];
      if (report || how === 'auth') emit('error', err);
      if (closed || paused) return;
      stats.reconnects++;
      if (how === 'fail' && ++fails >= (worked[order[ti]] ? 8 : 2) && order.length > 1) {
        fails = 0;
        ti = (ti + 1) % order.length;
      }
      // A connection that was up is tried again soon: backoff grows only
      // over attempts that could not connect.
      if (how === 'lost') attempt = 0;
      const d = how === 'now' ? 0 : how === 'slow' ? maxDelay : backoff();
      setState('connecting', order[ti]);
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
      call(sub, 'onMessage', out);
      save(sub);
      if (cursor && o.ack) autoAck(m.channel, cursor);
    },
    reset(sub, r) {
      if (!subs.has(sub)) return;
      delete sub.last[r.channel];
      if (r.cursor) sub.cursor = r.cursor;
      save(sub);
      call(sub, 'onReset', { channel: r.channel, reason: r.reason, cursor: r.cursor });
    },
    cursor(sub, c) {
      if (!subs.has(sub) || !c || c === sub.cursor) return;
      sub.cursor = c;
      save(sub);
    },
    // A subscription's GraphQL errors: a refreshed token, a retry, or its end.
    opError(sub, errors, k) {
      const e = gqlError(errors);
      if (e.code === 'UNAUTHENTICATED' && o.getToken) {
        stale = true;
        return k.reauth();
      }
      if (e.code === 'UNAVAILABLE' || e.code === 'RATE_LIMITED' || e.code === 'INTERNAL') {
        emit('error', e);
        return ctx.later(k.retry);
      }
      fatal(sub, e);
    },
    // An answer other than 200 on /events or /poll, as what to do next:
    // 'auth', 'slow', 'fail', or 'drop' (the subscription was refused).
    httpError(sub, status, e) {
      const err = pushgateError(e.code || 'HTTP_' + status, e.message || 'HTTP ' + status, { status });
      if (status === 401 && o.getToken) {
        stale = true;
        return 'auth';
      }
      if (status === 400 || status === 401 || status === 403) {
        fatal(sub, err);
        return 'drop';
      }
      emit('error', err);
      return status === 429 || status === 503 ? 'slow' : 'fail';
    },
  };

  function subscribe(channels, h) {
    h = h || {};
    if (typeof channels === 'string') channels = [channels];
    channels = channels.filter((c, i) => channels.indexOf(c) === i);
    if (!channels.length) throw new TypeError('subscribe: at least one channel');
    const sub = {
      channels,
      h,
      cursor: h.cursor || null,
      last: {},
      key: 'pushgate:' + base + ':' + channels.slice().sort().join(','),
      pos: null,
    };
    let gone = false;
    const go = (saved) => {
      if (gone || closed) return;
      // A cursor given wins over a saved one: the app loaded its state there.
      const v = !h.cursor && json(saved);
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
      emit('error', e);
    }
    if (saved && typeof saved.then === 'function') saved.then(go, () => go());
    else go(saved);
    return function unsubscribe() {
      gone = true;
      if (!subs.delete(sub)) return;
      if (cur) cur.remove(sub);
      if (!subs.size) idle();
    };
  }

  function graphql(query, variables, retried) {
    return auth()
      .then((t) =>
        env.request({
          url: base + '/graphql',
          method: 'POST',
          header: Object.assign({ 'Content-Type': 'application/json' }, header(t)),
          body: JSON.stringify({ query, variables: variables || {} }),
          timeout: 30000,
        }),
      )
      .then((r) => {
        const b = json(r.body);
        if (b && b.errors && b.errors.length) {
          const e = gqlError(b.errors);
          if (e.code === 'UNAUTHENTICATED' && o.getToken && !retried) {
            stale = true;
            return graphql(query, variables, true);
          }
          throw e;
        }
        if (!b || r.status >= 300) {
          const x = (b && b.error) || {};
          throw pushgateError(x.code || 'HTTP_' + r.status, x.message || 'POST /graphql answered ' + r.status, { status: r.status });
        }
        return b.data;
      });
  }

  function history(channel, a) {
    a = a || {};
    return graphql(
      'query($c:String!,$f:Int,$a:String,$l:Int,$b:String){history(channel:$c,first:$f,after:$a,last:$l,before:$b){nodes{' +
        MSG +
        '}pageInfo{hasNextPage hasPreviousPage startCursor endCursor}}}',
      { c: channel, f: a.first, a: a.after, l: a.last, b: a.before },
    ).then((d) => ({ messages: d.history.nodes.map(clean), pageInfo: d.history.pageInfo }));
  }

  function send(channel, data, a) {
    a = a || {};
    return graphql('mutation($i:SendInput!){send(input:$i){duplicate message{' + MSG + '}}}', {
      i: { channel, data, event: a.event, idempotencyKey: a.idempotencyKey },
    }).then((d) => ({ message: clean(d.send.message), duplicate: d.send.duplicate }));
  }

  // The ack mutation, if the server's schema has one: found once by
  // introspection, its argument types and whether it returns an object
  // taken from there.
  function ackMutation() {
    if (!ackP) {
      const T = 'type{kind name ofType{kind name}}';
      ackP = graphql('{__type(name:"Mutation"){fields{name args{name ' + T + '} ' + T + '}}}').then(
        (d) => {
          const f = ((d && d.__type && d.__type.fields) || []).filter((x) => x.name === 'ack')[0];
          const arg = (n) => f && f.args.filter((x) => x.name === n)[0];
          if (!f || !arg('channel') || !arg('cursor')) return null;
          const name = (t) => (t.kind === 'NON_NULL' ? t.ofType.name + '!' : t.name);
          const kind = (t) => (t.kind === 'NON_NULL' ? t.ofType.kind : t.kind);
          const obj = /OBJECT|INTERFACE|UNION/.test(kind(f.type));
          return (
            'mutation($c:' + name(arg('channel').type) + ',$k:' + name(arg('cursor').type) + '){ack(channel:$c,cursor:$k)' + (obj ? '{__typename}' : '') + '}'
          );
        },
        (e) => {
          ackP = null;
          // Introspection turned off: no way to know, so no ack.
          if (e.code === 'BAD_USER_INPUT' || e.code === 'GRAPHQL_VALIDATION_FAILED') return null;
          throw e;
        },
      );
    }
    return ackP;
  }

  function ack(channel, cursor) {
    return ackMutation()
      .then((m) => {
        if (!m) throw pushgateError('UNSUPPORTED', 'this server has no ack mutation');
        return graphql(m, { c: channel, k: cursor });
      })
      .then(() => undefined);
  }

  // Acks after onMessage returned, the newest cursor per channel, gathered
  // for 200 ms.
  function autoAck(channel, cursor) {
    if (closed) return; // in onMessage
    if (!acks) {
      acks = {};
      ackTimer = setTimeout(() => {
        const a = acks;
        acks = null;
        for (const ch in a) ack(ch, a[ch]).catch((e) => e.code !== 'UNSUPPORTED' && emit('error', e));
      }, 200);
    }
    acks[channel] = cursor;
  }

  // After close() the client holds no timer, socket or request of its own
  // (a Node process may exit), and sends nothing, not even a pending ack.
  function close() {
    if (closed) return;
    closed = true;
    clearTimeout(ackTimer);
    acks = null;
    drop();
    subs.clear();
    offs.forEach((f) => f());
    setState('closed', null);
  }

  // The app's lifecycle: a mini-program's network is cut soon after it goes
  // to the background, so the client closes cleanly then, and reconnects at
  // once when the app shows again or the network changes.
  const offs = [
    env.onHide(() => {
      if (closed) return;
      paused = true;
      drop();
      setState('paused', null);
    }),
    env.onShow(() => {
      if (closed) return;
      paused = false;
      attempt = 0;
      if (!cur) start();
    }),
    env.onNetwork((r) => {
      if (closed || paused || (r && r.isConnected === false)) return;
      ti = fails = attempt = 0;
      worked = {};
      restart();
    }),
  ];

  return client;
}
