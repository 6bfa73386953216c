package model

import (
	"encoding/hex"
	"encoding/json"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func loadTiny(t testing.TB) *Model {
	t.Helper()
	return loadFixture(t, "testdata/tiny.lmfsm")
}

// fixtures are the random-weight test models: format 1, format 2 with hashed n-gram rows, and
// format 3 (the same weights as tiny-ng, the graph sharing the bag with the file).
var fixtures = []string{"testdata/tiny.lmfsm", "testdata/tiny-ng.lmfsm", "testdata/tiny-ng3.lmfsm"}

func loadFixture(t testing.TB, path string) *Model {
	t.Helper()
	m, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// eachFixture runs f as a subtest per fixture model.
func eachFixture(t *testing.T, f func(t *testing.T, path string, m *Model)) {
	for _, p := range fixtures {
		t.Run(strings.TrimSuffix(filepath.Base(p), ".lmfsm"), func(t *testing.T) { f(t, p, loadFixture(t, p)) })
	}
}

// TestGolden pins the Go evaluator to frequencies computed by the exporter's numpy
// reference (model/train/make_fixture.py writes both files): any change of the evaluator's
// results is caught here.
func TestGolden(t *testing.T) { eachFixture(t, testGolden) }

func testGolden(t *testing.T, path string, m *Model) {
	raw, err := os.ReadFile(strings.TrimSuffix(path, ".lmfsm") + ".golden.json")
	if err != nil {
		t.Fatal(err)
	}
	var g struct {
		ModelSHA256 string `json:"model_sha256"`
		Rows        []struct {
			Ctx    []uint16 `json:"ctx"`
			Logits []int32  `json:"logits"`
			Freq   []uint32 `json:"freq"`
		} `json:"rows"`
	}
	if err := json.Unmarshal(raw, &g); err != nil {
		t.Fatal(err)
	}
	id := m.ID()
	if hex.EncodeToString(id[:]) != g.ModelSHA256 {
		t.Fatalf("golden file is for model %s, %s is %x", g.ModelSHA256, path, id)
	}
	if len(g.Rows) < 20 {
		t.Fatalf("only %d golden rows", len(g.Rows))
	}
	r := NewGoRunner(m)
	var ctx []uint16
	var want []uint32
	for i, row := range g.Rows {
		out := make([]uint32, Outputs)
		if err := r.Predict(row.Ctx, out); err != nil {
			t.Fatal(err)
		}
		lg := make([]int32, Outputs)
		if err := m.Logits(row.Ctx, lg); err != nil {
			t.Fatal(err)
		}
		for j := range Outputs {
			if lg[j] != row.Logits[j] || out[j] != row.Freq[j] {
				t.Fatalf("row %d (ctx %v) symbol %d: logit %d freq %d, golden %d %d",
					i, row.Ctx, j, lg[j], out[j], row.Logits[j], row.Freq[j])
			}
		}
		ctx = append(ctx, row.Ctx...)
		want = append(want, row.Freq...)
	}
	// The whole golden set as one batch gives the same rows.
	got := make([]uint32, len(want))
	if err := r.Predict(ctx, got); err != nil {
		t.Fatal(err)
	}
	for i := range got {
		if got[i] != want[i] {
			t.Fatalf("batched: entry %d is %d, golden %d", i, got[i], want[i])
		}
	}
}

// naiveLogits is FORMAT.md's semantics written as plainly as possible, in int64.
func naiveLogits(s *spec, c []uint16) []int64 {
	h0 := s.widths[0]
	a := make([]int64, h0)
	for j := range a {
		a[j] = int64(s.bagBias[j])
		for k := range s.order {
			a[j] += int64(s.bag[(k*Symbols+int(c[k]))*h0+j])
		}
		for g, n := range s.ngOrd {
			// FORMAT.md's hash, spelled out in uint64 arithmetic reduced mod 2^32.
			h := uint64(n) * 0x9E3779B1 % (1 << 32)
			for k := range n {
				h = (h ^ uint64(c[k])) * 0x01000193 % (1 << 32)
			}
			h ^= h >> 16
			h = h * 0x85EBCA6B % (1 << 32)
			h ^= h >> 13
			row := s.order*Symbols + g<<s.ngBits + int(h>>(32-s.ngBits))
			a[j] += int64(s.bag[row*h0+j])
		}
	}
	clamp := func(v, lo, hi int64) int64 { return min(max(v, lo), hi) }
	h := make([]int64, h0)
	for j := range a {
		h[j] = clamp(a[j]>>s.shifts[0], 0, 127)
	}
	for li := range s.ws {
		in, out := s.widths[li], s.widths[li+1]
		a = make([]int64, out)
		for j := range out {
			a[j] = int64(s.bs[li][j])
			for i := range in {
				a[j] += h[i] * int64(s.ws[li][i*out+j])
			}
		}
		h = make([]int64, out)
		for j := range a {
			if li == len(s.ws)-1 {
				h[j] = clamp(a[j]>>s.shifts[li+1], -int64(s.clip), int64(s.clip))
			} else {
				h[j] = clamp(a[j]>>s.shifts[li+1], 0, 127)
			}
		}
	}
	return h
}

func randomContexts(rng *rand.Rand, order, n int) []uint16 {
	ctx := make([]uint16, order*n)
	for r := range n {
		start := order
		if rng.IntN(4) == 0 {
			start = rng.IntN(order + 1) // near a block start: the rest is 256
		}
		for k := range order {
			if k >= start {
				ctx[r*order+k] = 256
			} else {
				ctx[r*order+k] = uint16(rng.IntN(256))
			}
		}
	}
	return ctx
}

// TestEvalMatchesNaive checks the optimized evaluator against naiveLogits on random
// models of several shapes (odd widths exercise the unrolled loops' tails, order 300 a bag
// sum of more rows than the packed lanes hold at once), and ONNX Runtime (the integer graph)
// against both where the library loads.
func TestEvalMatchesNaive(t *testing.T) {
	shapes := []struct {
		order  int
		widths []int
		ngram  []int
	}{{1, []int{1}, nil}, {3, []int{7, 5}, nil}, {8, []int{64, 64}, nil}, {5, []int{33, 17, 9}, nil}, {16, []int{40}, nil},
		{16, []int{40, 24}, []int{2, 3, 4, 6}}, {3, []int{9}, []int{1, 3}}, {300, []int{12, 8}, nil}}
	for si, sh := range shapes {
		s := randomSpec(uint64(100+si), sh.order, sh.widths)
		if sh.ngram != nil {
			s.ngOrd, s.ngBits = sh.ngram, 5
			wr := rand.New(rand.NewPCG(uint64(si), 5))
			for range len(sh.ngram) << 5 * s.widths[0] {
				s.bag = append(s.bag, int8(wr.IntN(255)-127))
			}
		}
		m, err := Parse(s.file(nil))
		if err != nil {
			t.Fatal(err)
		}
		rng := rand.New(rand.NewPCG(uint64(si), 7))
		n := 300
		ctx := randomContexts(rng, sh.order, n)
		got := make([]int32, n*Outputs)
		if err := m.Logits(ctx, got); err != nil {
			t.Fatal(err)
		}
		nonzero := 0
		for r := range n {
			want := naiveLogits(s, ctx[r*sh.order:(r+1)*sh.order])
			for j, w := range want {
				if int64(got[r*Outputs+j]) != w {
					t.Fatalf("shape %v row %d symbol %d: %d, naive %d", sh, r, j, got[r*Outputs+j], w)
				}
				if w != 0 {
					nonzero++
				}
			}
		}
		if nonzero == 0 {
			t.Errorf("shape %v: all logits zero, the test proves little", sh)
		}
		if r, err := NewORTRunner(m, Options{Device: "cpu", Logger: slog.New(slog.DiscardHandler)}); err == nil {
			sameFreqs(t, fmt.Sprintf("shape %v, ORT", sh), predictAll(t, r, ctx), predictAll(t, NewGoRunner(m), ctx))
			r.Close()
		} else if os.Getenv("CI") == "true" {
			t.Fatalf("shape %v: ONNX Runtime: %v", sh, err)
		}
	}
}

func TestGoRunnerErrors(t *testing.T) {
	m := loadTiny(t)
	r := NewGoRunner(m)
	if r.Order() != 8 || r.Backend() != "go" {
		t.Fatalf("order %d backend %q", r.Order(), r.Backend())
	}
	ctx := make([]uint16, 16)
	if err := r.Predict(ctx[:7], make([]uint32, 256)); err == nil {
		t.Error("7 symbols for order 8: no error")
	}
	if err := r.Predict(ctx, make([]uint32, 256)); err == nil {
		t.Error("out too short: no error")
	}
	ctx[3] = 257
	if err := r.Predict(ctx, make([]uint32, 512)); err == nil {
		t.Error("symbol 257: no error")
	}
	if err := r.Predict(nil, nil); err != nil {
		t.Errorf("empty batch: %v", err)
	}
	if err := r.Close(); err != nil {
		t.Error(err)
	}
}

// TestFrequencies checks the explut contract on the tiny model: every entry in 1..2^16,
// the most likely symbol gets exactly explut[2L].
func TestFrequencies(t *testing.T) {
	m := loadTiny(t)
	rng := rand.New(rand.NewPCG(1, 2))
	n := 200
	ctx := randomContexts(rng, m.Order(), n)
	out := make([]uint32, n*Outputs)
	if err := NewGoRunner(m).Predict(ctx, out); err != nil {
		t.Fatal(err)
	}
	top := m.explut[2*m.clip]
	for r := range n {
		row := out[r*Outputs : (r+1)*Outputs]
		var mx uint32
		for _, f := range row {
			if f < 1 || f > MaxExp {
				t.Fatalf("row %d: frequency %d", r, f)
			}
			mx = max(mx, f)
		}
		if mx != top {
			t.Fatalf("row %d: max frequency %d, want explut[2L] = %d", r, mx, top)
		}
	}
}

// TestGoRunnerBatchSplit: a large batch (split across goroutines) equals row-by-row calls.
func TestGoRunnerBatchSplit(t *testing.T) {
	m := loadTiny(t)
	r := NewGoRunner(m)
	k := m.Order()
	rng := rand.New(rand.NewPCG(5, 5))
	n := 1000
	ctx := randomContexts(rng, k, n)
	all := make([]uint32, n*Outputs)
	if err := r.Predict(ctx, all); err != nil {
		t.Fatal(err)
	}
	one := make([]uint32, Outputs)
	for i := range n {
		if err := r.Predict(ctx[i*k:(i+1)*k], one); err != nil {
			t.Fatal(err)
		}
		for j, f := range one {
			if all[i*Outputs+j] != f {
				t.Fatalf("row %d symbol %d: batched %d, alone %d", i, j, all[i*Outputs+j], f)
			}
		}
	}
}
