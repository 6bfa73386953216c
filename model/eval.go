package model

import (
	"fmt"
	"runtime"
	"sync"
)

// The plain-Go evaluator: FORMAT.md's integer semantics, written out. It is the oracle the
// ONNX Runtime backend is checked against and the fallback when ORT is missing. All sums
// are int32 and cannot overflow (the bounds Parse checks keep them below 2^24).

// scratch holds one evaluation's intermediate vectors.
type scratch struct {
	idx   []int64 // bag row indices of one context
	acc   []int32
	h     []int32
	nz    []int32 // indices of the nonzero activations of the current layer
	logi  []int32
	lanes []uint64 // packed accumulators of madd
}

func (m *Model) newScratch() *scratch {
	return &scratch{
		idx:   make([]int64, m.Inputs()),
		acc:   make([]int32, m.maxWidth),
		h:     make([]int32, m.maxWidth),
		nz:    make([]int32, m.maxWidth),
		logi:  make([]int32, Outputs),
		lanes: make([]uint64, (m.maxWidth+1)/2), // madd: ceil(width/2); bagSum: 2*ceil(H0/8)
	}
}

// checkBatch validates the sizes and symbols of a Predict call and returns the row count.
func checkBatch(order int, ctx []uint16, out []uint32) (int, error) {
	if len(ctx)%order != 0 {
		return 0, fmt.Errorf("predict: %d context symbols is not a multiple of the order %d", len(ctx), order)
	}
	n := len(ctx) / order
	if len(out) != n*Outputs {
		return 0, fmt.Errorf("predict: out has %d entries, want %d for %d rows", len(out), n*Outputs, n)
	}
	for i, c := range ctx {
		if c >= Symbols {
			return 0, fmt.Errorf("predict: context symbol %d at %d outside 0..256", c, i)
		}
	}
	return n, nil
}

// logits computes the 256 integer logits for one context (len(c) == K) into s.logi.
func (m *Model) logits(c []uint16, s *scratch) []int32 {
	h0 := m.h0
	acc := s.acc[:h0]
	m.bagRows(c, s.idx)
	m.bagSum(s.idx, acc, s.lanes)
	h := s.h[:h0]
	activate(h, acc, m.shift0)

	last := len(m.layers) - 1
	for li := range m.layers {
		l := &m.layers[li]
		acc = s.acc[:l.out]
		// Only nonzero activations contribute (ReLU-like clamps leave many zeros).
		nz := s.nz[:0]
		for i, v := range h[:l.in] {
			if v != 0 {
				nz = append(nz, int32(i))
			}
		}
		madd(acc, l, h, nz, s.lanes)
		if li == last {
			lg := s.logi[:Outputs]
			clip := m.clip
			for j, a := range acc[:Outputs] {
				v := a >> l.shift
				lg[j] = min(max(v, -clip), clip)
			}
			return lg
		}
		h = s.h[:l.out]
		activate(h, acc, l.shift)
	}
	panic("unreachable: a model has at least one dense layer")
}

// ngramHash is FORMAT.md's hash of the n most recent context symbols (format 2).
func ngramHash(c []uint16, n int) uint32 {
	h := uint32(n) * 0x9E3779B1
	for _, sym := range c[:n] {
		h = (h ^ uint32(sym)) * 0x01000193
	}
	h ^= h >> 16
	h *= 0x85EBCA6B
	h ^= h >> 13
	return h
}

// ngramRow is the bag row of n-gram table g for context c: after the K*257 position rows,
// table g holds 2^bits rows indexed by the top bits of the hash.
func (m *Model) ngramRow(c []uint16, g int) int {
	return m.order*Symbols + g<<m.ngBits + int(ngramHash(c, m.ngOrders[g])>>(32-m.ngBits))
}

// bagRows writes the Inputs() bag row indices of context c (the ONNX graph's ctx row).
func (m *Model) bagRows(c []uint16, dst []int64) {
	for k, sym := range c {
		dst[k] = int64(k*Symbols + int(sym))
	}
	for g := range m.ngOrders {
		dst[len(c)+g] = int64(m.ngramRow(c, g))
	}
}

// freqs turns logits into frequencies through explut (FORMAT.md).
func (m *Model) freqs(lg []int32, out []uint32) {
	mx := lg[0]
	for _, v := range lg[1:] {
		mx = max(mx, v)
	}
	base := 2*m.clip - mx
	lut := m.explut
	out = out[:len(lg)]
	for j, v := range lg {
		out[j] = lut[v+base]
	}
}

// activate writes h = clamp(acc >> shift, 0, 127): int32 for the Go evaluator's next layer,
// bytes for the integer graph's input.
func activate[T int32 | uint8](h []T, acc []int32, shift uint) {
	h = h[:len(acc)]
	for j, a := range acc {
		h[j] = T(min(max(a>>shift, 0), 127))
	}
}

