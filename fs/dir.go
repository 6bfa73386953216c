package fs

import (
	"context"
	"syscall"

	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"

	"lmfs/blockstore"
)

// dirHandle lists a directory page by page. Offsets are the store's entry cookies, so a
// listing resumed at any offset (telldir/seekdir, NFS-style restarts) continues after that
// entry even while entries are added and removed.
type dirHandle struct {
	n      *node
	cursor uint64 // cookie of the last entry returned (0: start)
	buf    []blockstore.DirEntry
	eof    bool
}

const dirPage = 512

var (
	_ gofs.FileReaddirenter = (*dirHandle)(nil)
	_ gofs.FileSeekdirer    = (*dirHandle)(nil)
	_ gofs.FileFsyncdirer   = (*dirHandle)(nil)
)

func (n *node) OpendirHandle(ctx context.Context, flags uint32) (gofs.FileHandle, uint32, syscall.Errno) {
	return &dirHandle{n: n}, 0, 0
}

func (d *dirHandle) Readdirent(ctx context.Context) (*fuse.DirEntry, syscall.Errno) {
	switch d.cursor {
	case 0:
		d.cursor = 1
		return &fuse.DirEntry{Name: ".", Mode: syscall.S_IFDIR, Ino: d.n.ino(), Off: 1}, 0
	case 1:
		d.cursor = 2
		parent := uint64(blockstore.RootIno)
		if in, err := d.n.fs.store.GetInode(d.n.ino()); err == nil && in.Parent != 0 {
			parent = in.Parent
		}
		return &fuse.DirEntry{Name: "..", Mode: syscall.S_IFDIR, Ino: parent, Off: 2}, 0
	}
	if len(d.buf) == 0 {
		if d.eof {
			return nil, 0
		}
		ents, err := d.n.fs.store.ReadDir(d.n.ino(), d.cursor, dirPage)
		if err != nil {
			return nil, d.n.fs.errno("readdir", err)
		}
		d.buf = ents
		d.eof = len(ents) < dirPage
		if len(ents) == 0 {
			return nil, 0
		}
	}
	e := d.buf[0]
	d.buf = d.buf[1:]
	d.cursor = e.Cookie
	return &fuse.DirEntry{Name: e.Name, Mode: e.Mode, Ino: e.Ino, Off: e.Cookie}, 0
}

func (d *dirHandle) Seekdir(ctx context.Context, off uint64) syscall.Errno {
	d.cursor = off
	d.buf = nil
	d.eof = false
	return 0
}

func (d *dirHandle) Fsyncdir(ctx context.Context, flags uint32) syscall.Errno {
	return d.n.fs.errno("fsyncdir", d.n.fs.store.Sync())
}
