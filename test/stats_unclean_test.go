package test

import (
	"strings"
	"testing"
)

// TestCLIStatsUncleanStore: lmfs stats of a store whose server was killed cannot replay the
// log it left (stats opens read-only): it says so in one line with what to do, exits
// non-zero, and changes nothing; a mount then recovers the store and stats works again.
func TestCLIStatsUncleanStore(t *testing.T) {
	store := newStore(t)
	m := mountForeground(t, store, "--no-lm", "--no-compact")
	writeSynced(t, m.path("f"), textData(1, 100000))
	m.kill9()
	r := lmfs(t, "stats", store)
	if r.code == 0 || !strings.Contains(r.stderr, "was not closed cleanly") || !strings.Contains(r.stderr, "lmfs fsck "+store) {
		t.Fatalf("stats of a killed store: exit %d\nstdout: %s\nstderr: %s", r.code, r.stdout, r.stderr)
	}
	if n := strings.Count(strings.TrimSpace(r.stderr), "\n"); n != 0 {
		t.Fatalf("stats of a killed store: %d lines on stderr, want one:\n%s", n+1, r.stderr)
	}
	m.cleanup()
	m2 := mountStore(t, store, "--no-lm", "--no-compact")
	if got := readFile(t, m2.path("f")); string(got) != string(textData(1, 100000)) {
		t.Fatal("f changed across the kill")
	}
	m2.umount()
	if s := statsOf(t, store); s.Files != 1 {
		t.Fatalf("stats after recovery: %d files, want 1", s.Files)
	}
}
