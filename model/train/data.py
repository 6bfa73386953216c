"""Training data for the lmfs ctxmlp model.

Unpacks the training corpus (if needed), verifies it against its manifest, splits a validation
slice off by file (deterministic hash of the path), and samples training positions exactly the way
lmfs codes files: a file is cut into 2048-byte blocks at multiples of 2048, every block is coded on
its own, and the context of a position is the K previous bytes of the SAME block (256 = before the
start of the block).

Only numpy and the standard library; dev/ is never read here.
"""

import hashlib
import os
import subprocess
import sys

import numpy as np

BLOCK = 2048
PAD = 256  # context symbol "before the start of the block"

CORPUS_ARCHIVE = os.environ.get("LMFS_CORPUS", "/work/shared/corpus/train.tar.zst")
DATA_ROOT = os.environ.get("LMFS_DATA", "/work/data")

# Sampling weights by kind (fraction of training positions). Text-like kinds dominate what people
# store and where a byte model helps most; audio/image/binary still get enough weight for the
# model to learn their local statistics instead of expanding them.
KIND_WEIGHTS = {
    "text": 0.27,
    "code": 0.22,
    "markup": 0.20,
    "logs": 0.04,
    "binary": 0.12,
    "image": 0.08,
    "audio": 0.07,
}

VAL_PERCENT = 3  # files whose path hash falls below this percentage go to the validation slice


def log(*a):
    print(*a, file=sys.stderr, flush=True)


def train_dir():
    return os.path.join(DATA_ROOT, "train")


def ensure_unpacked(verify=True):
    """Unpack train.tar.zst into DATA_ROOT/train if missing; verify every file's sha256."""
    d = train_dir()
    man = os.path.join(d, "MANIFEST.tsv")
    stamp = os.path.join(d, ".verified")
    if not os.path.exists(man):
        os.makedirs(DATA_ROOT, exist_ok=True)
        log("unpacking", CORPUS_ARCHIVE, "->", DATA_ROOT)
        zst = subprocess.Popen(["zstd", "-d", "--long=27", "-c", CORPUS_ARCHIVE], stdout=subprocess.PIPE)
        subprocess.check_call(["tar", "x", "-C", DATA_ROOT], stdin=zst.stdout)
        if zst.wait() != 0:
            raise RuntimeError("zstd failed")
    mhash = manifest_hash()
    if verify and not (os.path.exists(stamp) and open(stamp).read().strip() == mhash):
        log("verifying corpus against MANIFEST.tsv ...")
        bad = 0
        for rec in read_manifest():
            h = hashlib.sha256()
            with open(os.path.join(d, rec["file"]), "rb") as f:
                data = f.read()
            h.update(data)
            if h.hexdigest() != rec["sha256"] or len(data) != rec["bytes"]:
                bad += 1
                log("MISMATCH", rec["file"])
        if bad:
            raise RuntimeError("%d corpus files do not match the manifest" % bad)
        with open(stamp, "w") as f:
            f.write(mhash + "\n")
        log("corpus verified")
    return d


