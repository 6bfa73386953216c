package model

import (
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"strings"
	"sync"
	"testing"
)

// requireORT returns an ORT runner for m, or skips the test when the library cannot be
// used; with CI=true or LMFS_REQUIRE_ORT=1 the test fails instead (CI fetches the library
// with `make ort`).
func requireORT(t testing.TB, m *Model, o Options) Runner {
	t.Helper()
	if o.Device == "" {
		o.Device = "cpu"
	}
	r, err := NewORTRunner(m, o)
	if err != nil {
		msg := fmt.Sprintf("ONNX Runtime not usable (%v); run `make ort` (fetches lib/libonnxruntime.so.1) or set LMFS_ORT_LIB", err)
		if os.Getenv("CI") == "true" || os.Getenv("LMFS_REQUIRE_ORT") == "1" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	t.Cleanup(func() { r.Close() })
	return r
}

func predictAll(t testing.TB, r Runner, ctx []uint16) []uint32 {
	t.Helper()
	out := make([]uint32, len(ctx)/r.Order()*Outputs)
	if err := r.Predict(ctx, out); err != nil {
		t.Fatal(err)
	}
	return out
}

func sameFreqs(t testing.TB, what string, got, want []uint32) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: %d entries, want %d", what, len(got), len(want))
	}
	for i := range got {
		if got[i] != want[i] {
			t.Fatalf("%s: row %d symbol %d: %d, want %d", what, i/Outputs, i%Outputs, got[i], want[i])
		}
	}
}

func TestORTMatchesGo(t *testing.T) { eachFixture(t, testORTMatchesGo) }

func testORTMatchesGo(t *testing.T, _ string, m *Model) {
	r := requireORT(t, m, Options{})
	if r.Backend() != "ort-cpu" || r.Order() != m.Order() {
		t.Fatalf("backend %q order %d", r.Backend(), r.Order())
	}
	rng := rand.New(rand.NewPCG(42, 1))
	n := 5000
	if testing.Short() {
		n = 1000
	}
	ctx := randomContexts(rng, m.Order(), n)
	want := predictAll(t, NewGoRunner(m), ctx)
	sameFreqs(t, "ORT vs Go, one batch", predictAll(t, r, ctx), want)
	// The probe batch and the golden rows too.
	probe := ProbeContexts(m.Order())
	sameFreqs(t, "probe", predictAll(t, r, probe), predictAll(t, NewGoRunner(m), probe))
}

// TestORTBatchSizes: batch 1, 64, 256 and a ragged split give the same rows.
func TestORTBatchSizes(t *testing.T) { eachFixture(t, testORTBatchSizes) }

func testORTBatchSizes(t *testing.T, _ string, m *Model) {
	r := requireORT(t, m, Options{})
	k := m.Order()
	rng := rand.New(rand.NewPCG(7, 7))
	n := 1500 // > maxRunRows: exercises chunking too
	ctx := randomContexts(rng, k, n)
	want := predictAll(t, NewGoRunner(m), ctx)
	for _, bs := range []int{1, 3, 64, 256, 1100} {
		got := make([]uint32, n*Outputs)
		for lo := 0; lo < n; lo += bs {
			hi := min(lo+bs, n)
			if bs == 1 && lo >= 300 {
				// batch 1 is slow through ORT: check the first 300 rows, fill the rest.
				copy(got[lo*Outputs:], want[lo*Outputs:])
				break
			}
			if err := r.Predict(ctx[lo*k:hi*k], got[lo*Outputs:hi*Outputs]); err != nil {
				t.Fatal(err)
			}
		}
		sameFreqs(t, fmt.Sprintf("batch %d", bs), got, want)
	}
}

// TestORTSessionsThreads: 1 or 2 sessions, 1 or 2 threads each, all bit-identical.
func TestORTSessionsThreads(t *testing.T) { eachFixture(t, testORTSessionsThreads) }

func testORTSessionsThreads(t *testing.T, _ string, m *Model) {
	rng := rand.New(rand.NewPCG(9, 9))
	ctx := randomContexts(rng, m.Order(), 700)
	want := predictAll(t, NewGoRunner(m), ctx)
	for _, st := range [][2]int{{1, 1}, {1, 2}, {2, 1}, {2, 2}, {3, 1}} {
		r := requireORT(t, m, Options{Sessions: st[0], Threads: st[1]})
		sameFreqs(t, fmt.Sprintf("sessions %d threads %d", st[0], st[1]), predictAll(t, r, ctx), want)
		r.Close()
	}
}

