#!/usr/bin/env python3
"""gen-quant-vectors.py — reference vectors for loader/quants.c.

Writes tests/data/quant-vectors.bin from the `gguf` PyPI package (gguf-py,
llama.cpp's Python reader/writer): its quantizers and dequantizers and its
type table are an implementation independent of ours. tests/test-quants.c
reads the file and checks wk_dequantize_row / wk_dot_row / wk_f32_to_fp16 /
wk_type_info against it.

Usage:  python3 tools/gen-quant-vectors.py [--models DIR] [-o OUT]
        (defaults: ../shared/models next to the source tree,
         tests/data/quant-vectors.bin)
The output is deterministic for a given gguf/numpy version (seeded RNG).

File format (little-endian):
  char[4] "WKQV"; u32 version = 1; u32 n_records
  n_records × {
    u32 kind; u32 n; u32 src_bytes; u32 dst_bytes; u32 name_len;
    char name[name_len];  (no NUL)
    u8 src[src_bytes]; u8 dst[dst_bytes]
  }
  kind < 0x100: a ggml type id. src = n elements of that type (whole blocks,
      raw GGUF bytes); dst = n float32, gguf.quants.dequantize(src).
  kind 0x100 (F32_TO_F16): src = n float32; dst = n u16, numpy's
      float32 -> float16 cast (round to nearest even). No NaN inputs.
  kind 0x101 (TYPE_TABLE): n types; src = n × {u32 id, u32 block_size,
      u32 type_size, char name[12] (NUL-padded, ggml spelling)}; dst empty.
"""
import argparse
import os
import struct
import sys

import numpy as np
import gguf
from gguf import GGMLQuantizationType as T
from gguf.constants import GGML_QUANT_SIZES

KIND_F32_TO_F16 = 0x100
KIND_TYPE_TABLE = 0x101

# ggml's spelling of type names (ggml.c type_traits .type_name): lower case,
# except the K of the k-quants.
def ggml_name(t):
    n = t.name.lower()
    if n.endswith("_k"):
        n = n[:-2] + "_K"
    return n

ap = argparse.ArgumentParser()
here = os.path.dirname(os.path.abspath(__file__))
ap.add_argument("--models", default=os.path.join(here, "..", "..", "shared", "models"))
ap.add_argument("-o", "--out", default=os.path.join(here, "..", "tests", "data", "quant-vectors.bin"))
args = ap.parse_args()

rng = np.random.default_rng(20261127)
records = []


def add(kind, n, src, dst, name):
    src = bytes(src)
    dst = bytes(dst)
    records.append((kind, n, src, dst, name.encode()))


def f16_bits(v):
    return np.array([v], dtype=np.float16).view(np.uint16)[0]


def sane_f16(count):
    """Random normal fp16 scales of either sign, magnitudes 2^-12 .. 2^2."""
    mag = np.exp2(rng.uniform(-12, 2, count)).astype(np.float16)
    sign = rng.choice([-1, 1], count).astype(np.float16)
    return (mag * sign).astype(np.float16).view(np.uint16)


def put16(block, off, bits):
    block[off] = int(bits) & 0xFF
    block[off + 1] = (int(bits) >> 8) & 0xFF


# Offsets of the fp16 fields inside a block: scale d, then min/dmin if any.
HALF_FIELDS = {
    T.Q4_0: [0], T.Q4_1: [0, 2], T.Q5_0: [0], T.Q5_1: [0, 2], T.Q8_0: [0],
    T.Q4_K: [0, 2], T.Q5_K: [0, 2], T.Q6_K: [208],
}
BLOCK_TYPES = [T.Q4_0, T.Q4_1, T.Q5_0, T.Q5_1, T.Q8_0, T.Q4_K, T.Q5_K, T.Q6_K]


def dequant(raw, t):
    bs, ts = GGML_QUANT_SIZES[t]
    arr = np.frombuffer(bytes(raw), dtype=np.uint8)
    if t == T.F32:
        return arr.view(np.float32).copy()
    if t == T.F16:
        return arr.view(np.float16).astype(np.float32)
    out = gguf.quants.dequantize(arr.reshape(-1, ts), t).reshape(-1)
    assert out.dtype == np.float32
    return out


def add_blocks(t, blocks, name):
    bs, ts = GGML_QUANT_SIZES[t]
    raw = np.concatenate([np.asarray(b, dtype=np.uint8).reshape(-1) for b in blocks])
    assert raw.size % ts == 0
    n = raw.size // ts * bs
    exp = dequant(raw, t)
    assert exp.size == n
    add(int(t), n, raw.tobytes(), exp.astype("<f4").tobytes(), name)


def random_blocks(t, count):
    bs, ts = GGML_QUANT_SIZES[t]
    out = []
    for _ in range(count):
        b = rng.integers(0, 256, ts, dtype=np.uint8)
        for off, bits in zip(HALF_FIELDS[t], sane_f16(len(HALF_FIELDS[t]))):
            put16(b, off, bits)
        out.append(b)
    return out


