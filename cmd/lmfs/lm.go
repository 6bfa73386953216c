package main

import (
	"crypto/sha256"
	"flag"
	"fmt"
	"log/slog"

	"lmfs/blockstore"
	"lmfs/codec"
	"lmfs/model"
)

// lmFlags are the model options shared by mount, compact and bench.
type lmFlags struct {
	model, ortLib, device string
	noLM                  bool
}

func (lf *lmFlags) register(fl *flag.FlagSet) {
	fl.StringVar(&lf.model, "model", "", "model file (.lmfsm) for new LM blocks (default: the built-in model)")
	fl.StringVar(&lf.ortLib, "ort-lib", "", "ONNX Runtime library (default: $LMFS_ORT_LIB, then lib/ next to the executable)")
	fl.StringVar(&lf.device, "device", "auto", "model device: auto, cpu or cuda (go: the plain-Go evaluator, also for new blocks)")
	fl.BoolVar(&lf.noLM, "no-lm", false, "code new blocks with the classical codecs only")
}

// load returns the selected model: --model, else the built-in default.
func (lf *lmFlags) load() (*model.Model, error) {
	if lf.model == "" {
		return model.Default()
	}
	m, err := model.Load(lf.model)
	if err != nil {
		return nil, fmt.Errorf("load model: %w", err)
	}
	return m, nil
}

// runner evaluates m on the selected device (ONNX Runtime, falling back to the Go evaluator).
func (lf *lmFlags) runner(m *model.Model, log *slog.Logger) (model.Runner, error) {
	if lf.device == "go" {
		return model.NewGoRunner(m), nil
	}
	return model.Open(m, model.Options{LibPath: lf.ortLib, Device: lf.device, Logger: log})
}

// lmSetup is the models a mount uses: every model the store holds (to decode) and the
// selected one (to code new blocks).
type lmSetup struct {
	set     *codec.LMSet
	encoder *codec.LMCodec // nil with --no-lm or when no model is found
	info    map[string]any
	runners []model.Runner
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
		r, err := lf.runner(m, log)
		if err != nil {
			return nil, nil, fmt.Errorf("%s: %w", what, err)
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
	for _, data := range stored {
		if _, _, err := add(data, fmt.Sprintf("stored model %x", sha256.Sum256(data))); err != nil {
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
		if err := st.PutModel(m.Bytes()); err != nil {
			l.Close()
			return nil, fmt.Errorf("record model in store: %w", err)
		}
		l.info["model"] = fmt.Sprintf("%s (%08x)", m.Name(), m.ShortID())
		if l.info["model_backend"] == "go" && lf.device != "go" {
			// The Go evaluator decodes fine but is too slow to code a whole store.
			log.Warn("ONNX Runtime unavailable: new blocks get the classical codecs; LM blocks still decode (Go evaluator)")
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
