package codec

import (
	"encoding/binary"
	"testing"
)

// FuzzLMDecode feeds arbitrary payloads to DecodeBatch: it must never panic, hang or return more
// than rawLen bytes. Seeds: testdata/fuzz/FuzzLMDecode.
func FuzzLMDecode(f *testing.F) {
	c := NewLMCodec(newTestPredictor(3), 0x12345678)
	blocks := testBlocks()
	enc, err := c.EncodeBatch([][]byte{blocks["text"], blocks["one-byte"]})
	if err != nil {
		f.Fatal(err)
	}
	f.Add(enc[0], uint16(BlockSize))
	f.Add(enc[1], uint16(1))
	f.Fuzz(func(t *testing.T, payload []byte, rawLen uint16) {
		n := int(rawLen) % (BlockSize + 2)        // BlockSize+1 is out of range on purpose
		payload = append([]byte(nil), payload...) // the fuzzer's input must not be modified
		if len(payload) >= 4 && payload[0]&1 == 0 {
			// Mostly aim at the loaded model so the stream decoder runs.
			binary.BigEndian.PutUint32(payload, 0x12345678)
		}
		out, errs := c.DecodeBatch([][]byte{payload, payload}, []int{n, n / 2})
		for i, want := range []int{n, n / 2} {
			if errs[i] == nil && len(out[i]) != want {
				t.Fatalf("decoded %d bytes, want %d", len(out[i]), want)
			}
		}
		set := NewLMSet(c)
		set.DecodeBatch([][]byte{payload}, []int{n})
	})
}
