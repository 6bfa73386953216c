package fs

import (
	"context"
	"syscall"

	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"

	"lmfs/blockstore"
)

// node is one inode as the kernel sees it. It holds no state beyond its number: attributes
// live in the store.
type node struct {
	gofs.Inode
	fs *FS
}

func (n *node) ino() uint64 { return n.StableAttr().Ino }

var (
	_ gofs.NodeLookuper       = (*node)(nil)
	_ gofs.NodeGetattrer      = (*node)(nil)
	_ gofs.NodeSetattrer      = (*node)(nil)
	_ gofs.NodeCreater        = (*node)(nil)
	_ gofs.NodeMkdirer        = (*node)(nil)
	_ gofs.NodeMknoder        = (*node)(nil)
	_ gofs.NodeSymlinker      = (*node)(nil)
	_ gofs.NodeReadlinker     = (*node)(nil)
	_ gofs.NodeLinker         = (*node)(nil)
	_ gofs.NodeUnlinker       = (*node)(nil)
	_ gofs.NodeRmdirer        = (*node)(nil)
	_ gofs.NodeRenamer        = (*node)(nil)
	_ gofs.NodeOpener         = (*node)(nil)
	_ gofs.NodeOpendirHandler = (*node)(nil)
	_ gofs.NodeStatfser       = (*node)(nil)
	_ gofs.NodeFsyncer        = (*node)(nil)
)

// child wraps an inode of the store as a go-fuse inode (go-fuse reuses a live one with the
// same number).
func (n *node) child(ctx context.Context, in *blockstore.Inode, out *fuse.EntryOut) *gofs.Inode {
	n.fs.fillAttr(in, &out.Attr)
	out.NodeId = in.Ino
	out.Generation = 1
	return n.NewInode(ctx, &node{fs: n.fs}, gofs.StableAttr{Mode: in.Mode & syscall.S_IFMT, Ino: in.Ino, Gen: 1})
}

func (n *node) Lookup(ctx context.Context, name string, out *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	in, err := n.fs.store.Lookup(n.ino(), name)
	if err != nil {
		return nil, n.fs.errno("lookup", err)
	}
	return n.child(ctx, &in, out), 0
}

func (n *node) Getattr(ctx context.Context, f gofs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	in, err := n.fs.store.GetInode(n.ino())
	if err != nil {
		return n.fs.errno("getattr", err)
	}
	n.fs.fillAttr(&in, &out.Attr)
	return 0
}

func (n *node) Setattr(ctx context.Context, f gofs.FileHandle, in *fuse.SetAttrIn, out *fuse.AttrOut) syscall.Errno {
	st := n.fs.store
	var c blockstore.AttrChange
	if m, ok := in.GetMode(); ok {
		c.Mode = &m
	}
	if u, ok := in.GetUID(); ok {
		c.Uid = &u
	}
	if g, ok := in.GetGID(); ok {
		c.Gid = &g
	}
	if t, ok := in.GetATime(); ok {
		ns := t.UnixNano()
		c.Atime = &ns
	}
	if t, ok := in.GetMTime(); ok {
		ns := t.UnixNano()
		c.Mtime = &ns
	}
	if size, ok := in.GetSize(); ok {
		if _, err := st.Truncate(n.ino(), size); err != nil {
			return n.fs.errno("truncate", err)
		}
	}
	var res blockstore.Inode
	var err error
	if c.Mode != nil || c.Uid != nil || c.Gid != nil || c.Atime != nil || c.Mtime != nil {
		res, err = st.SetAttr(n.ino(), c)
	} else {
		res, err = st.GetInode(n.ino())
	}
	if err != nil {
		return n.fs.errno("setattr", err)
	}
	n.fs.fillAttr(&res, &out.Attr)
	return 0
}

// newNode fills in the caller's ownership, with BSD group inheritance from a set-group-ID
// directory, as local file systems do, and the caller's umask (the store applies it, or the
// directory's default ACL instead).
func (n *node) newNode(ctx context.Context, mode uint32) blockstore.NewNode {
	nn := blockstore.NewNode{Mode: mode}
	if c, ok := fuse.FromContext(ctx); ok {
		nn.Uid, nn.Gid = c.Uid, c.Gid
	}
	if mode&syscall.S_IFMT != syscall.S_IFLNK {
		umask, ok := n.fs.extra.get(ctx)
		if !ok {
			// Every create, mkdir and mknod passes rawFS: not reached. Should it be, the
			// strictest umask errs on the side of no access.
			umask = 0o077
		}
		nn.Umask = umask
	}
	if p, err := n.fs.store.GetInode(n.ino()); err == nil && p.Mode&syscall.S_ISGID != 0 {
		nn.Gid = p.Gid
		if mode&syscall.S_IFMT == syscall.S_IFDIR {
			nn.Mode |= syscall.S_ISGID
		}
	}
	return nn
}

