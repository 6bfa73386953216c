// Package bench measures lmfs's block codecs on real files: every file is cut into independent
// BlockSize blocks (the last one short), every block is coded by every codec, and the stored
// size (record header included) and the coding speed are reported per top-level folder.
package bench

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"lmfs/codec"
)

// Options configure Run.
type Options struct {
	// LM is the language-model codec; nil leaves the lm column out.
	LM *codec.LMCodec
	// LMBatch is the number of blocks per LM EncodeBatch/DecodeBatch call (0: 256).
	LMBatch int
	// Progress receives a progress bar (carriage-return updates); nil for none.
	Progress io.Writer
}

// Codec names in results, in display order. "lmfs" is what a store keeps of each block: the
// choice of codec.DefaultPolicy (codec.Choice over its candidates, all-zero blocks as holes).
const (
	Raw    = "raw"
	Gzip   = "gzip-9"
	Zstd   = "zstd-19"
	Brotli = "brotli-11"
	LM     = "lm"
	Lmfs   = "lmfs"
)

// Sizes are the bytes of a set of blocks.
type Sizes struct {
	Name   string           `json:"name"`
	Files  int              `json:"files"`
	Blocks int              `json:"blocks"`
	Raw    int64            `json:"raw_bytes"`
	Stored map[string]int64 `json:"stored_bytes"` // per codec: sum of HeaderSize + payload (raw when smaller)
}

// Speed is one codec's throughput over all blocks.
type Speed struct {
	Codec     string  `json:"codec"`
	EncodeSec float64 `json:"encode_seconds"`
	DecodeSec float64 `json:"decode_seconds"`
	EncodeKBs float64 `json:"encode_kb_per_s"`
	DecodeKBs float64 `json:"decode_kb_per_s"`
}

// Result is the outcome of Run.
type Result struct {
	Codecs []string `json:"codecs"`
	Groups []*Sizes `json:"groups"`
	Total  *Sizes   `json:"total"`
	Speeds []Speed  `json:"speeds"`
	// Chosen counts, for the lmfs column, how many blocks each codec won (holes: all-zero
	// blocks, which lmfs stores as nothing).
	Chosen  map[string]int `json:"lmfs_chosen_blocks"`
	LMModel string         `json:"lm_model,omitempty"`
	LMBatch int            `json:"lm_batch,omitempty"`
}

type block struct {
	group  int
	data   []byte
	choice codec.Choice // the policy's choice among the candidates coded so far
}

type classic struct {
	name string
	c    codec.Codec
}

// columnNames name the policy's codecs in results.
var columnNames = map[codec.ID]string{codec.Raw: Raw, codec.Gzip: Gzip, codec.Zstd: Zstd, codec.Brotli: Brotli, codec.LM: LM}

// ColumnName is the name of codec id in results (Codecs, Stored, Chosen).
func ColumnName(id codec.ID) string {
	if n, ok := columnNames[id]; ok {
		return n
	}
	return id.String()
}

