package blockstore

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"

	"golang.org/x/sys/unix"

	"lmfs/blockstore/segment"
)

// The store directory holds everything a mount holds, readable by whoever can read its files,
// and Badger opens its files by name, following symlinks. So lmfs uses only a directory no
// other local user can change, and never lets a name in it lead elsewhere:
//
//   - The directory belongs to the user opening it (the effective uid) and is not writable by
//     group or others; the same holds for data/. Each directory above it belongs to root or
//     that user and is writable by no one else, unless it is sticky (like /tmp: others cannot
//     rename what is not theirs). Otherwise another user could plant names in it or swap it.
//   - No entry in it is a symlink, a second hard link or another user's file: lmfs and Badger
//     never make one, and one planted while the directory was open to others would lead
//     Badger's or lmfs's writes to a file elsewhere.
//   - A store path that is a symlink is resolved once, when the store is opened; the directory
//     it leads to is checked and used from then on.
//   - Opened for writing, the directory and data/ become 0700 and every file in them loses its
//     group and other bits; the process umask gets 077, so what Badger and lmfs make later
//     (tables, logs, segments, the control socket) is private too. lmfs opens its own files
//     (the marker, lmfs.closed, segments) with O_NOFOLLOW.

// ErrUnsafeDir reports a store directory that another user could change or that holds a
// name leading elsewhere.
var ErrUnsafeDir = errors.New("store directory is not safe")

// ResolvePath returns p absolute with its symlinks resolved. A path that does not exist yet
// is resolved as far as it exists (its nearest existing ancestor), the rest kept as written.
func ResolvePath(p string) (string, error) {
	abs, err := filepath.Abs(p)
	if err != nil {
		return "", err
	}
	rest := ""
	for cur := abs; ; {
		r, err := filepath.EvalSymlinks(cur)
		if err == nil {
			return filepath.Join(r, rest), nil
		}
		if !errors.Is(err, fs.ErrNotExist) {
			return "", err
		}
		parent := filepath.Dir(cur)
		if parent == cur {
			return abs, nil
		}
		rest = filepath.Join(filepath.Base(cur), rest)
		cur = parent
	}
}

// checkAncestors refuses a store below a directory another user could rename it out of.
// Missing ancestors (a store not made yet) are skipped.
func checkAncestors(dir string) error {
	euid := uint32(os.Geteuid())
	for p := filepath.Dir(dir); ; p = filepath.Dir(p) {
		var st unix.Stat_t
		err := unix.Lstat(p, &st)
		switch {
		case errors.Is(err, unix.ENOENT):
		case err != nil:
			return fmt.Errorf("open store %s: %s: %w", dir, p, err)
		case st.Uid != 0 && st.Uid != euid:
			return fmt.Errorf("open store %s: %w: the directory above it, %s, belongs to uid %d, who could replace the store: keep the store below directories of root or yourself", dir, ErrUnsafeDir, p, st.Uid)
		case st.Mode&0o022 != 0 && st.Mode&unix.S_ISVTX == 0:
			return fmt.Errorf("open store %s: %w: the directory above it, %s, is writable by group or others (mode %04o, not sticky), who could replace the store: chmod go-w %s, or keep the store elsewhere", dir, ErrUnsafeDir, p, st.Mode&0o7777, p)
		}
		if p == filepath.Dir(p) {
			return nil
		}
	}
}

// checkPrivateDir refuses a directory of the store (the store itself, data/) that does not
// belong to the user or that group or others can write. what names it in messages.
func checkPrivateDir(dir, path, what string, st *unix.Stat_t) error {
	euid := uint32(os.Geteuid())
	if st.Uid != euid {
		return fmt.Errorf("open store %s: %w: %s belongs to uid %d, not to the user running lmfs (uid %d), who could plant files in it: run lmfs as its owner, or chown -R %d %s", dir, ErrUnsafeDir, what, st.Uid, euid, euid, path)
	}
	if st.Mode&0o022 != 0 {
		return fmt.Errorf("open store %s: %w: %s is writable by group or others (mode %04o), who could plant files in it: chmod go-w %s", dir, ErrUnsafeDir, what, st.Mode&0o7777, path)
	}
	return nil
}

