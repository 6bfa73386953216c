package test

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// What a user sees at the command line: bad flags fail before anything is made, a failed
// mount leaves no store behind, help goes to stdout, progress bars only on terminals, a
// refused second mount leaves the running one's log alone, ^C closes stores cleanly.

// lmfsIn runs the binary in dir with extra environment (nil: inherited) and a timeout.
func lmfsIn(t *testing.T, dir string, env []string, args ...string) result {
	t.Helper()
	cmd := exec.Command(lmfsBin, args...)
	cmd.Dir = dir
	if env != nil {
		cmd.Env = append(os.Environ(), env...)
	}
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case <-done:
	case <-time.After(3 * time.Minute):
		cmd.Process.Kill()
		<-done
		t.Fatalf("lmfs %v: timed out; stderr: %s", args, errb.String())
	}
	return result{out.String(), errb.String(), cmd.ProcessState.ExitCode()}
}

// mustWaitFor fails the test unless cond holds within the (generous) time d.
func mustWaitFor(t *testing.T, what string, d time.Duration, cond func() bool) {
	t.Helper()
	if !waitFor(d, cond) {
		t.Fatalf("timed out waiting for %s", what)
	}
}

func TestCLIBadFlags(t *testing.T) {
	needFUSE(t)
	tmp := t.TempDir()
	store := filepath.Join(tmp, "store")
	m := mountStore(t, store)
	writeFile(t, m.path("keep"), []byte("precious"))
	m.umount()
	before := dirState(t, store, "lmfs.log")
	logBefore := readFile(t, filepath.Join(store, "lmfs.log"))
	mnt := newMountDir(t)

	cases := []struct {
		name string
		args []string
		want []string
	}{
		{"UnknownDevice", []string{"--device", "tpu"}, []string{"device", "tpu"}},
		{"MissingORTLib", []string{"--ort-lib", "/nonexistent.so"}, []string{"/nonexistent.so", "no such file"}},
		{"ORTLibNotALibrary", []string{"--ort-lib", "/etc/passwd"}, []string{"/etc/passwd", "cannot"}},
		{"MissingModel", []string{"--model", "/nonexistent.lmfsm"}, []string{"--model", "no such file"}},
		{"ModelNotAModel", []string{"--model", "/etc/passwd"}, []string{"--model", "/etc/passwd"}},
		{"UnknownMountOption", []string{"-o", "bogus"}, []string{"-o bogus", "unknown mount option"}},
	}
	// --device cuda must fail where the library has no CUDA provider (the npm build here).
	lib, _ := filepath.Abs("../lib")
	if _, err := os.Stat(filepath.Join(lib, "libonnxruntime_providers_cuda.so")); err != nil {
		cases = append(cases, struct {
			name string
			args []string
			want []string
		}{"CUDAWithoutProvider", []string{"--device", "cuda"}, []string{"--device cuda", "CUDA"}})
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			for _, fg := range [][]string{nil, {"-f"}} {
				newStore := filepath.Join(tmp, "new", "store")
				args := append(append(append([]string{"mount"}, fg...), c.args...), newStore, mnt)
				r := lmfs(t, args...)
				if isMounted(mnt) {
					lmfsQuiet("umount", mnt)
					t.Fatalf("lmfs %v mounted", args)
				}
				oneLineError(t, r, c.want...)
				if _, err := os.Stat(filepath.Join(tmp, "new")); err == nil {
					t.Errorf("lmfs %v left %s behind", args, filepath.Join(tmp, "new"))
					os.RemoveAll(filepath.Join(tmp, "new"))
				}
				args = append(append(append([]string{"mount"}, fg...), c.args...), store, mnt)
				oneLineError(t, lmfs(t, args...), c.want...)
				if isMounted(mnt) {
					lmfsQuiet("umount", mnt)
					t.Fatalf("lmfs %v mounted", args)
				}
			}
			compareTrees(t, before, dirState(t, store, "lmfs.log"))
			if got := readFile(t, filepath.Join(store, "lmfs.log")); !bytes.Equal(got, logBefore) {
				t.Errorf("a refused mount wrote to the store's log:\n%s", got[len(logBefore):])
			}
		})
	}
	t.Run("Compact", func(t *testing.T) {
		oneLineError(t, lmfs(t, "compact", "--device", "tpu", store), "tpu")
		oneLineError(t, lmfs(t, "compact", "--ort-lib", "/etc/passwd", store), "/etc/passwd")
		compareTrees(t, before, dirState(t, store, "lmfs.log"))
	})
	t.Run("Bench", func(t *testing.T) {
		oneLineError(t, lmfs(t, "bench", "--device", "tpu", t.TempDir()), "tpu")
		oneLineError(t, lmfs(t, "bench", "--ort-lib", "/nonexistent.so", t.TempDir()), "/nonexistent.so")
	})
}