// TestORTConcurrent hammers one runner from several goroutines (run with -race).
func TestORTConcurrent(t *testing.T) {
	m := loadTiny(t)
	r := requireORT(t, m, Options{Sessions: 2})
	g := NewGoRunner(m)
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for w := range 6 {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(w), 3))
			for it := range 20 {
				n := 1 + rng.IntN(100)
				ctx := randomContexts(rng, m.Order(), n)
				a := make([]uint32, n*Outputs)
				b := make([]uint32, n*Outputs)
				if err := r.Predict(ctx, a); err != nil {
					errs <- err
					return
				}
				if err := g.Predict(ctx, b); err != nil {
					errs <- err
					return
				}
				for i := range a {
					if a[i] != b[i] {
						errs <- fmt.Errorf("worker %d iteration %d: entry %d differs", w, it, i)
						return
					}
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

func TestORTPredictErrors(t *testing.T) {
	m := loadTiny(t)
	r := requireORT(t, m, Options{})
	if err := r.Predict(make([]uint16, 7), make([]uint32, 256)); err == nil {
		t.Error("7 symbols for order 8: no error")
	}
	ctx := make([]uint16, 8)
	ctx[0] = 300
	if err := r.Predict(ctx, make([]uint32, 256)); err == nil {
		t.Error("symbol 300: no error")
	}
	if err := r.Predict(nil, nil); err != nil {
		t.Errorf("empty batch: %v", err)
	}
}

// TestORTStoredGraph: the stored graph (what CUDA runs; CPUs run the integer graph) matches
// the Go evaluator on every fixture, and is refused by the self-test when it disagrees.
func TestORTStoredGraph(t *testing.T) {
	testStoredGraph = true
	defer func() { testStoredGraph = false }()
	t.Run("matches", func(t *testing.T) { eachFixture(t, testORTMatchesGo) })
	t.Run("refused", testStoredGraphRefused)
}

// TestORTSelfTestRefuses: an integer graph that disagrees with the Go evaluator (here a changed
// bias) is refused by the self-test and replaced by the stored graph (still exact), and the
// log says so; a stored graph that disagrees refuses ORT (TestORTStoredGraph).
func TestORTSelfTestRefuses(t *testing.T) {
	m := loadTiny(t)
	requireORT(t, m, Options{}) // skip/fail as the other ORT tests do
	testDenseBias = 1 << 12
	defer func() { testDenseBias = 0 }()
	var log strings.Builder
	r, err := Open(m, Options{Device: "cpu", Logger: slog.New(slog.NewTextHandler(&log, nil))})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if r.Backend() != "ort-cpu" || !strings.Contains(log.String(), "graph=stored") ||
		!strings.Contains(log.String(), "integer graph refused") {
		t.Errorf("backend %q, log %q", r.Backend(), log.String())
	}
	rng := rand.New(rand.NewPCG(3, 3))
	ctx := randomContexts(rng, m.Order(), 300)
	sameFreqs(t, "stored graph after the integer one was refused", predictAll(t, r, ctx), predictAll(t, NewGoRunner(m), ctx))
}

// testStoredGraphRefused: a model whose Go semantics differ from its stored graph (a changed
// bias) is refused by the self-test, and Open falls back to Go.
func testStoredGraphRefused(t *testing.T) {
	m := loadTiny(t)
	requireORT(t, m, Options{}) // skip/fail as the other ORT tests do
	bad := *m
	bad.layers = append([]layer(nil), m.layers...)
	last := &bad.layers[len(bad.layers)-1]
	last.b = append([]int32(nil), last.b...)
	last.b[17] += 1 << 12
	_, err := NewORTRunner(&bad, Options{Device: "cpu"})
	if !errors.Is(err, ErrORTUnavailable) || !strings.Contains(err.Error(), "self-test") {
		t.Fatalf("error %v, want a self-test failure", err)
	}
	var log strings.Builder
	r, err := Open(&bad, Options{Device: "cpu", Logger: slog.New(slog.NewTextHandler(&log, nil))})
	if err != nil {
		t.Fatal(err)
	}
	if r.Backend() != "go" || !strings.Contains(log.String(), "self-test") {
		t.Errorf("backend %q, log %q", r.Backend(), log.String())
	}
}

func TestOpen(t *testing.T) {
	m := loadTiny(t)
	requireORT(t, m, Options{})
	var log strings.Builder
	r, err := Open(m, Options{Logger: slog.New(slog.NewTextHandler(&log, nil))})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if r.Backend() != "ort-cpu" || !strings.Contains(log.String(), "graph=integer") {
		t.Errorf("backend %q, log %s", r.Backend(), log.String())
	}
	if n := strings.Count(log.String(), "backend=ort-cpu"); n != 1 {
		t.Errorf("log %q: want one line naming the backend", log.String())
	}
}

// TestOpenFallback: a library that cannot load (or a second library in one process)
// gives the Go evaluator and one warning.
func TestOpenFallback(t *testing.T) {
	m := loadTiny(t)
	var log strings.Builder
	r, err := Open(m, Options{LibPath: "/nonexistent/libonnxruntime.so.1", Logger: slog.New(slog.NewTextHandler(&log, nil))})
	if err != nil {
		t.Fatal(err)
	}
	if r.Backend() != "go" {
		t.Fatalf("backend %q", r.Backend())
	}
	if strings.Count(log.String(), "\n") != 1 || !strings.Contains(log.String(), "level=WARN") {
		t.Errorf("want one warning line, got %q", log.String())
	}
	if _, err := NewORTRunner(m, Options{Device: "tpu", LibPath: FindORTLibrary("")}); err == nil {
		t.Error("device tpu: no error")
	}
}

// TestORTCUDAFailsCleanly: without a CUDA build of ORT, device cuda is an error (not a
// crash) and auto falls back to the CPU.
func TestORTCUDAFailsCleanly(t *testing.T) {
	m := loadTiny(t)
	requireORT(t, m, Options{})
	r, err := NewORTRunner(m, Options{Device: "cuda"})
	if err == nil {
		defer r.Close()
		if r.Backend() != "ort-cuda" {
			t.Fatalf("backend %q", r.Backend())
		}
		t.Log("CUDA available: ran the self-test on the GPU")
		return
	}
	if !errors.Is(err, ErrORTUnavailable) {
		t.Errorf("error %v does not wrap ErrORTUnavailable", err)
	}
	if strings.Contains(err.Error(), "\n") {
		t.Errorf("device cuda: want a one-line error, got %q", err)
	}
	var log strings.Builder
	r, err = NewORTRunner(m, Options{Device: "auto", Logger: slog.New(slog.NewTextHandler(&log, nil))})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if r.Backend() != "ort-cpu" {
		t.Errorf("auto without CUDA: backend %q", r.Backend())
	}
	// A library with a CUDA provider (make ort-gpu) that cannot use it says so once, as a
	// warning; a CPU build says nothing.
	want := 0
	if hasCUDAProvider(FindORTLibrary("")) {
		want = 1
	}
	if n := strings.Count(log.String(), "level=WARN msg=\"model runner: CUDA unavailable"); n != want || strings.Count(log.String(), "\n") != want {
		t.Errorf("auto without CUDA: want %d warning lines, got %q", want, log.String())
	}
}

// TestCUDAReason: the loader's words when the CUDA provider cannot load (as ONNX Runtime
// 1.29 reports them on a machine without the NVIDIA libraries) name what is missing.
func TestCUDAReason(t *testing.T) {
	const prov = "/x/lib-gpu/libonnxruntime_providers_cuda.so"
	for _, c := range []struct{ in, want string }{
		{"/onnxruntime_src/onnxruntime/core/session/provider_bridge_ort.cc:1952 onnxruntime::Provider& onnxruntime::ProviderLibrary::Get() [ONNXRuntimeError] : 1 : FAIL : Failed to load library " + prov + " with error: libcublasLt.so.13: cannot open shared object file: No such file or directory",
			"cannot load the CUDA provider " + prov + ": it needs libcublasLt.so.13, which the dynamic loader does not find"},
		{"Failed to load library /x/lib-gpu/libonnxruntime_providers_shared.so with error: /x/lib-gpu/libonnxruntime_providers_shared.so: cannot open shared object file: No such file or directory",
			"/x/lib-gpu/libonnxruntime_providers_shared.so is missing"},
		{"Failed to load library " + prov + " with error: " + prov + ": undefined symbol: Provider_GetHost",
			"cannot load the CUDA provider " + prov + ": " + prov + ": undefined symbol: Provider_GetHost"},
		{"[ONNXRuntimeError] : 1 : FAIL : CUDA failure 100: no CUDA-capable device is detected",
			"CUDA provider: CUDA failure 100: no CUDA-capable device is detected"},
	} {
		if got := cudaReason("CUDA provider", errors.New(c.in)); !strings.Contains(got, c.want) {
			t.Errorf("cudaReason(%q)\n = %q\nwant it to contain %q", c.in, got, c.want)
		}
	}
}

func TestVersionAtLeast(t *testing.T) {
	for _, c := range []struct {
		v, min string
		ok     bool
	}{{"1.24.3", "1.24", true}, {"1.30.0", "1.24", true}, {"2.0.0", "1.24", true}, {"1.23.2", "1.24", false}, {"", "1.24", false}, {"1", "1.24", false}} {
		if got := versionAtLeast(c.v, c.min); got != c.ok {
			t.Errorf("versionAtLeast(%q, %q) = %v", c.v, c.min, got)
		}
	}
}

func TestORTClose(t *testing.T) {
	m := loadTiny(t)
	r := requireORT(t, m, Options{})
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	if err := r.Predict(make([]uint16, 8), make([]uint32, 256)); !errors.Is(err, ErrClosed) {
		t.Errorf("Predict after Close: %v", err)
	}
	if err := r.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
}
