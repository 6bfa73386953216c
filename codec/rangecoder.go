package codec

// Binary arithmetic coder (carry-less, 32-bit range, in the style of lpaq).
//
// Each coded decision is a bit with P(bit=1) = p/65536, p in [1, 65535]: a two-symbol frequency
// table of total 2^16 where both symbols have frequency >= 1. The interval [x1, x2] is split at
//
//	xmid = x1 + floor((x2-x1) * p / 2^16)
//
// (x1 <= xmid < x2 whenever x1 < x2); bit 1 keeps [x1, xmid], bit 0 keeps [xmid+1, x2]. When the
// top bytes of x1 and x2 agree, that byte is final and is shifted out. The encoder and decoder
// run this exact integer recurrence, so they agree on every machine.
//
// Stream end: the decoder reads 0xFF for every byte past the end of its input. The encoder's flush
// therefore writes only the top byte of x1 (x1>>24 followed by 0xFF bytes lies in [x1, x2]
// because x2's top byte is larger), and trailing 0xFF bytes are dropped from the stream: the
// decoder reads them back as padding anyway.

// probMin and probMax bound the probabilities the coder accepts.
const (
	probMin = 1
	probMax = 65535
)

// arithEncoder codes bits into buf.
type arithEncoder struct {
	x1, x2 uint32
	buf    []byte
}

func newArithEncoder(dst []byte) arithEncoder {
	return arithEncoder{x1: 0, x2: 0xFFFFFFFF, buf: dst}
}

// encode codes bit (0 or 1) with P(1) = p/65536, p in [probMin, probMax].
func (e *arithEncoder) encode(bit int, p uint32) {
	xmid := e.x1 + uint32((uint64(e.x2-e.x1)*uint64(p))>>16)
	if bit != 0 {
		e.x2 = xmid
	} else {
		e.x1 = xmid + 1
	}
	for (e.x1^e.x2)&0xFF000000 == 0 {
		e.buf = append(e.buf, byte(e.x2>>24))
		e.x1 <<= 8
		e.x2 = e.x2<<8 | 0xFF
	}
}

// finish flushes the coder and returns the stream appended to the dst given to newArithEncoder.
// start is len(dst) at that time: trailing 0xFF bytes after it are trimmed.
func (e *arithEncoder) finish(start int) []byte {
	if e.x2 != 0xFFFFFFFF {
		// Any value in [x1, x2] identifies the stream; x1>>24 then 0xFF padding is one.
		e.buf = append(e.buf, byte(e.x1>>24))
	}
	b := e.buf
	for len(b) > start && b[len(b)-1] == 0xFF {
		b = b[:len(b)-1]
	}
	return b
}

// arithDecoder decodes bits coded by arithEncoder. It never reads outside src and never fails:
// a corrupt stream decodes to wrong bits (the record checksum catches them).
type arithDecoder struct {
	x1, x2, x uint32
	src       []byte
	pos       int
}

func newArithDecoder(src []byte) arithDecoder {
	d := arithDecoder{x1: 0, x2: 0xFFFFFFFF, src: src}
	for i := 0; i < 4; i++ {
		d.x = d.x<<8 | uint32(d.next())
	}
	return d
}

func (d *arithDecoder) next() byte {
	if d.pos < len(d.src) {
		b := d.src[d.pos]
		d.pos++
		return b
	}
	d.pos++ // count bytes read past the end (diagnostics only)
	return 0xFF
}

// decode returns the next bit, coded with P(1) = p/65536.
func (d *arithDecoder) decode(p uint32) int {
	xmid := d.x1 + uint32((uint64(d.x2-d.x1)*uint64(p))>>16)
	var bit int
	if d.x <= xmid {
		bit = 1
		d.x2 = xmid
	} else {
		d.x1 = xmid + 1
	}
	for (d.x1^d.x2)&0xFF000000 == 0 {
		d.x1 <<= 8
		d.x2 = d.x2<<8 | 0xFF
		d.x = d.x<<8 | uint32(d.next())
	}
	return bit
}
