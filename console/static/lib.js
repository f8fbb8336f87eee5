// pushgate console: the parts without a page. Prometheus text parsing and
// rates, the GraphQL completion (which type the cursor is in, and its
// fields), formatting. console.js draws with them; console/test/lib.test.js
// runs them in Node. No DOM here.
(function (g) {
  'use strict';

  // ---------------------------------------------------------------------
  // Prometheus text exposition format (version 0.0.4): the lines of
  // GET /metrics, as {name: [{labels, value}]}. Comments, HELP and TYPE
  // lines are skipped; a line that does not parse is skipped too (the page
  // shows what it understood, it never throws on a scrape).
  // ---------------------------------------------------------------------
  const SAMPLE = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})?[ \t]+(\S+)(?:[ \t]+-?\d+)?[ \t]*$/;
  const LABEL = /\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*=\s*"((?:[^"\\]|\\.)*)"\s*,?/y;

  function unescapeLabel(s) {
    return s.replace(/\\(.)/g, (_, c) => (c === 'n' ? '\n' : c));
  }

  function parseValue(s) {
    if (s === '+Inf' || s === 'Inf') return Infinity;
    if (s === '-Inf') return -Infinity;
    if (s === 'NaN') return NaN;
    const v = Number(s);
    return s !== '' && !Number.isNaN(v) ? v : undefined;
  }

  function parseMetrics(text) {
    const out = Object.create(null);
    for (const raw of String(text).split('\n')) {
      const line = raw.trim();
      if (!line || line[0] === '#') continue;
      const m = SAMPLE.exec(line);
      if (!m) continue;
      const value = parseValue(m[4]);
      if (value === undefined) continue;
      const labels = {};
      if (m[3]) {
        LABEL.lastIndex = 0;
        let ok = true;
        while (LABEL.lastIndex < m[3].length) {
          const l = LABEL.exec(m[3]);
          if (!l) {
            ok = m[3].slice(LABEL.lastIndex).trim() === '';
            break;
          }
          labels[l[1]] = unescapeLabel(l[2]);
        }
        if (!ok) continue;
      }
      (out[m[1]] || (out[m[1]] = [])).push({ labels, value });
    }
    return out;
  }

  // The transports of pushgate_connections, in the order the page shows them.
  const TRANSPORTS = ['websocket', 'sse', 'poll', 'graphql_sse'];

  function sum(samples, filter) {
    let s = 0;
    for (const x of samples || []) if (!filter || filter(x.labels)) s += x.value;
    return s;
  }

  function byLabel(samples, label) {
    const out = {};
    for (const t of TRANSPORTS) out[t] = 0;
    for (const x of samples || []) out[x.labels[label]] = (out[x.labels[label]] || 0) + x.value;
    return out;
  }

  // What the page shows of a scrape. sent and delivered are counters
  // (rates come from Rate); start is the process's start (Unix seconds) or
  // null, and tells a restart from a counter that went down.
  function summarize(metrics) {
    const start = metrics.process_start_time_seconds;
    return {
      connections: byLabel(metrics.pushgate_connections, 'transport'),
      subscriptions: byLabel(metrics.pushgate_subscriptions, 'transport'),
      sent: sum(metrics.pushgate_messages_sent_total),
      delivered: sum(metrics.pushgate_messages_delivered_total),
      dropped: sum(metrics.pushgate_dropped_total),
      start: start && start.length ? start[0].value : null,
      pushgate: !!metrics.pushgate_connections,
    };
  }

  // Rate is a counter's rate per second between two scrapes. A counter that
  // went down, or a new process start, is a restart: the rate is then the
  // new value over the time since the previous scrape (what was counted since).
  function Rate() {
    this.t = null;
    this.v = null;
    this.start = null;
  }
  Rate.prototype.push = function (t, v, start) {
    let r = null;
    if (this.t !== null && t > this.t) {
      const restarted = v < this.v || (start != null && this.start != null && start !== this.start);
      r = (restarted ? v : v - this.v) / ((t - this.t) / 1000);
    }
    this.t = t;
    this.v = v;
    this.start = start;
    return r;
  };

  // ---------------------------------------------------------------------
  // GraphQL completion. A schema from introspection (INTROSPECTION), and
  // complete(schema, text, pos): the names that fit where the caret is (a
  // field of the selection set it is in, an argument of the field whose
  // parentheses it is in, a type after `on`, an operation keyword at the
  // top), filtered by the name being typed. It reads the text before the
  // caret with a small tokenizer that knows strings, block strings,
  // comments, variables, aliases, fragments, inline fragments, directives
  // and nested argument values, so a brace inside a string or an argument
  // object is not taken for a selection set.
  // ---------------------------------------------------------------------
  const TYPE_REF = 'kind name ofType{kind name ofType{kind name ofType{kind name ofType{kind name}}}}';
  const INTROSPECTION =
    'query ConsoleSchema{__schema{queryType{name} mutationType{name} subscriptionType{name} ' +
    'types{kind name description fields(includeDeprecated:true){name description isDeprecated ' +
    'args{name description type{' + TYPE_REF + '}} type{' + TYPE_REF + '}} ' +
    'inputFields{name description type{' + TYPE_REF + '}} enumValues{name} possibleTypes{name}}}}';

  function buildSchema(data) {
    const s = data && data.__schema;
    if (!s || !Array.isArray(s.types)) throw new Error('not an introspection result');
    const types = Object.create(null);
    for (const t of s.types) types[t.name] = t;
    return {
      types,
      query: s.queryType && s.queryType.name,
      mutation: s.mutationType && s.mutationType.name,
      subscription: s.subscriptionType && s.subscriptionType.name,
    };
  }

  function namedType(ref) {
    while (ref && ref.ofType && (ref.kind === 'NON_NULL' || ref.kind === 'LIST')) ref = ref.ofType;
    return ref ? ref.name : null;
  }

  function typeString(ref) {
    if (!ref) return '';
    if (ref.kind === 'NON_NULL') return typeString(ref.ofType) + '!';
    if (ref.kind === 'LIST') return '[' + typeString(ref.ofType) + ']';
    return ref.name;
  }

  function fieldOf(schema, typeName, name) {
    const t = typeName && schema.types[typeName];
    if (name === '__typename') return { name, type: { kind: 'NON_NULL', ofType: { kind: 'SCALAR', name: 'String' } } };
    if (t && typeName === schema.query && (name === '__schema' || name === '__type')) {
      return { name, args: [], type: { kind: 'OBJECT', name: name === '__schema' ? '__Schema' : '__Type' } };
    }
    return (t && t.fields && t.fields.find((f) => f.name === name)) || null;
  }

  const NAME = /[_A-Za-z][_0-9A-Za-z]*/y;
  const NUMBER = /-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?/y;

  // The tokens of src, and 'string' or 'comment' when src ends inside one.
  function tokenize(src) {
    const toks = [];
    let i = 0;
    const n = src.length;
    while (i < n) {
      const c = src[i];
      if (c === '#') {
        const e = src.indexOf('\n', i);
        if (e < 0) return { toks, open: 'comment' };
        i = e + 1;
      } else if (c === ' ' || c === '\t' || c === '\n' || c === '\r' || c === ',' || c === '\ufeff') {
        i++;
      } else if (c === '"') {
        if (src.startsWith('"""', i)) {
          let j = i + 3;
          for (;;) {
            const e = src.indexOf('"""', j);
            if (e < 0) return { toks, open: 'string' };
            if (src[e - 1] === '\\') {
              j = e + 3;
              continue;
            }
            i = e + 3;
            break;
          }
        } else {
          let j = i + 1;
          while (j < n && src[j] !== '"' && src[j] !== '\n') j += src[j] === '\\' ? 2 : 1;
          if (j >= n) return { toks, open: 'string' };
          i = j + 1; // an unterminated string ends at its line, as the parser's error would
        }
        toks.push({ t: 'value' });
      } else if (src.startsWith('...', i)) {
        toks.push({ t: '...' });
        i += 3;
      } else if (c === '$') {
        NAME.lastIndex = i + 1;
        const m = NAME.exec(src);
        toks.push({ t: 'value' });
        i = m ? NAME.lastIndex : i + 1;
      } else if ('{}()[]:=!@|&'.indexOf(c) >= 0) {
        toks.push({ t: c });
        i++;
      } else {
        NAME.lastIndex = i;
        let m = NAME.exec(src);
        if (m) {
          toks.push({ t: 'name', v: m[0] });
          i = NAME.lastIndex;
          continue;
        }
        NUMBER.lastIndex = i;
        m = NUMBER.exec(src);
        if (m) {
          toks.push({ t: 'value' });
          i = NUMBER.lastIndex;
          continue;
        }
        i++;
      }
    }
    return { toks, open: null };
  }

  // Where the end of src is: {where: 'top'|'selection'|'args'|'on'|'spread'|'none', type, field}.
  function locate(schema, src) {
    const { toks, open } = tokenize(src);
    if (open) return { where: 'none' };
    const stack = []; // the selection sets the end is in: their types
    let op = null; // the operation keyword of the current definition
    let pending = null; // a type condition for the next selection set
    let field = null; // the field just named in the current selection set
    let expectType = false; // after `on`
    let spread = false; // after `...`
    let directive = 0; // 1 after `@`, 2 after its name
    let args = null; // inside parentheses: {owner, depth, expect}
    let vars = 0; // parentheses of variable definitions
    for (const tok of toks) {
      if (directive === 2 && tok.t !== '(') directive = 0;
      if (args) {
        if (args.depth > 0) {
          if (tok.t === '{' || tok.t === '[') args.depth++;
          else if ((tok.t === '}' || tok.t === ']') && --args.depth === 0) args.expect = 'name';
        } else if (tok.t === ')') {
          args = null;
        } else if (tok.t === ':') {
          args.expect = 'value';
        } else if (tok.t === '{' || tok.t === '[') {
          args.depth = 1;
        } else if (tok.t === 'name' || tok.t === 'value') {
          args.expect = args.expect === 'name' ? 'colon' : 'name';
        }
        continue;
      }
      if (!stack.length) {
        if (vars > 0) {
          if (tok.t === '(') vars++;
          else if (tok.t === ')') vars--;
          continue;
        }
        if (tok.t === 'name') {
          if (expectType) {
            pending = tok.v;
            expectType = false;
          } else if (tok.v === 'on') {
            expectType = true;
          } else if (!op && (tok.v === 'query' || tok.v === 'mutation' || tok.v === 'subscription' || tok.v === 'fragment')) {
            op = tok.v;
          }
        } else if (tok.t === '(') {
          vars = 1;
        } else if (tok.t === '{') {
          const root = op === 'mutation' ? schema.mutation : op === 'subscription' ? schema.subscription : schema.query;
          stack.push(op === 'fragment' ? pending : root);
          pending = null;
          field = null;
        }
        continue;
      }
      switch (tok.t) {
        case '{':
          stack.push(pending || (field && field.def ? namedType(field.def.type) : null));
          pending = field = null;
          spread = expectType = false;
          break;
        case '}':
          stack.pop();
          field = null;
          if (!stack.length) op = null;
          break;
        case '(':
          args = { owner: directive ? null : field && field.def, depth: 0, expect: 'name' };
          directive = 0;
          break;
        case '...':
          spread = true;
          field = null;
          break;
        case '@':
          directive = 1;
          break;
        case ':':
          field = null; // an alias: the field's name comes next
          break;
        case 'name':
          if (directive === 1) {
            directive = 2;
          } else if (spread) {
            spread = false;
            if (tok.v === 'on') expectType = true;
          } else if (expectType) {
            pending = tok.v;
            expectType = false;
          } else {
            field = { name: tok.v, def: fieldOf(schema, stack[stack.length - 1], tok.v) };
          }
          break;
        default:
      }
    }
    if (args) {
      return args.depth === 0 && args.expect === 'name' && args.owner ? { where: 'args', field: args.owner } : { where: 'none' };
    }
    if (!stack.length) {
      if (vars) return { where: 'none' };
      return expectType ? { where: 'on', type: null } : op ? { where: 'none' } : { where: 'top' };
    }
    const type = stack[stack.length - 1];
    if (expectType) return { where: 'on', type };
    if (spread) return { where: 'spread', type };
    if (directive) return { where: 'none' };
    return { where: 'selection', type };
  }

  function item(label, detail, doc, insert) {
    return { label, detail: detail || '', doc: doc || '', insert: insert || label };
  }

  // The completions at pos in text: {from, to, items}, from..to being the
  // name under the caret that an item replaces; null where nothing fits.
  function complete(schema, text, pos) {
    if (!schema) return null;
    let from = pos;
    while (from > 0 && /[_0-9A-Za-z]/.test(text[from - 1])) from--;
    if (from < pos && /[0-9]/.test(text[from])) return null; // a number
    let to = pos;
    while (to < text.length && /[_0-9A-Za-z]/.test(text[to])) to++;
    const prefix = text.slice(from, pos);
    const at = locate(schema, text.slice(0, from));
    let items = [];
    const t = at.type && schema.types[at.type];
    switch (at.where) {
      case 'top':
        items = ['query', 'mutation', 'subscription', 'fragment']
          .filter((k) => k === 'query' || k === 'fragment' || schema[k])
          .map((k) => item(k, 'keyword'));
        break;
      case 'selection':
        if (!t) return null;
        if (t.fields) {
          items = t.fields.map((f) => item(f.name, typeString(f.type) + (f.isDeprecated ? ' (deprecated)' : ''), f.description));
          if (at.type === schema.query) {
            items.push(item('__schema', '__Schema!', 'The schema, by introspection.'), item('__type', '__Type', 'A type, by name.'));
          }
        }
        if (t.possibleTypes) items = items.concat(t.possibleTypes.map((p) => item('... on ' + p.name, 'fragment', '', '... on ' + p.name + ' ')));
        items.push(item('__typename', 'String!', "The object's type name."));
        break;
      case 'args':
        items = (at.field.args || []).map((a) => item(a.name, typeString(a.type), a.description, a.name + ': '));
        break;
      case 'spread':
        items = [item('on', 'type condition', '', 'on ')];
        break;
      case 'on': {
        const names = t && t.possibleTypes ? t.possibleTypes.map((p) => p.name) : t ? [t.name] : [];
        const all = names.length ? names : Object.keys(schema.types).filter((n) => /OBJECT|INTERFACE|UNION/.test(schema.types[n].kind) && n.slice(0, 2) !== '__');
        items = all.map((n) => item(n, 'type'));
        break;
      }
      default:
        return null;
    }
    // Names starting with what is typed first, then (from two characters
    // typed) names containing it; a name with __ last.
    const p = prefix.toLowerCase();
    const rank = (it) => {
      const l = it.label.toLowerCase();
      return l.startsWith(p) ? 0 : p.length > 1 && l.indexOf(p) >= 0 ? 1 : 2;
    };
    items = items
      .filter((it) => rank(it) < 2)
      .sort((a, b) => rank(a) - rank(b) || (a.label[0] === '_') - (b.label[0] === '_') || (a.label < b.label ? -1 : a.label > b.label ? 1 : 0));
    // A name typed out in full needs no list.
    if (items.length === 1 && items[0].label === prefix) return null;
    return items.length ? { from, to, items } : null;
  }

  // ---------------------------------------------------------------------
  // Formatting.
  // ---------------------------------------------------------------------
  const pad = (n, w) => String(n).padStart(w, '0');

  function clock(d) {
    d = d instanceof Date ? d : new Date(d);
    if (Number.isNaN(d.getTime())) return '';
    return pad(d.getHours(), 2) + ':' + pad(d.getMinutes(), 2) + ':' + pad(d.getSeconds(), 2) + '.' + pad(d.getMilliseconds(), 3);
  }

  // A one-line preview of a JSON value, at most max characters.
  function preview(v, max) {
    let s;
    try {
      s = JSON.stringify(v);
    } catch (e) {
      s = String(v);
    }
    if (s === undefined) s = 'undefined';
    return s.length > max ? s.slice(0, max - 1) + '…' : s;
  }

  function shortCursor(c) {
    if (!c) return '';
    return c.length <= 16 ? c : c.slice(0, 6) + '…' + c.slice(-8);
  }

  function rate(v) {
    if (v == null || !Number.isFinite(v)) return '–';
    if (v >= 100) return Math.round(v).toLocaleString('en');
    if (v >= 10) return v.toFixed(1);
    return v.toFixed(2);
  }

  // Channel names the server accepts ([A-Za-z0-9_:.@-]{1,128}).
  const CHANNEL = /^[A-Za-z0-9_:.@-]{1,128}$/;

  // ---------------------------------------------------------------------
  // A bounded log: the newest cap entries. push is O(1) amortized; the
  // oldest are dropped in chunks, so a long run never shifts one element at
  // a time.
  // ---------------------------------------------------------------------
  function Log(cap) {
    this.cap = cap;
    this.items = [];
    this.dropped = 0; // entries dropped since the start
  }
  Log.prototype.push = function (x) {
    this.items.push(x);
    if (this.items.length > this.cap + (this.cap >> 4)) {
      const n = this.items.length - this.cap;
      this.items.splice(0, n);
      this.dropped += n;
      return n;
    }
    return 0;
  };
  Log.prototype.clear = function () {
    this.dropped += this.items.length;
    this.items = [];
  };

  g.PushgateConsoleLib = {
    parseMetrics,
    summarize,
    Rate,
    TRANSPORTS,
    INTROSPECTION,
    buildSchema,
    namedType,
    typeString,
    tokenize,
    locate,
    complete,
    clock,
    preview,
    shortCursor,
    rate,
    CHANNEL,
    Log,
  };
})(typeof window !== 'undefined' ? window : globalThis);
