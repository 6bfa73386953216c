package fs

import (
	"context"
	"sync"
	"sync/atomic"

	"github.com/hanwen/go-fuse/v2/fuse"
)

// go-fuse's node API drops two things of a request that permissions depend on: the caller's
// umask on create/mkdir/mknod (with FUSE_POSIX_ACL and FUSE_DONT_MASK the kernel leaves the
// umask to the file system, which must ignore it where a default ACL applies), and the kernel's
// "clear set-group-ID" flag on setting an access ACL. rawFS catches them on the raw request and
// hands them to the node method serving the same request, keyed by the request's cancel
// channel: go-fuse gives each request in flight its own, and passes it to the node method in
// its context.
type rawFS struct {
	fuse.RawFileSystem
	extra *requestExtras
	reads *atomic.Int64 // reads in progress, or nil (Options.Reads)
}

// Read counts the read while it is served (decoding LM blocks can take seconds).
func (r *rawFS) Read(cancel <-chan struct{}, in *fuse.ReadIn, buf []byte) (fuse.ReadResult, fuse.Status) {
	if r.reads != nil {
		r.reads.Add(1)
		defer r.reads.Add(-1)
	}
	return r.RawFileSystem.Read(cancel, in, buf)
}

// requestExtras holds, per request in flight, the values the node API does not carry.
type requestExtras struct{ m sync.Map } // <-chan struct{} -> uint32

func (r *requestExtras) put(cancel <-chan struct{}, v uint32) { r.m.Store(cancel, v) }
func (r *requestExtras) drop(cancel <-chan struct{})          { r.m.Delete(cancel) }

// get returns the value put for the request ctx belongs to.
func (r *requestExtras) get(ctx context.Context) (uint32, bool) {
	c, ok := ctx.(*fuse.Context)
	if !ok {
		return 0, false
	}
	v, ok := r.m.Load(c.Cancel)
	if !ok {
		return 0, false
	}
	return v.(uint32), true
}

func (r *rawFS) Create(cancel <-chan struct{}, in *fuse.CreateIn, name string, out *fuse.CreateOut) fuse.Status {
	r.extra.put(cancel, in.Umask)
	defer r.extra.drop(cancel)
	return r.RawFileSystem.Create(cancel, in, name, out)
}

func (r *rawFS) Mkdir(cancel <-chan struct{}, in *fuse.MkdirIn, name string, out *fuse.EntryOut) fuse.Status {
	r.extra.put(cancel, in.Umask)
	defer r.extra.drop(cancel)
	return r.RawFileSystem.Mkdir(cancel, in, name, out)
}

func (r *rawFS) Mknod(cancel <-chan struct{}, in *fuse.MknodIn, name string, out *fuse.EntryOut) fuse.Status {
	r.extra.put(cancel, in.Umask)
	defer r.extra.drop(cancel)
	return r.RawFileSystem.Mknod(cancel, in, name, out)
}

func (r *rawFS) SetXAttr(cancel <-chan struct{}, in *fuse.SetXAttrIn, attr string, data []byte) fuse.Status {
	r.extra.put(cancel, in.SetXAttrFlags)
	defer r.extra.drop(cancel)
	return r.RawFileSystem.SetXAttr(cancel, in, attr, data)
}
