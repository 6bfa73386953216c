package codec

import (
	"bytes"
	"errors"
	"os"
	"testing"
)

// policyBlocks are the blocks the policy tests code: the shared test blocks (not empty) and
// pieces of this package's source.
func policyBlocks(t *testing.T) [][]byte {
	var blocks [][]byte
	for _, b := range testBlocks() {
		if len(b) > 0 {
			blocks = append(blocks, b)
		}
	}
	src, err := os.ReadFile("policy.go")
	if err != nil {
		t.Fatal(err)
	}
	for off := 0; off < len(src) && off < 3*BlockSize; off += BlockSize {
		blocks = append(blocks, src[off:min(off+BlockSize, len(src))])
	}
	return blocks
}

// TestPolicyBest: every final record decodes to its block, is not pending, and is the
// candidate the rule names: the smallest payload, ties to the earlier candidate (Raw, then
// the classical ones in order, the model last), Raw when none is smaller.
func TestPolicyBest(t *testing.T) {
	blocks := policyBlocks(t)
	var lm *LMCodec
	if _, err := os.Stat(tinyModel); err == nil {
		lm = tinyCodec(t)
	} else {
		t.Log("no tiny model: classical candidates only:", err)
	}
	policies := map[string]*Policy{"classic": DefaultPolicy(nil)}
	if lm != nil {
		policies["lm"] = DefaultPolicy(lm)
	}
	for name, p := range policies {
		recs, err := p.Best(blocks)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		var lmPayloads [][]byte
		if p.LM != nil {
			if lmPayloads, err = lm.EncodeBatch(blocks); err != nil {
				t.Fatal(err)
			}
		}
		var dec LMDecoder
		if lm != nil {
			dec = NewLMSet(lm)
		}
		out, errs := DecodeRecords(recs, dec)
		chose := map[ID]int{}
		for i, raw := range blocks {
			if errs[i] != nil || !bytes.Equal(out[i], raw) {
				t.Fatalf("%s: block %d does not decode back: %v", name, i, errs[i])
			}
			h, payload, _ := ParseHeader(recs[i])
			if RecordStage(recs[i]) != StageFinal {
				t.Errorf("%s: block %d: final record flagged %#x", name, i, h.Flags)
			}
			want, wantLen := Raw, len(raw)
			for _, c := range p.Classic {
				if n := len(c.Encode(nil, raw)); n < wantLen {
					want, wantLen = c.ID(), n
				}
			}
			if lmPayloads != nil && len(lmPayloads[i]) < wantLen {
				want, wantLen = LM, len(lmPayloads[i])
			}
			if h.Codec != want || len(payload) != wantLen {
				t.Errorf("%s: block %d: %s with %d bytes, want %s with %d", name, i, h.Codec, len(payload), want, wantLen)
			}
			if NeedsModel(recs[i]) != (h.Codec == LM) {
				t.Errorf("%s: block %d: NeedsModel %v for %s", name, i, NeedsModel(recs[i]), h.Codec)
			}
			if id, ok := ModelOf(recs[i]); ok != (h.Codec == LM) || (ok && id != lm.ShortID()) {
				t.Errorf("%s: block %d: ModelOf %08x %v for %s", name, i, id, ok, h.Codec)
			}
			chose[h.Codec]++
		}
		if p.LM == nil && chose[LM] > 0 {
			t.Errorf("%s: LM records without a model", name)
		}
		t.Logf("%s: chose %v", name, chose)
	}
}

// TestPolicyBestLMError: the model's failure fails the batch, it never yields records.
func TestPolicyBestLMError(t *testing.T) {
	pred := newTestPredictor(2)
	pred.fail = errors.New("device lost")
	p := DefaultPolicy(NewLMCodec(pred, 7))
	if recs, err := p.Best([][]byte{[]byte("some text")}); err == nil || recs != nil {
		t.Fatalf("Best with a failing model: %d records, err %v", len(recs), err)
	}
}

