package relay

import (
	"context"
	"errors"
	"io"
	"sync"
	"sync/atomic"
	"time"

	"github.com/faithif/faithif/relay/flow"
)

// readWaiter is implemented by a Conn that can wait until a Read would not
// block without holding a buffer. Pipe then lends a copy buffer to a flow
// only while it has data to move, so idle flows hold none.
type readWaiter interface {
	// WaitRead returns once data, a FIN or an error is there to read.
	WaitRead() error
}

// pooledReader is implemented by a Conn that can wait for data and read it
// into a copy buffer borrowed only once data is there (kernelConn): one
// system call per wake-up instead of a peek and a read, and no buffer held
// while the flow idles.
type pooledReader interface {
	// ReadPooled returns a buffer from bufferPool holding n bytes read,
	// or io.EOF or an error (and no buffer).
	ReadPooled() (bp *[]byte, n int, err error)
}

// End says how a relayed flow ended.
type End string

// The ways a flow ends.
const (
	EndClosed      End = "closed"          // both sides sent FIN
	EndClientReset End = "reset_by_client" // the IPv6 client reset (or failed)
	EndServerReset End = "reset_by_server" // the IPv4 server reset (or failed)
	EndIdleTimeout End = "idle_timeout"    // nothing moved either way for the idle timeout
	EndShutdown    End = "shutdown"        // faithif stopped
)

// bufferSize is the size of a copy buffer; one is held per direction while a
// flow is copying.
const bufferSize = 64 << 10

// bufferPool holds the copy buffers, shared by all flows.
var bufferPool = sync.Pool{New: func() any { b := make([]byte, bufferSize); return &b }}

// pipeStats receives live byte counts while a flow runs. Either field may be
// nil.
type pipeStats struct {
	ClientToServer *atomic.Uint64
	ServerToClient *atomic.Uint64
}

// pipeResult is what Pipe reports when a flow is over.
type pipeResult struct {
	ClientToServer uint64 // bytes
	ServerToClient uint64 // bytes
	End            End
	Err            error // the error that ended the flow, nil for EndClosed
}

// meter is what a relayed flow has moved so far, as Relay.Flows reads it:
// the copy loop's atomics, or an App's (app.go).
type meter struct {
	c2s, s2c   atomic.Uint64
	lastActive atomic.Int64 // monotonic nanoseconds since start
	// writing counts the directions in a write: bytes waiting for the
	// peer to take them (a slow client, a zero window). The flow is not
	// idle while it is above zero.
	writing atomic.Int32
	start   time.Time
	fins    atomic.Uint32 // finClient, finServer: the FINs read (and passed on)
}

// touch records activity now.
func (m *meter) touch() { m.lastActive.Store(int64(time.Since(m.start))) }

// pipe is the state of one flow being copied.
type pipe struct {
	client, server flow.Conn
	stats          pipeStats
	*meter
	running   atomic.Int32 // copy directions still running
	stopWatch func() bool  // stops watching ctx
	idleTimer *time.Timer
	done      func(pipeResult)

	once sync.Once
	end  End
	err  error
}

// The bits of pipe.fins.
const (
	finClient uint32 = 1 << iota // the client's FIN: client to server is over
	finServer                    // the server's FIN: server to client is over
)

// startPipe copies between client and server until both directions are
// finished, either side resets, the flow is idle in both directions for idle
// (zero or negative: never), or ctx is cancelled. A FIN from one side
// becomes CloseWrite on the other while the other direction keeps flowing; a
// RST or error on one side becomes Abort (RST) on the other. Both
// connections are closed when the flow is over.
//
// It copies on two goroutines of its own and calls done, from one of them,
// when the flow is over. The caller's
// goroutine, whose stack may have grown deep while setting the flow up, is
// free to end: an idle flow then holds only two shallow goroutines.
func startPipe(ctx context.Context, client, server flow.Conn, idle time.Duration, stats pipeStats, done func(pipeResult)) *pipe {
	p := newPipe(client, server, stats, done)
	p.run(ctx, idle)
	return p
}

// newPipe returns the pipe of a flow between client and server, not yet
// copying (run starts it).
func newPipe(client, server flow.Conn, stats pipeStats, done func(pipeResult)) *pipe {
	return newMeteredPipe(client, server, &meter{start: time.Now()}, stats, done)
}

// newMeteredPipe returns the pipe of a flow that has moved what m says
// already (an App's flow handed back, ErrPlain), counting on in m.
func newMeteredPipe(client, server flow.Conn, m *meter, stats pipeStats, done func(pipeResult)) *pipe {
	return &pipe{client: client, server: server, stats: stats, meter: m, done: done}
}

