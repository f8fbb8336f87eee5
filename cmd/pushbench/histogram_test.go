package main

import (
	"math"
	"math/rand/v2"
	"sync"
	"testing"
)

func TestHistogramBucketsTile(t *testing.T) {
	// Buckets are contiguous and each value lands in the bucket that holds it.
	next := int64(0)
	for i := range histBuckets {
		low, width := histRange(i)
		if low != next {
			t.Fatalf("bucket %d starts at %d, want %d", i, low, next)
		}
		if width < 1 {
			t.Fatalf("bucket %d has width %d", i, width)
		}
		for _, v := range []int64{low, low + width/2, low + width - 1} {
			if got := histIndex(v); got != i {
				t.Fatalf("histIndex(%d) = %d, want %d", v, got, i)
			}
		}
		if low >= 2*histSub && float64(width)/float64(low) > 1.0/histSub {
			t.Fatalf("bucket %d: width %d at %d is over 1/%d", i, width, low, histSub)
		}
		next = low + width
	}
	if next-1 != histMax {
		t.Fatalf("the last bucket ends at %d, want %d", next-1, histMax)
	}
}

func TestHistogramQuantiles(t *testing.T) {
	var h histogram
	for v := int64(1); v <= 100000; v++ {
		h.Record(v * 1000) // 1 µs .. 100 ms
	}
	for _, tc := range []struct {
		q    float64
		want int64
	}{
		{0.5, 50_000_000}, {0.9, 90_000_000}, {0.99, 99_000_000}, {0.999, 99_900_000}, {1, 100_000_000},
	} {
		got := h.Quantile(tc.q)
		if rel := math.Abs(float64(got-tc.want)) / float64(tc.want); rel > 1.0/histSub {
			t.Errorf("Quantile(%v) = %d, want %d within %.2f%%", tc.q, got, tc.want, 100.0/histSub)
		}
	}
	if h.Count() != 100000 || h.Max() != 100_000_000 || h.Min() != 1000 {
		t.Errorf("count %d max %d min %d", h.Count(), h.Max(), h.Min())
	}
	if mean := h.Mean(); math.Abs(mean-50_000_500) > 1 {
		t.Errorf("mean %v", mean)
	}
}

func TestHistogramEdges(t *testing.T) {
	var empty histogram
	if empty.Quantile(0.99) != 0 || empty.Max() != 0 || empty.Min() != 0 || empty.Mean() != 0 {
		t.Error("an empty histogram reports non-zero figures")
	}

	var h histogram
	h.Record(-5) // a clock step backwards counts as 0
	h.Record(0)
	h.Record(127)
	h.Record(math.MaxInt64) // clamped into the last bucket, max kept exact
	if got := h.Quantile(0.25); got != 0 {
		t.Errorf("p25 = %d, want 0", got)
	}
	if got := h.Quantile(0.75); got != 127 {
		t.Errorf("p75 = %d, want 127 (exact below %d)", got, 2*histSub)
	}
	if got := h.Quantile(1); got != math.MaxInt64 {
		t.Errorf("p100 = %d, want the exact max", got)
	}
	if h.Min() != 0 {
		t.Errorf("min %d", h.Min())
	}

	var one histogram
	one.Record(123456789)
	for _, q := range []float64{0, 0.5, 1} {
		if got := one.Quantile(q); got != 123456789 {
			t.Errorf("one value: Quantile(%v) = %d", q, got)
		}
	}
}

func TestHistogramConcurrentAndMerge(t *testing.T) {
	var a, b histogram
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := rand.New(rand.NewPCG(uint64(g), 1))
			h := &a
			if g%2 == 1 {
				h = &b
			}
			for range 10000 {
				h.Record(r.Int64N(1e9))
			}
		}()
	}
	wg.Wait()
	if a.Count()+b.Count() != 80000 {
		t.Fatalf("counts %d + %d", a.Count(), b.Count())
	}
	maxAB := max(a.Max(), b.Max())
	a.Merge(&b)
	if a.Count() != 80000 || a.Max() != maxAB {
		t.Fatalf("merged count %d max %d", a.Count(), a.Max())
	}
	var total uint64
	for i := range a.counts {
		total += a.counts[i].Load()
	}
	if total != 80000 {
		t.Fatalf("bucket total %d", total)
	}
	if p50 := a.Quantile(0.5); p50 < 4.5e8 || p50 > 5.5e8 {
		t.Errorf("p50 of uniform 0..1e9 = %d", p50)
	}
}

func BenchmarkHistogramRecord(b *testing.B) {
	var h histogram
	for i := 0; b.Loop(); i++ {
		h.Record(int64(i) * 997)
	}
}
