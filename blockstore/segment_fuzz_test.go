package blockstore

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"

	"lmfs/codec"
)

// FuzzSegmentEntry: a data segment's bytes and a reference into it (segment.go), read both
// ways the store reads them: pread of one entry (ss.read) and the read-only mapping of
// sequential reads (mapSpan, readMapped). With fix set, the entry the reference points at is
// made to match it (header fields and checksums), so the read goes on to the payload, which
// is then parsed as a group.
func FuzzSegmentEntry(f *testing.F) {
	dir := f.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, segSubdir), 0o700); err != nil {
		f.Fatal(err)
	}
	for _, s := range seedSegments() {
		f.Add(s.seg, s.ref, s.ino, s.g, false)
		f.Add(s.seg, s.ref, s.ino+1, s.g, true)
	}
	f.Fuzz(func(t *testing.T, seg, ref []byte, ino, g uint64, fix bool) {
		seg = bytes.Clone(seg)
		checkEntryHeader(seg, ino, g, groupRef{})
		r, err := parseRef(ref)
		if err != nil {
			return
		}
		r.seg = 0
		end := int64(r.off) + entrySize(r.n)
		fixed := fix && end <= int64(len(seg))
		if fixed {
			r.crc = codec.Checksum(seg[int64(r.off)+entryHeader : end])
			putEntryHeader(seg[r.off:], ino, g, int(r.n), r.crc)
		}
		if err := os.WriteFile(filepath.Join(dir, segSubdir, segName(0)), seg, 0o600); err != nil {
			t.Fatal(err)
		}
		ss := newSegments(dir, true)
		defer ss.close()
		v, err := ss.read(ino, g, r)
		switch {
		case fixed && err != nil:
			t.Fatalf("an entry that matches its reference did not read: %v", err)
		case err == nil && len(v) != int(r.n):
			t.Fatalf("read %d bytes of a %d-byte entry", len(v), r.n)
		case err == nil:
			// Reads leave the payload's checksum to the records' own (segment.go); fsck
			// and GC check it.
			if err := checkPayload(encodeRef(0, r.off, r.n, r.crc, r.summary), v); fixed && err != nil {
				t.Fatalf("a matching entry fails its payload check: %v", err)
			}
			parseGroup(v)
		}
		span, sf, err := ss.mapSpan(0, int64(r.off), entrySize(r.n))
		if fixed && err != nil {
			t.Fatalf("mapping an entry that lies inside the file: %v", err)
		}
		if err == nil {
			err = readMapped(func() error {
				if err := checkEntryHeader(span, ino, g, r); err != nil {
					return err
				}
				_, err := parseGroup(span[entryHeader:])
				return err
			})
			ss.release(sf)
			if fixed && err != nil && !bytes.Equal(v, span[entryHeader:]) {
				t.Fatalf("the mapping and pread disagree")
			}
		}
	})
}
