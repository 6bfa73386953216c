package blockstore

import (
	"fmt"
	"testing"
)

// BenchmarkMetadata times the namespace operations whose transactions go through package kv
// (lookups, attribute reads, directory listing, xattr reads, create+unlink), to show the seam
// costs nothing measurable.
func BenchmarkMetadata(b *testing.B) {
	s, err := Open(b.TempDir(), Options{Create: true})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	dir, err := s.Create(RootIno, "d", NewNode{Mode: 0o40755})
	if err != nil {
		b.Fatal(err)
	}
	const files = 1000
	for i := range files {
		n, err := s.Create(dir.Ino, fmt.Sprintf("f%04d", i), NewNode{Mode: 0o100644})
		if err != nil {
			b.Fatal(err)
		}
		if err := s.SetXattr(n.Ino, "user.k", []byte("v"), 0); err != nil {
			b.Fatal(err)
		}
	}
	b.Run("Lookup", func(b *testing.B) {
		for i := 0; b.Loop(); i++ {
			if _, err := s.Lookup(dir.Ino, fmt.Sprintf("f%04d", i%files)); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("GetInode", func(b *testing.B) {
		for i := 0; b.Loop(); i++ {
			if _, err := s.GetInode(dir.Ino + 1 + uint64(i%files)); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("ReadDir1000", func(b *testing.B) {
		for b.Loop() {
			if es, err := s.ReadDir(dir.Ino, 0, 2*files); err != nil || len(es) != files {
				b.Fatal(len(es), err)
			}
		}
	})
	b.Run("GetXattr", func(b *testing.B) {
		for i := 0; b.Loop(); i++ {
			if _, err := s.GetXattr(dir.Ino+1+uint64(i%files), "user.k"); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("CreateUnlink", func(b *testing.B) {
		for b.Loop() {
			if _, err := s.Create(dir.Ino, "tmp", NewNode{Mode: 0o100644}); err != nil {
				b.Fatal(err)
			}
			if err := s.Unlink(dir.Ino, "tmp"); err != nil {
				b.Fatal(err)
			}
		}
	})
}
