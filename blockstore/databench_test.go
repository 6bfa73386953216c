package blockstore

import (
	"math/rand/v2"
	"testing"
)

// BenchmarkDataPath times the hot data path through the store's transactions: reads of a
// group kept inline in Badger and of groups in a data segment, a partial write (read of the
// old block, then a commit), and whole-block writes landing through the write-behind commit.
// Compare allocs/op across changes to the KV seam: each allocation is work on every request.
func BenchmarkDataPath(b *testing.B) {
	s, err := Open(b.TempDir(), Options{Create: true})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	rnd := rand.New(rand.NewPCG(1, 2))
	random := func(n int) []byte {
		p := make([]byte, n)
		for i := range p {
			p[i] = byte(rnd.Uint32())
		}
		return p
	}
	small, err := s.Create(RootIno, "small", NewNode{Mode: 0o100644})
	if err != nil {
		b.Fatal(err)
	}
	if err := s.WriteAt(small.Ino, random(1000), 0); err != nil { // one group, inline
		b.Fatal(err)
	}
	big, err := s.Create(RootIno, "big", NewNode{Mode: 0o100644})
	if err != nil {
		b.Fatal(err)
	}
	const bigSize = 4 << 20
	if err := s.WriteAt(big.Ino, random(bigSize), 0); err != nil { // groups in a data segment
		b.Fatal(err)
	}
	s.settleAll()
	b.Run("ReadAtInline1K", func(b *testing.B) {
		dst := make([]byte, 1000)
		for b.Loop() {
			if n, err := s.ReadAt(small.Ino, dst, 0); err != nil || n != len(dst) {
				b.Fatal(n, err)
			}
		}
	})
	b.Run("ReadAtSegment64K", func(b *testing.B) {
		dst := make([]byte, 64<<10)
		for i := 0; b.Loop(); i++ {
			off := uint64(i*len(dst)) % bigSize
			if n, err := s.ReadAt(big.Ino, dst, off); err != nil || n != len(dst) {
				b.Fatal(n, err)
			}
		}
	})
	b.Run("PartialWrite", func(b *testing.B) {
		p := random(100)
		for i := 0; b.Loop(); i++ {
			if err := s.WriteAt(small.Ino, p, uint64(i%800)); err != nil {
				b.Fatal(err)
			}
			s.settle(small.Ino)
		}
	})
	b.Run("WriteCommit32K", func(b *testing.B) {
		p := random(32 << 10)
		for i := 0; b.Loop(); i++ {
			if err := s.WriteAt(big.Ino, p, uint64(i*len(p))%bigSize); err != nil {
				b.Fatal(err)
			}
			s.settle(big.Ino)
		}
	})
}
