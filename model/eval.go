package model

import (
	"fmt"
	"sync"
)

// The plain-Go evaluator: FORMAT.md's integer semantics, written out. It is the oracle the
// ONNX Runtime backend is checked against and the fallback when ORT is missing. All sums
// are int32 and cannot overflow (the bounds Parse checks keep them below 2^24).

// scratch holds one evaluation's intermediate vectors.
type scratch struct {
	acc  []int32
	h    []int32
	nz   []int32 // indices of the nonzero activations of the current layer
	logi []int32
}

func (m *Model) newScratch() *scratch {
	return &scratch{
		acc:  make([]int32, m.maxWidth),
		h:    make([]int32, m.maxWidth),
		nz:   make([]int32, m.maxWidth),
		logi: make([]int32, Outputs),
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
	copy(acc, m.bagBias)
	for k, sym := range c {
		off := (k*Symbols + int(sym)) * h0
		row := m.bag[off : off+h0]
		addRow(acc, row)
	}
	h := s.h[:h0]
	activate(h, acc, m.shift0)

	last := len(m.layers) - 1
	for li := range m.layers {
		l := &m.layers[li]
		acc = s.acc[:l.out]
		copy(acc, l.b)
		// Only nonzero activations contribute (ReLU-like clamps leave many zeros).
		nz := s.nz[:0]
		for i, v := range h[:l.in] {
			if v != 0 {
				nz = append(nz, int32(i))
			}
		}
		out := l.out
		w := l.w
		i := 0
		for ; i+4 <= len(nz); i += 4 {
			i0, i1, i2, i3 := int(nz[i]), int(nz[i+1]), int(nz[i+2]), int(nz[i+3])
			madd4(acc,
				w[i0*out:i0*out+out], w[i1*out:i1*out+out], w[i2*out:i2*out+out], w[i3*out:i3*out+out],
				h[i0], h[i1], h[i2], h[i3])
		}
		for ; i < len(nz); i++ {
			i0 := int(nz[i])
			madd1(acc, w[i0*out:i0*out+out], h[i0])
		}
		if li == last {
			lg := s.logi[:Outputs]
			clip := m.clip
			for j, a := range acc[:Outputs] {
				v := a >> l.shift
				lg[j] = min(max(v, -clip), clip)
			}
			return lg
		}
		h = s.h[:out]
		activate(h, acc, l.shift)
	}
	panic("unreachable: a model has at least one dense layer")
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

func addRow(acc []int32, row []int8) {
	row = row[:len(acc)]
	j := 0
	for ; j+8 <= len(acc); j += 8 {
		a := acc[j : j+8 : j+8]
		r := row[j : j+8 : j+8]
		a[0] += int32(r[0])
		a[1] += int32(r[1])
		a[2] += int32(r[2])
		a[3] += int32(r[3])
		a[4] += int32(r[4])
		a[5] += int32(r[5])
		a[6] += int32(r[6])
		a[7] += int32(r[7])
	}
	for ; j < len(acc); j++ {
		acc[j] += int32(row[j])
	}
}

func activate(h, acc []int32, shift uint) {
	h = h[:len(acc)]
	for j, a := range acc {
		h[j] = min(max(a>>shift, 0), 127)
	}
}

func madd1(acc []int32, w []int8, x int32) {
	w = w[:len(acc)]
	for j := range acc {
		acc[j] += x * int32(w[j])
	}
}

func madd4(acc []int32, w0, w1, w2, w3 []int8, x0, x1, x2, x3 int32) {
	n := len(acc)
	w0, w1, w2, w3 = w0[:n], w1[:n], w2[:n], w3[:n]
	for j := range acc {
		acc[j] += x0*int32(w0[j]) + x1*int32(w1[j]) + x2*int32(w2[j]) + x3*int32(w3[j])
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

// NewGoRunner returns the plain-Go evaluator of m. It is safe for concurrent use; each
// Predict call runs on the calling goroutine.
func NewGoRunner(m *Model) Runner {
	r := &goRunner{m: m}
	r.pool.New = func() any { return m.newScratch() }
	return r
}

func (r *goRunner) Order() int      { return r.m.order }
func (r *goRunner) Backend() string { return "go" }
func (r *goRunner) Close() error    { return nil }

func (r *goRunner) Predict(ctx []uint16, out []uint32) error {
	m := r.m
	n, err := checkBatch(m.order, ctx, out)
	if err != nil {
		return err
	}
	s := r.pool.Get().(*scratch)
	defer r.pool.Put(s)
	k := m.order
	for i := 0; i < n; i++ {
		m.freqs(m.logits(ctx[i*k:(i+1)*k], s), out[i*Outputs:(i+1)*Outputs])
	}
	return nil
}
