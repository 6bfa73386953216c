package codec

// Offline tuning and ablation of the mixer (not run by default).
//
//	LMFS_TUNE=1 go test -run TestLMTune -v ./codec/
//
// The network: the model file in $LMFS_TUNE_MODEL (plain-Go evaluator), else a stand-in, an
// order-2 count model built from $LMFS_TUNE_TRAIN (default /work/data/train). Parameters are
// tuned on blocks sampled from the training corpus ($LMFS_TUNE_TRAIN) and reported on blocks
// sampled from the dev corpus ($LMFS_TUNE_DEV, default /work/shared/corpus/dev).

import (
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
)

// countModel is an order-2 byte model with fixed counts: a stand-in for a trained network.
type countModel struct {
	o1 [257][256]uint32
	o2 map[uint32]*[256]uint32
}

func newCountModel(blocks [][]byte) *countModel {
	m := &countModel{o2: map[uint32]*[256]uint32{}}
	for _, b := range blocks {
		c1, c2 := uint32(256), uint32(256)
		for _, c := range b {
			m.o1[c1][c]++
			k := c1 | c2<<9
			t := m.o2[k]
			if t == nil {
				t = new([256]uint32)
				m.o2[k] = t
			}
			t[c]++
			c2, c1 = c1, uint32(c)
		}
	}
	return m
}

func (m *countModel) Order() int { return 2 }

func (m *countModel) Predict(ctx []uint16, out []uint32) error {
	for r := 0; r < len(ctx)/2; r++ {
		c1, c2 := uint32(ctx[2*r]), uint32(ctx[2*r+1])
		o := out[r*256 : (r+1)*256]
		var t1, t2 uint64
		for x := 0; x < 256; x++ {
			t1 += uint64(m.o1[c1][x])
		}
		t := m.o2[c1|c2<<9]
		if t != nil {
			for x := 0; x < 256; x++ {
				t2 += uint64(t[x])
			}
		}
		for x := 0; x < 256; x++ {
			f := uint64(1)
			if t1 > 0 {
				f += uint64(m.o1[c1][x]) * 4096 / t1
			}
			if t2 > 0 {
				w := min(t2, 64)
				f += uint64(t[x]) * 4096 * w / 16 / t2
			}
			o[x] = uint32(min(f, 1<<16))
		}
	}
	return nil
}

// sampleBlocks takes up to per blocks from each top-level folder of dir, spread over its files.
func sampleBlocks(t *testing.T, dir string, per int, skip int) map[string][][]byte {
	groups := map[string][]string{}
	filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() && !strings.HasSuffix(path, ".tsv") && !strings.HasSuffix(path, ".md") {
			rel, _ := filepath.Rel(dir, path)
			parts := strings.Split(rel, string(filepath.Separator))
			if len(parts) > 1 && parts[0] != "logs" {
				groups[parts[0]] = append(groups[parts[0]], path)
			}
		}
		return nil
	})
	out := map[string][][]byte{}
	for g, files := range groups {
		sort.Strings(files)
		step := max(1, len(files)/per)
		for i := skip % step; i < len(files) && len(out[g]) < per; i += step {
			data, err := os.ReadFile(files[i])
			if err != nil {
				t.Fatal(err)
			}
			// Up to 4 blocks per file from its middle.
			for off := (len(data) / 2) &^ (BlockSize - 1); off < len(data) && len(out[g]) < per && off < len(data)/2+4*BlockSize; off += BlockSize {
				out[g] = append(out[g], data[off:min(off+BlockSize, len(data))])
			}
		}
	}
	return out
}

type tuneSet struct {
	blocks [][]byte
	paths  [][]uint16
	groups []string
	raw    int
}

func prepare(t testing.TB, p Predictor, sets map[string][][]byte) *tuneSet {
	ts := &tuneSet{}
	var names []string
	for g := range sets {
		names = append(names, g)
	}
	sort.Strings(names)
	k := p.Order()
	out := make([]uint32, 256*BlockSize)
	var cum [257]uint32
	for _, g := range names {
		for _, b := range sets[g] {
			ctx := make([]uint16, len(b)*k)
			for i := range b {
				fillCtx(ctx[i*k:(i+1)*k], b, i)
			}
			if err := p.Predict(ctx, out[:len(b)*256]); err != nil {
				t.Fatal(err)
			}
			path := make([]uint16, len(b)*8)
			for i := range b {
				netCum(&cum, out[i*256:(i+1)*256])
				netPath(path[i*8:i*8+8], &cum, b[i])
			}
			ts.blocks = append(ts.blocks, b)
			ts.paths = append(ts.paths, path)
			ts.groups = append(ts.groups, g)
			ts.raw += len(b)
		}
	}
	return ts
}

// cost returns bits/byte per group and overall, from the coded stream sizes (+ exact ideal
// bits for precision: -log2 of the coded probabilities).
func (ts *tuneSet) cost(p *mixParams) (map[string]float64, float64) {
	s := newLMState(p)
	bits := map[string]float64{}
	n := map[string]int{}
	var total float64
	for i, b := range ts.blocks {
		s.reset()
		path := ts.paths[i]
		var c float64
		for j, ch := range b {
			for d := 0; d < 8; d++ {
				bit := int(ch>>(7-d)) & 1
				pr := float64(s.predict(uint32(path[j*8+d]))) / 65536
				if bit == 0 {
					pr = 1 - pr
				}
				c -= math.Log2(pr)
				s.update(bit)
			}
		}
		bits[ts.groups[i]] += c
		n[ts.groups[i]] += len(b)
		total += c
	}
	for g := range bits {
		bits[g] /= float64(n[g])
	}
	return bits, total / float64(ts.raw)
}

