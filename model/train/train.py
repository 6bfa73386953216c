#!/usr/bin/python3
"""Train the lmfs byte model (arch "ctxmlp", model/FORMAT.md) and export it as integers.

One command retrains the default model from scratch (see model/README.md):

    /usr/bin/python3 model/train/train.py --name NAME [--K 16 --h0 512 --hidden 256 --steps N]

Phase 1: float training (Adam, warmup + cosine decay) of the float twin of the integer model:
    a0 = bag_bias + sum_k bag[k*257 + c[k]],  h0 = clamp(a0, 0, 127/128)
    a_i = b_i + h_{i-1} W_i,                   h_i = clamp(a_i, 0, 127/128)
    logit units (1/16 bit) u = 128 * a_N,      p ∝ 2^(u/16)
Activations are in units of 1/128 (h_int = 128*h), so a layer with shift s has integer weights
w_int = 2^s * w (bag: 128 * 2^s0 * bag) and integer biases b_int = 128 * 2^s * b + 2^(s-1) (the
half makes `>> s` round to nearest).
Phase 2: quantization-aware fine-tuning: shifts are chosen per layer by measuring the weights
(the power of two minimizing the int8 quantization error), then weights and biases are fake-
quantized to their integer grids and activations / logits to floor(128 a + 1/2) clamped, all with
straight-through gradients. In phase 2 the float forward pass equals the integer model exactly
(every value is a multiple of a power of two well inside float32's 24-bit mantissa).
Export: integer npz (+ meta.json), checked by the numpy integer evaluator (intmodel.py) on the
validation slice, then model/train/export.py writes the .lmfsm file.

Checkpoints go to model/train/runs/<name>/ckpt.pt every --ckpt-min minutes; --resume continues.
"""

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")

import argparse
import json
import math
import subprocess
import sys
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import data as D  # noqa: E402
from intmodel import IntModel, explut_table  # noqa: E402

LN2 = math.log(2.0)
UNIT_NATS = LN2 / 16.0  # one logit unit = 1/16 bit


def log(*a):
    print(time.strftime("%H:%M:%S"), *a, flush=True)


def ste(x, q):
    """Forward value exactly q (x - x.detach() is exactly 0), gradient that of x."""
    return q.detach() + (x - x.detach())


def ste_round(x):
    return ste(x, torch.floor(x + 0.5))


def ste_clamp(x, lo, hi):
    return ste(x, x.clamp(lo, hi))


def fq_weight(w, scale):
    """Fake-quantize to int8 on the grid 1/scale (straight-through)."""
    return ste(w, torch.clamp(torch.floor(w * scale + 0.5), -127, 127) / scale)


def fq_bias(b, scale):
    return ste(b, torch.floor(b * scale + 0.5) / scale)


