package test

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
)

// Users the permission tests act as. They need no passwd entries: the tests switch to them
// with setresuid/setresgid in the child process, with no supplementary groups.
const (
	nobodyID = 65534 // named in ACLs
	otherID  = 65533 // allowed by the mode's other bits or a named group entry
	thirdID  = 65532 // named nowhere
)

// sharedDir is a fresh directory that every user can traverse (t.TempDir's parents are 0700),
// removed after the mounts below it are gone.
func sharedDir(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "lmfs-perm-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) }) // registered first: runs after the unmounts
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

// mountShared mounts a new store with allow_other on a mount point other users can reach.
func mountShared(t *testing.T, shared string) *fsMount {
	t.Helper()
	needFUSE(t)
	mnt := filepath.Join(shared, "mnt")
	if err := os.Mkdir(mnt, 0o755); err != nil {
		t.Fatal(err)
	}
	return mountAt(t, newStore(t), mnt, "-o", "allow_other")
}

// remountShared remounts m (fsMount.remount would drop allow_other).
func remountShared(t *testing.T, m *fsMount) {
	t.Helper()
	m.umount()
	mustLmfs(t, "mount", "-o", "allow_other", m.store, m.dir)
	if !isMounted(m.dir) {
		t.Fatalf("remount: %s not mounted", m.dir)
	}
	m.pid = m.stats().PID
}

// asUser runs name with args as uid:gid (no supplementary groups, no capabilities) and
// returns its combined output.
func asUser(uid, gid uint32, name string, args ...string) (string, error) {
	cmd := exec.Command(name, args...)
	cmd.Dir = "/"
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uid, Gid: gid, Groups: []uint32{}}}
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// canRead reports whether uid (with gid uid) can read p, failing the test on anything but
// success or "Permission denied".
func canRead(t *testing.T, uid uint32, p string) bool {
	t.Helper()
	return access(t, uid, "cat", p)
}

// canWrite reports whether uid can append to the file p.
func canWrite(t *testing.T, uid uint32, p string) bool {
	t.Helper()
	return access(t, uid, "sh", "-c", `printf x >> "$1"`, "sh", p)
}

// canList reports whether uid can list the directory p.
func canList(t *testing.T, uid uint32, p string) bool {
	t.Helper()
	return access(t, uid, "ls", p)
}

func access(t *testing.T, uid uint32, name string, args ...string) bool {
	t.Helper()
	out, err := asUser(uid, uid, name, args...)
	if err == nil {
		return true
	}
	if !strings.Contains(out, "Permission denied") {
		t.Fatalf("%s %v as uid %d: %v (want success or Permission denied)\n%s", name, args, uid, err, out)
	}
	return false
}

func permOf(t *testing.T, p string) uint32 {
	t.Helper()
	var st unix.Stat_t
	if err := unix.Lstat(p, &st); err != nil {
		t.Fatal(err)
	}
	return st.Mode & 0o7777
}

// TestModeZero: a file, directory or node created or chmodded to mode 0 shows mode 0 and no
// other user gets in (go-fuse shows permission bits 0 as 0644/0755 unless told not to).
func TestModeZero(t *testing.T) {
	shared := sharedDir(t)
	m := mountShared(t, shared)
	fd, err := unix.Open(m.path("created0"), unix.O_CREAT|unix.O_WRONLY|unix.O_EXCL, 0)
	if err != nil {
		t.Fatal(err)
	}
	unix.Write(fd, []byte("secret\n"))
	unix.Close(fd)
	writeFile(t, m.path("chmod0"), []byte("secret\n"))
	if err := os.Chmod(m.path("chmod0"), 0); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mkdir(m.path("dir0"), 0); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mkfifo(m.path("fifo0"), 0); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(m.path("dirchmod0"), 0o755); err != nil {
		t.Fatal(err)
	}
	writeFile(t, m.path("dirchmod0", "f"), []byte("inside\n"))
	if err := os.Chmod(m.path("dirchmod0"), 0); err != nil {
		t.Fatal(err)
	}
	check := func(when string) {
		t.Helper()
		for _, name := range []string{"created0", "chmod0", "dir0", "fifo0", "dirchmod0"} {
			if got := permOf(t, m.path(name)); got != 0 {
				t.Errorf("%s: %s mode %04o, want 0000", when, name, got)
			}
		}
		for _, name := range []string{"created0", "chmod0"} {
			if canRead(t, nobodyID, m.path(name)) {
				t.Errorf("%s: uid %d read %s (mode 0000)", when, nobodyID, name)
			}
		}
		if canList(t, nobodyID, m.path("dir0")) {
			t.Errorf("%s: uid %d listed dir0 (mode 0000)", when, nobodyID)
		}
		if canRead(t, nobodyID, m.path("dirchmod0", "f")) {
			t.Errorf("%s: uid %d read a file below a directory of mode 0000", when, nobodyID)
		}
	}
	check("mounted")
	remountShared(t, m)
	check("after remount")
}

