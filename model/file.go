// Package model reads lmfs model files and evaluates them: bit-exactly, in plain Go (the
// oracle and fallback) or through ONNX Runtime (the fast path). The file format and the
// exactness contract are in FORMAT.md next to this file.
package model

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"unicode/utf8"

	"lmfs/model/modelid"
)

// Format limits. A file outside them is refused by Parse (and by the exporter).
const (
	Magic         = "LMFSMDL1"
	FormatVersion = 3 // the newest format this lmfs reads; formats 1 and 2 stay readable forever
	Arch          = "ctxmlp"
	Symbols       = 257 // context symbols: bytes 0..255 and 256 = before the block start
	Outputs       = 256 // predicted symbols

	MaxOrder   = 1024
	MaxWidth   = 4096
	MaxLayers  = 16
	MaxShift   = 31
	MaxClip    = 4096
	MaxExp     = 1 << 16 // largest explut entry
	MaxNGrams  = 16      // hashed n-gram rows per context (format 2)
	MaxNGBits  = 20      // log2 rows of one n-gram table
	exactLimit = 1 << 24 // every intermediate value stays below this in magnitude
	maxHeader  = 16 << 20
)

// Sentinel errors; Parse wraps them with details.
var (
	ErrNotModel  = errors.New("not an lmfs model file")
	ErrTruncated = errors.New("model file truncated")
	ErrNewer     = errors.New("model file format newer than this lmfs supports")
	ErrInvalid   = errors.New("invalid model file")
)

// Model is a parsed model file. It is immutable and safe for concurrent use.
type Model struct {
	data   []byte
	id     [32]byte
	header header

	order    int
	ngOrders []int    // format 2: the n-gram orders hashed into the bag (FORMAT.md), nil in format 1
	ngBits   uint     // log2 rows of each n-gram table
	bagW     []uint64 // the bag, [order*257 + len(ngOrders)<<ngBits][ceil(h0/8)] words of biased bytes (bagsum.go)
	bagBias  []int32  // [h0]
	h0       int
	shift0   uint
	layers   []layer
	clip     int32
	explut   []uint32       // [2*clip+1]
	onnx     []byte         // the graph as stored (format 3: without the shared tensors)
	shared   []sharedTensor // format 3: tensors ONNX() appends to the graph as initializers
	maxWidth int
}

type layer struct {
	in, out int
	w       []int8   // [in][out], row-major
	wp      []uint64 // [in][(out+1)/2]: w+127 packed two per word, see packWeights
	b       []int32  // [out]
	shift   uint
}

type header struct {
	Format    int                  `json:"format"`
	Arch      string               `json:"arch"`
	Name      string               `json:"name"`
	Order     int                  `json:"order"`
	Shifts    []int                `json:"shifts"`
	LogitClip int                  `json:"logit_clip"`
	NGram     *ngramHeader         `json:"ngram,omitempty"`
	Tensors   map[string]tensorRef `json:"tensors"`
	ONNX      *blobRef             `json:"onnx"`
	Train     json.RawMessage      `json:"train,omitempty"`
}

type ngramHeader struct {
	Orders []int `json:"orders"`
	Bits   int   `json:"bits"`
}

type tensorRef struct {
	DType  string  `json:"dtype"`
	Shape  []int64 `json:"shape"`
	Offset int64   `json:"offset"`
	Length int64   `json:"length"`
}

type blobRef struct {
	Offset int64 `json:"offset"`
	Length int64 `json:"length"`
	// Shared (format 3) names tensors of the file that the graph uses as initializers of the
	// same name without holding a copy: ONNX() appends them (onnxshared.go).
	Shared []string `json:"shared,omitempty"`
}

// Load reads and parses a model file.
func Load(path string) (*Model, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("load model: %w", err)
	}
	m, err := Parse(data)
	if err != nil {
		return nil, fmt.Errorf("load model %s: %w", path, err)
	}
	return m, nil
}