// TestPolicyFast: the fast pass codes fresh records only, keeps them pending, and leaves
// what it cannot shrink or cannot read.
func TestPolicyFast(t *testing.T) {
	p := DefaultPolicy(nil)
	blocks := testBlocks()
	text, random := blocks["text"], blocks["random"]

	fresh := AppendFresh(nil, text)
	if RecordStage(fresh) != StageFresh {
		t.Fatalf("a write lands as stage %d", RecordStage(fresh))
	}
	inPlace := FreshRecord(append(make([]byte, HeaderSize), text...))
	if !bytes.Equal(inPlace, fresh) {
		t.Fatal("FreshRecord and AppendFresh differ")
	}
	rec, err := p.Fast(fresh)
	if err != nil || rec == nil {
		t.Fatalf("fast pass of text: %v, %v", rec, err)
	}
	if h, _, _ := ParseHeader(rec); h.Codec != p.FastCodec.ID() || RecordStage(rec) != StagePending {
		t.Errorf("fast pass gave %s, stage %d", h.Codec, RecordStage(rec))
	}
	if got, err := Decode(nil, rec); err != nil || !bytes.Equal(got, text) {
		t.Fatalf("fast record does not decode back: %v", err)
	}
	// Coded already, final, incompressible: kept as they are.
	for name, r := range map[string][]byte{
		"pending": rec,
		"final":   Encode(nil, text, 0, GzipCodec),
		"random":  AppendFresh(nil, random),
		"hole":    nil,
	} {
		if out, err := p.Fast(r); out != nil || err != nil {
			t.Errorf("%s: fast pass gave %d bytes, err %v", name, len(out), err)
		}
	}
	bad := bytes.Clone(fresh)
	bad[HeaderSize+10] ^= 1
	if out, err := p.Fast(bad); out != nil || !errors.Is(err, ErrCorrupt) {
		t.Errorf("damaged fresh record: %d bytes, err %v", len(out), err)
	}
}

// TestChoicePassesOverBadPayloads: a payload that does not decode back to the block is never
// kept, however small.
func TestChoicePassesOverBadPayloads(t *testing.T) {
	raw := testBlocks()["text"]
	gz := GzipCodec.Encode(nil, raw)
	ch := NewChoice(raw)
	ch.Offer(GzipCodec, []byte{1, 2, 3})
	ch.Offer(S2Codec, gz) // another codec's payload
	ch.Offer(ZstdCodec, gz[:len(gz)/2])
	if ch.ID() != Raw || ch.Size() != HeaderSize+len(raw) {
		t.Fatalf("bad payloads kept: %s, %d bytes", ch.ID(), ch.Size())
	}
	ch.Offer(GzipCodec, gz)
	if ch.ID() != Gzip {
		t.Fatalf("good payload not kept: %s", ch.ID())
	}
	ch.Offer(BrotliCodec, BrotliCodec.Encode(nil, []byte("other bytes")))
	ch.OfferVerified(LM, make([]byte, len(gz))) // a tie: the earlier candidate stays
	rec := ch.Record(nil, 0)
	if got, err := Decode(nil, rec); err != nil || !bytes.Equal(got, raw) || rec[0] != byte(Gzip) {
		t.Fatalf("record: %s, %v", ID(rec[0]), err)
	}
}

func TestStageOf(t *testing.T) {
	for _, c := range []struct {
		id    ID
		flags uint8
		want  Stage
	}{
		{Raw, FlagPending, StageFresh},
		{S2, FlagPending, StagePending},
		{LM, FlagPending, StagePending},
		{Raw, 0, StageFinal},
		{Brotli, 0, StageFinal},
	} {
		if got := StageOf(c.id, c.flags); got != c.want {
			t.Errorf("StageOf(%s, %#x) = %d, want %d", c.id, c.flags, got, c.want)
		}
	}
	for _, rec := range [][]byte{nil, {byte(Raw)}} {
		if RecordStage(rec) != StageFinal {
			t.Errorf("stage of %v: %d", rec, RecordStage(rec))
		}
	}
	if _, ok := ModelOf([]byte{byte(LM), 0, 1, 0, 0, 0, 0, 0, 1, 2}); ok {
		t.Error("ModelOf a payload too short for a model id")
	}
}
