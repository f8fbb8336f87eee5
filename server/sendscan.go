package server

import (
	"bytes"
	"encoding/json"
	"slices"
	"unicode/utf8"

	"github.com/pushgate/pushgate/graph/model"
	"github.com/pushgate/pushgate/internal/jsonlex"
)

// A single-pass reader of a send's request body, for the plain case only:
// encoding/json's reflection, maps and interface values were a quarter of a
// send's CPU. It reads what the fast path needs (the query, the operation
// name, the one variable's input) and writes data in the form gqlgen's path
// stores (model.UnmarshalJSON: decoded, then encoded again with object keys
// sorted and no whitespace). Whatever it is not sure of (an escape in a key
// or in data, a duplicate or unknown key, a value of another type, deep
// nesting, malformed JSON) it leaves to the encoding/json reading of the
// same body (sendBody, sendInputOf), which then decides, so a body never
// reads differently for having been scanned. sendscan_test.go holds the two
// readings to the same result.

// scanSend reads a body of the plain shape {"query": ..., "operationName":
// ..., "variables": {"<name>": {<SendInput>}}}; ok false: not sure.
func scanSend(raw []byte) (query, operation, variable string, input model.SendInput, ok bool) {
	s := jscan{jsonlex.Scanner{B: raw}}
	var haveQuery, haveOp, haveVars bool
	if !s.object(func(key []byte) bool {
		switch string(key) {
		case "query":
			if haveQuery {
				return false
			}
			haveQuery = true
			var ok bool
			query, ok = s.stringValue()
			return ok
		case "operationName":
			if haveOp {
				return false
			}
			haveOp = true
			if s.literal("null") {
				return true
			}
			var ok bool
			operation, ok = s.stringValue()
			return ok
		case "variables":
			if haveVars {
				return false
			}
			haveVars = true
			n := 0
			return s.object(func(name []byte) bool {
				n++
				variable = string(name)
				var ok bool
				input, ok = s.sendInput()
				return ok && n == 1
			}) && n == 1
		}
		return false // extensions, and anything else
	}) || !s.end() || !haveQuery || !haveVars {
		return "", "", "", model.SendInput{}, false
	}
	return query, operation, variable, input, true
}

// sendInput reads a SendInput object of the plain case (sendInputOf).
func (s *jscan) sendInput() (model.SendInput, bool) {
	var in model.SendInput
	var seen [4]bool
	if !s.object(func(key []byte) bool {
		field := -1
		switch string(key) {
		case "channel":
			field = 0
		case "data":
			field = 1
		case "event":
			field = 2
		case "idempotencyKey":
			field = 3
		}
		if field < 0 || seen[field] {
			return false
		}
		seen[field] = true
		var ok bool
		switch field {
		case 0:
			in.Channel, ok = s.stringValue()
			return ok
		case 1:
			if s.peek() == 'n' { // null: gqlgen's path answers
				return false
			}
			data, ok := s.canon(nil, 0)
			in.Data = json.RawMessage(data)
			return ok
		}
		if s.literal("null") {
			return true
		}
		v, ok := s.stringValue()
		if field == 2 {
			in.Event = &v
		} else {
			in.IdempotencyKey = &v
		}
		return ok
	}) || !seen[0] || !seen[1] {
		return model.SendInput{}, false
	}
	return in, true
}

// jscan reads JSON from b at i. Its callers check what follows each value
// (a comma, a closing bracket, the end), so a literal or number that runs
// on ("nullx", "12a") fails there.
type jscan struct{ jsonlex.Scanner }

func (s *jscan) peek() byte {
	s.Space()
	if s.I < len(s.B) {
		return s.B[s.I]
	}
	return 0
}

// end: nothing but space follows.
func (s *jscan) end() bool {
	s.Space()
	return s.I == len(s.B)
}

// object reads an object, calling member at each key with the scanner on
// its value, which member reads.
func (s *jscan) object(member func(key []byte) bool) bool {
	if s.peek() != '{' {
		return false
	}
	s.I++
	if s.peek() == '}' {
		s.I++
		return true
	}
	for {
		key, ok := s.plainString()
		if !ok || s.peek() != ':' {
			return false
		}
		s.I++
		if !member(key) {
			return false
		}
		switch s.peek() {
		case ',':
			s.I++
		case '}':
			s.I++
			return true
		default:
			return false
		}
	}
}