// Without a library and without flags asking for one, a mount works (classical codecs for
// new blocks) and says so once, in one line.
func TestCLIDefaultFallbackSaysSo(t *testing.T) {
	needFUSE(t)
	tmp := t.TempDir() // no lib/ here or above, and none beside the test binary
	store, mnt := filepath.Join(tmp, "store"), newMountDir(t)
	m := &fsMount{t: t, store: store, dir: mnt}
	t.Cleanup(m.cleanup)
	r := lmfsIn(t, tmp, []string{"LMFS_ORT_LIB="}, "mount", store, mnt)
	if r.code != 0 {
		t.Fatalf("mount without a library: exit %d, stderr %q", r.code, r.stderr)
	}
	lines := strings.Split(strings.TrimRight(r.stderr, "\n"), "\n")
	if len(lines) != 1 || !strings.Contains(r.stderr, "ONNX Runtime") || !strings.Contains(r.stderr, "classical codecs") {
		t.Errorf("want one line on stderr about the missing ONNX Runtime, got %q", r.stderr)
	}
	m.pid = m.stats().PID
	m.umount()
	// The log says it in one short line, and nothing about CUDA.
	log := string(readFile(t, filepath.Join(store, "lmfs.log")))
	if strings.Contains(log, "CUDA") || strings.Contains(log, "cuda") {
		t.Errorf("the log talks about CUDA on a machine that asked for none:\n%s", log)
	}
}

// A mount that fails after the store was made (here in mount(2): an option value the kernel
// refuses) removes the store it made, and says the reason fusermount gave.
func TestCLIFailedMountLeavesNoStore(t *testing.T) {
	needFUSE(t)
	tmp := t.TempDir()
	mnt := newMountDir(t)
	for _, fg := range [][]string{nil, {"-f"}} {
		newTop := filepath.Join(tmp, "a")
		store := filepath.Join(newTop, "b", "store")
		args := append(append([]string{"mount"}, fg...), "-o", "max_read=abc", store, mnt)
		r := lmfs(t, args...)
		if isMounted(mnt) {
			lmfsQuiet("umount", mnt)
			t.Fatalf("lmfs %v mounted", args)
		}
		if r.code == 0 {
			t.Fatalf("lmfs %v: exit 0", args)
		}
		// The kernel's reason reaches the terminal: through fusermount's own line for a
		// foreground mount, in lmfs's one line for a background one.
		if !strings.Contains(r.stderr, "Invalid argument") || (fg == nil && strings.Contains(r.stderr, "exited with code")) {
			t.Errorf("lmfs %v: the reason is not on the terminal: %q", args, r.stderr)
		}
		if _, err := os.Stat(newTop); err == nil {
			t.Errorf("lmfs %v left %s behind", args, newTop)
			os.RemoveAll(newTop)
		}
	}
	// A directory that existed is never removed, and a real store is left as it was.
	empty := filepath.Join(tmp, "empty")
	os.Mkdir(empty, 0o700)
	if r := lmfs(t, "mount", "-o", "max_read=abc", empty, mnt); r.code == 0 {
		t.Fatal("mount with max_read=abc succeeded")
	}
	if _, err := os.Stat(empty); err != nil {
		t.Errorf("the failed mount removed a directory it did not make: %v", err)
	}
	store := filepath.Join(tmp, "store")
	m := mountStore(t, store)
	writeFile(t, m.path("keep"), []byte("precious"))
	m.umount()
	if r := lmfs(t, "mount", "-o", "max_read=abc", store, mnt); r.code == 0 {
		t.Fatal("mount with max_read=abc succeeded")
	}
	m = mountAt(t, store, mnt)
	if got := readFile(t, m.path("keep")); string(got) != "precious" {
		t.Errorf("after a failed mount: %q", got)
	}
	m.umount()
}

// A second mount of a mounted store is refused with the mount it collides with, and its error
// does not go into the running mount's log.
func TestCLISecondMountLeavesLogAlone(t *testing.T) {
	needFUSE(t)
	store := newStore(t)
	m := mountStore(t, store)
	logPath := filepath.Join(store, "lmfs.log")
	before := readFile(t, logPath)
	r := lmfs(t, "mount", store, newMountDir(t))
	oneLineError(t, r, "in use", m.dir)
	if got := readFile(t, logPath); !bytes.Equal(got, before) {
		t.Errorf("the refused mount wrote to the running mount's log:\n%s", got[len(before):])
	}
	writeFile(t, m.path("still"), []byte("works"))
	m.umount()
}