func (n *node) Create(ctx context.Context, name string, flags uint32, mode uint32, out *fuse.EntryOut) (*gofs.Inode, gofs.FileHandle, uint32, syscall.Errno) {
	nn := n.newNode(ctx, syscall.S_IFREG|mode&07777)
	in, err := n.fs.store.Create(n.ino(), name, nn)
	if err != nil {
		return nil, nil, 0, n.fs.errno("create", err)
	}
	ch := n.child(ctx, &in, out)
	n.fs.store.OpenFile(in.Ino)
	return ch, &handle{fs: n.fs, ino: in.Ino}, 0, 0
}

func (n *node) Mkdir(ctx context.Context, name string, mode uint32, out *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	in, err := n.fs.store.Create(n.ino(), name, n.newNode(ctx, syscall.S_IFDIR|mode&07777))
	if err != nil {
		return nil, n.fs.errno("mkdir", err)
	}
	return n.child(ctx, &in, out), 0
}

func (n *node) Mknod(ctx context.Context, name string, mode uint32, dev uint32, out *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	nn := n.newNode(ctx, mode)
	nn.Rdev = dev
	in, err := n.fs.store.Create(n.ino(), name, nn)
	if err != nil {
		return nil, n.fs.errno("mknod", err)
	}
	return n.child(ctx, &in, out), 0
}

func (n *node) Symlink(ctx context.Context, target, name string, out *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	nn := n.newNode(ctx, syscall.S_IFLNK|0o777)
	nn.Target = target
	in, err := n.fs.store.Create(n.ino(), name, nn)
	if err != nil {
		return nil, n.fs.errno("symlink", err)
	}
	return n.child(ctx, &in, out), 0
}

func (n *node) Readlink(ctx context.Context) ([]byte, syscall.Errno) {
	in, err := n.fs.store.GetInode(n.ino())
	if err != nil {
		return nil, n.fs.errno("readlink", err)
	}
	if in.Mode&syscall.S_IFMT != syscall.S_IFLNK {
		return nil, syscall.EINVAL
	}
	return []byte(in.Target), 0
}

func (n *node) Link(ctx context.Context, target gofs.InodeEmbedder, name string, out *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	in, err := n.fs.store.Link(target.EmbeddedInode().StableAttr().Ino, n.ino(), name)
	if err != nil {
		return nil, n.fs.errno("link", err)
	}
	return n.child(ctx, &in, out), 0
}

func (n *node) Unlink(ctx context.Context, name string) syscall.Errno {
	return n.fs.errno("unlink", n.fs.store.Unlink(n.ino(), name))
}

func (n *node) Rmdir(ctx context.Context, name string) syscall.Errno {
	return n.fs.errno("rmdir", n.fs.store.Rmdir(n.ino(), name))
}

func (n *node) Rename(ctx context.Context, name string, newParent gofs.InodeEmbedder, newName string, flags uint32) syscall.Errno {
	np := newParent.EmbeddedInode().StableAttr().Ino
	return n.fs.errno("rename", n.fs.store.Rename(n.ino(), name, np, newName, flags))
}

func (n *node) Open(ctx context.Context, flags uint32) (gofs.FileHandle, uint32, syscall.Errno) {
	// Register the handle before looking at the inode: a concurrent unlink or rename over
	// the last name then keeps the data until this handle closes (or, if its purge came
	// first, the inode is already gone and the open fails).
	n.fs.store.OpenFile(n.ino())
	in, err := n.fs.store.GetInode(n.ino())
	if err != nil {
		n.fs.store.ReleaseFile(n.ino())
		return nil, 0, n.fs.errno("open", err)
	}
	if !in.IsReg() {
		n.fs.store.ReleaseFile(n.ino())
		return nil, 0, syscall.EINVAL
	}
	if flags&syscall.O_TRUNC != 0 && flags&syscall.O_ACCMODE != syscall.O_RDONLY && in.Size > 0 {
		if _, err := n.fs.store.Truncate(n.ino(), 0); err != nil {
			n.fs.store.ReleaseFile(n.ino())
			return nil, 0, n.fs.errno("open", err)
		}
	}
	// Keep the kernel's page cache across opens: only this mount changes the data.
	return &handle{fs: n.fs, ino: in.Ino}, fuse.FOPEN_KEEP_CACHE, 0
}

func (n *node) Statfs(ctx context.Context, out *fuse.StatfsOut) syscall.Errno {
	// Used is what the store's files take on disk, available what new data may still take
	// (blockstore/statfs.go): df shows the store's own space, not the host file system's.
	sp, err := n.fs.store.Space()
	if err != nil {
		return n.fs.errno("statfs", err)
	}
	c := n.fs.store.Counters()
	out.Bsize = sp.Bsize
	out.Frsize = sp.Bsize
	out.Blocks = sp.Blocks
	out.Bfree = sp.Bfree
	out.Bavail = sp.Bavail
	used := uint64(c.Files + c.Dirs + c.Symlinks + c.Others)
	out.Files = used + 1<<32
	out.Ffree = 1 << 32
	out.NameLen = 255
	return 0
}

func (n *node) Fsync(ctx context.Context, f gofs.FileHandle, flags uint32) syscall.Errno {
	return n.fs.errno("fsync", n.fs.store.SyncFile(n.ino()))
}