// packWeights stores w[i][j]+127 (0..254) in 32-bit lanes, two outputs per uint64:
// lane 0 (low half) for output 2p, lane 1 for output 2p+1 (254's filler when out is odd).
// One 64-bit multiply-add then does two int8 MACs; see madd.
func packWeights(w []int8, in, out int) []uint64 {
	pw := (out + 1) / 2
	wp := make([]uint64, in*pw)
	for i := range in {
		row := w[i*out : (i+1)*out]
		for p := range pw {
			lo := uint64(int64(row[2*p]) + 127)
			hi := uint64(127)
			if 2*p+1 < out {
				hi = uint64(int64(row[2*p+1]) + 127)
			}
			wp[i*pw+p] = lo | hi<<32
		}
	}
	return wp
}

// madd computes acc[j] = b[j] + sum_i h[i]*w[i][j] over the nonzero h[i] (indices nz).
//
// SWAR: each lane sums h[i]*(w[i][j]+127) <= in*127*254 < 2^31 (in <= 4096), so lanes never
// carry into each other; subtracting 127*sum(h) then gives the exact int32 dot product.
func madd(acc []int32, l *layer, h, nz []int32, lanes []uint64) {
	pw := (l.out + 1) / 2
	sw := lanes[:pw]
	clear(sw)
	var hsum int32
	wp := l.wp
	i := 0
	for ; i+4 <= len(nz); i += 4 {
		i0, i1, i2, i3 := int(nz[i]), int(nz[i+1]), int(nz[i+2]), int(nz[i+3])
		x0, x1, x2, x3 := uint64(h[i0]), uint64(h[i1]), uint64(h[i2]), uint64(h[i3])
		hsum += h[i0] + h[i1] + h[i2] + h[i3]
		w0 := wp[i0*pw : i0*pw+pw]
		w1 := wp[i1*pw : i1*pw+pw]
		w2 := wp[i2*pw : i2*pw+pw]
		w3 := wp[i3*pw : i3*pw+pw]
		w0, w1, w2, w3 = w0[:len(sw)], w1[:len(sw)], w2[:len(sw)], w3[:len(sw)]
		for p := range sw {
			sw[p] += x0*w0[p] + x1*w1[p] + x2*w2[p] + x3*w3[p]
		}
	}
	for ; i < len(nz); i++ {
		i0 := int(nz[i])
		x0 := uint64(h[i0])
		hsum += h[i0]
		w0 := wp[i0*pw : i0*pw+pw]
		w0 = w0[:len(sw)]
		for p := range sw {
			sw[p] += x0 * w0[p]
		}
	}
	off := 127 * hsum
	out := l.out
	acc, b := acc[:out], l.b[:out]
	for p, v := range sw {
		j := 2 * p
		acc[j] = b[j] + int32(uint32(v)) - off
		if j+1 < out {
			acc[j+1] = b[j+1] + int32(uint32(v>>32)) - off
		}
	}
}

// Logits computes the integer logits (FORMAT.md) for n = len(ctx)/K contexts into
// out[n*256]. For tests and tools; codecs use a Runner.
func (m *Model) Logits(ctx []uint16, out []int32) error {
	n, err := checkBatch(m.order, ctx, make([]uint32, len(out)))
	if err != nil {
		return err
	}
	s := m.newScratch()
	for r := 0; r < n; r++ {
		copy(out[r*Outputs:], m.logits(ctx[r*m.order:(r+1)*m.order], s))
	}
	return nil
}

// goRunner is the Runner of the plain-Go evaluator.
type goRunner struct {
	m    *Model
	pool sync.Pool
}

// NewGoRunner returns the plain-Go evaluator of m. It is safe for concurrent use; a
// Predict call of many rows is split across up to GOMAXPROCS goroutines.
func NewGoRunner(m *Model) Runner {
	r := &goRunner{m: m}
	r.pool.New = func() any { return m.newScratch() }
	return r
}

func (r *goRunner) Order() int      { return r.m.order }
func (r *goRunner) Backend() string { return "go" }
func (r *goRunner) Close() error    { return nil }

func (r *goRunner) Predict(ctx []uint16, out []uint32) error {
	n, err := checkBatch(r.m.order, ctx, out)
	if err != nil || n == 0 {
		return err
	}
	parts := 1
	if n >= 2*minSplitRows {
		parts = min(runtime.GOMAXPROCS(0), n/minSplitRows)
	}
	if parts <= 1 {
		r.predict(ctx, out, n)
		return nil
	}
	k := r.m.order
	per := (n + parts - 1) / parts
	var wg sync.WaitGroup
	for lo := 0; lo < n; lo += per {
		hi := min(lo+per, n)
		wg.Go(func() { r.predict(ctx[lo*k:hi*k], out[lo*Outputs:hi*Outputs], hi-lo) })
	}
	wg.Wait()
	return nil
}

func (r *goRunner) predict(ctx []uint16, out []uint32, n int) {
	m := r.m
	s := r.pool.Get().(*scratch)
	defer r.pool.Put(s)
	k := m.order
	for i := 0; i < n; i++ {
		m.freqs(m.logits(ctx[i*k:(i+1)*k], s), out[i*Outputs:(i+1)*Outputs])
	}
}
