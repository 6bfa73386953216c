package blockstore

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/dgraph-io/badger/v4"

	"lmfs/codec"
)

// TestOpenFinishesInterruptedCreation: a power cut after a new store's marker was made
// durable but before its format record was leaves a marked store with an empty database;
// opening it for writing finishes making it (there is nothing in it to lose).
func TestOpenFinishesInterruptedCreation(t *testing.T) {
	dir := t.TempDir()
	db, err := badger.Open(badger.DefaultOptions(dir).WithLogger(nil))
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	if err := writeFileAtomic(dir, MarkerFile, markerText(FormatVersion, codec.BlockSize)); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(dir, Options{ReadOnly: true}); err == nil {
		t.Fatal("a read-only open of an unmade store succeeded")
	}
	s, err := Open(dir, Options{})
	if err != nil {
		t.Fatalf("open after an interrupted creation: %v", err)
	}
	defer s.Close()
	if _, err := s.GetInode(RootIno); err != nil {
		t.Fatalf("root: %v", err)
	}
	if f := s.Format(); f.Version != FormatVersion || f.Magic != "lmfs" {
		t.Fatalf("format %+v", f)
	}
}

// TestOpenKeepsStoreWithLostIndex: an empty index beside data segments is a lost index, not
// an unfinished creation; the open refuses and makes nothing.
func TestOpenKeepsStoreWithLostIndex(t *testing.T) {
	dir := t.TempDir()
	db, err := badger.Open(badger.DefaultOptions(dir).WithLogger(nil))
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	if err := writeFileAtomic(dir, MarkerFile, markerText(FormatVersion, codec.BlockSize)); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(dir, segSubdir), 0o700); err != nil {
		t.Fatal(err)
	}
	seg := filepath.Join(dir, segSubdir, "00000001.seg")
	if err := os.WriteFile(seg, []byte("segment data"), 0o600); err != nil {
		t.Fatal(err)
	}
	s, err := Open(dir, Options{})
	if err == nil {
		s.Close()
		t.Fatal("a store with data segments and an empty index was made anew")
	}
	if _, err := os.Stat(seg); err != nil {
		t.Fatalf("segment: %v", err)
	}
}

// TestWriteFileAtomicNoFollow: a symlink planted at the temporary name is replaced, not
// followed, and the file written is private.
func TestWriteFileAtomicNoFollow(t *testing.T) {
	dir := t.TempDir()
	target := filepath.Join(t.TempDir(), "target")
	os.WriteFile(target, []byte("keep"), 0o600)
	os.Symlink(target, filepath.Join(dir, MarkerFile+tmpSuffix))
	os.Symlink(target, filepath.Join(dir, MarkerFile))
	if err := writeFileAtomic(dir, MarkerFile, []byte("new")); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(target); string(b) != "keep" {
		t.Fatalf("target written: %q", b)
	}
	st, err := os.Lstat(filepath.Join(dir, MarkerFile))
	if err != nil || !st.Mode().IsRegular() || st.Mode().Perm() != 0o600 {
		t.Fatalf("marker: %v %v", st.Mode(), err)
	}
	if _, err := os.Lstat(filepath.Join(dir, MarkerFile+tmpSuffix)); err == nil {
		t.Fatal("temporary file left behind")
	}
}
