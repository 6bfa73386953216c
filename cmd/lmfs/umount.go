package main

import (
	"errors"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"
)

func runUmount(args []string) error {
	fl := newFlags("umount")
	timeout := fl.Duration("timeout", 0, "stop waiting for the server to close the store after this long (0: wait until it has; ^C stops waiting)")
	pos, err := parseArgs(fl, args, 1, 1)
	if err != nil {
		return err
	}
	mnt, err := filepath.Abs(pos[0])
	if err != nil {
		return err
	}
	m, ok := findMount(mnt)
	if !ok {
		return fmt.Errorf("%s is not mounted", mnt)
	}
	if !isLmfs(m) {
		return fmt.Errorf("%s is a %s mount, not lmfs", mnt, m.fstype)
	}
	var rep report
	pid := 0
	if err := controlGet(m.source, "/stats", &rep); err == nil {
		pid = rep.PID
	}
	if err := unmountOnce(mnt, false); err != nil {
		if errors.Is(err, syscall.EBUSY) {
			return busyError(mnt)
		}
		return fmt.Errorf("unmount %s: %w", mnt, err)
	}
	if pid == 0 {
		return nil
	}
	return waitServer(m.source, mnt, pid, *timeout)
}

// waitServer waits until the server pid of store has closed it and exited, saying on stderr
// what it waits for once that takes more than a moment (an LM read in progress decodes for
// seconds; closing writes back queued writes). ^C stops waiting, not the server.
func waitServer(store, mnt string, pid int, timeout time.Duration) error {
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
	defer signal.Stop(sig)
	start := time.Now()
	poll := time.NewTicker(50 * time.Millisecond)
	defer poll.Stop()
	said, asked, last := time.Time{}, time.Time{}, ""
	for {
		if syscall.Kill(pid, 0) == syscall.ESRCH || isZombieOrGone(pid) {
			if last != "" {
				fmt.Fprintf(os.Stderr, "lmfs umount: store closed (%s)\n", time.Since(start).Round(time.Second))
			}
			return nil
		}
		// Quiet for a moment; then a line when the server moves on to another phase, and
		// every 10 s within one.
		if time.Since(start) >= 1500*time.Millisecond && time.Since(asked) >= time.Second {
			asked = time.Now()
			what, phase := "close the store", "closing"
			var st stateReport
			if controlGet(store, "/state", &st) == nil {
				what, phase = st.waitingFor(), st.Phase
				if st.Phase == phaseServing && st.Reads > 0 {
					phase = "reads"
				}
			}
			if phase != last || time.Since(said) >= 10*time.Second {
				fmt.Fprintf(os.Stderr, "lmfs umount: %s unmounted; waiting for the server (pid %d) to %s (%s so far; ^C stops waiting)\n",
					mnt, pid, what, time.Since(start).Round(time.Second))
				said, last = time.Now(), phase
			}
		}
		if timeout > 0 && time.Since(start) > timeout {
			return fmt.Errorf("unmounted %s, but server pid %d has not closed the store after %s (it goes on; the store is safe once it exits)", mnt, pid, timeout)
		}
		select {
		case <-sig:
			return fmt.Errorf("unmounted %s; stopped waiting for server pid %d, which goes on closing the store", mnt, pid)
		case <-poll.C:
		}
	}
}
