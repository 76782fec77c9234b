package relay

import (
	"net/netip"
	"testing"
)

func TestClientLimiter(t *testing.T) {
	l := &clientLimiter{limits: Limits{MaxFlows: 3, MaxHandshakes: 2, MaxFlowsPerAddress: 3, MaxHandshakesPerAddress: 2}}
	a := netip.MustParseAddr("2001:db8:1::2")
	if clientOf(a) != clientOf(netip.MustParseAddr("2001:db8:1::ffff")) {
		t.Fatalf("two addresses in one /64 are two clients")
	}
	other := netip.MustParseAddr("2001:db8:2::2")

	mustAdmit := func(c netip.Addr, want bool, wantLimit string) {
		t.Helper()
		ok, limit := l.admit(c)
		if ok != want || limit != wantLimit {
			t.Fatalf("admit(%s) = %v, %q; want %v, %q", c, ok, limit, want, wantLimit)
		}
	}
	mustAdmit(a, true, "")
	mustAdmit(a, true, "")
	mustAdmit(a, false, "handshakes-per-address")
	mustAdmit(other, true, "") // another client is not affected
	l.established(a)
	l.established(a)
	mustAdmit(a, true, "") // 2 flows + 1 handshake = 3
	mustAdmit(a, false, "flows-per-address")
	l.done(a, false) // the handshake failed
	mustAdmit(a, true, "")
	l.established(a)
	l.done(a, true)
	l.done(a, true)
	l.done(a, true)
	l.done(other, false)
	if n := l.clients(); n != 0 || len(l.addrs.m) != 0 {
		t.Fatalf("%d clients, %d addresses left after all flows ended; want 0", n, len(l.addrs.m))
	}
}

// TestClientLimiterPerAddress: hosts of one /64 each get their own
// per-address limits, and together the /64's larger ones.
func TestClientLimiterPerAddress(t *testing.T) {
	l := &clientLimiter{limits: Limits{MaxFlows: 5, MaxHandshakes: 3, MaxFlowsPerAddress: 2, MaxHandshakesPerAddress: 1}}
	h := func(i byte) netip.Addr { return netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 15: i}) }
	for i, want := range []string{"", "handshakes-per-address"} {
		if ok, limit := l.admit(h(1)); ok != (want == "") || limit != want {
			t.Fatalf("host 1, handshake %d: %v %q; want %q", i, ok, limit, want)
		}
	}
	if ok, _ := l.admit(h(2)); !ok {
		t.Fatal("host 2 refused while host 1 is at its limit")
	}
	if ok, _ := l.admit(h(3)); !ok {
		t.Fatal("host 3 refused")
	}
	if ok, limit := l.admit(h(4)); ok || limit != "handshakes-per-client" {
		t.Fatalf("host 4, fourth handshake of the /64: %v %q; want handshakes-per-client", ok, limit)
	}
	for i := byte(1); i <= 3; i++ {
		l.established(h(i))
	}
	if ok, _ := l.admit(h(1)); !ok {
		t.Fatal("host 1's second flow refused")
	}
	l.established(h(1))
	if ok, limit := l.admit(h(1)); ok || limit != "flows-per-address" {
		t.Fatalf("host 1's third flow: %v %q; want flows-per-address", ok, limit)
	}
	if ok, _ := l.admit(h(4)); !ok {
		t.Fatal("host 4, fifth flow of the /64, refused")
	}
	if ok, limit := l.admit(h(5)); ok || limit != "flows-per-client" {
		t.Fatalf("host 5, sixth flow of the /64: %v %q; want flows-per-client", ok, limit)
	}
	l.done(h(4), false)
	for _, i := range []byte{1, 1, 2, 3} {
		l.done(h(i), true)
	}
	if l.clients() != 0 || len(l.addrs.m) != 0 {
		t.Fatalf("counts left: %v %v", l.nets.m, l.addrs.m)
	}
}

// TestClientLimiterShrinks: after a flood of many clients, the emptied
// maps are released.
func TestClientLimiterShrinks(t *testing.T) {
	l := &clientLimiter{limits: DefaultLimits()}
	var addrs []netip.Addr
	for i := range 2 * shrinkAbove {
		a := netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 6: byte(i >> 8), 7: byte(i), 15: 1})
		if ok, limit := l.admit(a); !ok {
			t.Fatalf("admit %s: %s", a, limit)
		}
		addrs = append(addrs, a)
	}
	for _, a := range addrs {
		l.done(a, false)
	}
	if l.nets.m != nil || l.addrs.m != nil {
		t.Fatal("maps kept after a flood")
	}
}

func TestLimitsDefaults(t *testing.T) {
	l := Limits{MaxFlows: 7}.withDefaults()
	want := DefaultLimits()
	want.MaxFlows = 7
	if l != want {
		t.Fatalf("withDefaults = %+v; want %+v", l, want)
	}
	if d := l.DialFirst(); d != DefaultMaxHandshakes/4 {
		t.Errorf("DialFirst = %d; want a quarter of %d", d, DefaultMaxHandshakes)
	}
	if d := (Limits{MaxHandshakesTotal: 2}).DialFirst(); d != 1 {
		t.Errorf("DialFirst of 2 handshakes = %d; want 1", d)
	}
}
