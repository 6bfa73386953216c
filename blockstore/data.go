// File data: the vocabulary the data path shares (block and group arithmetic, BlockError).
// The path itself, one room each:
//
//	read.go         ReadAt, SeekData, blockAt: decoding the blocks a read covers
//	write.go        WriteAt: building the new block records of a write
//	writebehind.go  the per-stripe queues, committers and group commit; settle, fsync
//	groupio.go      building, storing and reading block-group values (inline or in segments)
//	truncate.go     Truncate and the bounded purge of groups; allocate.go, punch.go beside it
//	locks.go        the per-inode (striped) locks every data operation holds
//	group.go        the group value format; segref.go, references into data segments

package blockstore

import (
	"fmt"
	"syscall"

	"lmfs/blockstore/kv"
	"lmfs/codec"
)

const bs = codec.BlockSize

// maxWriteChunk bounds the bytes one write transaction carries (Badger limits batch sizes).
const maxWriteChunk = 1 << 20

// purgeChunk bounds the keys one cleanup transaction deletes.
const purgeChunk = 8192

// purgeGroups bounds the block groups one cleanup transaction deletes (3 keys each).
const purgeGroups = purgeChunk / 4

// BlockError reports a block that could not be read back intact. It wraps syscall.EIO.
type BlockError struct {
	Ino, Block uint64
	Err        error
}

func (e *BlockError) Error() string {
	return fmt.Sprintf("inode %d block %d: %v", e.Ino, e.Block, e.Err)
}
func (e *BlockError) Unwrap() []error { return []error{syscall.EIO, e.Err} }

// getFile returns the inode of a regular file (EISDIR for a directory, EINVAL for others).
func getFile(txn kv.Txn, ino uint64) (Inode, error) {
	n, err := loadInode(txn, ino)
	switch {
	case err != nil:
		return n, err
	case n.IsDir():
		return n, syscall.EISDIR
	case !n.IsReg():
		return n, syscall.EINVAL
	}
	return n, nil
}

// blockRange returns the blocks covering [off, off+n).
func blockRange(off, n uint64) (first, last uint64) {
	return off / bs, (off + n - 1) / bs
}

// blocksFor is the number of blocks a file of size bytes spans.
func blocksFor(size uint64) uint64 { return (size + bs - 1) / bs }

// groupsFor is the number of block groups a file of size bytes spans.
func groupsFor(size uint64) uint64 { return (blocksFor(size) + GroupBlocks - 1) / GroupBlocks }

// blockError logs a block that failed its check and returns the error reads report (EIO).
func (s *Store) blockError(ino, blk uint64, err error) error {
	s.log.Error("block failed its check: read refused", "inode", ino, "block", blk, "err", err)
	return &BlockError{Ino: ino, Block: blk, Err: err}
}

// deleteKeys deletes keys in txn.
func deleteKeys(txn kv.Txn, keys ...[]byte) error {
	for _, k := range keys {
		if err := txn.Delete(k); err != nil {
			return err
		}
	}
	return nil
}
