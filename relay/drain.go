package relay

import (
	"context"
	"sync"
)

// Shutdown stops admitting flows (new SYNs are refused with a RST) and waits
// until every flow the relay is deciding or relaying has ended, or until ctx
// is done, whichever comes first; then it returns ctx's error. Flows still
// open are left running: Close ends them.
func (r *Relay) Shutdown(ctx context.Context) error {
	r.flows.close()
	return r.flows.wait(ctx)
}

// Close ends every flow still open or being set up, and any that arrives
// later: both sides are reset, and the flow ends (or is refused) as
// "shutdown". It does not wait for them; Wait does.
func (r *Relay) Close() { r.cancel() }

// Wait waits until every flow handler has returned, or until ctx is done;
// then it logs the summaries of refusal lines held back so far.
func (r *Relay) Wait(ctx context.Context) error {
	err := r.flows.wait(ctx)
	r.logs.flush()
	return err
}

// Draining reports whether the relay has stopped admitting flows.
func (r *Relay) Draining() bool { return r.flows.isClosed() }

// tracker counts the flows being decided or relayed so that stopping can
// wait for them; once closed it admits no new ones.
type tracker struct {
	mu     sync.Mutex
	n      int
	closed bool
	zero   chan struct{} // closed when n drops to 0 while someone waits
}

// begin admits a flow, unless the tracker is closed.
func (t *tracker) begin() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return false
	}
	t.n++
	return true
}

// end marks a flow admitted by begin as over.
func (t *tracker) end() {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.n--
	if t.n == 0 && t.zero != nil {
		close(t.zero)
		t.zero = nil
	}
}

// close admits no new flows.
func (t *tracker) close() {
	t.mu.Lock()
	t.closed = true
	t.mu.Unlock()
}

func (t *tracker) isClosed() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.closed
}

// wait waits for the admitted flows to end, or for ctx to be done; it
// returns ctx's error in that case.
func (t *tracker) wait(ctx context.Context) error {
	t.mu.Lock()
	if t.n == 0 {
		t.mu.Unlock()
		return nil
	}
	if t.zero == nil {
		t.zero = make(chan struct{})
	}
	done := t.zero
	t.mu.Unlock()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
