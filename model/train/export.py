#!/usr/bin/python3
"""Export integer ctxmlp weights to an lmfs model file (model/FORMAT.md, formats 1, 2 and 3).

    /usr/bin/python3 model/train/export.py --npz W.npz --out M.lmfsm --name NAME [--train-json meta.json]

The npz holds integer tensors: bag [K*257,H0], bag_bias [H0], w1..wN, b1..bN (the last
layer has 256 outputs), explut [2L+1], and the scalars order (K), shifts (N+1 ints) and
logit_clip (L). Every bound of FORMAT.md is checked; a violation stops the export with a
message naming the tensor and the bound. The output is deterministic: the same npz, name
and train metadata give the same bytes, hence the same model id.

Other scripts may import this module: make_explut(L) builds the standard exp table,
export_model(...) writes a file from in-memory arrays.
"""

import argparse
import json
import math
import struct
import sys

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

MAGIC = b"LMFSMDL1"
FORMAT = 1            # without n-gram rows; format 2 adds them (FORMAT.md)
FORMAT_NGRAM = 2
FORMAT_SHARED = 3     # format 2 whose ONNX graph shares the bag with the file (FORMAT.md)
SHARED = ["bag"]      # the tensors a format-3 graph takes from the file
MAX_NGRAMS = 16
MAX_NGRAM_BITS = 20
ARCH = "ctxmlp"
OPSET = 17
ALIGN = 64            # tensors start at multiples of 64 bytes inside the blob
EXACT = 1 << 24       # every intermediate value must stay below this in magnitude
MAX_ORDER = 1024
MAX_WIDTH = 4096
MAX_SHIFT = 31
MAX_CLIP = 4096
MAX_LAYERS = 16
EXP_ONE = 1 << 16     # explut[2L]: probability weight of the most likely symbol


class ExportError(Exception):
    """A tensor or scalar breaks a bound of FORMAT.md."""


def make_explut(clip, units_per_bit=16):
    """Standard exp table: explut[i] = max(1, round(2^16 * 2^((i-2L)/units_per_bit))).

    With units_per_bit=16 a logit is worth 1/16 bit: a logit difference of d gives a
    frequency ratio of 2^(d/16). Rounding is half-up; the table is stored in the file, so
    no decoder ever recomputes it.
    """
    n = 2 * clip + 1
    out = np.empty(n, dtype=np.uint32)
    for i in range(n):
        v = math.floor(EXP_ONE * 2.0 ** ((i - 2 * clip) / units_per_bit) + 0.5)
        out[i] = max(1, min(EXP_ONE, v))
    return out


def _int_array(name, a, lo, hi, dtype):
    a = np.asarray(a)
    if a.dtype.kind not in "iub":
        raise ExportError(f"{name}: dtype {a.dtype} is not an integer type")
    if a.size:
        mn, mx = int(a.min()), int(a.max())
        if mn < lo or mx > hi:
            raise ExportError(f"{name}: values must lie in [{lo}, {hi}], found [{mn}, {mx}]")
    return np.ascontiguousarray(a.astype(dtype))


def _int_scalar(name, v):
    a = np.asarray(v)
    if a.size != 1 or a.dtype.kind not in "iu":
        raise ExportError(f"{name}: must be one integer, got {a.dtype} {a.shape}")
    return int(a.reshape(()))