// Parse parses and validates a model file held in memory. The Model keeps data (callers
// must not modify it afterwards). Every bound of FORMAT.md is checked: a file that
// passes is evaluated exactly by every backend.
func Parse(data []byte) (*Model, error) {
	if len(data) < len(Magic) {
		if bytes.HasPrefix([]byte(Magic), data) {
			return nil, fmt.Errorf("%w: %d bytes, shorter than the magic", ErrTruncated, len(data))
		}
		return nil, fmt.Errorf("%w: no %q magic", ErrNotModel, Magic)
	}
	if string(data[:len(Magic)]) != Magic {
		if string(data[:len(Magic)-1]) == Magic[:len(Magic)-1] {
			return nil, fmt.Errorf("%w: magic %q (this lmfs reads %q)", ErrNewer, data[:len(Magic)], Magic)
		}
		return nil, fmt.Errorf("%w: no %q magic", ErrNotModel, Magic)
	}
	if len(data) < 12 {
		return nil, fmt.Errorf("%w: %d bytes, no header length", ErrTruncated, len(data))
	}
	hlen := int64(binary.LittleEndian.Uint32(data[8:12]))
	if hlen > maxHeader {
		return nil, fmt.Errorf("%w: header length %d exceeds %d", ErrInvalid, hlen, maxHeader)
	}
	if int64(len(data)) < 12+hlen {
		return nil, fmt.Errorf("%w: header needs %d bytes, file has %d", ErrTruncated, 12+hlen, len(data))
	}
	hdr := data[12 : 12+hlen]
	blob := data[12+hlen:]

	// Read the version first, so a newer file gets ErrNewer even if its fields changed.
	var ver struct {
		Format *int `json:"format"`
	}
	if err := json.Unmarshal(hdr, &ver); err != nil {
		return nil, fmt.Errorf("%w: header is not JSON: %v", ErrInvalid, err)
	}
	if ver.Format == nil {
		return nil, fmt.Errorf("%w: header has no format field", ErrInvalid)
	}
	if *ver.Format > FormatVersion {
		return nil, fmt.Errorf("%w: format %d (this lmfs reads %d)", ErrNewer, *ver.Format, FormatVersion)
	}
	if *ver.Format < 1 {
		return nil, fmt.Errorf("%w: format %d", ErrInvalid, *ver.Format)
	}
	m := &Model{data: data, id: modelid.Of(data)}
	if err := json.Unmarshal(hdr, &m.header); err != nil {
		return nil, fmt.Errorf("%w: header: %v", ErrInvalid, err)
	}
	if err := m.decode(blob); err != nil {
		return nil, err
	}
	return m, nil
}

func invalid(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrInvalid, fmt.Sprintf(format, args...))
}

