package codec

// Integer squash/stretch for the LM mixer. The logistic domain ("stretch" units) is
// ln(p/(1-p)) * 256, clamped to [-4095, 4095]; probabilities are 16-bit (P = p/65536).
//
// squash interpolates linearly between 257 committed knots (squashKnots[i] is
// round(65536/(1+exp(-(i-128)*32/256))), checked by TestSquashKnots); stretch is its exact
// integer inverse. No floating point runs outside tests, so every machine builds the same tables.

const (
	stMax = 4095 // |stretch| bound
)

var squashKnots = [257]int32{
	0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
	0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
	0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 1,
	1, 1, 1, 1, 1, 1, 1, 2, 2, 2, 2, 3,
	3, 3, 4, 4, 5, 6, 6, 7, 8, 9, 10, 12,
	13, 15, 17, 19, 22, 25, 28, 32, 36, 41, 47, 53,
	60, 68, 77, 87, 98, 111, 126, 143, 162, 184, 208, 236,
	267, 302, 342, 387, 439, 497, 562, 636, 720, 815, 922, 1042,
	1179, 1333, 1506, 1701, 1921, 2168, 2446, 2758, 3108, 3500, 3938, 4427,
	4971, 5577, 6249, 6992, 7812, 8714, 9702, 10782, 11955, 13226, 14595, 16062,
	17625, 19282, 21025, 22849, 24743, 26695, 28693, 30723, 32768, 34813, 36843, 38841,
	40793, 42687, 44511, 46254, 47911, 49474, 50941, 52310, 53581, 54754, 55834, 56822,
	57724, 58544, 59287, 59959, 60565, 61109, 61598, 62036, 62428, 62778, 63090, 63368,
	63615, 63835, 64030, 64203, 64357, 64494, 64614, 64721, 64816, 64900, 64974, 65039,
	65097, 65149, 65194, 65234, 65269, 65300, 65328, 65352, 65374, 65393, 65410, 65425,
	65438, 65449, 65459, 65468, 65476, 65483, 65489, 65495, 65500, 65504, 65508, 65511,
	65514, 65517, 65519, 65521, 65523, 65524, 65526, 65527, 65528, 65529, 65530, 65530,
	65531, 65532, 65532, 65533, 65533, 65533, 65534, 65534, 65534, 65534, 65535, 65535,
	65535, 65535, 65535, 65535, 65535, 65535, 65535, 65536, 65536, 65536, 65536, 65536,
	65536, 65536, 65536, 65536, 65536, 65536, 65536, 65536, 65536, 65536, 65536, 65536,
	65536, 65536, 65536, 65536, 65536, 65536, 65536, 65536, 65536, 65536, 65536, 65536,
	65536, 65536, 65536, 65536, 65536,
}

// lmTables holds the lookup tables shared by every LM state. They are pure functions of
// squashKnots, built once.
type lmTables struct {
	squash  [2*stMax + 1]uint16 // index x+stMax
	stretch [65536]int16
	rate    [1024]int32 // counter adaptation rate 2^16*2/(2n+3)
	apmInit [apmBins]uint16
}

var tables = buildTables()

func squashInterp(x int32) uint32 {
	if x > stMax {
		x = stMax
	} else if x < -stMax {
		x = -stMax
	}
	u := x + 4096
	i := u >> 5
	f := u & 31
	v := squashKnots[i] + ((squashKnots[i+1]-squashKnots[i])*f)>>5
	if v < probMin {
		v = probMin
	} else if v > probMax {
		v = probMax
	}
	return uint32(v)
}

func buildTables() *lmTables {
	t := new(lmTables)
	for x := int32(-stMax); x <= stMax; x++ {
		t.squash[x+stMax] = uint16(squashInterp(x))
	}
	// stretch[p] = the smallest x with squash(x) >= p (stMax when none).
	pi := 0
	for x := int32(-stMax); x <= stMax; x++ {
		v := int(t.squash[x+stMax])
		for j := pi; j <= v; j++ {
			t.stretch[j] = int16(x)
		}
		if v+1 > pi {
			pi = v + 1
		}
	}
	for j := pi; j < 65536; j++ {
		t.stretch[j] = stMax
	}
	for j := range t.apmInit {
		t.apmInit[j] = uint16(squashInterp(int32((j - 16) * 256)))
	}
	for n := range t.rate {
		t.rate[n] = int32(131072 / (2*n + 3))
	}
	return t
}

// squash maps a stretch value to a probability in [probMin, probMax].
func squash(x int32) uint32 {
	if x > stMax {
		x = stMax
	} else if x < -stMax {
		x = -stMax
	}
	return uint32(tables.squash[x+stMax])
}

// stretch maps a 16-bit probability to the logistic domain.
func stretch(p uint32) int32 { return int32(tables.stretch[p&0xFFFF]) }