def validate(arrays):
    """Check every bound of FORMAT.md; return the normalized model description.

    arrays: mapping with bag, bag_bias, w1..wN, b1..bN, explut, order, shifts, logit_clip.
    """
    for key in ("bag", "bag_bias", "explut", "order", "shifts", "logit_clip", "w1", "b1"):
        if key not in arrays:
            raise ExportError(f"missing array {key!r}")
    k = _int_scalar("order", arrays["order"])
    if not 1 <= k <= MAX_ORDER:
        raise ExportError(f"order: K={k} must be in [1, {MAX_ORDER}]")
    clip = _int_scalar("logit_clip", arrays["logit_clip"])
    if not 1 <= clip <= MAX_CLIP:
        raise ExportError(f"logit_clip: L={clip} must be in [1, {MAX_CLIP}]")
    shifts_a = np.asarray(arrays["shifts"])
    if shifts_a.ndim != 1 or shifts_a.dtype.kind not in "iu":
        raise ExportError(f"shifts: must be a 1-d integer array, got {shifts_a.dtype} {shifts_a.shape}")
    shifts = [int(s) for s in shifts_a]
    for i, s in enumerate(shifts):
        if not 0 <= s <= MAX_SHIFT:
            raise ExportError(f"shifts[{i}]={s} must be in [0, {MAX_SHIFT}]")

    n = 0
    while f"w{n + 1}" in arrays:
        n += 1
    if n < 1 or n > MAX_LAYERS:
        raise ExportError(f"need 1..{MAX_LAYERS} dense layers w1..wN, found {n}")
    extra = [key for key in arrays if key[:1] in "wb" and key[1:].isdigit() and not 1 <= int(key[1:]) <= n]
    if extra:
        raise ExportError(f"layer arrays {sorted(extra)} do not continue w1..w{n}")
    if len(shifts) != n + 1:
        raise ExportError(f"shifts: need N+1={n + 1} entries for {n} dense layers, got {len(shifts)}")

    ng_orders, ng_bits = [], 0
    if "ngram_orders" in arrays:
        ng_orders = [int(x) for x in np.asarray(arrays["ngram_orders"]).ravel()]
        ng_bits = _int_scalar("ngram_bits", arrays["ngram_bits"])
        if not 1 <= len(ng_orders) <= MAX_NGRAMS:
            raise ExportError(f"ngram_orders: need 1..{MAX_NGRAMS} orders, got {len(ng_orders)}")
        if any(not 1 <= n <= k for n in ng_orders):
            raise ExportError(f"ngram_orders: every order must be in [1, K={k}], got {ng_orders}")
        if not 1 <= ng_bits <= MAX_NGRAM_BITS:
            raise ExportError(f"ngram_bits={ng_bits} must be in [1, {MAX_NGRAM_BITS}]")
    rows = k * 257 + (len(ng_orders) << ng_bits)
    bag = np.asarray(arrays["bag"])
    if bag.ndim != 2 or bag.shape[0] != rows:
        raise ExportError(f"bag: shape must be [K*257+G*2^bits={rows}, H0], got {list(bag.shape)}")
    h0 = bag.shape[1]
    if not 1 <= h0 <= MAX_WIDTH:
        raise ExportError(f"bag: width H0={h0} must be in [1, {MAX_WIDTH}]")
    bag = _int_array("bag", bag, -127, 127, np.int8)
    bag_bias = np.asarray(arrays["bag_bias"])
    if bag_bias.shape != (h0,):
        raise ExportError(f"bag_bias: shape must be [{h0}], got {list(bag_bias.shape)}")
    bag_bias = _int_array("bag_bias", bag_bias, -(EXACT - 1), EXACT - 1, np.int32)
    worst = (k + len(ng_orders)) * 128 + (int(np.abs(bag_bias.astype(np.int64)).max()) if h0 else 0)
    if worst >= EXACT:
        raise ExportError(f"bag: (K+G)*128 + max|bag_bias| = {worst} must be < 2^24")

    layers = []
    width = h0
    for i in range(1, n + 1):
        w = np.asarray(arrays[f"w{i}"])
        b = np.asarray(arrays.get(f"b{i}", np.zeros(0)))
        if f"b{i}" not in arrays:
            raise ExportError(f"missing array 'b{i}'")
        if w.ndim != 2 or w.shape[0] != width:
            raise ExportError(f"w{i}: shape must be [{width}, H{i}], got {list(w.shape)}")
        out = w.shape[1]
        if i == n and out != 256:
            raise ExportError(f"w{i}: the last layer must have 256 outputs, got {out}")
        if not 1 <= out <= MAX_WIDTH:
            raise ExportError(f"w{i}: width {out} must be in [1, {MAX_WIDTH}]")
        if b.shape != (out,):
            raise ExportError(f"b{i}: shape must be [{out}], got {list(b.shape)}")
        w = _int_array(f"w{i}", w, -127, 127, np.int8)
        b = _int_array(f"b{i}", b, -(EXACT - 1), EXACT - 1, np.int32)
        worst = width * 127 * 128 + int(np.abs(b.astype(np.int64)).max())
        if worst >= EXACT:
            raise ExportError(f"w{i}: H_in*127*128 + max|b{i}| = {worst} must be < 2^24 (H_in={width})")
        layers.append((w, b))
        width = out

    explut = np.asarray(arrays["explut"])
    if explut.shape != (2 * clip + 1,):
        raise ExportError(f"explut: shape must be [2L+1={2 * clip + 1}], got {list(explut.shape)}")
    explut = _int_array("explut", explut, 1, EXP_ONE, np.uint32)
    if np.any(np.diff(explut.astype(np.int64)) < 0):
        raise ExportError("explut: must be non-decreasing")

    return {"order": k, "shifts": shifts, "logit_clip": clip, "bag": bag, "bag_bias": bag_bias,
            "layers": layers, "explut": explut, "ngram_orders": ng_orders, "ngram_bits": ng_bits}


