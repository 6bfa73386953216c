package model

import (
	"log/slog"
	"runtime"
)

// Runner evaluates a model on batches of contexts. Safe for concurrent use.
//
// Exactness contract: for a given model file, Predict returns the same frequencies, bit
// for bit, on every backend ("go", "ort-cpu", "ort-cuda"), batch size, split of a batch
// across calls, session count and thread count. Codecs rely on this: a block encoded with
// one backend decodes with any other.
type Runner interface {
	// Order is K: Predict takes K symbols per row.
	Order() int
	// Predict: ctx holds n*Order() symbols (0..256; per row c[0] = most recent byte,
	// 256 = before block start); out receives n*256 frequencies, each >= 1 and at most
	// 2^16 (so a row sums to at most 2^24). Results are bit-identical on every backend,
	// batch size and thread count. A symbol above 256 or a size mismatch is an error.
	Predict(ctx []uint16, out []uint32) error
	// Backend names the engine: "go", "ort-cpu" or "ort-cuda".
	Backend() string
	// Close releases the runner; Predict must not be called afterwards.
	Close() error
}

// Options configure NewORTRunner and Open. The zero value is a good default.
type Options struct {
	// LibPath is the ONNX Runtime shared library. Empty: $LMFS_ORT_LIB, then lib/ next
	// to the executable, ../lib from it, lib/ in the working directory or a parent,
	// then the system's library search path (see FindORTLibrary).
	LibPath string
	// Device is "auto" (or empty: CUDA if the library has it, else CPU), "cpu" or "cuda".
	Device string
	// Sessions is the number of ORT sessions; Predict splits large batches across
	// them and concurrent calls use different ones. 0 means DefaultSessions, or
	// GOMAXPROCS when that is smaller.
	Sessions int
	// Threads is each session's intra-op thread count. 0 means DefaultThreads.
	Threads int
	// Logger receives the one line about the chosen backend or the fallback.
	// Nil means slog.Default().
	Logger *slog.Logger
}

// Defaults measured on a 2-core x86-64 machine: two sessions of one thread each beat one
// session of two threads (ORT's intra-op parallelism barely helps at these sizes).
const (
	DefaultSessions = 2
	DefaultThreads  = 1
)

func (o Options) sessions() int {
	if o.Sessions > 0 {
		return o.Sessions
	}
	return max(1, min(DefaultSessions, runtime.GOMAXPROCS(0)))
}

func (o Options) threads() int {
	if o.Threads > 0 {
		return o.Threads
	}
	return DefaultThreads
}

func (o Options) logger() *slog.Logger {
	if o.Logger != nil {
		return o.Logger
	}
	return slog.Default()
}

// Open returns the fastest exact runner available: ONNX Runtime when its library loads
// (see Options.LibPath), has a supported version and passes a self-test against the Go
// evaluator (any differing bit refuses ORT); otherwise the Go evaluator, with one log line
// saying why. Open fails only if the Go evaluator cannot run either (it always can).
func Open(m *Model, o Options) (Runner, error) {
	r, cudaErr, err := newORT(m, o)
	if err == nil {
		attrs := []any{"model", m.Name(), "backend", r.Backend(), "lib", ortLibPath(), "ort_version", ortVersion(),
			"sessions", len(r.sessions), "graph", r.graphName()}
		if r.graphNote != "" {
			attrs = append(attrs, "graph_note", r.graphNote)
		}
		if cudaErr != nil {
			attrs = append(attrs, "cuda_err", cudaErr)
		}
		o.logger().Info("model runner", attrs...)
		return r, nil
	}
	o.logger().Warn("model runner: ONNX Runtime unavailable, using the slower Go evaluator", "model", m.Name(), "err", err)
	return NewGoRunner(m), nil
}
