package blockstore

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// shortLogStore makes a store of small files (their groups are Badger values, in the value
// log: segref.go), synced, and returns the directory of either the image a crash of its server
// leaves (crash) or the store closed cleanly, with the files' contents.
func shortLogStore(t *testing.T, crash bool) (string, map[string][]byte) {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "store")
	s := openTest(t, dir)
	want := map[string][]byte{}
	for i := range 40 {
		name := fmt.Sprintf("f%d", i)
		ino := newFile(t, s, name)
		data := make([]byte, inlineMax-100)
		rand.New(rand.NewSource(int64(i))).Read(data)
		if err := s.WriteAt(ino, data, 0); err != nil {
			t.Fatal(err)
		}
		want[name] = data
	}
	if err := s.Sync(); err != nil {
		t.Fatal(err)
	}
	if crash {
		img := filepath.Join(t.TempDir(), "crashed")
		copyTree(t, dir, img)
		s.Close()
		return img, want
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	return dir, want
}

// nextValueLog makes the value-log file after the newest, of size bytes (zeros), as Badger
// leaves it when a power loss follows its making.
func nextValueLog(t *testing.T, dir string, size int) string {
	t.Helper()
	p := filepath.Join(dir, fmt.Sprintf("%06d.vlog", valueLogNumber(newestValueLog(dir))+1))
	if err := os.WriteFile(p, make([]byte, size), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// checkFiles opens dir read-write: every file reads back as written and fsck finds nothing.
func checkFiles(t *testing.T, dir string, want map[string][]byte) {
	t.Helper()
	s, err := Open(dir, Options{})
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	defer s.Close()
	for name, w := range want {
		n, err := s.Lookup(RootIno, name)
		if err != nil {
			t.Fatalf("lookup %s: %v", name, err)
		}
		if got := readAll(t, s, n.Ino); !bytes.Equal(got, w) {
			t.Fatalf("%s reads back %d bytes, not the %d written", name, len(got), len(w))
		}
	}
	r, err := s.Fsck(FsckOptions{})
	if err != nil || !r.Clean {
		t.Fatalf("fsck: %v %+v", err, r)
	}
}

// refused opens dir read-only and read-write: each must fail with want, in one line naming
// file, and leave every value-log file as it was.
func refused(t *testing.T, dir, file string, want error) {
	t.Helper()
	snapshot := func() map[string][]byte {
		m := map[string][]byte{}
		for _, p := range valueLogs(dir) {
			m[p], _ = os.ReadFile(p)
		}
		return m
	}
	before := snapshot()
	for _, ro := range []bool{true, false} {
		if want == ErrUnclean && !ro {
			continue
		}
		s, err := Open(dir, Options{ReadOnly: ro})
		if err == nil {
			s.Close()
			t.Fatalf("read-only %v: the store opened", ro)
		}
		if msg := err.Error(); !errors.Is(err, want) || !strings.Contains(msg, file) || strings.Contains(msg, "\n") {
			t.Fatalf("read-only %v: want one line (%v) naming %s, got: %v", ro, want, file, err)
		}
		after := snapshot()
		if len(after) != len(before) {
			t.Fatalf("read-only %v: value-log files were %d, now %d", ro, len(before), len(after))
		}
		for p, b := range before {
			if !bytes.Equal(after[p], b) {
				t.Fatalf("read-only %v: the refused open changed %s", ro, filepath.Base(p))
			}
		}
	}
}

// TestShortNewestValueLog: a crash right after Badger made a value-log file leaves it empty
// (or cut inside its 20-byte header); Badger refused such a store ("Open existing file ...:
// Create a new file") and grew the file on its way out. Now the newest file gets its header at
// the next read-write open, and every synced byte reads back; a read-only open changes nothing
// and says to mount or fsck. A short file where no crash can leave one (not the newest, or the
// newest of a cleanly closed store) is damage: refused, untouched, in one line.
func TestShortNewestValueLog(t *testing.T) {
	for _, size := range []int{0, 7, 19} {
		t.Run(fmt.Sprintf("crash/%d-bytes", size), func(t *testing.T) {
			dir, want := shortLogStore(t, true)
			p := nextValueLog(t, dir, size)
			refused(t, dir, filepath.Base(p), ErrUnclean)
			checkFiles(t, dir, want)
			checkFiles(t, dir, want) // and again: the repaired file is an ordinary one now
		})
	}
	t.Run("interrupted-open-after-clean-close", func(t *testing.T) {
		// A power loss while an open of a cleanly closed store was under way: lmfs.closed
		// is still there, the file that open made is newer than the one it names.
		dir, want := shortLogStore(t, false)
		p := nextValueLog(t, dir, 0)
		refused(t, dir, filepath.Base(p), ErrUnclean)
		checkFiles(t, dir, want)
	})
	t.Run("clean-newest-cut", func(t *testing.T) {
		for _, size := range []int64{0, 10} {
			dir, _ := shortLogStore(t, false)
			p := newestValueLog(dir)
			if err := os.Truncate(p, size); err != nil {
				t.Fatal(err)
			}
			refused(t, dir, filepath.Base(p), ErrDamagedLog)
		}
	})
	t.Run("clean-marker-of-older-lmfs", func(t *testing.T) {
		// lmfs.closed without the newest file's name cannot tell a crashed open from damage.
		dir, _ := shortLogStore(t, false)
		if err := os.WriteFile(filepath.Join(dir, closedMarker), nil, 0o600); err != nil {
			t.Fatal(err)
		}
		p := nextValueLog(t, dir, 0)
		refused(t, dir, filepath.Base(p), ErrDamagedLog)
	})
	for _, crash := range []bool{true, false} {
		t.Run(fmt.Sprintf("not-newest/crash=%v", crash), func(t *testing.T) {
			dir, _ := shortLogStore(t, crash)
			p := newestValueLog(dir)
			nextValueLog(t, dir, vlogFileHeader+100)
			if err := os.Truncate(p, 0); err != nil {
				t.Fatal(err)
			}
			refused(t, dir, filepath.Base(p), ErrDamagedLog)
		})
	}
}
