// Package jsonlex has the tokens that pushgate's JSON scanners share: the
// server's send body scanner and the store's check of message data.
package jsonlex

// Scanner reads JSON from B at I.
type Scanner struct {
	B []byte
	I int
}

// Space skips whitespace.
func (s *Scanner) Space() {
	for s.I < len(s.B) {
		switch s.B[s.I] {
		case ' ', '\t', '\n', '\r':
			s.I++
		default:
			return
		}
	}
}

// Literal reads word (true, false, null) if it is next.
func (s *Scanner) Literal(word string) bool {
	if len(s.B)-s.I < len(word) || string(s.B[s.I:s.I+len(word)]) != word {
		return false
	}
	s.I += len(word)
	return true
}

// Number reads a number if one is next:
// -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?. It does not look past
// it: the callers check what follows ("12a" fails there).
func (s *Scanner) Number() bool {
	i := s.I
	if i < len(s.B) && s.B[i] == '-' {
		i++
	}
	switch {
	case i < len(s.B) && s.B[i] == '0':
		i++
	default:
		if i = s.digits(i); i < 0 {
			return false
		}
	}
	if i < len(s.B) && s.B[i] == '.' {
		if i = s.digits(i + 1); i < 0 {
			return false
		}
	}
	if i < len(s.B) && (s.B[i] == 'e' || s.B[i] == 'E') {
		i++
		if i < len(s.B) && (s.B[i] == '+' || s.B[i] == '-') {
			i++
		}
		if i = s.digits(i); i < 0 {
			return false
		}
	}
	s.I = i
	return true
}

// digits returns the index after the digits at i, -1 when there are none.
func (s *Scanner) digits(i int) int {
	j := i
	for j < len(s.B) && s.B[j] >= '0' && s.B[j] <= '9' {
		j++
	}
	if j == i {
		return -1
	}
	return j
}
