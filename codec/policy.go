package codec

import (
	"bytes"
	"encoding/binary"
	"fmt"
)

// The codec choice: which codec a block ends up in, decided here and nowhere else. The store
// asks this file what a write lands as (FreshRecord), where a record stands (StageOf), what
// the compactor's fast pass makes of a fresh record (Policy.Fast) and what its full recode
// keeps (Policy.Best); lmfs bench's lmfs column applies the same Choice to the same
// candidates, so the column is what a store does with those blocks.
//
// The life of a block:
//
//	write      raw, pending (StageFresh): no coding on the write path
//	fast pass  the fast codec (S2) when it is smaller, still pending (StagePending)
//	recode     the smallest of the classical candidates (gzip-9, zstd-19, brotli-11), or the
//	           model's payload when it is smaller still and its encode verified it (StageFinal)
//
// The rule everywhere: the smallest payload wins, a tie goes to the earlier candidate (Raw
// first, the classical candidates in order, the model last: it takes a block only when it is
// strictly smaller), and a block no candidate makes smaller than its bytes stays Raw.
//
// Guarantee: every record Choice, Encode, Policy.Fast and Policy.Best return decodes to the
// bytes they were given. A classical payload is decoded and compared before it is kept (one
// decode of the would-be winner: far cheaper than the encodes); one that does not decode back
// is passed over. The model's payloads come from LMEncoder.EncodeVerified, which decodes every
// stream bit by bit as it encodes.

// LMEncoder codes batches of blocks with a model and verifies every payload by decoding it
// (LMCodec implements it).
type LMEncoder interface {
	EncodeVerified(blocks [][]byte) ([][]byte, error)
	// ShortID is the model id its payloads start with.
	ShortID() uint32
}

// Policy is the compactor's codec choice. DefaultPolicy is what stores and the bench use.
type Policy struct {
	// FastCodec codes fresh blocks in the fast pass (S2: hundreds of MB/s).
	FastCodec Codec
	// Classic are the full recode's classical candidates, in order (a tie goes to the earlier).
	Classic []Codec
	// LM is the model; nil recodes with the classical codecs only.
	LM LMEncoder
}

// DefaultPolicy returns the policy of lmfs stores: S2 for the fast pass, gzip-9, zstd-19 and
// brotli-11 as the classical candidates, and lm (nil for none) last.
func DefaultPolicy(lm LMEncoder) *Policy {
	return &Policy{
		FastCodec: S2Codec,
		Classic:   []Codec{GzipCodec, ZstdCodec, BrotliCodec},
		LM:        lm,
	}
}

// Stage is where a record stands in the life of a block.
type Stage uint8

const (
	// StageFinal: recoded by the full recode (or never pending); the compactor leaves it.
	StageFinal Stage = iota
	// StageFresh: as a write landed it, raw and pending; the fast pass codes it.
	StageFresh
	// StagePending: coded but pending; the full recode takes it.
	StagePending
)

// StageOf returns the stage of a record with that codec id and flags (from its header, or a
// summary of it).
func StageOf(id ID, flags uint8) Stage {
	switch {
	case flags&FlagPending == 0:
		return StageFinal
	case id == Raw:
		return StageFresh
	}
	return StagePending
}

// RecordStage returns the stage of rec; StageFinal for a hole (nil) or a record too short to
// have flags.
func RecordStage(rec []byte) Stage {
	if len(rec) < 2 {
		return StageFinal
	}
	return StageOf(ID(rec[0]), rec[1])
}

// FreshRecord turns rec, HeaderSize free bytes followed by the block's bytes, into the record
// a write lands as (StageFresh), in place: the write path does not copy the data again.
func FreshRecord(rec []byte) []byte { return RawRecord(rec, FlagPending) }

// AppendFresh appends the record a write of raw lands as (StageFresh) to dst.
func AppendFresh(dst, raw []byte) []byte { return AppendRawRecord(dst, raw, FlagPending) }

// NeedsModel reports whether decoding rec needs a language model: such records are decoded in
// batches (DecodeRecords) and are worth caching once decoded.
func NeedsModel(rec []byte) bool { return len(rec) > 0 && ID(rec[0]) == LM }

// NameNeedsModel reports whether blocks of the codec with that name (ID.String) need a model to
// decode: what fsck --full counts as the slow part.
func NameNeedsModel(name string) bool { return name == LM.String() }

// ModelOf returns the short id of the model rec needs to decode; ok is false when it needs
// none, or its header or payload is too short to say.
func ModelOf(rec []byte) (shortID uint32, ok bool) {
	h, payload, err := ParseHeader(rec)
	if err != nil || h.Codec != LM || len(payload) < lmHeaderSize {
		return 0, false
	}
	return binary.BigEndian.Uint32(payload), true
}

