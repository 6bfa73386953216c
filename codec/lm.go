package codec

import (
	"encoding/binary"
	"errors"
	"fmt"
	"runtime"
	"slices"
	"sync"
)

// Predictor is what the LM codec needs from a model (model.Runner satisfies it).
type Predictor interface {
	// Order is K, the number of previous bytes a prediction sees.
	Order() int
	// Predict fills out[r*256:(r+1)*256] with the frequencies of the next byte for every row r
	// of ctx (len(ctx) = rows*K; per row c[0] is the byte just before the predicted position,
	// c[1] the one before, 256 before the block start). Every frequency >= 1, each row's sum
	// < 2^24, and the result is a pure function of the row: the same on every backend and batch
	// size. The codec calls Predict concurrently (it codes groups of blocks side by side).
	Predict(ctx []uint16, out []uint32) error
}

// LM payloads are
//
//	bytes 0-3  the model's short id (first 4 bytes of its SHA-256), big endian
//	bytes 4-   the arithmetic-coded stream of the block's bits (see rangecoder.go, mixer.go)
//
// The raw length is not stored: the record header holds it.
const lmHeaderSize = 4

var (
	// ErrUnknownModel reports an LM payload whose model is not loaded.
	ErrUnknownModel = errors.New("unknown lm model")
	// ErrInexactModel reports a predictor whose output depends on the batch it was computed in.
	ErrInexactModel = errors.New("lm predictor is not exact")
)

// DefaultLMBatchRows is the number of rows per Predict call when encoding.
const DefaultLMBatchRows = 4096

// DefaultLMDecodeBlocks is the most blocks decoded in lock-step: larger batches are decoded in
// waves of this many (each live block holds about 0.5 MB of predictor state: 256 blocks use
// about 125 MB while they decode).
const DefaultLMDecodeBlocks = 256

// LMCodec codes blocks with one model. It is safe for concurrent use when its predictor is
// (model.Runner is).
type LMCodec struct {
	pred    Predictor
	id      uint32
	params  *mixParams
	rows    int // rows per Predict call when encoding
	maxLive int // most blocks decoded in lock-step

	states sync.Pool
}

// NewLMCodec returns a codec for the model with the given short id.
func NewLMCodec(p Predictor, shortID uint32) *LMCodec {
	return newLMCodec(p, shortID, &defaultMix)
}

func newLMCodec(p Predictor, shortID uint32, params *mixParams) *LMCodec {
	return &LMCodec{pred: p, id: shortID, params: params, rows: DefaultLMBatchRows, maxLive: DefaultLMDecodeBlocks}
}

// SetBatch sets the rows per Predict call when encoding and the most blocks decoded in
// lock-step (both at least 1). Batching never changes the output.
func (c *LMCodec) SetBatch(encodeRows, decodeBlocks int) {
	c.rows = max(encodeRows, 1)
	c.maxLive = max(decodeBlocks, 1)
}

// ShortID is the model id written at the start of every payload.
func (c *LMCodec) ShortID() uint32 { return c.id }

func (c *LMCodec) state() *lmState {
	if s, ok := c.states.Get().(*lmState); ok {
		return s
	}
	return newLMState(c.params)
}

func (c *LMCodec) predict(ctx []uint16, out []uint32) error {
	if err := c.pred.Predict(ctx, out); err != nil {
		return fmt.Errorf("lm predict: %w", err)
	}
	return nil
}

// fillCtx writes the K context symbols for position pos of data into row.
func fillCtx(row []uint16, data []byte, pos int) {
	for k := range row {
		j := pos - 1 - k
		if j >= 0 {
			row[k] = uint16(data[j])
		} else {
			row[k] = 256
		}
	}
}

// EncodeBatch returns the LM payload of every block (each 0..BlockSize bytes). The payloads may
// be larger than the blocks: the caller stores such blocks raw.
func (c *LMCodec) EncodeBatch(blocks [][]byte) ([][]byte, error) {
	return c.encodeGroups(blocks, false)
}