def manifest_hash():
    with open(os.path.join(train_dir(), "MANIFEST.tsv"), "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def read_manifest():
    out = []
    with open(os.path.join(train_dir(), "MANIFEST.tsv"), encoding="utf-8") as f:
        header = f.readline().rstrip("\n").split("\t")
        for line in f:
            parts = line.rstrip("\n").split("\t")
            rec = dict(zip(header, parts))
            rec["bytes"] = int(rec["bytes"])
            out.append(rec)
    return out


def path_hash(path):
    h = hashlib.sha256(("lmfs-val:" + path).encode()).digest()
    return int.from_bytes(h[:4], "little")


def val_files(recs):
    """The validation files: every file whose path hash % 100 < VAL_PERCENT, plus, in every group
    of at least 3 files, the file of at most 1.5 MB with the smallest path hash (so that small groups
    such as the photos, ELF files or PDFs are represented in validation too)."""
    out = set()
    groups = {}
    for rec in recs:
        if path_hash(rec["file"]) % 100 < VAL_PERCENT:
            out.add(rec["file"])
        groups.setdefault(rec["group"], []).append(rec)
    for g, rs in groups.items():
        small = [r["file"] for r in rs if r["bytes"] <= 1500000]
        if len(rs) >= 3 and small:
            out.add(min(small, key=path_hash))
    return out


class Split:
    """All files of one split and one kind, concatenated into one uint8 array."""

    def __init__(self, kind):
        self.kind = kind
        self.files = []
        self.starts = None  # file start offsets into data
        self.sizes = None
        self.data = None

    def finish(self, chunks):
        self.sizes = np.array([len(c) for c in chunks], dtype=np.int64)
        self.starts = np.zeros(len(chunks), dtype=np.int64)
        if len(chunks) > 1:
            self.starts[1:] = np.cumsum(self.sizes)[:-1]
        self.data = np.frombuffer(b"".join(chunks), dtype=np.uint8) if chunks else np.zeros(0, np.uint8)

    @property
    def total(self):
        return int(self.data.size)

    def block_bounds(self, pos):
        """For global positions pos (into data): (block start, block end)."""
        fi = np.searchsorted(self.starts, pos, side="right") - 1
        fs = self.starts[fi]
        bstart = fs + ((pos - fs) // BLOCK) * BLOCK
        bend = np.minimum(bstart + BLOCK, fs + self.sizes[fi])
        return bstart, bend

    def all_blocks(self):
        """(start, length) of every block of every file, in order."""
        out = []
        for s, n in zip(self.starts, self.sizes):
            for o in range(0, int(n), BLOCK):
                out.append((int(s) + o, min(BLOCK, int(n) - o)))
        return out


def load_corpus(verify=True):
    """Returns (train_splits, val_splits, info): dicts kind -> Split."""
    d = ensure_unpacked(verify=verify)
    recs = read_manifest()
    chunks = {}
    splits = {}
    vfiles = val_files(recs)
    for rec in recs:
        kind = rec["file"].split("/", 1)[0]
        which = "val" if rec["file"] in vfiles else "train"
        key = (which, kind)
        if key not in splits:
            splits[key] = Split(kind)
            chunks[key] = []
        with open(os.path.join(d, rec["file"]), "rb") as f:
            chunks[key].append(f.read())
        splits[key].files.append(rec["file"])
    for key, sp in splits.items():
        sp.finish(chunks[key])
    train = {k: splits[("train", k)] for (w, k) in splits if w == "train"}
    val = {k: splits[("val", k)] for (w, k) in splits if w == "val"}
    info = {
        "manifest_sha256": manifest_hash(),
        "train_bytes": {k: v.total for k, v in train.items()},
        "val_bytes": {k: v.total for k, v in val.items()},
        "val_files": {k: len(v.files) for k, v in val.items()},
        "val_rule": "h = sha256('lmfs-val:'+path)[:4] as little-endian uint32; val if h %% 100 < %d "
                    "or h is the smallest among the files <= 1.5 MB of its group (groups of >= 3 files)" % VAL_PERCENT,
        "kind_weights": KIND_WEIGHTS,
    }
    return train, val, info


def contexts(data, pos, bstart, K):
    """Context symbols [n, K] (int64, 0..256) for positions pos with block starts bstart."""
    off = pos[:, None] - 1 - np.arange(K, dtype=np.int64)[None, :]
    valid = off >= bstart[:, None]
    sym = data[np.maximum(off, 0)].astype(np.int64)
    sym[~valid] = PAD
    return sym


def to_rows(ctx, ng=None):
    """Context symbols -> bag row indices: k*257 + c[k] for k < K, then (with ng = (orders, bits))
    one hashed row per n-gram order (ngram_rows)."""
    K = ctx.shape[1]
    rows = ctx + (np.arange(K, dtype=np.int64) * 257)[None, :]
    if ng and ng[0]:
        rows = np.concatenate([rows, ngram_rows(ctx, ng[0], ng[1])], axis=1)
    return rows


def ngram_hash(ctx, n):
    """model/FORMAT.md (format 2) n-gram hash of the n most recent context symbols (0..256):
    h = n * 0x9E3779B1; for k in 0..n-1: h = (h ^ c[k]) * 0x01000193; then
    h ^= h >> 16; h *= 0x85EBCA6B; h ^= h >> 13 (all mod 2^32)."""
    h = np.full(ctx.shape[0], (n * 0x9E3779B1) & 0xFFFFFFFF, dtype=np.uint32)
    for k in range(n):
        h = (h ^ ctx[:, k].astype(np.uint32)) * np.uint32(0x01000193)
    h ^= h >> np.uint32(16)
    h *= np.uint32(0x85EBCA6B)
    h ^= h >> np.uint32(13)
    return h


def ngram_rows(ctx, orders, bits):
    """Bag rows of the hashed n-grams: K*257 + g*2^bits + (hash >> (32-bits)) for order g."""
    K = ctx.shape[1]
    out = np.empty((ctx.shape[0], len(orders)), dtype=np.int64)
    for g, n in enumerate(orders):
        assert 1 <= n <= K
        out[:, g] = K * 257 + g * (1 << bits) + (ngram_hash(ctx, n) >> np.uint32(32 - bits)).astype(np.int64)
    return out


class Sampler:
    """Random training positions: kind by KIND_WEIGHTS, then a uniform byte of that kind (so a
    uniform position in a block, blocks weighted by their length), context from its own block."""

    def __init__(self, splits, K, seed=0, weights=None, ng=None):
        self.splits = splits
        self.K = K
        self.ng = ng
        self.kinds = sorted(k for k in splits if splits[k].total > 0)
        w = weights or KIND_WEIGHTS
        p = np.array([w.get(k, 0.0) for k in self.kinds], dtype=np.float64)
        self.p = p / p.sum()
        self.rng = np.random.default_rng(seed)

    def batch(self, n):
        counts = self.rng.multinomial(n, self.p)
        rows, tgts = [], []
        for kind, c in zip(self.kinds, counts):
            if c == 0:
                continue
            sp = self.splits[kind]
            pos = self.rng.integers(0, sp.total, size=c)
            bstart, _ = sp.block_bounds(pos)
            rows.append(to_rows(contexts(sp.data, pos, bstart, self.K), self.ng))
            tgts.append(sp.data[pos].astype(np.int64))
        rows = np.concatenate(rows)
        tgts = np.concatenate(tgts)
        perm = self.rng.permutation(n)
        return rows[perm], tgts[perm]


def val_set(val_splits, K, blocks_per_kind=48, seed=1234, ng=None):
    """Fixed validation positions: whole blocks (every position of each block, exactly as coded),
    chosen deterministically. Returns dict kind -> (rows [n,K] int64, targets [n] int64)."""
    out = {}
    rng = np.random.default_rng(seed)
    for kind in sorted(val_splits):
        sp = val_splits[kind]
        blocks = sp.all_blocks()
        if not blocks:
            continue
        sel = rng.permutation(len(blocks))[:blocks_per_kind]
        sel.sort()
        pos_l, bs_l = [], []
        for i in sel:
            s, n = blocks[i]
            pos_l.append(np.arange(s, s + n, dtype=np.int64))
            bs_l.append(np.full(n, s, dtype=np.int64))
        pos = np.concatenate(pos_l)
        bs = np.concatenate(bs_l)
        out[kind] = (to_rows(contexts(sp.data, pos, bs, K), ng), sp.data[pos].astype(np.int64))
    return out


def mix_bpb(per_kind):
    """Overall bits/byte of the validation slice, kinds weighted by KIND_WEIGHTS."""
    tot = sum(KIND_WEIGHTS[k] for k in per_kind)
    return sum(KIND_WEIGHTS[k] * v for k, v in per_kind.items()) / tot


if __name__ == "__main__":
    import time

    t = time.time()
    tr, va, info = load_corpus()
    log("loaded in %.1fs" % (time.time() - t))
    import json

    print(json.dumps(info, indent=1))
    s = Sampler(tr, 16)
    t = time.time()
    for _ in range(20):
        r, y = s.batch(4096)
    log("batch 4096 K=16: %.2f ms" % ((time.time() - t) / 20 * 1000))
    assert r.shape == (4096, 16) and r.max() < 16 * 257
