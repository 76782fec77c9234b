package faithif

import (
	"errors"
	"net/netip"
	"testing"
	"time"
)

// TestLocalNets: read when first asked, again on a miss at most once a
// second and whatever happens after half a minute; a failed reading keeps
// the last one.
func TestLocalNets(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	reads := 0
	nets := []netip.Prefix{netip.MustParsePrefix("2001:db8:1::/64")}
	var fail error
	l := &LocalNets{now: func() time.Time { return now }, list: func() ([]netip.Prefix, error) {
		reads++
		return nets, fail
	}}
	in, out := netip.MustParseAddr("2001:db8:1::2"), netip.MustParseAddr("2001:db8:2::2")
	if !l.Contains(in) || reads != 1 {
		t.Fatalf("first: reads %d", reads)
	}
	if l.Contains(out) || l.Contains(out) || reads != 1 {
		t.Errorf("misses within a second: reads %d, want 1", reads)
	}
	nets = append(nets, netip.MustParsePrefix("2001:db8:2::/64"))
	now = now.Add(time.Second)
	if !l.Contains(out) || reads != 2 {
		t.Errorf("a miss a second later: reads %d, want 2, and found", reads)
	}
	nets, fail = nil, errors.New("netlink down")
	now = now.Add(30 * time.Second)
	if !l.Contains(in) || reads != 3 {
		t.Errorf("after 30 s with a failed reading: reads %d, the last reading kept", reads)
	}
}

// TestLocalNetsReadsLoopback: the real reading has the loopback networks.
func TestLocalNetsReadsLoopback(t *testing.T) {
	l := NewLocalNets()
	if !l.Contains(netip.MustParseAddr("127.0.0.1")) || !l.Contains(netip.MustParseAddr("::ffff:127.0.0.9")) {
		t.Error("127.0.0.0/8 is not a local network")
	}
	if l.Contains(netip.MustParseAddr("2001:db8:ffff::1")) {
		t.Error("2001:db8:ffff::1 is a local network here?")
	}
}
