package model

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"math/rand/v2"
	"os"
	"strings"
	"testing"
)

// spec is an in-memory model for building test files (the ONNX graph is a placeholder:
// Parse does not read it, the Go evaluator does not need it).
type spec struct {
	order   int
	shifts  []int
	clip    int
	bag     []int8
	bagBias []int32
	ws      [][]int8
	bs      [][]int32
	widths  []int // H0..HN
	explut  []uint32
	onnx    []byte
	ngOrd   []int // format 2: hashed n-gram orders (bag has len(ngOrd)<<ngBits more rows)
	ngBits  int
}

// randomSpec makes a valid random model: widths are H0 and the hidden widths (256 added).
func randomSpec(seed uint64, order int, widths []int) *spec {
	rng := rand.New(rand.NewPCG(seed, 99))
	s := &spec{order: order, clip: 255, widths: append(append([]int{}, widths...), 256), onnx: []byte("not an onnx graph")}
	i8 := func(n int) []int8 {
		v := make([]int8, n)
		for i := range v {
			v[i] = int8(rng.IntN(255) - 127)
		}
		return v
	}
	i32 := func(n, r int) []int32 {
		v := make([]int32, n)
		for i := range v {
			v[i] = int32(rng.IntN(2*r+1) - r)
		}
		return v
	}
	h0 := s.widths[0]
	s.bag = i8(order * Symbols * h0)
	s.bagBias = i32(h0, 64)
	s.shifts = []int{3}
	for i := 1; i < len(s.widths); i++ {
		s.ws = append(s.ws, i8(s.widths[i-1]*s.widths[i]))
		s.bs = append(s.bs, i32(s.widths[i], 512))
		s.shifts = append(s.shifts, 9)
	}
	s.explut = make([]uint32, 2*s.clip+1)
	for i := range s.explut {
		d := 2*s.clip - i // 1/16 bit units below the maximum
		v := uint32(65536) >> (d / 16)
		s.explut[i] = max(1, v-v/32*uint32(d%16))
	}
	return s
}

// file serializes s; mutate (optional) edits the JSON header before it is written.
func (s *spec) file(mutate func(h map[string]any)) []byte {
	var blob bytes.Buffer
	tensors := map[string]any{}
	put := func(name, dtype string, shape []int, data any) {
		for blob.Len()%64 != 0 {
			blob.WriteByte(0)
		}
		off := blob.Len()
		binary.Write(&blob, binary.LittleEndian, data)
		tensors[name] = map[string]any{"dtype": dtype, "shape": shape, "offset": off, "length": blob.Len() - off}
	}
	put("bag", "int8", []int{s.order*Symbols + len(s.ngOrd)<<s.ngBits, s.widths[0]}, s.bag)
	put("bag_bias", "int32", []int{s.widths[0]}, s.bagBias)
	for i := range s.ws {
		n := string(rune('1' + i))
		put("w"+n, "int8", []int{s.widths[i], s.widths[i+1]}, s.ws[i])
		put("b"+n, "int32", []int{s.widths[i+1]}, s.bs[i])
	}
	put("explut", "uint32", []int{len(s.explut)}, s.explut)
	onnxOff := blob.Len()
	blob.Write(s.onnx)
	h := map[string]any{
		"format": 1, "arch": "ctxmlp", "name": "test-model", "order": s.order, "shifts": s.shifts,
		"logit_clip": s.clip, "tensors": tensors,
		"onnx":  map[string]any{"offset": onnxOff, "length": len(s.onnx)},
		"train": map[string]any{"note": "test"},
	}
	if len(s.ngOrd) > 0 {
		h["format"] = 2
		h["ngram"] = map[string]any{"orders": s.ngOrd, "bits": s.ngBits}
	}
	if mutate != nil {
		mutate(h)
	}
	hj, err := json.Marshal(h)
	if err != nil {
		panic(err)
	}
	var out bytes.Buffer
	out.WriteString(Magic)
	binary.Write(&out, binary.LittleEndian, uint32(len(hj)))
	out.Write(hj)
	out.Write(blob.Bytes())
	return out.Bytes()
}

func tinyBytes(t testing.TB) []byte {
	t.Helper()
	data, err := os.ReadFile("testdata/tiny.lmfsm")
	if err != nil {
		t.Fatal(err)
	}
	return data
}

