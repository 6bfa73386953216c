package codec

import (
	"bytes"
	"fmt"
	"os"
	"testing"

	"lmfs/model"
)

const tinyModel = "../model/testdata/tiny.lmfsm"

func loadTuneModel(t testing.TB, path string) Predictor {
	m, err := model.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	return model.NewGoRunner(m)
}

func tinyCodec(t testing.TB) *LMCodec { return fixtureCodec(t, tinyModel) }

// fixtureCodec is an LM codec of a fixture model (model/testdata) on the Go evaluator.
func fixtureCodec(t testing.TB, path string) *LMCodec {
	if _, err := os.Stat(path); err != nil {
		t.Skip("no fixture model: ", err)
	}
	m, err := model.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	return NewLMCodec(model.NewGoRunner(m), m.ShortID())
}

// TestLMTinyModel round-trips blocks through the real model package (Go evaluator), with a
// format-1 model, a format-2 one (hashed n-gram rows) and a format-3 one (the bag shared).
func TestLMTinyModel(t *testing.T) {
	for _, path := range []string{tinyModel, "../model/testdata/tiny-ng.lmfsm", "../model/testdata/tiny-ng3.lmfsm"} {
		t.Run(path[len("../model/testdata/"):], func(t *testing.T) { testLMFixture(t, fixtureCodec(t, path)) })
	}
}

func testLMFixture(t *testing.T, c *LMCodec) {
	var blocks [][]byte
	for _, b := range testBlocks() {
		blocks = append(blocks, b)
	}
	src, _ := os.ReadFile("lm.go")
	for off := 0; off+BlockSize <= len(src) && off < 4*BlockSize; off += BlockSize {
		blocks = append(blocks, src[off:off+BlockSize])
	}
	p, err := c.EncodeVerified(blocks)
	if err != nil {
		t.Fatal(err)
	}
	lens := make([]int, len(blocks))
	for i, b := range blocks {
		lens[i] = len(b)
	}
	for _, live := range []int{1, 5, 512} {
		c.SetBatch(DefaultLMBatchRows, live)
		out, errs := NewLMSet(c).DecodeBatch(p, lens)
		for i := range blocks {
			if errs[i] != nil || !bytes.Equal(out[i], blocks[i]) {
				t.Fatalf("decode batch %d: block %d: %v", live, i, errs[i])
			}
		}
	}
}

// TestLMConcurrent codes from several goroutines on one codec (run with -race).
func TestLMConcurrent(t *testing.T) {
	c := tinyCodec(t)
	blocks := [][]byte{testBlocks()["text"][:300], testBlocks()["repeat"][:200], testBlocks()["random"][:100]}
	want, err := c.EncodeBatch(blocks)
	if err != nil {
		t.Fatal(err)
	}
	errc := make(chan error, 4)
	for g := 0; g < 4; g++ {
		go func() {
			p, err := c.EncodeVerified(blocks)
			if err == nil {
				out, errs := c.DecodeBatch(p, []int{300, 200, 100})
				for i := range blocks {
					if errs[i] != nil || !bytes.Equal(out[i], blocks[i]) || !bytes.Equal(p[i], want[i]) {
						err = fmt.Errorf("block %d differs (%v)", i, errs[i])
					}
				}
			}
			errc <- err
		}()
	}
	for g := 0; g < 4; g++ {
		if err := <-errc; err != nil {
			t.Error(err)
		}
	}
}
