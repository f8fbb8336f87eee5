package main

import "bytes"

// A minimal JSON scanner for the hot path: subscribers read every delivery,
// and a 2-core machine shares its CPU between pushbench and the server, so
// reading a message must not cost a reflective decode and its allocations.
// It walks objects and arrays by spans of the input, without unescaping
// (the keys pushbench looks for need none) and without allocating.

// skipSpace returns the index of the first non-space byte at or after i.
func skipSpace(b []byte, i int) int {
	for i < len(b) {
		switch b[i] {
		case ' ', '\t', '\n', '\r':
			i++
		default:
			return i
		}
	}
	return i
}

// valueEnd returns the index just after the JSON value starting at b[i]
// (no leading space), or -1 when it is not a complete value.
func valueEnd(b []byte, i int) int {
	if i >= len(b) {
		return -1
	}
	switch b[i] {
	case '"':
		return stringEnd(b, i)
	case '{', '[':
		depth := 0
		for i < len(b) {
			j := bytes.IndexAny(b[i:], `"{}[]`)
			if j < 0 {
				return -1
			}
			i += j
			switch b[i] {
			case '"':
				i = stringEnd(b, i)
				if i < 0 {
					return -1
				}
				continue
			case '{', '[':
				depth++
			case '}', ']':
				depth--
				if depth == 0 {
					return i + 1
				}
			}
			i++
		}
		return -1
	default: // number, true, false, null
		j := i
		for j < len(b) {
			switch b[j] {
			case ',', '}', ']', ' ', '\t', '\n', '\r':
				return j
			}
			j++
		}
		return j
	}
}

// stringEnd returns the index just after the string starting at b[i] == '"',
// or -1.
func stringEnd(b []byte, i int) int {
	for i++; i < len(b); {
		j := bytes.IndexByte(b[i:], '"')
		if j < 0 {
			return -1
		}
		i += j
		// The quote ends the string unless an odd run of backslashes
		// escapes it.
		k := i
		for k > 0 && b[k-1] == '\\' {
			k--
		}
		if (i-k)%2 == 0 {
			return i + 1
		}
		i++
	}
	return -1
}

// eachMember calls fn with the raw key (between its quotes) and the raw
// value of each member of the object b, until fn returns false. It reports
// whether b is an object that could be walked to its end (or to where fn
// stopped).
func eachMember(b []byte, fn func(key, value []byte) bool) bool {
	i := skipSpace(b, 0)
	if i >= len(b) || b[i] != '{' {
		return false
	}
	i = skipSpace(b, i+1)
	if i < len(b) && b[i] == '}' {
		return true
	}
	for i < len(b) {
		if b[i] != '"' {
			return false
		}
		end := stringEnd(b, i)
		if end < 0 {
			return false
		}
		key := b[i+1 : end-1]
		i = skipSpace(b, end)
		if i >= len(b) || b[i] != ':' {
			return false
		}
		i = skipSpace(b, i+1)
		end = valueEnd(b, i)
		if end < 0 {
			return false
		}
		if !fn(key, b[i:end]) {
			return true
		}
		i = skipSpace(b, end)
		if i >= len(b) {
			return false
		}
		switch b[i] {
		case '}':
			return true
		case ',':
			i = skipSpace(b, i+1)
		default:
			return false
		}
	}
	return false
}

// eachElement calls fn with each raw element of the array b, until fn
// returns false; it reports whether b is an array that could be walked.
func eachElement(b []byte, fn func(value []byte) bool) bool {
	i := skipSpace(b, 0)
	if i >= len(b) || b[i] != '[' {
		return false
	}
	i = skipSpace(b, i+1)
	if i < len(b) && b[i] == ']' {
		return true
	}
	for i < len(b) {
		end := valueEnd(b, i)
		if end < 0 {
			return false
		}
		if !fn(b[i:end]) {
			return true
		}
		i = skipSpace(b, end)
		if i >= len(b) {
			return false
		}
		switch b[i] {
		case ']':
			return true
		case ',':
			i = skipSpace(b, i+1)
		default:
			return false
		}
	}
	return false
}

// parseInt reads a JSON integer (or a string holding one, as GraphQL IDs
// are); ok is false for anything else.
func parseInt(b []byte) (n int64, ok bool) {
	if len(b) >= 2 && b[0] == '"' && b[len(b)-1] == '"' {
		b = b[1 : len(b)-1]
	}
	neg := false
	if len(b) > 0 && b[0] == '-' {
		neg, b = true, b[1:]
	}
	if len(b) == 0 || len(b) > 19 {
		return 0, false
	}
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int64(c-'0')
	}
	if n < 0 { // overflowed 19 digits
		return 0, false
	}
	if neg {
		n = -n
	}
	return n, true
}

// unquote returns the contents of a JSON string without unescaping, or nil
// when b is not a string.
func unquote(b []byte) []byte {
	if len(b) >= 2 && b[0] == '"' && b[len(b)-1] == '"' {
		return b[1 : len(b)-1]
	}
	return nil
}

// delivery is what a subscriber reads from one message: pushgate's
// {"channel","id","event"?,"data","createdAt"} (also the GraphQL Message
// with more or fewer fields), whose data is the sender's benchmark payload
// {"r":run,"w":sender,"s":seq,"t":unixNanos,"p":filler} or a warm-up
// {"r":run,"warm":true}.
type delivery struct {
	channel []byte
	id      int64
	hasID   bool
	run     int64
	sender  int64
	seq     int64
	sent    int64 // unix ns
	warm    bool
	bench   bool // data had r, w, s and t, or r and warm
}

// parseDelivery reads a message object into d (reusing nothing it has to
// allocate); ok is false when b is not a message object.
func parseDelivery(b []byte, d *delivery) bool {
	*d = delivery{}
	var hasR, hasW, hasS, hasT bool
	ok := eachMember(b, func(key, value []byte) bool {
		switch string(key) {
		case "channel":
			d.channel = unquote(value)
		case "id":
			d.id, d.hasID = parseInt(value)
		case "data":
			eachMember(value, func(key, value []byte) bool {
				switch string(key) {
				case "r":
					d.run, hasR = parseInt(value)
				case "w":
					d.sender, hasW = parseInt(value)
				case "s":
					d.seq, hasS = parseInt(value)
				case "t":
					d.sent, hasT = parseInt(value)
				case "warm":
					d.warm = string(value) == "true"
				}
				return true
			})
		}
		return true
	})
	d.bench = hasR && (d.warm || hasW && hasS && hasT)
	return ok && d.channel != nil
}
