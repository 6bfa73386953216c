package model

import (
	"fmt"
	"math/rand/v2"
	"os"
	"testing"
)

// BenchmarkPredict reports steps/s (context rows predicted per second) per backend and
// batch size. The model is testdata/tiny.lmfsm, or $LMFS_BENCH_MODEL, e.g. a realistic one:
//
//	/usr/bin/python3 model/train/make_fixture.py --order 16 --widths 512,256,256 --out /tmp/big.lmfsm
//	LMFS_BENCH_MODEL=/tmp/big.lmfsm go test ./model/ -run - -bench Predict
//
// $LMFS_BENCH_SESSIONS and $LMFS_BENCH_THREADS set the ORT runner's options.
func BenchmarkPredict(b *testing.B) {
	path := "testdata/tiny.lmfsm"
	if p := os.Getenv("LMFS_BENCH_MODEL"); p != "" {
		path = p
	}
	m, err := Load(path)
	if err != nil {
		b.Fatal(err)
	}
	var o Options
	fmt.Sscan(os.Getenv("LMFS_BENCH_SESSIONS"), &o.Sessions)
	fmt.Sscan(os.Getenv("LMFS_BENCH_THREADS"), &o.Threads)
	runners := []struct {
		name string
		mk   func(b *testing.B) Runner
	}{
		{"go", func(*testing.B) Runner { return NewGoRunner(m) }},
		{"ort", func(b *testing.B) Runner { return requireORT(b, m, o) }},
	}
	for _, rn := range runners {
		for _, bs := range []int{1, 16, 64, 256} {
			b.Run(fmt.Sprintf("%s/batch=%d", rn.name, bs), func(b *testing.B) {
				r := rn.mk(b)
				rng := rand.New(rand.NewPCG(1, uint64(bs)))
				ctx := randomContexts(rng, m.Order(), bs)
				out := make([]uint32, bs*Outputs)
				b.ResetTimer()
				for b.Loop() {
					if err := r.Predict(ctx, out); err != nil {
						b.Fatal(err)
					}
				}
				b.ReportMetric(float64(bs)*float64(b.N)/b.Elapsed().Seconds(), "steps/s")
			})
		}
	}
}

// BenchmarkBagSum: the bag sum alone (bagsum.go) on the default model, for the contexts of
// real text (this repository's README, cut into 2 KiB blocks like files are).
func BenchmarkBagSum(b *testing.B) {
	m, err := Default()
	if err != nil {
		b.Fatal(err)
	}
	text, err := os.ReadFile("../README.md")
	if err != nil {
		b.Fatal(err)
	}
	k := m.Order()
	var idx [][]int64
	for pos := range text {
		c := make([]uint16, k)
		for j := range c {
			if p := pos - 1 - j; p >= pos&^2047 {
				c[j] = uint16(text[p])
			} else {
				c[j] = 256
			}
		}
		row := make([]int64, m.Inputs())
		m.bagRows(c, row)
		idx = append(idx, row)
	}
	acc := make([]int32, m.h0)
	lanes := make([]uint64, m.h0)
	b.ResetTimer()
	n := 0
	for b.Loop() {
		m.bagSum(idx[n%len(idx)], acc, lanes)
		n++
	}
	b.ReportMetric(b.Elapsed().Seconds()*1e9/float64(n), "ns/row")
}
