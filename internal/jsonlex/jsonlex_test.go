package jsonlex

import "testing"

// TestNumber: the numbers of RFC 8259 and where each stops; what is not
// one leaves the scanner where it was.
func TestNumber(t *testing.T) {
	for _, c := range []struct {
		in   string
		ok   bool
		stop int
	}{
		{"0", true, 1}, {"-0", true, 2}, {"12", true, 2}, {"1.5", true, 3}, {"-1.5e+10", true, 8},
		{"2E-3", true, 4}, {"0x1", true, 1}, {"01", true, 1}, {"12a", true, 2}, {"1,", true, 1},
		{"", false, 0}, {"-", false, 0}, {"1.", false, 0}, {".5", false, 0}, {"1e", false, 0},
		{"1e+", false, 0}, {"+1", false, 0}, {"-a", false, 0},
	} {
		s := Scanner{B: []byte(c.in)}
		if ok := s.Number(); ok != c.ok || s.I != c.stop {
			t.Errorf("%q: %v at %d, want %v at %d", c.in, ok, s.I, c.ok, c.stop)
		}
	}
}

// TestLiteralAndSpace: a literal is read only whole, after any space.
func TestLiteralAndSpace(t *testing.T) {
	s := Scanner{B: []byte(" \t\r\ntrue nul")}
	s.Space()
	if s.I != 4 || !s.Literal("true") || s.I != 8 {
		t.Fatalf("true: at %d", s.I)
	}
	s.Space()
	if s.Literal("null") || s.I != 9 {
		t.Fatalf("a cut null read, at %d", s.I)
	}
}
