package codec

import (
	"fmt"
	"io"
	"log/slog"
	"os"
	"testing"

	"lmfs/model"
)

// benchText returns n bytes of this package's sources (a stand-in for real data).
func benchBlocks(b *testing.B, n int) [][]byte { return benchBlocksAny(b, n) }

func benchBlocksAny(b testing.TB, n int) [][]byte {
	var src []byte
	for _, f := range []string{"lm.go", "mixer.go", "rangecoder.go", "record.go", "classic.go", "block.go"} {
		d, err := os.ReadFile(f)
		if err != nil {
			b.Fatal(err)
		}
		src = append(src, d...)
	}
	var blocks [][]byte
	for off := 0; len(blocks) < n; off = (off + BlockSize) % (len(src) - BlockSize) {
		blocks = append(blocks, src[off:off+BlockSize])
	}
	return blocks
}

// BenchmarkCoderMixer measures the arithmetic coder plus mixer alone (the network's
// probabilities precomputed): the cost the codec adds to the model's.
func BenchmarkCoderMixer(b *testing.B) {
	blocks := benchBlocks(b, 16)
	p := newTestPredictor(2)
	ts := prepare(&testing.T{}, p, map[string][][]byte{"src": blocks})
	s := newLMState(&defaultMix)
	b.SetBytes(int64(ts.raw))
	b.ResetTimer()
	var buf []byte
	for b.Loop() {
		for i, blk := range ts.blocks {
			buf = s.encodeBlock(buf[:0], blk, ts.paths[i])
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(ts.raw), "ns/byte")
}

// BenchmarkArithCoder measures the binary arithmetic coder alone (8 decisions per byte).
func BenchmarkArithCoder(b *testing.B) {
	const n = 1 << 16
	probs := make([]uint32, n)
	bits := make([]int, n)
	x := uint32(1)
	for i := range probs {
		x = x*1664525 + 1013904223
		probs[i] = 1 + (x>>8)%65535
		bits[i] = b2i((x>>4)&0xFFFF < probs[i])
	}
	b.SetBytes(n / 8)
	for b.Loop() {
		e := newArithEncoder(nil)
		for i, p := range probs {
			e.encode(bits[i], p)
		}
		e.finish(0)
	}
}

// benchCodec is the shipped default model on ONNX Runtime (the Go evaluator when the library
// is missing): what a mount uses. The model's own time is BenchmarkPredict in package model.
func benchCodec(b *testing.B) *LMCodec {
	m, err := model.Default()
	if err != nil {
		b.Fatal(err)
	}
	r, err := model.Open(m, model.Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { r.Close() })
	b.Logf("model %s on %s", m.Name(), r.Backend())
	return NewLMCodec(r, m.ShortID())
}

func benchLM(b *testing.B, batch int, decode bool) {
	c := benchCodec(b)
	blocks := benchBlocks(b, batch)
	lens := make([]int, len(blocks))
	for i := range blocks {
		lens[i] = len(blocks[i])
	}
	payloads, err := c.EncodeBatch(blocks)
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(batch * BlockSize))
	b.ResetTimer()
	for b.Loop() {
		if decode {
			_, errs := c.DecodeBatch(payloads, lens)
			if errs[0] != nil {
				b.Fatal(errs[0])
			}
		} else if _, err := c.EncodeBatch(blocks); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkLMEncode/Decode: the default model, batches of 1..256 blocks.
func BenchmarkLMEncode(b *testing.B) {
	for _, n := range []int{1, 16, 64, 256} {
		b.Run(fmt.Sprintf("batch%d", n), func(b *testing.B) { benchLM(b, n, false) })
	}
}

func BenchmarkLMDecode(b *testing.B) {
	for _, n := range []int{1, 16, 64, 256} {
		b.Run(fmt.Sprintf("batch%d", n), func(b *testing.B) { benchLM(b, n, true) })
	}
}
