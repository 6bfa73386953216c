package test

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"lmfs/internal/tmpfs"
)

// TestENOSPC fills the file system under a store (a 256 MiB tmpfs) through an lmfs mount.
// Writers must get ENOSPC (not EIO), the server must survive (Badger writes through mmaps: a
// full disk would kill it with SIGBUS if the store let it get that far), what was written
// before must read back intact, a write right after deleting files must get their space,
// and the store must pass fsck and remount with the surviving files intact.
func TestENOSPC(t *testing.T) {
	needFUSE(t)
	// Its unmount is registered first, so it runs after the lmfs mount's cleanup.
	fsDir := tmpfs.Mount(t, 256<<20, "")
	base := t.TempDir()
	store := filepath.Join(fsDir, "store")
	mnt := filepath.Join(base, "mnt")
	if err := os.Mkdir(mnt, 0o755); err != nil {
		t.Fatal(err)
	}
	m := &fsMount{t: t, store: store, dir: mnt}
	t.Cleanup(m.cleanup)
	mountNoLM := func() {
		mustLmfs(t, "mount", "--no-lm", store, mnt)
		if !isMounted(mnt) {
			t.Fatalf("%s not mounted", mnt)
		}
		m.pid = m.stats().PID
	}
	mountNoLM()

	// Fill: 8 MiB files of incompressible data, 1 MiB per write, until a write fails.
	const fileSize, chunk = 8 << 20, 1 << 20
	data := func(i int) []byte { b := make([]byte, fileSize); fillRandom(newRand(int64(i)), b); return b }
	var full []int // files written completely
	var failErr error
	var written int64
fill:
	for i := 0; i < 64; i++ { // 512 MiB: far more than the tmpfs holds
		name := m.path(fmt.Sprintf("f%03d", i))
		f, err := os.OpenFile(name, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o644)
		if err != nil {
			failErr = err
			break
		}
		b := data(i)
		for off := 0; off < fileSize; off += chunk {
			if _, err := f.Write(b[off : off+chunk]); err != nil {
				failErr = err
				f.Close()
				os.Remove(name) // a partial file is not part of the model
				break fill
			}
			written += chunk
		}
		if err := f.Close(); err != nil {
			failErr = err
			os.Remove(name)
			break
		}
		full = append(full, i)
	}
	t.Logf("wrote %d MiB in %d complete files before: %v", written>>20, len(full), failErr)
	if failErr == nil {
		t.Fatal("512 MiB fit on a 256 MiB tmpfs: no ENOSPC")
	}
	if !errors.Is(failErr, syscall.ENOSPC) {
		t.Fatalf("writing to a full store failed with %v, want ENOSPC", failErr)
	}
	if len(full) < 4 {
		t.Fatalf("only %d files fit before ENOSPC (reserve too large for a 256 MiB file system?)", len(full))
	}
	if syscall.Kill(m.pid, 0) != nil || !isMounted(mnt) {
		t.Fatalf("the server died on a full disk; log:\n%s", enospcLogTail(filepath.Join(store, "lmfs.log")))
	}
	// Creating more also fails cleanly (or fits in what is left), never with EIO.
	if err := os.Mkdir(m.path("d"), 0o755); err != nil && !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("mkdir on a full store: %v, want success or ENOSPC", err)
	}
	// A new file gets ENOSPC, or fits when GC has given back space meanwhile (the refused
	// write kicks it, and garbage the compactor left may be collected): then it is intact.
	switch err := os.WriteFile(m.path("more"), data(1000)[:chunk], 0o644); {
	case err == nil:
		if got := readFile(t, m.path("more")); string(got) != string(data(1000)[:chunk]) {
			t.Fatal("a new 1 MiB file written on a nearly full store reads back different")
		}
	case !errors.Is(err, syscall.ENOSPC):
		t.Fatalf("a new 1 MiB file on a full store: %v, want ENOSPC or success", err)
	}
	os.Remove(m.path("more"))
	check := func(files []int) {
		t.Helper()
		for _, i := range files {
			got := readFile(t, m.path(fmt.Sprintf("f%03d", i)))
			if want := data(i); string(got) != string(want) {
				t.Fatalf("f%03d: %s", i, firstDiff(got, want))
			}
		}
	}
	check(full)

	// Deleting half of the files makes room again, at once: their space is in data segments
	// that are half garbage now, and only segment GC gives it back (gc.go, segment_gc.go). A
	// write refused for space waits while GC reclaims (space.go), as a file system commits to
	// free space before it reports ENOSPC: the first write after the deletions must fit. (It
	// used to get ENOSPC, and under GOMAXPROCS=1 a pass that ran during the deletions left the
	// rest of their garbage for a minute.)
	var kept []int
	for k, i := range full {
		if k%2 == 0 {
			if err := os.Remove(m.path(fmt.Sprintf("f%03d", i))); err != nil {
				t.Fatalf("delete on a full store: %v", err)
			}
		} else {
			kept = append(kept, i)
		}
	}
	deleted := (len(full) - len(kept)) * 8
	start := time.Now()
	if err := os.WriteFile(m.path("after"), data(2000), 0o644); err != nil {
		var st syscall.Statfs_t
		syscall.Statfs(fsDir, &st)
		t.Fatalf("writing 8 MiB right after deleting %d MiB: %v (after %s; %d MiB free on the store's file system); log:\n%s",
			deleted, err, time.Since(start).Round(time.Millisecond), int64(st.Bavail)*st.Bsize>>20, enospcLogTail(filepath.Join(store, "lmfs.log")))
	}
	t.Logf("an 8 MiB write right after deleting %d MiB took %s", deleted, time.Since(start).Round(time.Millisecond))

	// Consistent on disk, and everything that should survive does.
	m.umount()
	if out := mustLmfs(t, "fsck", "--quiet", store); !strings.Contains(out, "clean") {
		t.Fatalf("fsck after the disk-full run:\n%s", out)
	}
	mountNoLM()
	check(kept)
	if got := readFile(t, m.path("after")); string(got) != string(data(2000)) {
		t.Fatalf("after: %s", firstDiff(got, data(2000)))
	}
	for _, i := range full {
		if !enospcContains(kept, i) {
			if _, err := os.Stat(m.path(fmt.Sprintf("f%03d", i))); !errors.Is(err, os.ErrNotExist) {
				t.Fatalf("deleted f%03d: stat %v", i, err)
			}
		}
	}
}

func enospcContains(list []int, x int) bool {
	for _, v := range list {
		if v == x {
			return true
		}
	}
	return false
}

// enospcLogTail returns the end of a log file for failure messages.
func enospcLogTail(path string) string {
	b, _ := os.ReadFile(path)
	if len(b) > 4000 {
		b = b[len(b)-4000:]
	}
	return string(b)
}
