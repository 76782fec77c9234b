package workers

import (
	"runtime"
	"sync"
	"testing"
	"time"
)

// waitIdle waits until p has n goroutines waiting, failing after 5 s.
func waitIdle(t *testing.T, p *Pool, n int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for p.waiting() != n {
		if time.Now().After(deadline) {
			t.Fatalf("%d goroutines waiting; want %d", p.waiting(), n)
		}
		time.Sleep(time.Millisecond)
	}
}

// gid returns an identity of the calling goroutine: the address of a
// variable on its stack moves when the stack grows, so compare the goroutine
// ids printed by runtime.Stack instead.
func gid() string {
	b := make([]byte, 64)
	b = b[:runtime.Stack(b, false)]
	for i := len("goroutine "); i < len(b); i++ {
		if b[i] == ' ' {
			return string(b[:i])
		}
	}
	return string(b)
}

// TestPoolReuses: a function given once another has returned runs on the
// same goroutine, which then waits again.
func TestPoolReuses(t *testing.T) {
	p := &Pool{}
	defer p.Close()
	ids := make(chan string, 1)
	p.Go(func() { ids <- gid() })
	first := <-ids
	waitIdle(t, p, 1)
	p.Go(func() { ids <- gid() })
	if second := <-ids; second != first {
		t.Errorf("the second function ran on %q; want the first one's goroutine, %q", second, first)
	}
	waitIdle(t, p, 1)
}

// TestPoolNeverBlocks: with every goroutine busy, Go starts another at once.
func TestPoolNeverBlocks(t *testing.T) {
	p := &Pool{}
	defer p.Close()
	release := make(chan struct{})
	var started sync.WaitGroup
	for range 50 {
		started.Add(1)
		p.Go(func() { started.Done(); <-release })
	}
	started.Wait() // all 50 run at once: none waited for another
	close(release)
	waitIdle(t, p, 50)
}

// TestPoolMaxIdle: at most maxIdle goroutines wait; the others end.
func TestPoolMaxIdle(t *testing.T) {
	p := &Pool{maxIdle: 3}
	defer p.Close()
	release := make(chan struct{})
	var done sync.WaitGroup
	for range 10 {
		done.Add(1)
		p.Go(func() { <-release; done.Done() })
	}
	close(release)
	done.Wait()
	waitIdle(t, p, 3)
	time.Sleep(20 * time.Millisecond)
	if n := p.waiting(); n != 3 {
		t.Errorf("%d waiting; want maxIdle, 3", n)
	}
}

// TestPoolIdleTimeout: a goroutine with no work for idleTimeout ends.
func TestPoolIdleTimeout(t *testing.T) {
	p := &Pool{idleTimeout: 20 * time.Millisecond}
	defer p.Close()
	done := make(chan struct{})
	p.Go(func() { close(done) })
	<-done
	waitIdle(t, p, 1)
	waitIdle(t, p, 0)
}

// TestPoolClose: Close ends the waiting goroutines and those that finish
// later; Go still runs functions afterwards.
func TestPoolClose(t *testing.T) {
	p := &Pool{}
	release := make(chan struct{})
	p.Go(func() {})
	p.Go(func() { <-release })
	waitIdle(t, p, 1)
	p.Close()
	waitIdle(t, p, 0)
	close(release)
	ran := make(chan struct{})
	p.Go(func() { close(ran) })
	<-ran
	time.Sleep(20 * time.Millisecond)
	if n := p.waiting(); n != 0 {
		t.Errorf("%d waiting after Close; want 0", n)
	}
	p.Close() // twice is fine
}
