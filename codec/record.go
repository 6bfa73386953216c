package codec

import (
	"fmt"
)

// Encode returns a record for raw (1..BlockSize bytes) coded by whichever of codecs gives the
// smallest payload that decodes back to raw (the policy's rule, see Choice: a tie goes to the
// earlier codec); Raw when none is smaller than the bytes themselves.
func Encode(dst, raw []byte, flags uint8, codecs ...Codec) []byte {
	ch := NewChoice(raw)
	var scratch []byte
	for _, c := range codecs {
		if c.ID() == Raw {
			continue
		}
		scratch = c.Encode(scratch[:0], raw)
		ch.Offer(c, scratch)
	}
	return ch.Record(dst, flags)
}

// RawRecord turns rec, HeaderSize free bytes followed by the raw bytes, into a Raw record in
// place (the write path builds records without copying the data again).
func RawRecord(rec []byte, flags uint8) []byte {
	raw := rec[HeaderSize:]
	appendHeader(rec[:0], Raw, flags, raw)
	return rec
}

// AppendRawRecord appends a Raw record of raw to dst.
func AppendRawRecord(dst, raw []byte, flags uint8) []byte {
	dst = appendHeader(dst, Raw, flags, raw)
	return append(dst, raw...)
}

// EncodeWith returns a record for raw whose payload was already produced by codec id.
func EncodeWith(dst []byte, id ID, flags uint8, raw, payload []byte) []byte {
	dst = appendHeader(dst, id, flags, raw)
	return append(dst, payload...)
}

// Decode appends the raw bytes of a record coded by a classical codec to dst and checks them
// against the header's checksum. LM records need a model: see DecodeRecords.
func Decode(dst, rec []byte) ([]byte, error) {
	h, payload, err := ParseHeader(rec)
	if err != nil {
		return dst, err
	}
	c, ok := ByID(h.Codec)
	if !ok {
		return dst, fmt.Errorf("%w: id %d", ErrUnknownCodec, h.Codec)
	}
	start := len(dst)
	dst, err = c.Decode(dst, payload, h.RawLen)
	if err != nil {
		return dst[:start], fmt.Errorf("%s block: %w", h.Codec, err)
	}
	return dst, verify(h, dst[start:])
}

func verify(h Header, raw []byte) error {
	if len(raw) != h.RawLen {
		return fmt.Errorf("%w: %s block decoded to %d bytes, header says %d", ErrCorrupt, h.Codec, len(raw), h.RawLen)
	}
	if sum := Checksum(raw); sum != h.CRC {
		return fmt.Errorf("%w: %s block checksum %08x, header says %08x", ErrCorrupt, h.Codec, sum, h.CRC)
	}
	return nil
}

// LMDecoder decodes batches of LM payloads (implemented by the LM codec). out[i] holds rawLens[i]
// bytes or errs[i] is set.
type LMDecoder interface {
	DecodeBatch(payloads [][]byte, rawLens []int) (out [][]byte, errs []error)
}

// DecodeRecords decodes many records at once, handing all LM records to lm in one batch (one
// model call per step for the whole batch). lm may be nil when no LM record is expected; an LM
// record then fails with an error. Every result is checked against its header's checksum.
func DecodeRecords(recs [][]byte, lm LMDecoder) ([][]byte, []error) {
	out := make([][]byte, len(recs))
	errs := make([]error, len(recs))
	var lmIdx []int
	var lmPayloads [][]byte
	var lmLens []int
	var heads []Header
	for i, rec := range recs {
		h, payload, err := ParseHeader(rec)
		if err != nil {
			errs[i] = err
			continue
		}
		if h.Codec == LM {
			lmIdx = append(lmIdx, i)
			lmPayloads = append(lmPayloads, payload)
			lmLens = append(lmLens, h.RawLen)
			heads = append(heads, h)
			continue
		}
		out[i], errs[i] = Decode(nil, rec)
	}
	if len(lmIdx) == 0 {
		return out, errs
	}
	if lm == nil {
		for _, i := range lmIdx {
			errs[i] = fmt.Errorf("lm block: no language model loaded")
		}
		return out, errs
	}
	dec, derrs := lm.DecodeBatch(lmPayloads, lmLens)
	for j, i := range lmIdx {
		if derrs[j] != nil {
			errs[i] = fmt.Errorf("lm block: %w", derrs[j])
			continue
		}
		if err := verify(heads[j], dec[j]); err != nil {
			errs[i] = err
			continue
		}
		out[i] = dec[j]
	}
	return out, errs
}
