package codec

import (
	"math/rand/v2"
	"testing"
)

// arithRoundTrip codes bits with probs and checks the decoder returns them.
func arithRoundTrip(t *testing.T, name string, bits []int, probs []uint32) int {
	t.Helper()
	e := newArithEncoder(nil)
	for i, b := range bits {
		e.encode(b, probs[i])
	}
	stream := e.finish(0)
	d := newArithDecoder(stream)
	for i, b := range bits {
		if got := d.decode(probs[i]); got != b {
			t.Fatalf("%s: bit %d decoded as %d, want %d", name, i, got, b)
		}
	}
	return len(stream)
}

func TestArithRoundTrip(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for _, tc := range []struct {
		name string
		n    int
		prob func(i int) uint32
		bit  func(i int, p uint32) int
	}{
		{"random-p-random-bits", 100000, func(int) uint32 { return 1 + rng.Uint32N(65535) },
			func(int, uint32) int { return int(rng.Uint32N(2)) }},
		{"random-p-matching-bits", 100000, func(int) uint32 { return 1 + rng.Uint32N(65535) },
			func(_ int, p uint32) int { return b2i(rng.Uint32N(65536) < p) }},
		{"p-min-all-zero", 50000, func(int) uint32 { return probMin }, func(int, uint32) int { return 0 }},
		{"p-max-all-one", 50000, func(int) uint32 { return probMax }, func(int, uint32) int { return 1 }},
		{"p-min-all-one", 2000, func(int) uint32 { return probMin }, func(int, uint32) int { return 1 }},
		{"p-max-all-zero", 2000, func(int) uint32 { return probMax }, func(int, uint32) int { return 0 }},
		{"p-extreme-mixed", 50000, func(i int) uint32 { return []uint32{probMin, probMax}[i%2] },
			func(int, uint32) int { return int(rng.Uint32N(2)) }},
		{"p-extreme-rare-surprise", 50000, func(i int) uint32 { return []uint32{probMin, probMax}[i%2] },
			func(i int, p uint32) int { return b2i((p == probMax) != (rng.Uint32N(1000) == 0)) }},
		{"p-half", 10000, func(int) uint32 { return 32768 }, func(int, uint32) int { return int(rng.Uint32N(2)) }},
		{"single-bit-0", 1, func(int) uint32 { return 32768 }, func(int, uint32) int { return 0 }},
		{"single-bit-1", 1, func(int) uint32 { return 32768 }, func(int, uint32) int { return 1 }},
		{"empty", 0, nil, nil},
	} {
		bits := make([]int, tc.n)
		probs := make([]uint32, tc.n)
		for i := range bits {
			probs[i] = tc.prob(i)
			bits[i] = tc.bit(i, probs[i])
		}
		n := arithRoundTrip(t, tc.name, bits, probs)
		t.Logf("%s: %d bits -> %d bytes", tc.name, tc.n, n)
	}
}

// TestArithSize checks the coder's cost is close to the information content.
func TestArithSize(t *testing.T) {
	// p = 65535/65536 for 50000 correctly predicted bits: 50000*log2(65536/65535) = 1.1 bits.
	bits := make([]int, 50000)
	probs := make([]uint32, 50000)
	for i := range bits {
		bits[i], probs[i] = 1, probMax
	}
	if n := arithRoundTrip(t, "max", bits, probs); n > 2 {
		t.Errorf("50000 sure bits cost %d bytes", n)
	}
	// Fair bits: 8 per byte.
	rng := rand.New(rand.NewPCG(3, 4))
	bits = make([]int, 80000)
	probs = make([]uint32, 80000)
	for i := range bits {
		bits[i], probs[i] = int(rng.Uint32N(2)), 32768
	}
	if n := arithRoundTrip(t, "fair", bits, probs); n > 10000+4 {
		t.Errorf("80000 fair bits cost %d bytes", n)
	}
}

// TestArithDecoderHostile decodes random and empty streams: no panic, deterministic.
func TestArithDecoderHostile(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	for n := 0; n < 40; n++ {
		src := make([]byte, n)
		for i := range src {
			src[i] = byte(rng.Uint32())
		}
		d := newArithDecoder(src)
		for i := 0; i < 20000; i++ {
			d.decode(1 + rng.Uint32N(65535))
		}
	}
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}
