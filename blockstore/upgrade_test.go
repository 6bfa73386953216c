package blockstore

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math/rand"
	"os"
	"path/filepath"
	"testing"

	"github.com/dgraph-io/badger/v4"

	"lmfs/codec"
)

// downgradeToV1 rewrites a closed format-2 store into the format-1 layout (a key per block),
// as an older lmfs left it.
func downgradeToV1(t *testing.T, dir string) { downgradeSome(t, dir, nil, 1) }

// downgradeSome is downgradeToV1 that leaves the groups for which keep is true in format 2,
// as an upgrade interrupted by a crash leaves a store.
// With version 2 (keep: all), the result is a format-2 store: groups inline, no segments.
func downgradeSome(t *testing.T, dir string, keep func(ino, g uint64) bool, version int) {
	t.Helper()
	db, err := badger.Open(badger.DefaultOptions(dir).WithLogger(nil).WithValueThreshold(64).WithNumVersionsToKeep(1))
	if err != nil {
		t.Fatal(err)
	}
	var gkeys, gvals [][]byte
	err = db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.DefaultIteratorOptions)
		defer it.Close()
		for it.Seek([]byte{tagGroup}); it.ValidForPrefix([]byte{tagGroup}); it.Next() {
			v, err := it.Item().ValueCopy(nil)
			if err != nil {
				return err
			}
			gkeys, gvals = append(gkeys, it.Item().KeyCopy(nil)), append(gvals, v)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	wb := db.NewWriteBatch()
	for i, k := range gkeys {
		ino, g := decodeU64U64(k)
		v, err := ResolveGroup(dir, k, gvals[i]) // older formats had no data segments
		if err != nil {
			t.Fatal(err)
		}
		if keep != nil && keep(ino, g) {
			wb.Set(k, v)
			continue
		}
		grp, err := parseGroup(v)
		if err != nil {
			t.Fatal(err)
		}
		for slot, rec := range grp {
			if rec == nil {
				continue
			}
			blk := g*GroupBlocks + uint64(slot)
			wb.Set(keyU64U64(tagBlockV1, ino, blk), rec)
			if rec[1]&codec.FlagPending != 0 {
				wb.Set(keyU64U64(tagPendingV1, ino, blk), nil)
			}
		}
		wb.Delete(k)
		wb.Delete(pendingKey(ino, g))
		wb.Delete(freshKey(ino, g))
	}
	f := Format{Magic: "lmfs", Version: version, BlockSize: codec.BlockSize, Created: "2026-11-01T00:00:00Z"}
	fb, _ := json.Marshal(f)
	wb.Set([]byte{tagFormat}, fb)
	if err := wb.Flush(); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	os.RemoveAll(filepath.Join(dir, segSubdir))
	os.WriteFile(filepath.Join(dir, MarkerFile), []byte(fmt.Sprintf("lmfs store format %d\nblock size 2048\n", version)), 0o600)
	os.WriteFile(filepath.Join(dir, closedMarker), nil, 0o600)
}

// TestUpgradeFromFormat1: a format-1 store opens read-only with a clear error, and opened for
// writing is upgraded in place: every file reads back byte for byte, counters and fsck agree.
func TestUpgradeFromFormat1(t *testing.T) {
	dir := t.TempDir()
	s := openTest(t, dir)
	rng := rand.New(rand.NewSource(7))
	files := map[uint64][]byte{}
	for i, size := range []int{0, 100, 2048, 5000, 40 << 10, 300 << 10} {
		ino := newFile(t, s, string(rune('a'+i)))
		data := make([]byte, size)
		for j := range data {
			data[j] = byte('a' + rng.Intn(8))
		}
		if size > 10000 {
			clear(data[6000:9000]) // a hole in the middle
		}
		if err := s.WriteAt(ino, data, 0); err != nil {
			t.Fatal(err)
		}
		files[ino] = data
	}
	before := s.Counters()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	downgradeToV1(t, dir)
	if _, err := Open(dir, Options{ReadOnly: true}); err == nil {
		t.Fatal("read-only open of a format-1 store succeeded")
	}
	s = openTest(t, dir)
	defer s.Close()
	if s.Format().Version != FormatVersion {
		t.Fatalf("format after upgrade %d", s.Format().Version)
	}
	for ino, want := range files {
		if got := readAll(t, s, ino); !bytes.Equal(got, want) {
			t.Errorf("inode %d differs after the upgrade (%d bytes, want %d)", ino, len(got), len(want))
		}
	}
	if got := s.Counters(); !countersEqual(got, mustScan(t, s)) || got.Logical != before.Logical {
		t.Errorf("counters after upgrade %+v, before %+v", got, before)
	}
	mustFsckClean(t, s, "fsck after upgrade")
	marker, _ := os.ReadFile(filepath.Join(dir, MarkerFile))
	if !bytes.HasPrefix(marker, []byte(fmt.Sprintf("lmfs store format %d", FormatVersion))) {
		t.Errorf("marker file after upgrade: %q", marker)
	}
}

