package model

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"

	ort "github.com/yalue/onnxruntime_go"
)

// ONNX Runtime backend. onnxruntime_go keeps one process-global environment bound to one
// shared library: the first NewORTRunner loads it, and later calls must name the same
// library (or none). Sessions are created per runner and never shared across runners.

// MinORTVersion is the oldest ONNX Runtime library this build accepts (onnxruntime_go
// v1.27.0 needs C API version 24).
const MinORTVersion = "1.24"

// ErrORTUnavailable wraps every reason NewORTRunner cannot use ONNX Runtime.
var ErrORTUnavailable = errors.New("ONNX Runtime unavailable")

var ortState struct {
	mu   sync.Mutex
	path string // library loaded into this process; "" until one loads
}

// maxRunRows bounds the rows of one ORT Run (and so each session's buffers).
const maxRunRows = 1024

// minSplitRows: Predict splits a batch across sessions only when each part gets at least
// this many rows (below it, the goroutine hand-off costs more than it saves).
const minSplitRows = 16

// FindORTLibrary returns the library path Open would try: libPath, $LMFS_ORT_LIB, then
// lib/libonnxruntime.so.1 next to the executable, in ../lib from it, and in lib/ of the
// working directory or one of its parents (up to 5 levels); when none exists, the bare
// name for the dynamic loader's search path.
func FindORTLibrary(libPath string) string {
	if libPath != "" {
		return libPath
	}
	if p := os.Getenv("LMFS_ORT_LIB"); p != "" {
		return p
	}
	var dirs []string
	if exe, err := os.Executable(); err == nil {
		d := filepath.Dir(exe)
		dirs = append(dirs, filepath.Join(d, "lib"), filepath.Join(d, "..", "lib"))
	}
	if wd, err := os.Getwd(); err == nil {
		// lib/ in the working directory or a parent (tests run in package directories).
		for d, i := wd, 0; i < 6; i++ {
			dirs = append(dirs, filepath.Join(d, "lib"))
			up := filepath.Dir(d)
			if up == d {
				break
			}
			d = up
		}
	}
	for _, d := range dirs {
		for _, name := range []string{"libonnxruntime.so.1", "libonnxruntime.so", "libonnxruntime.dylib"} {
			p := filepath.Join(d, name)
			if st, err := os.Stat(p); err == nil && !st.IsDir() {
				return filepath.Clean(p)
			}
		}
	}
	return "libonnxruntime.so.1"
}

// LoadORT loads the ONNX Runtime library FindORTLibrary(libPath) names into the process
// (once; see initORT) and returns its path. Callers use it to learn early whether the
// library is usable at all, before anything depends on it. Errors wrap ErrORTUnavailable.
func LoadORT(libPath string) (string, error) {
	path := FindORTLibrary(libPath)
	return path, initORT(path)
}

// ORTLibrary is the library loaded into this process and its version ("" before one loads).
func ORTLibrary() (path, version string) {
	return ortLibPath(), ortVersion()
}

// initORT loads the library once per process. A failed load may be retried (with the
// same or another path); a successful one binds the process to that library.
func initORT(path string) error {
	ortState.mu.Lock()
	defer ortState.mu.Unlock()
	if ortState.path != "" {
		if ortState.path != path {
			return fmt.Errorf("%w: this process already loaded %s, cannot load %s too", ErrORTUnavailable, ortState.path, path)
		}
		return nil
	}
	if ort.IsInitialized() {
		// Someone else in the process initialized onnxruntime_go; use what it loaded.
		ortState.path = path
		return checkORTVersion()
	}
	ort.SetSharedLibraryPath(path)
	if err := ort.InitializeEnvironment(ort.WithLogLevelError()); err != nil {
		return fmt.Errorf("%w: %s", ErrORTUnavailable, loadFailure(path, err))
	}
	if err := checkORTVersion(); err != nil {
		ort.DestroyEnvironment()
		return err
	}
	ortState.path = path
	return nil
}

// loadReason is the dynamic loader's reason in an InitializeEnvironment error, without the
// wrappers that repeat the path ("Platform-specific initialization failed: Error loading
// ONNX shared library "x": x: invalid ELF header" is "invalid ELF header"), or a missing
// symbol for a library that is not ONNX Runtime.
func loadReason(err error) string {
	s := err.Error()
	if strings.Contains(s, "Error loading ONNX shared library") {
		i := strings.LastIndex(s, ": ")
		if i < 0 {
			return ""
		}
		return strings.TrimSpace(s[i+2:])
	}
	return s
}

