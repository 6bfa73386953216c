package main

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"
)

// Shutdown of a mount says what it waits for and keeps at it until done or told to stop. A
// busy mountpoint is retried (a foreground ^C); after the unmount the server finishes the reads
// in progress (an LM read decodes for seconds), then writes back queued writes, stops the
// compactor and closes the store. A second ^C forces: the FUSE connection is aborted and the
// mount detached, then the store is closed as usual; a third exits without closing it (the next
// mount recovers it, as after a crash).

// Server phases, as the control socket's /state reports them.
const (
	phaseServing = "serving"
	phaseClosing = "closing"
)

// serverState is what a running server tells `lmfs umount` while it shuts down.
type serverState struct {
	phase atomic.Value // string
	reads atomic.Int64 // FUSE reads in progress
}

func newServerState() *serverState {
	s := &serverState{}
	s.phase.Store(phaseServing)
	return s
}

func (s *serverState) Phase() string { return s.phase.Load().(string) }

// stateReport is the control socket's /state answer.
type stateReport struct {
	PID   int    `json:"pid"`
	Phase string `json:"phase"`
	Reads int64  `json:"reads"`
}

func (s *serverState) report() stateReport {
	return stateReport{PID: os.Getpid(), Phase: s.Phase(), Reads: s.reads.Load()}
}

// waitingFor says what a server in state r is doing after its unmount.
func (r stateReport) waitingFor() string {
	switch {
	case r.Phase == phaseClosing:
		return "write back queued writes, stop the compactor and close the store"
	case r.Reads == 1:
		return "finish 1 outstanding read"
	case r.Reads > 1:
		return fmt.Sprintf("finish %d outstanding reads", r.Reads)
	}
	return "finish its requests and close the store"
}

// unmountOnce asks the kernel to unmount mnt once: umount2 as root, fusermount otherwise.
// force (root) aborts the FUSE connection first, so requests in progress end at once, and
// detaches a mount that is still busy; without root it detaches (fusermount -z).
func unmountOnce(mnt string, force bool) error {
	if os.Geteuid() == 0 {
		if !force {
			return syscall.Unmount(mnt, 0)
		}
		// MNT_FORCE makes FUSE abort the connection (umount_begin) before the busy check.
		if err := syscall.Unmount(mnt, syscall.MNT_FORCE); err == nil || !errors.Is(err, syscall.EBUSY) {
			return err
		}
		return syscall.Unmount(mnt, syscall.MNT_DETACH)
	}
	args := []string{"-u"}
	if force {
		args = append(args, "-z")
	}
	bin, err := exec.LookPath("fusermount3")
	if err != nil {
		bin = "fusermount"
	}
	out, err := exec.Command(bin, append(args, mnt)...).CombinedOutput()
	if err != nil {
		if strings.Contains(string(out), "busy") {
			return syscall.EBUSY
		}
		return fmt.Errorf("%s: %s", bin, strings.TrimSpace(string(out)))
	}
	return nil
}

// shutdownOnSignal runs for the life of a server: the first SIGINT or SIGTERM unmounts mnt
// (retried every second while the mountpoint is busy), the second forces (aborts the FUSE
// connection and detaches the mount), the third exits without closing the store. It tells on
// log what it waits for. done is closed when the server has stopped serving (it then closes
// the store; a signal meanwhile warns once, the next exits).
func shutdownOnSignal(mnt string, sig <-chan os.Signal, done <-chan struct{}, state *serverState, log *slog.Logger) {
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	signals, unmounted, closing, closeWarned := 0, false, false, false
	var said time.Time // last progress line
	unmount := func() {
		err := unmountOnce(mnt, false)
		switch {
		case err == nil:
			unmounted, said = true, time.Time{}
		case time.Since(said) < 10*time.Second:
		case errors.Is(err, syscall.EBUSY):
			said = time.Now()
			log.Warn(busyError(mnt).Error() + "; retrying every second (^C again to force)")
		default:
			said = time.Now()
			log.Warn("unmount failed; retrying every second (^C again to force)", "mountpoint", mnt, "err", err)
		}
	}
	for {
		select {
		case s := <-sig:
			signals++
			switch {
			case closing && !closeWarned:
				closeWarned = true
				log.Warn("closing the store: writing back queued writes, stopping the compactor (^C again to exit without closing it; the next mount recovers it)")
			case closing:
				log.Error("exiting without closing the store: the next mount recovers it")
				os.Exit(130)
			case signals == 1:
				log.Info("signal: unmounting (^C again to force)", "signal", s)
				unmount()
			case signals == 2 && !closing:
				if err := unmountOnce(mnt, true); err != nil && !errors.Is(err, syscall.EINVAL) { // EINVAL: no longer mounted
					log.Warn("forced unmount failed", "mountpoint", mnt, "err", err)
				}
				unmounted = true
				log.Warn("forced: FUSE connection aborted and mount detached; the store closes once the requests in progress end (^C again to exit without closing it)",
					"reads", state.reads.Load())
			default:
				log.Error("exiting without closing the store: the next mount recovers it")
				os.Exit(130)
			}
		case <-done:
			done, closing = nil, true
		case <-tick.C:
			switch {
			case closing:
			case signals == 1 && !unmounted:
				unmount()
			case signals >= 1 && unmounted:
				if r := state.report(); r.Reads > 0 && time.Since(said) >= 5*time.Second {
					said = time.Now()
					log.Info("unmounted; waiting for the server to "+r.waitingFor()+" (^C again to force)", "mountpoint", mnt)
				}
			}
		}
	}
}

// progress calls say every period while wait runs (after a first quiet delay), so a long
// wait is never silent.
func progress(delay, period time.Duration, say func(elapsed time.Duration), wait func()) {
	stop := make(chan struct{})
	go func() {
		start := time.Now()
		t := time.NewTimer(delay)
		defer t.Stop()
		for {
			select {
			case <-stop:
				return
			case <-t.C:
				say(time.Since(start).Round(time.Second))
				t.Reset(period)
			}
		}
	}()
	wait()
	close(stop)
}

// busyHolders names up to max processes that keep mnt busy: a working directory, root or
// open file below it ("sleep (pid 123)"). Processes of other users are seen as root only.
func busyHolders(mnt string, max int) []string {
	procs, _ := os.ReadDir("/proc")
	var out []string
	for _, p := range procs {
		pid, err := strconv.Atoi(p.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		dir := filepath.Join("/proc", p.Name())
		uses := func(link string) bool {
			t, err := os.Readlink(filepath.Join(dir, link))
			return err == nil && (t == mnt || within(t, mnt))
		}
		busy := uses("cwd") || uses("root")
		if !busy {
			fds, _ := os.ReadDir(filepath.Join(dir, "fd"))
			for _, fd := range fds {
				if uses(filepath.Join("fd", fd.Name())) {
					busy = true
					break
				}
			}
		}
		if busy {
			comm, _ := os.ReadFile(filepath.Join(dir, "comm"))
			out = append(out, fmt.Sprintf("%s (pid %d)", strings.TrimSpace(string(comm)), pid))
			if len(out) == max {
				break
			}
		}
	}
	return out
}

// busyError says who keeps mnt busy, as far as /proc shows it.
func busyError(mnt string) error {
	if who := busyHolders(mnt, 5); len(who) > 0 {
		return fmt.Errorf("%s is busy: used by %s", mnt, strings.Join(who, ", "))
	}
	return fmt.Errorf("%s is busy (a process has a file or directory open there, or works in it)", mnt)
}
