package main

import (
	"bufio"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"

	"lmfs/blockstore"
)

// mountEntry is one line of /proc/self/mountinfo.
type mountEntry struct {
	point, fstype, source string
	dev                   string // major:minor of the mounted file system
}

func unescapeMount(s string) string {
	r := strings.NewReplacer(`\040`, " ", `\011`, "\t", `\012`, "\n", `\134`, `\`)
	return r.Replace(s)
}

func readMounts() ([]mountEntry, error) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []mountEntry
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<16), 1<<20)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		sep := -1
		for i, f := range fields {
			if f == "-" {
				sep = i
				break
			}
		}
		if len(fields) < 5 || sep < 0 || sep+2 >= len(fields) {
			continue
		}
		out = append(out, mountEntry{point: unescapeMount(fields[4]), fstype: fields[sep+1], source: unescapeMount(fields[sep+2]), dev: fields[2]})
	}
	return out, sc.Err()
}

// findMount returns the mount at path (an absolute, cleaned path), if any.
func findMount(path string) (mountEntry, bool) {
	ms, _ := readMounts()
	for i := len(ms) - 1; i >= 0; i-- {
		if ms[i].point == path {
			return ms[i], true
		}
	}
	return mountEntry{}, false
}

// findMountOf returns the lmfs mount whose store is store, if any.
func findMountOf(store string) (mountEntry, bool) {
	ms, _ := readMounts()
	for i := len(ms) - 1; i >= 0; i-- {
		if isLmfs(ms[i]) && ms[i].source == store {
			return ms[i], true
		}
	}
	return mountEntry{}, false
}

func isLmfs(m mountEntry) bool { return m.fstype == "fuse.lmfs" || m.fstype == "lmfs" }

// resolveStore turns STORE|MOUNTPOINT into a store directory, and says whether it is mounted
// at that path.
func resolveStore(arg string) (store string, mounted bool, err error) {
	abs, err := filepath.Abs(arg)
	if err != nil {
		return "", false, err
	}
	if m, ok := findMount(abs); ok {
		if !isLmfs(m) {
			if _, err := os.Stat(filepath.Join(abs, blockstore.MarkerFile)); err == nil {
				return abs, false, nil // a store on a file system of its own (a disk, a bind mount)
			}
			return "", false, fmt.Errorf("%s is a %s mount, not lmfs", abs, m.fstype)
		}
		return m.source, true, nil
	}
	if err := checkStoreLink(arg); err != nil {
		return "", false, err
	}
	if _, err := os.Stat(abs); err != nil {
		return "", false, fmt.Errorf("%s: %w", arg, err)
	}
	// A symlink to the store is resolved once, as a mount resolves it (same socket path).
	resolved, err := filepath.EvalSymlinks(abs)
	if err != nil {
		return "", false, fmt.Errorf("%s: %w", arg, err)
	}
	return resolved, false, nil
}

// socketPath is where a mount of store answers control requests (stats, compaction). Unix
// socket paths are short, so long store paths use a hashed name in the temp directory.
func socketPath(store string) string {
	p := filepath.Join(store, blockstore.SocketFile)
	if len(p) < 100 {
		return p
	}
	h := sha256.Sum256([]byte(store))
	return filepath.Join(os.TempDir(), "lmfs-"+hex.EncodeToString(h[:8])+".sock")
}

// checkSocketOwner refuses a control socket outside the store (the temp directory, where
// anyone can make one) that does not belong to the store's owner: its answers would be
// another user's.
func checkSocketOwner(store, sock string) error {
	if filepath.Dir(sock) == store {
		return nil // only the store's owner can make names in it (blockstore's checks)
	}
	var st, sst syscall.Stat_t
	if err := syscall.Lstat(sock, &st); err != nil {
		return fmt.Errorf("control socket %s: %w", sock, err)
	}
	if err := syscall.Stat(store, &sst); err != nil {
		return fmt.Errorf("store %s: %w", store, err)
	}
	if st.Mode&syscall.S_IFMT != syscall.S_IFSOCK || st.Uid != sst.Uid {
		return fmt.Errorf("control socket %s is not a socket of the store's owner (uid %d): ignored", sock, sst.Uid)
	}
	return nil
}

func storeFormat() int { return blockstore.FormatVersion }
