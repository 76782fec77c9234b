package stack

import (
	"runtime"
	"testing"
	"time"
)

// addrN returns a distinct address for n.
func addrN(n int) [16]byte {
	var a [16]byte
	a[0], a[1] = 0x20, 0x01
	a[12], a[13], a[14], a[15] = byte(n>>24), byte(n>>16), byte(n>>8), byte(n)
	return a
}

// TestValidSetBound: at most max addresses; the oldest is forgotten for a
// new one; an address validated again is not forgotten as its old entry
// comes round; an emptied set gives its ring back.
func TestValidSetBound(t *testing.T) {
	v := validSet{max: 4, ttl: time.Hour}
	v.add(addrN(0), 0)
	v.add(addrN(1), 1)
	v.add(addrN(0), 2) // validated again: a new entry, the old passed over
	v.add(addrN(2), 3)
	if v.len() != 3 || v.n != 4 {
		t.Fatalf("len %d, entries %d; want 3 addresses in 4 entries", v.len(), v.n)
	}
	v.add(addrN(3), 4) // the ring is full: its oldest entry, 0's old one, goes
	if !v.contains(addrN(0), 5) {
		t.Fatal("address 0, validated again, is forgotten with its old entry")
	}
	v.add(addrN(4), 5) // forgets the oldest address: 1
	for i, want := range []bool{true, false, true, true, true} {
		if got := v.contains(addrN(i), 6); got != want {
			t.Errorf("contains %d = %v; want %v", i, got, want)
		}
	}
	if v.len() != 4 || v.n != 4 {
		t.Errorf("len %d, entries %d; want 4, 4", v.len(), v.n)
	}
	for i := 10; i < 100; i++ {
		v.add(addrN(i), time.Duration(i))
		if v.len() > 4 || v.n > 4 || len(v.ring) > 4 {
			t.Fatalf("len %d, entries %d, ring %d; want at most 4", v.len(), v.n, len(v.ring))
		}
	}
	for i := 96; i < 100; i++ {
		if !v.contains(addrN(i), 100) {
			t.Errorf("the newest, %d, is not kept", i)
		}
	}
}

// TestValidSetExpiry: an address is validated for ttl; the sweep forgets
// the expired ones and gives the ring back once empty.
func TestValidSetExpiry(t *testing.T) {
	v := validSet{max: 8, ttl: time.Minute}
	v.add(addrN(1), 0)
	v.add(addrN(2), 30*time.Second)
	if !v.contains(addrN(1), time.Minute-1) || v.contains(addrN(1), time.Minute) {
		t.Error("address 1 not validated for exactly a minute")
	}
	v.sweep(time.Minute)
	if v.len() != 1 || !v.contains(addrN(2), time.Minute) {
		t.Errorf("after the sweep at 1 min: len %d, 2 kept %v; want 1, true", v.len(), v.contains(addrN(2), time.Minute))
	}
	v.sweep(90 * time.Second)
	if v.len() != 0 || v.ring != nil || v.n != 0 {
		t.Errorf("after the last expired: len %d, ring %d, entries %d; want all 0", v.len(), len(v.ring), v.n)
	}
	v.add(addrN(3), 2*time.Minute)
	if !v.contains(addrN(3), 2*time.Minute) {
		t.Error("an address added after the set emptied is not kept")
	}
}

// TestValidSetMemory measures the full set's heap (validMax addresses) and
// checks it against the bound the README and validMax's comment state,
// about 1 MiB; the sweep after the entries expire gives it back.
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
		v.add(addrN(i), 0)
	}
	full := heap()
	if v.len() != validMax {
		t.Fatalf("len %d; want %d", v.len(), validMax)
	}
	used := int64(full) - int64(before)
	t.Logf("%d addresses: %d KiB, %d bytes each", validMax, used>>10, used/validMax)
	if used > 3<<19 {
		t.Errorf("the full set takes %d KiB; want at most 1.5 MiB", used>>10)
	}
	v.sweep(validTTL)
	if after := heap(); int64(after)-int64(before) > 64<<10 {
		t.Errorf("%d KiB left after every address expired; want it given back", (int64(after)-int64(before))>>10)
	}
	runtime.KeepAlive(v)
}
