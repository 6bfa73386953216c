package crc32c

import "testing"

// The checksum is part of the store format: it must stay CRC-32C (the check value of the
// standard test input "123456789" is 0xE3069283).
func TestChecksum(t *testing.T) {
	if got := Checksum([]byte("123456789")); got != 0xE3069283 {
		t.Fatalf("Checksum(123456789) = %#08x, want 0xe3069283", got)
	}
}