// literal reads word if it is next.
func (s *jscan) literal(word string) bool {
	s.Space()
	return s.Literal(word)
}

// rawString reads a string, returning what is between its quotes and
// whether it has escapes (not checked).
func (s *jscan) rawString() (body []byte, escaped bool, ok bool) {
	if s.peek() != '"' {
		return nil, false, false
	}
	for j := s.I + 1; j < len(s.B); j++ {
		switch c := s.B[j]; {
		case c == '"':
			body = s.B[s.I+1 : j]
			s.I = j + 1
			return body, escaped, true
		case c == '\\':
			escaped = true
			j++
		case c < 0x20:
			return nil, false, false
		}
	}
	return nil, false, false
}

// plainString reads a string that reads and encodes as it is written: no
// escapes, valid UTF-8, no U+2028 or U+2029 (which encoding/json escapes).
func (s *jscan) plainString() ([]byte, bool) {
	body, escaped, ok := s.rawString()
	if !ok || escaped || !utf8.Valid(body) || bytes.Contains(body, lineSep) || bytes.Contains(body, paraSep) {
		return nil, false
	}
	return body, true
}

var lineSep, paraSep = []byte("\u2028"), []byte("\u2029")

// stringValue reads a string value as encoding/json decodes it.
func (s *jscan) stringValue() (string, bool) {
	start := s.I
	body, escaped, ok := s.rawString()
	switch {
	case !ok:
		return "", false
	case !escaped && utf8.Valid(body):
		return string(body), true
	}
	var v string
	if json.Unmarshal(s.B[start:s.I], &v) != nil {
		return "", false
	}
	return v, true
}

// maxCanonDepth bounds the nesting scanned; deeper data takes the
// encoding/json path.
const maxCanonDepth = 32

// canon appends the value at i as model.UnmarshalJSON writes it: without
// space, object keys sorted (and unique), strings and numbers as written
// (plain strings only).
func (s *jscan) canon(out []byte, depth int) ([]byte, bool) {
	if depth > maxCanonDepth {
		return nil, false
	}
	switch c := s.peek(); {
	case c == '{':
		type member struct{ key, value []byte }
		var buf [8]member
		members := buf[:0]
		if !s.object(func(key []byte) bool {
			var v []byte
			ok := false
			if c := s.peek(); c == '{' || c == '[' {
				v, ok = s.canon(nil, depth+1)
			} else { // a scalar is written as it was read
				start := s.I
				if ok = s.scalar(); ok {
					v = s.B[start:s.I]
				}
			}
			members = append(members, member{key, v})
			return ok
		}) {
			return nil, false
		}
		slices.SortFunc(members, func(a, b member) int { return bytes.Compare(a.key, b.key) })
		size := 2 // the object's size (a byte over, for no last comma): out grows once
		for _, m := range members {
			size += len(m.key) + 4 + len(m.value) // "key":value,
		}
		out = slices.Grow(out, size)
		out = append(out, '{')
		for i, m := range members {
			if i > 0 {
				if bytes.Equal(m.key, members[i-1].key) {
					return nil, false // a duplicate: the last one wins there
				}
				out = append(out, ',')
			}
			out = append(out, '"')
			out = append(out, m.key...)
			out = append(out, '"', ':')
			out = append(out, m.value...)
		}
		return append(out, '}'), true
	case c == '[':
		s.I++
		out = append(out, '[')
		if s.peek() == ']' {
			s.I++
			return append(out, ']'), true
		}
		for {
			var ok bool
			if out, ok = s.canon(out, depth+1); !ok {
				return nil, false
			}
			switch s.peek() {
			case ',':
				s.I++
				out = append(out, ',')
			case ']':
				s.I++
				return append(out, ']'), true
			default:
				return nil, false
			}
		}
	}
	start := s.I
	if !s.scalar() {
		return nil, false
	}
	return append(out, s.B[start:s.I]...), true
}

// scalar reads a plain string, a number or a literal.
func (s *jscan) scalar() bool {
	switch c := s.peek(); {
	case c == '"':
		_, ok := s.plainString()
		return ok
	case c == '-' || c >= '0' && c <= '9':
		return s.Number()
	}
	return s.literal("true") || s.literal("false") || s.literal("null")
}
