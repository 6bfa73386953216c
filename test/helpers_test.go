// Package test holds integration tests that mount the real lmfs binary (built once in
// TestMain) on real Badger stores in temporary directories and check what users rely on.
//
// Every mount runs in a child process (in-process mounts deadlock on fork/mmap) and is
// unmounted in t.Cleanup, with `umount -l` and a kill of the server as the last resort, so a
// failing test never leaves a stale mount behind.
//
// The tests need root and /dev/fuse. Without them they are skipped, unless CI=true, where
// that is a failure.
package test

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// lmfsBin is the binary built by TestMain.
var lmfsBin string

// skipReason is set when the environment cannot run FUSE tests.
var skipReason string

func TestMain(m *testing.M) {
	switch {
	case os.Geteuid() != 0:
		skipReason = "integration tests need root (they mount FUSE file systems with mount(2))"
	default:
		if _, err := os.Stat("/dev/fuse"); err != nil {
			skipReason = "integration tests need /dev/fuse: " + err.Error()
		}
	}
	if skipReason != "" {
		if os.Getenv("CI") == "true" {
			fmt.Fprintln(os.Stderr, "FAIL: CI=true but", skipReason)
			os.Exit(1)
		}
		os.Exit(m.Run()) // every test skips with skipReason
	}
	if bin := os.Getenv("LMFS_BIN"); bin != "" {
		// A prebuilt binary (e.g. built from a clean checkout while the tree is mid-edit).
		lmfsBin = bin
		os.Exit(m.Run())
	}
	dir, err := os.MkdirTemp("", "lmfs-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	lmfsBin = filepath.Join(dir, "lmfs")
	args := []string{"build", "-o", lmfsBin}
	if os.Getenv("LMFS_TEST_RACE_BINARY") != "" {
		args = append(args, "-race") // the server itself under the race detector (slow)
	}
	build := exec.Command("go", append(args, "../cmd/lmfs")...)
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "building lmfs:", err)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// needFUSE skips (or, with CI=true, already failed in TestMain) when FUSE tests cannot run.
func needFUSE(t testing.TB) {
	t.Helper()
	if skipReason != "" {
		t.Skip(skipReason)
	}
}

// result is what one lmfs command did.
type result struct {
	stdout, stderr string
	code           int
}

// lmfs runs the binary with args and a timeout.
func lmfs(t testing.TB, args ...string) result {
	t.Helper()
	cmd := exec.Command(lmfsBin, args...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Start(); err != nil {
		t.Fatalf("lmfs %v: %v", args, err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	var err error
	select {
	case err = <-done:
	case <-time.After(3 * time.Minute):
		cmd.Process.Kill()
		<-done
		t.Fatalf("lmfs %v: timed out; stderr: %s", args, errb.String())
	}
	code := 0
	if err != nil {
		ee, ok := err.(*exec.ExitError)
		if !ok {
			t.Fatalf("lmfs %v: %v", args, err)
		}
		code = ee.ExitCode()
	}
	return result{out.String(), errb.String(), code}
}

// mustLmfs runs lmfs and fails the test unless it exits 0.
func mustLmfs(t testing.TB, args ...string) string {
	t.Helper()
	r := lmfs(t, args...)
	if r.code != 0 {
		t.Fatalf("lmfs %s: exit %d\nstdout: %s\nstderr: %s", strings.Join(args, " "), r.code, r.stdout, r.stderr)
	}
	return r.stdout
}

// isMounted reports whether path is a mount point (per /proc/self/mountinfo).
func isMounted(path string) bool {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return false
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<16), 1<<20)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) > 4 && strings.ReplaceAll(fields[4], `\040`, " ") == path {
			return true
		}
	}
	return false
}

// fsMount is one lmfs mount served by a child process.
type fsMount struct {
	t     testing.TB
	store string
	dir   string
	pid   int       // server process
	cmd   *exec.Cmd // set for foreground mounts started by the test
	done  chan error
}

// newStore returns a path for a new store (not yet created) in a fresh temp dir.
func newStore(t testing.TB) string {
	return filepath.Join(t.TempDir(), "store")
}

// mountStore mounts store (created if missing) on a fresh directory with `lmfs mount`.
func mountStore(t testing.TB, store string, flags ...string) *fsMount {
	t.Helper()
	needFUSE(t)
	return mountAt(t, store, newMountDir(t), flags...)
}

