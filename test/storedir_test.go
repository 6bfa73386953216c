package test

import (
	"bufio"
	"bytes"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
)

// The store directory holds every byte of a mount, and the server runs as root: these tests
// plant what another local user could (a directory of theirs, one open to everybody,
// symlinks to a file of root's) and check that lmfs refuses it with one clear line, follows
// no symlink, leaves the planted target alone, and keeps its store private. Also: a store
// whose marker file was lost to a power cut is repaired by fsck, and a mountpoint that
// overlaps its store is refused at once (it would hang the server on itself).

// nobodyUID is the uid of the unprivileged user "nobody" (65534 where there is none).
func nobodyUID() int {
	if u, err := user.Lookup("nobody"); err == nil {
		if n, err := strconv.Atoi(u.Uid); err == nil {
			return n
		}
	}
	return 65534
}

// fuseConn is the device number (minor) of the lmfs mount at dir, from mountinfo (a stat of
// a hung mount would hang); 0 when no lmfs is mounted there.
func fuseConn(dir string) int {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<16), 1<<20)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		_, after, _ := strings.Cut(sc.Text(), " - ")
		if len(fields) > 4 && fields[4] == dir && strings.HasPrefix(after, "fuse.lmfs ") {
			if _, minor, ok := strings.Cut(fields[2], ":"); ok {
				n, _ := strconv.Atoi(minor)
				return n
			}
		}
	}
	return 0
}

// abortMount ends a mount that should not exist, even one whose server hangs on itself:
// the FUSE connection is aborted (every waiting request fails, the server exits), then the
// mount is detached.
func abortMount(t *testing.T, dir string) {
	t.Helper()
	if n := fuseConn(dir); n != 0 {
		os.WriteFile(fmt.Sprintf("/sys/fs/fuse/connections/%d/abort", n), []byte("1"), 0)
		exec.Command("umount", "-l", dir).Run()
	}
}

// refusedMount runs `lmfs mount store mnt` and checks that it failed with one line naming
// every word of want, and mounted nothing.
func refusedMount(t *testing.T, store, mnt string, want ...string) {
	t.Helper()
	real := mnt // mountinfo names the directory a symlink leads to
	if r, err := filepath.EvalSymlinks(mnt); err == nil {
		real = r
	}
	t.Cleanup(func() { abortMount(t, real) }) // also when lmfs times out (a server hung on its own mount)
	r := lmfs(t, "mount", "--no-lm", store, mnt)
	if fuseConn(real) != 0 {
		abortMount(t, real)
		t.Errorf("lmfs mount %s %s mounted (exit %d); want a refusal", store, mnt, r.code)
	}
	oneLineError(t, r, want...)
	t.Logf("lmfs mount %s %s: %s", store, mnt, strings.TrimSpace(r.stderr))
}

// planted is a file of root's that a planted symlink points at; unchanged() checks it was
// never written.
type planted struct {
	path string
	data []byte
}

