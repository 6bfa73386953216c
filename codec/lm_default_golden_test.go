package codec

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"log/slog"
	"math/rand"
	"os"
	"path/filepath"
	"testing"

	"lmfs/model"
)

// Golden vectors of the shipped model: blocks and their LM payloads, coded once with the
// default model and committed. Every later lmfs must decode them byte-exact, on the Go
// evaluator and on ONNX Runtime, and must still encode them to the same bytes. When the default
// model changes, copy the old model file to testdata/golden/<short id>.lmfsm so this test (and
// the stores that hold blocks coded with it) keep decoding.
//
// File format: repeated {uint16 raw length, raw, uint16 payload length, payload}, little endian.

const goldenFile = "testdata/golden/default-model.bin"

func goldenBlocks() [][]byte {
	var out [][]byte
	readme, _ := os.ReadFile("../README.md")
	src, _ := os.ReadFile("lm.go")
	out = append(out, readme[:min(len(readme), BlockSize)], src[:min(len(src), BlockSize)])
	out = append(out, []byte(`{"name":"lmfs","blocks":[1,2,3],"ratio":0.352,"codecs":{"lm":13288,"brotli":318}}`))
	out = append(out, bytes.Repeat([]byte("<tr><td>row</td><td>42</td></tr>\n"), 62))
	rnd := make([]byte, BlockSize)
	rand.New(rand.NewSource(42)).Read(rnd)
	out = append(out, rnd, make([]byte, 100), []byte{0xff}, []byte("a"))
	return out
}

func readGolden(t *testing.T) (raws, payloads [][]byte) {
	b, err := os.ReadFile(goldenFile)
	if err != nil {
		t.Fatalf("golden vectors: %v (LMFS_WRITE_GOLDEN=1 makes them, once)", err)
	}
	next := func() []byte {
		if len(b) < 2 {
			t.Fatal("golden file truncated")
		}
		n := int(binary.LittleEndian.Uint16(b))
		if len(b) < 2+n {
			t.Fatal("golden file truncated")
		}
		v := b[2 : 2+n]
		b = b[2+n:]
		return v
	}
	for len(b) > 0 {
		raws = append(raws, next())
		payloads = append(payloads, next())
	}
	return raws, payloads
}

// goldenModel finds the model that coded the golden payloads: the default, or a kept copy.
func goldenModel(t *testing.T, id uint32) *model.Model {
	m, err := model.Default()
	if err != nil {
		t.Fatal(err)
	}
	if m.ShortID() == id {
		return m
	}
	m, err = model.Load(filepath.Join("testdata/golden", fmt.Sprintf("%08x.lmfsm", id)))
	if err != nil {
		t.Fatalf("golden vectors were coded with model %08x, which is neither the default nor kept in testdata/golden: %v", id, err)
	}
	return m
}

func TestGoldenDefaultModel(t *testing.T) {
	if os.Getenv("LMFS_WRITE_GOLDEN") == "1" {
		writeGolden(t)
	}
	raws, payloads := readGolden(t)
	if len(raws) == 0 {
		t.Fatal("no golden vectors")
	}
	id := binary.BigEndian.Uint32(payloads[0])
	m := goldenModel(t, id)
	lens := make([]int, len(raws))
	for i := range raws {
		lens[i] = len(raws[i])
	}
	runners := map[string]model.Runner{"go": model.NewGoRunner(m)}
	r, err := model.NewORTRunner(m, model.Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	switch {
	case err == nil:
		runners["ort"] = r
		defer r.Close()
	case os.Getenv("CI") == "true" || os.Getenv("LMFS_REQUIRE_ORT") == "1":
		t.Fatalf("ONNX Runtime is required here (run make ort): %v", err)
	default:
		t.Logf("ONNX Runtime unavailable, Go evaluator only: %v", err)
	}
	for name, r := range runners {
		c := NewLMCodec(r, m.ShortID())
		out, errs := c.DecodeBatch(payloads, lens)
		for i := range raws {
			if errs[i] != nil || !bytes.Equal(out[i], raws[i]) {
				t.Errorf("%s: golden block %d does not decode byte-exact (err %v)", name, i, errs[i])
			}
		}
		// One block at a time too: batching never changes a result.
		for i := range raws {
			o, e := c.DecodeBatch(payloads[i:i+1], lens[i:i+1])
			if e[0] != nil || !bytes.Equal(o[0], raws[i]) {
				t.Errorf("%s: golden block %d alone does not decode (err %v)", name, i, e[0])
			}
		}
		enc, err := c.EncodeBatch(raws)
		if err != nil {
			t.Fatal(err)
		}
		for i := range raws {
			if !bytes.Equal(enc[i], payloads[i]) {
				t.Errorf("%s: golden block %d encodes to different bytes than committed", name, i)
			}
		}
	}
}

func writeGolden(t *testing.T) {
	m, err := model.Default()
	if err != nil {
		t.Fatal(err)
	}
	c := NewLMCodec(model.NewGoRunner(m), m.ShortID())
	raws := goldenBlocks()
	payloads, err := c.EncodeVerified(raws)
	if err != nil {
		t.Fatal(err)
	}
	var b []byte
	for i := range raws {
		b = binary.LittleEndian.AppendUint16(b, uint16(len(raws[i])))
		b = append(b, raws[i]...)
		b = binary.LittleEndian.AppendUint16(b, uint16(len(payloads[i])))
		b = append(b, payloads[i]...)
	}
	os.MkdirAll(filepath.Dir(goldenFile), 0o755)
	if err := os.WriteFile(goldenFile, b, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("wrote %d golden vectors with model %08x", len(raws), m.ShortID())
}
