#!/usr/bin/python3
"""Measure an exported integer model (weights.npz) on the held-out dev corpus, the way lmfs codes
files: 2048-byte blocks, each on its own, ideal arithmetic-code length of the exact integer
frequencies (intmodel.py). Stored size per block as in docs/brief.md: ceil(bits/8) + 4 bytes, or
raw + 1 when that is larger. Evaluation only: dev/ is never used for training.

    /usr/bin/python3 model/train/eval_dev.py model/train/runs/NAME/weights.npz [--stride 4]

--stride N evaluates every N-th block of each file (N=1: all of dev, a few minutes on one core).
"""

import argparse
import json
import math
import os
import sys
import time
import zlib

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import data as D  # noqa: E402
from intmodel import IntModel, load_lmfsm  # noqa: E402

DEV = "/work/shared/corpus/dev"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("npz")
    ap.add_argument("--stride", type=int, default=1)
    ap.add_argument("--dev", default=DEV)
    ap.add_argument("--json", default=None, help="write the per-kind table here")
    args = ap.parse_args()
    im = IntModel(load_lmfsm(args.npz) if args.npz.endswith(".lmfsm") else args.npz)
    K = im.K
    per = {}
    t = time.time()
    with open(os.path.join(args.dev, "MANIFEST.tsv"), encoding="utf-8") as f:
        header = f.readline().rstrip("\n").split("\t")
        recs = [dict(zip(header, line.rstrip("\n").split("\t"))) for line in f]
    for rec in recs:
        with open(os.path.join(args.dev, rec["path"]), "rb") as f:
            buf = f.read()
        data = np.frombuffer(buf, dtype=np.uint8)
        starts = list(range(0, len(buf), D.BLOCK))[::args.stride]
        if not starts:
            continue
        pos_l, bs_l, blk = [], [], []
        for s in starts:
            n = min(D.BLOCK, len(buf) - s)
            pos_l.append(np.arange(s, s + n, dtype=np.int64))
            bs_l.append(np.full(n, s, dtype=np.int64))
            blk.append(n)
        pos = np.concatenate(pos_l)
        bs = np.concatenate(bs_l)
        bits = im.bits(D.to_rows(D.contexts(data, pos, bs, K), im.ng), data[pos].astype(np.int64))
        k = per.setdefault(rec["kind"], {"bytes": 0, "bits": 0.0, "stored": 0, "gzip9": 0})
        o = 0
        for s, n in zip(starts, blk):
            b = float(bits[o:o + n].sum())
            o += n
            k["bytes"] += n
            k["bits"] += b
            k["stored"] += min(math.ceil(b / 8) + 4, n + 1)
            k["gzip9"] += min(len(zlib.compress(buf[s:s + n], 9)), n + 1)
    tot = {"bytes": 0, "bits": 0.0, "stored": 0, "gzip9": 0}
    for v in per.values():
        for key in tot:
            tot[key] += v[key]
    per["all"] = tot
    out = {}
    print("| kind | bytes | bits/byte | stored % | zlib-9 % |")
    print("|---|---|---|---|---|")
    for kind in sorted(per, key=lambda x: (x == "all", x)):
        v = per[kind]
        out[kind] = {"bytes": v["bytes"], "bpb": v["bits"] / v["bytes"],
                     "stored_pct": 100.0 * v["stored"] / v["bytes"], "zlib9_pct": 100.0 * v["gzip9"] / v["bytes"]}
        print("| %s | %d | %.3f | %.1f | %.1f |" % (kind, v["bytes"], out[kind]["bpb"], out[kind]["stored_pct"],
                                                 out[kind]["zlib9_pct"]))
    print("(%.0f s, stride %d)" % (time.time() - t, args.stride), file=sys.stderr)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=1)


if __name__ == "__main__":
    main()
