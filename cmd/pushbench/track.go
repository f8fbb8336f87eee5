package main

import (
	"slices"
	"sync/atomic"
	"time"
)

// Loss, duplication and order are judged twice per subscriber and channel:
//
//   - by the sender's sequence: every (channel group, sender) pair numbers
//     its calls 0, 1, 2, ... and a sender has one call in flight at a time, so
//     the server must deliver that stream's messages in sequence order. A
//     stream keeps the highest sequence seen and the holes below it, so at
//     the end what never arrived is known exactly (against the sender's
//     ledger of calls that failed, whose messages may or may not exist).
//   - by the server's id: ids in a channel are contiguous and increasing,
//     so a subscriber must see each id once, in order, without gaps, from
//     its first delivery on. This also covers messages the benchmark did not
//     count as sent (a call that timed out after the append).

// span is the half-open range of sequences [lo, hi).
type span struct{ lo, hi int64 }

// maxHoles bounds the holes a stream remembers; beyond it the oldest hole
// is forgotten and counted as lost for good (a late arrival of it then
// counts as a duplicate). Only a pathological run gets there.
const maxHoles = 4096

// seqStream tracks the sequences of one (channel, sender) stream at one
// subscriber.
type seqStream struct {
	max       int64 // highest sequence received; -1 before the first
	holes     []span
	forgotten int64 // sequences of holes dropped beyond maxHoles
}

func newSeqStream() seqStream { return seqStream{max: -1} }

// add records seq and says whether it was a duplicate or arrived after a
// higher one (filling a hole: reordered).
func (s *seqStream) add(seq int64) (dup, reordered bool) {
	if seq > s.max {
		if seq > s.max+1 {
			if len(s.holes) == maxHoles {
				s.forgotten += s.holes[0].hi - s.holes[0].lo
				s.holes = slices.Delete(s.holes, 0, 1)
			}
			s.holes = append(s.holes, span{s.max + 1, seq})
		}
		s.max = seq
		return false, false
	}
	// Below the highest: it fills a hole, else it was seen. Recent holes
	// are the likely ones, so search from the end.
	for i := len(s.holes) - 1; i >= 0; i-- {
		h := s.holes[i]
		if seq >= h.hi {
			break
		}
		if seq < h.lo {
			continue
		}
		switch {
		case h.lo == seq && h.hi == seq+1:
			s.holes = slices.Delete(s.holes, i, i+1)
		case h.lo == seq:
			s.holes[i].lo++
		case h.hi == seq+1:
			s.holes[i].hi--
		default:
			s.holes = slices.Insert(s.holes, i+1, span{seq + 1, h.hi})
			s.holes[i].hi = seq
		}
		return false, true
	}
	return true, false
}

// missing counts the sequences 0..last that never arrived, leaving out
// those in failed (sorted ascending): calls that reported an error, whose
// messages the server may never have appended.
func (s *seqStream) missing(last int64, failed []int64) int64 {
	n := s.forgotten
	count := func(lo, hi int64) { // [lo, hi) minus failed
		if hi <= lo {
			return
		}
		a, _ := slices.BinarySearch(failed, lo)
		b, _ := slices.BinarySearch(failed, hi)
		n += hi - lo - int64(b-a)
	}
	for _, h := range s.holes {
		count(h.lo, min(h.hi, last+1))
	}
	count(s.max+1, last+1)
	return n
}

// chanTrack is one channel of one subscriber.
type chanTrack struct {
	name    string
	group   int         // the senders' channel group this channel is in
	streams []seqStream // by sender
	warm    atomic.Bool // a warm-up message arrived: the subscription is live
	ids     seqStream   // server ids, relative to idBase
	idBase  int64       // the first id seen
	haveID  bool
}

// subStats are one subscriber's counts; only its own goroutine writes them,
// and they are read after it ended.
type subStats struct {
	received   int64 // benchmark messages of this run, duplicates included
	unique     int64
	duplicated int64
	reordered  int64
	idDups     int64 // an id seen again
	idBack     int64 // an id that came after a higher one
	resets     int64
	foreign    int64 // messages not from this run (other data, other run id)
	badSender  int64 // a sender index out of range
	parseErrs  int64
	warmups    int64
	limited    int64 // polls refused for a rate limit, then tried again
}

// liveCounters are what the run watches while it goes: progress, the drain
// and readiness.
type liveCounters struct {
	received atomic.Int64 // duplicates included
	unique   atomic.Int64
	lastRecv atomic.Int64 // unix ns of the latest delivery
	ready    atomic.Int64 // subscribers that got a warm-up on each channel
}

// tracker judges one subscriber's deliveries.
type tracker struct {
	run    int64
	chans  []chanTrack
	stats  subStats
	live   *liveCounters
	lat    *histogram
	nready int  // channels warmed
	ready  bool // every channel warmed
}

func newTracker(run int64, names []string, groups []int, senders int, live *liveCounters, lat *histogram) *tracker {
	t := &tracker{run: run, chans: make([]chanTrack, len(names)), live: live, lat: lat}
	for i, name := range names {
		c := &t.chans[i]
		c.name, c.group = name, groups[i]
		c.ids = newSeqStream()
		c.streams = make([]seqStream, senders)
		for j := range c.streams {
			c.streams[j] = newSeqStream()
		}
	}
	return t
}

// channel returns the tracked channel named name, or nil.
func (t *tracker) channel(name []byte) *chanTrack {
	for i := range t.chans {
		if t.chans[i].name == string(name) {
			return &t.chans[i]
		}
	}
	return nil
}

// message judges one delivered message at time now.
func (t *tracker) message(d *delivery, now time.Time) {
	c := t.channel(d.channel)
	if c == nil {
		t.stats.foreign++
		return
	}
	if d.hasID {
		if !c.haveID {
			c.idBase, c.haveID = d.id, true
		}
		if rel := d.id - c.idBase; rel < 0 {
			t.stats.idBack++ // below the first id seen: late (or a duplicate of one never seen)
		} else {
			switch dup, late := c.ids.add(rel); {
			case dup:
				t.stats.idDups++
			case late:
				t.stats.idBack++
			}
		}
	}
	if !d.bench || d.run != t.run {
		t.stats.foreign++
		return
	}
	if d.warm {
		t.stats.warmups++
		if !c.warm.Load() {
			c.warm.Store(true)
			t.nready++
			if t.nready == len(t.chans) && !t.ready {
				t.ready = true
				t.live.ready.Add(1)
			}
		}
		return
	}
	if d.sender < 0 || int(d.sender) >= len(c.streams) || d.seq < 0 {
		t.stats.badSender++
		return
	}
	t.stats.received++
	t.live.received.Add(1)
	nanos := now.UnixNano()
	t.live.lastRecv.Store(nanos)
	dup, reordered := c.streams[d.sender].add(d.seq)
	switch {
	case dup:
		t.stats.duplicated++
		return
	case reordered:
		t.stats.reordered++
	}
	t.stats.unique++
	t.live.unique.Add(1)
	t.lat.Record(nanos - d.sent)
}

// idGaps counts the ids, between the first and the highest one seen on
// each channel, that never arrived.
func (t *tracker) idGaps() int64 {
	var n int64
	for i := range t.chans {
		c := &t.chans[i]
		n += c.ids.missing(c.ids.max, nil)
	}
	return n
}

// reset counts a reset event (the server says history was lost).
func (t *tracker) reset() { t.stats.resets++ }
