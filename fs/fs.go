// Package fs serves a blockstore.Store as a FUSE file system through go-fuse's fs API. It
// only translates kernel requests into store calls: block arithmetic, coding and persistence
// live in blockstore and codec.
//
// Kernel caches: attributes and entries are cached for AttrTimeout/EntryTimeout. Every change
// goes through this one mount, and the kernel updates its own copy on the writes and renames it
// sends, so a short timeout is safe. Getattr always reports the store's current size (writes
// are not buffered here).
package fs

import (
	"context"
	"errors"
	"log/slog"
	"sync/atomic"
	"syscall"
	"time"

	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"

	"lmfs/blockstore"
)

// FS is the file system over one store.
type FS struct {
	store *blockstore.Store
	log   *slog.Logger
	extra requestExtras // what a request says that go-fuse's node API does not pass on
}

// Options configure Mount.
type Options struct {
	// MountOptions are passed to the kernel (-o), e.g. allow_other, default_permissions.
	MountOptions []string
	AllowOther   bool
	Debug        bool
	Logger       *slog.Logger
	// Reads, when set, counts the reads being served (a shutdown says what it waits for).
	Reads *atomic.Int64
}

// Mount serves store at mountpoint and returns once the kernel mount is ready.
func Mount(mountpoint string, store *blockstore.Store, o Options) (*fuse.Server, error) {
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	f := &FS{store: store, log: o.Logger}
	root := &node{fs: f}
	attrTimeout := time.Second
	entryTimeout := time.Second
	negTimeout := time.Duration(0)
	opts := &gofs.Options{
		MountOptions: fuse.MountOptions{
			AllowOther:   o.AllowOther,
			Options:      o.MountOptions,
			FsName:       store.Dir(),
			Name:         "lmfs",
			MaxWrite:     1 << 20,
			MaxReadAhead: 1 << 20,
			DirectMount:  syscall.Geteuid() == 0,
			Debug:        o.Debug,
			// Attributes and data the kernel caches stay valid: only this mount changes them.
			ExplicitDataCacheControl: false,
			MaxBackground:            64,
			// Reads answer with bytes in memory (decoded blocks), which go-fuse cannot
			// splice: each 1 MiB read only grew a pipe past the kernel's limit and logged
			// "trySplice: ... max pipe size" before falling back to a plain write.
			DisableSplice: true,
			// POSIX ACLs: the kernel enforces them and caches them; the store keeps mode and
			// ACL in sync and applies default ACLs on create. With ACLs the umask is ours to
			// apply (DONT_MASK: the kernel sends the mode unmasked and the umask beside it),
			// and SETXATTR_EXT carries the kernel's "clear set-group-ID" on ACL changes.
			EnableAcl:         true,
			ExtraCapabilities: fuse.CAP_DONT_MASK | fuse.CAP_SETXATTR_EXT,
		},
		// Permission bits 0 are mode 0000 (go-fuse would show them as 0644/0755).
		NullPermissions: true,
		EntryTimeout:    &entryTimeout,
		AttrTimeout:     &attrTimeout,
		NegativeTimeout: &negTimeout,
		RootStableAttr:  &gofs.StableAttr{Ino: blockstore.RootIno, Mode: syscall.S_IFDIR},
	}
	// gofs.Mount, with rawFS between the kernel and go-fuse's node API (request.go).
	raw := &rawFS{RawFileSystem: gofs.NewNodeFS(root, opts), extra: &f.extra, reads: o.Reads}
	srv, err := fuse.NewServer(raw, mountpoint, &opts.MountOptions)
	if err != nil {
		return nil, err
	}
	go srv.Serve()
	if err := srv.WaitMount(); err != nil {
		return nil, err // as gofs.Mount: the serve loop ends with the failed mount
	}
	return srv, nil
}

// errno maps a store error to what the kernel gets. Errors that are not errno values are I/O
// errors and are logged, since the caller only sees EIO.
func (f *FS) errno(op string, err error) syscall.Errno {
	if err == nil {
		return 0
	}
	var be *blockstore.BlockError
	if errors.As(err, &be) {
		return syscall.EIO
	}
	var e syscall.Errno
	if errors.As(err, &e) {
		return e
	}
	if errors.Is(err, context.Canceled) {
		return syscall.EINTR
	}
	f.log.Error("operation failed", "op", op, "err", err)
	return syscall.EIO
}

// fillAttr copies inode attributes into a FUSE attribute record.
//
// st_blocks of a regular file is what its block records take in the store (codec headers and
// payloads, pending raw records included, holes nothing), in 512-byte units, as ZFS reports a
// compressed file's allocation: du on the mount shows what compression saved, and ls -s, df
// and du agree. The store keeps the figure current for files it has summed once
// (blockstore/usage.go, which says what it costs). Other inodes live in Badger's index, not
// in blocks: their size, as before.
func (f *FS) fillAttr(n *blockstore.Inode, out *fuse.Attr) {
	out.Ino = n.Ino
	out.Mode = n.Mode
	out.Nlink = n.Nlink
	out.Uid = n.Uid
	out.Gid = n.Gid
	out.Rdev = n.Rdev
	out.Size = n.Size
	out.Blksize = 4096
	out.Blocks = (n.Size + 511) / 512
	if n.IsReg() {
		stored, err := f.store.FileStored(n.Ino, n.Size)
		if err == nil {
			out.Blocks = (uint64(stored) + 511) / 512
		} else {
			f.log.Debug("getattr: stored size unknown; st_blocks from the file size", "inode", n.Ino, "err", err)
		}
	}
	out.Atime, out.Atimensec = split(n.Atime)
	out.Mtime, out.Mtimensec = split(n.Mtime)
	out.Ctime, out.Ctimensec = split(n.Ctime)
}

func split(ns int64) (uint64, uint32) {
	return uint64(ns / 1e9), uint32(ns % 1e9)
}
