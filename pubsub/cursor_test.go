package pubsub

import (
	"encoding/base64"
	"errors"
	"strings"
	"testing"
)

func TestCursorRoundTrip(t *testing.T) {
	c := NewCursor(map[string]Position{
		"user:abc":     {Epoch: "6a1b2c3d0f4240", Offset: 42},
		"orders:1":     {Epoch: "z9", Offset: 1 << 40},
		"never:before": {},
	})
	s := c.String()
	if strings.ContainsAny(s, "+/=") {
		t.Fatalf("cursor %q is not URL-safe", s)
	}
	got, err := ParseCursor(s)
	if err != nil {
		t.Fatal(err)
	}
	if got.String() != s {
		t.Fatalf("round trip %q -> %q", s, got.String())
	}
	if p, ok := got.Position("orders:1"); !ok || p.Offset != 1<<40 || p.Epoch != "z9" {
		t.Fatalf("position = %+v %v", p, ok)
	}
	if _, ok := got.Position("missing"); ok {
		t.Fatal("found a channel the cursor does not name")
	}
	// With does not change the original.
	c2 := got.With("orders:1", Position{Epoch: "z9", Offset: 7}).With("a", Position{})
	if p, _ := got.Position("orders:1"); p.Offset != 1<<40 {
		t.Fatal("With mutated its receiver")
	}
	if ps := c2.Positions(); len(ps) != 4 || ps[0].Channel != "a" {
		t.Fatalf("With = %+v", ps)
	}
	if zero, err := ParseCursor(""); err != nil || !zero.IsZero() || zero.String() != "" {
		t.Fatalf("empty cursor: %v %v", zero, err)
	}
	text, _ := c.AppendText([]byte("id: "))
	if string(text) != "id: "+s {
		t.Fatalf("AppendText = %q", text)
	}
}

func TestParseCursorRejects(t *testing.T) {
	enc := func(b ...byte) string { return base64.RawURLEncoding.EncodeToString(b) }
	valid := NewCursor(map[string]Position{"a": {Epoch: "e", Offset: 5}}).String()
	many := map[string]Position{}
	for i := 0; i < MaxChannelsPerSubscription+1; i++ {
		many[strings.Repeat("c", i+1)] = Position{}
	}
	tooMany := Cursor{}
	for ch, p := range many {
		tooMany = tooMany.With(ch, p)
	}
	tests := []struct {
		name, in string
	}{
		{"garbage", "not a cursor!"},
		{"padded base64", valid + "="},
		{"standard base64 alphabet", strings.ReplaceAll(base64.StdEncoding.EncodeToString([]byte{1, 1, 1, '+', 0, 0}), "=", "")},
		{"truncated", valid[:len(valid)-2]},
		{"trailing bytes", enc(1, 1, 1, 'a', 1, 'e', 5, 0)},
		{"unknown version", enc(2, 1, 1, 'a', 1, 'e', 5)},
		{"no channels", enc(1, 0)},
		{"too many channels", tooMany.String()},
		{"bad channel name", enc(1, 1, 1, ' ', 1, 'e', 5)},
		{"empty channel name", enc(1, 1, 0, 1, 'e', 5)},
		{"bad epoch", enc(1, 1, 1, 'a', 1, 'E', 5)},
		{"offset without epoch", enc(1, 1, 1, 'a', 0, 5)},
		{"unsorted", enc(1, 2, 1, 'b', 0, 0, 1, 'a', 0, 0)},
		{"repeated channel", enc(1, 2, 1, 'a', 0, 0, 1, 'a', 0, 0)},
		{"non-minimal varint", enc(1, 1, 1, 'a', 1, 'e', 0x85, 0x00)},
		{"length past end", enc(1, 1, 100, 'a')},
		{"too long", strings.Repeat("A", MaxCursorLength+1)},
		{"junk that is base64", enc([]byte("hello world")...)},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := ParseCursor(tc.in); !errors.Is(err, ErrInvalidCursor) {
				t.Fatalf("ParseCursor(%q) = %v, want ErrInvalidCursor", tc.in, err)
			}
		})
	}
}

func TestValidChannel(t *testing.T) {
	for _, ok := range []string{"a", "orders:42", "user:abc@x.y", "A-Z_0.9:@-", strings.Repeat("x", 128)} {
		if !ValidChannel(ok) {
			t.Errorf("ValidChannel(%q) = false", ok)
		}
	}
	for _, bad := range []string{"", " ", "a b", "a/b", "a{b}", "a\nb", "订单", "a*", strings.Repeat("x", 129), "a\x00"} {
		if ValidChannel(bad) {
			t.Errorf("ValidChannel(%q) = true", bad)
		}
	}
}

