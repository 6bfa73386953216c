package main

import (
	"fmt"
	"os"
	"strings"
)

// isZombieOrGone reports whether pid has exited (a zombie waits only for its parent to reap it).
func isZombieOrGone(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return true
	}
	s := string(b)
	i := strings.LastIndex(s, ")")
	return i >= 0 && i+2 < len(s) && s[i+2] == 'Z'
}
