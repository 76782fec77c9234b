// Package workers runs functions on goroutines that are kept for the next
// function once theirs returns.
//
// A new goroutine starts with a small stack and grows it by copying as the
// calls under it get deeper; deciding a flow gets deep at once (an IPv4
// dial, gVisor's handshake down to the TUN write), so with a new goroutine
// for every flow a good part of the per-connection CPU went to copying
// stacks. A Pool hands a function to a goroutine that waits after an
// earlier one, its stack already grown, and starts a new goroutine only
// when none waits. It is for work that ends: a goroutine that then blocks
// for long (a flow's copy loop, idle) would hold its grown stack meanwhile.
package workers

import (
	"slices"
	"sync"
	"time"
)

// Default bounds of a Pool.
const (
	// defaultMaxIdle bounds the goroutines waiting for work: enough for the
	// flows being decided at once on a busy relay (each takes a dial and a
	// handshake, a millisecond or so), few enough that their grown stacks
	// (8 to 32 KiB each) are no more than a few MiB.
	defaultMaxIdle = 128
	// defaultIdleTimeout is how long a goroutine waits for work before it
	// ends.
	defaultIdleTimeout = 10 * time.Second
)

// Pool runs functions on reused goroutines. The zero value is ready to use,
// with the default bounds. Safe for concurrent use.
type Pool struct {
	// maxIdle bounds the goroutines waiting for work (0: defaultMaxIdle);
	// a goroutine whose function returns while that many wait ends.
	maxIdle int
	// idleTimeout is how long a goroutine waits for work before it ends
	// (0: defaultIdleTimeout).
	idleTimeout time.Duration

	mu     sync.Mutex
	idle   []*worker // waiting, the most recent last (taken first: its stack is the warmest)
	closed bool
}

// worker is a goroutine of the pool; work hands it its next function (nil:
// end).
type worker struct {
	work chan func() // buffered: the hand-off never blocks
}

// Go runs f on a waiting goroutine, or on a new one if none waits. It never
// blocks.
func (p *Pool) Go(f func()) {
	p.mu.Lock()
	if n := len(p.idle); n > 0 {
		w := p.idle[n-1]
		p.idle[n-1] = nil
		p.idle = p.idle[:n-1]
		p.mu.Unlock()
		w.work <- f
		return
	}
	p.mu.Unlock()
	go p.run(f)
}

// waiting returns how many goroutines wait for work.
func (p *Pool) waiting() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.idle)
}

// Close ends the waiting goroutines, and each other one once its function
// returns. Go still runs functions, each on a goroutine of its own.
func (p *Pool) Close() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.closed = true
	for _, w := range p.idle {
		w.work <- nil
	}
	p.idle = nil
}

// run runs f, then waits for more work, unless maxIdle goroutines already
// wait or the pool is closed, until idleTimeout passes without any.
func (p *Pool) run(f func()) {
	maxIdle, timeout := p.maxIdle, p.idleTimeout
	if maxIdle <= 0 {
		maxIdle = defaultMaxIdle
	}
	if timeout <= 0 {
		timeout = defaultIdleTimeout
	}
	w := &worker{work: make(chan func(), 1)}
	var t *time.Timer
	for f != nil {
		f()
		p.mu.Lock()
		if p.closed || len(p.idle) >= maxIdle {
			p.mu.Unlock()
			return
		}
		p.idle = append(p.idle, w)
		p.mu.Unlock()
		if t == nil {
			t = time.NewTimer(timeout)
		} else {
			t.Reset(timeout)
		}
		select {
		case f = <-w.work:
			t.Stop()
		case <-t.C:
			p.mu.Lock()
			if i := slices.Index(p.idle, w); i >= 0 {
				p.idle = slices.Delete(p.idle, i, i+1)
				p.mu.Unlock()
				return
			}
			p.mu.Unlock()
			f = <-w.work // taken by Go or Close meanwhile: its hand-off is on its way
		}
	}
}