// loadFailure says why the library at path did not load, in words a user can act on.
func loadFailure(path string, err error) string {
	reason := loadReason(err)
	if !strings.ContainsRune(path, '/') {
		if reason == "" || strings.Contains(reason, "No such file") {
			return fmt.Sprintf("no ONNX Runtime library found (%s is not in lib/ beside lmfs or on the loader's search path, and $LMFS_ORT_LIB is not set)", path)
		}
	} else if _, serr := os.Stat(path); serr != nil {
		var pe *os.PathError
		if errors.As(serr, &pe) {
			serr = pe.Err
		}
		return fmt.Sprintf("cannot load %s: %v", path, serr)
	}
	if reason == "" {
		// dlerror is per thread and may be read on another one: the loader's words are lost.
		reason = "not a loadable shared library"
	}
	return fmt.Sprintf("cannot load %s: %s", path, reason)
}

// ortReason is the message of an ONNX Runtime error without the source position and status
// code before it ("/onnxruntime_src/...cc:1952 onnxruntime::...Get() [ONNXRuntimeError] :
// 1 : FAIL : Failed to load library ..." is "Failed to load library ...").
func ortReason(err error) string {
	s := err.Error()
	const tag = "[ONNXRuntimeError] : "
	if i := strings.LastIndex(s, tag); i >= 0 {
		rest := s[i+len(tag):]
		// "N : CODE : message"
		if parts := strings.SplitN(rest, " : ", 3); len(parts) == 3 {
			return strings.TrimSpace(parts[2])
		}
		return rest
	}
	return s
}

// cudaReason says why setting up the CUDA provider failed (what: the step). ONNX Runtime
// loads the provider library, and through it the NVIDIA libraries, only then; a missing NVIDIA
// library is the common failure, and the loader's words ("Failed to load library P with
// error: libcublasLt.so.13: cannot open shared object file: ...") become what to install.
func cudaReason(what string, err error) string {
	s := ortReason(err)
	const pre, mid = "Failed to load library ", " with error: "
	i := strings.Index(s, pre)
	j := strings.Index(s, mid)
	if i < 0 || j < i+len(pre) {
		return what + ": " + s
	}
	lib, why := s[i+len(pre):j], strings.TrimSpace(s[j+len(mid):])
	k := strings.Index(why, ": cannot open shared object file")
	if k <= 0 {
		return fmt.Sprintf("cannot load the CUDA provider %s: %s", lib, why)
	}
	missing := why[:k]
	if strings.HasPrefix(filepath.Base(missing), "libonnxruntime") {
		return fmt.Sprintf("cannot load the CUDA provider: %s is missing (a CUDA build of ONNX Runtime keeps it beside libonnxruntime: make ort-gpu)", missing)
	}
	return fmt.Sprintf("cannot load the CUDA provider %s: it needs %s, which the dynamic loader does not find (install the NVIDIA driver and the CUDA 13 runtime, cuBLAS and cuDNN 9, or add their directory to LD_LIBRARY_PATH: README, NVIDIA GPU)", lib, missing)
}

// cudaProviderDir is where the loaded library looks for its CUDA provider: the directory
// it was loaded from (ONNX Runtime loads providers from beside itself), per the process's
// memory maps, which also covers a library found on the loader's search path.
func cudaProviderDir(path string) string {
	if b, err := os.ReadFile("/proc/self/maps"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if i := strings.IndexByte(line, '/'); i >= 0 {
				p := line[i:]
				if strings.HasPrefix(filepath.Base(p), "libonnxruntime.so") {
					return filepath.Dir(p)
				}
			}
		}
	}
	return filepath.Dir(path)
}

// hasCUDAProvider reports whether the CUDA provider library is beside the loaded ONNX
// Runtime. Device auto tries CUDA only then: a CPU build (the npm package) has none, and
// asking it for CUDA only produces a long load error.
func hasCUDAProvider(path string) bool {
	_, err := os.Stat(filepath.Join(cudaProviderDir(path), "libonnxruntime_providers_cuda.so"))
	return err == nil
}

