package stack

import (
	"testing"
	"time"
)

// TestSipHash24 checks SipHash-2-4 against the reference vectors (key 00
// 01 .. 0f, message 00 01 .. of each length; the paper's appendix A is the
// 15-byte one) and the 40-byte length the cookie hashes.
func TestSipHash24(t *testing.T) {
	var key [16]byte
	var msg [64]byte
	for i := range msg {
		msg[i] = byte(i)
		if i < 16 {
			key[i] = byte(i)
		}
	}
	k0, k1 := uint64(0x0706050403020100), uint64(0x0f0e0d0c0b0a0908)
	for n, want := range map[int]uint64{
		0: 0x726fdb47dd0e0e31, 1: 0x74f839c593dc67fd, 15: 0xa129ca6149be45e5,
		40: 0x0e3ea96b5304a7d0, 63: 0x958a324ceb064572,
	} {
		if got := sipHash24(k0, k1, msg[:n]); got != want {
			t.Errorf("SipHash-2-4 of %d bytes = %#x; want %#x", n, got, want)
		}
	}
}

// testCookieKey returns a cookie key whose epoch is an hour ago, so that tests
// can go back a slot or two.
func testCookieKey() cookieKey {
	k := newCookieKey()
	k.epoch = k.epoch.Add(-time.Hour)
	return k
}

// TestCookieSlots: a cookie is accepted in its own time slot and the next,
// flipped or not, and rejected two slots later, for another 4-tuple, or off
// by one.
func TestCookieSlots(t *testing.T) {
	k := testCookieKey()
	fk := makeKey(make([]byte, 16), []byte("faith-address-16"), 40000, 80)
	other := makeKey(make([]byte, 16), []byte("faith-address-16"), 40001, 80)
	start := k.epoch.Add(10 * cookieSlot) // the start of slot 10
	at := start.Add(cookieSlot / 2)
	ack, _ := k.cookieFor(&fk, 1000, 0, at)
	for _, tc := range []struct {
		name string
		fk   *flowKey
		seq  uint32
		now  time.Time
		want bool
	}{
		{"same slot", &fk, ack, at, true},
		{"same slot, its last nanosecond", &fk, ack, start.Add(cookieSlot - 1), true},
		{"next slot", &fk, ack, start.Add(cookieSlot), true},
		{"next slot, its end", &fk, ack, start.Add(2*cookieSlot - 1), true},
		{"flipped", &fk, ack ^ cookieFlip, at, true},
		{"two slots later", &fk, ack, start.Add(2 * cookieSlot), false},
		{"the slot before", &fk, ack, start.Add(-1), false},
		{"another 4-tuple", &other, ack, at, false},
		{"off by one", &fk, ack + 1, at, false},
	} {
		if got := k.matches(tc.fk, tc.seq, tc.now); got != tc.want {
			t.Errorf("%s: matches = %v; want %v", tc.name, got, tc.want)
		}
	}
	if k2 := testCookieKey(); k2.matches(&fk, ack, at) {
		t.Error("another Stack's key accepts the cookie")
	}
}

// TestCookieNeverAcceptable: whatever the client's ISN and SYN data, the
// challenge's ACK is never one the client would accept (ISN+1 to
// ISN+1+data), and the cookie so flipped is still accepted in the RST.
func TestCookieNeverAcceptable(t *testing.T) {
	k := testCookieKey()
	fk := makeKey(make([]byte, 16), []byte("faith-address-16"), 40000, 80)
	now := time.Now()
	// The plain cookie of a SYN whose ISN+1 it is not (for one ISN in
	// 2^32 it is; then the next ISN is taken).
	isn := uint32(0x10000000)
	plain, _ := k.cookieFor(&fk, isn, 0, now)
	if plain == isn+1 {
		isn++
		plain, _ = k.cookieFor(&fk, isn, 0, now)
	}
	for _, tc := range []struct {
		name    string
		isn     uint32
		dataLen int
	}{
		{"ISN+1 is the cookie", plain - 1, 0},
		{"the cookie inside a Fast Open SYN's data", plain - 100, 1000},
		{"the cookie is SND.NXT after the data", plain - 1001, 1000},
	} {
		ack, _ := k.cookieFor(&fk, tc.isn, tc.dataLen, now)
		if d := ack - (tc.isn + 1); d <= uint32(tc.dataLen) {
			t.Errorf("%s: ACK %#x acceptable for ISN %#x with %d bytes", tc.name, ack, tc.isn, tc.dataLen)
		}
		if ack != plain^cookieFlip {
			t.Errorf("%s: ACK %#x; want the cookie flipped, %#x", tc.name, ack, plain^cookieFlip)
		}
		if !k.matches(&fk, ack, now) {
			t.Errorf("%s: the flipped cookie is not accepted", tc.name)
		}
	}
	// Just outside the acceptable range, the cookie is not flipped.
	if ack, _ := k.cookieFor(&fk, plain-1002, 1000, now); ack != plain {
		t.Errorf("ACK %#x for a cookie one past the SYN's data; want it unchanged, %#x", ack, plain)
	}
}

// TestTokenBucket: a burst, then the rate.
func TestTokenBucket(t *testing.T) {
	b := tokenBucket{rate: 10, burst: 5}
	now := time.Now()
	n := 0
	for range 20 {
		if b.take(now) {
			n++
		}
	}
	if n != 5 {
		t.Errorf("%d tokens at once; want the burst, 5", n)
	}
	if !b.take(now.Add(100*time.Millisecond)) || b.take(now.Add(100*time.Millisecond)) {
		t.Error("want one token after 100 ms at 10/s")
	}
	n = 0
	for i := range 100 {
		if b.take(now.Add(time.Second + time.Duration(i)*10*time.Millisecond)) {
			n++
		}
	}
	// The burst saved over the 900 ms before, then 10 a second.
	if n < 14 || n > 16 {
		t.Errorf("%d tokens in a second at 10/s after a pause; want about 5+10", n)
	}
}
