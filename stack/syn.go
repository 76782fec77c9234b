package stack

import (
	"sync"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
)

// synTable keeps each captured SYN until its flow is decided, so that a
// refusal can answer with an ICMPv6 error quoting the client's SYN: Linux
// accepts such an error for a connecting socket only if the quoted segment
// matches its 4-tuple and sequence number. gVisor's ForwarderRequest does not
// expose the SYN, hence this table beside it.
type synTable struct {
	mu sync.Mutex
	m  map[stack.TransportEndpointID]heldSYN
}

type heldSYN struct {
	pkt *stack.PacketBuffer
	at  time.Time
}

// synMaxAge bounds how long a SYN the forwarder dropped (over its in-flight
// limit) stays in the table.
const synMaxAge = 30 * time.Second

// put keeps a reference to pkt if it is a SYN and none is held for id.
func (t *synTable) put(id stack.TransportEndpointID, pkt *stack.PacketBuffer) {
	th := header.TCP(pkt.TransportHeader().Slice())
	if len(th) < header.TCPMinimumSize || th.Flags()&(header.TCPFlagSyn|header.TCPFlagAck) != header.TCPFlagSyn {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if _, ok := t.m[id]; ok {
		return
	}
	if t.m == nil {
		t.m = make(map[stack.TransportEndpointID]heldSYN)
	}
	t.m[id] = heldSYN{pkt: pkt.IncRef(), at: time.Now()}
}

// take removes and returns the SYN held for id, or nil. The caller owns
// the reference.
func (t *synTable) take(id stack.TransportEndpointID) *stack.PacketBuffer {
	t.mu.Lock()
	defer t.mu.Unlock()
	h, ok := t.m[id]
	if !ok {
		return nil
	}
	delete(t.m, id)
	return h.pkt
}

// sweep drops SYNs older than synMaxAge (all of them when all is true).
func (t *synTable) sweep(all bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for id, h := range t.m {
		if all || time.Since(h.at) > synMaxAge {
			h.pkt.DecRef()
			delete(t.m, id)
		}
	}
}
