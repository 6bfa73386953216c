package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"lmfs/blockstore"
	"lmfs/fs"
)

type mountFlags struct {
	lm         lmFlags
	foreground bool
	noCompact  bool
	options    string
	debug      bool
	readyFD    int
	logFile    string
}

func runMount(args []string) error {
	fl := newFlags("mount")
	var mf mountFlags
	fl.BoolVar(&mf.foreground, "f", false, "stay in the foreground and log to stderr")
	fl.BoolVar(&mf.foreground, "foreground", false, "same as -f")
	fl.StringVar(&mf.options, "o", "", "mount options, comma separated (allow_other, default_permissions, ro, ...)")
	fl.BoolVar(&mf.debug, "debug", false, "log every FUSE request")
	fl.StringVar(&mf.logFile, "log", "", "log file of a background mount (default STORE/lmfs.log)")
	fl.IntVar(&mf.readyFD, "ready-fd", 0, internalFlag+" file descriptor to report readiness on")
	fl.BoolVar(&mf.noCompact, "no-compact", false, "keep blocks as the write path stored them (fast codec); no background recoding")
	mf.lm.register(fl)
	pos, err := parseArgs(fl, args, 2, 2)
	if err != nil {
		return err
	}
	if err := checkMountOptions(mf.options); err != nil {
		return err
	}
	// The model flags are checked before anything is made or mounted; a server started by
	// a background mount (ready-fd) was checked by its parent.
	var fallback error
	if mf.readyFD == 0 {
		if fallback, err = mf.lm.check(); err != nil {
			return err
		}
	}
	if err := checkStoreLink(pos[0]); err != nil {
		return err
	}
	// Both paths with symlinks resolved, once: what is checked is what is used (a store path
	// that does not exist yet is resolved as far as it exists).
	store, err := blockstore.ResolvePath(pos[0])
	if err != nil {
		return fmt.Errorf("store %s: %w", pos[0], err)
	}
	mnt, err := blockstore.ResolvePath(pos[1])
	if err != nil {
		return fmt.Errorf("mountpoint %s: %w", pos[1], unwrapPathError(err))
	}
	if err := checkMountpoint(mnt); err != nil {
		return err
	}
	if err := checkOverlap(store, mnt); err != nil {
		return err
	}
	// What this invocation makes of a new store is removed again if the mount fails.
	made := newDirs(store)
	if !mf.foreground {
		if err := daemonize(store, mnt, mf, made); err != nil {
			return err
		}
		if fallback != nil {
			// Said once, on the terminal; the log has it too. (A foreground server logs it
			// on the terminal itself.)
			fmt.Fprintln(os.Stderr, fallbackNote(fallback))
		}
		return nil
	}
	mounted := false
	err = serve(store, mnt, mf, &mounted)
	if err != nil && !mounted {
		removeNewStore(made)
	}
	return err
}

// checkStoreLink says plainly that STORE is a symlink to a missing path (a new store cannot
// be made through it: lmfs never follows a link to make a directory).
func checkStoreLink(arg string) error {
	fi, err := os.Lstat(arg)
	if err != nil || fi.Mode()&os.ModeSymlink == 0 {
		return nil
	}
	if _, err := os.Stat(arg); errors.Is(err, os.ErrNotExist) {
		target, _ := os.Readlink(arg)
		return fmt.Errorf("store %s is a symlink to a missing path (%s): make that directory, or give the store's real path", arg, target)
	}
	return nil
}

// newDirs lists the directories from dir up that do not exist yet, dir first: what a
// mount of a new store makes, and takes away again when the mount fails.
func newDirs(dir string) []string {
	var out []string
	for p := dir; ; p = filepath.Dir(p) {
		if _, err := os.Lstat(p); !errors.Is(err, os.ErrNotExist) {
			return out
		}
		out = append(out, p)
		if p == filepath.Dir(p) {
			return out
		}
	}
}

// removeNewStore removes a store directory this invocation made (made[0], and the
// directories made above it) after its mount failed: nothing was mounted from it, so it
// holds only what this invocation wrote. A store another process opened meanwhile (it holds
// Badger's directory lock) is left alone; the lock is taken while removing, so no one opens
// a half-removed store.
func removeNewStore(made []string) {
	if len(made) == 0 {
		return
	}
	if d, err := os.Open(made[0]); err == nil {
		defer d.Close()
		if unix.Flock(int(d.Fd()), unix.LOCK_EX|unix.LOCK_NB) != nil {
			return
		}
		os.RemoveAll(made[0])
	}
	for _, p := range made[1:] {
		if os.Remove(p) != nil {
			return // not empty: someone else put something there
		}
	}
}