func (m *Model) decode(blob []byte) error {
	h := &m.header
	if h.Arch != Arch {
		return invalid("arch %q (formats 1 and 2 have only %q)", h.Arch, Arch)
	}
	if h.Name == "" || len(h.Name) > 256 || !utf8.ValidString(h.Name) {
		return invalid("name must be 1..256 bytes of UTF-8")
	}
	if h.Order < 1 || h.Order > MaxOrder {
		return invalid("order %d outside 1..%d", h.Order, MaxOrder)
	}
	if h.LogitClip < 1 || h.LogitClip > MaxClip {
		return invalid("logit_clip %d outside 1..%d", h.LogitClip, MaxClip)
	}
	n := len(h.Shifts) - 1
	if n < 1 || n > MaxLayers {
		return invalid("%d shifts: need N+1 for 1..%d dense layers", len(h.Shifts), MaxLayers)
	}
	for i, s := range h.Shifts {
		if s < 0 || s > MaxShift {
			return invalid("shifts[%d]=%d outside 0..%d", i, s, MaxShift)
		}
	}
	want := 2*n + 3
	if len(h.Tensors) != want {
		return invalid("%d tensors, want %d (bag, bag_bias, w1..w%d, b1..b%d, explut)", len(h.Tensors), want, n, n)
	}
	m.order = h.Order
	m.clip = int32(h.LogitClip)
	switch {
	case h.Format == 1 && h.NGram != nil:
		return invalid("format 1 has no n-gram rows")
	case h.Format >= 2 && h.NGram == nil:
		return invalid("format %d needs the ngram field", h.Format)
	case h.NGram != nil:
		g := h.NGram
		if len(g.Orders) < 1 || len(g.Orders) > MaxNGrams {
			return invalid("%d n-gram orders, want 1..%d", len(g.Orders), MaxNGrams)
		}
		for _, n := range g.Orders {
			if n < 1 || n > h.Order {
				return invalid("n-gram order %d outside 1..K=%d", n, h.Order)
			}
		}
		if g.Bits < 1 || g.Bits > MaxNGBits {
			return invalid("n-gram bits %d outside 1..%d", g.Bits, MaxNGBits)
		}
		m.ngOrders, m.ngBits = g.Orders, uint(g.Bits)
	}

	bagRef, err := tensorAt(h, blob, "bag", "int8", 2)
	if err != nil {
		return err
	}
	if want := int64(h.Order)*Symbols + int64(len(m.ngOrders))<<m.ngBits; bagRef.Shape[0] != want {
		return invalid("bag has %d rows, want K*257 + G*2^bits = %d", bagRef.Shape[0], want)
	}
	if bagRef.Shape[1] > MaxWidth {
		return invalid("bag width %d exceeds %d", bagRef.Shape[1], MaxWidth)
	}
	m.h0 = int(bagRef.Shape[1])
	bagRaw := blob[bagRef.Offset : bagRef.Offset+bagRef.Length]
	if err := checkInt8s(bagRaw, "bag"); err != nil {
		return err
	}
	m.bagW = bagWords(bagRaw, m.h0)
	biasRef, err := tensorAt(h, blob, "bag_bias", "int32", 1)
	if err != nil {
		return err
	}
	if biasRef.Shape[0] != int64(m.h0) {
		return invalid("bag_bias has %d entries, want %d", biasRef.Shape[0], m.h0)
	}
	m.bagBias = int32s(blob, biasRef)
	if worst := int64(m.Inputs())*128 + maxAbs(m.bagBias); worst >= exactLimit {
		return invalid("bag: (K+G)*128 + max|bag_bias| = %d, must be < 2^24", worst)
	}
	m.shift0 = uint(h.Shifts[0])
	m.maxWidth = m.h0

	in := m.h0
	for i := 1; i <= n; i++ {
		wName, bName := fmt.Sprintf("w%d", i), fmt.Sprintf("b%d", i)
		wRef, err := tensorAt(h, blob, wName, "int8", 2)
		if err != nil {
			return err
		}
		if wRef.Shape[0] != int64(in) {
			return invalid("%s has %d rows, want %d", wName, wRef.Shape[0], in)
		}
		out := wRef.Shape[1]
		if out > MaxWidth {
			return invalid("%s width %d exceeds %d", wName, out, MaxWidth)
		}
		if i == n && out != Outputs {
			return invalid("%s (last layer) has %d outputs, want %d", wName, out, Outputs)
		}
		bRef, err := tensorAt(h, blob, bName, "int32", 1)
		if err != nil {
			return err
		}
		if bRef.Shape[0] != out {
			return invalid("%s has %d entries, want %d", bName, bRef.Shape[0], out)
		}
		l := layer{in: in, out: int(out), shift: uint(h.Shifts[i])}
		if l.w, err = int8s(blob, wRef, wName); err != nil {
			return err
		}
		l.b = int32s(blob, bRef)
		l.wp = packWeights(l.w, in, l.out)
		if worst := int64(in)*127*128 + maxAbs(l.b); worst >= exactLimit {
			return invalid("%s: H_in*127*128 + max|%s| = %d, must be < 2^24", wName, bName, worst)
		}
		m.layers = append(m.layers, l)
		m.maxWidth = max(m.maxWidth, l.out)
		in = l.out
	}

	expRef, err := tensorAt(h, blob, "explut", "uint32", 1)
	if err != nil {
		return err
	}
	if expRef.Shape[0] != 2*int64(h.LogitClip)+1 {
		return invalid("explut has %d entries, want 2L+1 = %d", expRef.Shape[0], 2*h.LogitClip+1)
	}
	m.explut = uint32s(blob, expRef)
	for i, v := range m.explut {
		if v < 1 || v > MaxExp {
			return invalid("explut[%d]=%d outside 1..%d", i, v, MaxExp)
		}
		if i > 0 && v < m.explut[i-1] {
			return invalid("explut decreases at %d", i)
		}
	}

	if h.ONNX == nil {
		return invalid("no onnx graph")
	}
	if err := inBlob(blob, h.ONNX.Offset, h.ONNX.Length, "onnx"); err != nil {
		return err
	}
	if h.ONNX.Length == 0 {
		return invalid("empty onnx graph")
	}
	m.onnx = blob[h.ONNX.Offset : h.ONNX.Offset+h.ONNX.Length]
	switch {
	case h.Format >= 3 && len(h.ONNX.Shared) == 0:
		return invalid("format %d needs onnx.shared", h.Format)
	case h.Format < 3 && h.ONNX.Shared != nil:
		return invalid("format %d has no onnx.shared (format 3 does)", h.Format)
	}
	seen := map[string]bool{}
	for _, name := range h.ONNX.Shared {
		ref, ok := h.Tensors[name]
		if !ok {
			return invalid("onnx.shared names %q, which is not a tensor of the file", name)
		}
		if seen[name] {
			return invalid("onnx.shared names %q twice", name)
		}
		seen[name] = true
		if _, ok := onnxDType[ref.DType]; !ok {
			return invalid("onnx.shared tensor %q has dtype %s", name, ref.DType)
		}
		m.shared = append(m.shared, sharedTensor{name: name, shape: ref.Shape, dtype: onnxDType[ref.DType],
			data: blob[ref.Offset : ref.Offset+ref.Length]})
	}
	return nil
}

