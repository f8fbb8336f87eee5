// pushgate console: the page. It is a client of the server like any other:
// the SDK (pushgate.min.js, the global Pushgate) for subscriptions, sends,
// history and GraphQL, and GET /metrics for the server's figures. The key
// or token, the channels, the transport, the query and the metrics token
// are kept in this browser's localStorage. Message content is only ever set
// as text (textContent), never as markup.
(function () {
  'use strict';

  const P = window.PushgateConsoleLib;
  const $ = (s) => document.getElementById(s);
  // The server's URL: this page's, without /console (a path prefix of a
  // reverse proxy stays).
  const BASE = location.origin + location.pathname.replace(/\/console\/?$/, '');
  const CAP = 5000; // messages kept in the list
  const ROW = 22; // px: the height of a row (CSS --row)
  const METRICS_EVERY = 2000; // ms
  const SPARK_POINTS = 60; // two minutes of scrapes

  // ---------------------------------------------------------------------
  // Settings in localStorage (which may be denied: then they last a visit).
  // ---------------------------------------------------------------------
  const mem = {};
  const store = {
    get(k, d) {
      try {
        const v = localStorage.getItem('pushgate.console.' + k);
        return v === null ? d : JSON.parse(v);
      } catch (e) {
        return k in mem ? mem[k] : d;
      }
    },
    set(k, v) {
      mem[k] = v;
      try {
        if (v === null || v === undefined || v === '') localStorage.removeItem('pushgate.console.' + k);
        else localStorage.setItem('pushgate.console.' + k, JSON.stringify(v));
      } catch (e) {
        /* kept in memory */
      }
    },
  };

  // ---------------------------------------------------------------------
  // Notices: the newest error or event, in one line of the header.
  // ---------------------------------------------------------------------
  let noticeTimer = null;
  function notice(text, isErr) {
    const n = $('notice');
    n.textContent = text;
    n.title = text;
    n.classList.toggle('err', !!isErr);
    clearTimeout(noticeTimer);
    noticeTimer = setTimeout(() => {
      n.textContent = '';
      n.title = '';
    }, isErr ? 15000 : 6000);
  }
  const errText = (e) => (e && e.code ? e.code + ': ' : '') + ((e && e.message) || String(e));

  // ---------------------------------------------------------------------
  // The client and the subscriptions: one subscription per channel, so that
  // each can be removed alone (they share one socket). A new key or
  // transport makes a new client, and each subscription goes on from the
  // newest cursor it was given: nothing is lost across the switch.
  // ---------------------------------------------------------------------
  let client = null;
  const subs = new Map(); // channel -> {cursor, count, unsub, error, chip}

  function connect() {
    if (client) client.close();
    const token = $('token').value.trim();
    const transport = $('transport').value;
    const c = Pushgate.createClient({
      url: BASE,
      token: token || undefined,
      transports: transport ? [transport] : undefined,
    });
    client = c;
    c.on('state', (s) => c === client && showState(s));
    c.on('error', (e) => c === client && notice(errText(e), true));
    showState(c.state);
    for (const [ch, s] of subs) start(ch, s);
  }

  function showState(s) {
    const el = $('state');
    el.dataset.status = s.status;
    el.dataset.transport = s.transport || '';
    el.querySelector('.text').textContent = s.transport ? s.status + ' · ' + s.transport : s.status;
  }

  function start(ch, s) {
    const c = client;
    s.error = null;
    s.unsub = c.subscribe([ch], {
      cursor: s.cursor || undefined,
      onMessage(m) {
        if (c !== client) return;
        s.cursor = m.cursor || s.cursor;
        s.count++;
        add({
          kind: 'msg',
          channel: m.channel,
          id: m.id,
          event: m.event,
          data: m.data,
          cursor: m.cursor || '',
          createdAt: m.createdAt,
          via: c.state.transport || '',
        });
        chipDirty = true;
      },
      onReset(r) {
        if (c !== client) return;
        s.cursor = r.cursor;
        add({ kind: 'reset', channel: r.channel, id: '', event: 'reset', data: r.reason, cursor: r.cursor, via: c.state.transport || '' });
        notice('reset on ' + r.channel + ' (' + r.reason + '): messages were lost to retention or a store reset');
      },
      onError(e) {
        if (c !== client) return;
        s.error = e;
        s.unsub = null;
        renderChips();
        notice(ch + ': ' + errText(e), true);
      },
    });
    renderChips();
  }

  function subscribeChannel(ch, cursor) {
    if (subs.has(ch)) {
      const s = subs.get(ch);
      if (!s.error) return notice('already subscribed to ' + ch);
      if (cursor) s.cursor = cursor;
      start(ch, s); // a retry after an error
      return;
    }
    const s = { cursor: cursor || null, count: 0, unsub: null, error: null };
    subs.set(ch, s);
    saveChannels();
    start(ch, s);
  }

  function unsubscribeChannel(ch) {
    const s = subs.get(ch);
    if (!s) return;
    if (s.unsub) s.unsub();
    subs.delete(ch);
    saveChannels();
    renderChips();
  }

  function saveChannels() {
    store.set('channels', Array.from(subs.keys()));
    const dl = $('channel-list');
    dl.textContent = '';
    for (const ch of subs.keys()) {
      const o = document.createElement('option');
      o.value = ch;
      dl.appendChild(o);
    }
  }

  let chipDirty = false;
  function renderChips() {
    chipDirty = false;
    const box = $('chips');
    box.textContent = '';
    if (!subs.size) {
      const e = document.createElement('span');
      e.className = 'empty';
      e.textContent = 'No channel yet: subscribe to one above.';
      box.appendChild(e);
      return;
    }
    for (const [ch, s] of subs) {
      const chip = document.createElement('span');
      chip.className = 'chip';
      chip.dataset.channel = ch;
      chip.dataset.state = s.error ? 'error' : 'live';
      chip.title = s.error ? errText(s.error) + ' (click the name to retry)' : ch + ': ' + s.count + ' messages; click to use it in Send and History';
      const name = document.createElement('button');
      name.type = 'button';
      name.className = 'name';
      name.textContent = ch;
      name.addEventListener('click', () => {
        if (s.error) return subscribeChannel(ch);
        $('send-channel').value = ch;
        $('hist-channel').value = ch;
      });
      const n = document.createElement('span');
      n.className = 'n';
      n.textContent = s.error ? s.error.code || 'error' : String(s.count);
      const x = document.createElement('button');
      x.type = 'button';
      x.className = 'x';
      x.textContent = '×';
      x.setAttribute('aria-label', 'unsubscribe from ' + ch);
      x.addEventListener('click', () => unsubscribeChannel(ch));
      chip.append(name, n, x);
      box.appendChild(chip);
    }
  }

  // ---------------------------------------------------------------------
  // The message list: the newest CAP entries, drawn as a virtual list (only
  // the rows in view exist, in a pool), at most once a frame.
  // ---------------------------------------------------------------------
  const log = new P.Log(CAP);
  let seq = 0;
  let view = null; // the filtered entries, or null: all of log.items
  let filter = '';
  let selected = null; // an entry of the list or of a history page
  let follow = true;
  let unseen = 0; // entries added while not following
  let dirty = false;
  let recvN = 0; // messages this second
  const recvHist = []; // messages in each of the last 5 seconds
  const list = $('list');
  const spacer = $('spacer');
  const pool = [];
  const EMPTY = $('list-empty').textContent;

  function add(e) {
    e.seq = ++seq;
    e.at = Date.now();
    e.text = e.kind === 'msg' ? P.preview(e.data, 300) : String(e.data);
    e.search = (e.channel + ' ' + (e.event || '') + ' ' + e.text).toLowerCase();
    recvN++;
    const dropped = log.push(e);
    if (view) {
      if (matches(e)) view.push(e);
      if (dropped) {
        const first = log.items[0].seq;
        let k = 0;
        while (k < view.length && view[k].seq < first) k++;
        view.splice(0, k);
        shiftScroll(k);
      }
    } else if (dropped) {
      shiftScroll(dropped);
    }
    if (!follow) unseen++;
    schedule();
  }

  // Rows dropped above the view: scroll up by as much, so that the rows in
  // view stay where they are.
  function shiftScroll(rows) {
    if (!follow && rows) {
      list.scrollTop = Math.max(0, list.scrollTop - rows * ROW);
      expectScroll = list.scrollTop;
    }
  }

  const rows = () => view || log.items;
  const matches = (e) => !filter || e.search.indexOf(filter) >= 0;

  function setFilter(f) {
    filter = f.trim().toLowerCase();
    view = filter ? log.items.filter(matches) : null;
    schedule();
  }

  function schedule() {
    if (dirty) return;
    dirty = true;
    requestAnimationFrame(render);
  }

  let expectScroll = -1; // the scrollTop the page set itself
  function render() {
    dirty = false;
    const items = rows();
    const n = items.length;
    spacer.style.height = n * ROW + 'px';
    if (follow) {
      const bottom = Math.max(0, n * ROW - list.clientHeight);
      if (Math.abs(list.scrollTop - bottom) > 1) {
        list.scrollTop = bottom;
        expectScroll = list.scrollTop;
      }
    }
    const top = list.scrollTop;
    const first = Math.max(0, Math.floor(top / ROW) - 4);
    const last = Math.min(n, Math.ceil((top + list.clientHeight) / ROW) + 4);
    while (pool.length < last - first) pool.push(newRow());
    for (let i = 0; i < pool.length; i++) {
      const r = pool[i];
      const k = first + i;
      if (k >= last) {
        if (!r.hidden) r.hidden = true;
        continue;
      }
      const e = items[k];
      r.hidden = false;
      if (r.entry !== e) fillRow(r, e);
      const cls = 'row' + (e.kind === 'msg' ? '' : ' ' + e.kind) + (k % 2 ? ' odd' : '');
      if (r.className !== cls) r.className = cls;
      const y = 'translateY(' + k * ROW + 'px)';
      if (r.style.transform !== y) r.style.transform = y;
      const sel = e === selected ? 'true' : 'false';
      if (r.getAttribute('aria-selected') !== sel) r.setAttribute('aria-selected', sel);
    }
    const empty = $('list-empty');
    empty.hidden = n > 0;
    if (!n) empty.textContent = view && log.items.length ? 'No message matches the filter.' : EMPTY;
    $('count').textContent =
      (view ? view.length.toLocaleString('en') + ' of ' : '') + log.items.length.toLocaleString('en') + (log.items.length === 1 ? ' message' : ' messages');
    $('jump').hidden = follow || !unseen;
    if (!follow && unseen) $('jump').textContent = '↓ ' + unseen.toLocaleString('en') + ' new';
    if (chipDirty) updateChipCounts();
  }

  function updateChipCounts() {
    chipDirty = false;
    for (const chip of $('chips').querySelectorAll('.chip')) {
      const s = subs.get(chip.dataset.channel);
      if (s && !s.error) chip.querySelector('.n').textContent = String(s.count);
    }
  }

  function newRow() {
    const r = document.createElement('div');
    r.className = 'row';
    r.setAttribute('role', 'option');
    for (const c of ['t', 'v', 'c', 'i', 'e', 'd', 'k']) {
      const s = document.createElement('span');
      s.className = c;
      r.appendChild(s);
    }
    r.addEventListener('click', () => select(r.entry));
    spacer.appendChild(r);
    return r;
  }

  function fillRow(r, e) {
    r.entry = e;
    r.dataset.channel = e.channel;
    r.dataset.id = e.id;
    const s = r.children;
    s[0].textContent = P.clock(e.at);
    s[1].textContent = e.via;
    s[2].textContent = e.channel;
    s[2].title = e.channel;
    s[3].textContent = e.id;
    s[4].textContent = e.event || '';
    s[5].textContent = e.text;
    s[6].textContent = P.shortCursor(e.cursor);
    s[6].title = e.cursor;
    s[6].dataset.cursor = e.cursor;
  }

  list.addEventListener('scroll', () => {
    if (Math.abs(list.scrollTop - expectScroll) <= 1) return;
    expectScroll = -1;
    const atBottom = list.scrollTop + list.clientHeight >= list.scrollHeight - 4;
    setFollow(atBottom);
    schedule();
  });

  function setFollow(on) {
    if (follow === on) return;
    follow = on;
    $('follow').checked = on;
    if (on) unseen = 0;
    schedule();
  }

  function select(e, reveal) {
    selected = e || null;
    showDetail(selected);
    if (reveal && selected) {
      const k = rows().indexOf(selected);
      if (k >= 0) {
        const y = k * ROW;
        if (y < list.scrollTop) list.scrollTop = y;
        else if (y + ROW > list.scrollTop + list.clientHeight) list.scrollTop = y + ROW - list.clientHeight;
      }
    }
    schedule();
  }

  function moveSelection(d) {
    const items = rows();
    if (!items.length) return;
    let k = selected ? items.indexOf(selected) : -1;
    k = k < 0 ? (d > 0 ? 0 : items.length - 1) : Math.min(items.length - 1, Math.max(0, k + d));
    if (k < items.length - 1) setFollow(false);
    select(items[k], true);
  }

  function showDetail(e) {
    const title = $('detail-title');
    const body = $('detail-body');
    const cur = $('detail-cursor');
    $('detail-copy').disabled = !e || !e.cursor;
    $('detail-history').disabled = !e || !e.cursor || e.kind !== 'msg';
    if (!e) {
      title.textContent = 'Select a message (j/k, click) to see it whole.';
      title.className = 'muted';
      cur.textContent = '';
      body.textContent = '';
      return;
    }
    title.className = '';
    const parts = [e.channel];
    if (e.id) parts.push('#' + e.id);
    if (e.event) parts.push(e.event);
    if (e.createdAt) parts.push(e.createdAt);
    if (e.via) parts.push('via ' + e.via);
    if (e.kind === 'history') parts.push('from history');
    title.textContent = parts.join(' · ');
    cur.textContent = e.cursor ? 'cursor ' + e.cursor : '';
    cur.title = e.cursor || '';
    let text;
    if (e.kind === 'reset') text = 'Reset: ' + e.data + '. Messages were lost (retention passed, or the store lost the channel): the client must refetch the channel\'s state.';
    else {
      try {
        text = JSON.stringify(e.data, null, 2);
      } catch (x) {
        text = String(e.data);
      }
      if (text && text.length > 200000) text = text.slice(0, 200000) + '\n… (' + text.length.toLocaleString('en') + ' characters)';
    }
    body.textContent = text;
  }

  function copy(text) {
    const done = () => notice('copied the cursor');
    if (navigator.clipboard && window.isSecureContext) {
      navigator.clipboard.writeText(text).then(done, () => fallbackCopy(text, done));
    } else fallbackCopy(text, done);
  }

  function fallbackCopy(text, done) {
    const t = document.createElement('textarea');
    t.value = text;
    t.setAttribute('readonly', '');
    t.style.position = 'fixed';
    t.style.opacity = '0';
    document.body.appendChild(t);
    t.select();
    try {
      if (document.execCommand('copy')) done();
      else notice('copy: select the cursor and copy it by hand', true);
    } finally {
      t.remove();
    }
  }

  // The receive rate in the list's bar, and client.stats, once a second.
  setInterval(() => {
    recvHist.push(recvN);
    recvN = 0;
    if (recvHist.length > 5) recvHist.shift();
    const n = recvHist.reduce((a, b) => a + b, 0);
    $('recv-rate').textContent = log.items.length ? P.rate(n / recvHist.length) + ' msg/s' : '';
    if (client) {
      const st = client.stats;
      $('client-stats').textContent = st.duplicates || st.reconnects ? st.duplicates + ' dup · ' + st.reconnects + ' reconnects' : '';
    }
  }, 1000);

  // ---------------------------------------------------------------------
  // Tabs.
  // ---------------------------------------------------------------------
  const TABS = ['send', 'history', 'graphql', 'server'];
  function showTab(name, focus) {
    for (const t of TABS) {
      const on = t === name;
      const tab = $('tab-' + t);
      tab.setAttribute('aria-selected', on ? 'true' : 'false');
      tab.tabIndex = on ? 0 : -1;
      $('panel-' + t).hidden = !on;
    }
    store.set('tab', name);
    if (focus) $('tab-' + name).focus();
    if (name === 'server') drawSpark();
  }
  for (const t of TABS) $('tab-' + t).addEventListener('click', () => showTab(t));
  document.querySelector('.tabs').addEventListener('keydown', (ev) => {
    const k = TABS.indexOf(store.get('tab', 'send'));
    if (ev.key === 'ArrowRight') showTab(TABS[(k + 1) % TABS.length], true);
    else if (ev.key === 'ArrowLeft') showTab(TABS[(k + TABS.length - 1) % TABS.length], true);
    else return;
    ev.preventDefault();
  });

  // ---------------------------------------------------------------------
  // Send.
  // ---------------------------------------------------------------------
  function send() {
    const out = $('send-out');
    const ch = $('send-channel').value.trim();
    if (!P.CHANNEL.test(ch)) return result(out, 'err', 'BAD_USER_INPUT: a channel is 1..128 of A-Z a-z 0-9 _ : . @ -');
    let data;
    try {
      data = JSON.parse($('send-data').value);
    } catch (e) {
      return result(out, 'err', 'data is not JSON: ' + e.message + ' (a text is "quoted")');
    }
    const event = $('send-event').value.trim() || undefined;
    const idem = $('send-idem').value.trim() || undefined;
    result(out, '', 'sending…');
    client.send(ch, data, { event, idempotencyKey: idem }).then(
      (r) => {
        const m = r.message;
        result(out, 'ok', (r.duplicate ? 'duplicate of #' : 'sent #') + m.id + ' to ' + m.channel + ' · cursor ' + m.cursor);
        out.dataset.id = m.id;
        out.dataset.cursor = m.cursor;
      },
      (e) => result(out, 'err', errText(e)),
    );
  }

  function result(el, cls, text) {
    el.className = (el.classList.contains('out-pre') ? 'out-pre mono' : 'out') + (cls ? ' ' + cls : '');
    el.textContent = text;
  }

  $('panel-send').addEventListener('submit', (ev) => {
    ev.preventDefault();
    send();
  });

  // ---------------------------------------------------------------------
  // History: pages of a channel, newest first by default, older and newer
  // by the page's cursors.
  // ---------------------------------------------------------------------
  let page = null; // {channel, info}
  function loadHistory(channel, args) {
    const info = $('hist-info');
    if (!P.CHANNEL.test(channel)) {
      info.textContent = 'a channel is 1..128 of A-Z a-z 0-9 _ : . @ -';
      return;
    }
    info.textContent = 'loading…';
    client.history(channel, args).then(
      (r) => {
        page = { channel, info: r.pageInfo };
        drawHistory(channel, r.messages);
        const ms = r.messages;
        info.textContent = ms.length ? '#' + ms[0].id + ' – #' + ms[ms.length - 1].id + ' · ' + ms.length + (ms.length === 1 ? ' message' : ' messages') : 'no message';
        $('hist-older').disabled = !r.pageInfo.hasPreviousPage;
        $('hist-oldest').disabled = !r.pageInfo.hasPreviousPage;
        $('hist-newer').disabled = !r.pageInfo.hasNextPage;
      },
      (e) => {
        info.textContent = errText(e);
      },
    );
  }

  function drawHistory(channel, messages) {
    const box = $('hist-list');
    box.textContent = '';
    if (!messages.length) {
      const p = document.createElement('div');
      p.className = 'empty';
      p.textContent = 'No retained message here.';
      box.appendChild(p);
      return;
    }
    for (const m of messages) {
      const e = { kind: 'history', channel, id: m.id, event: m.event, data: m.data, cursor: m.cursor || '', createdAt: m.createdAt };
      const r = document.createElement('div');
      r.className = 'row';
      r.setAttribute('role', 'option');
      r.dataset.id = m.id;
      const cells = ['#' + m.id, P.clock(m.createdAt), m.event || '', P.preview(m.data, 300)];
      for (const [i, c] of cells.entries()) {
        const s = document.createElement('span');
        s.className = ['i', 't', 'e', 'd'][i];
        s.textContent = c;
        r.appendChild(s);
      }
      r.addEventListener('click', () => {
        for (const o of box.children) o.removeAttribute('aria-selected');
        r.setAttribute('aria-selected', 'true');
        select(e);
      });
      box.appendChild(r);
    }
  }

  const histSize = () => Number($('hist-size').value);
  $('hist-form').addEventListener('submit', (ev) => {
    ev.preventDefault();
    loadHistory($('hist-channel').value.trim(), { last: histSize() });
  });
  $('hist-older').addEventListener('click', () => page && loadHistory(page.channel, { last: histSize(), before: page.info.startCursor }));
  $('hist-newer').addEventListener('click', () => page && loadHistory(page.channel, { first: histSize(), after: page.info.endCursor }));
  $('hist-oldest').addEventListener('click', () => page && loadHistory(page.channel, { first: histSize() }));
  $('detail-history').addEventListener('click', () => {
    if (!selected || !selected.cursor) return;
    $('hist-channel').value = selected.channel;
    showTab('history');
    loadHistory(selected.channel, { first: histSize(), after: selected.cursor });
  });
  $('detail-copy').addEventListener('click', () => selected && selected.cursor && copy(selected.cursor));

  // ---------------------------------------------------------------------
  // GraphQL: an editor with completion of the schema's names, and a run.
  // ---------------------------------------------------------------------
  let schema = null;
  function loadSchema() {
    const st = $('schema-status');
    st.textContent = 'schema: loading';
    client.graphql(P.INTROSPECTION).then(
      (d) => {
        schema = P.buildSchema(d);
        const n = Object.keys(schema.types).filter((k) => k.slice(0, 2) !== '__').length;
        st.textContent = 'schema: ' + n + ' types · Ctrl+Space';
        st.title = 'field names are completed from the schema (Ctrl+Space)';
      },
      (e) => {
        schema = null;
        st.textContent = 'no schema: completion off';
        st.title = errText(e);
      },
    );
  }

  const ed = $('gql');
  const pop = $('complete');
  const popList = $('complete-list');
  let comp = null; // {from, to, items, sel}
  let metricsFont = null; // {cw, lh, pl, pt}

  function editorMetrics() {
    if (metricsFont) return metricsFont;
    const cs = getComputedStyle(ed);
    const c = document.createElement('canvas').getContext('2d');
    c.font = cs.fontSize + ' ' + cs.fontFamily;
    metricsFont = {
      cw: c.measureText('0123456789').width / 10,
      lh: parseFloat(cs.lineHeight) || 18,
      pl: parseFloat(cs.paddingLeft) + parseFloat(cs.borderLeftWidth),
      pt: parseFloat(cs.paddingTop) + parseFloat(cs.borderTopWidth),
    };
    return metricsFont;
  }

  function openCompletion(explicit) {
    const pos = ed.selectionStart;
    if (pos !== ed.selectionEnd) return closeCompletion();
    const c = P.complete(schema, ed.value, pos);
    if (!c || (!explicit && c.from === pos)) return closeCompletion();
    const prevLabel = comp && comp.items[comp.sel] && comp.items[comp.sel].label;
    comp = c;
    comp.sel = Math.max(0, c.items.findIndex((it) => it.label === prevLabel));
    drawCompletion();
  }

  function drawCompletion() {
    popList.textContent = '';
    comp.items.forEach((it, i) => {
      const li = document.createElement('li');
      li.setAttribute('role', 'option');
      li.id = 'complete-' + i;
      li.setAttribute('aria-selected', i === comp.sel ? 'true' : 'false');
      const l = document.createElement('span');
      l.className = 'l';
      l.textContent = it.label;
      const d = document.createElement('span');
      d.className = 'd';
      d.textContent = it.detail;
      li.append(l, d);
      li.addEventListener('mousedown', (ev) => {
        ev.preventDefault(); // keep the editor's focus
        comp.sel = i;
        accept();
      });
      popList.appendChild(li);
    });
    $('complete-doc').textContent = comp.items[comp.sel].doc || comp.items[comp.sel].detail;
    ed.setAttribute('aria-activedescendant', 'complete-' + comp.sel);
    // Under the name being completed: columns and lines of a monospaced,
    // unwrapped editor.
    const m = editorMetrics();
    const before = ed.value.slice(0, comp.from);
    const lineStart = before.lastIndexOf('\n') + 1;
    let col = 0;
    for (const ch of before.slice(lineStart)) col = ch === '\t' ? col + 2 - (col % 2) : col + 1;
    const line = (before.match(/\n/g) || []).length;
    const x = m.pl + col * m.cw - ed.scrollLeft - 8;
    const y = m.pt + (line + 1) * m.lh - ed.scrollTop + 2;
    pop.hidden = false;
    const maxX = ed.clientWidth - pop.offsetWidth;
    pop.style.left = Math.max(0, Math.min(x, maxX)) + 'px';
    const below = y + pop.offsetHeight <= ed.offsetHeight + 40;
    pop.style.top = (below ? y : Math.max(0, y - m.lh - pop.offsetHeight - 4)) + 'px';
    const sel = popList.children[comp.sel];
    if (sel) sel.scrollIntoView({ block: 'nearest' });
  }

  function closeCompletion() {
    comp = null;
    pop.hidden = true;
    ed.removeAttribute('aria-activedescendant');
  }

  function insert(text, from, to) {
    ed.focus();
    ed.setSelectionRange(from, to);
    // execCommand keeps the editor's undo history; setRangeText where it is gone.
    if (!document.execCommand || !document.execCommand('insertText', false, text)) {
      ed.setRangeText(text, from, to, 'end');
    }
  }

  function accept() {
    if (!comp) return;
    const it = comp.items[comp.sel];
    const { from, to } = comp;
    closeCompletion();
    insert(it.insert, from, to);
    store.set('query', ed.value);
  }

  ed.addEventListener('keydown', (ev) => {
    if (comp) {
      const n = comp.items.length;
      const moves = { ArrowDown: 1, ArrowUp: -1, PageDown: 8, PageUp: -8 };
      if (ev.key in moves) {
        comp.sel = Math.min(n - 1, Math.max(0, comp.sel + moves[ev.key]));
        drawCompletion();
        ev.preventDefault();
        return;
      }
      if ((ev.key === 'Enter' && !ev.ctrlKey && !ev.metaKey) || ev.key === 'Tab') {
        accept();
        ev.preventDefault();
        return;
      }
      if (ev.key === 'Escape') {
        closeCompletion();
        ev.preventDefault();
        ev.stopPropagation();
        return;
      }
    }
    if (ev.key === ' ' && ev.ctrlKey) {
      openCompletion(true);
      ev.preventDefault();
    } else if (ev.key === 'Enter' && (ev.ctrlKey || ev.metaKey)) {
      runQuery();
      ev.preventDefault();
    } else if (ev.key === 'Enter' && !ev.shiftKey && !ev.altKey) {
      // Keep the line's indent, one step more after an opening brace.
      const pos = ed.selectionStart;
      const line = ed.value.slice(ed.value.lastIndexOf('\n', pos - 1) + 1, pos);
      const indent = line.match(/^[ \t]*/)[0] + (/[{(]\s*$/.test(line) ? '  ' : '');
      insert('\n' + indent, pos, ed.selectionEnd);
      ev.preventDefault();
    }
  });
  ed.addEventListener('input', (ev) => {
    store.set('query', ed.value);
    if (ev.inputType === 'insertText' && /^[_A-Za-z0-9]$/.test(ev.data || '')) openCompletion(false);
    else if (comp && ev.inputType === 'deleteContentBackward') openCompletion(false);
    else closeCompletion();
  });
  ed.addEventListener('blur', closeCompletion);
  ed.addEventListener('mousedown', closeCompletion);
  ed.addEventListener('scroll', () => comp && drawCompletion());

  function runQuery() {
    closeCompletion();
    const out = $('gql-out');
    const st = $('gql-status');
    let vars;
    const vt = $('gql-vars').value.trim();
    try {
      vars = vt ? JSON.parse(vt) : undefined;
    } catch (e) {
      st.textContent = 'variables are not JSON: ' + e.message;
      return;
    }
    store.set('vars', vt);
    const t0 = performance.now();
    st.textContent = 'running…';
    client.graphql(ed.value, vars).then(
      (data) => {
        st.textContent = 'ok · ' + Math.round(performance.now() - t0) + ' ms';
        result(out, '', JSON.stringify({ data }, null, 2));
      },
      (e) => {
        st.textContent = (e.code || 'error') + ' · ' + Math.round(performance.now() - t0) + ' ms';
        result(out, 'err', JSON.stringify({ errors: e.errors || [{ message: e.message, extensions: { code: e.code } }] }, null, 2));
      },
    );
  }
  $('gql-run').addEventListener('click', runQuery);
  $('send-data').addEventListener('keydown', (ev) => {
    if (ev.key === 'Enter' && (ev.ctrlKey || ev.metaKey)) {
      ev.preventDefault();
      send();
    }
  });
  $('gql-vars').addEventListener('keydown', (ev) => {
    if (ev.key === 'Enter' && (ev.ctrlKey || ev.metaKey)) {
      ev.preventDefault();
      runQuery();
    }
  });

  // ---------------------------------------------------------------------
  // The server's metrics: GET /metrics every 2 s while the page is visible.
  // ---------------------------------------------------------------------
  const sentRate = new P.Rate();
  const deliveredRate = new P.Rate();
  const spark = [];
  let metricsTimer = null;
  let metricsAbort = null;
  let metricsRefused = false; // 401: no scrape until a token is entered

  function scrape() {
    clearTimeout(metricsTimer);
    metricsTimer = null;
    if (document.hidden) return;
    const token = store.get('metricsToken', '');
    if (metricsAbort) metricsAbort.abort();
    const ac = (metricsAbort = new AbortController());
    const timeout = setTimeout(() => ac.abort(), 5000);
    fetch(BASE + '/metrics', { headers: token ? { Authorization: 'Bearer ' + token } : {}, cache: 'no-store', signal: ac.signal })
      .then((r) => {
        if (r.status === 401) {
          metricsRefused = true;
          showMetricsError(token ? 'the metrics token is wrong' : 'a metrics token is needed', true);
          return null;
        }
        if (!r.ok) throw new Error('GET /metrics answered ' + r.status);
        return r.text();
      })
      .then((text) => {
        if (text == null) return;
        $('metrics-auth').hidden = true;
        showMetrics(P.summarize(P.parseMetrics(text)));
      })
      .catch((e) => showMetricsError(e.name === 'AbortError' ? 'GET /metrics timed out' : 'the server is unreachable (' + e.message + ')'))
      .finally(() => {
        clearTimeout(timeout);
        if (ac === metricsAbort) metricsAbort = null;
        if (!metricsTimer && !document.hidden && !metricsRefused) metricsTimer = setTimeout(scrape, METRICS_EVERY);
      });
  }

  function showMetricsError(text, auth) {
    const st = $('metrics-status');
    st.textContent = text;
    st.className = 'err';
    $('metrics-auth').hidden = !auth;
    $('server-summary').textContent = auth ? 'server: metrics token?' : 'server: unreachable';
    $('metrics-table').dataset.fresh = 'false';
  }

  function showMetrics(s) {
    const st = $('metrics-status');
    if (!s.pushgate) {
      st.textContent = '/metrics has no pushgate metrics';
      st.className = 'err';
      return;
    }
    const now = Date.now();
    const sent = sentRate.push(now, s.sent, s.start);
    const delivered = deliveredRate.push(now, s.delivered, s.start);
    st.textContent = 'updated ' + P.clock(new Date(now)).slice(0, 8);
    st.className = 'muted';
    const body = $('metrics-rows');
    body.textContent = '';
    let conns = 0;
    let subsN = 0;
    for (const t of P.TRANSPORTS) {
      const tr = document.createElement('tr');
      tr.dataset.transport = t;
      for (const [v, cls] of [[t, ''], [s.connections[t], 'num conn'], [s.subscriptions[t], 'num subs']]) {
        const td = document.createElement('td');
        td.className = cls;
        td.textContent = typeof v === 'number' ? v.toLocaleString('en') : v;
        tr.appendChild(td);
      }
      body.appendChild(tr);
      conns += s.connections[t];
      subsN += s.subscriptions[t];
    }
    const tr = document.createElement('tr');
    tr.className = 'total';
    for (const [v, cls] of [['total', ''], [conns, 'num conn'], [subsN, 'num subs']]) {
      const td = document.createElement('td');
      td.className = cls;
      td.textContent = typeof v === 'number' ? v.toLocaleString('en') : v;
      tr.appendChild(td);
    }
    body.appendChild(tr);
    $('metrics-table').dataset.fresh = 'true';
    $('m-sent').textContent = P.rate(sent);
    $('m-delivered').textContent = P.rate(delivered);
    $('m-dropped').textContent = s.dropped.toLocaleString('en');
    $('m-uptime').textContent = s.start ? uptime(now / 1000 - s.start) : '–';
    $('server-summary').textContent =
      'server: ' + conns.toLocaleString('en') + (conns === 1 ? ' conn' : ' conns') + ' · ' + P.rate(sent) + ' sent/s';
    if (sent != null) {
      spark.push(sent);
      if (spark.length > SPARK_POINTS) spark.shift();
      drawSpark();
    }
  }

  function uptime(s) {
    s = Math.max(0, Math.floor(s));
    if (s < 60) return s + ' s';
    if (s < 3600) return Math.floor(s / 60) + ' min';
    if (s < 86400) return Math.floor(s / 3600) + ' h ' + Math.floor((s % 3600) / 60) + ' min';
    return Math.floor(s / 86400) + ' d ' + Math.floor((s % 86400) / 3600) + ' h';
  }

  function drawSpark() {
    const cv = $('spark');
    if ($('panel-server').hidden || !cv.clientWidth) return;
    const dpr = window.devicePixelRatio || 1;
    const w = cv.clientWidth;
    const h = cv.clientHeight;
    if (cv.width !== Math.round(w * dpr)) cv.width = Math.round(w * dpr);
    if (cv.height !== Math.round(h * dpr)) cv.height = Math.round(h * dpr);
    const g = cv.getContext('2d');
    g.setTransform(dpr, 0, 0, dpr, 0, 0);
    g.clearRect(0, 0, w, h);
    const css = getComputedStyle(document.documentElement);
    const accent = css.getPropertyValue('--accent').trim() || '#1f5fd6';
    const muted = css.getPropertyValue('--muted').trim() || '#888';
    const max = Math.max(1, ...spark);
    g.fillStyle = muted;
    g.font = '11px ' + css.getPropertyValue('--sans');
    g.fillText('max ' + P.rate(max) + '/s', 6, 13);
    if (spark.length < 2) return;
    const step = w / (SPARK_POINTS - 1);
    const x0 = w - (spark.length - 1) * step;
    const yOf = (v) => h - 4 - (v / max) * (h - 22);
    g.beginPath();
    spark.forEach((v, i) => (i ? g.lineTo(x0 + i * step, yOf(v)) : g.moveTo(x0, yOf(v))));
    g.strokeStyle = accent;
    g.lineWidth = 1.5;
    g.stroke();
    g.lineTo(w, h);
    g.lineTo(x0, h);
    g.closePath();
    g.globalAlpha = 0.15;
    g.fillStyle = accent;
    g.fill();
    g.globalAlpha = 1;
  }

  $('metrics-auth').addEventListener('submit', (ev) => {
    ev.preventDefault();
    store.set('metricsToken', $('metrics-token').value.trim());
    metricsRefused = false;
    $('metrics-status').textContent = 'Reading /metrics…';
    $('metrics-status').className = 'muted';
    scrape();
  });
  $('server-summary').addEventListener('click', () => showTab('server'));
  document.addEventListener('visibilitychange', () => {
    if (!document.hidden && !metricsRefused) scrape();
  });

  // ---------------------------------------------------------------------
  // The header's form, the subscribe form, the list's controls.
  // ---------------------------------------------------------------------
  $('token').addEventListener('change', () => {
    store.set('token', $('token').value.trim());
    connect();
    loadSchema();
    notice($('token').value.trim() ? 'using the key or token (kept in this browser)' : 'anonymous');
  });
  $('auth').addEventListener('submit', (ev) => ev.preventDefault());
  $('token-show').addEventListener('click', () => {
    const t = $('token');
    t.type = t.type === 'password' ? 'text' : 'password';
    $('token-show').textContent = t.type === 'password' ? 'show' : 'hide';
  });
  $('token-forget').addEventListener('click', () => {
    $('token').value = '';
    store.set('token', '');
    connect();
    notice('the key is forgotten: anonymous');
  });
  $('transport').addEventListener('change', () => {
    store.set('transport', $('transport').value);
    connect();
  });
  $('subscribe').addEventListener('submit', (ev) => {
    ev.preventDefault();
    const input = $('channel');
    const names = input.value.split(/[\s,]+/).filter(Boolean);
    const bad = names.filter((c) => !P.CHANNEL.test(c));
    if (!names.length) return;
    if (bad.length) return notice('not a channel name: ' + bad.join(' ') + ' (1..128 of A-Z a-z 0-9 _ : . @ -)', true);
    const cursor = $('from-cursor').value.trim() || null;
    for (const c of names) subscribeChannel(c, cursor);
    input.value = '';
    $('from-cursor').value = '';
    if (!$('send-channel').value) $('send-channel').value = names[0];
    if (!$('hist-channel').value) $('hist-channel').value = names[0];
  });
  $('follow').addEventListener('change', () => setFollow($('follow').checked));
  $('jump').addEventListener('click', () => setFollow(true));
  $('clear').addEventListener('click', clearList);
  $('filter').addEventListener('input', () => setFilter($('filter').value));
  list.addEventListener('keydown', (ev) => {
    if (ev.key === 'ArrowDown') moveSelection(1);
    else if (ev.key === 'ArrowUp') moveSelection(-1);
    else if (ev.key === 'PageDown') moveSelection(Math.floor(list.clientHeight / ROW));
    else if (ev.key === 'PageUp') moveSelection(-Math.floor(list.clientHeight / ROW));
    else return;
    ev.preventDefault();
  });
  window.addEventListener('resize', () => {
    metricsFont = null;
    schedule();
    drawSpark();
  });

  function clearList() {
    log.clear();
    view = filter ? [] : null;
    selected = null;
    unseen = 0;
    showDetail(null);
    list.scrollTop = 0;
    schedule();
  }

  // Shortcuts, outside the fields.
  const help = $('help');
  $('help-open').addEventListener('click', () => help.showModal());
  $('help-close').addEventListener('click', () => help.close());
  document.addEventListener('keydown', (ev) => {
    const t = ev.target;
    const typing = t instanceof HTMLInputElement || t instanceof HTMLTextAreaElement || t instanceof HTMLSelectElement;
    if (ev.key === 'Escape' && typing) {
      t.blur();
      return;
    }
    if (typing || ev.ctrlKey || ev.metaKey || ev.altKey || help.open) return;
    const k = ev.key;
    if (k === '/') $('channel').focus();
    else if (k === 't') $('token').focus();
    else if (k === 'j') moveSelection(1);
    else if (k === 'k') moveSelection(-1);
    else if (k === 'G') {
      setFollow(true);
      const items = rows();
      if (items.length) select(items[items.length - 1]);
    } else if (k === 'f') setFollow(!follow);
    else if (k === 'c') clearList();
    else if (k === 'y') {
      if (selected && selected.cursor) copy(selected.cursor);
    } else if (k === '?') help.showModal();
    else if (k >= '1' && k <= '4') showTab(TABS[k - 1]);
    else return;
    ev.preventDefault();
  });

  // For scripts and tests: copies of what the page holds (every entry of
  // the list, not only the rows drawn) and the client's state.
  window.pushgateConsole = Object.freeze({
    messages: () =>
      log.items.map((e) => ({ kind: e.kind, channel: e.channel, id: e.id, event: e.event, data: e.data, cursor: e.cursor, via: e.via })),
    state: () => client && client.state,
  });

  // ---------------------------------------------------------------------
  // Start: what the last visit left, then the client, the schema and the
  // metrics.
  // ---------------------------------------------------------------------
  $('token').value = store.get('token', '');
  $('transport').value = store.get('transport', '');
  ed.value = store.get('query', '{\n  channel(name: "news") {\n    lastId\n    retained\n    cursor\n  }\n}\n');
  $('gql-vars').value = store.get('vars', '');
  showTab(TABS.indexOf(store.get('tab', 'send')) >= 0 ? store.get('tab', 'send') : 'send');
  connect();
  for (const ch of store.get('channels', [])) if (P.CHANNEL.test(ch)) subscribeChannel(ch, null);
  saveChannels();
  renderChips();
  loadSchema();
  scrape();
  schedule();
})();