def edge_blocks(t):
    """Named edge cases: (name, block)."""
    bs, ts = GGML_QUANT_SIZES[t]
    fields = HALF_FIELDS[t]
    res = []

    def mk(fill, halves):
        b = np.full(ts, fill, dtype=np.uint8)
        for off, h in zip(fields, halves):
            put16(b, off, h)
        return b

    one, neg = 0x3C00, 0xBC00
    res.append(("all-zero", np.zeros(ts, dtype=np.uint8)))
    res.append(("all-0xff bytes, scales 1/-1", mk(0xFF, [one, neg])))
    res.append(("0x00 quants, negative scales", mk(0x00, [0xC500, 0xC200])))
    res.append(("0x80 bytes, max fp16 scale", mk(0x80, [0x7BFF, 0xFBFF])))
    res.append(("0x7f bytes, subnormal scales", mk(0x7F, [0x0001, 0x83FF])))
    res.append(("0x55 bytes, subnormal d, normal min", mk(0x55, [0x03FF, 0x1400])))
    res.append(("0xaa bytes, negative zero scales", mk(0xAA, [0x8000, 0x8000])))
    # random quants with a subnormal / huge d
    b = rng.integers(0, 256, ts, dtype=np.uint8)
    for off, h in zip(fields, [0x0201, 0x8123]):
        put16(b, off, h)
    res.append(("random quants, subnormal scales", b))
    return res


# --- quantized block types ---------------------------------------------------
for t in BLOCK_TYPES:
    bs, ts = GGML_QUANT_SIZES[t]
    add_blocks(t, random_blocks(t, 8 if bs == 256 else 24), f"{ggml_name(t)} random blocks")
    edges = edge_blocks(t)
    add_blocks(t, [b for _, b in edges], f"{ggml_name(t)} edge blocks: " + "; ".join(n for n, _ in edges))
    # gguf-py can quantize the legacy types (not the k-quants): realistic
    # blocks from weights
    if t in (T.Q4_0, T.Q4_1, T.Q5_0, T.Q5_1, T.Q8_0):
        w = (rng.standard_normal(bs * 32) * 0.05).astype(np.float32)
        w[:5] = [0.0, 1.0, -1.0, 0.3, -0.7]
        q = gguf.quants.quantize(w.reshape(1, -1), t).reshape(-1)
        add_blocks(t, [q], f"{ggml_name(t)} quantized by gguf-py from N(0, 0.05) weights")

# --- float types ---------------------------------------------------------------
# F16: every special class, including NaN payloads (numpy keeps them, as we do)
special16 = [0x0000, 0x8000, 0x0001, 0x8001, 0x03FF, 0x0200, 0x0400, 0x7BFF, 0xFBFF,
             0x7C00, 0xFC00, 0x7C01, 0x7E00, 0xFE00, 0x7D55, 0x3C00, 0x3C01, 0xC000, 0x3555]
r16 = rng.integers(0, 65536, 512, dtype=np.uint32).astype(np.uint16)
h = np.concatenate([np.array(special16, dtype=np.uint16), r16,
                    np.zeros((-(len(special16) + 512)) % 32, dtype=np.uint16)]).astype("<u2")
add(int(T.F16), h.size, h.tobytes(), h.view(np.float16).astype(np.float32).astype("<f4").tobytes(),
    "f16 specials (zeros, subnormals, max, inf, NaN payloads) + random bit patterns")

# BF16: random bit patterns (with specials); gguf-py dequantizes by shifting
b16 = np.concatenate([np.array([0, 0x8000, 1, 0x7F80, 0xFF80, 0x7FC1, 0x3F80, 0x0080, 0x007F],
                               dtype=np.uint16),
                      rng.integers(0, 65536, 247, dtype=np.uint32).astype(np.uint16)]).astype("<u2")
add(int(T.BF16), b16.size, b16.tobytes(), dequant(b16.view(np.uint8), T.BF16).astype("<f4").tobytes(),
    "bf16 specials + random bit patterns")

# F32: a plain copy, bits included (-0, subnormal, inf)
f = np.concatenate([np.array([0.0, -0.0, 1e-45, -3.4e38, np.inf, -np.inf, 1.0, -2.5], dtype=np.float32),
                    rng.standard_normal(56).astype(np.float32)]).astype("<f4")
add(int(T.F32), f.size, f.tobytes(), f.tobytes(), "f32 copy (zeros, subnormal, inf)")

# --- f32 -> f16 rounding ---------------------------------------------------------
cases = []
def fb(u):
    return np.array([u], dtype=np.uint32).view(np.float32)[0]