// storeInUse reports a store that a running server (or an offline compact or fsck) holds
// open, before a second mount puts anything into it: not even its error into the log of the
// mount that is running.
func storeInUse(store string) error {
	d, err := os.Open(store)
	if err != nil {
		return nil // not made yet, or the server's open says why
	}
	defer d.Close()
	err = unix.Flock(int(d.Fd()), unix.LOCK_SH|unix.LOCK_NB)
	if err == nil {
		unix.Flock(int(d.Fd()), unix.LOCK_UN)
		return nil
	}
	if !errors.Is(err, unix.EWOULDBLOCK) {
		return nil
	}
	var rep report
	if controlGet(store, "/stats", &rep) == nil {
		if m, ok := findMountOf(store); ok {
			return fmt.Errorf("store %s is in use: mounted at %s (server pid %d)", store, m.point, rep.PID)
		}
		return fmt.Errorf("store %s is in use: mounted by server pid %d", store, rep.PID)
	}
	return fmt.Errorf("store %s: %w", store, blockstore.ErrLocked)
}

// mountOptions are the -o options a mount accepts: what the kernel's FUSE and fusermount
// understand and lmfs does not set itself (fsname and subtype name the mount as lmfs's;
// user_id, group_id, fd and rootmode are the mount's own). Anything else is refused
// before anything is made, instead of failing in mount(2) with EINVAL.
var mountOptions = []string{
	"allow_other", "default_permissions", "ro", "rw", "nosuid", "suid", "nodev", "dev",
	"noexec", "exec", "noatime", "atime", "nodiratime", "diratime", "relatime", "norelatime",
	"strictatime", "nostrictatime", "lazytime", "nolazytime", "sync", "async", "dirsync",
}

// checkMountOptions refuses an -o option the mount would fail on.
func checkMountOptions(opts string) error {
	for _, o := range strings.Split(opts, ",") {
		o = strings.TrimSpace(o)
		if o == "" || slices.Contains(mountOptions, o) {
			continue
		}
		if name, _, ok := strings.Cut(o, "="); ok && name == "max_read" {
			continue
		}
		return fmt.Errorf("-o %s: unknown mount option (lmfs accepts %s, max_read=N)", o, strings.Join(mountOptions, ", "))
	}
	return nil
}

// checkMountpoint refuses what would fail later with a less clear message.
func checkMountpoint(mnt string) error {
	st, err := os.Stat(mnt)
	if err != nil {
		return fmt.Errorf("mountpoint %s: %w", mnt, unwrapPathError(err))
	}
	if !st.IsDir() {
		return fmt.Errorf("mountpoint %s is not a directory", mnt)
	}
	if m, ok := findMount(mnt); ok {
		return fmt.Errorf("mountpoint %s is already in use (a %s mount of %s)", mnt, m.fstype, m.source)
	}
	if _, err := os.Stat("/dev/fuse"); err != nil {
		return fmt.Errorf("no /dev/fuse: load the fuse kernel module (modprobe fuse) or run where FUSE is available")
	}
	f, err := os.OpenFile("/dev/fuse", os.O_RDWR, 0)
	if err != nil {
		return fmt.Errorf("cannot open /dev/fuse: %v", unwrapPathError(err))
	}
	f.Close()
	if syscall.Geteuid() != 0 {
		if _, err := exec.LookPath("fusermount3"); err != nil {
			if _, err := exec.LookPath("fusermount"); err != nil {
				return fmt.Errorf("mounting as a non-root user needs fusermount3 (apt-get install fuse3)")
			}
		}
	}
	return nil
}

// checkOverlap refuses a mountpoint that is the store directory, lies inside it or contains
// it: every access of the server to its store would go through its own mount and wait for
// itself (threads pile up in D state until the server dies). Both paths come resolved;
// directories are also compared by identity (device and inode), which catches a bind mount
// of one at the other.
func checkOverlap(store, mnt string) error {
	const why = "the server would reach its own store through the mount and hang: choose a mountpoint outside the store"
	switch {
	case store == mnt:
		return fmt.Errorf("mountpoint %s is the store directory: %s", mnt, why)
	case within(mnt, store):
		return fmt.Errorf("mountpoint %s is inside the store %s: %s", mnt, store, why)
	case within(store, mnt):
		return fmt.Errorf("mountpoint %s contains the store %s: %s", mnt, store, why)
	}
	var mst, sst syscall.Stat_t
	if syscall.Stat(mnt, &mst) != nil {
		return nil // checkMountpoint reports it
	}
	for p := store; ; p = filepath.Dir(p) {
		var st syscall.Stat_t
		if syscall.Stat(p, &st) == nil && st.Dev == mst.Dev && st.Ino == mst.Ino {
			return fmt.Errorf("mountpoint %s is %s, which is or contains the store %s: %s", mnt, p, store, why)
		}
		if p == filepath.Dir(p) {
			break
		}
	}
	if syscall.Stat(store, &sst) != nil {
		return nil // not made yet: nothing below it
	}
	for p := filepath.Dir(mnt); ; p = filepath.Dir(p) {
		var st syscall.Stat_t
		if syscall.Stat(p, &st) == nil && st.Dev == sst.Dev && st.Ino == sst.Ino {
			return fmt.Errorf("mountpoint %s is inside %s, which is the store %s: %s", mnt, p, store, why)
		}
		if p == filepath.Dir(p) {
			return nil
		}
	}
}

