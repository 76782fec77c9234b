package relay

import (
	"net/netip"
	"testing"
)

func TestClientLimiter(t *testing.T) {
	l := &clientLimiter{limits: Limits{MaxFlows: 3, MaxHandshakes: 2}}
	a := clientOf(netip.MustParseAddr("2001:db8:1::2"))
	if b := clientOf(netip.MustParseAddr("2001:db8:1::ffff")); a != b {
		t.Fatalf("two addresses in one /64 are two clients: %s, %s", a, b)
	}
	other := clientOf(netip.MustParseAddr("2001:db8:2::2"))

	mustAdmit := func(c netip.Prefix, want bool, wantLimit string) {
		t.Helper()
		ok, limit := l.admit(c)
		if ok != want || limit != wantLimit {
			t.Fatalf("admit(%s) = %v, %q; want %v, %q", c, ok, limit, want, wantLimit)
		}
	}
	mustAdmit(a, true, "")
	mustAdmit(a, true, "")
	mustAdmit(a, false, "handshakes-per-client")
	mustAdmit(other, true, "") // another client is not affected
	l.established(a)
	l.established(a)
	mustAdmit(a, true, "") // 2 flows + 1 handshake = 3
	mustAdmit(a, false, "flows-per-client")
	l.done(a, false) // the handshake failed
	mustAdmit(a, true, "")
	l.established(a)
	l.done(a, true)
	l.done(a, true)
	l.done(a, true)
	l.done(other, false)
	if n := l.clients(); n != 0 {
		t.Fatalf("%d clients left after all flows ended; want 0", n)
	}
}
