#!/usr/bin/python3
"""Make a random-integer-weight lmfs model, for tests and benchmarks only (it predicts noise).

    /usr/bin/python3 model/train/make_fixture.py                       # model/testdata/tiny.lmfsm
    /usr/bin/python3 model/train/make_fixture.py --order 16 --widths 512,256,256 --out /tmp/big.lmfsm

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


def make_arrays(order, widths, clip, seed):
    rng = np.random.default_rng(seed)
    h0 = widths[0]
    arrays = {"order": np.int64(order), "logit_clip": np.int64(clip)}
    bag = rng.integers(-127, 128, size=(order * 257, h0), dtype=np.int64)
    arrays["bag"] = bag.astype(np.int8)
    arrays["bag_bias"] = rng.integers(-64, 65, size=h0).astype(np.int32)

    probe = rng.integers(0, 257, size=(512, order)) + 257 * np.arange(order)
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
    p.add_argument("--out", default=os.path.join(here, "..", "testdata", "tiny.lmfsm"))
    args = p.parse_args()
    widths = [int(x) for x in args.widths.split(",")]
    arrays = make_arrays(args.order, widths, args.clip, args.seed)
    name = args.name or f"fixture-k{args.order}-{'x'.join(map(str, widths))}-seed{args.seed}"
    train = {"fixture": True, "seed": args.seed, "note": "random integer weights for tests; predicts noise"}
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    data = export.export_model(arrays, name, args.out, train)
    print(f"make_fixture: wrote {args.out} ({len(data)} bytes), shifts {list(arrays['shifts'])}")


if __name__ == "__main__":
    main()