class CtxMLP(nn.Module):
    def __init__(self, K, h0, hidden, L=255, ng_orders=(), ng_bits=0):
        super().__init__()
        self.K, self.h0, self.hidden, self.L = K, h0, list(hidden), L
        self.ng_orders, self.ng_bits = list(ng_orders), ng_bits
        self.bag = nn.Parameter(torch.randn(K * 257, h0) * (0.45 / math.sqrt(K)))
        # Hashed n-gram rows (FORMAT.md format 2): G tables of 2^bits rows, summed into a0 like the
        # bag; they start at zero so a warm start from a format-1 model begins where it ended.
        # The table is trained by lazy Adam on the rows a batch uses (ng_step), not by autograd
        # on the whole table: a dense step over millions of rows would cost more than the MLP.
        self.ng = nn.Parameter(torch.zeros(len(self.ng_orders) << ng_bits, h0), requires_grad=False) if self.ng_orders else None
        if self.ng is not None:
            self.register_buffer("ng_m", torch.zeros_like(self.ng))
            self.register_buffer("ng_v", torch.zeros_like(self.ng))
            self.register_buffer("ng_t", torch.zeros((), dtype=torch.int64))
        self._ng_leaf = None
        self.bag_bias = nn.Parameter(torch.full((h0,), 0.3))
        dims = [h0] + list(hidden) + [256]
        self.ws = nn.ParameterList()
        self.bs = nn.ParameterList()
        for i in range(len(dims) - 1):
            fan_in = dims[i]
            self.ws.append(nn.Parameter(torch.randn(dims[i], dims[i + 1]) * (2.0 / math.sqrt(fan_in))))
            last = i == len(dims) - 2
            self.bs.append(nn.Parameter(torch.zeros(dims[i + 1]) if last else torch.full((dims[i + 1],), -0.2)))
        self.shifts = None  # set for QAT

    def n_dense(self):
        return len(self.ws)

    def macs(self):
        dims = [self.h0] + self.hidden + [256]
        return (self.K + len(self.ng_orders)) * self.h0 + sum(dims[i] * dims[i + 1] for i in range(len(dims) - 1))

    def forward(self, rows):
        """rows [B,K] int64 -> logits in 1/16-bit units [B,256] (float; integers in QAT mode)."""
        q = self.shifts is not None
        if q:
            s0 = 128.0 * 2 ** self.shifts[0]
            bag = fq_weight(self.bag, s0)
            bias = fq_bias(self.bag_bias, s0)
        else:
            bag, bias = self.bag, self.bag_bias
        K = self.K
        a = F.embedding_bag(rows[:, :K], bag, mode="sum") + bias
        if self.ng is not None:
            # Gather first, then fake-quantize only the rows used: the table's gradient stays
            # sparse (SparseAdam), which keeps a step cheap with millions of n-gram rows.
            idx = rows[:, K:] - K * 257
            e = self.ng[idx]
            if torch.is_grad_enabled():
                e.requires_grad_()
                self._ng_leaf = (idx, e)
            if q:
                e = fq_weight(e, s0)
            a = a + e.sum(dim=1)
        n = self.n_dense()
        for i in range(n):
            if q:
                h = torch.clamp(ste_round(a * 128.0), 0, 127) / 128.0
                sc = 2.0 ** self.shifts[i + 1]
                w = fq_weight(self.ws[i], sc)
                b = fq_bias(self.bs[i], 128.0 * sc)
            else:
                h = torch.clamp(a, 0, 127.0 / 128.0)
                w, b = self.ws[i], self.bs[i]
            a = torch.addmm(b, h, w)
        u = a * 128.0
        if q:
            u = ste_round(u)
        return ste_clamp(u, -self.L, self.L), u

    def choose_shifts(self):
        """Per layer, the power-of-two scale minimizing the int8 quantization MSE of the weights."""
        def best(w, base):
            w = w.detach()
            errs = []
            for s in range(0, 24):
                sc = base * 2 ** s
                qw = torch.clamp(torch.floor(w * sc + 0.5), -127, 127) / sc
                errs.append((float(((qw - w) ** 2).mean()), s))
            return min(errs)[1]
        shifts = [best(self.full_bag(), 128.0)]
        for w in self.ws:
            shifts.append(best(w, 1.0))
        return shifts

    @torch.no_grad()
    def ng_step(self, lr, b1=0.9, b2=0.98, eps=1e-8):
        """Lazy Adam on the n-gram rows of the last forward pass (their gradients summed per row)."""
        if self._ng_leaf is None:
            return
        idx, e = self._ng_leaf
        self._ng_leaf = None
        if e.grad is None:
            return
        uniq, inv = torch.unique(idx.reshape(-1), return_inverse=True)
        g = torch.zeros(uniq.shape[0], self.h0).index_add_(0, inv, e.grad.reshape(-1, self.h0))
        self.ng_t += 1
        t = int(self.ng_t)
        m = self.ng_m[uniq].mul_(b1).add_(g, alpha=1 - b1)
        v = self.ng_v[uniq].mul_(b2).addcmul_(g, g, value=1 - b2)
        self.ng_m[uniq] = m
        self.ng_v[uniq] = v
        upd = (m / (1 - b1 ** t)) / ((v / (1 - b2 ** t)).sqrt_().add_(eps))
        self.ng[uniq] -= lr * upd

    def full_bag(self):
        return self.bag if self.ng is None else torch.cat([self.bag, self.ng])

    @torch.no_grad()
    def init_from(self, arrays):
        """Start from an exported integer model (format 1 or 2): the float weights whose
        quantization gives exactly those integers (n-gram rows beyond the file's stay zero)."""
        sh = [int(x) for x in np.asarray(arrays["shifts"])]
        half = lambda s: (1 << (s - 1)) if s > 0 else 0  # noqa: E731
        s0 = 128.0 * 2 ** sh[0]
        bag = torch.from_numpy(arrays["bag"].astype(np.float32)) / s0
        n0 = self.K * 257
        assert bag.shape[1] == self.h0 and bag.shape[0] >= n0
        self.bag.copy_(bag[:n0])
        if self.ng is not None and bag.shape[0] > n0:
            m = min(bag.shape[0] - n0, self.ng.shape[0])
            self.ng[:m] = bag[n0:n0 + m]
        self.bag_bias.copy_(torch.from_numpy((arrays["bag_bias"].astype(np.float64) - half(sh[0])) / s0).float())
        for i in range(self.n_dense()):
            sc = 2.0 ** sh[i + 1]
            w = arrays["w%d" % (i + 1)].astype(np.float32) / sc
            assert tuple(w.shape) == tuple(self.ws[i].shape)
            self.ws[i].copy_(torch.from_numpy(w))
            b = (arrays["b%d" % (i + 1)].astype(np.float64) - half(sh[i + 1])) / (128.0 * sc)
            self.bs[i].copy_(torch.from_numpy(b).float())

    def export_arrays(self):
        assert self.shifts is not None
        sh = self.shifts
        out = {}
        s0 = 128.0 * 2 ** sh[0]
        out["bag"] = np.clip(np.floor(self.full_bag().detach().double().numpy() * s0 + 0.5), -127, 127).astype(np.int8)
        half = lambda s: (1 << (s - 1)) if s > 0 else 0  # noqa: E731
        out["bag_bias"] = (np.floor(self.bag_bias.detach().double().numpy() * s0 + 0.5) + half(sh[0])).astype(np.int32)
        for i in range(self.n_dense()):
            sc = 2.0 ** sh[i + 1]
            out["w%d" % (i + 1)] = np.clip(np.floor(self.ws[i].detach().double().numpy() * sc + 0.5), -127, 127).astype(np.int8)
            b = np.floor(self.bs[i].detach().double().numpy() * 128.0 * sc + 0.5) + half(sh[i + 1])
            lim = 2 ** 24 - 1 - self.ws[i].shape[0] * 127 * 128
            out["b%d" % (i + 1)] = np.clip(b, -lim, lim).astype(np.int32)
        out["explut"] = explut_table(self.L)
        out["order"] = np.int64(self.K)
        out["shifts"] = np.array(sh, dtype=np.int64)
        out["logit_clip"] = np.int64(self.L)
        if self.ng_orders:
            out["ngram_orders"] = np.array(self.ng_orders, dtype=np.int64)
            out["ngram_bits"] = np.int64(self.ng_bits)
        return out