func TestParseTiny(t *testing.T) {
	data := tinyBytes(t)
	m, err := Parse(data)
	if err != nil {
		t.Fatal(err)
	}
	if m.Order() != 8 || m.LogitClip() != 255 {
		t.Errorf("order %d clip %d, want 8 and 255", m.Order(), m.LogitClip())
	}
	if got := m.Widths(); len(got) != 3 || got[0] != 64 || got[1] != 64 || got[2] != 256 {
		t.Errorf("widths %v", got)
	}
	if !strings.HasPrefix(m.Name(), "fixture-k8") {
		t.Errorf("name %q", m.Name())
	}
	id := m.ID()
	if m.ShortID() != binary.BigEndian.Uint32(id[:4]) {
		t.Errorf("ShortID %08x, ID %x", m.ShortID(), id)
	}
	if !bytes.Equal(m.Bytes(), data) {
		t.Error("Bytes differ from the file")
	}
	if len(m.ONNX()) == 0 || !json.Valid(m.Train()) {
		t.Error("no ONNX graph or train metadata")
	}
	if _, err := Load("testdata/tiny.lmfsm"); err != nil {
		t.Error(err)
	}
	if _, err := Load("testdata/no-such-file"); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing file: %v", err)
	}
}

func TestParseBuilt(t *testing.T) {
	s := randomSpec(1, 3, []int{16, 8})
	if _, err := Parse(s.file(nil)); err != nil {
		t.Fatal(err)
	}
}

