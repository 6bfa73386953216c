package blockstore

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// storeWithTable makes a closed store whose index is in one Badger table of several blocks
// (Badger writes its memtable as a level-0 table when it closes).
func storeWithTable(t *testing.T) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "store")
	s := openTest(t, dir)
	for i := range 300 {
		ino := newFile(t, s, fmt.Sprintf("file-with-a-longish-name-%04d", i))
		if err := s.WriteAt(ino, []byte(strings.Repeat("x", i)), 0); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, "000001.sst")); err != nil {
		t.Fatalf("no table written: %v", err)
	}
	return dir
}

// copyStore copies a closed store directory (one level of subdirectories).
func copyStore(t *testing.T, from string) string {
	t.Helper()
	to := filepath.Join(t.TempDir(), "copy")
	err := filepath.Walk(from, func(p string, fi os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(from, p)
		dst := filepath.Join(to, rel)
		if fi.IsDir() {
			return os.MkdirAll(dst, 0o700)
		}
		in, err := os.Open(p)
		if err != nil {
			return err
		}
		defer in.Close()
		out, err := os.OpenFile(dst, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
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
	return to
}

func names(t *testing.T, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range ents {
		if strings.HasSuffix(e.Name(), ".sst") || e.Name() == "MANIFEST" {
			out = append(out, e.Name())
		}
	}
	return out
}

// expectDamaged opens dir read-write and read-only: each must fail with ErrDamagedIndex, in
// one line naming file, and leave Badger's index files as they were.
func expectDamaged(t *testing.T, dir, file string) {
	t.Helper()
	before := names(t, dir)
	for _, ro := range []bool{false, true} {
		s, err := Open(dir, Options{ReadOnly: ro})
		if err == nil {
			s.Close()
			t.Fatalf("read-only %v: the store opened", ro)
		}
		msg := err.Error()
		if !errors.Is(err, ErrDamagedIndex) || !strings.Contains(msg, file) || strings.Contains(msg, "\n") {
			t.Fatalf("read-only %v: want one line naming %s as damaged, got: %v", ro, file, err)
		}
		if after := names(t, dir); !slices.Equal(before, after) {
			t.Fatalf("read-only %v: index files were %v before the open, %v after", ro, before, after)
		}
	}
}

// TestDamagedTable damages a Badger table in the ways that made Badger panic in its own
// goroutines (uncatchable: lmfs exited with a stack trace) or fail its checksums: each is an
// error naming the table, the store untouched.
func TestDamagedTable(t *testing.T) {
	orig := storeWithTable(t)
	size := func(p string) int64 {
		st, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		return st.Size()
	}
	patch := func(p string, off int64, b []byte) {
		f, err := os.OpenFile(p, os.O_WRONLY, 0)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		if _, err := f.WriteAt(b, off); err != nil {
			t.Fatal(err)
		}
	}
	damages := map[string]func(p string){
		"zeroed":            func(p string) { patch(p, 0, make([]byte, size(p))) },
		"zeroed tail":       func(p string) { patch(p, size(p)-100, make([]byte, 100)) },
		"cut in half":       func(p string) { os.Truncate(p, size(p)/2) },
		"one byte short":    func(p string) { os.Truncate(p, size(p)-1) },
		"empty":             func(p string) { os.Truncate(p, 0) },
		"bytes appended":    func(p string) { patch(p, size(p), []byte("appended garbage")) },
		"footer byte":       func(p string) { patch(p, size(p)-3, []byte{0xa5}) },
		"index byte":        func(p string) { patch(p, size(p)-40, []byte{0xa5}) },
		"first block byte":  func(p string) { patch(p, 100, []byte{0xa5}) },
		"middle block byte": func(p string) { patch(p, size(p)/2, []byte{0xa5}) },
		"random": func(p string) {
			b := make([]byte, size(p))
			for i := range b {
				b[i] = byte(i*7919 + i>>8)
			}
			patch(p, 0, b)
		},
	}
	for name, damage := range damages {
		t.Run(name, func(t *testing.T) {
			dir := copyStore(t, orig)
			damage(filepath.Join(dir, "000001.sst"))
			expectDamaged(t, dir, "000001.sst")
		})
	}
	t.Run("missing", func(t *testing.T) {
		dir := copyStore(t, orig)
		os.Remove(filepath.Join(dir, "000001.sst"))
		expectDamaged(t, dir, "000001.sst")
	})
	t.Run("symlink", func(t *testing.T) {
		dir := copyStore(t, orig)
		p := filepath.Join(dir, "000001.sst")
		os.Rename(p, p+".real")
		if err := os.Symlink(p+".real", p); err != nil {
			t.Fatal(err)
		}
		if s, err := Open(dir, Options{ReadOnly: true}); err == nil {
			s.Close()
			t.Fatal("a store whose table is a symlink opened")
		}
	})
}

// TestDamagedManifest: a MANIFEST cut short, missing or changed made Badger delete the tables
// it no longer listed, read-only opens too (the whole index of the store); now it is an error
// and the tables stay.
func TestDamagedManifest(t *testing.T) {
	orig := storeWithTable(t)
	mp := func(dir string) string { return filepath.Join(dir, "MANIFEST") }
	cases := map[string]func(dir string){
		"cut in half": func(dir string) {
			st, _ := os.Stat(mp(dir))
			os.Truncate(mp(dir), st.Size()/2)
		},
		"header only": func(dir string) { os.Truncate(mp(dir), 8) },
		"changed byte": func(dir string) {
			b, _ := os.ReadFile(mp(dir))
			b[len(b)-2] ^= 0x10
			os.WriteFile(mp(dir), b, 0o600)
		},
		"zeroed": func(dir string) {
			st, _ := os.Stat(mp(dir))
			os.WriteFile(mp(dir), make([]byte, st.Size()), 0o600)
		},
	}
	for name, damage := range cases {
		t.Run(name, func(t *testing.T) {
			dir := copyStore(t, orig)
			damage(dir)
			expectDamaged(t, dir, "MANIFEST")
		})
	}
	t.Run("missing", func(t *testing.T) {
		dir := copyStore(t, orig)
		os.Remove(mp(dir))
		for _, ro := range []bool{false, true} {
			s, err := Open(dir, Options{ReadOnly: ro})
			if err == nil {
				s.Close()
				t.Fatalf("read-only %v: the store opened without its MANIFEST", ro)
			}
			if !errors.Is(err, ErrDamagedIndex) || !strings.Contains(err.Error(), "MANIFEST") {
				t.Fatalf("read-only %v: %v", ro, err)
			}
			if _, err := os.Stat(filepath.Join(dir, "000001.sst")); err != nil {
				t.Fatalf("read-only %v: the table is gone: %v", ro, err)
			}
		}
	})
	t.Run("unlisted table in a clean store", func(t *testing.T) {
		dir := copyStore(t, orig)
		b, _ := os.ReadFile(filepath.Join(dir, "000001.sst"))
		os.WriteFile(filepath.Join(dir, "000077.sst"), b, 0o600)
		expectDamaged(t, dir, "MANIFEST")
	})
	t.Run("unlisted table after a crash", func(t *testing.T) {
		// What an interrupted flush or compaction leaves: Badger deletes it, as it should.
		dir := copyStore(t, orig)
		b, _ := os.ReadFile(filepath.Join(dir, "000001.sst"))
		os.WriteFile(filepath.Join(dir, "000077.sst"), b, 0o600)
		os.Remove(filepath.Join(dir, closedMarker))
		s, err := Open(dir, Options{})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := s.Lookup(RootIno, "file-with-a-longish-name-0299"); err != nil {
			t.Fatal(err)
		}
		s.Close()
		if _, err := os.Stat(filepath.Join(dir, "000077.sst")); !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("the leftover table is still there: %v", err)
		}
	})
}

// TestIndexCheckedUnderLock: the check reads the files under the directory lock Badger
// takes, so a store open elsewhere is reported as in use, not as damaged.
func TestIndexCheckedUnderLock(t *testing.T) {
	dir := storeWithTable(t)
	s, err := Open(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := checkIndex(dir); !errors.Is(err, ErrLocked) {
		t.Fatalf("checkIndex of a store in use: %v", err)
	}
	if _, err := Open(dir, Options{ReadOnly: true}); !errors.Is(err, ErrLocked) {
		t.Fatalf("second open: %v", err)
	}
}

// TestDamagedKeyRegistry: Badger said only "Encryption key mismatch"; now the file and the
// fix are named, and the fix works.
func TestDamagedKeyRegistry(t *testing.T) {
	orig := storeWithTable(t)
	for name, b := range map[string][]byte{"zeroed": make([]byte, 28), "cut": []byte("short"), "empty": nil,
		"extended": append(append(make([]byte, 16), "Hello Badger"...), "garbage"...)} {
		t.Run(name, func(t *testing.T) {
			dir := copyStore(t, orig)
			p := filepath.Join(dir, keyRegistry)
			if err := os.WriteFile(p, b, 0o600); err != nil {
				t.Fatal(err)
			}
			s, err := Open(dir, Options{})
			if err == nil {
				s.Close()
				t.Fatal("the store opened")
			}
			if msg := err.Error(); !strings.Contains(msg, keyRegistry) || !strings.Contains(msg, "move it aside") {
				t.Fatalf("want the file and the fix named: %v", err)
			}
			if err := os.Rename(p, p+".damaged"); err != nil {
				t.Fatal(err)
			}
			s, err = Open(dir, Options{})
			if err != nil {
				t.Fatalf("after moving it aside: %v", err)
			}
			defer s.Close()
			if _, err := s.Lookup(RootIno, "file-with-a-longish-name-0007"); err != nil {
				t.Fatal(err)
			}
			if r, err := s.Fsck(FsckOptions{}); err != nil || !r.Clean {
				t.Fatalf("fsck after the fix: %v %+v", err, r)
			}
		})
	}
}

// TestDamagedValueLogHeader: a value-log header naming an encryption key made Badger refuse
// the store with "Error for the KEY ID ...: Invalid datakey id"; now the file is named.
func TestDamagedValueLogHeader(t *testing.T) {
	dir := copyStore(t, storeWithTable(t))
	p := filepath.Join(dir, "000001.vlog")
	f, err := os.OpenFile(p, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteAt([]byte{0xde, 0xad, 0xbe, 0xef}, 0)
	f.Close()
	s, err := Open(dir, Options{ReadOnly: true})
	if err == nil {
		s.Close()
		t.Fatal("the store opened")
	}
	if msg := err.Error(); !strings.Contains(msg, "000001.vlog") || !strings.Contains(msg, "backup") {
		t.Fatalf("want the file named: %v", err)
	}
}
