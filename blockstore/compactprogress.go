package blockstore

import (
	"sync"
	"time"
)

// Progress of the full recode, for `lmfs stats` and `lmfs compact --wait`. The compactor
// recodes pending blocks in batches (256 by default) that take seconds to a minute through
// the model, and the count of blocks done moves only when a batch is swapped in. So it also
// tells which batch is in flight (its blocks and how long it has run) and the rate of its
// recent batches: a progress bar moves in between by estimate, and the rate gives an ETA
// that follows the machine's current speed (the model's speed varies with the load on the
// cores and the data), not the average since the mount.

// recodeWindow is the number of recent batches the rate is taken over.
const recodeWindow = 8

type recodeProgress struct {
	mu       sync.Mutex
	inFlight int // blocks of the batch being recoded; 0: none
	since    time.Time
	bytes    int64 // raw bytes of the batch in flight
	samples  [recodeWindow]recodeSample
	n, next  int
}

type recodeSample struct {
	blocks, bytes int64
	took          time.Duration
}

// recodeTrack is one batch in flight; end finishes it.
type recodeTrack struct {
	p  *recodeProgress
	ok bool // set when the batch was swapped in: its time counts for the rate
}

// begin records a batch of blocks (raw contents) whose work started at start.
func (p *recodeProgress) begin(start time.Time, blocks [][]byte) *recodeTrack {
	var n int64
	for _, b := range blocks {
		n += int64(len(b))
	}
	p.mu.Lock()
	p.inFlight, p.since, p.bytes = len(blocks), start, n
	p.mu.Unlock()
	return &recodeTrack{p: p}
}

// end clears the batch in flight; a batch that was swapped in (ok) becomes a rate sample.
func (t *recodeTrack) end() {
	p := t.p
	p.mu.Lock()
	defer p.mu.Unlock()
	if t.ok && p.inFlight > 0 {
		p.samples[p.next] = recodeSample{blocks: int64(p.inFlight), bytes: p.bytes, took: time.Since(p.since)}
		p.next = (p.next + 1) % recodeWindow
		p.n = min(p.n+1, recodeWindow)
	}
	p.inFlight, p.bytes = 0, 0
}

// fill sets the progress fields of st.
func (p *recodeProgress) fill(st *CompactorStats) {
	p.mu.Lock()
	defer p.mu.Unlock()
	st.BatchBlocks = int64(p.inFlight)
	if p.inFlight > 0 {
		st.BatchSeconds = time.Since(p.since).Seconds()
	}
	var blocks, bytes int64
	var took time.Duration
	for _, s := range p.samples[:p.n] {
		blocks += s.blocks
		bytes += s.bytes
		took += s.took
	}
	if took > 0 {
		st.RecentBlocksPerSec = float64(blocks) / took.Seconds()
		st.RecentBytesPerSec = float64(bytes) / took.Seconds()
	}
}