def bag_rows(m, ctx):
    """Bag row indices [n, K+G] of context symbols ctx [n, K] (0..256)."""
    import data as D  # the one definition of the n-gram hash, shared with training
    ng = (m["ngram_orders"], m["ngram_bits"]) if m["ngram_orders"] else None
    return D.to_rows(np.asarray(ctx, dtype=np.int64), ng)


def build_onnx(m, shared=False):
    """The ONNX graph of FORMAT.md: integer initializers cast to float32, exact by the bounds.
    Returns (full graph, graph as stored): the same bytes unless shared (format 3), where the
    n-gram bag initializer is named "bag", as the file's tensor, and the stored graph lacks it."""
    k, shifts, clip = m["order"], m["shifts"], m["logit_clip"]
    inits, nodes = [], []

    def const(name, arr):
        inits.append(numpy_helper.from_array(np.asarray(arr), name))
        return name

    def f32(name, arr):
        return const(name, np.asarray(arr, dtype=np.float32))

    def weights(name, arr):
        # Stored with its integer dtype (int8/int32: 1/4 or the same size as float32) and
        # cast to float32 in the graph; ORT folds the Cast at session creation.
        const(name + "_int", arr)
        nodes.append(helper.make_node("Cast", [name + "_int"], [name], to=TensorProto.FLOAT))
        return name

    const("reduce_axes", np.array([1], dtype=np.int64))
    f32("zero", np.float32(0))
    f32("act_max", np.float32(127))
    f32("logit_min", np.float32(-clip))
    f32("logit_max", np.float32(clip))

    if m["ngram_orders"]:
        # Format 2: gather the int8 rows, then cast: a quarter of the memory traffic of gathering
        # float32 rows (the n-gram rows are scattered over a table larger than the caches).
        bag = "bag" if shared else "bag_int"
        const(bag, m["bag"])
        nodes.append(helper.make_node("Gather", [bag, "ctx"], ["rows_int"], axis=0))
        nodes.append(helper.make_node("Cast", ["rows_int"], ["rows"], to=TensorProto.FLOAT))
    else:
        nodes.append(helper.make_node("Gather", [weights("bag", m["bag"]), "ctx"], ["rows"], axis=0))
    nodes.append(helper.make_node("ReduceSum", ["rows", "reduce_axes"], ["bag_sum"], keepdims=0))
    nodes.append(helper.make_node("Add", ["bag_sum", weights("bag_bias", m["bag_bias"])], ["a0"]))
    cur = "a0"
    layers = m["layers"]
    for i in range(len(shifts)):
        last = i == len(shifts) - 1
        scale = f32(f"scale{i}", np.float32(2.0 ** -shifts[i]))
        nodes.append(helper.make_node("Mul", [cur, scale], [f"m{i}"]))
        nodes.append(helper.make_node("Floor", [f"m{i}"], [f"f{i}"]))
        lo, hi = ("logit_min", "logit_max") if last else ("zero", "act_max")
        out = "logits" if last else f"h{i}"
        nodes.append(helper.make_node("Clip", [f"f{i}", lo, hi], [out]))
        if last:
            break
        w, b = layers[i]
        nodes.append(helper.make_node("MatMul", [out, weights(f"w{i + 1}", w)], [f"mm{i + 1}"]))
        nodes.append(helper.make_node("Add", [f"mm{i + 1}", weights(f"b{i + 1}", b)], [f"a{i + 1}"]))
        cur = f"a{i + 1}"

    graph = helper.make_graph(
        nodes, "lmfs_ctxmlp",
        [helper.make_tensor_value_info("ctx", TensorProto.INT64, ["batch", k + len(m["ngram_orders"])])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 256])],
        initializer=inits)
    model = helper.make_model(graph, producer_name="lmfs-export",
                              opset_imports=[helper.make_opsetid("", OPSET)])
    model.ir_version = 8  # ONNX 1.10+; opset 17 needs IR >= 8
    onnx.checker.check_model(model)
    full = model.SerializeToString()
    if not shared:
        return full, full
    keep = [t for t in model.graph.initializer if t.name not in SHARED]
    del model.graph.initializer[:]
    model.graph.initializer.extend(keep)
    stored = model.SerializeToString()
    check_shared(m, full, stored)
    return full, stored


