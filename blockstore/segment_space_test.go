package blockstore

import (
	"math/rand"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"lmfs/internal/tmpfs"
)

// freeBytes is the space available to unprivileged users on dir's file system.
func freeBytes(t *testing.T, dir string) int64 {
	t.Helper()
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		t.Fatal(err)
	}
	return int64(st.Bavail) * int64(st.Bsize)
}

// TestSegmentGCOnFullDisk: on a file system filled by something other than the store (free
// space below what segment GC keeps for Badger), data segments holding nothing live must
// still be deleted: they need no room to move anything, and deleting files in the store is
// the user's only way to get space back. (Segment GC skipped every segment while free space
// was below reserve-segGCRoom, those without live entries too, so writes got ENOSPC for
// good however much was deleted.)
func TestSegmentGCOnFullDisk(t *testing.T) {
	fs := tmpfs.Mount(t, 320<<20, "mode=0700")
	dir := filepath.Join(fs, "store")
	s := openTest(t, dir)
	defer func() { s.Close() }()
	ino := newFile(t, s, "big")
	data := make([]byte, 48<<20)
	rand.New(rand.NewSource(1)).Read(data)
	writeFile(t, s, ino, data) // raw records of 32 KiB groups: data segments
	if err := s.Sync(); err != nil {
		t.Fatal(err)
	}
	segs := func() int64 {
		var n int64
		ms, _ := filepath.Glob(filepath.Join(dir, segSubdir, "*.seg"))
		for _, m := range ms {
			if st, err := os.Stat(m); err == nil {
				n += st.Sys().(*syscall.Stat_t).Blocks * 512
			}
		}
		return n
	}
	if n := segs(); n < int64(len(data)) {
		t.Fatalf("data segments take %d bytes after writing %d", n, len(data))
	}
	// Something else fills the file system, down to 64 MiB free: less than the reserve
	// (136 MiB) less segment GC's room (32 MiB).
	filler, err := os.Create(filepath.Join(fs, "filler"))
	if err != nil {
		t.Fatal(err)
	}
	if err := syscall.Fallocate(int(filler.Fd()), 0, 0, freeBytes(t, fs)-64<<20); err != nil {
		t.Fatal(err)
	}
	filler.Close()
	if err := s.Unlink(RootIno, "big"); err != nil {
		t.Fatal(err)
	}
	before := freeBytes(t, fs)
	// GC looks at once while writes are refused; a refused write waits for it too.
	deadline := time.Now().Add(2 * time.Minute)
	for segs() > 32<<20 {
		if time.Now().After(deadline) {
			t.Fatalf("data segments still take %d bytes 2 minutes after their only file was deleted (free %d)", segs(), freeBytes(t, fs))
		}
		s.kickGC()
		time.Sleep(50 * time.Millisecond)
	}
	if after := freeBytes(t, fs); after < before+16<<20 {
		t.Fatalf("free space %d before the segments went, %d after", before, after)
	}
}