func TestParseErrors(t *testing.T) {
	good := randomSpec(2, 2, []int{8})
	base := good.file(nil)
	hlen := int(binary.LittleEndian.Uint32(base[8:12]))

	type tc struct {
		name string
		data []byte
		want error
		msg  string
	}
	cases := []tc{
		{"empty", nil, ErrTruncated, ""},
		{"magic prefix", []byte("LMFS"), ErrTruncated, ""},
		{"foreign", []byte("\x89PNG\r\n\x1a\n0000000000"), ErrNotModel, ""},
		{"newer magic", append([]byte("LMFSMDL2"), base[8:]...), ErrNewer, ""},
		{"no header length", base[:10], ErrTruncated, ""},
		{"header cut", base[:12+hlen/2], ErrTruncated, ""},
		{"blob cut", base[:len(base)-len(good.onnx)-3], ErrTruncated, ""},
		{"onnx cut", base[:len(base)-1], ErrTruncated, "onnx"},
		{"huge header", append(append([]byte(Magic), 0xff, 0xff, 0xff, 0x7f), base[12:]...), ErrInvalid, "header length"},
		{"not json", append(append([]byte(Magic), 3, 0, 0, 0), "{x}"...), ErrInvalid, "JSON"},
	}
	mut := func(name string, want error, msg string, f func(h map[string]any)) {
		cases = append(cases, tc{name, good.file(f), want, msg})
	}
	tensor := func(h map[string]any, n string) map[string]any {
		return h["tensors"].(map[string]any)[n].(map[string]any)
	}
	mut("newer format", ErrNewer, "format 4", func(h map[string]any) { h["format"] = 4; h["arch"] = "transformer" })
	mut("format 2 without ngram", ErrInvalid, "needs the ngram field", func(h map[string]any) { h["format"] = 2 })
	mut("format 1 with ngram", ErrInvalid, "format 1 has no n-gram", func(h map[string]any) {
		h["ngram"] = map[string]any{"orders": []int{2}, "bits": 4}
	})
	mut("ngram order above K", ErrInvalid, "n-gram order 99", func(h map[string]any) {
		h["format"] = 2
		h["ngram"] = map[string]any{"orders": []int{99}, "bits": 4}
	})
	mut("ngram rows missing from the bag", ErrInvalid, "K*257 + G*2^bits", func(h map[string]any) {
		h["format"] = 2
		h["ngram"] = map[string]any{"orders": []int{2}, "bits": 4}
	})
	mut("format 0", ErrInvalid, "format 0", func(h map[string]any) { h["format"] = 0 })
	mut("no format", ErrInvalid, "no format", func(h map[string]any) { delete(h, "format") })
	mut("arch", ErrInvalid, "arch", func(h map[string]any) { h["arch"] = "gru" })
	mut("empty name", ErrInvalid, "name", func(h map[string]any) { h["name"] = "" })
	mut("order 0", ErrInvalid, "order", func(h map[string]any) { h["order"] = 0 })
	mut("order mismatch", ErrInvalid, "rows", func(h map[string]any) { h["order"] = 3 })
	mut("clip 0", ErrInvalid, "logit_clip", func(h map[string]any) { h["logit_clip"] = 0 })
	mut("clip mismatch", ErrInvalid, "explut", func(h map[string]any) { h["logit_clip"] = 100 })
	mut("shift 32", ErrInvalid, "shifts", func(h map[string]any) { h["shifts"] = []int{3, 32} })
	mut("negative shift", ErrInvalid, "shifts", func(h map[string]any) { h["shifts"] = []int{-1, 3} })
	mut("too few shifts", ErrInvalid, "shifts", func(h map[string]any) { h["shifts"] = []int{3} })
	mut("too many shifts", ErrInvalid, "tensors", func(h map[string]any) { h["shifts"] = []int{3, 3, 3} })
	mut("missing tensor", ErrInvalid, "tensors", func(h map[string]any) { delete(h["tensors"].(map[string]any), "b1") })
	mut("dtype", ErrInvalid, "dtype", func(h map[string]any) { tensor(h, "bag")["dtype"] = "float32" })
	mut("rank", ErrInvalid, "rank", func(h map[string]any) { tensor(h, "bag_bias")["shape"] = []int{8, 1} })
	mut("length", ErrInvalid, "length", func(h map[string]any) { tensor(h, "w1")["length"] = 7 })
	mut("zero dim", ErrInvalid, "dimension", func(h map[string]any) { tensor(h, "w1")["shape"] = []int{0, 256} })
	mut("huge dims", ErrInvalid, "", func(h map[string]any) { tensor(h, "w1")["shape"] = []int{1 << 30, 1 << 30} })
	mut("offset past the end", ErrTruncated, "w1", func(h map[string]any) { tensor(h, "w1")["offset"] = int64(1) << 62 })
	mut("negative offset", ErrInvalid, "", func(h map[string]any) { tensor(h, "w1")["offset"] = -64 })
	mut("float shape", ErrInvalid, "header", func(h map[string]any) { tensor(h, "w1")["shape"] = []float64{8.5, 256} })
	mut("no onnx", ErrInvalid, "onnx", func(h map[string]any) { delete(h, "onnx") })
	mut("last width", ErrInvalid, "last layer", func(h map[string]any) {
		tensor(h, "w1")["shape"] = []int{8, 128}
		tensor(h, "w1")["length"] = 8 * 128
	})

	// Format 3: the graph shares tensors with the file (onnx.shared).
	ng := ngramSpec()
	ngMut := func(name string, want error, msg string, f func(h map[string]any)) {
		cases = append(cases, tc{name, ng.file(f), want, msg})
	}
	shared := func(h map[string]any, names ...string) {
		h["format"] = 3
		h["onnx"].(map[string]any)["shared"] = names
	}
	ngMut("format 3 without shared", ErrInvalid, "needs onnx.shared", func(h map[string]any) { h["format"] = 3 })
	ngMut("format 2 with shared", ErrInvalid, "format 2 has no onnx.shared", func(h map[string]any) {
		h["onnx"].(map[string]any)["shared"] = []string{"bag"}
	})
	ngMut("shared unknown tensor", ErrInvalid, "not a tensor", func(h map[string]any) { shared(h, "bag", "nope") })
	ngMut("shared twice", ErrInvalid, "twice", func(h map[string]any) { shared(h, "bag", "bag") })

	bad := func(name string, want error, msg string, f func(s *spec)) {
		s := randomSpec(2, 2, []int{8})
		f(s)
		cases = append(cases, tc{name, s.file(nil), want, msg})
	}
	bad("weight -128", ErrInvalid, "-128", func(s *spec) { s.ws[0][5] = -128 })
	bad("bag -128", ErrInvalid, "-128", func(s *spec) { s.bag[100] = -128 })
	bad("bag bias bound", ErrInvalid, "2^24", func(s *spec) { s.bagBias[0] = 1<<24 - 100 })
	bad("dense bias bound", ErrInvalid, "2^24", func(s *spec) { s.bs[0][3] = -(1<<24 - 8*127*128) })
	bad("explut zero", ErrInvalid, "explut", func(s *spec) { s.explut[0] = 0 })
	bad("explut big", ErrInvalid, "explut", func(s *spec) { s.explut[len(s.explut)-1] = 1<<16 + 1 })
	bad("explut decreasing", ErrInvalid, "decreases", func(s *spec) { s.explut[len(s.explut)-1] = 5 })

	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			m, err := Parse(c.data)
			if err == nil {
				t.Fatalf("parsed: %v", m)
			}
			if !errors.Is(err, c.want) {
				t.Errorf("error %q is not %v", err, c.want)
			}
			if !strings.Contains(err.Error(), c.msg) {
				t.Errorf("error %q does not mention %q", err, c.msg)
			}
		})
	}
	// Every truncation of a valid file is refused with an error, never a panic.
	for n := 0; n < len(base); n++ {
		if _, err := Parse(base[:n]); err == nil {
			t.Fatalf("truncated to %d of %d bytes: parsed", n, len(base))
		}
	}
}

