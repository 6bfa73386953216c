package bench

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"lmfs/codec"
	"lmfs/model"
)

func TestRun(t *testing.T) {
	dir := t.TempDir()
	os.MkdirAll(filepath.Join(dir, "text"), 0o755)
	os.MkdirAll(filepath.Join(dir, "zero", "deep"), 0o755)
	text := bytes.Repeat([]byte("lmfs codes every block on its own. "), 200) // 7000 bytes: 4 blocks
	os.WriteFile(filepath.Join(dir, "text", "a.txt"), text, 0o644)
	os.WriteFile(filepath.Join(dir, "zero", "deep", "z"), make([]byte, 4096), 0o644)
	os.WriteFile(filepath.Join(dir, "top"), []byte("x"), 0o644)

	var o Options
	if m, err := model.Load("../../model/testdata/tiny.lmfsm"); err == nil {
		o.LM = codec.NewLMCodec(model.NewGoRunner(m), m.ShortID())
	} else {
		t.Log("no tiny model, lm column left out:", err)
	}
	o.LMBatch = 3
	res, err := Run([]string{dir}, o)
	if err != nil {
		t.Fatal(err)
	}
	if res.Total.Raw != 7000+4096+1 || res.Total.Blocks != 4+2+1 || res.Total.Files != 3 {
		t.Errorf("total %+v", res.Total)
	}
	names := map[string]*Sizes{}
	for _, g := range res.Groups {
		names[g.Name] = g
	}
	if len(names) != 3 || names["text"] == nil || names["zero"] == nil || names[filepath.Base(dir)] == nil {
		t.Fatalf("groups %v", res.Groups)
	}
	for _, c := range res.Codecs {
		if c == Lmfs {
			continue
		}
		// Every codec at least has its headers; nothing beats the per-block choice.
		if s := res.Total.Stored[c]; s < int64(res.Total.Blocks*codec.HeaderSize) || s < res.Total.Stored[Lmfs] {
			t.Errorf("%s: stored %d", c, s)
		}
	}
	if got := names["zero"].Stored[Lmfs]; got != 0 {
		t.Errorf("zero blocks stored as %d bytes, want holes", got)
	}
	if res.Chosen["hole"] != 2 {
		t.Errorf("chosen %v", res.Chosen)
	}
	var txt, js bytes.Buffer
	if err := res.WriteText(&txt); err != nil || !strings.Contains(txt.String(), "brotli-11") {
		t.Errorf("text output: %v\n%s", err, txt.String())
	}
	if err := res.WriteJSON(&js); err != nil {
		t.Fatal(err)
	}
	var back Result
	if err := json.Unmarshal(js.Bytes(), &back); err != nil || back.Total.Raw != res.Total.Raw {
		t.Errorf("json: %v", err)
	}
	t.Log("\n" + txt.String())
}

// TestLmfsColumnIsPolicy: the lmfs column is what a store keeps of the blocks: the records of
// codec.DefaultPolicy's full recode (the one the compactor runs), all-zero blocks as holes.
func TestLmfsColumnIsPolicy(t *testing.T) {
	dir := t.TempDir()
	src, err := os.ReadFile("bench.go")
	if err != nil {
		t.Fatal(err)
	}
	data := append(append(src[:min(len(src), 3*codec.BlockSize+100)], make([]byte, codec.BlockSize)...), "tail"...)
	os.WriteFile(filepath.Join(dir, "a"), data, 0o644)
	random := make([]byte, codec.BlockSize)
	for i := range random {
		random[i] = byte(i*7919>>3) ^ byte(i*i)
	}
	os.WriteFile(filepath.Join(dir, "b"), random, 0o644)

	var o Options
	var enc codec.LMEncoder
	if m, err := model.Load("../../model/testdata/tiny.lmfsm"); err == nil {
		o.LM = codec.NewLMCodec(model.NewGoRunner(m), m.ShortID())
		enc = o.LM
	} else {
		t.Log("no tiny model, lm column left out:", err)
	}
	res, err := Run([]string{dir}, o)
	if err != nil {
		t.Fatal(err)
	}
	var blocks [][]byte
	holes := 0
	for _, f := range [][]byte{data, random} {
		for off := 0; off < len(f); off += codec.BlockSize {
			b := f[off:min(off+codec.BlockSize, len(f))]
			if codec.IsZero(b) {
				holes++
				continue
			}
			blocks = append(blocks, b)
		}
	}
	recs, err := codec.DefaultPolicy(enc).Best(blocks)
	if err != nil {
		t.Fatal(err)
	}
	var stored int64
	chosen := map[string]int{}
	if holes > 0 {
		chosen["hole"] = holes
	}
	for _, r := range recs {
		stored += int64(len(r))
		chosen[ColumnName(codec.ID(r[0]))]++
	}
	if res.Total.Stored[Lmfs] != stored {
		t.Errorf("lmfs column %d bytes, the policy's records %d", res.Total.Stored[Lmfs], stored)
	}
	if fmt.Sprint(res.Chosen) != fmt.Sprint(chosen) {
		t.Errorf("lmfs chose %v, the policy %v", res.Chosen, chosen)
	}
	t.Logf("lmfs chose %v", res.Chosen)
}
