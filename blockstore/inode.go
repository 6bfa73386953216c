package blockstore

import (
	"encoding/binary"
	"fmt"
	"syscall"
)

// RootIno is the inode number of the root directory.
const RootIno = 1

// Inode is the metadata of one file, directory, symlink or special file.
type Inode struct {
	Ino   uint64
	Mode  uint32 // type bits (syscall.S_IFMT) and permission bits
	Uid   uint32
	Gid   uint32
	Nlink uint32
	Rdev  uint32
	Size  uint64
	Atime int64 // nanoseconds since the epoch
	Mtime int64
	Ctime int64
	// NextCookie is the readdir offset the next entry of a directory gets (dirs only).
	NextCookie uint64
	// Parent is a directory's parent (directories have exactly one; files may have many).
	Parent uint64
	// Target is a symlink's target.
	Target string
}

// IsDir reports whether the inode is a directory.
func (n *Inode) IsDir() bool { return n.Mode&syscall.S_IFMT == syscall.S_IFDIR }

// IsReg reports whether the inode is a regular file.
func (n *Inode) IsReg() bool { return n.Mode&syscall.S_IFMT == syscall.S_IFREG }

// clearSetID drops set-user-ID, and set-group-ID where it means "executable by the group"
// (without group execute it marks mandatory locking and stays): what a change of a file's
// content by anyone does, as on local file systems.
func (n *Inode) clearSetID() {
	n.Mode &^= syscall.S_ISUID
	if n.Mode&syscall.S_IXGRP != 0 {
		n.Mode &^= syscall.S_ISGID
	}
}

const inodeVersion = 1
const inodeFixed = 1 + 4*5 + 8 + 8*3 + 8 + 8

func (n *Inode) marshal() []byte {
	b := make([]byte, inodeFixed, inodeFixed+len(n.Target))
	b[0] = inodeVersion
	le := binary.LittleEndian
	le.PutUint32(b[1:], n.Mode)
	le.PutUint32(b[5:], n.Uid)
	le.PutUint32(b[9:], n.Gid)
	le.PutUint32(b[13:], n.Nlink)
	le.PutUint32(b[17:], n.Rdev)
	le.PutUint64(b[21:], n.Size)
	le.PutUint64(b[29:], uint64(n.Atime))
	le.PutUint64(b[37:], uint64(n.Mtime))
	le.PutUint64(b[45:], uint64(n.Ctime))
	le.PutUint64(b[53:], n.NextCookie)
	le.PutUint64(b[61:], n.Parent)
	return append(b, n.Target...)
}

func unmarshalInode(ino uint64, b []byte) (Inode, error) {
	if len(b) == 0 {
		// Never stored empty: Badger hands back no bytes for a value it cannot read.
		return Inode{}, fmt.Errorf("inode %d: record unreadable (empty; is the value log damaged?)", ino)
	}
	if len(b) < inodeFixed || b[0] != inodeVersion {
		return Inode{}, fmt.Errorf("inode %d: bad record (%d bytes, version %d)", ino, len(b), firstByte(b))
	}
	le := binary.LittleEndian
	return Inode{
		Ino:        ino,
		Mode:       le.Uint32(b[1:]),
		Uid:        le.Uint32(b[5:]),
		Gid:        le.Uint32(b[9:]),
		Nlink:      le.Uint32(b[13:]),
		Rdev:       le.Uint32(b[17:]),
		Size:       le.Uint64(b[21:]),
		Atime:      int64(le.Uint64(b[29:])),
		Mtime:      int64(le.Uint64(b[37:])),
		Ctime:      int64(le.Uint64(b[45:])),
		NextCookie: le.Uint64(b[53:]),
		Parent:     le.Uint64(b[61:]),
		Target:     string(b[inodeFixed:]),
	}, nil
}

func firstByte(b []byte) int {
	if len(b) == 0 {
		return -1
	}
	return int(b[0])
}

// dirent is the value of a directory entry key.
type dirent struct {
	Ino    uint64
	Mode   uint32 // type bits only
	Cookie uint64
}

func (d dirent) marshal() []byte {
	b := make([]byte, 20)
	binary.LittleEndian.PutUint64(b, d.Ino)
	binary.LittleEndian.PutUint32(b[8:], d.Mode)
	binary.LittleEndian.PutUint64(b[12:], d.Cookie)
	return b
}

func unmarshalDirent(b []byte) (dirent, error) {
	if len(b) != 20 {
		return dirent{}, fmt.Errorf("bad directory entry (%d bytes)", len(b))
	}
	return dirent{
		Ino:    binary.LittleEndian.Uint64(b),
		Mode:   binary.LittleEndian.Uint32(b[8:]),
		Cookie: binary.LittleEndian.Uint64(b[12:]),
	}, nil
}

// parseSlot decodes a readdir slot value (orderValue): the child's inode, type bits and name.
func parseSlot(v []byte) (DirEntry, error) {
	if len(v) < 12 {
		return DirEntry{}, fmt.Errorf("short readdir slot (%d bytes)", len(v))
	}
	return DirEntry{Name: string(v[12:]), Ino: binary.LittleEndian.Uint64(v), Mode: binary.LittleEndian.Uint32(v[8:])}, nil
}
