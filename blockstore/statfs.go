package blockstore

import (
	"fmt"
	"io/fs"
	"path/filepath"
	"syscall"
)

// What df shows for a mount. The space a store can use is its host file system's, so the
// block size and the room left come from there; but "used" is the store's own: what its files
// take on disk (Badger's index and logs, data segments, garbage GC has not taken back yet),
// not the host's other files. As a ZFS dataset shows it: size = used + available.
//
//	used       the store directory's files, allocated bytes (sparse preallocation not counted)
//	available  the host's space available to unprivileged users, less the store's free-space
//	           reserve (space.go): what new data can still take before writes get ENOSPC;
//	           free is the same (the reserve is never handed out, root's writes included)
//	size       used + available
//
// Logical sizes are what ls and du --apparent-size show; compression shows as "used" growing
// slower than the data written (and st_blocks, usage.go).

// Space is what df shows, in units of Bsize bytes.
type Space struct {
	Bsize                 uint32
	Blocks, Bfree, Bavail uint64
	Used                  int64 // bytes the store's files take on disk
}

// Space returns the store's space as df shows it.
func (s *Store) Space() (Space, error) {
	var st syscall.Statfs_t
	if err := syscall.Statfs(s.dir, &st); err != nil {
		return Space{}, fmt.Errorf("statfs %s: %w", s.dir, err)
	}
	bs := uint64(max(st.Bsize, 1))
	avail := st.Bavail * bs
	if r := uint64(s.SpaceReserve()); avail > r {
		avail -= r
	} else {
		avail = 0
	}
	used := s.DiskUsage()
	return Space{Bsize: uint32(bs), Blocks: (uint64(used) + avail) / bs, Bfree: avail / bs, Bavail: avail / bs, Used: used}, nil
}

// DiskUsage returns the bytes the store directory's files take on disk (allocated, not
// apparent: Badger's preallocated files are sparse). It walks the directory (a few hundred
// files for a store of GiBs: well under a millisecond; statfs is not a hot call).
func (s *Store) DiskUsage() int64 { return DirDiskUsage(s.dir) }

// DirDiskUsage returns the bytes the files under dir take on disk.
func DirDiskUsage(dir string) int64 {
	var total int64
	filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return nil
		}
		info, err := d.Info()
		if err != nil {
			return nil // removed meanwhile (GC)
		}
		if st, ok := info.Sys().(*syscall.Stat_t); ok {
			total += st.Blocks * 512
		} else {
			total += info.Size()
		}
		return nil
	})
	return total
}