LOGIT_PEN = 1e-4


def loss_fn(model, rows, tgt):
    """Cross-entropy of the clamped logits, plus a penalty that keeps the raw logits inside [-L, L]
    (the clamp passes gradients straight through; softmax alone does not pin the logits' level)."""
    u, raw = model(rows)
    ce = F.cross_entropy(u * UNIT_NATS, tgt)
    pen = torch.relu(raw.abs() - model.L).pow(2).mean() * LOGIT_PEN
    return ce, pen


@torch.no_grad()
def eval_float(model, vset, chunk=16384):
    model.eval()
    res = {}
    for kind, (rows, tgt) in vset.items():
        tot = 0.0
        for s in range(0, rows.shape[0], chunk):
            r = torch.from_numpy(rows[s:s + chunk])
            t = torch.from_numpy(tgt[s:s + chunk])
            u, _ = model(r)
            tot += float(F.cross_entropy(u * UNIT_NATS, t, reduction="sum"))
        res[kind] = tot / LN2 / rows.shape[0]
    model.train()
    return res


def eval_int(arrays, vset):
    im = IntModel(arrays)
    return {kind: float(im.bits(rows, tgt).mean()) for kind, (rows, tgt) in vset.items()}


def fmt(res):
    return "mix %.4f | " % D.mix_bpb(res) + " ".join("%s %.3f" % (k, v) for k, v in sorted(res.items()))


