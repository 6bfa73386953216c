package codec

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
)

// trainText feeds testPredictor's order-1 table.
const trainText = `The quick brown fox jumps over the lazy dog. A block store cuts every file into
blocks of 2048 bytes and codes each block on its own, so that a read of one block never needs its
neighbours. func main() { fmt.Println("hello, world") } for i := 0; i < n; i++ { x += i }
<html><body><p>Some markup and text</p></body></html> 0123456789 THE END.`

// testPredictor is a deterministic order-1 model: freq[x] = 1 + 64*count(prev byte, x) in
// trainText (prev 256 at block start). It checks the context rows it is given.
type testPredictor struct {
	k     int
	table [257][256]uint32
	fail  error
}

func newTestPredictor(k int) *testPredictor {
	p := &testPredictor{k: k}
	prev := 256
	for _, c := range []byte(trainText) {
		p.table[prev][c] += 64
		prev = int(c)
	}
	for i := range p.table {
		for j := range p.table[i] {
			p.table[i][j]++
		}
	}
	return p
}

func (p *testPredictor) Order() int { return p.k }

func (p *testPredictor) Predict(ctx []uint16, out []uint32) error {
	if p.fail != nil {
		return p.fail
	}
	n := len(ctx) / p.k
	if len(ctx) != n*p.k || len(out) != n*256 {
		return fmt.Errorf("testPredictor: %d ctx symbols and %d outputs for order %d", len(ctx), len(out), p.k)
	}
	for r := 0; r < n; r++ {
		row := ctx[r*p.k : (r+1)*p.k]
		for k := 1; k < len(row); k++ {
			if row[k-1] == 256 && row[k] != 256 {
				return fmt.Errorf("testPredictor: bad context row %v", row)
			}
		}
		copy(out[r*256:(r+1)*256], p.table[row[0]][:])
		if row[len(row)-1] == 256 {
			out[r*256+' ']++ // depend on the whole row, not only c[0]
		}
	}
	return nil
}

func testBlocks() map[string][]byte {
	rng := rand.New(rand.NewPCG(7, 8))
	random := make([]byte, BlockSize)
	for i := range random {
		random[i] = byte(rng.Uint32())
	}
	text := []byte(strings.Repeat(trainText+" and more text follows here. ", 10)[:BlockSize])
	rep := bytes.Repeat([]byte("abcdefghij0123"), 200)[:BlockSize]
	return map[string][]byte{
		"zeros":      make([]byte, BlockSize),
		"ff":         bytes.Repeat([]byte{0xFF}, BlockSize),
		"random":     random,
		"random-1":   random[:1],
		"one-byte":   {'T'},
		"one-zero":   {0},
		"text":       text,
		"text-short": text[:777],
		"repeat":     rep,
		"empty":      {},
	}
}

func TestLMRoundTrip(t *testing.T) {
	pred := newTestPredictor(4)
	c := NewLMCodec(pred, 0xDEADBEEF)
	blocks := testBlocks()
	var names []string
	var list [][]byte
	for name, b := range blocks {
		names = append(names, name)
		list = append(list, b)
	}
	payloads, err := c.EncodeVerified(list)
	if err != nil {
		t.Fatal(err)
	}
	lens := make([]int, len(list))
	for i, b := range list {
		lens[i] = len(b)
		if binary.BigEndian.Uint32(payloads[i]) != 0xDEADBEEF {
			t.Errorf("%s: payload does not start with the short id", names[i])
		}
		t.Logf("%-10s %4d -> %4d bytes", names[i], len(b), len(payloads[i]))
	}
	out, errs := c.DecodeBatch(payloads, lens)
	for i := range list {
		if errs[i] != nil {
			t.Errorf("%s: %v", names[i], errs[i])
		} else if !bytes.Equal(out[i], list[i]) {
			t.Errorf("%s: round trip differs", names[i])
		}
	}
	// One at a time gives the same bytes.
	for i, b := range list {
		p, err := c.EncodeBatch([][]byte{b})
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(p[0], payloads[i]) {
			t.Errorf("%s: payload depends on the batch", names[i])
		}
		o, e := c.DecodeBatch(p, []int{len(b)})
		if e[0] != nil || !bytes.Equal(o[0], b) {
			t.Errorf("%s: single decode: %v", names[i], e[0])
		}
	}
	for name, want := range map[string]int{"zeros": 40, "ff": 40, "repeat": 150, "random": BlockSize + 80} {
		for i := range names {
			if names[i] == name && len(payloads[i]) > want {
				t.Errorf("%s: %d bytes, want at most %d", name, len(payloads[i]), want)
			}
		}
	}
}

