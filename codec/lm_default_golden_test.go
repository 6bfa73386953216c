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

// Golden vectors of every model lmfs has shipped as its default: blocks and their LM payloads,
// coded once with that model and committed as testdata/golden/<short id>.bin. Every later lmfs
// must decode them byte-exact, on the Go evaluator and on ONNX Runtime, and must still encode
// them to the same bytes. When the default model changes, copy the old model file to
// testdata/golden/<short id>.lmfsm (its vectors stay), and LMFS_WRITE_GOLDEN=1 writes the new
// default's vectors once.
//
// File format: repeated {uint16 raw length, raw, uint16 payload length, payload}, little endian.

// goldenFiles are the committed vector files, one per shipped model.
func goldenFiles(t *testing.T) []string {
	files, err := filepath.Glob("testdata/golden/*.bin")
	if err != nil || len(files) == 0 {
		t.Fatalf("no golden vectors in testdata/golden (LMFS_WRITE_GOLDEN=1 makes the default's): %v", err)
	}
	return files
}

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

func readGolden(t *testing.T, file string) (raws, payloads [][]byte) {
	b, err := os.ReadFile(file)
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
	def, err := model.Default()
	if err != nil {
		t.Fatal(err)
	}
	haveDefault := false
	for _, f := range goldenFiles(t) {
		t.Run(filepath.Base(f), func(t *testing.T) {
			id := testGoldenFile(t, f)
			haveDefault = haveDefault || id == def.ShortID()
		})
	}
	if !haveDefault {
		t.Errorf("no golden vectors of the default model %08x (LMFS_WRITE_GOLDEN=1 writes them)", def.ShortID())
	}
}

func testGoldenFile(t *testing.T, file string) uint32 {
	raws, payloads := readGolden(t, file)
	if len(raws) == 0 {
		t.Fatal("no golden vectors")
	}
	id := binary.BigEndian.Uint32(payloads[0])
	if want := fmt.Sprintf("%08x.bin", id); filepath.Base(file) != want {
		t.Errorf("%s holds vectors of model %08x: it should be named %s", file, id, want)
	}
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
	return id
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
	file := filepath.Join("testdata/golden", fmt.Sprintf("%08x.bin", m.ShortID()))
	if err := os.WriteFile(file, b, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("wrote %d golden vectors with model %08x", len(raws), m.ShortID())
}