func checkORTVersion() error {
	v := ort.GetVersion()
	if !versionAtLeast(v, MinORTVersion) {
		return fmt.Errorf("%w: library version %q, need %s or newer", ErrORTUnavailable, v, MinORTVersion)
	}
	return nil
}

func versionAtLeast(v, min string) bool {
	a, b := strings.Split(v, "."), strings.Split(min, ".")
	for i := range b {
		if i >= len(a) {
			return false
		}
		x, err1 := strconv.Atoi(a[i])
		y, err2 := strconv.Atoi(b[i])
		if err1 != nil || err2 != nil {
			return false
		}
		if x != y {
			return x > y
		}
	}
	return true
}

// ortLibPath is the library loaded into this process, or "".
func ortLibPath() string {
	ortState.mu.Lock()
	defer ortState.mu.Unlock()
	return ortState.path
}

// ortVersion is the loaded library's version, or "" before one loads.
func ortVersion() string {
	if !ort.IsInitialized() {
		return ""
	}
	return ort.GetVersion()
}

type ortRunner struct {
	m         *Model
	backend   string
	dense     bool   // sessions run the integer dense graph (densegraph.go), not the stored one
	graphNote string // why a CPU runner runs the stored graph, if the integer one was refused
	sessions  []*ortSession
	pool      chan *ortSession
	mu        sync.RWMutex // Predict holds it shared, Close exclusively
	closed    bool
}

// ErrClosed is returned by Predict after Close.
var ErrClosed = errors.New("model runner closed")

type ortSession struct {
	s   *ort.DynamicAdvancedSession
	m   *Model
	idx []int64   // [maxRunRows*Inputs] bag rows: the stored graph's input, or bagSum's
	flt []float32 // [maxRunRows*256] the stored graph's output (nil when dense)
	lgi []int32   // [maxRunRows*256] integer logits
	// dense: the session runs the integer dense graph (densegraph.go) on h0, which Go
	// computes (bagSum, then the first activation); otherwise the stored graph on idx.
	dense bool
	h0    []uint8 // [maxRunRows*H0]
	acc   []int32 // [H0]
	lanes []uint64
	// io caches the input/output tensors per row count: views of idx (or h0) and flt,
	// created on first use (creating them on every Run costs about as much as a tiny model).
	io map[int]ort.Value
	fo map[int]ort.Value
}

func (s *ortSession) tensors(n int) (ort.Value, ort.Value, error) {
	if in, ok := s.io[n]; ok {
		return in, s.fo[n], nil
	}
	var in ort.Value
	var err error
	if s.dense {
		in, err = ort.NewTensor(ort.NewShape(int64(n), int64(s.m.h0)), s.h0[:n*s.m.h0])
	} else {
		k := s.m.Inputs()
		in, err = ort.NewTensor(ort.NewShape(int64(n), int64(k)), s.idx[:n*k])
	}
	if err != nil {
		return nil, nil, fmt.Errorf("ort input tensor: %w", err)
	}
	var out ort.Value
	if s.dense {
		out, err = ort.NewTensor(ort.NewShape(int64(n), Outputs), s.lgi[:n*Outputs])
	} else {
		out, err = ort.NewTensor(ort.NewShape(int64(n), Outputs), s.flt[:n*Outputs])
	}
	if err != nil {
		in.Destroy()
		return nil, nil, fmt.Errorf("ort output tensor: %w", err)
	}
	s.io[n] = in
	s.fo[n] = out
	return in, out, nil
}

func (s *ortSession) destroy() {
	for n, in := range s.io {
		in.Destroy()
		s.fo[n].Destroy()
	}
	s.io, s.fo = nil, nil
	s.s.Destroy()
}

// NewORTRunner evaluates m with ONNX Runtime. It loads the library (see FindORTLibrary),
// creates o.Sessions sessions with o.Threads intra-op threads each on o.Device, and runs
// the self-test: every session's output on a fixed probe batch must equal the Go
// evaluator's bit for bit. Errors wrap ErrORTUnavailable.
func NewORTRunner(m *Model, o Options) (Runner, error) {
	r, cudaErr, err := newORT(m, o)
	if cudaErr != nil && err == nil {
		// The library has a CUDA provider, so the GPU was likely expected: a warning.
		o.logger().Warn("model runner: CUDA unavailable, using ONNX Runtime on the CPU", "model", m.Name(), "cuda_err", cudaErr)
	}
	if err != nil {
		return nil, err
	}
	if r.graphNote != "" {
		// Still exact, only slower: a warning, so that it is seen in the store's log.
		o.logger().Warn("model runner: "+r.graphNote, "model", m.Name())
	}
	return r, nil
}