// sharedBin makes a directory other users can reach (sharedDir) holding a copy of the lmfs
// binary, for tests that run lmfs as another user; it returns the directory and the copy.
func sharedBin(t *testing.T) (dir, bin string) {
	t.Helper()
	dir = sharedDir(t)
	bin = filepath.Join(dir, "lmfs")
	if err := os.WriteFile(bin, readFile(t, lmfsBin), 0o755); err != nil {
		t.Fatal(err)
	}
	return dir, bin
}

// newMountDir makes an empty mount point.
func newMountDir(t testing.TB) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "mnt")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

// mountAt mounts store on dir (background server, extra mount flags) and registers the cleanup.
func mountAt(t testing.TB, store, dir string, flags ...string) *fsMount {
	t.Helper()
	m := &fsMount{t: t, store: store, dir: dir}
	t.Cleanup(m.cleanup)
	mustLmfs(t, append(append([]string{"mount"}, flags...), store, dir)...)
	if !isMounted(dir) {
		t.Fatalf("lmfs mount returned but %s is not mounted", dir)
	}
	m.pid = m.stats().PID
	return m
}

// mountForeground starts `lmfs mount -f` as a child of the test (so it knows the PID) and
// waits until the mount is ready.
func mountForeground(t testing.TB, store string, flags ...string) *fsMount {
	t.Helper()
	needFUSE(t)
	dir := filepath.Join(t.TempDir(), "mnt")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	m := &fsMount{t: t, store: store, dir: dir}
	t.Cleanup(m.cleanup)
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	logf, err := os.Create(filepath.Join(t.TempDir(), "server.log"))
	if err != nil {
		t.Fatal(err)
	}
	defer logf.Close()
	args := append(append([]string{"mount", "-f", "--ready-fd=3"}, flags...), store, dir)
	cmd := exec.Command(lmfsBin, args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.ExtraFiles = []*os.File{w}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	w.Close()
	m.cmd, m.pid = cmd, cmd.Process.Pid
	m.done = make(chan error, 1)
	go func() { m.done <- cmd.Wait() }()
	line, _ := bufio.NewReader(r).ReadString('\n')
	r.Close()
	if strings.TrimSpace(line) != "ok" {
		b, _ := os.ReadFile(logf.Name())
		t.Fatalf("foreground mount did not get ready: %q\nlog:\n%s", line, b)
	}
	return m
}

// path joins names below the mount point.
func (m *fsMount) path(names ...string) string {
	return filepath.Join(append([]string{m.dir}, names...)...)
}

// umount unmounts with `lmfs umount` (which waits for the server to close the store) and
// fails the test if that does not work.
func (m *fsMount) umount() {
	m.t.Helper()
	mustLmfs(m.t, "umount", m.dir)
	if isMounted(m.dir) {
		m.t.Fatalf("%s still mounted after lmfs umount", m.dir)
	}
	if m.done != nil {
		select {
		case <-m.done:
		case <-time.After(time.Minute):
			m.t.Fatalf("foreground server did not exit after umount")
		}
		m.done = nil
	}
	m.pid = 0
}

// remount unmounts and mounts the same store on the same directory again.
func (m *fsMount) remount() {
	m.t.Helper()
	m.umount()
	mustLmfs(m.t, "mount", m.store, m.dir)
	if !isMounted(m.dir) {
		m.t.Fatalf("remount: %s not mounted", m.dir)
	}
	m.pid = m.stats().PID
}

// kill9 kills the server with SIGKILL (crash simulation) and waits for it to die.
func (m *fsMount) kill9() {
	m.t.Helper()
	if m.pid == 0 {
		m.t.Fatal("no server pid")
	}
	syscall.Kill(m.pid, syscall.SIGKILL)
	if m.done != nil {
		<-m.done
		m.done = nil
	} else {
		for i := 0; i < 500 && syscall.Kill(m.pid, 0) == nil; i++ {
			time.Sleep(10 * time.Millisecond)
		}
	}
	m.pid = 0
}

// cleanup unmounts whatever is still mounted: lmfs umount, then umount -l and a kill of the
// server as the last resort.
func (m *fsMount) cleanup() {
	if isMounted(m.dir) {
		if r := lmfsQuiet("umount", m.dir); r != nil || isMounted(m.dir) {
			m.t.Logf("cleanup: lmfs umount %s failed (%v); using umount -l", m.dir, r)
			exec.Command("umount", "-l", m.dir).Run()
		}
	}
	if m.pid != 0 {
		for i := 0; i < 200 && syscall.Kill(m.pid, 0) == nil && !zombie(m.pid); i++ {
			time.Sleep(25 * time.Millisecond)
		}
		if syscall.Kill(m.pid, 0) == nil && !zombie(m.pid) {
			m.t.Logf("cleanup: server %d still running; killing it", m.pid)
			syscall.Kill(m.pid, syscall.SIGKILL)
		}
	}
	if m.done != nil {
		select {
		case <-m.done:
		case <-time.After(10 * time.Second):
		}
	}
}

func zombie(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return true
	}
	s := string(b)
	i := strings.LastIndex(s, ")")
	return i >= 0 && i+2 < len(s) && s[i+2] == 'Z'
}

