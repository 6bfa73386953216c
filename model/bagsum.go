package model

// The bag sum of FORMAT.md (a0 = bag_bias + the K+G bag rows of a context) is, per byte, as
// much work as both dense layers: 20 gathered rows of 512 int8 values for the default model.
// As ONNX Runtime ops (Gather, Cast, ReduceSum) it took about 5 of the 8 µs a row cost.
//
// Here it is summed eight values per 64-bit word (SWAR). The bag is kept only as words of
// eight bytes v+128 (1..255; bagWords, built by Parse); masking the even
// and the odd bytes of a word spreads them into two words of four 16-bit lanes, which are
// added to running sums. A sum of at most maxLaneRows rows stays below 2^16 in every lane
// (257*255 < 65536), so no lane carries into the next, and the exact sum is lane - 128*rows.
// Four rows are added per pass over the sums: four independent loads in flight, and a
// quarter of the loads and stores of the sums.

const maxLaneRows = 257

const evenBytes = 0x00FF00FF00FF00FF

// bagWords packs the bag's bytes (int8, rows of h0) as words of biased bytes, each row padded
// to whole words (padding bytes 0: summed, never read back).
func bagWords(raw []byte, h0 int) []uint64 {
	w := (h0 + 7) / 8
	rows := len(raw) / h0
	out := make([]uint64, rows*w)
	for r := range rows {
		row := raw[r*h0 : (r+1)*h0]
		dst := out[r*w : (r+1)*w]
		for j, v := range row {
			dst[j/8] |= uint64(v^0x80) << (8 * (j % 8))
		}
	}
	return out
}

// bagSum writes a0 = bag_bias + the sum of the bag rows idx into acc (H0 entries); lanes is
// scratch of at least 2*ceil(H0/8) words. More than maxLaneRows rows are summed in chunks.
func (m *Model) bagSum(idx []int64, acc []int32, lanes []uint64) {
	h0 := m.h0
	acc = acc[:h0]
	copy(acc, m.bagBias)
	for len(idx) > 0 {
		n := min(len(idx), maxLaneRows)
		even, odd := m.sumLanes(idx[:n], lanes)
		addLanes(acc, even, odd, int32(128*n))
		idx = idx[n:]
	}
}

// addLanes adds the lane sums (minus the bias off) to acc.
func addLanes(acc []int32, even, odd []uint64, off int32) {
	h0 := len(acc)
	for p := range even {
		e, o := even[p], odd[p]
		j := 8 * p
		if j+8 > h0 {
			for i := 0; j+i < h0; i++ {
				lane := e
				if i%2 == 1 {
					lane = o
				}
				acc[j+i] += int32(lane>>(16*(i/2))&0xFFFF) - off
			}
			continue
		}
		a := acc[j : j+8 : j+8]
		a[0] += int32(e&0xFFFF) - off
		a[1] += int32(o&0xFFFF) - off
		a[2] += int32(e>>16&0xFFFF) - off
		a[3] += int32(o>>16&0xFFFF) - off
		a[4] += int32(e>>32&0xFFFF) - off
		a[5] += int32(o>>32&0xFFFF) - off
		a[6] += int32(e>>48) - off
		a[7] += int32(o>>48) - off
	}
}

// bagActivate writes h0 = clamp(a0 >> s_0, 0, 127) of the bag rows idx into h (H0 bytes):
// bagSum and the first activation in one pass, the integer graph's input.
func (m *Model) bagActivate(idx []int64, h []uint8, acc []int32, lanes []uint64) {
	h0 := m.h0
	h = h[:h0]
	if len(idx) > maxLaneRows || h0%8 != 0 {
		m.bagSum(idx, acc, lanes)
		activate(h, acc, m.shift0)
		return
	}
	even, odd := m.sumLanes(idx, lanes)
	off := int32(128 * len(idx))
	s := m.shift0
	bias := m.bagBias[:h0]
	act := func(b int32, lane uint64) uint8 { return uint8(min(max((b+int32(lane)-off)>>s, 0), 127)) }
	for p := range even {
		e, o := even[p], odd[p]
		a := h[8*p : 8*p+8 : 8*p+8]
		b := bias[8*p : 8*p+8 : 8*p+8]
		a[0] = act(b[0], e&0xFFFF)
		a[1] = act(b[1], o&0xFFFF)
		a[2] = act(b[2], e>>16&0xFFFF)
		a[3] = act(b[3], o>>16&0xFFFF)
		a[4] = act(b[4], e>>32&0xFFFF)
		a[5] = act(b[5], o>>32&0xFFFF)
		a[6] = act(b[6], e>>48)
		a[7] = act(b[7], o>>48)
	}
}

// sumLanes adds the packed rows idx (at most maxLaneRows) into two sets of 16-bit lanes: even
// holds bytes 0, 2, 4, 6 of every word, odd bytes 1, 3, 5, 7.
func (m *Model) sumLanes(idx []int64, lanes []uint64) (even, odd []uint64) {
	w := (m.h0 + 7) / 8
	even, odd = lanes[:w], lanes[w:2*w]
	clear(even)
	clear(odd)
	bw := m.bagW
	i := 0
	for ; i+4 <= len(idx); i += 4 {
		r0 := bw[int(idx[i])*w : int(idx[i])*w+w]
		r1 := bw[int(idx[i+1])*w : int(idx[i+1])*w+w]
		r2 := bw[int(idx[i+2])*w : int(idx[i+2])*w+w]
		r3 := bw[int(idx[i+3])*w : int(idx[i+3])*w+w]
		r0, r1, r2, r3 = r0[:len(even)], r1[:len(even)], r2[:len(even)], r3[:len(even)]
		odd := odd[:len(even)]
		for j := range even {
			x0, x1, x2, x3 := r0[j], r1[j], r2[j], r3[j]
			even[j] += x0&evenBytes + x1&evenBytes + x2&evenBytes + x3&evenBytes
			odd[j] += x0>>8&evenBytes + x1>>8&evenBytes + x2>>8&evenBytes + x3>>8&evenBytes
		}
	}
	for ; i < len(idx); i++ {
		r0 := bw[int(idx[i])*w : int(idx[i])*w+w]
		r0 = r0[:len(even)]
		odd := odd[:len(even)]
		for j := range even {
			x0 := r0[j]
			even[j] += x0 & evenBytes
			odd[j] += x0 >> 8 & evenBytes
		}
	}
	return even, odd
}