// TestLMBatchInvariance checks that payloads and decodes do not depend on batch sizes.
func TestLMBatchInvariance(t *testing.T) {
	rng := rand.New(rand.NewPCG(9, 10))
	text := []byte(strings.Repeat(trainText, 40))
	var blocks [][]byte
	for i := 0; i < 23; i++ {
		n := 1 + rng.IntN(BlockSize)
		off := rng.IntN(len(text) - n)
		blocks = append(blocks, text[off:off+n])
	}
	var ref [][]byte
	for _, rows := range []int{1, 7, 300, 4096} {
		c := NewLMCodec(newTestPredictor(3), 1)
		c.SetBatch(rows, rows)
		p, err := c.EncodeBatch(blocks)
		if err != nil {
			t.Fatal(err)
		}
		if ref == nil {
			ref = p
		}
		for i := range p {
			if !bytes.Equal(p[i], ref[i]) {
				t.Fatalf("rows %d: block %d payload differs", rows, i)
			}
		}
		lens := make([]int, len(blocks))
		for i, b := range blocks {
			lens[i] = len(b)
		}
		out, errs := c.DecodeBatch(p, lens)
		for i := range blocks {
			if errs[i] != nil || !bytes.Equal(out[i], blocks[i]) {
				t.Fatalf("decode batch %d: block %d: %v", rows, i, errs[i])
			}
		}
	}
}

func TestLMSet(t *testing.T) {
	a := NewLMCodec(newTestPredictor(2), 0x0000000A)
	b := NewLMCodec(newTestPredictor(5), 0x0B0B0B0B)
	set := NewLMSet(a, b)
	blocks := testBlocks()
	pa, err := a.EncodeBatch([][]byte{blocks["text"], blocks["repeat"]})
	if err != nil {
		t.Fatal(err)
	}
	pb, err := b.EncodeBatch([][]byte{blocks["random"]})
	if err != nil {
		t.Fatal(err)
	}
	unknown := append([]byte{0xCA, 0xFE, 0xF0, 0x0D}, pb[0][4:]...)
	payloads := [][]byte{pa[0], pb[0], unknown, pa[1], {1, 2}}
	lens := []int{BlockSize, BlockSize, BlockSize, BlockSize, 3}
	out, errs := set.DecodeBatch(payloads, lens)
	for i, want := range [][]byte{blocks["text"], blocks["random"], nil, blocks["repeat"]} {
		if want == nil {
			continue
		}
		if errs[i] != nil || !bytes.Equal(out[i], want) {
			t.Errorf("payload %d: %v", i, errs[i])
		}
	}
	if !errors.Is(errs[2], ErrUnknownModel) || !strings.Contains(errs[2].Error(), "cafef00d") {
		t.Errorf("unknown model: %v", errs[2])
	}
	if errs[4] == nil {
		t.Errorf("2-byte payload decoded")
	}
	// A codec given another model's payload says so.
	_, errs = a.DecodeBatch([][]byte{pb[0]}, []int{BlockSize})
	if !errors.Is(errs[0], ErrUnknownModel) || !strings.Contains(errs[0].Error(), "0b0b0b0b") {
		t.Errorf("wrong model: %v", errs[0])
	}
}