func inBlob(blob []byte, off, length int64, what string) error {
	if off < 0 || length < 0 || off > int64(len(blob)) || length > int64(len(blob))-off {
		if off >= 0 && length >= 0 && off <= math.MaxInt64-length {
			return fmt.Errorf("%w: %s needs blob bytes %d..%d, blob has %d", ErrTruncated, what, off, off+length, len(blob))
		}
		return invalid("%s: bad offset %d or length %d", what, off, length)
	}
	return nil
}

var dtypeSize = map[string]int64{"int8": 1, "int32": 4, "uint32": 4}

func tensorAt(h *header, blob []byte, name, dtype string, rank int) (tensorRef, error) {
	t, ok := h.Tensors[name]
	if !ok {
		return t, invalid("missing tensor %q", name)
	}
	if t.DType != dtype {
		return t, invalid("tensor %s has dtype %q, want %q", name, t.DType, dtype)
	}
	if len(t.Shape) != rank {
		return t, invalid("tensor %s has rank %d, want %d", name, len(t.Shape), rank)
	}
	elems := int64(1)
	for _, d := range t.Shape {
		if d < 1 || d > math.MaxInt32 {
			return t, invalid("tensor %s has dimension %d", name, d)
		}
		if elems > math.MaxInt64/d {
			return t, invalid("tensor %s shape overflows", name)
		}
		elems *= d
	}
	if elems > math.MaxInt64/dtypeSize[dtype] || t.Length != elems*dtypeSize[dtype] {
		return t, invalid("tensor %s has length %d, want %d for shape %v", name, t.Length, elems*dtypeSize[dtype], t.Shape)
	}
	if t.Offset%dtypeSize[dtype] != 0 {
		return t, invalid("tensor %s offset %d not aligned to its element size", name, t.Offset)
	}
	if err := inBlob(blob, t.Offset, t.Length, "tensor "+name); err != nil {
		return t, err
	}
	return t, nil
}

