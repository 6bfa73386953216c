package segment

import (
	"bytes"
	"crypto/sha256"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// seedSegments are segment files with two entries and the Locs of them (and one cut short).
type seedSegment struct {
	seg  []byte
	l    Loc
	a, b uint64
}

func seedSegments() []seedSegment {
	seg := bytes.Clone(fileMagic)
	var out []seedSegment
	for i, p := range [][]byte{bytes.Repeat([]byte("seed payload "), 300), []byte("short")} {
		off := uint32(len(seg))
		crc := checksum(p)
		h := make([]byte, EntryHeader)
		PutEntryHeader(h, 10, uint64(i), len(p), crc)
		seg = append(append(seg, h...), p...)
		out = append(out, seedSegment{l: Loc{Off: off, N: uint32(len(p)), CRC: crc}, a: 10, b: uint64(i)})
	}
	for i := range out {
		out[i].seg = seg
	}
	cut := out[0]
	cut.seg = seg[:len(seg)/2]
	return append(out, cut)
}

// FuzzSegmentEntry: a data segment's bytes and a Loc into it, read both ways a store reads
// them: pread of one entry (Read) and the read-only mapping (ReadRange, ReadMapped). With fix
// set, the entry the Loc points at is made to match it (header fields and checksums), so the
// read must succeed and both ways must agree.
func FuzzSegmentEntry(f *testing.F) {
	dir := f.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, Subdir), 0o700); err != nil {
		f.Fatal(err)
	}
	for _, s := range seedSegments() {
		f.Add(s.seg, s.l.Off, s.l.N, s.l.CRC, s.a, s.b, false)
		f.Add(s.seg, s.l.Off, s.l.N, s.l.CRC, s.a+1, s.b, true)
	}
	f.Fuzz(func(t *testing.T, seg []byte, off, n, crc uint32, a, b uint64, fix bool) {
		seg = bytes.Clone(seg)
		CheckEntry(seg, a, b, Loc{})
		if n > 1<<20 || off < FileHeader {
			return // a store refuses such Locs before reading (its reference bounds)
		}
		l := Loc{Off: off, N: n, CRC: crc}
		fixed := fix && l.End() <= int64(len(seg))
		if fixed {
			l.CRC = checksum(seg[int64(off)+EntryHeader : l.End()])
			PutEntryHeader(seg[off:], a, b, int(n), l.CRC)
		}
		if err := os.WriteFile(filepath.Join(dir, Subdir, FileName(0)), seg, 0o600); err != nil {
			t.Fatal(err)
		}
		d, err := Open(dir, Options{ReadOnly: true})
		if err != nil {
			t.Fatal(err)
		}
		defer d.Close()
		v, err := d.Read(nil, a, b, l)
		switch {
		case fixed && err != nil:
			t.Fatalf("an entry that matches its Loc did not read: %v", err)
		case err == nil && len(v) != int(n):
			t.Fatalf("read %d bytes of a %d-byte entry", len(v), n)
		case err == nil:
			// Reads leave the payload's checksum to the caller; CheckPayload does it.
			if err := CheckPayload(l, v); fixed && err != nil {
				t.Fatalf("a matching entry fails its payload check: %v", err)
			}
		}
		span, done, err := d.ReadRange(0, int64(off), EntrySize(n))
		if fixed && err != nil {
			t.Fatalf("mapping an entry that lies inside the file: %v", err)
		}
		if err == nil {
			var same bool
			err = ReadMapped(func() error {
				same = bytes.Equal(v, span[EntryHeader:])
				return CheckEntry(span, a, b, l)
			})
			done()
			if fixed && (err != nil || !same) {
				t.Fatalf("the mapping and pread disagree: %v", err)
			}
		}
	})
}

// TestWriteFuzzSeeds writes the seed corpus (run with LMFS_WRITE_FUZZ_SEEDS=1 after a change
// of the format; the files are committed).
func TestWriteFuzzSeeds(t *testing.T) {
	if os.Getenv("LMFS_WRITE_FUZZ_SEEDS") == "" {
		t.Skip("set LMFS_WRITE_FUZZ_SEEDS=1 to rewrite testdata/fuzz")
	}
	dir := filepath.Join("testdata", "fuzz", "FuzzSegmentEntry")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, s := range seedSegments() {
		for _, v := range []struct {
			a   uint64
			fix bool
		}{{s.a, false}, {s.a + 1, true}} {
			var b strings.Builder
			fmt.Fprintf(&b, "go test fuzz v1\n[]byte(%q)\nuint32(%d)\nuint32(%d)\nuint32(%d)\nuint64(%d)\nuint64(%d)\nbool(%v)\n",
				s.seg, s.l.Off, s.l.N, s.l.CRC, v.a, s.b, v.fix)
			sum := sha256.Sum256([]byte(b.String()))
			if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("seed-%x", sum[:8])), []byte(b.String()), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
}
