package main

import (
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"strings"
	"testing"
	"testing/iotest"
)

// got is an event as the tests compare it.
type got struct {
	id, event, data string
	idSet, hasData  bool
}

func (g got) String() string {
	return fmt.Sprintf("{id %q set %v event %q data %q has %v}", g.id, g.idSet, g.event, g.data, g.hasData)
}

// readAll parses every event of r, read size bytes at a time.
func readAll(r io.Reader, size int) ([]got, error) {
	var p sseParser
	var out []got
	buf := make([]byte, size)
	for {
		n, err := r.Read(buf)
		if ferr := p.feed(buf[:n], func(ev *sseEvent) error {
			out = append(out, got{string(ev.ID), string(ev.Event), string(ev.Data), ev.IDSet, ev.HasData})
			return nil
		}); ferr != nil {
			return out, ferr
		}
		if err == io.EOF {
			return out, p.end()
		}
		if err != nil {
			return out, err
		}
	}
}

var longData = strings.Repeat("x", 5000)

var sseCases = []struct {
	name   string
	stream string
	want   []got
	err    error
}{
	{
		name:   "pushgate stream",
		stream: "retry: 2000\nid: c0\n\nid: c1\ndata: {\"id\":\"1\"}\n\n: heartbeat\n\nid: c2\nevent: reset\ndata: {\"reason\":\"expired\"}\n\n",
		want: []got{
			{id: "c0", idSet: true},
			{id: "c1", idSet: true, data: `{"id":"1"}`, hasData: true},
			{id: "c2", idSet: true, event: "reset", data: `{"reason":"expired"}`, hasData: true},
		},
		err: io.EOF,
	},
	{
		name:   "CRLF, several data lines, no space after the colon",
		stream: "data:a\r\ndata: b\r\ndata\r\n\r\n",
		want:   []got{{data: "a\nb\n", hasData: true}},
		err:    io.EOF,
	},
	{
		name:   "id persists as lastEventId, only one leading space is stripped",
		stream: "id: 7\ndata: x\n\ndata:  y\n\n",
		want:   []got{{id: "7", idSet: true, data: "x", hasData: true}, {id: "7", data: " y", hasData: true}},
		err:    io.EOF,
	},
	{
		name:   "comments, blank lines and unknown fields alone dispatch nothing",
		stream: ":a\n\n\n\nfoo: bar\nretry: 10\n\n",
		err:    io.EOF,
	},
	{
		name:   "a line longer than the buffer",
		stream: "data: " + longData + "\n\n",
		want:   []got{{data: longData, hasData: true}},
		err:    io.EOF,
	},
	{
		name:   "an id with NUL is ignored",
		stream: "id: a\x00b\ndata: x\n\n",
		want:   []got{{data: "x", hasData: true}},
		err:    io.EOF,
	},
	{
		name:   "a block cut by the end of the stream",
		stream: "data: x\n\ndata: y\n",
		want:   []got{{data: "x", hasData: true}},
		err:    errSSETruncated,
	},
	{
		name:   "a line cut by the end of the stream",
		stream: "data: x\n\ndata: y",
		want:   []got{{data: "x", hasData: true}},
		err:    errSSETruncated,
	},
}

func TestSSEParser(t *testing.T) {
	for _, tc := range sseCases {
		t.Run(tc.name, func(t *testing.T) {
			readers := map[string]func() io.Reader{
				"whole":    func() io.Reader { return strings.NewReader(tc.stream) },
				"one byte": func() io.Reader { return iotest.OneByteReader(strings.NewReader(tc.stream)) },
				"half":     func() io.Reader { return iotest.HalfReader(strings.NewReader(tc.stream)) },
				"data+EOF": func() io.Reader { return iotest.DataErrReader(strings.NewReader(tc.stream)) },
			}
			for rname, r := range readers {
				for _, size := range []int{16, 4096} {
					evs, err := readAll(r(), size)
					if !errors.Is(err, tc.err) {
						t.Errorf("%s/%d: err %v, want %v", rname, size, err, tc.err)
					}
					if fmt.Sprint(evs) != fmt.Sprint(tc.want) {
						t.Errorf("%s/%d:\n got %v\nwant %v", rname, size, evs, tc.want)
					}
				}
			}
		})
	}
}

// chunkReader returns its data in the chunks given.
type chunkReader struct{ chunks []string }

