package codec

import (
	"crypto/sha256"
	"encoding/hex"
	"testing"
)

// lmGolden pins the LM block format (coder, mixer, every constant in defaultMix): the SHA-256 of
// the payloads of testBlocks coded with testPredictor. If this test fails, existing LM blocks
// no longer decode: do not update the hash unless the format version changes.
const lmGolden = "5e0430c76323b6ad8b59e79cde262306b34ddf5fe7cb7a14ce6adb8f2d5cc924"

func TestLMGolden(t *testing.T) {
	c := NewLMCodec(newTestPredictor(4), 0x01020304)
	bl := testBlocks()
	names := []string{"zeros", "ff", "random", "random-1", "one-byte", "one-zero", "text", "text-short", "repeat", "empty"}
	var blocks [][]byte
	for _, n := range names {
		blocks = append(blocks, bl[n])
	}
	p, err := c.EncodeBatch(blocks)
	if err != nil {
		t.Fatal(err)
	}
	h := sha256.New()
	for _, x := range p {
		h.Write(x)
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != lmGolden {
		t.Errorf("LM payloads hash to %s, want %s: the LM block format changed", got, lmGolden)
	}
}
