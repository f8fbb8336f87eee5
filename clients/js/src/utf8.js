// A streaming UTF-8 decoder, for runtimes without TextDecoder (mini-programs).
//
// Contract: decoder(bytes, true) returns the text of every complete character
// in bytes and keeps an unfinished sequence for the next call, so a chunk may
// end anywhere, even inside a character; decoder(bytes, false) (or with no
// bytes) also ends the stream. Invalid input becomes U+FFFD exactly as the
// WHATWG Encoding Standard's decoder (TextDecoder) does it. Output is built
// from bounded runs of code units, never by spreading a large array into one
// call, so chunks of any size are safe.

const RUN = 4096; // code units per String.fromCharCode call

export function utf8Decoder() {
  let cp = 0; // the code point being assembled
  let need = 0; // continuation bytes still needed
  let lo = 0x80; // bounds of the next continuation byte
  let hi = 0xbf;

  return (bytes, more) => {
    let out = '';
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
        if (b < 0x80) put(b);
        else if (b >= 0xc2 && b <= 0xdf) {
          need = 1;
          cp = b & 0x1f;
        } else if (b >= 0xe0 && b <= 0xef) {
          if (b === 0xe0) lo = 0xa0;
          if (b === 0xed) hi = 0x9f;
          need = 2;
          cp = b & 0xf;
        } else if (b >= 0xf0 && b <= 0xf4) {
          if (b === 0xf0) lo = 0x90;
          if (b === 0xf4) hi = 0x8f;
          need = 3;
          cp = b & 7;
        } else put(0xfffd);
        continue;
      }
      if (b < lo || b > hi) {
        // The sequence is cut short: one U+FFFD for it, and b starts afresh.
        cp = need = 0;
        lo = 0x80;
        hi = 0xbf;
        put(0xfffd);
        i--;
        continue;
      }
      lo = 0x80;
      hi = 0xbf;
      cp = (cp << 6) | (b & 0x3f);
      if (--need === 0) {
        if (cp > 0xffff) {
          cp -= 0x10000;
          put(0xd800 + (cp >> 10));
          put(0xdc00 + (cp & 0x3ff));
        } else put(cp);
        cp = 0;
      }
    }
    if (!more && need) {
      cp = need = 0;
      lo = 0x80;
      hi = 0xbf;
      put(0xfffd);
    }
    return units.length ? out + String.fromCharCode.apply(null, units) : out;
  };
}