func TestLMTune(t *testing.T) {
	if os.Getenv("LMFS_TUNE") == "" {
		t.Skip("set LMFS_TUNE=1")
	}
	trainDir := envOr("LMFS_TUNE_TRAIN", "/work/data/train")
	devDir := envOr("LMFS_TUNE_DEV", "/work/shared/corpus/dev")
	per := 60
	train := sampleBlocks(t, trainDir, per, 1)
	dev := sampleBlocks(t, devDir, per, 0)
	var pred Predictor
	if path := os.Getenv("LMFS_TUNE_MODEL"); path != "" {
		pred = loadTuneModel(t, path)
	} else {
		var all [][]byte
		for _, bs := range sampleBlocks(t, trainDir, 3000, 7) {
			all = append(all, bs...)
		}
		pred = newCountModel(all)
		t.Logf("stand-in network: order-2 counts from %d training blocks", len(all))
	}
	tr := prepare(t, pred, train)
	dv := prepare(t, pred, dev)
	t.Logf("tune: %d blocks, dev: %d blocks", len(tr.blocks), len(dv.blocks))

	netP := defaultMix
	netP.useInput = [nInputs]bool{true}
	netP.ablate = true
	netP.apmWeight = 0
	netP.lr = 0
	netP.initW[0] = 65536 // the network's own probabilities, unscaled
	report := func(name string, p *mixParams) float64 {
		_, tt := tr.cost(p)
		g, d := dv.cost(p)
		var gs []string
		for k, v := range g {
			gs = append(gs, k+" "+ftoa(v))
		}
		sort.Strings(gs)
		t.Logf("%-28s train %.4f  dev %.4f  (%s)", name, tt, d, strings.Join(gs, ", "))
		return tt
	}
	names := []string{"network", "order0"}
	for _, o := range ctrOrders {
		names = append(names, "order"+itoa(o))
	}
	names = append(names, "match", "bias")
	report("network alone", &netP)
	for i := 1; i < nInputs-1; i++ {
		p := defaultMix
		p.useInput = [nInputs]bool{true}
		p.useInput[i] = true
		p.ablate = true
		p.apmWeight = 0
		report("network + "+names[i]+" (no APM)", &p)
	}
	report("default", &defaultMix)
	for i := 0; i < nInputs; i++ { // i = 0: the in-block models alone, without the network
		p := defaultMix
		p.useInput[i] = false
		p.ablate = true
		report("without "+names[i], &p)
	}
	p := defaultMix
	p.apmWeight = 0
	report("without APM", &p)
	p = defaultMix
	p.selBits = !p.selBits
	report("toggle bit-position sets", &p)
	p = defaultMix
	p.mix2 = !p.mix2
	report("toggle second mixer", &p)
	p = defaultMix
	p.apm2 = !p.apm2
	report("toggle second APM", &p)

	if os.Getenv("LMFS_TUNE_SEARCH") == "" {
		return
	}
	best := defaultMix
	bestCost := report("start", &best)
	try := func(name string, mod func(p *mixParams)) {
		p := best
		mod(&p)
		_, c := tr.cost(&p)
		if c < bestCost-1e-4 {
			bestCost, best = c, p
			t.Logf("  better: %s -> %.4f", name, c)
		}
	}
	for round := 0; round < 1; round++ {
		for _, v := range []int64{1, 2, 3, 4, 6, 8} {
			for _, sh := range []uint{14, 15} {
				try("lr "+itoa(int(v))+">>"+itoa(int(sh)), func(p *mixParams) { p.lr, p.lrShift = v, sh })
			}
		}
		for i := 1; i <= inMatch; i++ {
			for _, v := range []int32{0, 4096, 8192, 16384, 24576, 32768} {
				try(names[i]+" w "+itoa(int(v)), func(p *mixParams) { p.initW[i] = v })
			}
		}
		for _, v := range []int32{40000, 50000, 60000, 65536, 72000} {
			try("net w "+itoa(int(v)), func(p *mixParams) { p.initW[0] = v })
		}
		for _, v := range []int32{30, 60, 127, 255, 1023} {
			try("ctrLimit "+itoa(int(v)), func(p *mixParams) { p.ctrLimit = v })
		}
		for _, v := range []int{4, 5, 6, 8} {
			try("matchMin "+itoa(v), func(p *mixParams) { p.matchMin = v })
		}
		for _, v := range []int{0, 1, 2, 3} {
			try("apmWeight "+itoa(v), func(p *mixParams) { p.apmWeight = v })
		}
		for _, v := range []uint{5, 6, 7} {
			try("apmRate "+itoa(int(v)), func(p *mixParams) { p.apmRate = v })
		}
		for _, v := range []uint{13, 14, 15} {
			try("ctrBits "+itoa(int(v)), func(p *mixParams) { p.ctrBits = v })
		}
	}
	report("tuned", &best)
	t.Logf("tuned params: %+v", best)
}

func envOr(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}

func ftoa(v float64) string { return strconv.FormatFloat(v, 'f', 3, 64) }
func itoa(v int) string     { return strconv.Itoa(v) }
