package test

import (
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"
)

// diskBytes is the store's size on disk as `lmfs stats --json` reports it.
func diskBytes(t testing.TB, m *fsMount) int64 {
	t.Helper()
	var r struct {
		Disk int64 `json:"disk_bytes"`
	}
	out := mustLmfs(t, "stats", "--json", m.dir)
	if err := json.Unmarshal([]byte(out), &r); err != nil {
		t.Fatalf("lmfs stats --json: %v\n%s", err, out)
	}
	return r.Disk
}

// TestSpaceComesBack writes 64 MiB of incompressible data, deletes it, and expects the store's
// size on disk to give back most of what the write took within a minute, without any command:
// deletions alone trigger the memtable flush and value-log GC (blockstore/gc.go).
func TestSpaceComesBack(t *testing.T) {
	m := mountNoLM(t, newStore(t))
	before := diskBytes(t, m)
	const files, size = 8, 8 << 20
	for i := 0; i < files; i++ {
		b := make([]byte, size)
		fillRandom(newRand(int64(i)), b)
		writeFile(t, m.path(fmt.Sprintf("f%d", i)), b)
	}
	full := diskBytes(t, m)
	// The empty store already holds the space of its current value-log file (allocated when
	// Badger creates it, 17 MiB): the write may fill that first.
	const prealloc = 17 << 20
	if full-before < files*size*9/10-prealloc {
		t.Fatalf("writing %d MiB grew the store by only %d bytes", files*size>>20, full-before)
	}
	for i := 0; i < files; i++ {
		if err := os.Remove(m.path(fmt.Sprintf("f%d", i))); err != nil {
			t.Fatal(err)
		}
	}
	start := time.Now()
	var now int64
	for {
		now = diskBytes(t, m)
		// "Most of it": at most a quarter of what the write added may stay (the value-log
		// file being written and the memtable WAL are never given back at once).
		if now-before <= (full-before)/4 || time.Since(start) > time.Minute {
			break
		}
		time.Sleep(time.Second)
	}
	t.Logf("on disk: %d MiB empty, %d MiB after writing %d MiB, %d MiB %s after deleting it",
		before>>20, full>>20, files*size>>20, now>>20, time.Since(start).Round(100*time.Millisecond))
	if now-before > (full-before)/4 {
		t.Fatalf("a minute after deleting %d MiB the store still takes %d MiB more than empty (%d MiB after the write)",
			files*size>>20, (now-before)>>20, (full-before)>>20)
	}
	// The store is still sound, and new data goes in.
	writeFile(t, m.path("again"), textData(1, 1<<20))
	m.umount()
	if out := mustLmfs(t, "fsck", "--quiet", m.store); !strings.Contains(out, "clean") {
		t.Fatalf("fsck: %s", out)
	}
}

// mountNoLM mounts store with --no-lm (the compactor codes with the classical codecs only:
// the model's CPU time is not what these tests measure).
func mountNoLM(t testing.TB, store string) *fsMount {
	t.Helper()
	return mountStore(t, store, "--no-lm")
}
