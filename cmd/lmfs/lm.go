package main

import (
	"crypto/sha256"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"strings"

	"lmfs/blockstore"
	"lmfs/codec"
	"lmfs/model"
)

// lmFlags are the model options shared by mount, compact and bench.
type lmFlags struct {
	model, ortLib, device string
	noLM                  bool
	// deviceSet and libSet: the user named a device or a library (a flag or $LMFS_ORT_LIB).
	// What was asked for must work; only the defaults fall back to the Go evaluator.
	deviceSet, libSet bool
}

// devices are the --device values.
var devices = []string{"auto", "cpu", "cuda", "go"}

// namedString is a string flag that records whether it was given.
type namedString struct {
	v   *string
	set *bool
}

func (f namedString) String() string {
	if f.v == nil {
		return ""
	}
	return *f.v
}

func (f namedString) Set(s string) error {
	*f.v, *f.set = s, true
	return nil
}

func (lf *lmFlags) register(fl *flag.FlagSet) {
	lf.device = "auto"
	fl.StringVar(&lf.model, "model", "", "model `file` (.lmfsm) for new LM blocks (default: the built-in model)")
	fl.Var(namedString{&lf.ortLib, &lf.libSet}, "ort-lib", "ONNX Runtime `library` (default: $LMFS_ORT_LIB, then lib/ next to the executable)")
	fl.Var(namedString{&lf.device, &lf.deviceSet}, "device", "model `device`: auto (CUDA when the library has it, else CPU; without ONNX Runtime new blocks get the classical codecs), cpu, cuda, or go (the plain-Go evaluator, also for new blocks)")
	fl.BoolVar(&lf.noLM, "no-lm", false, "code new blocks with the classical codecs only")
}

// strict reports whether ONNX Runtime must work: a device other than auto or go, or a
// library the user named, was asked for.
func (lf *lmFlags) strict() bool {
	return lf.device != "go" && (lf.libSet || os.Getenv("LMFS_ORT_LIB") != "" || (lf.deviceSet && lf.device != "auto"))
}

// check validates the flags before anything is made or mounted: a known device, a model
// file that loads, and, when one was asked for, a device and library that work (a runner is
// opened as the server would open it, so a library without CUDA or one that fails the
// self-test is refused here). It returns the fallback: why the defaults could not load ONNX
// Runtime (new blocks then get the classical codecs), nil when it loads.
func (lf *lmFlags) check() (fallback error, err error) {
	if !slices.Contains(devices, lf.device) {
		return nil, fmt.Errorf("unknown --device %q (auto, cpu, cuda or go)", lf.device)
	}
	var m *model.Model
	if lf.model != "" && !lf.noLM {
		if m, err = lf.load(); err != nil {
			return nil, err
		}
	}
	switch {
	case lf.device == "go":
		return nil, nil
	case lf.strict():
		if m == nil {
			if m, err = model.Default(); err != nil {
				return nil, err
			}
		}
		r, _, err := lf.runner(m, slog.New(slog.DiscardHandler))
		if err != nil {
			return nil, err
		}
		r.Close()
		return nil, nil
	}
	if _, err := model.LoadORT(lf.ortLib); err != nil {
		return err, nil
	}
	return nil, nil
}

// fallbackNote is the one line a user sees when the defaults found no usable ONNX Runtime.
func fallbackNote(why error) string {
	return fmt.Sprintf("lmfs: note: %s; new blocks get the classical codecs, LM blocks decode with the slower Go evaluator (--ort-lib or $LMFS_ORT_LIB names the library)",
		strings.TrimPrefix(why.Error(), model.ErrORTUnavailable.Error()+": "))
}

// load returns the selected model: --model, else the built-in default.
func (lf *lmFlags) load() (*model.Model, error) {
	if lf.model == "" {
		return model.Default()
	}
	m, err := model.Load(lf.model)
	if err != nil {
		// model.Load names the file itself; say it once, as the flag the user gave.
		var pe *os.PathError
		if errors.As(err, &pe) {
			return nil, fmt.Errorf("--model %s: %w", lf.model, pe.Err)
		}
		if inner := errors.Unwrap(err); inner != nil {
			err = inner
		}
		return nil, fmt.Errorf("--model %s: %w", lf.model, err)
	}
	return m, nil
}