func TestCLIHelpOnStdout(t *testing.T) {
	needFUSE(t)
	for _, args := range [][]string{{"--help"}, {"-h"}, {"help"}, {"help", "mount"}, {"mount", "--help"}, {"umount", "--help"},
		{"stats", "-h"}, {"compact", "--help"}, {"fsck", "--help"}, {"bench", "--help"}, {"version", "--help"}} {
		r := lmfs(t, args...)
		if r.code != 0 || r.stdout == "" || r.stderr != "" {
			t.Errorf("lmfs %v: exit %d, stdout %d bytes, stderr %q; want exit 0, help on stdout", args, r.code, len(r.stdout), r.stderr)
		}
		if strings.Contains(r.stdout, "ready-fd") {
			t.Errorf("lmfs %v shows the internal --ready-fd:\n%s", args, r.stdout)
		}
	}
	if out := mustLmfs(t, "help", "mount"); !strings.Contains(out, "--device") || !strings.Contains(out, "-o") {
		t.Errorf("lmfs help mount:\n%s", out)
	}
	// A bad flag: one line and exit 2, no usage dump.
	r := lmfs(t, "mount", "--bogus", "a", "b")
	oneLineError(t, r, "bogus")
	if r.code != 2 {
		t.Errorf("bad flag: exit %d, want 2", r.code)
	}
}

func TestCLIStatsAndFsckOutput(t *testing.T) {
	needFUSE(t)
	store := newStore(t)
	m := mountStore(t, store)
	writeFile(t, m.path("f"), textData(3, 300000))
	text := mustLmfs(t, "stats", m.dir)
	if strings.Contains(text, "((") || strings.Contains(text, "))") || !strings.Contains(text, "mounted, server pid") {
		t.Errorf("stats of a mount:\n%s", text)
	}
	if strings.Contains(text, " bytes)") {
		t.Errorf("stats prints sizes twice (exact bytes belong in --json):\n%s", text)
	}
	m.umount()
	r := lmfs(t, "fsck", "--json", store)
	if r.code != 0 || !strings.Contains(r.stdout, `"findings": []`) {
		t.Errorf("fsck --json of a clean store: exit %d, want \"findings\": []\n%s", r.code, r.stdout)
	}
	var rep fsckJSON
	if err := json.Unmarshal([]byte(r.stdout), &rep); err != nil || !rep.Clean {
		t.Errorf("fsck --json: %v %+v", err, rep)
	}
}

func TestCLIStorePathProblems(t *testing.T) {
	needFUSE(t)
	tmp := t.TempDir()
	mnt := newMountDir(t)
	target := filepath.Join(tmp, "missing")
	link := filepath.Join(tmp, "link")
	os.Symlink(target, link)
	oneLineError(t, lmfs(t, "mount", link, mnt), "symlink to a missing path", target)
	oneLineError(t, lmfs(t, "stats", link), "symlink to a missing path")
	if isMounted(mnt) {
		lmfsQuiet("umount", mnt)
		t.Fatal("mounted through a dangling symlink")
	}
	if _, err := os.Lstat(target); err == nil {
		t.Errorf("the symlink's target was made")
	}

	// Another user's store: a permission problem, said so (not "not an lmfs store", no chown
	// advice to someone who does not own it). Its directory is one others can reach.
	shared, bin := sharedBin(t)
	store := filepath.Join(shared, "store")
	m := mountStore(t, store)
	writeFile(t, m.path("f"), []byte("x"))
	m.umount()
	out, err := asUser(65534, 65534, bin, "stats", store)
	if err == nil || !strings.Contains(out, "permission denied") || strings.Contains(out, "chown") || strings.Contains(out, "not an lmfs store") {
		t.Errorf("stats of root's store by nobody: err %v, output %q", err, out)
	}
}

func TestCLIBenchRedirectedNoProgress(t *testing.T) {
	needFUSE(t)
	dir := t.TempDir()
	for i := range 4 {
		writeFile(t, filepath.Join(dir, "f"+string(rune('a'+i))), textData(int64(i), 20000))
	}
	r := lmfs(t, "bench", "--no-lm", dir)
	if r.code != 0 {
		t.Fatalf("bench: exit %d: %s", r.code, r.stderr)
	}
	if strings.Contains(r.stderr, "\r") {
		t.Errorf("bench drew progress frames into a redirected stderr (%d bytes)", len(r.stderr))
	}
}

