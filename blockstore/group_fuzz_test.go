package blockstore

import (
	"bytes"
	"testing"

	"lmfs/blockstore/segment"
)

// Fuzz targets for what a damaged or hostile store supplies. Each decoder must return an
// error or a value, never panic, and never allocate by a length it read (lengths are checked
// against the input or a fixed bound first). Seeds: testdata/fuzz (fuzzseed_test.go writes
// them with the real encoders) and the f.Add calls.

// FuzzParseGroup: block group values (group.go), inline in Badger or read from a segment.
func FuzzParseGroup(f *testing.F) {
	for _, v := range seedGroups() {
		f.Add(v)
	}
	f.Fuzz(func(t *testing.T, v []byte) {
		g, err := parseGroup(v)
		h, herr := holes(v)
		var d Delta
		d.addGroup(v, 1)
		d.addGroup(v, -1)
		if d.Files != 0 || d.Logical != 0 || d.codec != (Delta{}).codec {
			t.Fatalf("adding and removing a group does not cancel: %+v", d)
		}
		if err != nil {
			if !isRef(v) && herr == nil {
				t.Fatalf("holes accepted a group parseGroup refuses: %v", err)
			}
			return
		}
		if m := g.marshal(); !bytes.Equal(m, v) {
			t.Fatalf("parse and marshal differ:\n%x\n%x", v, m)
		}
		for i, r := range g {
			if r != nil && len(r) < 8 {
				t.Fatalf("slot %d: record of %d bytes", i, len(r))
			}
			if h[i] != (r == nil) {
				t.Fatalf("slot %d: holes says %v", i, h[i])
			}
			if rec, err := GroupRecord(v, i); err != nil || !bytes.Equal(rec, r) {
				t.Fatalf("GroupRecord slot %d: %v", i, err)
			}
		}
		g.pending()
		g.empty()
		sum := refSummary(&g)
		if len(sum) != GroupBlocks*refSlot {
			t.Fatalf("summary of %d bytes", len(sum))
		}
		streamOf(sum)
	})
}

// FuzzParseRef: segment references (segref.go), the value of a group key whose group lives
// in a data segment.
func FuzzParseRef(f *testing.F) {
	for _, v := range seedRefs() {
		f.Add(v, []byte("payload"))
	}
	f.Fuzz(func(t *testing.T, v, payload []byte) {
		var d Delta
		d.addGroup(v, 1)
		d.addGroup(v, -1)
		if d.codec != (Delta{}).codec {
			t.Fatalf("adding and removing a reference does not cancel: %+v", d)
		}
		holes(v)
		checkPayload(v, payload)
		r, err := parseRef(v)
		if err != nil {
			return
		}
		if !isRef(v) {
			t.Fatal("parseRef accepted a value that is not a reference")
		}
		if r.n > maxGroupValue || r.n < groupHeader || r.off < segment.FileHeader {
			t.Fatalf("accepted a reference of %d bytes at %d: reads would allocate or seek by it", r.n, r.off)
		}
		for i := range GroupBlocks {
			si := r.slot(i)
			if si.stored < 0 || si.stored > 0xFFFF || si.raw < -1 || si.raw > 0xFFFF {
				t.Fatalf("slot %d: %+v", i, si)
			}
		}
		streamOf(r.summary)
		if e := encodeRef(r.seg, r.off, r.n, r.crc, r.summary); !bytes.Equal(e, v) {
			t.Fatalf("parse and encode differ:\n%x\n%x", v, e)
		}
	})
}
