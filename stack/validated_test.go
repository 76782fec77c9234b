package stack

import (
	"runtime"
	"testing"
	"time"
)

// addrIn returns host's address in /64 number net.
func addrIn(net, host int) [16]byte {
	var a [16]byte
	a[0], a[1] = 0x20, 0x01
	a[4], a[5], a[6], a[7] = byte(net>>24), byte(net>>16), byte(net>>8), byte(net)
	a[12], a[13], a[14], a[15] = byte(host>>24), byte(host>>16), byte(host>>8), byte(host)
	return a
}

// mustAdd adds a and checks what add reports.
func mustAdd(t *testing.T, v *validSet, a [16]byte, now time.Duration, fresh, counts bool) {
	t.Helper()
	f, c := v.add(a, now)
	if f != fresh || c != counts {
		t.Fatalf("add %x at %v: fresh %v, counts %v; want %v, %v", a, now, f, c, fresh, counts)
	}
}

// TestValidSetBound: at most max addresses; beyond, the oldest address of
// the /64 with the most goes, so a holder of many addresses forgets its
// own before a client alone in its /64 is forgotten.
func TestValidSetBound(t *testing.T) {
	v := validSet{max: 4, perNet: 100, ttl: time.Hour}
	mustAdd(t, &v, addrIn(1, 1), 0, true, true)
	mustAdd(t, &v, addrIn(2, 1), 1, true, true)
	mustAdd(t, &v, addrIn(2, 2), 2, true, true)
	mustAdd(t, &v, addrIn(3, 1), 3, true, true)
	// Full: /64 2 has the most; its oldest, (2,1), goes.
	mustAdd(t, &v, addrIn(4, 1), 4, true, true)
	for _, c := range []struct {
		net, host int
		want      bool
	}{{1, 1, true}, {2, 1, false}, {2, 2, true}, {3, 1, true}, {4, 1, true}} {
		if got := v.contains(addrIn(c.net, c.host), 5); got != c.want {
			t.Errorf("contains (%d,%d) = %v; want %v", c.net, c.host, got, c.want)
		}
	}
	// Every /64 has one: the oldest-sized of them, /64 1 (sized 1 first,
	// when it was added), goes.
	mustAdd(t, &v, addrIn(5, 1), 6, true, true)
	if v.contains(addrIn(1, 1), 7) || v.len() != 4 {
		t.Errorf("after a fifth /64: (1,1) kept %v, len %d; want false, 4", v.contains(addrIn(1, 1), 7), v.len())
	}
	// A flood of one /64's addresses forgets only its own: the full set's
	// other /64s stay, and its addresses do not count as answers once it
	// forgets its own.
	for i := range 100 {
		fresh, _ := v.add(addrIn(9, i), time.Duration(10+i))
		if !fresh {
			t.Fatalf("(9,%d) not fresh", i)
		}
		if v.len() > 4 || len(v.ents) > 4 {
			t.Fatalf("len %d, entries %d; want at most 4", v.len(), len(v.ents))
		}
	}
	kept := 0
	for _, n := range []int{2, 3, 4, 5} {
		if v.contains(addrIn(n, 1), 200) || v.contains(addrIn(n, 2), 200) {
			kept++
		}
	}
	if kept != 2 || !v.contains(addrIn(9, 99), 200) || !v.contains(addrIn(9, 98), 200) {
		t.Errorf("after 100 addresses of one /64: %d other /64s kept, (9,99) %v, (9,98) %v; want 2, true, true",
			kept, v.contains(addrIn(9, 99), 200), v.contains(addrIn(9, 98), 200))
	}
}

// TestValidSetPerNet: at most perNet addresses of one /64; a new one
// forgets the /64's oldest, never another /64's, and does not count as an
// answer against a flood.
func TestValidSetPerNet(t *testing.T) {
	v := validSet{max: 100, perNet: 3, ttl: time.Hour}
	mustAdd(t, &v, addrIn(1, 1), 0, true, true)
	for i := range 3 {
		mustAdd(t, &v, addrIn(2, i), time.Duration(1+i), true, true)
	}
	mustAdd(t, &v, addrIn(2, 3), 4, true, false) // forgets (2,0)
	mustAdd(t, &v, addrIn(2, 4), 5, true, false) // forgets (2,1)
	for _, c := range []struct {
		net, host int
		want      bool
	}{{1, 1, true}, {2, 0, false}, {2, 1, false}, {2, 2, true}, {2, 3, true}, {2, 4, true}} {
		if got := v.contains(addrIn(c.net, c.host), 6); got != c.want {
			t.Errorf("contains (%d,%d) = %v; want %v", c.net, c.host, got, c.want)
		}
	}
	if v.len() != 4 {
		t.Errorf("len %d; want 4", v.len())
	}
}