// newORT is NewORTRunner without logging; cudaErr is why device auto did not get CUDA.
func newORT(m *Model, o Options) (r *ortRunner, cudaErr, err error) {
	path := FindORTLibrary(o.LibPath)
	if err := initORT(path); err != nil {
		return nil, nil, err
	}
	nsess, threads := o.sessions(), o.threads()
	switch strings.ToLower(o.Device) {
	case "", "auto":
		if hasCUDAProvider(path) {
			r, cudaErr = newORTRunner(m, nsess, threads, true)
			if cudaErr == nil {
				return r, nil, nil
			}
		}
		r, err = newORTRunner(m, nsess, threads, false)
		return r, cudaErr, err
	case "cpu":
		r, err = newORTRunner(m, nsess, threads, false)
	case "cuda":
		if !hasCUDAProvider(path) {
			return nil, nil, fmt.Errorf("%w: %s has no CUDA provider (no libonnxruntime_providers_cuda.so in %s): a CUDA build of ONNX Runtime %s or newer is needed",
				ErrORTUnavailable, path, cudaProviderDir(path), MinORTVersion)
		}
		r, err = newORTRunner(m, nsess, threads, true)
	default:
		err = fmt.Errorf("%w: unknown device %q (auto, cpu or cuda)", ErrORTUnavailable, o.Device)
	}
	return r, nil, err
}

// newORTRunner: on CPUs the integer dense graph built from the tensors (densegraph.go); on
// CUDA, for shifts it cannot express, or when it fails the self-test (an ONNX Runtime whose
// integer kernels differ: never seen, but the stored graph is still exact there), the stored
// graph.
func newORTRunner(m *Model, nsess, threads int, cuda bool) (*ortRunner, error) {
	if !cuda && m.intGraphOK() && !testStoredGraph {
		r, err := newORTRunnerGraph(m, nsess, threads, false, true)
		if err == nil {
			return r, nil
		}
		if r2, err2 := newORTRunnerGraph(m, nsess, threads, false, false); err2 == nil {
			r2.graphNote = fmt.Sprintf("integer graph refused (%v): running the stored graph", err)
			return r2, nil
		}
		return nil, err
	}
	return newORTRunnerGraph(m, nsess, threads, cuda, false)
}

func newORTRunnerGraph(m *Model, nsess, threads int, cuda, dense bool) (*ortRunner, error) {
	r := &ortRunner{m: m, backend: "ort-cpu", pool: make(chan *ortSession, nsess), dense: dense}
	if cuda {
		r.backend = "ort-cuda"
	}
	var graph []byte
	if dense {
		g, err := m.denseGraph()
		if err != nil {
			return nil, fmt.Errorf("%w: integer graph: %v", ErrORTUnavailable, err)
		}
		graph = g
	} else {
		graph = m.ONNX()
	}
	for i := 0; i < nsess; i++ {
		s, err := newORTSession(m, graph, threads, cuda, dense)
		if err != nil {
			r.destroy()
			return nil, err
		}
		r.sessions = append(r.sessions, s)
	}
	if err := r.selfTest(); err != nil {
		r.destroy()
		return nil, err
	}
	for _, s := range r.sessions {
		r.pool <- s
	}
	return r, nil
}

