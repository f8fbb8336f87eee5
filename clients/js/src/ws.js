// The WebSocket transport: one graphql-transport-ws socket carries every
// subscription of the client (a mini-program may hold at most 5 sockets).
//
// A session is one socket's life. It reports to the client through ctx:
// ok() once connection_ack arrives, ended(how) once the socket is gone;
// the client decides when, and over which transport, to connect again.

export const FEED =
  'subscription($c:[String!]!,$k:String){feed(channels:$c,cursor:$k){__typename ...on Message{channel id event data createdAt cursor}...on Reset{channel reason cursor}}}';

// Close codes that mean the client sent what the protocol forbids: worth
// reporting, then retried after a backoff.
const PROTOCOL = { 1002: 1, 1009: 1, 4400: 1, 4401: 1, 4409: 1 };

export function wsSession(ctx) {
  let sock = null;
  let acked = false;
  let done = false;
  let n = 0;
  let heard = Date.now();
  let ackTimer;
  let pingTimer;
  const ops = new Map(); // operation id -> sub
  const ids = new Map(); // sub -> operation id ('' while its cursor is resolved)
  const s = { add, remove, close: () => finish() };

  ctx.auth().then(
    (token) => {
      if (done) return;
      sock = ctx.env.socket(ctx.wsUrl, ['graphql-transport-ws'], {
        open() {
          // Closed while it was connecting: a runtime may open it anyway.
          if (done) return sock.close(1000, 'bye');
          send({ type: 'connection_init', payload: token ? { token } : {} });
          ackTimer = setTimeout(() => kill('fail', 'no connection_ack within 10 s'), 10000);
        },
        message,
        error() {}, // the close that follows says what happened
        close: closed,
      });
    },
    (err) => end('auth', err),
  );

  function send(m) {
    try {
      sock.send(JSON.stringify(m));
    } catch (e) {
      // the socket is closing: its close ends the session
    }
  }

  function message(text) {
    // Frames still arrive while the socket closes; a connection_ack among
    // them would start a ping timer that nothing clears, keeping a Node
    // process alive and a phone pinging a dead socket.
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
      case 'connection_ack':
        acked = true;
        clearTimeout(ackTimer);
        keepAlive();
        // Connected once every subscription is on its way, its start
        // position known: the state then means what it says.
        Promise.all(ctx.subs().map(add)).then(() => !done && ctx.ok(s));
        break;
      case 'ping':
        send(m.payload ? { type: 'pong', payload: m.payload } : { type: 'pong' });
        break;
      case 'next':
        if (!sub) break;
        if (m.payload && m.payload.errors) failed(sub, m.id, m.payload.errors);
        else if (m.payload && m.payload.data && m.payload.data.feed) feed(sub, m.payload.data.feed);
        break;
      case 'error':
        if (sub) failed(sub, m.id, m.payload);
        break;
      case 'complete':
        // The server ended the operation: subscribe again from the cursor.
        if (sub) {
          forget(sub);
          ctx.later(() => add(sub));
        }
        break;
    }
  }

  function feed(sub, ev) {
    if (ev.__typename === 'Reset') ctx.reset(sub, ev);
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
      reauth: () => kill('auth'), // connection_init carries the token
    });
  }

  // A heartbeat of our own besides the server's pings: a socket silent for
  // 2.5 intervals is dead (a half-open TCP connection closes nothing).
  function keepAlive() {
    const every = ctx.opts.keepAlive || 15000;
    pingTimer = setInterval(() => {
      if (Date.now() - heard > every * 2.5) kill('lost', 'no answer to pings');
      else send({ type: 'ping' });
    }, every);
  }

  function add(sub) {
    if (!acked || done || ids.has(sub) || !ctx.has(sub)) return;
    ids.set(sub, '');
    return ctx.position(sub).then(() => {
      if (done || ids.get(sub) !== '' || !ctx.has(sub)) return;
      const id = String(++n);
      ops.set(id, sub);
      ids.set(sub, id);
      send({ id, type: 'subscribe', payload: { query: FEED, variables: { c: sub.channels, k: sub.cursor || null } } });
    });
  }

  function remove(sub) {
    const id = ids.get(sub);
    forget(sub);
    if (id) send({ id, type: 'complete' });
  }

  function closed(code, reason) {
    if (done) return;
    const why = 'socket closed' + (code ? ' ' + code : '') + (reason ? ': ' + reason : '');
    if (code === 4403) {
      ctx.expired();
      end('now', why);
    } else if (code === 1012) end('now', why);
    else if (code === 4429) end('slow', why);
    else if (PROTOCOL[code]) end('lost', why, true);
    else end(acked ? 'lost' : 'fail', why);
  }

  // kill closes the socket and ends the session at once; the socket's own
  // close event is ignored.
  function kill(how, why) {
    if (done) return;
    end(how, why);
    if (sock) sock.close(1000, 'reconnect');
  }

  function finish() {
    if (done) return;
    done = true;
    clearTimeout(ackTimer);
    clearInterval(pingTimer);
    if (sock) sock.close(1000, 'bye');
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
