package test

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"lmfs/blockstore"
)

// oneLineError checks a failed command: non-zero exit, exactly one non-empty line on stderr
// that contains every word of want.
func oneLineError(t *testing.T, r result, want ...string) {
	t.Helper()
	if r.code == 0 {
		t.Errorf("exit 0, want an error (stdout %q, stderr %q)", r.stdout, r.stderr)
		return
	}
	msg := strings.TrimRight(r.stderr, "\n")
	if msg == "" || strings.Contains(msg, "\n") {
		t.Errorf("stderr is not one line:\n%s", r.stderr)
	}
	for _, w := range want {
		if !strings.Contains(strings.ToLower(msg), strings.ToLower(w)) {
			t.Errorf("stderr %q does not mention %q", msg, w)
		}
	}
}

// dirState records a directory tree (names, modes, contents) to check it is left untouched;
// skip names files to leave out (the mount log).
func dirState(t *testing.T, dir string, skip ...string) map[string]treeEntry {
	t.Helper()
	s := snapshotTree(t, dir)
	for _, k := range skip {
		delete(s, k)
	}
	return s
}

func TestCLIErrors(t *testing.T) {
	needFUSE(t)
	tmp := t.TempDir()

	// A real store with a file, unmounted.
	store := filepath.Join(tmp, "store")
	m := mountStore(t, store)
	writeFile(t, m.path("keep"), []byte("precious"))
	m.umount()
	storeBefore := dirState(t, store, "lmfs.log")
	checkStore := func(t *testing.T) {
		t.Helper()
		compareTrees(t, storeBefore, dirState(t, store, "lmfs.log"))
	}
	mnt := filepath.Join(tmp, "mnt")
	os.Mkdir(mnt, 0o755)

	t.Run("MissingMountpoint", func(t *testing.T) {
		newst := filepath.Join(tmp, "never-created")
		oneLineError(t, lmfs(t, "mount", newst, filepath.Join(tmp, "nonexistent")), "mountpoint", "no such file")
		oneLineError(t, lmfs(t, "mount", store, filepath.Join(tmp, "nonexistent")), "mountpoint")
		if _, err := os.Stat(newst); err == nil {
			t.Errorf("a failed mount created the store directory")
		}
		checkStore(t)
	})
	t.Run("MountpointNotDir", func(t *testing.T) {
		f := filepath.Join(tmp, "afile")
		writeFile(t, f, []byte("x"))
		oneLineError(t, lmfs(t, "mount", store, f), "not a directory")
		checkStore(t)
	})
	t.Run("MissingArgs", func(t *testing.T) {
		r := lmfs(t, "mount", store)
		if r.code == 0 || !strings.Contains(r.stderr, "Usage") {
			t.Errorf("mount with one argument: exit %d, stderr %q", r.code, r.stderr)
		}
		if r := lmfs(t, "nosuchcommand"); r.code == 0 {
			t.Errorf("unknown command exited 0")
		}
	})
	t.Run("MountpointAlreadyMounted", func(t *testing.T) {
		other := filepath.Join(tmp, "other-store")
		m1 := mountAt(t, store, mnt)
		oneLineError(t, lmfs(t, "mount", other, mnt), "already")
		if _, err := os.Stat(other); err == nil {
			t.Errorf("a failed mount created the store directory")
		}
		if got := readFile(t, m1.path("keep")); string(got) != "precious" {
			t.Errorf("first mount disturbed: %q", got)
		}
		m1.umount()
	})
	t.Run("StoreAlreadyMounted", func(t *testing.T) {
		m1 := mountAt(t, store, mnt)
		mnt2 := filepath.Join(tmp, "mnt2")
		os.Mkdir(mnt2, 0o755)
		r := lmfs(t, "mount", store, mnt2)
		if isMounted(mnt2) {
			lmfsQuiet("umount", mnt2)
			t.Fatalf("a store was mounted twice")
		}
		oneLineError(t, r, "in use")
		if got := readFile(t, m1.path("keep")); string(got) != "precious" {
			t.Errorf("first mount disturbed: %q", got)
		}
		writeFile(t, m1.path("more"), []byte("still writable"))
		m1.umount()
		os.Remove(filepath.Join(store, "lmfs.log"))
		m2 := mountAt(t, store, mnt)
		if got := readFile(t, m2.path("more")); string(got) != "still writable" {
			t.Errorf("after remount: %q", got)
		}
		os.Remove(m2.path("more"))
		m2.umount()
	})
	t.Run("ForeignDirectory", func(t *testing.T) {
		foreign := filepath.Join(tmp, "foreign")
		os.MkdirAll(filepath.Join(foreign, "sub"), 0o755)
		writeFile(t, filepath.Join(foreign, "notes.txt"), []byte("my notes"))
		writeFile(t, filepath.Join(foreign, "sub", "data.bin"), mixedData(7, 5000))
		before := dirState(t, foreign)
		oneLineError(t, lmfs(t, "mount", foreign, mnt), "not an lmfs store")
		if isMounted(mnt) {
			lmfsQuiet("umount", mnt)
			t.Fatalf("a foreign directory was mounted")
		}
		oneLineError(t, lmfs(t, "stats", foreign), "not an lmfs store")
		compareTrees(t, before, dirState(t, foreign)) // byte-identical: no log, no marker
	})
	t.Run("StoreIsFile", func(t *testing.T) {
		f := filepath.Join(tmp, "store-file")
		writeFile(t, f, []byte("not a store"))
		oneLineError(t, lmfs(t, "mount", f, mnt), "store")
		if isMounted(mnt) {
			lmfsQuiet("umount", mnt)
			t.Fatalf("mounted a file as store")
		}
		if got := readFile(t, f); string(got) != "not a store" {
			t.Errorf("file changed: %q", got)
		}
	})
	t.Run("NewerFormat", func(t *testing.T) {
		marker := filepath.Join(store, "LMFS")
		orig := readFile(t, marker)
		current := fmt.Sprintf("lmfs store format %d\n", blockstore.FormatVersion)
		if !strings.HasPrefix(string(orig), current) {
			t.Fatalf("unexpected marker %q", orig)
		}
		newer := strings.Replace(string(orig), current, "lmfs store format 999\n", 1)
		writeFile(t, marker, []byte(newer))
		defer writeFile(t, marker, orig)
		before := dirState(t, store, "lmfs.log")
		oneLineError(t, lmfs(t, "mount", store, mnt), "newer", "999")
		if isMounted(mnt) {
			lmfsQuiet("umount", mnt)
			t.Fatalf("mounted a store of format 999")
		}
		oneLineError(t, lmfs(t, "stats", store), "newer")
		compareTrees(t, before, dirState(t, store, "lmfs.log"))
	})
	t.Run("UmountNotMounted", func(t *testing.T) {
		oneLineError(t, lmfs(t, "umount", mnt), "not mounted")
		oneLineError(t, lmfs(t, "umount", filepath.Join(tmp, "nonexistent")), "not mounted")
	})
	t.Run("StatsMountedAndUnmountedAgree", func(t *testing.T) {
		m1 := mountAt(t, store, mnt)
		writeFile(t, m1.path("text"), textData(9, 100000))
		os.Mkdir(m1.path("d"), 0o755)
		os.Symlink("text", m1.path("l"))
		a := m1.stats()
		b := statsOf(t, store) // the store path of a mounted store asks the mount too
		m1.umount()
		c := statsOf(t, store)
		if !a.Mounted || c.Mounted {
			t.Errorf("mounted flags: %v, %v", a.Mounted, c.Mounted)
		}
		for _, s := range []statsReport{b, c} {
			if s.Files != a.Files || s.Dirs != a.Dirs || s.Symlink != a.Symlink || s.Logical != a.Logical || s.Blocks != a.Blocks ||
				s.Stored > a.Stored { // the compactor may have recoded blocks in between
				t.Errorf("stats differ:\nmounted   %+v\nother     %+v", a, s)
			}
		}
		if c.Files != 2 || c.Dirs != 2 || c.Symlink != 1 || c.Logical != 100000+8 {
			t.Errorf("unmounted stats: %+v", c)
		}
		text := mustLmfs(t, "stats", store)
		if !strings.Contains(text, "not mounted") {
			t.Errorf("stats text output:\n%s", text)
		}
	})
	t.Run("HelpAndVersion", func(t *testing.T) {
		for _, args := range [][]string{{"--help"}, {"mount", "--help"}, {"umount", "--help"}, {"stats", "--help"}, {"version"}} {
			r := lmfs(t, args...)
			if r.code != 0 {
				t.Errorf("lmfs %v: exit %d, stderr %s", args, r.code, r.stderr)
			}
			if r.stdout+r.stderr == "" {
				t.Errorf("lmfs %v printed nothing", args)
			}
		}
		if v := mustLmfs(t, "version"); !strings.Contains(v, fmt.Sprintf("format %d", blockstore.FormatVersion)) {
			t.Errorf("version: %q", v)
		}
	})
}