def progress(state, args):
    """(phase-1 progress 0..1, phase-2 progress 0..1 or None while in phase 1).
    By steps, or with --minutes by training wall time (robust to a machine shared with others)."""
    if args.minutes > 0:
        total = args.minutes * 60.0
        p1 = total * (1 - args.qat_frac)
        e = state["elapsed"]
        if e < p1:
            return e / p1, None
        return 1.0, min(1.0, (e - p1) / max(1.0, total - p1))
    p1 = args.steps - args.qat_steps
    step = state["step"]
    if step < p1:
        return step / p1, None
    return 1.0, (step - p1) / max(1, args.qat_steps)


def finished(state, args):
    if args.minutes > 0:
        return state["elapsed"] >= args.minutes * 60.0
    return state["step"] >= args.steps


def lr_at(state, args):
    """Warmup, cosine to lr_min over phase 1; phase 2 (QAT) restarts at qat_lr and decays linearly."""
    step = state["step"]
    f1, f2 = progress(state, args)
    if f2 is None:
        warm = min(1.0, (step + 1) / args.warmup)
        return warm * (args.lr_min + 0.5 * (args.lr - args.lr_min) * (1 + math.cos(math.pi * f1)))
    return args.qat_lr * (1 - f2) + args.lr_min * 0.1 * f2


class MultiOpt:
    """The dense weights' optimizer(s) plus the lazy Adam step of the n-gram table (whose moments
    live in the model's buffers, so they are checkpointed with it)."""

    def __init__(self, opts, model=None):
        self.opts = opts
        self.model = model
        self.param_groups = [g for o in opts for g in o.param_groups]
        self.ng_lr = opts[0].param_groups[0]["lr"]

    def zero_grad(self, set_to_none=True):
        for o in self.opts:
            o.zero_grad(set_to_none=set_to_none)

    def step(self):
        for o in self.opts:
            o.step()
        if self.model is not None and self.model.ng is not None:
            # The n-gram rows learn at the full rate (the dense group's rate / its multiplier).
            g = self.param_groups[0]
            self.model.ng_step(g["lr"] / g["mult"] if g["mult"] else g["lr"])

    def state_dict(self):
        return {"multi": [o.state_dict() for o in self.opts]}

    def load_state_dict(self, sd):
        for o, s in zip(self.opts, sd["multi"]):
            o.load_state_dict(s)


def make_opt(model, args, lr):
    """Adam; with --init-from the inherited weights learn at --old-lr-mult times the rate. The
    n-gram table gets lazy Adam at the full rate (CtxMLP.ng_step)."""
    old = [p for n, p in model.named_parameters() if n != "ng"]
    opts = [torch.optim.Adam([{"params": old, "mult": args.old_lr_mult if args.init_from else 1.0}],
                             lr=lr, betas=(0.9, 0.98), eps=1e-8)]
    return MultiOpt(opts, model)


def save_ckpt(path, model, opt, state):
    tmp = path + ".tmp"
    torch.save({"model": model.state_dict(), "opt": opt.state_dict(), "state": state,
                "shifts": model.shifts}, tmp)
    os.replace(tmp, path)