# exact halves and the midpoints between neighbours (ties), and one f32 ulp
# either side of each midpoint, for normals and subnormals of both parities
for hb in [0x0000, 0x0001, 0x0002, 0x0003, 0x01FF, 0x03FE, 0x03FF, 0x0400, 0x0401,
           0x3BFF, 0x3C00, 0x3C01, 0x3C02, 0x5000, 0x7BFE, 0x7BFF]:
    a = np.float32(np.array([hb], dtype=np.uint16).view(np.float16)[0])
    bnext = np.float32(np.array([hb + 1], dtype=np.uint16).view(np.float16)[0])
    mid = np.float32((np.float64(a) + np.float64(bnext)) / 2)  # exact in f32
    for v in [a, mid, np.nextafter(mid, np.float32(0)), np.nextafter(mid, np.float32(np.inf))]:
        cases += [v, -v]
# overflow boundary (65504 + 16 = tie -> inf), tiny values, f32 subnormals, inf
cases += [np.float32(65519.996), np.float32(65520.0), np.float32(65536.0), np.float32(1e10),
          np.float32(2.0 ** -25), np.float32(np.nextafter(np.float32(2.0 ** -25), np.float32(1))),
          np.float32(3 * 2.0 ** -26), np.float32(2.0 ** -26), np.float32(1e-30), fb(0x00000001),
          fb(0x007FFFFF), np.float32(np.inf), np.float32(-np.inf), np.float32(3.4e38),
          np.float32(0.1), np.float32(1 / 3)]
# random bit patterns around the half range, then anywhere (no NaN)
r = rng.integers(0x32000000, 0x47900000, 3000, dtype=np.uint32) | \
    (rng.integers(0, 2, 3000, dtype=np.uint32) << 31)
cases += list(r.view(np.float32))
r = rng.integers(0, 1 << 32, 600, dtype=np.uint64).astype(np.uint32)
r = r[(r & 0x7FFFFFFF) <= 0x7F800000]
cases += list(r.view(np.float32))
cf = np.array(cases, dtype=np.float32)
assert not np.isnan(cf).any()
with np.errstate(over="ignore"):
    ch = cf.astype(np.float16).view(np.uint16)
add(KIND_F32_TO_F16, cf.size, cf.astype("<f4").tobytes(), ch.astype("<u2").tobytes(),
    "f32 -> f16: ties, neighbours, overflow, subnormals, random")

# --- the type table ------------------------------------------------------------
tab = b""
ids = sorted(GGML_QUANT_SIZES.keys(), key=int)
for t in ids:
    bs, ts = GGML_QUANT_SIZES[t]
    tab += struct.pack("<III", int(t), bs, ts) + ggml_name(t).encode().ljust(12, b"\0")
add(KIND_TYPE_TABLE, len(ids), tab, b"", f"gguf-py {gguf.__name__} GGML_QUANT_SIZES")

# --- rows of the tiny-qwen2 models ------------------------------------------------

picks = [  # (file, tensor, rows)
    ("tiny-qwen2-q4_k_m.gguf", "blk.0.ffn_down.weight", [0, 447]),   # q4_K
    ("tiny-qwen2-q4_k_m.gguf", "blk.1.ffn_down.weight", [3]),        # q6_K
    ("tiny-qwen2-q4_k_m.gguf", "blk.0.attn_q.weight", [0, 200]),     # q5_0
    ("tiny-qwen2-q4_k_m.gguf", "token_embd.weight", [1026]),         # q8_0
    ("tiny-qwen2-q5_k_m.gguf", "blk.0.ffn_down.weight", [1]),        # q5_K
    ("tiny-qwen2-q5_k_m.gguf", "blk.0.ffn_up.weight", [5]),          # q5_1
    ("tiny-qwen2-q4_0.gguf", "blk.1.ffn_gate.weight", [7]),          # q4_0
    ("tiny-qwen2-q4_1.gguf", "blk.1.attn_output.weight", [9]),       # q4_1
    ("tiny-qwen2-f16.gguf", "blk.0.attn_v.weight", [2]),             # f16
]
have_models = os.path.isdir(args.models)
if not have_models:
    print(f"gen-quant-vectors: {args.models} not found: no model rows", file=sys.stderr)
else:
    readers = {}
    for fname, tname, rows in picks:
        path = os.path.join(args.models, fname)
        if fname not in readers:
            readers[fname] = gguf.GGUFReader(path)
        tens = {t.name: t for t in readers[fname].tensors}[tname]
        t = T(int(tens.tensor_type))
        data = np.asarray(tens.data)
        raw2d = data.view(np.uint8).reshape(data.shape[0], -1)
        for r in rows:
            raw = raw2d[r]
            exp = dequant(raw, t)
            add(int(t), exp.size, raw.tobytes(), exp.astype("<f4").tobytes(),
                f"{fname} {tname} row {r} ({ggml_name(t)})")

os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
with open(args.out, "wb") as fp:
    fp.write(b"WKQV" + struct.pack("<II", 1, len(records)))
    for kind, n, src, dst, name in records:
        fp.write(struct.pack("<IIIII", kind, n, len(src), len(dst), len(name)))
        fp.write(name + src + dst)
size = os.path.getsize(args.out)
print(f"gen-quant-vectors: wrote {len(records)} records, {size} bytes to {os.path.normpath(args.out)}",
      file=sys.stderr)
