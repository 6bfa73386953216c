package codec

import (
	"bytes"
	"errors"
	"math/rand"
	"testing"
)

// TestEncodePicksSmallest: every record decodes to its block, and the codec chosen gives the
// smallest payload of the candidates (raw when none is smaller).
func TestEncodePicksSmallest(t *testing.T) {
	rng := rand.New(rand.NewSource(7))
	text := bytes.Repeat([]byte("compression of small blocks is where a model's prior helps. "), 40)
	random := make([]byte, BlockSize)
	rng.Read(random)
	blocks := [][]byte{text[:BlockSize], random, text[:1], random[:17], append(text[:1000:1000], random[:1000]...)}
	sets := [][]Codec{
		nil,
		{S2Codec},
		{GzipCodec, ZstdCodec, BrotliCodec},
		{BrotliCodec, GzipCodec, S2Codec, ZstdCodec},
		{RawCodec, GzipCodec},
	}
	for bi, raw := range blocks {
		for si, set := range sets {
			rec := Encode([]byte("prefix"), raw, FlagPending, set...)
			if !bytes.HasPrefix(rec, []byte("prefix")) {
				t.Fatalf("block %d set %d: dst prefix lost", bi, si)
			}
			rec = rec[len("prefix"):]
			h, payload, err := ParseHeader(rec)
			if err != nil || h.Flags != FlagPending || h.RawLen != len(raw) {
				t.Fatalf("block %d set %d: header %+v, %v", bi, si, h, err)
			}
			best := len(raw)
			for _, c := range set {
				if n := len(c.Encode(nil, raw)); n < best {
					best = n
				}
			}
			if len(payload) != best {
				t.Errorf("block %d set %d: %s payload %d bytes, smallest candidate %d", bi, si, h.Codec, len(payload), best)
			}
			got, err := Decode(nil, rec)
			if err != nil || !bytes.Equal(got, raw) {
				t.Fatalf("block %d set %d: decode: %v", bi, si, err)
			}
		}
	}
}

// TestDecodeRejectsDamage: any single flipped bit of a record gives an error or the original
// bytes, never different bytes.
func TestDecodeRejectsDamage(t *testing.T) {
	raw := bytes.Repeat([]byte("lmfs keeps every byte. "), 100)[:BlockSize]
	for _, c := range []Codec{RawCodec, GzipCodec, ZstdCodec, BrotliCodec, S2Codec} {
		rec := Encode(nil, raw, 0, c)
		for bit := 0; bit < len(rec)*8; bit += 3 {
			bad := append([]byte(nil), rec...)
			bad[bit/8] ^= 1 << (bit % 8)
			got, err := Decode(nil, bad)
			if err == nil && !bytes.Equal(got, raw) {
				t.Fatalf("%s: flipped bit %d decodes to different bytes without an error", c.ID(), bit)
			}
			if err != nil && !errors.Is(err, ErrCorrupt) && !errors.Is(err, ErrUnknownCodec) {
				t.Fatalf("%s: flipped bit %d: unexpected error %v", c.ID(), bit, err)
			}
		}
	}
}

// FuzzDecodeRecord: any byte string given as a record either fails to decode or decodes to
// bytes that match its header's length and checksum; it never panics.
func FuzzDecodeRecord(f *testing.F) {
	raw := bytes.Repeat([]byte("fuzzing block records "), 100)[:BlockSize]
	for _, c := range []Codec{RawCodec, GzipCodec, ZstdCodec, BrotliCodec, S2Codec} {
		f.Add(Encode(nil, raw, 0, c))
		f.Add(Encode(nil, raw[:100], FlagPending, c))
	}
	f.Add([]byte{})
	f.Add([]byte{byte(LM), 0, 0, 8, 0, 0, 0, 0, 1, 2, 3, 4})
	f.Fuzz(func(t *testing.T, rec []byte) {
		h, _, herr := ParseHeader(rec)
		out, err := Decode(nil, rec)
		if err != nil {
			return
		}
		if herr != nil {
			t.Fatalf("Decode accepted a record whose header fails: %v", herr)
		}
		if len(out) != h.RawLen || Checksum(out) != h.CRC {
			t.Fatalf("decoded %d bytes not matching the header", len(out))
		}
	})
}