// lmfsQuiet runs lmfs for cleanups (no testing.T failures).
func lmfsQuiet(args ...string) error {
	cmd := exec.Command(lmfsBin, args...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("%v: %s", err, bytes.TrimSpace(out))
	}
	return nil
}

// statsReport is the part of `lmfs stats --json` the tests use.
type statsReport struct {
	Store   string `json:"store"`
	Mounted bool   `json:"mounted"`
	PID     int    `json:"pid"`
	Files   int64  `json:"files"`
	Dirs    int64  `json:"dirs"`
	Symlink int64  `json:"symlinks"`
	Logical int64  `json:"logical_bytes"`
	Stored  int64  `json:"stored_bytes"`
	Blocks  int64  `json:"blocks"`
	Pending int64  `json:"pending_blocks"`
}

// statsOf runs `lmfs stats --json arg` (a store or a mount point).
func statsOf(t testing.TB, arg string) statsReport {
	t.Helper()
	out := mustLmfs(t, "stats", "--json", arg)
	var r statsReport
	if err := json.Unmarshal([]byte(out), &r); err != nil {
		t.Fatalf("lmfs stats --json: %v\n%s", err, out)
	}
	return r
}

func (m *fsMount) stats() statsReport {
	m.t.Helper()
	return statsOf(m.t, m.dir)
}

// writeFile writes data to a new file and fails the test on error.
func writeFile(t testing.TB, path string, data []byte) {
	t.Helper()
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
}

// writeSynced writes data to a new file and fsyncs it, failing the test on error.
func writeSynced(t testing.TB, path string, data []byte) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.Write(data); err != nil {
		t.Fatal(err)
	}
	if err := f.Sync(); err != nil {
		t.Fatal(err)
	}
}

// readFile reads a whole file and fails the test on error.
func readFile(t testing.TB, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// firstDiff describes where a and b differ (for failure messages of large contents).
func firstDiff(a, b []byte) string {
	n := min(len(a), len(b))
	for i := 0; i < n; i++ {
		if a[i] != b[i] {
			lo, hi := max(0, i-8), min(n, i+8)
			return fmt.Sprintf("first difference at byte %d (block %d, offset %d in block): got % x, want % x (lengths %d, %d)",
				i, i/2048, i%2048, a[lo:hi], b[lo:hi], len(a), len(b))
		}
	}
	if len(a) != len(b) {
		return fmt.Sprintf("lengths differ: %d vs %d (common prefix equal)", len(a), len(b))
	}
	return "equal"
}

// mixedData returns n bytes that are partly text, partly random, partly zeros, determined by
// seed.
func mixedData(seed int64, n int) []byte {
	r := newRand(seed)
	b := make([]byte, n)
	for i := 0; i < n; {
		k := min(n-i, 1+r.IntN(5000))
		switch r.IntN(3) {
		case 0:
			fillText(r, b[i:i+k])
		case 1:
			fillRandom(r, b[i:i+k])
		}
		i += k
	}
	return b
}

func newRand(seed int64) *rand.Rand { return rand.New(rand.NewPCG(uint64(seed), 0x6c6d6673)) }

var words = strings.Fields(`the of and to in a is that for it as was with be by on not he this are
or his from at which but have an they you were her she there one all we their file block store
compressed language model data system read write bytes kernel fuse badger lmfs mount`)

// fillText fills b with compressible text.
func fillText(r *rand.Rand, b []byte) {
	i := 0
	for i < len(b) {
		w := words[r.IntN(len(words))]
		i += copy(b[i:], w)
		if i < len(b) {
			if r.IntN(12) == 0 {
				b[i] = '\n'
			} else {
				b[i] = ' '
			}
			i++
		}
	}
}

// fillRandom fills b with incompressible bytes.
func fillRandom(r *rand.Rand, b []byte) {
	for i := range b {
		b[i] = byte(r.Uint32())
	}
}

// textData returns n bytes of compressible text (no zero blocks).
func textData(seed int64, n int) []byte {
	b := make([]byte, n)
	fillText(newRand(seed), b)
	return b
}
