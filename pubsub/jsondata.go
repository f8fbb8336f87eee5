package pubsub

import (
	"bytes"
	"encoding/json"

	"github.com/pushgate/pushgate/internal/jsonlex"
)

// Message data is stored as compact JSON, in memory the store owns. Data
// that is compact already, as nearly all that is sent is (the server
// canonicalizes what it decodes), is only checked and copied: 207 ns for
// 120 bytes, against 540 ns through json.Compact, which builds the copy
// byte by byte through its scanner (BenchmarkCompactData). Data with
// whitespace between tokens is compacted by json.Compact.

// compactData returns data as compact JSON in a new slice, or
// ErrInvalidData when data is not exactly one JSON value (as json.Valid
// decides: a string may hold any bytes but control characters).
func compactData(data []byte) ([]byte, error) {
	switch compact, ok := scanData(data); {
	case !ok:
		return nil, ErrInvalidData
	case compact:
		return bytes.Clone(data), nil
	}
	var buf bytes.Buffer
	buf.Grow(len(data))
	if err := json.Compact(&buf, data); err != nil {
		return nil, ErrInvalidData
	}
	return buf.Bytes(), nil
}

// maxDataDepth is how deeply arrays and objects may nest, as in
// encoding/json.
const maxDataDepth = 10000

// scanData reports whether data is one JSON value (ok) and whether it has
// no whitespace outside strings (compact).
func scanData(data []byte) (compact, ok bool) {
	s := dataScan{Scanner: jsonlex.Scanner{B: data}}
	s.Space()
	lead := s.I
	if !s.value(0) {
		return false, false
	}
	end := s.I
	s.Space()
	if s.I != len(s.B) {
		return false, false
	}
	return lead == 0 && end == len(s.B) && !s.spaced, true
}

type dataScan struct {
	jsonlex.Scanner
	spaced bool // whitespace was skipped between two tokens
}

// inner skips whitespace inside a value (between its tokens).
func (s *dataScan) inner() {
	start := s.I
	s.Space()
	if s.I > start {
		s.spaced = true
	}
}

func (s *dataScan) value(depth int) bool {
	if s.I >= len(s.B) {
		return false
	}
	switch c := s.B[s.I]; {
	case c == '{':
		return s.container('}', depth, func() bool {
			if s.I >= len(s.B) || s.B[s.I] != '"' || !s.str() {
				return false
			}
			s.inner()
			if s.I >= len(s.B) || s.B[s.I] != ':' {
				return false
			}
			s.I++
			s.inner()
			return s.value(depth + 1)
		})
	case c == '[':
		return s.container(']', depth, func() bool { return s.value(depth + 1) })
	case c == '"':
		return s.str()
	case c == '-' || c >= '0' && c <= '9':
		return s.Number()
	case c == 't':
		return s.Literal("true")
	case c == 'f':
		return s.Literal("false")
	case c == 'n':
		return s.Literal("null")
	}
	return false
}

// container reads an object or an array from its opening bracket: members
// separated by commas, up to close.
func (s *dataScan) container(close byte, depth int, member func() bool) bool {
	if depth >= maxDataDepth {
		return false
	}
	s.I++
	s.inner()
	if s.I < len(s.B) && s.B[s.I] == close {
		s.I++
		return true
	}
	for {
		if !member() {
			return false
		}
		s.inner()
		if s.I >= len(s.B) {
			return false
		}
		switch s.B[s.I] {
		case ',':
			s.I++
			s.inner()
		case close:
			s.I++
			return true
		default:
			return false
		}
	}
}

// str reads a string from its opening quote.
func (s *dataScan) str() bool {
	s.I++
	for s.I < len(s.B) {
		c := s.B[s.I]
		switch {
		case c == '"':
			s.I++
			return true
		case c == '\\':
			if s.I+1 >= len(s.B) {
				return false
			}
			switch s.B[s.I+1] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				s.I += 2
			case 'u':
				if len(s.B)-s.I < 6 {
					return false
				}
				for _, h := range s.B[s.I+2 : s.I+6] {
					if !isHex(h) {
						return false
					}
				}
				s.I += 6
			default:
				return false
			}
		case c < 0x20:
			return false
		default:
			s.I++
		}
	}
	return false
}

func isHex(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F'
}