// TestValidSetReplay: an address validated less than half ttl ago is left
// as it is: not fresh, not counted, its expiry not moved; later it is
// validated anew, the newest.
func TestValidSetReplay(t *testing.T) {
	v := validSet{max: 2, perNet: 10, ttl: time.Minute}
	mustAdd(t, &v, addrIn(1, 1), 0, true, true)
	mustAdd(t, &v, addrIn(2, 1), time.Second, true, true)
	for i := range 10 {
		mustAdd(t, &v, addrIn(1, 1), time.Duration(2+i)*time.Second, false, false)
	}
	if v.contains(addrIn(1, 1), time.Minute) {
		t.Error("replays moved the expiry of (1,1)")
	}
	mustAdd(t, &v, addrIn(1, 1), 30*time.Second, true, true) // half ttl: anew
	if !v.contains(addrIn(1, 1), 89*time.Second) || v.len() != 2 {
		t.Errorf("(1,1) validated anew at 30 s: kept at 89 s %v, len %d; want true, 2", v.contains(addrIn(1, 1), 89*time.Second), v.len())
	}
	// (1,1) is now the newest: a third /64 forgets (2,1).
	mustAdd(t, &v, addrIn(3, 1), 31*time.Second, true, true)
	if v.contains(addrIn(2, 1), 32*time.Second) || !v.contains(addrIn(1, 1), 32*time.Second) {
		t.Error("the set forgot (1,1), validated anew, before the older (2,1)")
	}
}

// TestValidSetExpiry: an address is validated for ttl; the sweep forgets
// the expired ones and gives the lists back once empty.
func TestValidSetExpiry(t *testing.T) {
	v := validSet{max: 8, ttl: time.Minute}
	v.add(addrIn(1, 1), 0)
	v.add(addrIn(1, 2), 30*time.Second)
	if !v.contains(addrIn(1, 1), time.Minute-1) || v.contains(addrIn(1, 1), time.Minute) {
		t.Error("address 1 not validated for exactly a minute")
	}
	v.sweep(time.Minute)
	if v.len() != 1 || !v.contains(addrIn(1, 2), time.Minute) {
		t.Errorf("after the sweep at 1 min: len %d, 2 kept %v; want 1, true", v.len(), v.contains(addrIn(1, 2), time.Minute))
	}
	v.sweep(90 * time.Second)
	if v.len() != 0 || v.ents != nil || v.netv != nil || len(v.nets) != 0 {
		t.Errorf("after the last expired: len %d, entries %d, /64s %d; want all 0", v.len(), len(v.ents), len(v.netv))
	}
	v.add(addrIn(1, 3), 2*time.Minute)
	if !v.contains(addrIn(1, 3), 2*time.Minute) {
		t.Error("an address added after the set emptied is not kept")
	}
}

// TestValidSetMemory measures the full set's heap (validMax addresses,
// each in a /64 of its own: the most it can take) and checks it against
// the bound validMax's comment and the README state, 2.5 MiB; the sweep
// after the entries expire gives it back.
func TestValidSetMemory(t *testing.T) {
	heap := func() uint64 {
		runtime.GC()
		var m runtime.MemStats
		runtime.ReadMemStats(&m)
		return m.HeapAlloc
	}
	v := &validSet{}
	before := heap()
	for i := range 3 * validMax {
		v.add(addrIn(i, 1), 0)
	}
	full := heap()
	if v.len() != validMax {
		t.Fatalf("len %d; want %d", v.len(), validMax)
	}
	used := int64(full) - int64(before)
	t.Logf("%d addresses: %d KiB, %d bytes each", validMax, used>>10, used/validMax)
	if used > 5<<19 {
		t.Errorf("the full set takes %d KiB; want at most 2.5 MiB", used>>10)
	}
	v.sweep(validTTL)
	if after := heap(); int64(after)-int64(before) > 64<<10 {
		t.Errorf("%d KiB left after every address expired; want it given back", (int64(after)-int64(before))>>10)
	}
	runtime.KeepAlive(v)
}