// runner evaluates m on the selected device. A device or library that was asked for must
// work (an error naming it otherwise); the defaults fall back to the Go evaluator, and
// fallback says why.
func (lf *lmFlags) runner(m *model.Model, log *slog.Logger) (r model.Runner, fallback, err error) {
	if lf.device == "go" {
		return model.NewGoRunner(m), nil, nil
	}
	r, err = model.NewORTRunner(m, model.Options{LibPath: lf.ortLib, Device: lf.device, Logger: log})
	switch {
	case err == nil:
		return r, nil, nil
	case lf.strict():
		what := "--device " + lf.device
		if !lf.deviceSet || lf.device == "auto" {
			what = "ONNX Runtime library " + model.FindORTLibrary(lf.ortLib)
		}
		return nil, nil, fmt.Errorf("%s cannot be used: %s", what, strings.TrimPrefix(err.Error(), model.ErrORTUnavailable.Error()+": "))
	}
	return model.NewGoRunner(m), err, nil
}

// lmSetup is the models a mount uses: every model the store holds (to decode) and the
// selected one (to code new blocks).
type lmSetup struct {
	set     *codec.LMSet
	encoder *codec.LMCodec // nil with --no-lm or when no model is found
	info    map[string]any
	runners []model.Runner
	// fallback is why ONNX Runtime is not used (device auto), nil when it is.
	fallback error
}

// policy is the compactor's codec choice: the default, with the selected model when there is one.
func (l *lmSetup) policy() *codec.Policy {
	if l.encoder == nil {
		return codec.DefaultPolicy(nil) // not a nil *LMCodec in the interface
	}
	return codec.DefaultPolicy(l.encoder)
}

func (l *lmSetup) Close() {
	for _, r := range l.runners {
		r.Close()
	}
}

// openModels loads the store's models and the selected one, records the selected one in the
// store, and makes the store decode LM blocks with them.
func openModels(st *blockstore.Store, lf lmFlags, log *slog.Logger) (*lmSetup, error) {
	l := &lmSetup{set: codec.NewLMSet(), info: map[string]any{}}
	add := func(data []byte, what string) (*model.Model, *codec.LMCodec, error) {
		m, err := model.Parse(data)
		if err != nil {
			return nil, nil, fmt.Errorf("%s: %w", what, err)
		}
		if c, ok := l.set.Get(m.ShortID()); ok {
			return m, c, nil
		}
		r, fallback, err := lf.runner(m, log)
		if err != nil {
			return nil, nil, fmt.Errorf("%s: %w", what, err)
		}
		if fallback != nil && l.fallback == nil {
			l.fallback = fallback
			log.Warn("ONNX Runtime not usable: new blocks get the classical codecs, LM blocks decode with the Go evaluator", "err", fallback)
		} else if fallback == nil && l.fallback == nil && len(l.runners) == 0 {
			lib, ver := model.ORTLibrary()
			log.Info("model runner", "backend", r.Backend(), "lib", lib, "version", ver)
		}
		l.runners = append(l.runners, r)
		c := codec.NewLMCodec(r, m.ShortID())
		l.set.Add(c)
		l.info["model_backend"] = r.Backend()
		return m, c, nil
	}
	stored, damaged, err := st.Models()
	if err != nil {
		l.Close()
		return nil, fmt.Errorf("read the store's models: %w", err)
	}
	for _, id := range damaged {
		// Its blocks read as errors (EIO) until an intact copy is back: the selected model
		// puts one back below when it is the same file.
		log.Error("a stored model is damaged; its LM blocks cannot be read", "model", fmt.Sprintf("%x", id))
	}
	have := map[[32]byte]bool{} // intact copies the store holds (Models checked their ids)
	for _, data := range stored {
		id := sha256.Sum256(data)
		have[id] = true
		if _, _, err := add(data, fmt.Sprintf("stored model %x", id)); err != nil {
			l.Close()
			return nil, err
		}
	}
	if !lf.noLM {
		m, err := lf.load()
		if err != nil {
			l.Close()
			return nil, err
		}
		_, c, err := add(m.Bytes(), m.Name())
		if err != nil {
			l.Close()
			return nil, err
		}
		// Recorded unless the store already holds an intact copy: PutModel would read the
		// copy back and hash it again (21 MB for the default model) at every mount.
		if !have[m.ID()] {
			if err := st.PutModel(m.Bytes()); err != nil {
				l.Close()
				return nil, fmt.Errorf("record model in store: %w", err)
			}
		}
		l.info["model"] = fmt.Sprintf("%s (%08x)", m.Name(), m.ShortID())
		if l.info["model_backend"] == "go" && lf.device != "go" {
			// The Go evaluator decodes fine but is too slow to code a whole store.
			l.info["model"] = fmt.Sprintf("%s (%08x), decode only: no ONNX Runtime", m.Name(), m.ShortID())
		} else {
			l.encoder = c
		}
	}
	if _, ok := l.info["model"]; !ok {
		l.info["model"] = "none (classical codecs only)"
	}
	st.SetLM(l.set)
	return l, nil
}