// EncodeVerified is EncodeBatch plus a decode of every payload's arithmetic stream, checked bit
// by bit against the block.
//
// The verification decode reuses the network probabilities computed for the encode instead of
// calling the model again. That is sound: the network's output is a pure function of the context
// (the Predictor contract), and the decoder's context at position i equals the encoder's as long
// as bytes 0..i-1 were decoded right. The check runs the full decoder (arithmetic decoder, mixer,
// counters, match model, APM: the same step function as DecodeBatch) and compares every decoded
// bit; the first wrong bit stops it, before any prediction for a wrong context could be needed.
// What it cannot catch is a model that is not a pure function of its context (a backend that
// differs between encode and decode): that is the model package's exactness contract. As a spot
// check of it, the last row of every Predict batch is predicted again on its own and compared
// (ErrInexactModel on a difference).
func (c *LMCodec) EncodeVerified(blocks [][]byte) ([][]byte, error) {
	return c.encodeGroups(blocks, true)
}

// encodeGroups codes groups of blocks side by side, one per core (as DecodeBatch does).
func (c *LMCodec) encodeGroups(blocks [][]byte, verify bool) ([][]byte, error) {
	par := min(c.par(), len(blocks))
	if par <= 1 {
		return c.encode(blocks, verify)
	}
	per := (len(blocks) + par - 1) / par
	out := make([][]byte, len(blocks))
	errs := make([]error, par)
	runParallel(par, par, func(g int) {
		lo, hi := g*per, min(len(blocks), (g+1)*per)
		if lo >= hi {
			return
		}
		p, err := c.encode(blocks[lo:hi], verify)
		if err != nil {
			errs[g] = err
			return
		}
		copy(out[lo:hi], p)
	})
	for _, err := range errs {
		if err != nil {
			return nil, err
		}
	}
	return out, nil
}

func (c *LMCodec) encode(blocks [][]byte, verify bool) ([][]byte, error) {
	for i, b := range blocks {
		if len(b) > BlockSize {
			return nil, fmt.Errorf("lm encode: block %d has %d bytes, more than %d", i, len(b), BlockSize)
		}
	}
	k := c.pred.Order()
	if k < 0 {
		return nil, fmt.Errorf("lm encode: model order %d", k)
	}
	total := 0
	for _, b := range blocks {
		total += len(b)
	}
	rows := max(min(c.rows, total), 1)
	ctx := make([]uint16, rows*k)
	out := make([]uint32, rows*256)
	payloads := make([][]byte, len(blocks))
	paths := make([][]uint16, len(blocks)) // network bit probabilities along each block's bytes
	var pool [][]uint16
	st := c.state()
	defer c.states.Put(st)
	var cum [257]uint32
	var single [256]uint32

	type rowRef struct{ blk, pos int }
	refs := make([]rowRef, 0, rows)
	finishBlock := func(bi int) error {
		b := blocks[bi]
		path := paths[bi]
		p := make([]byte, lmHeaderSize, lmHeaderSize+len(b)/2+16)
		binary.BigEndian.PutUint32(p, c.id)
		p = st.encodeBlock(p, b, path)
		if verify {
			if err := st.verifyBlock(p[lmHeaderSize:], b, path); err != nil {
				return fmt.Errorf("lm encode: block %d: verification failed: %w", bi, err)
			}
		}
		payloads[bi] = p
		pool = append(pool, path)
		paths[bi] = nil
		return nil
	}
	flush := func() error {
		if len(refs) == 0 {
			return nil
		}
		n := len(refs)
		if err := c.predict(ctx[:n*k], out[:n*256]); err != nil {
			return err
		}
		if verify && n > 1 {
			// Spot check of the exactness contract: the batch's last row again, alone.
			if err := c.predict(ctx[(n-1)*k:n*k], single[:]); err != nil {
				return err
			}
			if !slices.Equal(single[:], out[(n-1)*256:n*256]) {
				return fmt.Errorf("lm encode: %w: a row predicted in a batch of %d differs from the same row alone", ErrInexactModel, n)
			}
		}
		for r, ref := range refs {
			netCum(&cum, out[r*256:(r+1)*256])
			b := blocks[ref.blk]
			netPath(paths[ref.blk][ref.pos*8:ref.pos*8+8], &cum, b[ref.pos])
			if ref.pos == len(b)-1 {
				if err := finishBlock(ref.blk); err != nil {
					return err
				}
			}
		}
		refs = refs[:0]
		return nil
	}
	for bi, b := range blocks {
		if len(b) == 0 {
			p := make([]byte, lmHeaderSize)
			binary.BigEndian.PutUint32(p, c.id)
			payloads[bi] = p
			continue
		}
		if n := len(pool); n > 0 {
			paths[bi] = pool[n-1][:len(b)*8]
			pool = pool[:n-1]
		} else {
			paths[bi] = make([]uint16, len(b)*8, BlockSize*8)
		}
		for pos := range b {
			r := len(refs)
			fillCtx(ctx[r*k:(r+1)*k], b, pos)
			refs = append(refs, rowRef{bi, pos})
			if len(refs) == rows {
				if err := flush(); err != nil {
					return nil, err
				}
			}
		}
	}
	if err := flush(); err != nil {
		return nil, err
	}
	return payloads, nil
}