func plantTarget(t *testing.T) planted {
	t.Helper()
	p := planted{filepath.Join(t.TempDir(), "roots-secret"), []byte("root:$6$not-yours:19000:0:99999:7:::\n")}
	if err := os.WriteFile(p.path, p.data, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// plantSymlink replaces name (if there) by a symlink to target.
func plantSymlink(t *testing.T, target, name string) {
	t.Helper()
	os.Remove(name)
	if err := os.Symlink(target, name); err != nil {
		t.Fatal(err)
	}
}

func (p planted) unchanged(t *testing.T, when string) {
	t.Helper()
	if got, err := os.ReadFile(p.path); err != nil || !bytes.Equal(got, p.data) {
		t.Errorf("%s: the symlink's target was written: %q (%v)", when, got, err)
	}
}

// notPrivate lists what in dir (recursively, dir included) has group or other permission bits.
func notPrivate(t *testing.T, dir string) []string {
	t.Helper()
	var bad []string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		var st syscall.Stat_t
		if err := syscall.Lstat(p, &st); err != nil {
			return nil // removed meanwhile (a value-log file GC dropped)
		}
		if st.Mode&0o077 != 0 {
			bad = append(bad, fmt.Sprintf("%s %04o", strings.TrimPrefix(p, dir), st.Mode&0o7777))
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return bad
}

// TestStoreDirRefusesOthers: a store directory another user owns or can write, below a
// directory another user can write, or holding planted symlinks is refused by mount (and
// fsck, stats) with one line saying what to do; nothing is created or followed.
func TestStoreDirRefusesOthers(t *testing.T) {
	needFUSE(t)
	tmp := t.TempDir()
	mnt := newMountDir(t)
	target := plantTarget(t)

	// A real store to plant symlinks in.
	store := filepath.Join(tmp, "store")
	m := mountAt(t, store, mnt, "--no-lm")
	writeFile(t, m.path("keep"), []byte("precious"))
	m.umount()

	checkRefused := func(t *testing.T, dir string, want ...string) {
		t.Helper()
		before := dirState(t, dir)
		refusedMount(t, dir, mnt, want...)
		for _, cmd := range []string{"fsck", "stats"} {
			oneLineError(t, lmfs(t, cmd, dir), want...)
		}
		compareTrees(t, before, dirState(t, dir)) // nothing created, no mode changed
		target.unchanged(t, "after the refused commands")
	}

	t.Run("OwnedByNobody", func(t *testing.T) {
		dir := filepath.Join(tmp, "theirs")
		os.Mkdir(dir, 0o700)
		if err := os.Chown(dir, nobodyUID(), nobodyUID()); err != nil {
			t.Fatal(err)
		}
		checkRefused(t, dir, "not safe", "belongs to uid", "chown")
		// With their planted log symlink (the attack of issue 14), too.
		plantSymlink(t, target.path, filepath.Join(dir, "lmfs.log"))
		os.Lchown(filepath.Join(dir, "lmfs.log"), nobodyUID(), nobodyUID())
		checkRefused(t, dir, "not safe", "belongs to uid")
		// A copy of the real store, given to nobody.
		theirs := copyStore(t, store)
		if out, err := exec.Command("chown", "-R", strconv.Itoa(nobodyUID()), theirs).CombinedOutput(); err != nil {
			t.Fatalf("chown: %v %s", err, out)
		}
		checkRefused(t, theirs, "not safe", "belongs to uid")
	})
	t.Run("WritableByOthers", func(t *testing.T) {
		for _, mode := range []uint32{0o777, 0o770, 0o1777} {
			dir := copyStore(t, store)
			syscall.Chmod(dir, mode)
			plantSymlink(t, target.path, filepath.Join(dir, "lmfs.log"))
			checkRefused(t, dir, "not safe", "writable by group or others", "chmod go-w")
		}
		empty := filepath.Join(tmp, "open-to-all")
		os.Mkdir(empty, 0o777)
		os.Chmod(empty, 0o777)
		checkRefused(t, empty, "not safe", "chmod go-w")
	})
	t.Run("ParentWritableByOthers", func(t *testing.T) {
		parent := filepath.Join(tmp, "shared")
		os.Mkdir(parent, 0o777)
		syscall.Chmod(parent, 0o777) // no sticky bit: anyone may rename the store away
		newStore := filepath.Join(parent, "store")
		refusedMount(t, newStore, mnt, "not safe", parent, "chmod go-w")
		if _, err := os.Lstat(newStore); err == nil {
			t.Errorf("a refused mount created %s", newStore)
		}
		if err := os.Rename(copyStore(t, store), newStore); err != nil {
			t.Fatal(err)
		}
		checkRefused(t, newStore, "not safe", parent)
		// Sticky (like /tmp): others cannot rename what is not theirs.
		syscall.Chmod(parent, 0o1777)
		m := mountAt(t, newStore, mnt, "--no-lm")
		if got := readFile(t, m.path("keep")); string(got) != "precious" {
			t.Errorf("store below a sticky directory: %q", got)
		}
		m.umount()
	})
	t.Run("PlantedSymlinks", func(t *testing.T) {
		for _, name := range []string{"lmfs.log", "lmfs.closed", "LOCK", "000099.vlog", "LMFS"} {
			dir := copyStore(t, store)
			plantSymlink(t, target.path, filepath.Join(dir, name))
			checkRefused(t, dir, "not safe", name, "symlink", "remove it")
		}
		// In data/ too.
		dir := copyStore(t, store)
		os.MkdirAll(filepath.Join(dir, "data"), 0o700)
		plantSymlink(t, target.path, filepath.Join(dir, "data", "00000099.seg"))
		checkRefused(t, dir, "not safe", "symlink")
	})
	t.Run("HardLink", func(t *testing.T) {
		dir := copyStore(t, store)
		if err := os.Link(target.path, filepath.Join(dir, "lmfs.log")); err != nil {
			t.Skipf("hard link: %v", err)
		}
		checkRefused(t, dir, "not safe", "hard link")
	})

	m = mountAt(t, store, mnt, "--no-lm")
	if got := readFile(t, m.path("keep")); string(got) != "precious" {
		t.Errorf("the store after all that: %q", got)
	}
	m.umount()
	fsckClean(t, store, "the store after the refusals")
}

// TestStoreDirClosedMarkerNotFollowed: lmfs.closed, written when the server closes the store,
// replaced by a symlink to root's file while mounted: unmounting leaves the target alone (it
// was truncated to 0 bytes), the next mount refuses the symlink, and once it is removed the
// store mounts with its data.
func TestStoreDirClosedMarkerNotFollowed(t *testing.T) {
	needFUSE(t)
	store := newStore(t)
	target := plantTarget(t)
	m := mountStore(t, store, "--no-lm")
	data := textData(3, 100000)
	writeSynced(t, m.path("f"), data)
	closed := filepath.Join(store, "lmfs.closed")
	plantSymlink(t, target.path, closed)
	lmfs(t, "umount", m.dir) // the server's close fails (logged); the unmount itself works
	if isMounted(m.dir) {
		t.Fatalf("%s still mounted", m.dir)
	}
	m.pid = 0
	target.unchanged(t, "after umount")
	refusedMount(t, store, m.dir, "lmfs.closed", "symlink")
	os.Remove(closed)
	m = mountAt(t, store, m.dir, "--no-lm")
	if got := readFile(t, m.path("f")); !bytes.Equal(got, data) {
		t.Errorf("after remount: %s", firstDiff(got, data))
	}
	m.umount()
	target.unchanged(t, "at the end")
}

// TestStoreDirPrivate: a store directory made readable to all (0755, Badger files 0644, as
// older lmfs left it) is made private at mount: the directory 0700 and every file in it,
// also those made while mounted (value logs, tables, data segments, log, socket), without
// group or other permissions.
func TestStoreDirPrivate(t *testing.T) {
	needFUSE(t)
	store := newStore(t)
	m := mountStore(t, store, "--no-lm")
	writeSynced(t, m.path("big"), mixedData(1, 24<<20)) // data segments
	m.umount()
	err := filepath.WalkDir(store, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			return os.Chmod(p, 0o755)
		}
		return os.Chmod(p, 0o644)
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(notPrivate(t, store)) == 0 {
		t.Fatal("setup: the store did not become readable to all")
	}
	m = mountAt(t, store, m.dir, "--no-lm")
	for i := range 4 { // new value logs, tables and segments
		writeSynced(t, m.path(fmt.Sprintf("more%d", i)), mixedData(int64(i+2), 12<<20))
	}
	writeSynced(t, m.path("small"), []byte("a small file's content sits in the value log"))
	if bad := notPrivate(t, store); len(bad) > 0 {
		t.Errorf("while mounted, open to group or others: %v", bad)
	}
	if _, err := os.Stat(filepath.Join(store, "data")); err != nil {
		t.Errorf("no data segments were made: %v", err)
	}
	m.umount()
	if bad := notPrivate(t, store); len(bad) > 0 {
		t.Errorf("after umount, open to group or others: %v", bad)
	}
	// A new store is private from the start.
	fresh := newStore(t)
	m2 := mountStore(t, fresh, "--no-lm")
	writeSynced(t, m2.path("x"), mixedData(9, 20<<20))
	if bad := notPrivate(t, fresh); len(bad) > 0 {
		t.Errorf("new store, open to group or others: %v", bad)
	}
	m2.umount()
}

// TestStoreDirSymlinkPath: a store path that is a symlink is resolved once, when mounting;
// the mount serves (and names) the directory it leads to, and the symlink's path reaches
// the same store for stats and fsck.
func TestStoreDirSymlinkPath(t *testing.T) {
	needFUSE(t)
	store := newStore(t)
	link := filepath.Join(t.TempDir(), "link")
	m := mountStore(t, store, "--no-lm")
	writeFile(t, m.path("f"), []byte("via the real path"))
	m.umount()
	if err := os.Symlink(store, link); err != nil {
		t.Fatal(err)
	}
	m = mountAt(t, link, m.dir, "--no-lm")
	if got := readFile(t, m.path("f")); string(got) != "via the real path" {
		t.Errorf("through the symlink: %q", got)
	}
	if st := statsOf(t, link); !st.Mounted || st.Store != store {
		t.Errorf("stats of the symlink: %+v, want the mounted store %s", st, store)
	}
	m.umount()
	fsckClean(t, link, "through the symlink")
}

// TestMarkerRepair: a store whose marker file LMFS was left empty by a power cut (or lost,
// or garbled) is refused by mount with the fix in its one line, reported by fsck, written
// anew by fsck --repair from the store's format record; then it mounts with its data.
func TestMarkerRepair(t *testing.T) {
	needFUSE(t)
	store := newStore(t)
	m := mountStore(t, store, "--no-lm")
	data := textData(5, 300000)
	writeSynced(t, m.path("f"), data)
	m.umount()
	marker := filepath.Join(store, "LMFS")
	good := readFile(t, marker)

	for _, damage := range []string{"empty", "missing", "garbled"} {
		t.Run(damage, func(t *testing.T) {
			switch damage {
			case "empty":
				os.Truncate(marker, 0)
			case "missing":
				os.Remove(marker)
			case "garbled":
				os.WriteFile(marker, []byte("\x00\x00\x00\x00"), 0o600)
			}
			refusedMount(t, store, m.dir, "fsck --repair")
			rep, r := fsckRun(t, store, false)
			if r.code == 0 || rep.Clean || len(rep.find("marker")) != 1 || !strings.Contains(rep.find("marker")[0].Detail, "--repair") {
				t.Errorf("fsck: exit %d, %s; want a marker finding with the repair hint", r.code, rep)
			}
			if _, err := os.Lstat(marker); damage == "missing" && err == nil {
				t.Errorf("a plain fsck wrote the marker")
			}
			rep, r = fsckRun(t, store, true)
			if r.code != 0 || !rep.Clean || len(rep.find("marker")) != 1 || !rep.find("marker")[0].Repaired {
				t.Errorf("fsck --repair: exit %d, %s; want the marker repaired", r.code, rep)
			}
			if got := readFile(t, marker); !bytes.Equal(got, good) {
				t.Errorf("repaired marker %q, want %q", got, good)
			}
			fsckClean(t, store, "after the repair")
			m := mountAt(t, store, m.dir, "--no-lm")
			if got := readFile(t, m.path("f")); !bytes.Equal(got, data) {
				t.Errorf("after the repair: %s", firstDiff(got, data))
			}
			m.umount()
		})
	}
	// A directory of something else with no marker stays "not an lmfs store", untouched.
	foreign := t.TempDir()
	writeFile(t, filepath.Join(foreign, "notes"), []byte("mine"))
	before := dirState(t, foreign)
	oneLineError(t, lmfs(t, "fsck", "--repair", foreign), "not an lmfs store")
	compareTrees(t, before, dirState(t, foreign))
}

// TestMountOverlapsStore: a mountpoint that is the store, lies inside it or contains it
// (also through a symlink, or a store not made yet) is refused at once with one line; the
// server would otherwise reach its own store through its mount and hang.
func TestMountOverlapsStore(t *testing.T) {
	needFUSE(t)
	tmp := t.TempDir()
	store := filepath.Join(tmp, "store")
	m := mountAt(t, store, newMountDir(t), "--no-lm")
	writeFile(t, m.path("keep"), []byte("precious"))
	m.umount()
	inside := filepath.Join(store, "sub")
	if err := os.Mkdir(inside, 0o700); err != nil {
		t.Fatal(err)
	}
	outer := filepath.Join(tmp, "outer")
	os.Mkdir(outer, 0o755)
	alias := filepath.Join(tmp, "alias")
	os.Symlink(store, alias)
	aliasOuter := filepath.Join(tmp, "alias-outer")
	os.Symlink(outer, aliasOuter)
	innerStore := filepath.Join(outer, "store") // not made yet

	cases := []struct {
		name, store, mnt string
		want             []string
	}{
		{"same", store, store, []string{"is the store"}},
		{"inside", store, inside, []string{"inside the store"}},
		{"contains", innerStore, outer, []string{"contains the store"}},
		{"symlink alias of the store", store, alias, []string{"is the store"}},
		{"symlink alias as the store", alias, store, []string{"is the store"}},
		{"contains through a symlink", filepath.Join(aliasOuter, "store"), outer, []string{"contains the store"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			before := dirState(t, store)
			refusedMount(t, c.store, c.mnt, append(c.want, "mountpoint")...)
			if isMounted(c.mnt) || isMounted(store) || isMounted(inside) || isMounted(outer) {
				t.Errorf("a mount was left behind")
			}
			compareTrees(t, before, dirState(t, store))
			if _, err := os.Lstat(innerStore); err == nil {
				t.Errorf("a refused mount created %s", innerStore)
			}
		})
	}
	t.Run("bind mount alias of the store", func(t *testing.T) {
		bind := filepath.Join(t.TempDir(), "bind")
		os.Mkdir(bind, 0o755)
		if out, err := exec.Command("mount", "--bind", outer, bind).CombinedOutput(); err != nil {
			t.Skipf("bind mount: %v %s", err, out)
		}
		defer exec.Command("umount", bind).Run()
		// The store's directory, and a directory inside it, reached through the bind mount.
		sub := filepath.Join(innerStore, "sub")
		os.MkdirAll(sub, 0o700)
		defer os.RemoveAll(innerStore)
		refusedMount(t, innerStore, filepath.Join(bind, "store"), "mountpoint", "is or contains the store")
		refusedMount(t, innerStore, filepath.Join(bind, "store", "sub"), "mountpoint", "inside", "which is the store")
	})
	m = mountAt(t, store, m.dir, "--no-lm")
	if got := readFile(t, m.path("keep")); string(got) != "precious" {
		t.Errorf("the store after the refusals: %q", got)
	}
	m.umount()
}