// LMShortID returns the short id of the model new blocks get; ok is false without one.
func (p *Policy) LMShortID() (id uint32, ok bool) {
	if p.LM == nil {
		return 0, false
	}
	return p.LM.ShortID(), true
}

// Stale reports whether rec is an LM block of another model than the one new blocks get (after
// an upgrade of the default model): worth recoding (blockstore's RecodeStale), and kept unless
// the new record is smaller.
func (p *Policy) Stale(rec []byte) bool {
	if p.LM == nil {
		return false
	}
	id, ok := ModelOf(rec)
	return ok && id != p.LM.ShortID()
}

// Fast returns what the fast pass makes of rec: a record coded by FastCodec, still pending,
// when rec is fresh and the fast codec makes it smaller; nil to keep rec as it is. A record
// that fails its checksum is never recoded: the error says why.
func (p *Policy) Fast(rec []byte) ([]byte, error) {
	if RecordStage(rec) != StageFresh || p.FastCodec == nil {
		return nil, nil
	}
	raw, err := Decode(nil, rec)
	if err != nil {
		return nil, err
	}
	ch := NewChoice(raw)
	ch.Offer(p.FastCodec, p.FastCodec.Encode(nil, raw))
	if ch.ID() == Raw {
		return nil, nil
	}
	return ch.Record(nil, FlagPending), nil
}

// Best returns the final record (StageFinal) of every block: the classical candidates'
// smallest, or the model's payload when it is smaller still. The model codes the whole batch
// in one call; its error fails the batch (the compactor tries again later).
func (p *Policy) Best(raws [][]byte) ([][]byte, error) {
	var lm [][]byte
	if p.LM != nil && len(raws) > 0 {
		var err error
		if lm, err = p.LM.EncodeVerified(raws); err != nil {
			return nil, err
		}
		if len(lm) != len(raws) {
			return nil, fmt.Errorf("lm encode: %d payloads for %d blocks", len(lm), len(raws))
		}
	}
	out := make([][]byte, len(raws))
	var scratch []byte
	for i, raw := range raws {
		ch := NewChoice(raw)
		for _, c := range p.Classic {
			scratch = c.Encode(scratch[:0], raw)
			ch.Offer(c, scratch)
		}
		if lm != nil {
			ch.OfferVerified(LM, lm[i])
		}
		out[i] = ch.Record(nil, 0)
	}
	return out, nil
}

// Choice applies the rule to one block as candidates arrive: offer them in the policy's order
// (Classic in order, then the model's), then take the Record. It keeps a copy of the winning
// payload only, so callers may reuse their buffers.
type Choice struct {
	raw     []byte
	id      ID
	payload []byte // the winner's; nil while Raw leads
}

// NewChoice starts the choice for raw (1..BlockSize bytes) with Raw in the lead.
func NewChoice(raw []byte) Choice { return Choice{raw: raw, id: Raw} }

// Offer proposes c's payload for the block. It takes the lead only when it is smaller than the
// leader's and decodes back to the block's bytes; a Raw offer changes nothing.
func (ch *Choice) Offer(c Codec, payload []byte) {
	if c.ID() == Raw || len(payload) >= ch.Size()-HeaderSize {
		return
	}
	out, err := c.Decode(make([]byte, 0, len(ch.raw)), payload, len(ch.raw))
	if err != nil || !bytes.Equal(out, ch.raw) {
		return // never kept: a payload that does not give the block back
	}
	ch.id, ch.payload = c.ID(), append(ch.payload[:0], payload...)
}

// OfferVerified proposes a payload of codec id that its encoder has already verified by
// decoding it (the model's, from LMEncoder.EncodeVerified, or a bench's round trip). It takes
// the lead only when it is smaller than the leader's.
func (ch *Choice) OfferVerified(id ID, payload []byte) {
	if id == Raw || len(payload) >= ch.Size()-HeaderSize {
		return
	}
	ch.id, ch.payload = id, append(ch.payload[:0], payload...)
}

// ID returns the codec in the lead.
func (ch *Choice) ID() ID { return ch.id }

// Size returns the size of the record Record would append: header and payload.
func (ch *Choice) Size() int {
	if ch.id == Raw {
		return HeaderSize + len(ch.raw)
	}
	return HeaderSize + len(ch.payload)
}

// Record appends the record of the leading candidate, with flags, to dst.
func (ch *Choice) Record(dst []byte, flags uint8) []byte {
	if ch.id == Raw {
		return AppendRawRecord(dst, ch.raw, flags)
	}
	return EncodeWith(dst, ch.id, flags, ch.raw, ch.payload)
}