// FuzzParseCursor: ParseCursor never panics, and whatever it accepts
// re-encodes to exactly the input and holds only valid positions.
func FuzzParseCursor(f *testing.F) {
	f.Add("")
	f.Add(NewCursor(map[string]Position{"a": {Epoch: "e", Offset: 5}, "user:x": {}}).String())
	f.Add("AQEBYQFlBQ")
	f.Add("garbage")
	f.Fuzz(func(t *testing.T, s string) {
		c, err := ParseCursor(s)
		if err != nil {
			if !errors.Is(err, ErrInvalidCursor) {
				t.Fatalf("error %v does not wrap ErrInvalidCursor", err)
			}
			return
		}
		if c.String() != s {
			t.Fatalf("accepted %q but encodes as %q", s, c.String())
		}
		for _, p := range c.Positions() {
			if !ValidChannel(p.Channel) || !validEpoch(p.Epoch) || (p.Epoch == "" && p.Offset != 0) {
				t.Fatalf("accepted invalid position %+v", p)
			}
		}
	})
}

// FuzzValidChannel: the validator agrees with the documented pattern.
func FuzzValidChannel(f *testing.F) {
	for _, s := range []string{"a", "orders:42", "", "a b", "订单", strings.Repeat("x", 129)} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		want := len(s) >= 1 && len(s) <= 128
		for _, r := range s {
			if !strings.ContainsRune("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_:.@-", r) {
				want = false
			}
		}
		if s == "user:" { // names no user
			want = false
		}
		if got := ValidChannel(s); got != want {
			t.Fatalf("ValidChannel(%q) = %v, want %v", s, got, want)
		}
	})
}

// TestSoloCursor: the cursor the hub makes once per message is the one
// With makes for a subscription holding that channel alone, encoded the
// same; a cursor holding another channel too is not taken for it.
func TestSoloCursor(t *testing.T) {
	p := Position{Epoch: "6a1b2c3d0f4240", Offset: 42}
	solo := soloCursor("user:abc", p)
	for _, before := range []Cursor{{}, NewCursor(map[string]Position{"user:abc": {Epoch: "6a1b2c3d0f4240", Offset: 41}})} {
		if !before.only("user:abc") {
			t.Fatalf("%v does not hold user:abc alone", before.Positions())
		}
		want := before.With("user:abc", p)
		if solo.String() != want.String() {
			t.Fatalf("solo %q, With %q", solo.String(), want.String())
		}
		a, _ := solo.AppendText([]byte("id: "))
		b, _ := want.AppendText([]byte("id: "))
		if string(a) != string(b) {
			t.Fatalf("AppendText: solo %q, With %q", a, b)
		}
	}
	got, err := ParseCursor(solo.String())
	if pos, ok := got.Position("user:abc"); err != nil || !ok || pos != p || len(got.Positions()) != 1 {
		t.Fatalf("parsed %v %v", got.Positions(), err)
	}
	two := NewCursor(map[string]Position{"user:abc": {}, "orders:1": {}})
	if two.only("user:abc") || NewCursor(map[string]Position{"orders:1": {}}).only("user:abc") {
		t.Fatal("a cursor with another channel is taken for user:abc alone")
	}
	// With never carries an encoding over.
	if c := solo.With("user:abc", Position{Epoch: "e", Offset: 1}); c.String() == solo.String() {
		t.Fatal("With kept the solo cursor's encoding")
	}
}

// TestValidatePublishData: data must be one JSON value; it is stored
// compacted.
func TestValidatePublishData(t *testing.T) {
	for _, bad := range []string{"", " ", "{", `{"a":}`, "1 2", "nul", `"\x01"`, "[1,]", `{"a":1}x`} {
		if err := ValidatePublish(PublishRequest{Channel: "c", Data: []byte(bad)}); !errors.Is(err, ErrInvalidData) {
			t.Errorf("data %q: %v, want ErrInvalidData", bad, err)
		}
	}
	req := PublishRequest{Channel: "c", Data: []byte(" { \"a\" : [ 1 , \"x y\" ] }\n")}
	if err := validatePublish(&req); err != nil || string(req.Data) != `{"a":[1,"x y"]}` {
		t.Fatalf("compacted %q, %v", req.Data, err)
	}
}
