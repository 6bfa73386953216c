package blockstore

import (
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"testing"
)

// copyTree copies the store in src to dst as the files are now: with the store open and not
// synced, the image a SIGKILL of its server leaves on disk.
func copyTree(t *testing.T, src, dst string) {
	t.Helper()
	err := filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		to := filepath.Join(dst, rel)
		if d.IsDir() {
			return os.MkdirAll(to, 0o700)
		}
		in, err := os.Open(p)
		if err != nil {
			return err
		}
		defer in.Close()
		out, err := os.OpenFile(to, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
		if err != nil {
			return err
		}
		defer out.Close()
		_, err = io.Copy(out, in)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
}

// A store its server left without closing (killed) is ErrUnclean to a read-only open (lmfs
// stats says to mount it or run fsck), and a read-write open recovers it; a store in use is
// ErrLocked; an empty directory is no store to Open, but Check accepts it (mount makes one).
func TestOpenErrors(t *testing.T) {
	dir := t.TempDir()
	s := openTest(t, dir)
	defer s.Close()
	ino := newFile(t, s, "f")
	if err := s.WriteAt(ino, []byte("written, never synced"), 0); err != nil {
		t.Fatal(err)
	}
	s.settleAll()
	if _, err := Open(dir, Options{ReadOnly: true}); !errors.Is(err, ErrLocked) {
		t.Fatalf("read-only open of a store in use: %v, want ErrLocked", err)
	}

	crashed := filepath.Join(t.TempDir(), "crashed")
	copyTree(t, dir, crashed)
	if _, err := Open(crashed, Options{ReadOnly: true}); !errors.Is(err, ErrUnclean) {
		t.Fatalf("read-only open of a killed store: %v, want ErrUnclean", err)
	}
	s2, err := Open(crashed, Options{})
	if err != nil {
		t.Fatalf("read-write open of a killed store: %v", err)
	}
	s2.Close()
	s3, err := Open(crashed, Options{ReadOnly: true})
	if err != nil {
		t.Fatalf("read-only open after recovery: %v", err)
	}
	s3.Close()

	empty := t.TempDir()
	if _, err := Open(empty, Options{}); !errors.Is(err, ErrNotStore) || !errors.Is(err, errEmptyDir) {
		t.Fatalf("open of an empty directory: %v, want ErrNotStore (empty directory)", err)
	}
	if err := Check(empty); err != nil {
		t.Fatalf("Check of an empty directory: %v", err)
	}
	if err := Check(crashed); err != nil {
		t.Fatalf("Check of a store: %v", err)
	}
}