// run starts copying, as startPipe says.
func (p *pipe) run(ctx context.Context, idle time.Duration) {
	p.stopWatch = context.AfterFunc(ctx, func() { p.fail(EndShutdown, ctx.Err()) })
	if idle > 0 {
		p.idleTimer = p.startIdleTimer(idle)
	}
	p.running.Store(2)
	go p.direction(p.server, p.client, &p.c2s, p.stats.ClientToServer, finClient, EndClientReset, EndServerReset)
	go p.direction(p.client, p.server, &p.s2c, p.stats.ServerToClient, finServer, EndServerReset, EndClientReset)
}

// direction copies one direction; the last direction to finish ends the
// flow.
func (p *pipe) direction(dst, src flow.Conn, n *atomic.Uint64, live *atomic.Uint64, fin uint32, srcEnd, dstEnd End) {
	p.copy(dst, src, n, live, fin, srcEnd, dstEnd)
	if p.running.Add(-1) > 0 {
		return
	}
	p.stopWatch()
	if p.idleTimer != nil {
		p.idleTimer.Stop()
	}
	p.once.Do(func() {
		p.end = EndClosed
		p.client.Close()
		p.server.Close()
	})
	p.done(pipeResult{ClientToServer: p.c2s.Load(), ServerToClient: p.s2c.Load(), End: p.end, Err: p.err})
}

// copy moves bytes from src to dst. fin is the bit of p.fins that src's FIN
// sets; srcEnd and dstEnd name the end of the flow when src or dst fails.
func (p *pipe) copy(dst, src flow.Conn, n *atomic.Uint64, live *atomic.Uint64, fin uint32, srcEnd, dstEnd End) {
	pooled, _ := src.(pooledReader)
	waiter, _ := src.(readWaiter)
	drained := true // the last read did not fill the buffer: wait before the next
	for {
		var bp *[]byte
		var nr int
		var rerr error
		if pooled != nil {
			bp, nr, rerr = pooled.ReadPooled()
		} else {
			if waiter != nil && drained {
				if err := waiter.WaitRead(); err != nil {
					p.fail(srcEnd, err)
					return
				}
			}
			bp = bufferPool.Get().(*[]byte)
			nr, rerr = src.Read(*bp)
			drained = nr < len(*bp)
		}
		if nr > 0 {
			p.touch()
			p.writing.Add(1)
			nw, werr := dst.Write((*bp)[:nr])
			p.touch()
			p.writing.Add(-1)
			n.Add(uint64(nw))
			if live != nil {
				live.Add(uint64(nw))
			}
			if werr != nil {
				bufferPool.Put(bp)
				p.fail(dstEnd, werr)
				return
			}
		}
		if bp != nil {
			bufferPool.Put(bp)
		}
		switch {
		case rerr == nil:
		case errors.Is(rerr, io.EOF):
			// Half-close: pass the FIN on, keep the other direction.
			p.fins.Or(fin)
			if err := dst.CloseWrite(); err != nil {
				p.fail(dstEnd, err)
			}
			return
		default:
			p.fail(srcEnd, rerr)
			return
		}
	}
}

// fail ends the flow abnormally, once: both sides are reset so that each
// peer learns the flow is gone, which unblocks the other copy direction.
func (p *pipe) fail(end End, err error) {
	p.once.Do(func() {
		p.end, p.err = end, err
		p.client.Abort()
		p.server.Abort()
	})
}

// startIdleTimer arms a timer that fails the flow once nothing has moved in
// either direction for idle: nothing read, and nothing waiting to be
// written (bytes a slow peer has not taken yet are not idleness). It
// re-arms itself for the remaining time instead of being reset on every
// read.
func (p *pipe) startIdleTimer(idle time.Duration) *time.Timer {
	var t *time.Timer
	t = time.AfterFunc(time.Duration(1<<62), func() {
		quiet := time.Since(p.start) - time.Duration(p.lastActive.Load())
		if p.writing.Load() > 0 {
			quiet = 0
		}
		if quiet >= idle {
			p.fail(EndIdleTimeout, errIdle)
			return
		}
		t.Reset(max(idle-quiet, 10*time.Millisecond))
	})
	t.Reset(idle) // after t is assigned, so the callback always sees it
	return t
}

var errIdle = errors.New("idle timeout")

// progress returns what the flow has moved each way so far, how long
// nothing has moved either way as of now, and the FINs read (m.fins). It
// only reads atomics: the copy loops never wait for it.
func (m *meter) progress(now time.Time) (c2s, s2c uint64, idle time.Duration, fins uint32) {
	idle = max(now.Sub(m.start)-time.Duration(m.lastActive.Load()), 0)
	if m.writing.Load() > 0 {
		idle = 0 // bytes are waiting for the peer: not idle
	}
	return m.c2s.Load(), m.s2c.Load(), idle, m.fins.Load()
}
