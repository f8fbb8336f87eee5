package server

import (
	"context"
	"errors"
	"testing"
	"time"
)

// TestStreamsWait: Wait returns once every stream counted has closed, even
// when streams open while it waits (a WaitGroup forbids that); a stream's
// close counts once.
func TestStreamsWait(t *testing.T) {
	var s Streams
	if err := s.Wait(context.Background()); err != nil {
		t.Fatalf("no streams: %v", err)
	}
	a, b := s.open(), s.open()
	short, cancel := context.WithTimeout(context.Background(), 10*time.Millisecond)
	defer cancel()
	if err := s.Wait(short); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("two open: %v", err)
	}
	waited := make(chan error, 1)
	go func() { waited <- s.Wait(context.Background()) }()
	c := s.open() // while Wait waits
	a()
	a() // twice: counts once
	b()
	select {
	case err := <-waited:
		t.Fatalf("Wait returned (%v) with a stream open", err)
	case <-time.After(20 * time.Millisecond):
	}
	c()
	select {
	case err := <-waited:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Wait did not return once every stream closed")
	}
}
