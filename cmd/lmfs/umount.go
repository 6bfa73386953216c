package main

import (
	"fmt"
	"os/exec"
	"path/filepath"
	"syscall"
	"time"
)

func runUmount(args []string) error {
	fl := newFlags("umount")
	timeout := fl.Duration("timeout", 2*time.Minute, "how long to wait for the server to close the store")
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
	if err := syscall.Unmount(mnt, 0); err != nil {
		if err == syscall.EBUSY {
			return fmt.Errorf("%s is busy (a process has a file or directory open there)", mnt)
		}
		if out, ferr := exec.Command("fusermount3", "-u", mnt).CombinedOutput(); ferr != nil {
			return fmt.Errorf("unmount %s: %v (fusermount3: %s)", mnt, err, out)
		}
	}
	if pid == 0 {
		return nil
	}
	deadline := time.Now().Add(*timeout)
	for time.Now().Before(deadline) {
		if syscall.Kill(pid, 0) == syscall.ESRCH {
			return nil
		}
		if isZombieOrGone(pid) {
			return nil
		}
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Errorf("unmounted %s, but server pid %d has not closed the store after %s", mnt, pid, *timeout)
}
