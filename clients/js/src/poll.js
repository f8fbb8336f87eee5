// The long-poll transport: GET /poll, one loop per subscription. A poll
// holds at most 25 s (a mini-program's request is cut at 60 s); without a
// cursor it answers at once with the current position.

export const HOLD = 25;

export function pollSession(ctx) {
  let done = false;
  let up = false; // a poll was answered in this session
  const loops = new Map(); // sub -> abort of the poll in flight
  const s = {
    add,
    remove(sub) {
      const abort = loops.get(sub);
      loops.delete(sub);
      if (abort) abort();
    },
    close: () => stop(),
  };
  ctx.subs().forEach(add);

  function add(sub) {
    if (done || loops.has(sub) || !ctx.has(sub)) return;
    loops.set(sub, () => {});
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
      const hold = sub.cursor ? (ctx.opts.pollTimeout != null ? ctx.opts.pollTimeout : HOLD) : 0;
      const req = ctx.env.request({
        url: ctx.url('/poll', sub) + '&timeout=' + hold,
        header: ctx.header(token),
        timeout: (hold + 15) * 1000,
      });
      const abort = req.abort;
      loops.set(sub, abort);
      req.then(
        (r) => {
          if (done || loops.get(sub) !== abort) return;
          let b = r.body;
          try {
            if (typeof b === 'string') b = JSON.parse(b);
          } catch (e) {
            b = null;
          }
          if (r.status !== 200) {
            const how = ctx.httpError(sub, r.status, (b && b.error) || {});
            if (how !== 'drop') end(how, 'GET /poll answered ' + r.status);
            return;
          }
          if (!b || !Array.isArray(b.messages)) return end('fail', 'GET /poll: not a poll answer');
          up = true;
          ctx.ok(s);
          if (b.reset) ctx.reset(sub, b.reset);
          const last = b.messages.length - 1;
          b.messages.forEach((m, i) => ctx.msg(sub, m, i === last ? b.cursor : undefined));
          ctx.cursor(sub, b.cursor);
          // onMessage may have closed the client or unsubscribed.
          if (loops.get(sub) !== abort) return;
          // A busy channel is read in batches: a short pause after an
          // answer with messages keeps a poller near 10 requests a second.
          // The pause is the loop's abort meanwhile, so close() clears it.
          if (last < 0 || last >= 99) return poll(sub);
          const t = setTimeout(() => poll(sub), 100);
          loops.set(sub, () => clearTimeout(t));
        },
        (err) => {
          if (!done && loops.get(sub) === abort) end(up ? 'lost' : 'fail', err);
        },
      );
    }, (err) => end('auth', err));
  }

  return s;
}