// permScript runs in a directory on ext4 (the reference) and in one on lmfs; what getfacl and
// the modes show afterwards must be the same. Each step is something users do: setfacl on
// files (named user, named group, removal, an ACL equivalent to a mode), chmod of a file with
// an ACL, default ACLs inherited by files, directories, fifos and symlinks, the umask where
// there is no default ACL, and setfacl by an owner outside the file's group (set-group-ID
// cleared).
const permScript = `set -e
umask 022
echo hello > f; chmod 644 f; setfacl -m u:65534:--- f
echo hello > g; chmod 600 g; setfacl -m u:65534:rw,g:65533:r g
echo hello > h; setfacl -m u:65534:rwx h; chmod 640 h
echo hello > b; setfacl -m u:65534:r b; setfacl -b b
echo hello > e; chmod 600 e; setfacl -m u::rw,g::r,o::r e
mkdir d; setfacl -d -m u:65534:rx,g::rwx,o::- d
(umask 077; echo secret > d/f; mkdir d/sub; mkfifo d/p; ln -s f d/l; echo x > d/sub/f2)
mkdir m; setfacl -d -m u::rwx,g::rx,o::rx m
(umask 077; touch m/f; mkdir m/s)
(umask 027; touch u; mkdir ud; mkfifo up)
touch z; chmod 0 z; mkdir -m 0 zd; mkfifo -m 0 zp
touch k; chown 65534:0 k; chmod 2775 k
setpriv --reuid=65534 --regid=65534 --clear-groups setfacl -m u:65533:r k
`

// aclState is what getfacl and find report for every path below dir.
func aclState(t *testing.T, dir string) string {
	t.Helper()
	cmd := exec.Command("sh", "-c", `find . -printf '%M %u:%g %p\n' | sort
find . ! -type l -print0 | sort -z | xargs -0 getfacl -n -p`)
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("listing %s: %v\n%s", dir, err, out)
	}
	return string(out)
}

// textDiff is diff -u of two texts.
func textDiff(t *testing.T, a, b string) string {
	t.Helper()
	dir := t.TempDir()
	pa, pb := filepath.Join(dir, "reference"), filepath.Join(dir, "lmfs")
	os.WriteFile(pa, []byte(a), 0o644)
	os.WriteFile(pb, []byte(b), 0o644)
	out, _ := exec.Command("diff", "-u", pa, pb).CombinedOutput()
	return string(out)
}

func runIn(t *testing.T, dir, script string) {
	t.Helper()
	cmd := exec.Command("sh", "-c", script)
	cmd.Dir = dir
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("in %s: %v\n%s", dir, err, out)
	}
}

func needACLTools(t *testing.T) {
	t.Helper()
	for _, tool := range []string{"setfacl", "getfacl", "setpriv"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s not installed (scripts/install-deps.sh installs it)", tool)
		}
	}
}

