#!/usr/bin/python3
"""Make a random-integer-weight lmfs model, for tests and benchmarks only (it predicts noise).

    /usr/bin/python3 model/train/make_fixture.py                       # model/testdata/tiny.lmfsm
    /usr/bin/python3 model/train/make_fixture.py --order 16 --widths 512,256,256 --out /tmp/big.lmfsm
    /usr/bin/python3 model/train/make_fixture.py --ngram 2,3,5 --format 2 --out model/testdata/tiny-ng.lmfsm \
        --golden model/testdata/tiny-ng.golden.json                     # format 2 (n-gram rows)
    /usr/bin/python3 model/train/make_fixture.py --ngram 2,3,5 --out model/testdata/tiny-ng3.lmfsm \
        --golden model/testdata/tiny-ng3.golden.json                    # format 3 (bag shared)

--widths lists H0 and the hidden dense widths; the output layer (256) is added. Shifts are
chosen from the data so that activations spread over 0..127 instead of saturating. Same
arguments and seed give the same file bytes.
"""

import argparse
import math
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import export  # noqa: E402


def pick_shift(a, target):
    """Smallest shift that brings the spread (std) of a down to about target."""
    sd = float(np.std(a))
    return max(0, math.ceil(math.log2(sd / target))) if sd > target else 0


def make_arrays(order, widths, clip, seed, ngram=(), ngram_bits=0):
    rng = np.random.default_rng(seed)
    h0 = widths[0]
    arrays = {"order": np.int64(order), "logit_clip": np.int64(clip)}
    rows = order * 257 + (len(ngram) << ngram_bits)
    bag = rng.integers(-127, 128, size=(rows, h0), dtype=np.int64)
    arrays["bag"] = bag.astype(np.int8)
    arrays["bag_bias"] = rng.integers(-64, 65, size=h0).astype(np.int32)
    ng = None
    if ngram:
        arrays["ngram_orders"] = np.array(ngram, dtype=np.int64)
        arrays["ngram_bits"] = np.int64(ngram_bits)
        ng = (list(ngram), ngram_bits)

    import data as D
    probe = D.to_rows(rng.integers(0, 257, size=(512, order)), ng)
    a = arrays["bag_bias"] + bag[probe].sum(axis=1)
    shifts = [pick_shift(a, 48)]
    h = np.clip(a >> shifts[0], 0, 127)
    dims = list(widths) + [256]
    for i in range(1, len(dims)):
        w = rng.integers(-127, 128, size=(dims[i - 1], dims[i]), dtype=np.int64)
        last = i == len(dims) - 1
        a = h @ w
        s = pick_shift(a, clip / 3 if last else 48)
        b = rng.integers(-(1 << s), (1 << s) + 1, size=dims[i])
        arrays[f"w{i}"] = w.astype(np.int8)
        arrays[f"b{i}"] = b.astype(np.int32)
        a = a + b
        shifts.append(s)
        h = np.clip(a >> s, 0, 127)
    arrays["shifts"] = np.array(shifts, dtype=np.int64)
    arrays["explut"] = export.make_explut(clip)
    return arrays


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--order", type=int, default=8)
    p.add_argument("--widths", default="64,64", help="H0 and hidden widths, comma separated")
    p.add_argument("--clip", type=int, default=255)
    p.add_argument("--seed", type=int, default=20240611)
    p.add_argument("--name", default=None)
    p.add_argument("--ngram", default="", help="n-gram orders (format 2), comma separated")
    p.add_argument("--ngram-bits", type=int, default=6)
    p.add_argument("--format", type=int, default=None, help="file format: 1 without n-grams; 2 or 3 (default) with")
    p.add_argument("--out", default=os.path.join(here, "..", "testdata", "tiny.lmfsm"))
    p.add_argument("--golden", default=None,
                   help="also write expected frequencies for fixed contexts (JSON); default: next to "
                        "the default --out as tiny.golden.json")
    args = p.parse_args()
    widths = [int(x) for x in args.widths.split(",")]
    ngram = [int(x) for x in args.ngram.split(",") if x]
    arrays = make_arrays(args.order, widths, args.clip, args.seed, ngram, args.ngram_bits if ngram else 0)
    name = args.name or f"fixture-k{args.order}-{'x'.join(map(str, widths))}-seed{args.seed}"
    if ngram:
        name += f"-ngram{'.'.join(map(str, ngram))}x{args.ngram_bits}"
    train = {"fixture": True, "seed": args.seed, "note": "random integer weights for tests; predicts noise"}
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    try:
        data = export.export_model(arrays, name, args.out, train, fmt=args.format)
    except export.ExportError as e:
        p.exit(1, f"make_fixture: {e}\n")
    print(f"make_fixture: wrote {args.out} ({len(data)} bytes), shifts {list(arrays['shifts'])}")
    golden = args.golden
    if golden is None and args.out == p.get_default("out"):
        golden = os.path.join(os.path.dirname(args.out), "tiny.golden.json")
    if golden:
        write_golden(golden, arrays, data)
        print(f"make_fixture: wrote {golden}")


def golden_contexts(order, seed=7):
    """Fixed contexts: block start, text, all-same bytes, every symbol once, random rows."""
    rows = [[256] * order]
    text = b"The quick brown fox jumps over the lazy dog. <html><body>lmfs</body></html>\n\x00\xff"
    for end in (1, 5, 20, 44, 60, len(text)):
        prev = list(text[:end][::-1][:order])
        rows.append(prev + [256] * (order - len(prev)))
    rows.append([0] * order)
    rows.append([255] * order)
    rows.append([(37 * k + 11) % 257 for k in range(order)])
    rng = np.random.default_rng(seed)
    for _ in range(14):
        rows.append([int(x) for x in rng.integers(0, 257, size=order)])
    return rows


def write_golden(path, arrays, data):
    """Expected frequencies from export.reference_logits (numpy, independent of the Go code)."""
    import hashlib
    import json
    m = export.validate(arrays)
    ctx = np.array(golden_contexts(m["order"]), dtype=np.int64)
    lg = export.reference_logits(m, ctx)
    freq = m["explut"][lg - lg.max(axis=1, keepdims=True) + 2 * m["logit_clip"]]
    out = {"model_sha256": hashlib.sha256(data).hexdigest(),
           "note": "c[0] is the most recent symbol; freq = explut[logit - max + 2L] (model/FORMAT.md)",
           "rows": [{"ctx": [int(c) for c in r], "logits": [int(v) for v in lr], "freq": [int(f) for f in fr]}
                    for r, lr, fr in zip(ctx, lg, freq)]}
    with open(path, "w") as f:
        json.dump(out, f, separators=(",", ":"))
        f.write("\n")


if __name__ == "__main__":
    main()