// within reports whether path lies below dir (both clean and absolute).
func within(path, dir string) bool {
	return strings.HasPrefix(path, strings.TrimSuffix(dir, "/")+"/")
}

func unwrapPathError(err error) error {
	var pe *os.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

// daemonize starts `lmfs mount -f` in a new session and returns once it reports the mount
// ready (or its error).
func daemonize(store, mnt string, mf mountFlags, made []string) error {
	// Refuse a foreign or newer directory, or one in use, before the log file is put into it.
	if err := blockstore.Check(store); err != nil {
		return err
	}
	if err := storeInUse(store); err != nil {
		return err
	}
	logPath := mf.logFile
	flags := os.O_CREATE | os.O_WRONLY | os.O_APPEND
	if logPath == "" {
		// The store may not exist yet; the log lives beside it until it does. In the store
		// it is never opened through a symlink (Check refuses one anyway) and is private.
		if err := os.MkdirAll(store, 0o700); err == nil {
			logPath = filepath.Join(store, blockstore.LogFile)
			flags |= syscall.O_NOFOLLOW
		} else {
			return fmt.Errorf("create store: %w", err)
		}
	}
	logf, err := os.OpenFile(logPath, flags, 0o600)
	if err != nil {
		return fmt.Errorf("open log: %w", err)
	}
	defer logf.Close()
	if flags&syscall.O_NOFOLLOW != 0 {
		if err := logf.Chmod(0o600); err != nil {
			return fmt.Errorf("open log: %w", err)
		}
	}
	r, w, err := os.Pipe()
	if err != nil {
		return err
	}
	self, err := os.Executable()
	if err != nil {
		return err
	}
	args := []string{"mount", "-f", "--ready-fd=3", "--log=" + logPath}
	if mf.options != "" {
		args = append(args, "-o", mf.options)
	}
	if mf.debug {
		args = append(args, "--debug")
	}
	// The server gets the model flags as given (only those given: a device or library that
	// was named must work, the defaults may fall back).
	args = append(args, "--model="+absIfSet(mf.lm.model))
	if mf.lm.libSet {
		args = append(args, "--ort-lib="+absIfSet(mf.lm.ortLib))
	}
	if mf.lm.deviceSet {
		args = append(args, "--device="+mf.lm.device)
	}
	if mf.lm.noLM {
		args = append(args, "--no-lm")
	}
	if mf.noCompact {
		args = append(args, "--no-compact")
	}
	args = append(args, store, mnt)
	cmd := exec.Command(self, args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.ExtraFiles = []*os.File{w}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	logStart, _ := logf.Seek(0, io.SeekEnd) // where the server's output begins
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start mount server: %w", err)
	}
	w.Close()
	line, _ := bufio.NewReader(r).ReadString('\n')
	r.Close()
	line = strings.TrimSpace(line)
	if line == "ok" {
		cmd.Process.Release()
		return nil
	}
	cmd.Wait()
	if line == "" {
		// A crash: the store and the log with the report stay for a look.
		return serverFailure(logPath, logStart, cmd.ProcessState)
	}
	msg := strings.TrimPrefix(line, "error: ")
	if strings.Contains(msg, "fusermount") {
		// fusermount says why on its stderr, which is the log.
		if why := fusermountReason(logPath, logStart); why != "" {
			if i := strings.Index(msg, "fusermount exited"); i >= 0 {
				msg = msg[:i] + why // go-fuse's "exited with code 256" says nothing more
			} else {
				msg += ": " + why
			}
		}
	}
	logf.Close()
	removeNewStore(made)
	return errors.New(msg)
}

// fusermountReason is the last thing fusermount wrote to the log from offset from, without
// its path ("/usr/bin/fusermount3: unknown option 'x'" is "fusermount3: unknown option 'x'").
func fusermountReason(logPath string, from int64) string {
	f, err := os.Open(logPath)
	if err != nil {
		return ""
	}
	defer f.Close()
	if _, err := f.Seek(from, io.SeekStart); err != nil {
		return ""
	}
	why := ""
	sc := bufio.NewScanner(io.LimitReader(f, maxLogTail))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if i := strings.Index(line, "fusermount"); i >= 0 && !strings.Contains(line, "level=") && !strings.HasPrefix(line, "lmfs ") {
			why = strings.TrimSpace(line[strings.LastIndex(line[:i+1], "/")+1:])
		}
	}
	return why
}