// Offline compact stopped by ^C closes the store cleanly and says "interrupted".
func TestCLICompactInterrupted(t *testing.T) {
	needFUSE(t)
	store := newStore(t)
	m := mountStore(t, store, "--no-compact")
	writeFile(t, m.path("text"), textData(5, 2<<20))
	m.umount()
	if statsOf(t, store).Pending == 0 {
		t.Fatal("no pending blocks to compact")
	}
	closed := filepath.Join(store, "lmfs.closed")
	cmd := exec.Command(lmfsBin, "compact", store)
	var errb bytes.Buffer
	cmd.Stderr = &errb
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	// The store is open for writing once its clean-close marker is gone.
	mustWaitFor(t, "compact to open the store", 2*time.Minute, func() bool {
		_, err := os.Lstat(closed)
		return errors.Is(err, os.ErrNotExist)
	})
	cmd.Process.Signal(syscall.SIGINT)
	select {
	case <-done:
	case <-time.After(3 * time.Minute):
		cmd.Process.Kill()
		t.Fatalf("compact did not stop after SIGINT; stderr: %s", errb.String())
	}
	if code := cmd.ProcessState.ExitCode(); code == 0 {
		t.Skipf("compact finished before the signal: %s", errb.String())
	} else if code != 130 || !strings.Contains(errb.String(), "interrupted") {
		t.Errorf("compact after SIGINT: exit %d (%s), stderr %q; want 130 and 'interrupted'", code, cmd.ProcessState, errb.String())
	}
	if _, err := os.Lstat(closed); err != nil {
		t.Errorf("the interrupted compact left the store marked unclean: %v", err)
	}
	if rep, r := fsckRun(t, store, false); !rep.Clean {
		t.Errorf("fsck after an interrupted compact: %s %s", rep, r.stderr)
	}
}

// startForeground starts `lmfs mount -f` with its log in a file the test reads.
func startForeground(t *testing.T, store, mnt string) (*fsMount, string) {
	t.Helper()
	logPath := filepath.Join(t.TempDir(), "server.log")
	logf, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	defer logf.Close()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(lmfsBin, "mount", "-f", "--ready-fd=3", store, mnt)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.ExtraFiles = []*os.File{w}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	w.Close()
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	m := &fsMount{t: t, store: store, dir: mnt, pid: cmd.Process.Pid, cmd: cmd, done: done}
	t.Cleanup(m.cleanup)
	line, _ := bufio.NewReader(r).ReadString('\n')
	r.Close()
	if strings.TrimSpace(line) != "ok" {
		t.Fatalf("foreground mount not ready: %q\n%s", line, readFile(t, logPath))
	}
	return m, logPath
}

// ^C on a foreground mount whose mountpoint is busy: it says so and keeps trying until the
// mountpoint is free; a second ^C forces. Either way the store is closed cleanly.
func TestCLIForegroundBusyInterrupt(t *testing.T) {
	needFUSE(t)
	for _, force := range []bool{false, true} {
		store, mnt := newStore(t), newMountDir(t)
		m, logPath := startForeground(t, store, mnt)
		cmd := m.cmd
		writeFile(t, filepath.Join(mnt, "f"), []byte("data"))
		holder := exec.Command("sleep", "600")
		holder.Dir = mnt
		if err := holder.Start(); err != nil {
			t.Fatal(err)
		}
		holderDone := make(chan struct{})
		go func() { holder.Wait(); close(holderDone) }()
		t.Cleanup(func() { holder.Process.Kill() })
		cmd.Process.Signal(syscall.SIGINT)
		mustWaitFor(t, "the busy message", time.Minute, func() bool {
			return strings.Contains(string(readFile(t, logPath)), "is busy: used by sleep")
		})
		if !isMounted(mnt) {
			t.Fatal("unmounted while busy?")
		}
		if force {
			cmd.Process.Signal(syscall.SIGINT)
		} else {
			holder.Process.Kill()
			<-holderDone
		}
		select {
		case <-m.done:
			m.done, m.pid = nil, 0
		case <-time.After(2 * time.Minute):
			t.Fatalf("server did not exit (force %v):\n%s", force, readFile(t, logPath))
		}
		log := string(readFile(t, logPath))
		if code := cmd.ProcessState.ExitCode(); code != 0 {
			t.Errorf("force %v: exit %d\n%s", force, code, log)
		}
		if !strings.Contains(log, "store closed") {
			t.Errorf("force %v: the store was not closed:\n%s", force, log)
		}
		if force && !strings.Contains(log, "forced") {
			t.Errorf("the second ^C did not force:\n%s", log)
		}
		if _, err := os.Lstat(filepath.Join(store, "lmfs.closed")); err != nil {
			t.Errorf("force %v: store not marked closed: %v", force, err)
		}
		holder.Process.Kill()
		<-holderDone
		if isMounted(mnt) {
			exec.Command("umount", "-l", mnt).Run()
		}
		m2 := mountAt(t, store, mnt)
		if got := readFile(t, m2.path("f")); string(got) != "data" {
			t.Errorf("force %v: after remount: %q", force, got)
		}
		m2.umount()
	}
}
