package test

import (
	"sort"
	"testing"

	"github.com/hanwen/go-fuse/v2/posixtest"
)

// posixSkips are posixtest cases whose expectation is not what POSIX (or a local file
// system) does, with the reason.
var posixSkips = map[string]string{
	// It takes an F_SETLK write lock on one fd and expects an F_SETLK read lock on a second
	// fd of the same process to fail with EAGAIN. POSIX record locks belong to the process,
	// so a process never conflicts with itself: tmpfs and ext4 grant the second lock too
	// (checked on this machine), and so does lmfs, whose locks the kernel keeps. Cross-process
	// locking is checked in TestLocksAcrossProcesses.
	"FcntlFlockLocksFile": "expects open-file-description lock semantics from F_SETLK (tmpfs and ext4 fail it too)",
}

// TestPosix runs go-fuse's POSIX conformance suite, each case on a fresh lmfs mount.
func TestPosix(t *testing.T) {
	needFUSE(t)
	names := make([]string, 0, len(posixtest.All))
	for name := range posixtest.All {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		fn := posixtest.All[name]
		t.Run(name, func(t *testing.T) {
			if reason, ok := posixSkips[name]; ok {
				t.Skip(reason)
			}
			m := mountStore(t, newStore(t))
			fn(t, m.dir)
		})
	}
}
