package codec

// The LM codec's per-bit predictor: the network's prediction mixed with in-block adaptive models.
//
// Every byte is coded as 8 binary decisions, most significant bit first. For each decision the
// state computes, in exact integer arithmetic,
//
//	inputs   x[0] network: stretch(P(bit=1)) from the 256 byte frequencies (binary-tree sums)
//	         x[1..4] in-block adaptive bit counters, order 0 (partial byte) and the orders in
//	              ctrOrders (hashed, in 16-slot buckets per nibble)
//	         x[5] match model: the byte that followed the latest earlier occurrence of the last
//	              matchMin bytes, its expected bit signed by an adaptive confidence per match length
//	         x[6] bias (constant 256)
//	mixers   d1 = sum w[s][i]*x[i] >> 16, weights selected by s = match-length bucket (and
//	         bit position if selBits); d2 likewise with weights selected by the partial byte
//	         c0; both start from fixed initial weights (the network dominates) and are trained
//	         online within the block, each on its own error; p_m = squash((d1+d2)/2)
//	APM      p = (p_m + 3*(apm1[c0] + apm2[c0, c1>>6])(stretch(p_m))/2)/4: secondary estimates
//	         by interpolation in 33 bins per context (the partial byte c0, and c0 with the top
//	         2 bits of the previous byte c1), also learned within the block
//
// then the coder codes the bit with p and update(bit) trains everything. Encoder and decoder run
// the same predict/update sequence: state = step(state, byte). All state is reset per block:
// every block decodes on its own.
//
// FORMAT: the constants in defaultMix and the algorithm here are part of the LM block format
// (version 1). Any change makes existing LM blocks undecodable; TestLMGolden pins them.

// ctrOrders are the context lengths of the hashed counter tables.
var ctrOrders = [...]int{1, 2, 3}

const (
	nCtr     = len(ctrOrders)
	nInputs  = nCtr + 4 // network, order 0, ctrOrders, match, bias
	inMatch  = nCtr + 2
	inBias   = nCtr + 3
	maxOrder = 3
)

// mixParams are the knobs of the predictor; defaultMix is the format.
type mixParams struct {
	ctrBits   uint  // log2 of each hashed counter table (orders 1-3)
	ctrLimit  int32 // counter count limit (adaptation rate floor 1/(limit+1.5))
	matchMin  int   // bytes hashed to find a match
	matchInit int32 // initial confidence count of match counters
	lr        int64 // mixer learning rate
	lrShift   uint
	apmRate   uint // APM adaptation shift
	apmWeight int  // APM share of the final probability, in quarters (0..4)
	selBits   bool // select weight sets also by bit position
	initW     [nInputs]int32
	useInput  [nInputs]bool // for measurements (with ablate): a disabled input is always 0
	ablate    bool
	mix2      bool // a second mixer with weights selected by the partial byte, averaged
	apm2      bool // a second APM keyed by the partial byte and the previous byte's top 2 bits
}

var defaultMix = mixParams{
	ctrBits:   15,
	ctrLimit:  1023,
	matchMin:  4,
	matchInit: 4,
	lr:        2,
	lrShift:   14,
	apmRate:   5,
	apmWeight: 3,
	selBits:   false,
	mix2:      true,
	apm2:      true,
	initW:     [nInputs]int32{40000, 4096, 8192, 16384, 16384, 24576, 0},
	useInput:  [nInputs]bool{true, true, true, true, true, true, true},
}

const (
	matchTabBits = 12
	maxMatchLen  = 65535
	nMatchCtr    = 32
	apmBins      = 33
	wMax         = 1 << 22 // mixer weight bound (64.0)
)

// lmState is the predictor state of one block being coded.
type lmState struct {
	p *mixParams

	buf    []byte // the block so far
	c0     uint32 // partial byte with a leading 1 bit
	bitPos int    // bits of the current byte already known (0..7)

	o0       [256]uint32
	ctr      [nCtr][]uint32 // per order in ctrOrders
	ctxHash  [nCtr]uint32   // per order, hash of the context bytes at this byte boundary
	bucket   [nCtr]uint32   // per order, first slot of the current nibble's bucket
	ctrIdx   [nCtr]uint32   // per order, slot of the current bit
	matchTab []uint16       // hash of the last matchMin bytes -> position after them (0: none)
	matchPtr int
	matchLen int
	matchCtr [nMatchCtr]uint32
	expBit   int32 // expected bit from the match model, -1 if none for this bit
	mctrIdx  int

	w     []int32 // weight sets, nInputs each
	wsel  int     // offset of the selected set
	w2    []int32 // second mixer: one set per partial byte
	dot1  int32
	dot2  int32
	pm1   uint32
	pm2   uint32
	x     [nInputs]int32
	dot   int32  // mixer output in stretch units
	pm    uint32 // mixer probability
	apm   []uint16
	apmI  int // index of the lower APM bin used
	apmW  int32
	apmB  []uint16 // second APM (apm2)
	apmBI int
}

