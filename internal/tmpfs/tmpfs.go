// Package tmpfs gives tests a small file system of their own (a tmpfs mount), for what needs
// a disk that can fill up: ENOSPC through a mount (test/), segment GC on a full disk
// (blockstore/). Tests only; it imports nothing of lmfs.
package tmpfs

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// Mount mounts a tmpfs of size bytes (options: more mount options, "" for none) on a new
// directory under t.TempDir() and returns it; it is unmounted when the test ends (lazily if
// busy). Mounting needs root: elsewhere the test is skipped, and in CI ($CI=true) it fails.
func Mount(t testing.TB, size int64, options string) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "fs")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	opts := fmt.Sprintf("size=%d", size)
	if options != "" {
		opts += "," + options
	}
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", opts, "tmpfs", dir).CombinedOutput(); err != nil {
		msg := fmt.Sprintf("cannot mount a tmpfs: %v: %s", err, strings.TrimSpace(string(out)))
		if os.Getenv("CI") == "true" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	t.Cleanup(func() {
		if err := exec.Command("umount", dir).Run(); err != nil {
			exec.Command("umount", "-l", dir).Run()
		}
	})
	return dir
}
