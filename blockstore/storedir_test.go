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
	if err := writeFileAtomic(dir, markerFile, markerText(FormatVersion, codec.BlockSize)); err != nil {
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

// TestWriteFileAtomicNoFollow: a symlink planted at the temporary name is replaced, not
// followed, and the file written is private.
func TestWriteFileAtomicNoFollow(t *testing.T) {
	dir := t.TempDir()
	target := filepath.Join(t.TempDir(), "target")
	os.WriteFile(target, []byte("keep"), 0o600)
	os.Symlink(target, filepath.Join(dir, markerFile+tmpSuffix))
	os.Symlink(target, filepath.Join(dir, markerFile))
	if err := writeFileAtomic(dir, markerFile, []byte("new")); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(target); string(b) != "keep" {
		t.Fatalf("target written: %q", b)
	}
	st, err := os.Lstat(filepath.Join(dir, markerFile))
	if err != nil || !st.Mode().IsRegular() || st.Mode().Perm() != 0o600 {
		t.Fatalf("marker: %v %v", st.Mode(), err)
	}
	if _, err := os.Lstat(filepath.Join(dir, markerFile+tmpSuffix)); err == nil {
		t.Fatal("temporary file left behind")
	}
}