func newLMState(p *mixParams) *lmState {
	s := &lmState{p: p}
	for i := range s.ctr {
		s.ctr[i] = make([]uint32, 1<<p.ctrBits)
	}
	s.matchTab = make([]uint16, 1<<matchTabBits)
	nsets := 4
	if p.selBits {
		nsets *= 8
	}
	s.w = make([]int32, nsets*nInputs)
	s.w2 = make([]int32, 256*nInputs)
	s.apm = make([]uint16, 256*apmBins)
	s.apmB = make([]uint16, 1024*apmBins)
	s.buf = make([]byte, 0, BlockSize)
	s.reset()
	return s
}

// Counters are stored XORed with ctrInit (p = 1/2, count 0) so that a cleared table is fresh.
const ctrInit = uint32(1 << 31)

// reset prepares the state for a new block.
func (s *lmState) reset() {
	s.buf = s.buf[:0]
	s.c0 = 1
	s.bitPos = 0
	clear(s.o0[:])
	for _, t := range s.ctr {
		clear(t)
	}
	clear(s.matchTab)
	s.matchPtr, s.matchLen = 0, 0
	for l := range s.matchCtr {
		// Initial confidence that a match of length l predicts the next bit: 1 - 1/(2l+4).
		p := uint32(65536 - 65536/(2*l+4))
		s.matchCtr[l] = (p<<16 | uint32(s.p.matchInit)) ^ ctrInit
	}
	for i := 0; i < len(s.w); i += nInputs {
		copy(s.w[i:i+nInputs], s.p.initW[:])
	}
	for i := 0; i < len(s.w2); i += nInputs {
		copy(s.w2[i:i+nInputs], s.p.initW[:])
	}
	for c := 0; c < 256; c++ {
		copy(s.apm[c*apmBins:(c+1)*apmBins], tables.apmInit[:])
	}
	for c := 0; c < 1024; c++ {
		copy(s.apmB[c*apmBins:(c+1)*apmBins], tables.apmInit[:])
	}
	s.ctxHash = [nCtr]uint32{}
	s.byteContexts()
}

// ctrP returns a counter's probability (16 bits).
func ctrP(c uint32) uint32 { return (c ^ ctrInit) >> 16 }

// ctrUpdate moves counter c toward bit with rate 1/(n+1.5), n its count (at most limit).
func ctrUpdate(c *uint32, bit int, limit int32) {
	v := *c ^ ctrInit
	n := int32(v & 1023)
	p := int64(v >> 10) // 22 bits
	target := int64(0)
	if bit != 0 {
		target = 1<<22 - 1
	}
	p += ((target - p) * int64(tables.rate[n])) >> 16
	if n < limit {
		n++
	}
	*c = (uint32(p)<<10 | uint32(n)) ^ ctrInit
}

func hash32(x uint32) uint32 {
	x *= 0x9E3779B1
	x ^= x >> 15
	x *= 0x2C1B3C6D
	return x
}

// byteContexts updates the byte-level contexts after a byte was appended (or at block start).
func (s *lmState) byteContexts() {
	n := len(s.buf)
	h := uint32(0)
	o := 0
	for k := 1; k <= maxOrder; k++ {
		c := uint32(256)
		if n >= k {
			c = uint32(s.buf[n-k])
		}
		h = (h + c + 1) * 0x01000193
		if ctrOrders[o] == k {
			s.ctxHash[o] = hash32(h + uint32(k)<<24)
			o++
			if o == nCtr {
				break
			}
		}
	}

	// Match model.
	mm := s.p.matchMin
	if s.matchLen > 0 {
		if s.matchPtr < n-1 && s.buf[s.matchPtr] == s.buf[n-1] {
			s.matchPtr++
			if s.matchLen < maxMatchLen {
				s.matchLen++
			}
		} else {
			s.matchLen = 0
		}
	}
	if n >= mm {
		var h uint32
		for i := n - mm; i < n; i++ {
			h = (h + uint32(s.buf[i]) + 1) * 0x01000193
		}
		h = hash32(h) >> (32 - matchTabBits)
		if s.matchLen == 0 {
			if cand := int(s.matchTab[h]); cand > 0 {
				l := 0
				for l < 32 && cand-1-l >= 0 && s.buf[cand-1-l] == s.buf[n-1-l] {
					l++
				}
				if l >= mm {
					s.matchPtr, s.matchLen = cand, l
				}
			}
		}
		s.matchTab[h] = uint16(n)
	}
}