func TestLMPredictError(t *testing.T) {
	p := newTestPredictor(2)
	c := NewLMCodec(p, 1)
	enc, err := c.EncodeBatch([][]byte{[]byte("hello")})
	if err != nil {
		t.Fatal(err)
	}
	p.fail = errors.New("boom")
	if _, err := c.EncodeBatch([][]byte{[]byte("hello")}); err == nil {
		t.Error("encode with a failing model succeeded")
	}
	if _, errs := c.DecodeBatch(enc, []int{5}); errs[0] == nil {
		t.Error("decode with a failing model succeeded")
	}
}

// TestLMCorrupt flips, truncates and extends payloads inside records: DecodeRecords must report
// an error (the checksum) and the LM decoder must never panic or return more than rawLen.
func TestLMCorrupt(t *testing.T) {
	c := NewLMCodec(newTestPredictor(3), 0x12345678)
	blocks := testBlocks()
	raw := blocks["text"]
	p, err := c.EncodeBatch([][]byte{raw})
	if err != nil {
		t.Fatal(err)
	}
	good := EncodeWith(nil, LM, 0, raw, p[0])
	var recs [][]byte
	for i := lmHeaderSize; i < len(p[0]); i += 7 {
		r := append([]byte(nil), good...)
		r[HeaderSize+i] ^= 1 << (i % 8)
		recs = append(recs, r)
	}
	for _, n := range []int{len(good) - 1, len(good) - 10, HeaderSize + 5, HeaderSize + 4, HeaderSize + 3} {
		recs = append(recs, append([]byte(nil), good[:n]...))
	}
	recs = append(recs, append(append([]byte(nil), good...), 1, 2, 3))
	out, errs := DecodeRecords(append([][]byte{good}, recs...), c)
	if errs[0] != nil || !bytes.Equal(out[0], raw) {
		t.Fatalf("good record: %v", errs[0])
	}
	undetected := 0
	for i := 1; i < len(out); i++ {
		if errs[i] == nil && !bytes.Equal(out[i], raw) {
			t.Errorf("record %d: wrong data without error", i)
		}
		if errs[i] == nil {
			undetected++ // a change the final interval absorbs: the data is still right
		}
	}
	if undetected > len(out)/4 {
		t.Errorf("%d of %d damaged records decoded without error", undetected, len(out)-1)
	}
}

// TestLMVerifyCatches checks that the verification decode used by EncodeVerified rejects a
// stream that does not decode to the block.
func TestLMVerifyCatches(t *testing.T) {
	pred := newTestPredictor(3)
	b := testBlocks()["text"]
	ts := prepare(t, pred, map[string][][]byte{"x": {b}})
	s := newLMState(&defaultMix)
	stream := s.encodeBlock(nil, b, ts.paths[0])
	if err := s.verifyBlock(stream, b, ts.paths[0]); err != nil {
		t.Fatalf("good stream: %v", err)
	}
	caught := 0
	for i := 0; i < len(stream); i++ {
		bad := append([]byte(nil), stream...)
		bad[i] ^= 0x40
		if s.verifyBlock(bad, b, ts.paths[0]) != nil {
			caught++
		}
	}
	if caught < len(stream)-1 {
		t.Errorf("verification caught %d of %d damaged streams", caught, len(stream))
	}
	if s.verifyBlock(stream[:len(stream)/2], b, ts.paths[0]) == nil {
		t.Error("truncated stream verified")
	}
}

// batchDependent returns different frequencies for a row depending on the batch size.
type batchDependent struct{ *testPredictor }

func (p batchDependent) Predict(ctx []uint16, out []uint32) error {
	if err := p.testPredictor.Predict(ctx, out); err != nil {
		return err
	}
	if len(ctx)/p.k > 1 {
		out[len(out)-1]++
	}
	return nil
}

func TestLMInexactModel(t *testing.T) {
	c := NewLMCodec(batchDependent{newTestPredictor(2)}, 1)
	blocks := [][]byte{[]byte("some bytes to code"), []byte("and more")}
	if _, err := c.EncodeBatch(blocks); err != nil {
		t.Fatal(err)
	}
	if _, err := c.EncodeVerified(blocks); !errors.Is(err, ErrInexactModel) {
		t.Errorf("EncodeVerified with a batch-dependent model: %v", err)
	}
}