func newORTSession(m *Model, graph []byte, threads int, cuda, dense bool) (*ortSession, error) {
	opts, err := ort.NewSessionOptions()
	if err != nil {
		return nil, fmt.Errorf("%w: session options: %v", ErrORTUnavailable, err)
	}
	defer opts.Destroy()
	if err := opts.SetIntraOpNumThreads(threads); err != nil {
		return nil, fmt.Errorf("%w: set threads: %v", ErrORTUnavailable, err)
	}
	if err := opts.SetInterOpNumThreads(1); err != nil {
		return nil, fmt.Errorf("%w: set inter-op threads: %v", ErrORTUnavailable, err)
	}
	if cuda {
		cu, err := ort.NewCUDAProviderOptions()
		if err != nil {
			return nil, fmt.Errorf("%w: %s", ErrORTUnavailable, cudaReason("CUDA provider", err))
		}
		defer cu.Destroy()
		// TF32 would round the float32 products: never allowed (FORMAT.md). Setting options
		// is where ONNX Runtime first loads the provider library and the NVIDIA ones.
		if err := cu.Update(map[string]string{"device_id": "0", "use_tf32": "0"}); err != nil {
			return nil, fmt.Errorf("%w: %s", ErrORTUnavailable, cudaReason("CUDA provider options", err))
		}
		if err := opts.AppendExecutionProviderCUDA(cu); err != nil {
			return nil, fmt.Errorf("%w: %s", ErrORTUnavailable, cudaReason("CUDA provider", err))
		}
	}
	input := "ctx"
	if dense {
		input = "h0"
	}
	s, err := ort.NewDynamicAdvancedSessionWithONNXData(graph, []string{input}, []string{"logits"}, opts)
	if err != nil {
		return nil, fmt.Errorf("%w: create session for %s: %v", ErrORTUnavailable, m.Name(), ortReason(err))
	}
	os := &ortSession{
		s: s, m: m, dense: dense,
		idx: make([]int64, maxRunRows*m.Inputs()),
		lgi: make([]int32, maxRunRows*Outputs),
		io:  map[int]ort.Value{},
		fo:  map[int]ort.Value{},
	}
	if !dense {
		os.flt = make([]float32, maxRunRows*Outputs)
	} else {
		os.h0 = make([]uint8, maxRunRows*m.h0)
		os.acc = make([]int32, m.h0)
		os.lanes = make([]uint64, 2*(m.h0+7)/8)
	}
	return os, nil
}

// logits runs the graph on n <= maxRunRows rows and returns n*256 integer logits.
func (s *ortSession) logits(ctx []uint16, n int) ([]int32, error) {
	k := s.m.order
	if n < 1 || n > maxRunRows {
		return nil, fmt.Errorf("ort run: %d rows outside 1..%d", n, maxRunRows)
	}
	w := s.m.Inputs()
	idx, lgi := s.idx[:n*w], s.lgi[:n*Outputs]
	for r := 0; r < n; r++ {
		s.m.bagRows(ctx[r*k:(r+1)*k], idx[r*w:(r+1)*w])
	}
	if s.dense {
		h0 := s.m.h0
		for r := 0; r < n; r++ {
			s.m.bagActivate(idx[r*w:(r+1)*w], s.h0[r*h0:(r+1)*h0], s.acc, s.lanes)
		}
	}
	in, out, err := s.tensors(n)
	if err != nil {
		return nil, err
	}
	if err := s.s.Run([]ort.Value{in}, []ort.Value{out}); err != nil {
		return nil, fmt.Errorf("ort run: %w", err)
	}
	if s.dense {
		// The integer graph returns int32 logits (into lgi).
		for i, v := range lgi {
			if v < -s.m.clip || v > s.m.clip {
				return nil, fmt.Errorf("ort run: logit %d at %d outside [-%d, %d]", v, i, s.m.clip, s.m.clip)
			}
		}
		return lgi, nil
	}
	clip := float32(s.m.clip)
	for i, f := range s.flt[:n*Outputs] {
		// The graph must return integers in [-L, L]; anything else is a broken graph,
		// reported instead of indexing explut out of range.
		if !(f >= -clip && f <= clip) || f != float32(math.Floor(float64(f))) {
			return nil, fmt.Errorf("ort run: logit %v at %d is not an integer in [-%d, %d]", f, i, s.m.clip, s.m.clip)
		}
		lgi[i] = int32(f)
	}
	return lgi, nil
}

// predict runs rows in chunks of maxRunRows and writes frequencies.
func (s *ortSession) predict(ctx []uint16, out []uint32) error {
	k := s.m.order
	n := len(ctx) / k
	for lo := 0; lo < n; lo += maxRunRows {
		c := min(maxRunRows, n-lo)
		lg, err := s.logits(ctx[lo*k:(lo+c)*k], c)
		if err != nil {
			return err
		}
		for r := 0; r < c; r++ {
			s.m.freqs(lg[r*Outputs:(r+1)*Outputs], out[(lo+r)*Outputs:(lo+r+1)*Outputs])
		}
	}
	return nil
}