func (c *chunkReader) Read(p []byte) (int, error) {
	if len(c.chunks) == 0 {
		return 0, io.EOF
	}
	n := copy(p, c.chunks[0])
	if n < len(c.chunks[0]) {
		c.chunks[0] = c.chunks[0][n:]
	} else {
		c.chunks = c.chunks[1:]
	}
	return n, nil
}

// TestSSEParserArbitrarySplits reads one stream cut at random places
// (across the field name, the colon, the CR and LF, the blank line) and
// requires the same events every time.
func TestSSEParserArbitrarySplits(t *testing.T) {
	var b strings.Builder
	var want []got
	for i := range 200 {
		id := fmt.Sprintf("cursor-%d", i)
		data := fmt.Sprintf(`{"channel":"bench:shared","id":"%d","data":{"s":%d,"p":"%s"}}`, i, i, strings.Repeat("x", i%40))
		eol := "\n"
		if i%3 == 0 {
			eol = "\r\n"
		}
		if i%7 == 0 {
			b.WriteString(": heartbeat" + eol + eol)
		}
		ev := got{id: id, idSet: true, data: data, hasData: true}
		fmt.Fprintf(&b, "id: %s%sdata: %s%s", id, eol, data, eol)
		if i%5 == 0 {
			b.WriteString("event: reset" + eol)
			ev.event = "reset"
		}
		b.WriteString(eol)
		want = append(want, ev)
	}
	stream := b.String()
	r := rand.New(rand.NewPCG(1, 2))
	for iter := range 300 {
		var chunks []string
		for rest := stream; len(rest) > 0; {
			n := min(1+r.IntN(64), len(rest))
			if iter%10 == 0 {
				n = min(1+r.IntN(3), len(rest))
			}
			chunks = append(chunks, rest[:n])
			rest = rest[n:]
		}
		size := []int{16, 64, 4096}[iter%3]
		evs, err := readAll(&chunkReader{chunks: chunks}, size)
		if err != io.EOF {
			t.Fatalf("iteration %d: err %v", iter, err)
		}
		if len(evs) != len(want) {
			t.Fatalf("iteration %d: %d events, want %d", iter, len(evs), len(want))
		}
		for i := range want {
			if evs[i] != want[i] {
				t.Fatalf("iteration %d, event %d:\n got %v\nwant %v", iter, i, evs[i], want[i])
			}
		}
	}
}

func TestSSEParserDoesNotAllocate(t *testing.T) {
	var p sseParser
	block := []byte("id: abcdef\ndata: {\"channel\":\"c\",\"id\":\"1\",\"data\":{}}\n\n: hb\n\n")
	events := 0
	emit := func(*sseEvent) error { events++; return nil }
	for i := range 10 { // grow the buffers, cut in two at varying places
		if p.feed(block[:i], emit) != nil || p.feed(block[i:], emit) != nil {
			t.Fatal("feed failed")
		}
	}
	allocs := testing.AllocsPerRun(1000, func() {
		if p.feed(block[:7], emit) != nil || p.feed(block[7:], emit) != nil {
			t.Fatal("feed failed")
		}
	})
	if allocs != 0 {
		t.Errorf("%v allocations per event, want 0", allocs)
	}
	if events != 10+1+1000 { // AllocsPerRun runs it once more first
		t.Errorf("%d events, want 1011", events)
	}
}

// TestSSEParserEmitError: an error of emit stops the parse and is
// returned.
func TestSSEParserEmitError(t *testing.T) {
	var p sseParser
	stop := errors.New("stop")
	n := 0
	err := p.feed([]byte("data: a\n\ndata: b\n\n"), func(*sseEvent) error { n++; return stop })
	if err != stop || n != 1 {
		t.Fatalf("err %v after %d events, want stop after 1", err, n)
	}
}

func BenchmarkSSEParser(b *testing.B) {
	block := []byte("id: eyJlIjoiYWJjIiwibyI6MTIzfQ\ndata: {\"channel\":\"bench:shared\",\"id\":\"42\",\"data\":{\"r\":1,\"w\":0,\"s\":42,\"t\":1764150000000000000,\"p\":\"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\"},\"createdAt\":\"2025-11-26T10:00:00.000Z\"}\n\n")
	var p sseParser
	var d delivery
	emit := func(ev *sseEvent) error {
		if !parseDelivery(ev.Data, &d) {
			return errors.New("not a delivery")
		}
		return nil
	}
	b.SetBytes(int64(len(block)))
	b.ReportAllocs()
	for b.Loop() {
		if err := p.feed(block, emit); err != nil {
			b.Fatal(err)
		}
	}
}
