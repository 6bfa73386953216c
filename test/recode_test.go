package test

import (
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"testing"
)

// recodeLine parses the summary of `lmfs compact --recode`.
var recodeLine = regexp.MustCompile(`recode to model ([0-9a-f]{8}): (\d+) block groups scanned, (\d+) blocks of older models, (\d+) recoded`)

type recodeResult struct {
	model                  string
	groups, stale, recoded int64
}

func parseRecode(t *testing.T, out string) recodeResult {
	t.Helper()
	m := recodeLine.FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("no recode summary in:\n%s", out)
	}
	n := func(s string) int64 {
		v, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	return recodeResult{m[1], n(m[2]), n(m[3]), n(m[4])}
}

// modelCopy copies a model file (a path relative to the repository root) to a temporary file
// and returns its path.
func modelCopy(t *testing.T, rel string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", rel))
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), filepath.Base(rel))
	writeFile(t, p, b)
	return p
}

// TestRecodeOlderModel: a store whose blocks the previous default model (v1, kept in
// codec/testdata/golden) coded reads back the same with this lmfs, and its blocks move to the
// current default with `lmfs compact --recode`, on a mounted store and offline; a block is
// replaced only by a smaller record, a second run finds only the blocks that were kept, and
// fsck is clean.
func TestRecodeOlderModel(t *testing.T) {
	needFUSE(t)
	files := pickCorpus(t, 96<<10, "code", "text")
	oldModel := modelCopy(t, "codec/testdata/golden/56dcee22.lmfsm")
	store := newStore(t)
	dir := newMountDir(t)
	m := mountAt(t, store, dir, "--model", oldModel)
	needLMEncoder(t, fullStatsOf(t, m.dir))
	copyIn(t, m.dir, files)
	mustLmfs(t, "compact", "--wait", m.dir)
	before := fullStatsOf(t, m.dir)
	if before.Codecs["lm"].Blocks == 0 {
		t.Fatalf("no LM block to recode (codecs %+v)", before.Codecs)
	}
	m.umount()

	// On a mounted store: the mount's model (the default) is the new one; --wait follows.
	m = mountAt(t, store, dir)
	r1 := parseRecode(t, mustLmfs(t, "compact", "--recode", "--wait", m.dir))
	t.Logf("mounted recode: %+v", r1)
	if r1.stale != before.Codecs["lm"].Blocks {
		t.Errorf("found %d blocks of older models, the store had %d LM blocks", r1.stale, before.Codecs["lm"].Blocks)
	}
	if r1.groups == 0 || r1.recoded == 0 || r1.recoded > r1.stale {
		t.Errorf("implausible recode summary %+v: the current default should beat v1 on most blocks", r1)
	}
	verifyFiles(t, m.dir, files, "after the mounted recode")
	after := fullStatsOf(t, m.dir)
	if after.Stored > before.Stored {
		t.Errorf("stored %d after the recode, %d before: a recode never grows a block", after.Stored, before.Stored)
	}
	// A second run finds exactly the blocks the first kept.
	r2 := parseRecode(t, mustLmfs(t, "compact", "--recode", "--wait", m.dir))
	if r2.stale != r1.stale-r1.recoded || r2.recoded != 0 {
		t.Errorf("second run %+v after %+v: want the %d kept blocks and none recoded", r2, r1, r1.stale-r1.recoded)
	}
	m.umount()

	// Offline, back to the first model: the candidates are the blocks the default coded.
	out := mustLmfs(t, "compact", "--recode", "--quiet", "--model", oldModel, store)
	r3 := parseRecode(t, out)
	t.Logf("offline recode: %+v", r3)
	if r3.model == r1.model || r3.stale < r1.recoded || r3.recoded > r3.stale {
		t.Errorf("offline recode to the first model: %+v after %+v", r3, r1)
	}
	fsckClean(t, store, "after the recodes")
	m = mountAt(t, store, dir)
	verifyFiles(t, m.dir, files, "after the offline recode and a remount with the default model")
	m.umount()
}