def export(model, args, state, vset, info, rundir, name, fvres=None):
    arrays = model.export_arrays()
    npz = os.path.join(rundir, "weights.npz")
    np.savez(npz, **arrays)
    t = time.time()
    ires = eval_int(arrays, vset)
    log("integer model (numpy reference) val:", fmt(ires), "(%.0fs)" % (time.time() - t))
    if fvres is None:
        fvres = eval_float(model, vset)
    meta = {
        "trainer": "model/train/train.py",
        "corpus_manifest_sha256": info["manifest_sha256"],
        "val_rule": info["val_rule"],
        "kind_weights": info["kind_weights"],
        "hyper": {"ngram": args.ngram, "ngram_bits": args.ngram_bits, "init_from": args.init_from,
                  "old_lr_mult": args.old_lr_mult, "K": args.K, "h0": args.h0, "hidden": args.hidden, "logit_clip": args.L,
                  "batch": args.batch, "lr": args.lr, "lr_min": args.lr_min, "warmup": args.warmup,
                  "steps": args.steps if args.minutes <= 0 else None, "minutes": args.minutes or None,
                  "qat_frac": args.qat_frac, "qat_steps": args.qat_steps if args.minutes <= 0 else None, "qat_lr": args.qat_lr,
                  "seed": args.seed, "optimizer": "Adam(0.9,0.98)", "logit_pen": args.logit_pen},
        "macs_per_byte": model.macs(),
        "steps_done": state["step"],
        "qat_start_step": state.get("qat_start_step"),
        "tokens": state["tokens"],
        "wall_seconds": round(state["elapsed"], 1),
        "val_bpb_qat_float": {k: round(v, 4) for k, v in fvres.items()},
        "val_bpb_int": {k: round(v, 4) for k, v in ires.items()},
        "val_bpb_int_mix": round(D.mix_bpb(ires), 4),
        "val_bpb_float_phase1_mix": state.get("float_mix"),
        "val_bpb_float_phase1": state.get("float_val"),
    }
    mpath = os.path.join(rundir, "meta.json")
    with open(mpath, "w") as f:
        json.dump(meta, f, indent=1, sort_keys=True)
    exp = os.path.join(HERE, "export.py")
    out = os.path.join(rundir, name + ".lmfsm")
    if os.path.exists(exp):
        r = subprocess.run([sys.executable, exp, "--npz", npz, "--out", out, "--name", name,
                            "--train-json", mpath], capture_output=True, text=True)
        log("export.py:", r.stdout.strip(), r.stderr.strip())
    else:
        log("export.py not found: wrote", npz, mpath)
    return meta


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--name", required=True)
    ap.add_argument("--K", type=int, default=16)
    ap.add_argument("--h0", type=int, default=512)
    ap.add_argument("--hidden", type=str, default="256", help="comma-separated hidden widths after the bag")
    ap.add_argument("--L", type=int, default=255)
    ap.add_argument("--steps", type=int, default=20000)
    ap.add_argument("--minutes", type=float, default=0,
                    help="train for this many minutes of wall time instead of --steps (schedule by time)")
    ap.add_argument("--qat-frac", type=float, default=0.12)
    ap.add_argument("--batch", type=int, default=4096)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--lr-min", type=float, default=5e-5)
    ap.add_argument("--qat-lr", type=float, default=3e-4)
    ap.add_argument("--warmup", type=int, default=300)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--eval-every", type=int, default=2000)
    ap.add_argument("--val-blocks", type=int, default=48)
    ap.add_argument("--ckpt-min", type=float, default=5.0)
    ap.add_argument("--resume", action="store_true")
    ap.add_argument("--export-only", action="store_true",
                    help="export the latest checkpoint; a phase-1 checkpoint gets --qat-now steps of QAT first")
    ap.add_argument("--qat-now", type=int, default=0)
    ap.add_argument("--ckpt-from", default=None,
                    help="with --export-only: read this checkpoint (e.g. of a run still going) instead of the run's own")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--logit-pen", type=float, default=1e-2,
                    help="weight of the penalty on raw logits outside [-L, L] (1e-4 let a long high-lr run drift)")
    ap.add_argument("--rundir", default=None)
    ap.add_argument("--ngram", type=str, default="", help="comma-separated n-gram orders hashed into the bag (format 2)")
    ap.add_argument("--ngram-bits", type=int, default=12, help="log2 rows per n-gram table")
    ap.add_argument("--init-from", default=None, help="start from this exported model (.lmfsm or weights .npz)")
    ap.add_argument("--old-lr-mult", type=float, default=1.0,
                    help="with --init-from: learning-rate factor for the weights taken from it (new n-gram rows get 1)")
    args = ap.parse_args()
    args.hidden = [int(x) for x in args.hidden.split(",") if x]
    args.ngram = [int(x) for x in args.ngram.split(",") if x]
    ng = (args.ngram, args.ngram_bits) if args.ngram else None
    args.qat_steps = int(args.steps * args.qat_frac)
    global LOGIT_PEN
    LOGIT_PEN = args.logit_pen
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)

    rundir = args.rundir or os.path.join(HERE, "runs", args.name)
    os.makedirs(rundir, exist_ok=True)
    ckpt = os.path.join(rundir, "ckpt.pt")

    t0 = time.time()
    train, val, info = D.load_corpus()
    vset = D.val_set(val, args.K, blocks_per_kind=args.val_blocks, ng=ng)
    log("corpus", info["manifest_sha256"][:16], "val positions",
        {k: v[0].shape[0] for k, v in vset.items()}, "load %.1fs" % (time.time() - t0))

    model = CtxMLP(args.K, args.h0, args.hidden, args.L, args.ngram, args.ngram_bits)
    if args.init_from:
        from intmodel import load_lmfsm
        src_arrays = load_lmfsm(args.init_from) if args.init_from.endswith(".lmfsm") else dict(np.load(args.init_from))
        model.init_from(src_arrays)
        log("initialized from", args.init_from)
    opt = make_opt(model, args, args.lr)
    state = {"step": 0, "tokens": 0, "elapsed": 0.0, "args": vars(args)}
    sampler = D.Sampler(train, args.K, seed=args.seed, ng=ng)
    src = args.ckpt_from if (args.export_only and args.ckpt_from) else ckpt
    if (args.resume or args.export_only) and os.path.exists(src):
        ck = torch.load(src)
        model.load_state_dict(ck["model"])
        opt.load_state_dict(ck["opt"])
        state = ck["state"]
        model.shifts = ck["shifts"]
        sampler.rng = np.random.default_rng([args.seed, state["step"]])
        log("resumed from", src, "at step", state["step"], "shifts", model.shifts)
    elif args.export_only:
        raise SystemExit("no checkpoint at " + src)
    log("model K=%d h0=%d hidden=%s params=%d macs/byte=%d" % (
        args.K, args.h0, args.hidden, sum(p.numel() for p in model.parameters()), model.macs()))

    if args.export_only:
        if model.shifts is None:
            state["float_val"] = eval_float(model, vset)
            state["float_mix"] = D.mix_bpb(state["float_val"])
            model.shifts = model.choose_shifts()
            log("float val:", fmt(state["float_val"]), "-> shifts", model.shifts)
            for g in opt.param_groups:
                g["lr"] = args.qat_lr * 0.3
            for i in range(args.qat_now):
                rows, tgt = sampler.batch(args.batch)
                ce, pen = loss_fn(model, torch.from_numpy(rows), torch.from_numpy(tgt))
                opt.zero_grad()
                (ce + pen).backward()
                opt.step()
        export(model, args, state, vset, info, rundir, args.name)
        return

    last_ck = time.time()
    tstart = time.time() - state["elapsed"]
    run_ce = None
    tl = time.time()
    while not finished(state, args):
        if progress(state, args)[1] is not None and model.shifts is None:
            fv = eval_float(model, vset)
            state["float_val"], state["float_mix"] = fv, D.mix_bpb(fv)
            log("end of float phase, val:", fmt(fv))
            model.shifts = model.choose_shifts()
            state["qat_start_step"] = state["step"]
            arrays = model.export_arrays()
            log("shifts", model.shifts, "post-training-quantized (int) val:", fmt(eval_int(arrays, vset)))
            # fresh moments for the quantized phase
            opt = make_opt(model, args, args.qat_lr)
        lr = lr_at(state, args)
        for g in opt.param_groups:
            g["lr"] = lr * g["mult"]
        rows, tgt = sampler.batch(args.batch)
        ce, pen = loss_fn(model, torch.from_numpy(rows), torch.from_numpy(tgt))
        opt.zero_grad(set_to_none=True)
        (ce + pen).backward()
        opt.step()
        state["step"] += 1
        state["tokens"] += args.batch
        c = float(ce) / LN2
        run_ce = c if run_ce is None else 0.98 * run_ce + 0.02 * c
        if state["step"] % 200 == 0:
            now = time.time()
            log("step %d lr %.2e train %.4f bpb  %.0f tok/s  %s" % (
                state["step"], lr, run_ce, 200 * args.batch / (now - tl), "qat" if model.shifts else "float"))
            tl = now
        state["elapsed"] = time.time() - tstart
        if state["step"] % args.eval_every == 0 or finished(state, args):
            log("val step %d tokens %.1fM: %s" % (state["step"], state["tokens"] / 1e6, fmt(eval_float(model, vset))))
            tl = time.time()
        if time.time() - last_ck > args.ckpt_min * 60 or finished(state, args):
            save_ckpt(ckpt, model, opt, state)
            last_ck = time.time()
    fv = eval_float(model, vset)
    log("final QAT model val (float forward):", fmt(fv))
    meta = export(model, args, state, vset, info, rundir, args.name, fvres=fv)
    log("done: int mix %.4f, %.1fM tokens, %.0f s" % (meta["val_bpb_int_mix"], state["tokens"] / 1e6, state["elapsed"]))


if __name__ == "__main__":
    main()