// encodeBlock appends the arithmetic stream of block b to dst; path holds the network's bit
// probabilities along b (8 per byte).
func (s *lmState) encodeBlock(dst, b []byte, path []uint16) []byte {
	s.reset()
	start := len(dst)
	e := newArithEncoder(dst)
	for i, c := range b {
		for d := 0; d < 8; d++ {
			bit := int(c>>(7-d)) & 1
			e.encode(bit, s.predict(uint32(path[i*8+d])))
			s.update(bit)
		}
	}
	return e.finish(start)
}

// verifyBlock decodes stream with the same step function and checks it reproduces b.
func (s *lmState) verifyBlock(stream, b []byte, path []uint16) error {
	s.reset()
	d := newArithDecoder(stream)
	for i, c := range b {
		for j := 0; j < 8; j++ {
			want := int(c>>(7-j)) & 1
			bit := d.decode(s.predict(uint32(path[i*8+j])))
			if bit != want {
				return fmt.Errorf("bit %d of byte %d decodes as %d", j, i, bit)
			}
			s.update(bit)
		}
	}
	return nil
}

// DecodeBatch decodes LM payloads made by this codec's model; out[i] holds rawLens[i] bytes or
// errs[i] is set. Blocks run in lock-step: one Predict call per byte position for all blocks
// still running (in waves of at most the decode batch size). It never panics on hostile payloads
// and never produces more than rawLens[i] bytes; a corrupt stream decodes to wrong bytes, which
// the record checksum rejects.
func (c *LMCodec) DecodeBatch(payloads [][]byte, rawLens []int) ([][]byte, []error) {
	out := make([][]byte, len(payloads))
	errs := make([]error, len(payloads))
	var idx []int
	for i, p := range payloads {
		if i >= len(rawLens) {
			errs[i] = fmt.Errorf("lm decode: no raw length")
			continue
		}
		if err := c.checkPayload(p, rawLens[i]); err != nil {
			errs[i] = err
			continue
		}
		if rawLens[i] == 0 {
			out[i] = []byte{}
			continue
		}
		idx = append(idx, i)
	}
	// Waves run side by side, one per core: while one waits for its model call, another mixes
	// and codes (the model runner gives concurrent calls their own sessions). Each block is
	// decoded on its own, so how blocks are grouped never changes a result.
	var waves [][]int
	per := max(1, min(c.maxLive, (len(idx)+c.par()-1)/c.par()))
	for len(idx) > 0 {
		n := min(len(idx), per)
		waves = append(waves, idx[:n])
		idx = idx[n:]
	}
	runParallel(len(waves), c.par(), func(w int) { c.decodeWave(payloads, rawLens, waves[w], out, errs) })
	return out, errs
}

// par is how many waves run at once.
func (c *LMCodec) par() int { return max(1, runtime.GOMAXPROCS(0)) }

// runParallel calls fn(0..n-1) on at most par goroutines.
func runParallel(n, par int, fn func(i int)) {
	if n <= 1 || par <= 1 {
		for i := 0; i < n; i++ {
			fn(i)
		}
		return
	}
	var wg sync.WaitGroup
	next := make(chan int, n)
	for i := 0; i < n; i++ {
		next <- i
	}
	close(next)
	for w := 0; w < min(par, n); w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				fn(i)
			}
		}()
	}
	wg.Wait()
}