// TestACLs: POSIX ACLs set on lmfs behave as on ext4 (same getfacl output and modes after the
// same commands) and the kernel enforces them for other users, also after a remount.
func TestACLs(t *testing.T) {
	needACLTools(t)
	shared := sharedDir(t)
	ref := filepath.Join(shared, "ref") // on ext4 or tmpfs, whatever /tmp is
	if err := os.Mkdir(ref, 0o755); err != nil {
		t.Fatal(err)
	}
	m := mountShared(t, shared)
	dir := m.path("s")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	runIn(t, ref, permScript)
	runIn(t, dir, permScript)
	want := aclState(t, ref)
	if got := aclState(t, dir); got != want {
		t.Errorf("after the same commands, lmfs (+) differs from the reference (-):\n%s", textDiff(t, want, got))
	}
	p := func(name string) string { return filepath.Join(dir, name) }
	check := func(when string) {
		t.Helper()
		type rule struct {
			uid   uint32
			name  string
			read  bool
			write bool
		}
		for _, r := range []rule{
			{nobodyID, "f", false, false}, // u:nobody:--- on a 0644 file
			{otherID, "f", true, false},   // others may read
			{nobodyID, "g", true, true},   // u:nobody:rw on a 0600 file
			{otherID, "g", true, false},   // g:65533:r
			{thirdID, "g", false, false},
			{nobodyID, "h", true, false},   // rwx, but chmod 640 made the mask r--
			{nobodyID, "d/f", true, false}, // inherited u:nobody:rx, mask rw-: r
			{otherID, "d/f", false, false}, // inherited o::---
			{nobodyID, "d/sub/f2", true, false},
			{otherID, "z", false, false},
			{nobodyID, "u", false, false}, // umask 027
		} {
			if got := canRead(t, r.uid, p(r.name)); got != r.read {
				t.Errorf("%s: uid %d read %s: %v, want %v", when, r.uid, r.name, got, r.read)
			}
			if got := canWrite(t, r.uid, p(r.name)); got != r.write {
				t.Errorf("%s: uid %d write %s: %v, want %v", when, r.uid, r.name, got, r.write)
			}
		}
		if canList(t, otherID, p("d/sub")) {
			t.Errorf("%s: uid %d listed d/sub (inherited o::---)", when, otherID)
		}
	}
	check("mounted")
	remountShared(t, m)
	check("after remount")
	if got := aclState(t, dir); got != want {
		t.Errorf("after remount, lmfs (+) differs from the reference (-):\n%s", textDiff(t, want, got))
	}

	// An ACL equivalent to the mode is no ACL at all (the mode says it all), as on ext4.
	if _, err := unix.Getxattr(p("e"), "system.posix_acl_access", make([]byte, 256)); !errors.Is(err, unix.ENODATA) {
		t.Errorf("getxattr system.posix_acl_access of e: %v, want ENODATA", err)
	}
	// Malformed ACLs are refused and change nothing.
	before := permOf(t, p("f"))
	for _, bad := range [][]byte{
		{2, 0, 0, 0, 1, 0}, // truncated entry
		{2, 0, 0, 0, 1, 0, 6, 0, 0xff, 0xff, 0xff, 0xff},    // no group or other entry
		{2, 0, 0, 0, 0x40, 0, 6, 0, 0xff, 0xff, 0xff, 0xff}, // unknown tag
	} {
		if err := unix.Setxattr(p("f"), "system.posix_acl_access", bad, 0); !errors.Is(err, unix.EINVAL) {
			t.Errorf("setxattr of a malformed ACL %x: %v, want EINVAL", bad, err)
		}
	}
	if got := permOf(t, p("f")); got != before {
		t.Errorf("mode of f changed to %04o by refused ACLs (was %04o)", got, before)
	}
}

// TestCopyKeepsModes: cp -a and mv into lmfs keep modes and ACLs as they are on ext4 (coreutils
// creates files 0600 and then sets the source's ACL, equivalent to its mode or not).
func TestCopyKeepsModes(t *testing.T) {
	needACLTools(t)
	shared := sharedDir(t)
	src := filepath.Join(shared, "src")
	makeTree(t, src)
	runIn(t, src, `set -e
chmod 755 dir0 dir1; chmod 750 dir2; chmod 711 dir3; chmod 700 dir0/sub1
chmod 644 dir0/sub0/file0.txt; chmod 755 dir1/sub1/file1.txt; chmod 640 dir2/sub2/file2.txt
chmod 444 dir3/sub0/file3.txt; chmod 600 empty
setfacl -m u:65534:r dir1/sub2/file5.txt
setfacl -d -m u:65534:rx dir3/sub1`)
	want := snapshotTree(t, src)
	ref := filepath.Join(shared, "ref")
	if err := os.Mkdir(ref, 0o755); err != nil {
		t.Fatal(err)
	}
	m := mountShared(t, shared)
	runIn(t, ref, "cp -a ../src copy")
	runIn(t, m.dir, "cp -a ../src copy")
	compareTrees(t, want, snapshotTree(t, m.path("copy")))
	if got, want := aclState(t, m.path("copy")), aclState(t, filepath.Join(ref, "copy")); got != want {
		t.Errorf("after cp -a, lmfs (+) differs from the reference (-):\n%s", textDiff(t, want, got))
	}

	// mv from another file system copies too: a 0755 directory stays 0755.
	moved := filepath.Join(shared, "tomove")
	if err := os.Mkdir(moved, 0o755); err != nil {
		t.Fatal(err)
	}
	os.Chmod(moved, 0o755)
	writeFile(t, filepath.Join(moved, "x"), []byte("x\n"))
	os.Chmod(filepath.Join(moved, "x"), 0o644)
	if out, err := exec.Command("mv", moved, m.path("moved")).CombinedOutput(); err != nil {
		t.Fatalf("mv: %v\n%s", err, out)
	}
	if got := permOf(t, m.path("moved")); got != 0o755 {
		t.Errorf("mv'd directory has mode %04o, want 0755", got)
	}
	if got := permOf(t, m.path("moved", "x")); got != 0o644 {
		t.Errorf("mv'd file has mode %04o, want 0644", got)
	}
	if !canRead(t, otherID, m.path("moved", "x")) {
		t.Errorf("uid %d cannot read a mv'd 0644 file", otherID)
	}
}