def _varint(v):
    out = bytearray()
    while True:
        b = v & 0x7F
        v >>= 7
        if v:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def _field(num, payload):
    return _varint(num << 3 | 2) + _varint(len(payload)) + payload


def shared_suffix(m):
    """What model/onnxshared.go appends to a format-3 graph: ModelProto.graph (7) holding one
    GraphProto.initializer (5) per shared tensor: TensorProto dims (1), data_type (2), name (8),
    raw_data (9), little endian."""
    g = b""
    for name in SHARED:
        arr = m[name]
        tp = b"".join(_varint(1 << 3) + _varint(int(d)) for d in arr.shape)
        tp += _varint(2 << 3) + _varint({np.dtype(np.int8): 3, np.dtype(np.int32): 6, np.dtype(np.uint32): 12}[arr.dtype])
        tp += _field(8, name.encode()) + _field(9, np.ascontiguousarray(arr.astype(arr.dtype.newbyteorder("<"))).tobytes())
        g += _field(5, tp)
    return _field(7, g)


def check_shared(m, full, stored):
    """The stored graph plus the suffix lmfs appends must parse to the full graph."""
    a = onnx.load_from_string(full)
    b = onnx.load_from_string(stored + shared_suffix(m))
    inits = lambda g: sorted((t.name, t.SerializeToString(deterministic=True)) for t in g.initializer)
    same = inits(a.graph) == inits(b.graph) and [n.SerializeToString() for n in a.graph.node] == \
        [n.SerializeToString() for n in b.graph.node] and a.graph.input == b.graph.input and a.graph.output == b.graph.output
    if not same:
        raise ExportError("format 3: the stored graph with the shared tensors appended differs from the graph")


def reference_logits(m, ctx):
    """Plain numpy evaluation of FORMAT.md's integer semantics (ctx: [n, K] symbols 0..256)."""
    rows = bag_rows(m, ctx)
    a = m["bag_bias"].astype(np.int64) + m["bag"].astype(np.int64)[rows].sum(axis=1)
    h = np.clip(a >> m["shifts"][0], 0, 127)
    for i, (w, b) in enumerate(m["layers"]):
        a = b.astype(np.int64) + h @ w.astype(np.int64)
        if i == len(m["layers"]) - 1:
            return np.clip(a >> m["shifts"][-1], -m["logit_clip"], m["logit_clip"])
        h = np.clip(a >> m["shifts"][i + 1], 0, 127)
    raise AssertionError("unreachable")


