package blockstore

import (
	"os"
	"testing"
)

// BenchmarkWriteSequential writes a mixed file in 1 MiB requests (what the mount sends).
func BenchmarkWriteSequential(b *testing.B) {
	data, err := os.ReadFile("/tmp/mixed.bin")
	if err != nil {
		b.Skip("needs /tmp/mixed.bin")
	}
	data = data[:64<<20]
	s, err := Open(b.TempDir(), Options{Create: true})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	ino, _ := s.Create(RootIno, "f", NewNode{Mode: 0o100644})
	b.SetBytes(int64(len(data)))
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		for off := 0; off < len(data); off += 1 << 20 {
			if err := s.WriteAt(ino.Ino, data[off:off+1<<20], uint64(off)); err != nil {
				b.Fatal(err)
			}
		}
		s.settleAll() // until the last write has landed
	}
}