func FuzzParse(f *testing.F) {
	// Seeds beyond testdata/fuzz/FuzzParse (kept small: the fuzzer slows down on big inputs).
	f.Add(randomSpec(3, 1, []int{4}).file(nil))
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := Parse(data)
		if err != nil {
			return
		}
		// A file that parses must evaluate without panicking, on extreme contexts too.
		k := m.Order()
		ctx := make([]uint16, 2*k)
		for i := range k {
			ctx[i] = 256
			ctx[k+i] = uint16(i * 37 % 257)
		}
		out := make([]uint32, 2*Outputs)
		if err := NewGoRunner(m).Predict(ctx, out); err != nil {
			t.Fatal(err)
		}
		for _, f := range out {
			if f < 1 || f > MaxExp {
				t.Fatalf("frequency %d", f)
			}
		}
	})
}

// ngramSpec is a valid random format-2 model: order 2, one n-gram table of 8 rows.
func ngramSpec() *spec {
	s := randomSpec(5, 2, []int{8})
	s.ngOrd, s.ngBits = []int{2}, 3
	s.bag = append(s.bag, make([]int8, 8<<3)...)
	return s
}

// TestONNXShared: a format-3 file's graph comes back with its shared tensors appended as one
// more ModelProto.graph field (onnxshared.go), byte for byte as the wire format says; formats
// 1 and 2 return the stored graph itself.
func TestONNXShared(t *testing.T) {
	s := ngramSpec()
	m, err := Parse(s.file(nil))
	if err != nil {
		t.Fatal(err)
	}
	if m.Format() != 2 || !bytes.Equal(m.ONNX(), s.onnx) {
		t.Fatalf("format %d: the graph is not the stored one", m.Format())
	}
	m, err = Parse(s.file(func(h map[string]any) {
		h["format"] = 3
		h["onnx"].(map[string]any)["shared"] = []string{"bag", "bag_bias"}
	}))
	if err != nil {
		t.Fatal(err)
	}
	got := m.ONNX()
	if m.Format() != 3 || !bytes.HasPrefix(got, s.onnx) {
		t.Fatalf("format %d: the graph does not start with the stored one", m.Format())
	}
	tensor := func(name string, dims []int, dtype byte, raw []byte) []byte {
		var tp []byte
		for _, d := range dims {
			tp = append(tp, 0x08)
			tp = binary.AppendUvarint(tp, uint64(d))
		}
		tp = append(tp, 0x10, dtype, 0x42, byte(len(name)))
		tp = append(tp, name...)
		tp = append(tp, 0x4A)
		tp = binary.AppendUvarint(tp, uint64(len(raw)))
		return append(tp, raw...)
	}
	var bagRaw, biasRaw bytes.Buffer
	binary.Write(&bagRaw, binary.LittleEndian, s.bag)
	binary.Write(&biasRaw, binary.LittleEndian, s.bagBias)
	var g []byte
	for _, tp := range [][]byte{tensor("bag", []int{2*Symbols + 8, 8}, 3, bagRaw.Bytes()), tensor("bag_bias", []int{8}, 6, biasRaw.Bytes())} {
		g = append(g, 0x2A)
		g = binary.AppendUvarint(g, uint64(len(tp)))
		g = append(g, tp...)
	}
	want := append([]byte{0x3A}, binary.AppendUvarint(nil, uint64(len(g)))...)
	want = append(want, g...)
	if suffix := got[len(s.onnx):]; !bytes.Equal(suffix, want) {
		t.Fatalf("appended %d bytes, want %d:\n% x\n% x", len(suffix), len(want), suffix[:min(len(suffix), 40)], want[:min(len(want), 40)])
	}
	// A 3-byte example by hand: TensorProto{dims [2, 1], int8, name "b", raw 01 02}.
	if b := appendShared(nil, []sharedTensor{{name: "b", shape: []int64{2, 1}, dtype: 3, data: []byte{1, 2}}}); !bytes.Equal(b,
		[]byte{0x3A, 0x0F, 0x2A, 0x0D, 0x08, 0x02, 0x08, 0x01, 0x10, 0x03, 0x42, 0x01, 'b', 0x4A, 0x02, 0x01, 0x02}) {
		t.Fatalf("% x", b)
	}
}