// checkStoreDir checks an existing store directory and the names in it (see above).
func checkStoreDir(dir string) error {
	if err := checkAncestors(dir); err != nil {
		return err
	}
	var st unix.Stat_t
	if err := unix.Lstat(dir, &st); err != nil {
		return fmt.Errorf("open store %s: %w", dir, err)
	}
	if st.Mode&unix.S_IFMT == unix.S_IFLNK {
		return fmt.Errorf("open store %s: %w: it is a symlink that leads nowhere", dir, ErrUnsafeDir)
	}
	if err := checkPrivateDir(dir, dir, "the store directory", &st); err != nil {
		return err
	}
	sub := filepath.Join(dir, segment.Subdir)
	dirs := []string{dir} // grows by data/ while it is walked
	for i := 0; i < len(dirs); i++ {
		d := dirs[i]
		ents, err := os.ReadDir(d)
		if err != nil {
			return fmt.Errorf("open store %s: %w", dir, err)
		}
		for _, e := range ents {
			p := filepath.Join(d, e.Name())
			rel, _ := filepath.Rel(dir, p)
			var est unix.Stat_t
			if err := unix.Lstat(p, &est); err != nil {
				if errors.Is(err, unix.ENOENT) {
					continue // removed meanwhile (a stale socket, a temporary marker)
				}
				return fmt.Errorf("open store %s: %w", dir, err)
			}
			switch est.Mode & unix.S_IFMT {
			case unix.S_IFLNK:
				return fmt.Errorf("open store %s: %w: %s is a symlink, which lmfs never makes (another user may have planted it): remove it", dir, ErrUnsafeDir, rel)
			case unix.S_IFDIR:
				if p == sub {
					if err := checkPrivateDir(dir, p, "its data/ directory", &est); err != nil {
						return err
					}
					dirs = append(dirs, p)
				}
				continue // lmfs uses no other directory
			}
			if est.Uid != st.Uid {
				return fmt.Errorf("open store %s: %w: %s belongs to uid %d, not to the store's owner (uid %d): chown %d %s, or remove it if it is not the store's", dir, ErrUnsafeDir, rel, est.Uid, st.Uid, st.Uid, p)
			}
			if est.Mode&unix.S_IFMT == unix.S_IFREG && est.Nlink > 1 {
				return fmt.Errorf("open store %s: %w: %s has %d hard links, which lmfs never makes (it may be another file's name): remove it if it is not the store's", dir, ErrUnsafeDir, rel, est.Nlink)
			}
		}
	}
	return nil
}

// tightenStoreDir takes group and other permissions away from a checked store directory,
// its data/ directory and the files in them.
func tightenStoreDir(dir string) error {
	for _, d := range []string{dir, filepath.Join(dir, segment.Subdir)} {
		ents, err := os.ReadDir(d)
		if errors.Is(err, fs.ErrNotExist) && d != dir {
			continue
		}
		if err != nil {
			return fmt.Errorf("open store %s: %w", dir, err)
		}
		for _, e := range ents {
			p := filepath.Join(d, e.Name())
			var st unix.Stat_t
			if unix.Lstat(p, &st) != nil || st.Mode&unix.S_IFMT == unix.S_IFLNK || st.Mode&unix.S_IFMT == unix.S_IFDIR || st.Mode&0o077 == 0 {
				continue // gone, checked already, or private
			}
			if err := os.Chmod(p, os.FileMode(st.Mode&0o700)); err != nil {
				return fmt.Errorf("open store %s: take group and other permissions away: %w", dir, err)
			}
		}
		var st unix.Stat_t
		if err := unix.Lstat(d, &st); err == nil && st.Mode&0o077 != 0 {
			if err := os.Chmod(d, 0o700); err != nil {
				return fmt.Errorf("open store %s: make it private (0700): %w", dir, err)
			}
		}
	}
	return nil
}

// restrictUmask makes files and directories this process creates from now on private to
// its user (see above). It only ever takes bits away from the umask.
func restrictUmask() {
	old := syscall.Umask(0o077)
	syscall.Umask(old | 0o077)
}

// openNoFollow opens a file of the store by name, never through a symlink.
func openNoFollow(path string, flag int, perm os.FileMode) (*os.File, error) {
	return os.OpenFile(path, flag|syscall.O_NOFOLLOW|syscall.O_CLOEXEC, perm)
}

// syncDir makes the names in dir (created, renamed, removed) durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	return err
}

// writeFileAtomic replaces dir/name with data so that after a crash the file holds either
// its old content or all of data, never a prefix: a temporary file beside it (made new,
// never through a symlink, 0600) is written and fsynced, renamed over the name, and the
// directory is fsynced.
func writeFileAtomic(dir, name string, data []byte) error {
	tmp := filepath.Join(dir, name+tmpSuffix)
	os.Remove(tmp) // left by a crash; Remove never follows a symlink
	f, err := openNoFollow(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("write %s: %w", name, err)
	}
	_, err = f.Write(data)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, filepath.Join(dir, name))
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("write %s: %w", name, err)
	}
	if err := syncDir(dir); err != nil {
		return fmt.Errorf("write %s: sync directory: %w", name, err)
	}
	return nil
}

// tmpSuffix names the temporary file writeFileAtomic renames into place.
const tmpSuffix = ".tmp"

// lockStoreDir takes Badger's flock on the store directory (shared, or exclusive), without
// waiting: ErrLocked when a running lmfs holds it. Checks and repairs before Badger opens the
// store run under it, so they never touch files a live server is using. The caller wraps the
// error with what it was doing.
func lockStoreDir(dir string, exclusive bool) (release func(), err error) {
	d, err := os.Open(dir)
	if err != nil {
		return nil, err
	}
	how := unix.LOCK_SH
	if exclusive {
		how = unix.LOCK_EX
	}
	if err := unix.Flock(int(d.Fd()), how|unix.LOCK_NB); err != nil {
		d.Close()
		if errors.Is(err, unix.EWOULDBLOCK) {
			return nil, ErrLocked
		}
		return nil, fmt.Errorf("lock %s: %w", dir, err)
	}
	return func() {
		unix.Flock(int(d.Fd()), unix.LOCK_UN)
		d.Close()
	}, nil
}
