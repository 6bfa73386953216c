package fs

import (
	"context"
	"syscall"

	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"

	"lmfs/blockstore"
	"lmfs/codec"
)

// handle is an open regular file. Data is not buffered here: the store queues each write and
// commits it behind the reply (blockstore.WriteAt), ordered before every later operation on
// the file (concurrent handles of one file always agree); close and fsync report a write that
// failed after it was accepted.
type handle struct {
	fs  *FS
	ino uint64
}

var (
	_ gofs.FileReader    = (*handle)(nil)
	_ gofs.FileWriter    = (*handle)(nil)
	_ gofs.FileFlusher   = (*handle)(nil)
	_ gofs.FileFsyncer   = (*handle)(nil)
	_ gofs.FileReleaser  = (*handle)(nil)
	_ gofs.FileGetattrer = (*handle)(nil)
	_ gofs.FileLseeker   = (*handle)(nil)
	_ gofs.FileAllocater = (*handle)(nil)
)

// Allocate implements fallocate(2) modes 0, KEEP_SIZE, PUNCH_HOLE (with KEEP_SIZE, as Linux
// requires) and ZERO_RANGE (with or without KEEP_SIZE). Blocks are stored compressed when
// written, so there is no space to reserve: mode 0 only extends the size (the new range is a
// hole of zeros, as glibc's posix_fallocate fallback would make it), KEEP_SIZE changes
// nothing. All-zero blocks are holes, so punching and zeroing are one store operation that
// gives the range's space back (blockstore.ZeroRange); ZERO_RANGE without KEEP_SIZE also grows
// the file to the range's end. COLLAPSE_RANGE, INSERT_RANGE, UNSHARE_RANGE and the others are
// not supported.
func (h *handle) Allocate(ctx context.Context, off uint64, size uint64, mode uint32) syscall.Errno {
	const (
		keepSize  = 0x01 // FALLOC_FL_KEEP_SIZE
		punchHole = 0x02 // FALLOC_FL_PUNCH_HOLE
		zeroRange = 0x10 // FALLOC_FL_ZERO_RANGE
	)
	switch mode {
	case 0:
		_, err := h.fs.store.Allocate(h.ino, off+size)
		return h.fs.errno("fallocate", err)
	case keepSize:
		return 0
	case punchHole | keepSize, zeroRange, zeroRange | keepSize:
		_, err := h.fs.store.ZeroRange(h.ino, off, size, mode&keepSize != 0)
		if err != nil {
			h.logBlockError(err)
		}
		return h.fs.errno("fallocate", err)
	}
	return syscall.EOPNOTSUPP
}

func (h *handle) Read(ctx context.Context, dest []byte, off int64) (fuse.ReadResult, syscall.Errno) {
	// The kernel interrupts a request whenever the reader gets any signal (Go's preemption
	// signal included), and a regular file's read that fails with EINTR breaks programs
	// (TestCompactorRace saw it): reads run to the end, never cancelled.
	n, err := h.fs.store.ReadAt(h.ino, dest, uint64(off))
	if err != nil {
		h.logBlockError(err)
		return nil, h.fs.errno("read", err)
	}
	return fuse.ReadResultData(dest[:n]), 0
}

func (h *handle) Write(ctx context.Context, data []byte, off int64) (uint32, syscall.Errno) {
	if off < 0 {
		return 0, syscall.EINVAL
	}
	if err := h.fs.store.WriteAt(h.ino, data, uint64(off)); err != nil {
		h.logBlockError(err)
		return 0, h.fs.errno("write", err)
	}
	return uint32(len(data)), 0
}

// logBlockError names the file of a block that failed its check.
func (h *handle) logBlockError(err error) {
	if be, ok := err.(*blockstore.BlockError); ok {
		h.fs.log.Error("read failed: block does not match its checksum", "inode", be.Ino, "block", be.Block,
			"file_offset", be.Block*codec.BlockSize, "err", be.Err)
	}
}

func (h *handle) Flush(ctx context.Context) syscall.Errno {
	return h.fs.errno("close", h.fs.store.FlushFile(h.ino))
}

func (h *handle) Fsync(ctx context.Context, flags uint32) syscall.Errno {
	return h.fs.errno("fsync", h.fs.store.SyncFile(h.ino))
}

func (h *handle) Release(ctx context.Context) syscall.Errno {
	h.fs.store.ReleaseFile(h.ino)
	return 0
}

func (h *handle) Getattr(ctx context.Context, out *fuse.AttrOut) syscall.Errno {
	in, err := h.fs.store.GetInode(h.ino)
	if err != nil {
		return h.fs.errno("getattr", err)
	}
	h.fs.fillAttr(&in, &out.Attr)
	return 0
}

// Lseek supports SEEK_DATA and SEEK_HOLE over the store's sparse blocks.
func (h *handle) Lseek(ctx context.Context, off uint64, whence uint32) (uint64, syscall.Errno) {
	const seekData, seekHole = 3, 4
	if whence != seekData && whence != seekHole {
		return 0, syscall.EINVAL
	}
	pos, err := h.fs.store.SeekData(h.ino, off, whence == seekHole)
	if err != nil {
		return 0, h.fs.errno("lseek", err)
	}
	return pos, 0
}
