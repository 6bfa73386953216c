package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// A server that crashed before mounting: the parent names the crash, not just the log file.
func TestServerFailureReason(t *testing.T) {
	earlier := "time=2026-11-30T05:32:41.782Z level=INFO msg=mounted store=/s mountpoint=/m pid=7136\n" +
		"time=2026-11-30T05:32:41.800Z level=ERROR msg=\"an old error\" err=\"from an earlier run\"\n"
	cases := []struct {
		name, out, want string
	}{
		{"panic in a library goroutine", `panic: runtime error: index out of range [3] with length 0 [recovered]
	panic: 
	== Recovering from initIndex crash ==
	File Info: [ID: 1, Size: 3044, Zeros: 3044]
	== Recovered ==


goroutine 33 [running]:
github.com/dgraph-io/badger/v4/table.(*Table).initBiggestAndSmallest.func1.1()
	/root/go/pkg/mod/github.com/dgraph-io/badger/v4@v4.9.6/table/table.go:341 +0x9c
panic({0xc265e0?, 0x2e01df6c41b0?})
	/usr/local/go/src/runtime/panic.go:860 +0x13a
github.com/dgraph-io/badger/v4/table.OpenTable(0x2e01df6aa860, {0x0, 0x1, 0x200000, 0x0, ...})
	/root/go/pkg/mod/github.com/dgraph-io/badger/v4@v4.9.6/table/table.go:297 +0x22c
created by github.com/dgraph-io/badger/v4.newLevelsController in goroutine 1
	/root/go/pkg/mod/github.com/dgraph-io/badger/v4@v4.9.6/levels.go:119 +0x512
`, "panic: runtime error: index out of range [3] with length 0"},
		{"fatal runtime error", "fatal error: concurrent map writes\n\ngoroutine 7 [running]:\nmain.f()\n\t/x.go:1\n", "fatal error: concurrent map writes"},
		{"log.Fatal in a library", "2026/11/30 05:33:01 Assert failed\ngithub.com/dgraph-io/badger/v4/y.AssertTrue\n\t/y/error.go:45\n", "Assert failed"},
		{"logged error", "time=2026-11-30T05:40:00.000Z level=ERROR msg=\"closing the store failed\" err=\"sync: input/output error\"\n", "closing the store failed: sync: input/output error"},
		{"last words", "something went wrong\n", "something went wrong"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p := filepath.Join(t.TempDir(), "lmfs.log")
			if err := os.WriteFile(p, []byte(earlier+c.out), 0o600); err != nil {
				t.Fatal(err)
			}
			err := serverFailure(p, int64(len(earlier)), nil)
			msg := err.Error()
			if !strings.Contains(msg, c.want) || !strings.Contains(msg, p) || strings.Contains(msg, "\n") || strings.Contains(msg, "earlier run") {
				t.Errorf("got %q; want one line with %q and the log's path", msg, c.want)
			}
		})
	}
	// Nothing written: the log's path at least.
	p := filepath.Join(t.TempDir(), "lmfs.log")
	os.WriteFile(p, []byte(earlier), 0o600)
	if msg := serverFailure(p, int64(len(earlier)), nil).Error(); !strings.Contains(msg, p) || strings.Contains(msg, "earlier run") {
		t.Errorf("empty output: %q", msg)
	}
}