func (r *ortRunner) Order() int      { return r.m.order }
func (r *ortRunner) Backend() string { return r.backend }

func (r *ortRunner) Predict(ctx []uint16, out []uint32) error {
	k := r.m.order
	n, err := checkBatch(k, ctx, out)
	if err != nil || n == 0 {
		return err
	}
	r.mu.RLock()
	defer r.mu.RUnlock()
	if r.closed {
		return ErrClosed
	}
	parts := 1
	if n >= 2*minSplitRows {
		parts = min(len(r.sessions), n/minSplitRows)
	}
	if parts <= 1 {
		s := <-r.pool
		defer func() { r.pool <- s }()
		return s.predict(ctx, out)
	}
	per := (n + parts - 1) / parts
	errs := make([]error, parts)
	var wg sync.WaitGroup
	for p := 0; p < parts; p++ {
		lo, hi := p*per, min((p+1)*per, n)
		if lo >= hi {
			break
		}
		wg.Go(func() {
			s := <-r.pool
			defer func() { r.pool <- s }()
			errs[p] = s.predict(ctx[lo*k:hi*k], out[lo*Outputs:hi*Outputs])
		})
	}
	wg.Wait()
	return errors.Join(errs...)
}

// Close waits for running Predict calls and destroys the sessions. Later Predict calls
// return ErrClosed; a second Close does nothing.
func (r *ortRunner) Close() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if !r.closed {
		r.closed = true
		r.destroy()
	}
	return nil
}

func (r *ortRunner) destroy() {
	for _, s := range r.sessions {
		s.destroy()
	}
	r.sessions = nil
}

// ProbeContexts is the fixed batch of the ORT self-test: the all-256 context, 257 rows
// that together use every bag row (symbol (r+37k) mod 257 at position k), and 190
// pseudo-random rows, some cut short by 256s like the starts of blocks.
func ProbeContexts(order int) []uint16 {
	var ctx []uint16
	for k := 0; k < order; k++ {
		ctx = append(ctx, 256)
	}
	for r := 0; r < Symbols; r++ {
		for k := 0; k < order; k++ {
			ctx = append(ctx, uint16((r+37*k)%Symbols))
		}
	}
	rng := rand.New(rand.NewPCG(0x6c6d6673, 1))
	for r := 0; r < 190; r++ {
		start := order
		if r%3 == 0 {
			start = rng.IntN(order + 1)
		}
		for k := 0; k < order; k++ {
			if k >= start {
				ctx = append(ctx, 256)
			} else {
				ctx = append(ctx, uint16(rng.IntN(256)))
			}
		}
	}
	return ctx
}

// selfTest compares every session with the Go evaluator on the probe batch, as one run
// and row by row for the first rows; any differing logit refuses ORT.
func (r *ortRunner) selfTest() error {
	m := r.m
	k := m.order
	probe := ProbeContexts(k)
	n := len(probe) / k
	want := make([]int32, n*Outputs)
	if err := m.Logits(probe, want); err != nil {
		return err
	}
	check := func(si, row0 int, got []int32) error {
		for i, g := range got {
			if w := want[row0*Outputs+i]; g != w {
				return fmt.Errorf("%w: self-test failed (%s, session %d): row %d logit %d is %d, the Go evaluator says %d",
					ErrORTUnavailable, r.backend, si, row0+i/Outputs, i%Outputs, g, w)
			}
		}
		return nil
	}
	for si, s := range r.sessions {
		got, err := s.logits(probe, n)
		if err != nil {
			return fmt.Errorf("%w: self-test (%s, session %d): %v", ErrORTUnavailable, r.backend, si, err)
		}
		if err := check(si, 0, got); err != nil {
			return err
		}
		for row := 0; row < 3; row++ {
			got, err := s.logits(probe[row*k:(row+1)*k], 1)
			if err != nil {
				return fmt.Errorf("%w: self-test (%s, session %d): %v", ErrORTUnavailable, r.backend, si, err)
			}
			if err := check(si, row, got); err != nil {
				return err
			}
		}
	}
	return nil
}

// graphName says which graph the sessions run: "integer" (built by lmfs) or "stored".
func (r *ortRunner) graphName() string {
	if r.dense {
		return "integer"
	}
	return "stored"
}