func int8s(blob []byte, t tensorRef, name string) ([]int8, error) {
	raw := blob[t.Offset : t.Offset+t.Length]
	if err := checkInt8s(raw, name); err != nil {
		return nil, err
	}
	out := make([]int8, len(raw))
	for i, b := range raw {
		out[i] = int8(b)
	}
	return out, nil
}

// checkInt8s refuses -128 (0x80) in a tensor's int8 bytes: weights are -127..127.
func checkInt8s(raw []byte, name string) error {
	if i := bytes.IndexByte(raw, 0x80); i >= 0 {
		return invalid("tensor %s holds -128 at %d (weights are -127..127)", name, i)
	}
	return nil
}

func int32s(blob []byte, t tensorRef) []int32 {
	raw := blob[t.Offset : t.Offset+t.Length]
	out := make([]int32, len(raw)/4)
	for i := range out {
		out[i] = int32(binary.LittleEndian.Uint32(raw[4*i:]))
	}
	return out
}

func uint32s(blob []byte, t tensorRef) []uint32 {
	raw := blob[t.Offset : t.Offset+t.Length]
	out := make([]uint32, len(raw)/4)
	for i := range out {
		out[i] = binary.LittleEndian.Uint32(raw[4*i:])
	}
	return out
}

func maxAbs(v []int32) int64 {
	var mx int64
	for _, x := range v {
		a := int64(x)
		if a < 0 {
			a = -a
		}
		mx = max(mx, a)
	}
	return mx
}

// ID is the SHA-256 of the whole file.
func (m *Model) ID() [32]byte { return m.id }

// ShortID is the first 4 bytes of ID, big endian (package modelid); every LM block records it.
func (m *Model) ShortID() uint32 { return modelid.ID(m.id).Short() }

// Order is K, the number of previous symbols the model sees.
func (m *Model) Order() int { return m.order }

// Inputs is the number of bag rows summed per context: K, plus one per n-gram order.
func (m *Model) Inputs() int { return m.order + len(m.ngOrders) }

// Format is the file's format version (1; 2 with hashed n-gram rows; 3, as 2 with the graph
// sharing the bag with the file instead of holding a copy).
func (m *Model) Format() int { return m.header.Format }

// Name is the human name from the header.
func (m *Model) Name() string { return m.header.Name }

// Bytes returns the whole file. Callers must not modify it.
func (m *Model) Bytes() []byte { return m.data }

// ONNX returns the ONNX graph, ready for ONNX Runtime. Formats 1 and 2: the embedded graph
// (callers must not modify it); format 3: a new copy of it with the shared tensors appended.
func (m *Model) ONNX() []byte {
	if len(m.shared) == 0 {
		return m.onnx
	}
	return appendShared(m.onnx, m.shared)
}

// Train returns the header's free-form provenance JSON (nil when absent).
func (m *Model) Train() json.RawMessage { return m.header.Train }

// Widths returns H0, H1, ..., HN (HN = 256).
func (m *Model) Widths() []int {
	w := []int{m.h0}
	for _, l := range m.layers {
		w = append(w, l.out)
	}
	return w
}

// LogitClip is L: logits lie in [-L, L].
func (m *Model) LogitClip() int { return int(m.clip) }

// String describes the model in one line.
func (m *Model) String() string {
	return fmt.Sprintf("%s (id %08x, K=%d, widths %v)", m.header.Name, m.ShortID(), m.order, m.Widths())
}