def container(m, name, train, onnx_bytes, fmt):
    """Serialize header + blob (FORMAT.md 'Container')."""
    pieces = [("bag", "int8", m["bag"]), ("bag_bias", "int32", m["bag_bias"])]
    for i, (w, b) in enumerate(m["layers"], 1):
        pieces += [(f"w{i}", "int8", w), (f"b{i}", "int32", b)]
    pieces.append(("explut", "uint32", m["explut"]))

    blob = bytearray()
    tensors = {}
    for tname, dtype, arr in pieces:
        blob += b"\0" * (-len(blob) % ALIGN)
        data = np.ascontiguousarray(arr.astype(np.dtype(dtype).newbyteorder("<"))).tobytes()
        tensors[tname] = {"dtype": dtype, "shape": [int(d) for d in arr.shape],
                          "offset": len(blob), "length": len(data)}
        blob += data
    blob += b"\0" * (-len(blob) % ALIGN)
    onnx_ref = {"offset": len(blob), "length": len(onnx_bytes)}
    if fmt == FORMAT_SHARED:
        onnx_ref["shared"] = SHARED
    blob += onnx_bytes

    header = {"format": fmt, "arch": ARCH, "name": name, "order": m["order"],
              "shifts": m["shifts"], "logit_clip": m["logit_clip"], "tensors": tensors,
              "onnx": onnx_ref}
    if m["ngram_orders"]:
        header["ngram"] = {"orders": m["ngram_orders"], "bits": m["ngram_bits"]}
    if train is not None:
        header["train"] = train
    hjson = json.dumps(header, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    return MAGIC + struct.pack("<I", len(hjson)) + hjson + bytes(blob)


def check_onnx_matches(m, onnx_bytes, seed=1):
    """Run the graph with onnx's reference evaluator, if this onnx has one, against numpy."""
    try:
        from onnx.reference import ReferenceEvaluator
    except ImportError:
        return False
    rng = np.random.default_rng(seed)
    ctx = rng.integers(0, 257, size=(32, m["order"]))
    ctx[0, :] = 256
    rows = bag_rows(m, ctx)
    got = ReferenceEvaluator(onnx.load_from_string(onnx_bytes)).run(None, {"ctx": rows})[0]
    want = reference_logits(m, ctx)
    if not np.array_equal(got.astype(np.int64), want):
        raise ExportError("ONNX graph disagrees with the integer reference")
    return True


def export_model(arrays, name, out_path, train=None, fmt=None):
    """fmt: 1 without n-gram rows; 2 or 3 (the default) with them."""
    if not isinstance(name, str) or not name or len(name.encode("utf-8")) > 256:
        raise ExportError("name: must be a non-empty string of at most 256 bytes")
    m = validate(arrays)
    allowed = (FORMAT_SHARED, FORMAT_NGRAM) if m["ngram_orders"] else (FORMAT,)
    if fmt is None:
        fmt = allowed[0]
    if fmt not in allowed:
        raise ExportError(f"format {fmt} for a model {'with' if m['ngram_orders'] else 'without'} n-gram rows")
    onnx_bytes, stored = build_onnx(m, shared=fmt == FORMAT_SHARED)
    check_onnx_matches(m, onnx_bytes)
    data = container(m, name, train, stored, fmt)
    with open(out_path, "wb") as f:
        f.write(data)
    return data


def main(argv=None):
    p = argparse.ArgumentParser(description="Export integer ctxmlp weights (npz) to an lmfs model file.")
    p.add_argument("--npz", required=True, help="integer weights (bag, bag_bias, w1.., b1.., explut, order, shifts, logit_clip)")
    p.add_argument("--out", required=True, help="model file to write (.lmfsm)")
    p.add_argument("--name", required=True, help="human name stored in the header")
    p.add_argument("--train-json", help="JSON file with training provenance, stored as header.train")
    p.add_argument("--format", type=int, default=None, help="1 without n-gram rows; 2 or 3 (default) with them")
    args = p.parse_args(argv)
    train = None
    try:
        if args.train_json:
            with open(args.train_json, encoding="utf-8") as f:
                train = json.load(f)
        with np.load(args.npz) as z:
            arrays = {key: z[key] for key in z.files}
    except (OSError, ValueError) as e:
        print(f"export: {e}", file=sys.stderr)
        return 1
    try:
        data = export_model(arrays, args.name, args.out, train, fmt=args.format)
    except ExportError as e:
        print(f"export: {args.npz}: {e}", file=sys.stderr)
        return 1
    import hashlib
    print(f"export: wrote {args.out} ({len(data)} bytes, id {hashlib.sha256(data).hexdigest()[:16]})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
