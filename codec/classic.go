package codec

import (
	"bytes"
	"fmt"
	"io"
	"sync"

	"github.com/andybalholm/brotli"
	"github.com/klauspost/compress/flate"
	"github.com/klauspost/compress/s2"
	"github.com/klauspost/compress/zstd"
)

// Codec compresses and decompresses single block payloads. Implementations are safe for
// concurrent use.
type Codec interface {
	ID() ID
	// Encode appends the payload of raw to dst.
	Encode(dst, raw []byte) []byte
	// Decode appends exactly rawLen bytes decoded from payload to dst, or fails. It never
	// panics and never produces more than rawLen bytes, whatever the payload holds.
	Decode(dst, payload []byte, rawLen int) ([]byte, error)
}

// The classical codecs. Gzip's payload is the raw DEFLATE stream gzip uses: its 18-byte wrapper
// would repeat what the record header already holds (length and checksum).
var (
	RawCodec    Codec = rawCodec{}
	GzipCodec   Codec = newDeflate(flate.BestCompression)
	ZstdCodec   Codec = newZstd(zstd.SpeedBestCompression)
	BrotliCodec Codec = brotliCodec{quality: 11}
	S2Codec     Codec = s2Codec{}
)

// ByID returns the classical codec with that id (not LM, which needs a model).
func ByID(id ID) (Codec, bool) {
	switch id {
	case Raw:
		return RawCodec, true
	case Gzip:
		return GzipCodec, true
	case Zstd:
		return ZstdCodec, true
	case Brotli:
		return BrotliCodec, true
	case S2:
		return S2Codec, true
	}
	return nil, false
}

type rawCodec struct{}

func (rawCodec) ID() ID                        { return Raw }
func (rawCodec) Encode(dst, raw []byte) []byte { return append(dst, raw...) }
func (rawCodec) Decode(dst, payload []byte, rawLen int) ([]byte, error) {
	if len(payload) != rawLen {
		return dst, fmt.Errorf("%w: raw payload of %d bytes, want %d", ErrCorrupt, len(payload), rawLen)
	}
	return append(dst, payload...), nil
}

type deflateCodec struct {
	level   int
	writers sync.Pool
	readers sync.Pool
}

func newDeflate(level int) *deflateCodec {
	return &deflateCodec{level: level}
}

func (d *deflateCodec) ID() ID { return Gzip }

func (d *deflateCodec) Encode(dst, raw []byte) []byte {
	buf := bytes.NewBuffer(dst)
	w, _ := d.writers.Get().(*flate.Writer)
	if w == nil {
		w, _ = flate.NewWriter(buf, d.level) // level is a constant in range: no error
	} else {
		w.Reset(buf)
	}
	w.Write(raw) // writes to a bytes.Buffer cannot fail
	w.Close()
	d.writers.Put(w)
	return buf.Bytes()
}

func (d *deflateCodec) Decode(dst, payload []byte, rawLen int) ([]byte, error) {
	src := bytes.NewReader(payload)
	r, _ := d.readers.Get().(io.ReadCloser)
	if r == nil {
		r = flate.NewReader(src)
	} else {
		r.(flate.Resetter).Reset(src, nil)
	}
	defer d.readers.Put(r)
	return readExactly(dst, r, rawLen)
}

// readExactly appends exactly n bytes from r to dst and checks that r holds no more.
func readExactly(dst []byte, r io.Reader, n int) ([]byte, error) {
	start := len(dst)
	dst = append(dst, make([]byte, n)...)
	if _, err := io.ReadFull(r, dst[start:]); err != nil {
		return dst[:start], fmt.Errorf("%w: %v", ErrCorrupt, err)
	}
	var one [1]byte
	if k, _ := r.Read(one[:]); k != 0 {
		return dst[:start], fmt.Errorf("%w: payload decodes to more than %d bytes", ErrCorrupt, n)
	}
	return dst, nil
}

type zstdCodec struct {
	enc *zstd.Encoder
	dec *zstd.Decoder
}

func newZstd(level zstd.EncoderLevel) zstdCodec {
	enc, err := zstd.NewWriter(nil, zstd.WithEncoderLevel(level), zstd.WithEncoderCRC(false),
		zstd.WithEncoderConcurrency(1), zstd.WithSingleSegment(true), zstd.WithWindowSize(1<<11))
	if err != nil {
		panic(err) // constant options
	}
	dec, err := zstd.NewReader(nil, zstd.WithDecoderConcurrency(0), zstd.WithDecoderMaxMemory(1<<16),
		zstd.WithDecoderMaxWindow(1<<16))
	if err != nil {
		panic(err)
	}
	return zstdCodec{enc: enc, dec: dec}
}

func (z zstdCodec) ID() ID                        { return Zstd }
func (z zstdCodec) Encode(dst, raw []byte) []byte { return z.enc.EncodeAll(raw, dst) }
func (z zstdCodec) Decode(dst, payload []byte, rawLen int) ([]byte, error) {
	start := len(dst)
	out, err := z.dec.DecodeAll(payload, dst)
	if err != nil {
		return dst[:start], fmt.Errorf("%w: %v", ErrCorrupt, err)
	}
	if len(out)-start != rawLen {
		return dst[:start], fmt.Errorf("%w: zstd payload decodes to %d bytes, want %d", ErrCorrupt, len(out)-start, rawLen)
	}
	return out, nil
}

type brotliCodec struct{ quality int }

func (brotliCodec) ID() ID { return Brotli }
func (b brotliCodec) Encode(dst, raw []byte) []byte {
	buf := bytes.NewBuffer(dst)
	w := brotli.NewWriterOptions(buf, brotli.WriterOptions{Quality: b.quality, LGWin: 16})
	w.Write(raw)
	w.Close()
	return buf.Bytes()
}
func (brotliCodec) Decode(dst, payload []byte, rawLen int) ([]byte, error) {
	return readExactly(dst, brotli.NewReader(bytes.NewReader(payload)), rawLen)
}

type s2Codec struct{}

func (s2Codec) ID() ID                        { return S2 }
func (s2Codec) Encode(dst, raw []byte) []byte { return append(dst, s2.Encode(nil, raw)...) }
func (s2Codec) Decode(dst, payload []byte, rawLen int) ([]byte, error) {
	n, err := s2.DecodedLen(payload)
	if err != nil || n != rawLen {
		return dst, fmt.Errorf("%w: s2 payload of %d bytes (err %v), want %d", ErrCorrupt, n, err, rawLen)
	}
	start := len(dst)
	dst = append(dst, make([]byte, rawLen)...)
	if _, err := s2.Decode(dst[start:], payload); err != nil {
		return dst[:start], fmt.Errorf("%w: %v", ErrCorrupt, err)
	}
	return dst, nil
}
