// An incremental parser of text/event-stream, as the HTML standard's
// EventSource parses it, for runtimes without EventSource.
//
// Contract: feed it the decoded text in pieces cut anywhere (a line ending
// "\r\n" may be cut between its two characters); onEvent gets one
// {id, event, data} per block that ends with a blank line and held a field.
// id is the last event id seen so far in the stream (as EventSource's
// lastEventId); data is null for a block without a data line (pushgate's
// opening block names the start position that way), else its data lines
// joined by "\n". Comment lines (": heartbeat") dispatch nothing. A leading
// byte order mark is skipped.

export function sseParser(onEvent) {
  let buf = '';
  let first = true; // the BOM may only open the stream
  let skipLF = false; // the last piece ended with "\r"
  let id = '';
  let event = '';
  let data = null;
  let fields = false;

  const line = (s) => {
    if (s === '') {
      if (fields) {
        const ev = { id, event: event || 'message', data };
        event = '';
        data = null;
        fields = false;
        onEvent(ev);
      }
      return;
    }
    if (s.charCodeAt(0) === 58) return; // ':' comment
    const c = s.indexOf(':');
    const name = c < 0 ? s : s.slice(0, c);
    let value = c < 0 ? '' : s.slice(c + 1);
    if (value.charCodeAt(0) === 32) value = value.slice(1);
    if (name === 'data') data = data === null ? value : data + '\n' + value;
    else if (name === 'event') event = value;
    else if (name === 'id') {
      if (value.indexOf('\0') < 0) id = value;
    } else if (name !== 'retry') return; // unknown fields are ignored
    fields = true;
  };

  return (text) => {
    if (skipLF && text) {
      skipLF = false;
      if (text.charCodeAt(0) === 10) text = text.slice(1);
    }
    if (first && text) {
      first = false;
      if (text.charCodeAt(0) === 0xfeff) text = text.slice(1);
    }
    // buf never holds a line ending: only the new text is scanned, so a
    // long event cut in many pieces costs time in proportion to its size.
    let start = 0;
    for (let i = 0; i < text.length; i++) {
      const ch = text.charCodeAt(i);
      if (ch !== 10 && ch !== 13) continue;
      line(buf + text.slice(start, i));
      buf = '';
      if (ch === 13) {
        if (i + 1 === text.length) skipLF = true;
        else if (text.charCodeAt(i + 1) === 10) i++;
      }
      start = i + 1;
    }
    buf += text.slice(start);
  };
}
