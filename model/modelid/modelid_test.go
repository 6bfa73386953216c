package modelid

import (
	"crypto/sha256"
	"testing"
)

// The short id is part of every LM block's payload: it must stay the first 4 bytes of the
// file's SHA-256, big endian.
func TestShort(t *testing.T) {
	file := []byte("a model file")
	sum := sha256.Sum256(file)
	want := uint32(sum[0])<<24 | uint32(sum[1])<<16 | uint32(sum[2])<<8 | uint32(sum[3])
	if got := Short(file); got != want {
		t.Fatalf("Short = %08x, want %08x", got, want)
	}
	if Of(file) != ID(sum) || Of(file).Short() != want {
		t.Fatal("Of disagrees with SHA-256")
	}
}