func (c *LMCodec) checkPayload(p []byte, rawLen int) error {
	if len(p) < lmHeaderSize {
		return fmt.Errorf("%w: lm payload of %d bytes", ErrCorrupt, len(p))
	}
	if id := binary.BigEndian.Uint32(p); id != c.id {
		return fmt.Errorf("%w: %08x (loaded: %08x)", ErrUnknownModel, id, c.id)
	}
	if rawLen < 0 || rawLen > BlockSize {
		return fmt.Errorf("%w: lm raw length %d out of range", ErrCorrupt, rawLen)
	}
	return nil
}

type lmDecoding struct {
	i   int // index into payloads
	n   int // raw length
	st  *lmState
	dec arithDecoder
}

func (c *LMCodec) decodeWave(payloads [][]byte, rawLens []int, idx []int, out [][]byte, errs []error) {
	k := c.pred.Order()
	live := make([]*lmDecoding, len(idx))
	for j, i := range idx {
		live[j] = &lmDecoding{i: i, n: rawLens[i], st: c.state(), dec: newArithDecoder(payloads[i][lmHeaderSize:])}
		live[j].st.reset()
	}
	all := append([]*lmDecoding(nil), live...)
	defer func() {
		for _, d := range all {
			c.states.Put(d.st)
		}
	}()
	ctx := make([]uint16, len(live)*max(k, 0))
	freq := make([]uint32, len(live)*256)
	var cum [257]uint32
	for pos := 0; len(live) > 0; pos++ {
		for r, d := range live {
			fillCtx(ctx[r*k:(r+1)*k], d.st.buf, pos)
		}
		if err := c.predict(ctx[:len(live)*k], freq[:len(live)*256]); err != nil {
			for _, d := range live {
				errs[d.i] = err
			}
			break
		}
		next := live[:0]
		for r, d := range live {
			netCum(&cum, freq[r*256:(r+1)*256])
			s := d.st
			for j := 0; j < 8; j++ {
				s.update(d.dec.decode(s.predict(netBitP(&cum, s.c0, j))))
			}
			if len(s.buf) == d.n {
				out[d.i] = append([]byte(nil), s.buf...)
				continue
			}
			next = append(next, d)
		}
		live = next
	}
}

// LMSet decodes LM payloads of several models, dispatching on the payload's short id.
type LMSet struct {
	codecs map[uint32]*LMCodec
}

// NewLMSet returns a set holding the given codecs.
func NewLMSet(codecs ...*LMCodec) *LMSet {
	s := &LMSet{codecs: make(map[uint32]*LMCodec)}
	for _, c := range codecs {
		s.Add(c)
	}
	return s
}

// Add adds (or replaces) the codec for c's model.
func (s *LMSet) Add(c *LMCodec) { s.codecs[c.id] = c }

// Get returns the codec for a model short id.
func (s *LMSet) Get(shortID uint32) (*LMCodec, bool) {
	c, ok := s.codecs[shortID]
	return c, ok
}

// DecodeBatch implements LMDecoder: payloads are grouped by model and each group is decoded in
// one lock-step batch. A payload naming a model not in the set fails with ErrUnknownModel.
func (s *LMSet) DecodeBatch(payloads [][]byte, rawLens []int) ([][]byte, []error) {
	out := make([][]byte, len(payloads))
	errs := make([]error, len(payloads))
	groups := make(map[uint32][]int)
	var order []uint32
	for i, p := range payloads {
		if len(p) < lmHeaderSize {
			errs[i] = fmt.Errorf("%w: lm payload of %d bytes", ErrCorrupt, len(p))
			continue
		}
		id := binary.BigEndian.Uint32(p)
		if _, ok := s.codecs[id]; !ok {
			errs[i] = fmt.Errorf("%w: %08x", ErrUnknownModel, id)
			continue
		}
		if _, ok := groups[id]; !ok {
			order = append(order, id)
		}
		groups[id] = append(groups[id], i)
	}
	for _, id := range order {
		idx := groups[id]
		ps := make([][]byte, len(idx))
		ls := make([]int, len(idx))
		for j, i := range idx {
			ps[j] = payloads[i]
			if i < len(rawLens) {
				ls[j] = rawLens[i]
			} else {
				ls[j] = -1
			}
		}
		o, e := s.codecs[id].DecodeBatch(ps, ls)
		for j, i := range idx {
			out[i], errs[i] = o[j], e[j]
		}
	}
	return out, errs
}
