package main

import (
	"testing"
	"time"
)

var testNow = time.Unix(1764150000, 0)

func TestSeqStream(t *testing.T) {
	for _, tc := range []struct {
		name          string
		seqs          []int64
		last          int64
		failed        []int64
		dup, reorder  int
		missing       int64
		holesAfterAll int
	}{
		{name: "in order", seqs: []int64{0, 1, 2, 3}, last: 3},
		{name: "the tail never came", seqs: []int64{0, 1}, last: 4, missing: 3},
		{name: "the head never came", seqs: []int64{2, 3}, last: 3, missing: 2, holesAfterAll: 1},
		{name: "a gap filled later", seqs: []int64{0, 3, 1, 2, 4}, last: 4, reorder: 2},
		{name: "the middle of a gap filled", seqs: []int64{0, 5, 3}, last: 5, reorder: 1, missing: 3, holesAfterAll: 2},
		{name: "duplicates", seqs: []int64{0, 1, 1, 0, 2, 2}, last: 2, dup: 3},
		{name: "a duplicate of a late arrival", seqs: []int64{0, 2, 1, 1}, last: 2, reorder: 1, dup: 1},
		{name: "failed calls are not missing", seqs: []int64{0, 2, 4}, last: 5, failed: []int64{1, 5}, missing: 1, holesAfterAll: 2},
		{name: "nothing arrived", last: 2, failed: []int64{0}, missing: 2},
		{name: "nothing sent", last: -1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := newSeqStream()
			var dup, reorder int
			for _, seq := range tc.seqs {
				d, r := s.add(seq)
				if d {
					dup++
				}
				if r {
					reorder++
				}
			}
			if dup != tc.dup || reorder != tc.reorder {
				t.Errorf("dup %d reordered %d, want %d %d", dup, reorder, tc.dup, tc.reorder)
			}
			if got := s.missing(tc.last, tc.failed); got != tc.missing {
				t.Errorf("missing %d, want %d (holes %v)", got, tc.missing, s.holes)
			}
			if len(s.holes) != tc.holesAfterAll {
				t.Errorf("holes %v, want %d", s.holes, tc.holesAfterAll)
			}
		})
	}
}

func TestSeqStreamForgetsBeyondMaxHoles(t *testing.T) {
	s := newSeqStream()
	for i := range int64(maxHoles + 10) {
		s.add(2 * i) // every odd sequence is a hole
	}
	if len(s.holes) != maxHoles || s.forgotten != 9 {
		t.Fatalf("%d holes, %d forgotten", len(s.holes), s.forgotten)
	}
	if got := s.missing(2*(maxHoles+9), nil); got != maxHoles+9 {
		t.Fatalf("missing %d", got)
	}
}

func TestTracker(t *testing.T) {
	live := &liveCounters{}
	var lat histogram
	tr := newTracker(7, []string{"a", "b"}, []int{0, 0}, 2, live, &lat)
	msg := func(ch string, id int64, data delivery) {
		data.channel, data.id, data.hasID = []byte(ch), id, true
		tr.message(&data, testNow)
	}
	sent := testNow.Add(-3 * time.Millisecond).UnixNano()
	msg("a", 1, delivery{run: 7, warm: true, bench: true})
	if tr.ready || live.ready.Load() != 0 {
		t.Fatal("ready before every channel warmed")
	}
	msg("b", 1, delivery{run: 7, warm: true, bench: true})
	msg("b", 2, delivery{run: 7, warm: true, bench: true})
	if !tr.ready || live.ready.Load() != 1 {
		t.Fatal("not ready after every channel warmed")
	}
	msg("a", 2, delivery{run: 7, sender: 0, seq: 0, sent: sent, bench: true})
	msg("a", 3, delivery{run: 7, sender: 1, seq: 0, sent: sent, bench: true})
	msg("a", 5, delivery{run: 7, sender: 0, seq: 2, sent: sent, bench: true}) // id 4 and seq 1 skipped
	msg("a", 4, delivery{run: 7, sender: 0, seq: 1, sent: sent, bench: true}) // late
	msg("a", 4, delivery{run: 7, sender: 0, seq: 1, sent: sent, bench: true}) // again
	msg("b", 5, delivery{run: 7, sender: 1, seq: 0, sent: sent, bench: true}) // ids 3 and 4 of b never come
	msg("a", 6, delivery{run: 8, sender: 0, seq: 0, sent: sent, bench: true}) // another run
	msg("a", 7, delivery{})                                                   // not benchmark data
	msg("c", 1, delivery{run: 7, sender: 0, seq: 0, sent: sent, bench: true}) // not subscribed
	msg("a", 8, delivery{run: 7, sender: 5, seq: 0, sent: sent, bench: true}) // no such sender

	st := tr.stats
	want := subStats{received: 6, unique: 5, duplicated: 1, reordered: 1, idDups: 1, idBack: 1,
		foreign: 3, badSender: 1, warmups: 3}
	if st != want {
		t.Errorf("stats %+v\nwant  %+v", st, want)
	}
	if g := tr.idGaps(); g != 2 {
		t.Errorf("id gaps %d, want 2", g)
	}
	if live.received.Load() != 6 || live.unique.Load() != 5 {
		t.Errorf("live %d %d", live.received.Load(), live.unique.Load())
	}
	if lat.Count() != 5 || lat.Max() != int64(3*time.Millisecond) {
		t.Errorf("latencies: %d, max %d", lat.Count(), lat.Max())
	}
}