// Run codes every regular file under dirs. Files are grouped by their top-level folder below
// the dir they were found in (files directly in a dir form a group named after the dir).
func Run(dirs []string, o Options) (*Result, error) {
	if o.LMBatch <= 0 {
		o.LMBatch = 256
	}
	res := &Result{Total: &Sizes{Name: "all", Stored: map[string]int64{}}, Chosen: map[string]int{}}
	groupIdx := map[string]int{}
	var blocks []*block
	for _, dir := range dirs {
		var files []string
		err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if d.Type().IsRegular() {
				files = append(files, path)
			}
			return nil
		})
		if err != nil {
			return nil, fmt.Errorf("walk %s: %w", dir, err)
		}
		sort.Strings(files)
		for _, path := range files {
			name := groupName(dir, path)
			gi, ok := groupIdx[name]
			if !ok {
				gi = len(res.Groups)
				groupIdx[name] = gi
				res.Groups = append(res.Groups, &Sizes{Name: name, Stored: map[string]int64{}})
			}
			data, err := os.ReadFile(path)
			if err != nil {
				return nil, fmt.Errorf("read %s: %w", path, err)
			}
			g := res.Groups[gi]
			g.Files++
			res.Total.Files++
			for off := 0; off < len(data); off += codec.BlockSize {
				b := data[off:min(off+codec.BlockSize, len(data))]
				blocks = append(blocks, &block{group: gi, data: b, choice: codec.NewChoice(b)})
				g.Blocks++
				g.Raw += int64(len(b))
			}
		}
	}
	var total int64
	for _, g := range res.Groups {
		total += g.Raw
		res.Total.Blocks += g.Blocks
	}
	res.Total.Raw = total

	// The columns: raw, then the policy's classical candidates in its order, then the model.
	policy := codec.DefaultPolicy(nil)
	codecs := []classic{{Raw, codec.RawCodec}}
	for _, c := range policy.Classic {
		codecs = append(codecs, classic{ColumnName(c.ID()), c})
	}
	for _, c := range codecs {
		res.Codecs = append(res.Codecs, c.name)
	}
	if o.LM != nil {
		res.Codecs = append(res.Codecs, LM)
		res.LMModel = fmt.Sprintf("%08x", o.LM.ShortID())
		res.LMBatch = o.LMBatch
	}
	res.Codecs = append(res.Codecs, Lmfs)

	prog := newProgress(o.Progress, total*int64(len(res.Codecs)-1))
	record := func(b *block, name string, payload int) {
		stored := int64(codec.HeaderSize + min(payload, len(b.data)))
		res.Groups[b.group].Stored[name] += stored
		res.Total.Stored[name] += stored
	}
	for _, c := range codecs {
		var enc, dec time.Duration
		var buf, out []byte
		for _, b := range blocks {
			t0 := time.Now()
			buf = c.c.Encode(buf[:0], b.data)
			t1 := time.Now()
			var err error
			out, err = c.c.Decode(out[:0], buf, len(b.data))
			dec += time.Since(t1)
			enc += t1.Sub(t0)
			if err != nil || !bytes.Equal(out, b.data) {
				return nil, fmt.Errorf("%s: block does not round-trip: %v", c.name, err)
			}
			record(b, c.name, len(buf))
			b.choice.Offer(c.c, buf)
			prog.add(int64(len(b.data)), c.name)
		}
		res.Speeds = append(res.Speeds, speed(c.name, total, enc, dec))
	}
	if o.LM != nil {
		var enc, dec time.Duration
		for i := 0; i < len(blocks); i += o.LMBatch {
			batch := blocks[i:min(i+o.LMBatch, len(blocks))]
			raw := make([][]byte, len(batch))
			lens := make([]int, len(batch))
			var n int64
			for j, b := range batch {
				raw[j], lens[j] = b.data, len(b.data)
				n += int64(len(b.data))
			}
			t0 := time.Now()
			payloads, err := o.LM.EncodeBatch(raw)
			if err != nil {
				return nil, fmt.Errorf("lm encode: %w", err)
			}
			t1 := time.Now()
			out, errs := o.LM.DecodeBatch(payloads, lens)
			dec += time.Since(t1)
			enc += t1.Sub(t0)
			for j, b := range batch {
				if errs[j] != nil || !bytes.Equal(out[j], b.data) {
					return nil, fmt.Errorf("lm: block does not round-trip: %v", errs[j])
				}
				record(b, LM, len(payloads[j]))
				b.choice.OfferVerified(codec.LM, payloads[j]) // verified: it decoded back above
			}
			prog.add(n, LM)
		}
		res.Speeds = append(res.Speeds, speed(LM, total, enc, dec))
	}
	prog.done()
	for _, b := range blocks {
		stored, name := int64(b.choice.Size()), ColumnName(b.choice.ID())
		if codec.IsZero(b.data) {
			stored, name = 0, "hole"
		}
		res.Groups[b.group].Stored[Lmfs] += stored
		res.Total.Stored[Lmfs] += stored
		res.Chosen[name]++
	}
	return res, nil
}

