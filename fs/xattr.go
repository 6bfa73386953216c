package fs

import (
	"context"
	"syscall"

	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"

	"lmfs/blockstore"
)

var (
	_ gofs.NodeGetxattrer    = (*node)(nil)
	_ gofs.NodeSetxattrer    = (*node)(nil)
	_ gofs.NodeListxattrer   = (*node)(nil)
	_ gofs.NodeRemovexattrer = (*node)(nil)
)

// Getxattr follows getxattr(2): with a too small dest it reports the size needed and ERANGE.
func (n *node) Getxattr(ctx context.Context, attr string, dest []byte) (uint32, syscall.Errno) {
	v, err := n.fs.store.GetXattr(n.ino(), attr)
	if err != nil {
		return 0, n.fs.errno("getxattr", err)
	}
	if len(dest) < len(v) {
		return uint32(len(v)), syscall.ERANGE
	}
	return uint32(copy(dest, v)), 0
}

func (n *node) Setxattr(ctx context.Context, attr string, data []byte, flags uint32) syscall.Errno {
	flags &= blockstore.XattrCreate | blockstore.XattrReplace
	if kf, ok := n.fs.extra.get(ctx); ok && kf&fuse.SETXATTR_ACL_KILL_SGID != 0 && attr == blockstore.XattrACLAccess {
		flags |= blockstore.XattrACLKillSGID
	}
	return n.fs.errno("setxattr", n.fs.store.SetXattr(n.ino(), attr, data, flags))
}

func (n *node) Listxattr(ctx context.Context, dest []byte) (uint32, syscall.Errno) {
	names, err := n.fs.store.ListXattr(n.ino())
	if err != nil {
		return 0, n.fs.errno("listxattr", err)
	}
	size := 0
	for _, name := range names {
		size += len(name) + 1
	}
	if len(dest) < size {
		return uint32(size), syscall.ERANGE
	}
	off := 0
	for _, name := range names {
		off += copy(dest[off:], name)
		dest[off] = 0
		off++
	}
	return uint32(size), 0
}

func (n *node) Removexattr(ctx context.Context, attr string) syscall.Errno {
	return n.fs.errno("removexattr", n.fs.store.RemoveXattr(n.ino(), attr))
}
