package codec

import (
	"math"
	"testing"
)

// TestSquashKnots checks the committed knots against the logistic function.
func TestSquashKnots(t *testing.T) {
	for i, k := range squashKnots {
		x := float64((i-128)*32) / 256
		if want := int32(math.Round(65536 / (1 + math.Exp(-x)))); k != want {
			t.Errorf("knot %d = %d, want %d", i, k, want)
		}
	}
}

func TestSquashStretch(t *testing.T) {
	prev := uint32(0)
	for x := int32(-stMax); x <= stMax; x++ {
		p := squash(x)
		if p < prev || p < probMin || p > probMax {
			t.Fatalf("squash(%d) = %d after %d", x, p, prev)
		}
		prev = p
		want := 65536 / (1 + math.Exp(-float64(x)/256))
		if d := math.Abs(float64(p) - want); d > 16 && d > want*0.002 {
			t.Errorf("squash(%d) = %d, logistic %.1f", x, p, want)
		}
	}
	for p := uint32(probMin); p <= probMax; p++ {
		x := stretch(p)
		if squash(x) < p && x != stMax {
			t.Fatalf("squash(stretch(%d)) = %d", p, squash(x))
		}
		if x > -stMax && squash(x-1) >= p {
			t.Fatalf("stretch(%d) = %d is not the smallest", p, x)
		}
	}
}