// serve mounts and serves until unmounted or signalled; mounted is set once the mount is up.
func serve(store, mnt string, mf mountFlags, mounted *bool) error {
	var ready io.WriteCloser
	if mf.readyFD > 0 {
		ready = os.NewFile(uintptr(mf.readyFD), "ready")
	}
	fail := func(err error) error {
		if ready != nil {
			fmt.Fprintf(ready, "error: %v\n", err)
			ready.Close()
		}
		return err
	}
	level := slog.LevelInfo
	if mf.debug {
		level = slog.LevelDebug
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	st, err := blockstore.Open(store, blockstore.Options{Create: true, Logger: log})
	if err != nil {
		return fail(err)
	}
	lm, err := openModels(st, mf.lm, log)
	if err != nil {
		st.Close()
		return fail(err)
	}
	defer lm.Close()
	if !mf.noCompact {
		st.StartCompactor(blockstore.CompactOptions{Policy: lm.policy()})
	}
	state := newServerState()
	stopControl, err := serveControl(st, func() map[string]any { return mountExtra(st, lm) }, state)
	if err != nil {
		st.Close()
		return fail(err)
	}
	var opts []string
	allowOther := false
	for _, o := range strings.Split(mf.options, ",") {
		switch o = strings.TrimSpace(o); o {
		case "":
		case "allow_other":
			allowOther = true
		default:
			opts = append(opts, o)
		}
	}
	if !contains(opts, "default_permissions") {
		opts = append(opts, "default_permissions")
	}
	srv, err := fs.Mount(mnt, st, fs.Options{MountOptions: opts, AllowOther: allowOther, Debug: mf.debug, Logger: log, Reads: &state.reads})
	if err != nil {
		stopControl()
		st.Close()
		// go-fuse ends some of its errors with a newline.
		return fail(fmt.Errorf("mount %s: %s", mnt, strings.TrimSpace(err.Error())))
	}
	*mounted = true
	setReadAhead(mnt, readAheadKB, log)
	log.Info("mounted", "store", store, "mountpoint", mnt, "pid", os.Getpid())
	if ready != nil {
		fmt.Fprintln(ready, "ok")
		ready.Close()
	}
	// Signals are caught from here on: the first unmounts, the second forces (shutdown.go).
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
	served := make(chan struct{})
	go shutdownOnSignal(mnt, sig, served, state, log)
	srv.Wait()
	close(served)
	if _, err := os.Stat(filepath.Join(store, blockstore.MarkerFile)); err != nil {
		// Badger would retry its final flush into a deleted directory forever.
		stopControl()
		log.Error("the store directory is gone: exiting without closing it", "store", store, "err", err)
		return fmt.Errorf("store %s vanished while mounted", store)
	}
	// The control socket answers /state until the store is closed: lmfs umount says what
	// the server is waiting for.
	state.phase.Store(phaseClosing)
	log.Info("unmounted; closing the store (writing back queued writes, stopping the compactor)", "store", store)
	err = nil
	progress(2*time.Second, 10*time.Second, func(d time.Duration) {
		log.Info("still closing the store", "elapsed", d)
	}, func() { err = st.Close() })
	stopControl()
	if err != nil {
		log.Error("closing the store failed", "err", err)
		return err
	}
	log.Info("store closed", "store", store)
	return nil
}

// readAheadKB is the kernel read-ahead window set on the mount: the kernel defaults FUSE
// mounts to 128 KiB; 4 MiB lets it keep several 1 MiB reads in flight, which the server
// decodes side by side (measured: 248 MB/s at 128 KiB, 541 MB/s at 4 MiB, sequential read).
const readAheadKB = 4096

// setReadAhead raises the mount's read-ahead window (root only; best effort).
func setReadAhead(mnt string, kb int, log *slog.Logger) {
	var st syscall.Stat_t
	if err := syscall.Stat(mnt, &st); err != nil {
		return
	}
	path := fmt.Sprintf("/sys/class/bdi/%d:%d/read_ahead_kb", unix.Major(st.Dev), unix.Minor(st.Dev))
	if err := os.WriteFile(path, []byte(fmt.Sprint(kb)), 0o644); err != nil {
		log.Debug("read-ahead unchanged", "path", path, "err", err)
	}
}

// mountExtra is what a running mount adds to stats.
func mountExtra(st *blockstore.Store, l *lmSetup) map[string]any {
	out := map[string]any{}
	for k, v := range l.info {
		out[k] = v
	}
	return out // the compactor's numbers: report.Compactor
}

func absIfSet(p string) string {
	if p == "" {
		return ""
	}
	if a, err := filepath.Abs(p); err == nil {
		return a
	}
	return p
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
