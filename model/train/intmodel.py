"""Numpy-only reference evaluator of an exported integer ctxmlp (model/FORMAT.md, exact integers).

Given the npz written by train.py (bag, bag_bias, w1..wN, b1..bN, explut, order, shifts,
logit_clip), computes for context rows the exact integer logits and frequencies lmfs uses, and
the ideal code length -log2(freq[target] / sum(freq)) in bits.

Dense products are done as float64 matrix products of integer-valued arrays: every partial sum is an
integer below 2^24 (FORMAT.md bounds, checked here), far inside float64's exact range, so the
result is the exact integer sum whatever the summation order.
"""

import numpy as np


def load_lmfsm(path):
    """The integer arrays of an lmfs model file (model/FORMAT.md container), as train.py exports
    them: bag, bag_bias, w1..wN, b1..bN, explut, order, shifts, logit_clip (+ ngram_orders,
    ngram_bits for formats 2 and 3; the file's tensors hold everything, whatever the format)."""
    import json
    import struct
    with open(path, "rb") as f:
        data = f.read()
    if data[:7] != b"LMFSMDL":
        raise ValueError(path + ": not an lmfs model file")
    (hlen,) = struct.unpack("<I", data[8:12])
    hdr = json.loads(data[12:12 + hlen])
    blob = data[12 + hlen:]
    out = {}
    for name, t in hdr["tensors"].items():
        a = np.frombuffer(blob[t["offset"]:t["offset"] + t["length"]], dtype=np.dtype(t["dtype"]).newbyteorder("<"))
        out[name] = a.reshape(t["shape"]).copy()
    out["order"] = np.int64(hdr["order"])
    out["shifts"] = np.array(hdr["shifts"], dtype=np.int64)
    out["logit_clip"] = np.int64(hdr["logit_clip"])
    ng = hdr.get("ngram")
    if ng:
        out["ngram_orders"] = np.array(ng["orders"], dtype=np.int64)
        out["ngram_bits"] = np.int64(ng["bits"])
    return out


class IntModel:
    def __init__(self, path_or_dict):
        z = np.load(path_or_dict) if isinstance(path_or_dict, str) else path_or_dict
        self.K = int(z["order"])
        self.ng_orders = [int(x) for x in np.asarray(z["ngram_orders"]).ravel()] if "ngram_orders" in z else []
        self.ng_bits = int(z["ngram_bits"]) if "ngram_bits" in z else 0
        self.shifts = [int(s) for s in np.asarray(z["shifts"]).ravel()]
        self.L = int(z["logit_clip"])
        self.bag = np.asarray(z["bag"]).astype(np.int8)
        self.bag_bias = np.asarray(z["bag_bias"]).astype(np.int64)
        self.ws, self.bs = [], []
        i = 1
        while ("w%d" % i) in z:
            self.ws.append(np.asarray(z["w%d" % i]).astype(np.int8))
            self.bs.append(np.asarray(z["b%d" % i]).astype(np.int64))
            i += 1
        self.explut = np.asarray(z["explut"]).astype(np.int64)
        self.check()
        self._wf = [w.astype(np.float64) for w in self.ws]
        self._bag32 = self.bag.astype(np.float32)
        self._bias32 = self.bag_bias.astype(np.float32)

    def check(self):
        K, L = self.K, self.L
        H0 = self.bag.shape[1]
        assert self.bag.shape == (K * 257 + len(self.ng_orders) * (1 << self.ng_bits), H0)
        assert self.bag.min() >= -127 and self.bag.max() <= 127
        assert (K + len(self.ng_orders)) * 128 + np.abs(self.bag_bias).max() < 2 ** 24
        assert len(self.shifts) == len(self.ws) + 1
        hin = H0
        for w, b in zip(self.ws, self.bs):
            assert w.shape[0] == hin and b.shape == (w.shape[1],)
            assert w.min() >= -127 and w.max() <= 127
            assert hin * 127 * 128 + np.abs(b).max() < 2 ** 24
            hin = w.shape[1]
        assert hin == 256
        e = self.explut
        assert e.shape == (2 * L + 1,)
        assert e.min() >= 1 and e[-1] == e.max() and e.max() <= 2 ** 16 and np.all(np.diff(e) >= 0)

    def logits(self, rows):
        """rows [n, K+G] int64 (k*257 + c[k], then the G n-gram rows) -> integer logits [n, 256]."""
        # Bag sum in float32: every partial sum is an integer of magnitude <= K*127 + |bias| < 2^24
        # (checked in check()), so float32 holds it exactly; this is the costly part in numpy.
        a = np.broadcast_to(self._bias32, (rows.shape[0], self.bag.shape[1])).copy()
        for k in range(rows.shape[1]):
            a += self._bag32[rows[:, k]]
        h = np.clip(a.astype(np.int64) >> self.shifts[0], 0, 127)
        n = len(self.ws)
        for i in range(n):
            prod = h.astype(np.float64) @ self._wf[i]
            a = prod.astype(np.int64) + self.bs[i]
            if i < n - 1:
                h = np.clip(a >> self.shifts[i + 1], 0, 127)
            else:
                return np.clip(a >> self.shifts[i + 1], -self.L, self.L)

    @property
    def ng(self):
        return (self.ng_orders, self.ng_bits) if self.ng_orders else None

    def freqs(self, rows):
        lg = self.logits(rows)
        return self.explut[lg - lg.max(axis=1, keepdims=True) + 2 * self.L]

    def bits(self, rows, targets, chunk=8192):
        """Code length in bits of each target byte (ideal arithmetic coding of the model's freqs)."""
        out = np.empty(rows.shape[0], dtype=np.float64)
        for s in range(0, rows.shape[0], chunk):
            f = self.freqs(rows[s:s + chunk])
            tot = f.sum(axis=1)
            ft = f[np.arange(f.shape[0]), targets[s:s + chunk]]
            out[s:s + chunk] = np.log2(tot) - np.log2(ft)
        return out


def explut_table(L):
    i = np.arange(2 * L + 1, dtype=np.float64)
    return np.maximum(1, np.round(65536.0 * np.exp2((i - 2 * L) / 16.0))).astype(np.uint32)