// selectBuckets picks, at each nibble boundary, the 16-slot bucket of every order's counter
// table: slot 0 holds a tag of the context (order bytes and the high nibble, if known), slots
// 1..15 the counters of the nibble's 15 binary decisions. Two candidate buckets per context; on
// a miss the one whose first counter has seen fewer bits is cleared and taken over. A bucket is
// one cache line, so a byte touches two lines per order.
func (s *lmState) selectBuckets() {
	hi := uint32(0)
	if s.bitPos == 4 {
		hi = s.c0
	}
	shift := 32 - s.p.ctrBits
	for i := 0; i < nCtr; i++ {
		t := s.ctr[i]
		h := hash32(s.ctxHash[i] + hi*0x2545F491)
		tag := h&0xFFFF | 1<<16
		b1 := (h >> shift) &^ 15
		b2 := b1 ^ 16
		switch {
		case t[b1] == tag:
			s.bucket[i] = b1
		case t[b2] == tag:
			s.bucket[i] = b2
		default:
			b := b1
			if (t[b2+1]^ctrInit)&1023 < (t[b1+1]^ctrInit)&1023 {
				b = b2
			}
			clear(t[b+1 : b+16])
			t[b] = tag
			s.bucket[i] = b
		}
	}
}

// matchBucket maps a match length to 0..3 (weight set selection).
func matchBucket(l int) int {
	switch {
	case l == 0:
		return 0
	case l < 12:
		return 1
	case l < 32:
		return 2
	}
	return 3
}

// predict returns P(next bit = 1) in [probMin, probMax]; netP is the network's probability for
// this bit. predict must be followed by update with the coded bit.
func (s *lmState) predict(netP uint32) uint32 {
	p := s.p
	s.x[0] = stretch(netP)
	s.x[1] = stretch(ctrP(s.o0[s.c0]))
	if s.bitPos&3 == 0 {
		s.selectBuckets()
	}
	// Slot within the nibble's bucket: the bits after the nibble boundary with a leading 1.
	nb := uint(s.bitPos & 3)
	slot := s.c0&(1<<nb-1) | 1<<nb
	for i := 0; i < nCtr; i++ {
		idx := s.bucket[i] + slot
		s.ctrIdx[i] = idx
		s.x[2+i] = stretch(ctrP(s.ctr[i][idx]))
	}
	s.expBit = -1
	s.x[inMatch] = 0
	if s.matchLen > 0 {
		pb := uint32(s.buf[s.matchPtr]) | 256
		if pb>>(8-s.bitPos) == s.c0 {
			s.expBit = int32(pb>>(7-s.bitPos)) & 1
			l := s.matchLen
			if l >= nMatchCtr {
				l = nMatchCtr - 1
			}
			s.mctrIdx = l
			st := stretch(ctrP(s.matchCtr[l]))
			if s.expBit == 0 {
				st = -st
			}
			s.x[inMatch] = st
		}
	}
	s.x[inBias] = 256
	if p.ablate {
		for i := range s.x {
			if !p.useInput[i] {
				s.x[i] = 0
			}
		}
	}
	sel := matchBucket(s.matchLen)
	if s.expBit < 0 && sel > 0 {
		sel = 0 // the match already failed within this byte
	}
	if p.selBits {
		sel = sel*8 + s.bitPos
	}
	s.wsel = sel * nInputs
	w := (*[nInputs]int32)(s.w[s.wsel:])
	if p.mix2 {
		w2 := (*[nInputs]int32)(s.w2[int(s.c0)*nInputs:])
		var dot1, dot2 int64
		for i, x := range &s.x {
			dot1 += int64(w[i]) * int64(x)
			dot2 += int64(w2[i]) * int64(x)
		}
		s.dot1 = clampSt(dot1 >> 16)
		s.dot2 = clampSt(dot2 >> 16)
		s.pm1 = squash(s.dot1)
		s.pm2 = squash(s.dot2)
		s.dot = (s.dot1 + s.dot2) >> 1
	} else {
		var dot int64
		for i, x := range &s.x {
			dot += int64(w[i]) * int64(x)
		}
		s.dot = clampSt(dot >> 16)
		s.pm1 = squash(s.dot)
	}
	s.pm = squash(s.dot)
	if p.apmWeight == 0 {
		return s.pm
	}
	// APM: interpolate between the two bins around dot.
	u := s.dot + 4096 // 1..8191
	j := int(u >> 8)
	wt := u & 255
	base := int(s.c0)*apmBins + j
	s.apmI = base
	s.apmW = wt
	pa := (uint32(s.apm[base])*uint32(256-wt) + uint32(s.apm[base+1])*uint32(wt)) >> 8
	if p.apm2 {
		c1 := 0
		if n := len(s.buf); n > 0 {
			c1 = int(s.buf[n-1] >> 6)
		}
		b2 := (c1<<8|int(s.c0))*apmBins + j
		s.apmBI = b2
		pb := (uint32(s.apmB[b2])*uint32(256-wt) + uint32(s.apmB[b2+1])*uint32(wt)) >> 8
		pa = (pa + pb) >> 1
	}
	pf := (s.pm*uint32(4-p.apmWeight) + pa*uint32(p.apmWeight)) >> 2
	if pf < probMin {
		pf = probMin
	} else if pf > probMax {
		pf = probMax
	}
	return pf
}