func groupName(dir, path string) string {
	rel, err := filepath.Rel(dir, path)
	if err != nil {
		return filepath.Base(dir)
	}
	parts := strings.Split(filepath.ToSlash(rel), "/")
	if len(parts) == 1 {
		return filepath.Base(filepath.Clean(dir))
	}
	return parts[0]
}

func speed(name string, n int64, enc, dec time.Duration) Speed {
	s := Speed{Codec: name, EncodeSec: enc.Seconds(), DecodeSec: dec.Seconds()}
	if enc > 0 {
		s.EncodeKBs = float64(n) / 1000 / enc.Seconds()
	}
	if dec > 0 {
		s.DecodeKBs = float64(n) / 1000 / dec.Seconds()
	}
	return s
}

// Percent returns stored/raw of a codec in a group, in percent.
func (s *Sizes) Percent(codecName string) float64 {
	if s.Raw == 0 {
		return 0
	}
	return 100 * float64(s.Stored[codecName]) / float64(s.Raw)
}

// WriteText prints the result as a table.
func (r *Result) WriteText(w io.Writer) error {
	var b strings.Builder
	fmt.Fprintf(&b, "stored/raw %% per top-level folder (2 KiB blocks, %d-byte record header counted, a block that a codec expands stored raw; lmfs = smallest per block, all-zero blocks as holes)\n", codec.HeaderSize)
	fmt.Fprintf(&b, "%-16s %6s %10s", "group", "files", "raw bytes")
	for _, c := range r.Codecs {
		fmt.Fprintf(&b, " %9s", c)
	}
	b.WriteString("\n")
	for _, g := range append(append([]*Sizes(nil), r.Groups...), r.Total) {
		fmt.Fprintf(&b, "%-16s %6d %10d", g.Name, g.Files, g.Raw)
		for _, c := range r.Codecs {
			fmt.Fprintf(&b, " %8.1f%%", g.Percent(c))
		}
		b.WriteString("\n")
	}
	b.WriteString("\nspeed (one core)   encode KB/s   decode KB/s\n")
	for _, s := range r.Speeds {
		fmt.Fprintf(&b, "%-16s %13.0f %13.0f\n", s.Codec, s.EncodeKBs, s.DecodeKBs)
	}
	if r.LMModel != "" {
		fmt.Fprintf(&b, "lm: model %s, %d blocks per batch\n", r.LMModel, r.LMBatch)
	}
	var names []string
	for n := range r.Chosen {
		names = append(names, n)
	}
	sort.Strings(names)
	b.WriteString("lmfs chose:")
	for _, n := range names {
		fmt.Fprintf(&b, " %s %d", n, r.Chosen[n])
	}
	b.WriteString(" blocks\n")
	_, err := io.WriteString(w, b.String())
	return err
}

// WriteJSON prints the result as indented JSON.
func (r *Result) WriteJSON(w io.Writer) error {
	e := json.NewEncoder(w)
	e.SetIndent("", "  ")
	return e.Encode(r)
}

// progress draws a bar on a terminal-like writer, at most every 200 ms.
type progress struct {
	w     io.Writer
	total int64
	doneN int64
	last  time.Time
	start time.Time
}

func newProgress(w io.Writer, total int64) *progress {
	return &progress{w: w, total: total, start: time.Now()}
}

func (p *progress) add(n int64, what string) {
	if p.w == nil || p.total <= 0 {
		return
	}
	p.doneN += n
	// Draw only for runs longer than a second, at most every 200 ms.
	if time.Since(p.start) < time.Second || time.Since(p.last) < 200*time.Millisecond {
		return
	}
	p.last = time.Now()
	frac := float64(p.doneN) / float64(p.total)
	const width = 30
	fill := int(frac * width)
	fmt.Fprintf(p.w, "\r[%s%s] %3.0f%% %-9s %s", strings.Repeat("#", fill), strings.Repeat(".", width-fill),
		100*frac, what, time.Since(p.start).Round(time.Second))
}

func (p *progress) done() {
	if p.w != nil && !p.last.IsZero() {
		fmt.Fprintf(p.w, "\r%s\r", strings.Repeat(" ", 60))
	}
}
