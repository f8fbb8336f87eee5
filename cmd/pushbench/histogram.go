package main

import (
	"math"
	"math/bits"
	"sync/atomic"
	"time"
)

// histogram is a fixed log-linear histogram of non-negative int64 values
// (nanoseconds here), in the manner of HdrHistogram: values below
// 2*histSub are counted exactly, and every power of two above is split into
// histSub equal buckets, so a reported value is within 1/histSub (0.8%) of
// the recorded one. Values above histMax are counted as histMax; max keeps
// the exact largest value. Record is safe for concurrent use and never
// allocates; the zero value is ready.
type histogram struct {
	counts [histBuckets]atomic.Uint64
	n      atomic.Uint64
	sum    atomic.Int64
	max    atomic.Int64
	min    atomic.Int64 // clamped, stored as value+1 so that 0 means none yet
}

const (
	histSubBits = 7
	histSub     = 1 << histSubBits // buckets per power of two
	histMaxBits = 44               // values up to 2^44 ns, about 4.9 hours
	histMax     = 1<<histMaxBits - 1
	histBuckets = (histMaxBits-histSubBits)*histSub + histSub
)

// histIndex returns the bucket of v (0 <= v <= histMax): with
// e = max(0, bitlen(v)-histSubBits-1), the bucket is e*histSub + v>>e.
func histIndex(v int64) int {
	e := max(0, bits.Len64(uint64(v))-histSubBits-1)
	return e*histSub + int(v>>e)
}

// histRange returns the lowest value of bucket i and its width.
func histRange(i int) (low, width int64) {
	if i < 2*histSub {
		return int64(i), 1
	}
	e := i/histSub - 1
	top := int64(i - e*histSub)
	return top << e, 1 << e
}

// Record counts v; a negative v counts as 0.
func (h *histogram) Record(v int64) {
	v = max(v, 0)
	clamped := min(v, histMax)
	h.counts[histIndex(clamped)].Add(1)
	h.n.Add(1)
	h.sum.Add(clamped)
	for {
		m := h.max.Load()
		if v <= m || h.max.CompareAndSwap(m, v) {
			break
		}
	}
	for {
		m := h.min.Load()
		if (m != 0 && clamped+1 >= m) || h.min.CompareAndSwap(m, clamped+1) {
			break
		}
	}
}

// RecordDuration counts d in nanoseconds.
func (h *histogram) RecordDuration(d time.Duration) { h.Record(int64(d)) }

// Count is how many values were recorded.
func (h *histogram) Count() uint64 { return h.n.Load() }

// Max is the largest value recorded, 0 when none.
func (h *histogram) Max() int64 { return h.max.Load() }

// Min is the smallest value recorded, 0 when none.
func (h *histogram) Min() int64 { return max(h.min.Load()-1, 0) }

// Mean is the mean of the recorded values, 0 when none.
func (h *histogram) Mean() float64 {
	n := h.n.Load()
	if n == 0 {
		return 0
	}
	return float64(h.sum.Load()) / float64(n)
}

// Quantile returns the value at quantile q (0..1): the highest value
// equivalent to the bucket holding the ceil(q*n)-th smallest value, capped
// at Max (and at least Min); the largest value is Max itself. It returns 0 when nothing was recorded. It is
// meant to be called once writers have stopped.
func (h *histogram) Quantile(q float64) int64 {
	n := h.n.Load()
	if n == 0 {
		return 0
	}
	rank := uint64(math.Ceil(q * float64(n)))
	rank = min(max(rank, 1), n)
	if rank == n {
		return h.Max()
	}
	var seen uint64
	for i := range h.counts {
		seen += h.counts[i].Load()
		if seen >= rank {
			low, width := histRange(i)
			return min(max(low+width-1, h.Min()), h.Max())
		}
	}
	return h.Max()
}

// Merge adds the counts of o into h.
func (h *histogram) Merge(o *histogram) {
	for i := range o.counts {
		if c := o.counts[i].Load(); c > 0 {
			h.counts[i].Add(c)
		}
	}
	h.n.Add(o.n.Load())
	h.sum.Add(o.sum.Load())
	if m := o.max.Load(); m > h.max.Load() {
		h.max.Store(m)
	}
	if m := o.min.Load(); m != 0 && (h.min.Load() == 0 || m < h.min.Load()) {
		h.min.Store(m)
	}
}
