package main

import (
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"

	"lmfs/blockstore"
)

// `lmfs stats PATH` for a file or directory inside a mount: its logical and stored bytes per
// codec, as compsize shows for btrfs. The mount answers (GET /usage?ino=N on its control
// socket) by walking the tree through the store, not through FUSE: no file is opened or read.
//
// Who may ask: the caller stats PATH itself, so the kernel's permission checks decide whether
// the caller may know the inode at all, and the control socket answers only the store's owner
// (it is made 0700; root too). The owner can read the store's files anyway; another user of
// an allow_other mount is told that only the owner can ask.

// pathReport is what `lmfs stats PATH` shows.
type pathReport struct {
	Path       string                         `json:"path"`
	Store      string                         `json:"store"`
	Ino        uint64                         `json:"inode"`
	Type       string                         `json:"type"` // file, directory, symlink, other
	Files      int64                          `json:"files"`
	Dirs       int64                          `json:"dirs"`
	Symlinks   int64                          `json:"symlinks"`
	Others     int64                          `json:"others"`
	Logical    int64                          `json:"logical_bytes"`
	Stored     int64                          `json:"stored_bytes"`
	Blocks     int64                          `json:"blocks"`
	Ratio      float64                        `json:"ratio"`       // stored / logical
	Saved      int64                          `json:"saved_bytes"` // logical - stored
	Pending    int64                          `json:"pending_blocks"`
	PendingRaw int64                          `json:"pending_bytes"`
	Codecs     map[string]blockstore.CodecUse `json:"codecs"`
}

// mountedPath is a path inside an lmfs mount.
type mountedPath struct {
	mount mountEntry
	ino   uint64
	mode  uint32
}

// inMount reports whether path (followed if a symlink) lies in an lmfs mount, and its inode.
func inMount(path string) (mountedPath, bool) {
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		return mountedPath{}, false // the store's report says why
	}
	m, ok := mountOfDev(unix.Major(st.Dev), unix.Minor(st.Dev))
	if !ok || !isLmfs(m) {
		return mountedPath{}, false
	}
	return mountedPath{mount: m, ino: st.Ino, mode: st.Mode}, true
}

// mountOfDev finds the mount whose device number is major:minor (each FUSE mount has its own).
func mountOfDev(major, minor uint32) (mountEntry, bool) {
	ms, _ := readMounts()
	want := fmt.Sprintf("%d:%d", major, minor)
	for _, m := range ms {
		if m.dev == want {
			return m, true
		}
	}
	return mountEntry{}, false
}

// getPathReport asks the mount that serves in for what the tree at it takes.
func getPathReport(arg string, in mountedPath) (pathReport, error) {
	store := in.mount.source
	var u blockstore.Usage
	err := controlGet(store, "/usage?ino="+strconv.FormatUint(in.ino, 10), &u)
	var se *statusError
	switch {
	case errors.As(err, &se) && se.code == http.StatusNotFound && strings.Contains(se.msg, "no inode"):
		return pathReport{}, fmt.Errorf("%s: no longer in the store (removed meanwhile?)", arg)
	case errors.As(err, &se) && se.code == http.StatusNotFound:
		return pathReport{}, fmt.Errorf("the mount of %s (an older lmfs) cannot tell what %s takes: remount it with this lmfs", store, arg)
	case errors.Is(err, os.ErrPermission):
		return pathReport{}, fmt.Errorf("permission denied: only the owner of store %s (or root) can ask its mount for what %s takes", store, arg)
	case err != nil:
		return pathReport{}, err
	}
	abs, _ := filepath.Abs(arg)
	r := pathReport{Path: abs, Store: store, Ino: in.ino, Type: typeName(in.mode), Files: u.Files, Dirs: u.Dirs,
		Symlinks: u.Symlinks, Others: u.Others, Logical: u.Logical, Pending: u.Pending, PendingRaw: u.PendingRaw, Codecs: u.Codecs}
	r.Blocks, _, r.Stored = u.Stored()
	r.Saved = r.Logical - r.Stored
	if r.Logical > 0 {
		r.Ratio = float64(r.Stored) / float64(r.Logical)
	}
	return r, nil
}

func typeName(mode uint32) string {
	switch mode & unix.S_IFMT {
	case unix.S_IFREG:
		return "file"
	case unix.S_IFDIR:
		return "directory"
	case unix.S_IFLNK:
		return "symlink"
	}
	return "other"
}

func printPathReport(r pathReport) {
	fmt.Printf("path       %s (%s, inode %d, store %s)\n", r.Path, r.Type, r.Ino, r.Store)
	printSpace(usageLines{Files: r.Files, Dirs: r.Dirs, Symlinks: r.Symlinks, Logical: r.Logical,
		Stored: r.Stored, Blocks: r.Blocks, Pending: r.Pending, PendingRaw: r.PendingRaw, Codecs: r.Codecs, OneFile: r.Type != "directory"},
		"see 'lmfs stats "+mountArg(r)+"' for the compactor's progress")
	printCodecs(r.Codecs)
}

// mountArg names the mount point of r's store for a hint (the store when it is not found).
func mountArg(r pathReport) string {
	if m, ok := findMountOf(r.Store); ok {
		return m.point
	}
	return r.Store
}

// serveUsage answers GET /usage?ino=N: the blockstore.Usage of the tree at inode N.
func serveUsage(st *blockstore.Store, w http.ResponseWriter, r *http.Request) {
	ino, err := strconv.ParseUint(r.URL.Query().Get("ino"), 10, 64)
	if err != nil || ino == 0 {
		http.Error(w, "usage: /usage?ino=N (N an inode number)", http.StatusBadRequest)
		return
	}
	u, err := st.TreeUsage(ino)
	if errors.Is(err, unix.ENOENT) {
		http.Error(w, "no inode "+url.QueryEscape(r.URL.Query().Get("ino")), http.StatusNotFound)
		return
	}
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	writeJSON(w, u)
}