// TestUpgradeResumes: a store whose upgrade stopped midway (some groups converted, the marker
// still saying format 1) is finished at the next open.
func TestUpgradeResumes(t *testing.T) {
	dir := t.TempDir()
	s := openTest(t, dir)
	want := map[uint64][]byte{}
	for i := 0; i < 3; i++ {
		ino := newFile(t, s, string(rune('a'+i)))
		data := bytes.Repeat([]byte{byte('a' + i), 'x', '\n'}, 50000) // 150 kB: 5 groups
		if err := s.WriteAt(ino, data, 0); err != nil {
			t.Fatal(err)
		}
		want[ino] = data
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	downgradeSome(t, dir, func(ino, g uint64) bool { return g%2 == 0 }, 1)
	s = openTest(t, dir)
	defer s.Close()
	for ino, w := range want {
		if got := readAll(t, s, ino); !bytes.Equal(got, w) {
			t.Errorf("inode %d differs after the resumed upgrade", ino)
		}
	}
	mustFsckClean(t, s, "fsck after the resumed upgrade")
}

func mustScan(t *testing.T, s *Store) Delta {
	t.Helper()
	d, err := s.scanCounters()
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// TestOpenFormat2: a format-2 store (every group a Badger value) reads as it is, read-only
// too; opened for writing it says format 3 from then on, and new data goes to segments.
func TestOpenFormat2(t *testing.T) {
	dir := t.TempDir()
	s := openTest(t, dir)
	ino := newFile(t, s, "f")
	data := bytes.Repeat([]byte("format two\n"), 30000)
	if err := s.WriteAt(ino, data, 0); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	downgradeSome(t, dir, func(uint64, uint64) bool { return true }, 2)
	ro, err := Open(dir, Options{ReadOnly: true})
	if err != nil {
		t.Fatalf("read-only open of a format-2 store: %v", err)
	}
	if got := readAll(t, ro, ino); !bytes.Equal(got, data) {
		t.Fatal("format-2 file differs (read-only)")
	}
	ro.Close()
	s = openTest(t, dir)
	defer s.Close()
	if s.Format().Version != FormatVersion {
		t.Fatalf("format after a read-write open: %d", s.Format().Version)
	}
	more := bytes.Repeat([]byte("format three\n"), 10000)
	if err := s.WriteAt(ino, more, uint64(len(data))); err != nil {
		t.Fatal(err)
	}
	if got := readAll(t, s, ino); !bytes.Equal(got, append(data, more...)) {
		t.Fatal("file differs after appending in format 3")
	}
	if len(segFiles(t, dir)) == 0 {
		t.Fatal("no data segment after writing to an opened format-2 store")
	}
	mustFsckClean(t, s, "fsck")
}

// mustFsckClean fails the test unless fsck of s finds nothing (what names the check).
func mustFsckClean(t *testing.T, s *Store, what string) {
	t.Helper()
	if r, err := s.Fsck(FsckOptions{}); err != nil || !r.Clean {
		t.Fatalf("%s: %v %+v", what, err, r)
	}
}
