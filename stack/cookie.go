package stack

import (
	"crypto/rand"
	"encoding/binary"
	"math/bits"
	"sync"
	"time"
)

// The SYN challenge's cookie (challenge.go): the ACK number of a challenge
// SYN-ACK, which a client in SYN-SENT sends back as the sequence number of
// its RST. It is a keyed hash (SipHash-2-4, a secret drawn from crypto/rand
// per Stack) of the 4-tuple and a coarse time slot, so that the RST can be
// checked without keeping anything per challenge, and a source that never
// received the SYN-ACK (a spoofed one) cannot make it.
const (
	// cookieSlot is the time slot in the cookie. A RST is accepted in the
	// slot of its challenge and the next: 64 to 128 s, more than any
	// round trip.
	cookieSlot = 64 * time.Second
	// cookieFlip is XORed into a cookie that the client would accept as
	// the ACK of its SYN (see cookieFor): then it is at least 2^31 - 2^16
	// away from that range.
	cookieFlip = 1 << 31
)

// cookieKey is the secret of one Stack's cookies, and the monotonic epoch
// its time slots count from.
type cookieKey struct {
	k0, k1 uint64
	epoch  time.Time
}

// newCookieKey returns a key with a fresh secret. crypto/rand.Read does
// not fail (it crashes the program if the kernel has no randomness).
func newCookieKey() cookieKey {
	var b [16]byte
	rand.Read(b[:])
	return cookieKey{k0: binary.LittleEndian.Uint64(b[:8]), k1: binary.LittleEndian.Uint64(b[8:]), epoch: time.Now()}
}

// slot returns the time slot of now.
func (k *cookieKey) slot(now time.Time) uint32 {
	return uint32(now.Sub(k.epoch) / cookieSlot)
}

// hash returns SipHash-2-4 of the flow key (client address, FAITH
// address, client port, FAITH port) and slot: its low half is the cookie,
// its high half the challenge's own sequence number.
func (k *cookieKey) hash(fk *flowKey, slot uint32) uint64 {
	var m [40]byte
	copy(m[:], fk[:])
	binary.LittleEndian.PutUint32(m[36:], slot)
	return sipHash24(k.k0, k.k1, m[:])
}

// cookieFor returns the challenge's ACK number (the cookie) and sequence
// number for a SYN of flow fk with initial sequence number isn and synLen
// bytes of payload, at now. A client in SYN-SENT accepts a SYN-ACK whose
// ACK lies in (ISS, SND.NXT], ISN+1 to ISN+1+synLen (RFC 9293 3.10.7.3;
// more than ISN+1 only for a SYN with data, TCP Fast Open): such a cookie
// would complete the client's handshake with a SYN-ACK that no endpoint
// stands behind, so it is flipped out of that range.
func (k *cookieKey) cookieFor(fk *flowKey, isn uint32, synLen int, now time.Time) (ack, seq uint32) {
	h := k.hash(fk, k.slot(now))
	ack, seq = uint32(h), uint32(h>>32)
	if ack-(isn+1) <= uint32(synLen) {
		ack ^= cookieFlip
	}
	return ack, seq
}

// matches reports whether seq, the sequence number of a RST of flow fk at
// now, is a cookie of fk from now's slot or the one before, flipped or
// not: a blind guess succeeds with probability 4 in 2^32.
func (k *cookieKey) matches(fk *flowKey, seq uint32, now time.Time) bool {
	slot := k.slot(now)
	for i := range uint32(2) {
		if i == 1 && slot == 0 {
			break
		}
		c := uint32(k.hash(fk, slot-i))
		if seq == c || seq == c^cookieFlip {
			return true
		}
	}
	return false
}

// sipHash24 returns SipHash-2-4 (Aumasson and Bernstein, 2012) of m with
// the key (k0, k1): a keyed hash that an attacker who does not know the
// key cannot predict. It does not allocate.
func sipHash24(k0, k1 uint64, m []byte) uint64 {
	v0 := k0 ^ 0x736f6d6570736575
	v1 := k1 ^ 0x646f72616e646f6d
	v2 := k0 ^ 0x6c7967656e657261
	v3 := k1 ^ 0x7465646279746573
	n := len(m)
	for ; len(m) >= 8; m = m[8:] {
		w := binary.LittleEndian.Uint64(m)
		v3 ^= w
		v0, v1, v2, v3 = sipRound(v0, v1, v2, v3)
		v0, v1, v2, v3 = sipRound(v0, v1, v2, v3)
		v0 ^= w
	}
	last := uint64(n) << 56
	for i, b := range m {
		last |= uint64(b) << (8 * i)
	}
	v3 ^= last
	v0, v1, v2, v3 = sipRound(v0, v1, v2, v3)
	v0, v1, v2, v3 = sipRound(v0, v1, v2, v3)
	v0 ^= last
	v2 ^= 0xff
	for range 4 {
		v0, v1, v2, v3 = sipRound(v0, v1, v2, v3)
	}
	return v0 ^ v1 ^ v2 ^ v3
}

// sipRound is one SipRound.
func sipRound(v0, v1, v2, v3 uint64) (uint64, uint64, uint64, uint64) {
	v0 += v1
	v1 = bits.RotateLeft64(v1, 13) ^ v0
	v0 = bits.RotateLeft64(v0, 32)
	v2 += v3
	v3 = bits.RotateLeft64(v3, 16) ^ v2
	v0 += v3
	v3 = bits.RotateLeft64(v3, 21) ^ v0
	v2 += v1
	v1 = bits.RotateLeft64(v1, 17) ^ v2
	v2 = bits.RotateLeft64(v2, 32)
	return v0, v1, v2, v3
}

// tokenBucket is a rate limit: rate tokens a second, at most burst saved.
type tokenBucket struct {
	rate, burst float64

	mu     sync.Mutex
	tokens float64
	last   time.Time
}

// take takes a token at now and reports whether there was one.
func (b *tokenBucket) take(now time.Time) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.last.IsZero() {
		b.tokens = b.burst
	} else if d := now.Sub(b.last); d > 0 {
		b.tokens = min(b.burst, b.tokens+d.Seconds()*b.rate)
	}
	b.last = now
	if b.tokens < 1 {
		return false
	}
	b.tokens--
	return true
}
