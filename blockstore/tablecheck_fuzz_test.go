package blockstore

import (
	"bytes"
	"encoding/binary"
	"hash/crc32"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/dgraph-io/badger/v4"
	"github.com/dgraph-io/badger/v4/options"
	"github.com/dgraph-io/badger/v4/table"
	"github.com/dgraph-io/badger/v4/y"
)

// FuzzCheckTable: Badger table files (tablecheck.go). checkTable never panics or allocates by
// a length it read; a table it accepts, Badger opens and reads without a panic.
func FuzzCheckTable(f *testing.F) {
	f.Add(make([]byte, 267), uint64(0), uint32(0))
	f.Add([]byte{0, 0, 0, 0, 0, 0, 0, 0}, uint64(0), uint32(0))
	f.Fuzz(func(t *testing.T, data []byte, keyID uint64, compression uint32) {
		ti := tableInfo{keyID: keyID % 2, compression: compression % 4}
		if err := checkTable(bytes.NewReader(data), int64(len(data)), ti); err != nil || ti.keyID != 0 || ti.compression != 0 {
			return
		}
		// As lmfs opens tables: Badger checks nothing itself (store.go).
		tbl, err := table.OpenInMemoryTable(bytes.Clone(data), 1, &table.Options{ChkMode: options.NoVerification, BlockSize: 4 << 10})
		if err != nil {
			return
		}
		it := tbl.NewIterator(0)
		for it.Rewind(); it.Valid(); it.Next() {
			it.Key()
			it.Value()
		}
		it.Close()
	})
}

// FuzzParseManifest: Badger's MANIFEST (tablecheck.go), compared with Badger's own replay:
// what Badger accepts, parseManifest reads as the same tables (or refuses for a reason Badger
// finds only later, in a goroutine of its own); it never accepts what makes Badger fail. With
// fix set, the records' checksums are made right first, so the change sets are explored.
func FuzzParseManifest(f *testing.F) {
	dir := f.TempDir()
	f.Add([]byte("Bdgr\x00\x00\x00\x08"), false)
	f.Fuzz(func(t *testing.T, b []byte, fix bool) {
		b = bytes.Clone(b)
		if fix {
			for off := 8; off+8 <= len(b); {
				n := int(binary.BigEndian.Uint32(b[off:]))
				if n > len(b)-off-8 {
					break
				}
				binary.BigEndian.PutUint32(b[off+4:], crc32.Checksum(b[off+8:off+8+n], y.CastagnoliCrcTable))
				off += 8 + n
			}
		}
		tables, partial, err := parseManifest(b)
		if err != nil && strings.Contains(err.Error(), "level") {
			return // Badger would make room for that many levels (and then index past them)
		}
		p := filepath.Join(dir, "MANIFEST")
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
		fp, err2 := os.Open(p)
		if err2 != nil {
			t.Fatal(err2)
		}
		defer fp.Close()
		m, trunc, berr := badger.ReplayManifestFile(fp, 0, badger.DefaultOptions("").WithLogger(nil))
		switch {
		case berr == nil && err != nil:
			t.Fatalf("Badger reads the manifest, parseManifest refuses it: %v", err)
		case berr != nil || err != nil:
			return
		}
		if len(m.Tables) != len(tables) {
			t.Fatalf("Badger lists %d tables, parseManifest %d", len(m.Tables), len(tables))
		}
		for id, tm := range m.Tables {
			if ti, ok := tables[id]; !ok || ti.level != uint32(tm.Level) || ti.keyID != tm.KeyID || ti.compression != uint32(tm.Compression) {
				t.Fatalf("table %d: Badger %+v, parseManifest %+v", id, tm, ti)
			}
		}
		if want := int64(len(b)); partial >= 0 {
			want = partial
			if trunc != want {
				t.Fatalf("Badger stops at %d, parseManifest at %d", trunc, want)
			}
		} else if trunc != want {
			t.Fatalf("Badger stops at %d, parseManifest reads to the end (%d)", trunc, want)
		}
	})
}