// update trains the state with the coded bit and advances to the next bit.
func (s *lmState) update(bit int) {
	p := s.p
	// Mixers, each trained on its own error.
	sh := p.lrShift & 63
	err1 := (int64(bit)<<16 - int64(s.pm1)) * p.lr
	w := (*[nInputs]int32)(s.w[s.wsel:])
	if p.mix2 {
		err2 := (int64(bit)<<16 - int64(s.pm2)) * p.lr
		w2 := (*[nInputs]int32)(s.w2[int(s.c0)*nInputs:])
		for i, x := range &s.x {
			w[i] = clampW(int64(w[i]) + (int64(x)*err1)>>sh)
			w2[i] = clampW(int64(w2[i]) + (int64(x)*err2)>>sh)
		}
	} else {
		for i, x := range &s.x {
			w[i] = clampW(int64(w[i]) + (int64(x)*err1)>>sh)
		}
	}
	// APM: move both interpolated bins toward the bit.
	if p.apmWeight != 0 {
		target := int32(bit) << 16
		a := &s.apm[s.apmI]
		v := int32(*a)
		v += ((target - v) * (256 - s.apmW)) >> (8 + p.apmRate)
		*a = uint16(clampP(v))
		a = &s.apm[s.apmI+1]
		v = int32(*a)
		v += ((target - v) * s.apmW) >> (8 + p.apmRate)
		*a = uint16(clampP(v))
		if p.apm2 {
			a = &s.apmB[s.apmBI]
			v = int32(*a)
			v += ((target - v) * (256 - s.apmW)) >> (8 + p.apmRate)
			*a = uint16(clampP(v))
			a = &s.apmB[s.apmBI+1]
			v = int32(*a)
			v += ((target - v) * s.apmW) >> (8 + p.apmRate)
			*a = uint16(clampP(v))
		}
	}
	// Counters.
	ctrUpdate(&s.o0[s.c0], bit, p.ctrLimit)
	for i := 0; i < nCtr; i++ {
		ctrUpdate(&s.ctr[i][s.ctrIdx[i]], bit, p.ctrLimit)
	}
	if s.expBit >= 0 {
		hit := 0
		if int32(bit) == s.expBit {
			hit = 1
		}
		ctrUpdate(&s.matchCtr[s.mctrIdx], hit, p.ctrLimit)
	}
	s.c0 = s.c0<<1 | uint32(bit)
	s.bitPos++
	if s.bitPos == 8 {
		s.buf = append(s.buf, byte(s.c0))
		s.c0 = 1
		s.bitPos = 0
		s.byteContexts()
	}
}

func clampSt(d int64) int32 { return int32(max(min(d, stMax), -stMax)) }

func clampW(v int64) int32 { return int32(max(min(v, wMax), -wMax)) }

func clampP(v int32) int32 {
	if v < probMin {
		return probMin
	}
	if v > probMax {
		return probMax
	}
	return v
}

// netCum fills cum[i] = sum of freq[0..i-1] (cum has 257 entries).
func netCum(cum *[257]uint32, freq []uint32) {
	var s uint32
	cum[0] = 0
	for i, f := range freq[:256] {
		s += f
		cum[i+1] = s
	}
}

// netBitP returns the network's P(bit=1) for the partial byte c0 (bitPos bits known) from the
// cumulative frequencies: sum(subtree 1)/sum(node) in 16-bit fixed point, clamped.
func netBitP(cum *[257]uint32, c0 uint32, bitPos int) uint32 {
	prefix := c0 ^ (1 << bitPos)
	half := uint32(128) >> bitPos
	lo := prefix << (8 - bitPos)
	s0 := cum[lo+half] - cum[lo]
	s1 := cum[lo+2*half] - cum[lo+half]
	tot := uint64(s0) + uint64(s1)
	if tot == 0 {
		return 32768
	}
	p := (uint64(s1) << 16) / tot
	if p < probMin {
		p = probMin
	} else if p > probMax {
		p = probMax
	}
	return uint32(p)
}

// netPath writes the network's 8 bit probabilities along byte b's path.
func netPath(dst []uint16, cum *[257]uint32, b byte) {
	for d := 0; d < 8; d++ {
		c0 := (uint32(b) | 256) >> (8 - d)
		dst[d] = uint16(netBitP(cum, c0, d))
	}
}
