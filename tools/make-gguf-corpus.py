#!/usr/bin/env python3
"""make-gguf-corpus.py — seed corpus for tests/fuzz-gguf.c.

Writes small GGUF files into fuzz-corpus-gguf/ (ignored by git):

  * shrunken copies of every ../shared/models/*.gguf: the same keys and value
    types in the same order, arrays cut to a few elements, long strings cut,
    and the first few tensors with their type kept but a small shape, each
    holding the first bytes of the original tensor's data;
  * synthetic files that cover what the real ones do not: every scalar type,
    nested arrays, GGUF v2, general.alignment 64 / 1, many tensor types,
    4-D tensors, a vocab-only file without trailing padding.

Files are serialized here field by field (the layout in loader/gguf.h), so
types are exactly what we ask for. The real files are read with gguf-py.

Usage: python3 tools/make-gguf-corpus.py [--models DIR] [--out DIR]
"""
import argparse
import os
import struct
import sys

T_U8, T_I8, T_U16, T_I16, T_U32, T_I32, T_F32, T_BOOL, T_STR, T_ARR, T_U64, T_I64, T_F64 = range(13)
SCALAR = {T_U8: '<B', T_I8: '<b', T_U16: '<H', T_I16: '<h', T_U32: '<I', T_I32: '<i',
          T_F32: '<f', T_BOOL: '<?', T_U64: '<Q', T_I64: '<q', T_F64: '<d'}
# ggml type id -> (block size, bytes per block)
GGML = {0: (1, 4), 1: (1, 2), 2: (32, 18), 3: (32, 20), 6: (32, 22), 7: (32, 24), 8: (32, 34),
        9: (32, 36), 10: (256, 84), 11: (256, 110), 12: (256, 144), 13: (256, 176),
        14: (256, 210), 15: (256, 292), 30: (1, 2)}


def enc_str(b):
    if isinstance(b, str):
        b = b.encode()
    return struct.pack('<Q', len(b)) + b


def enc_value(t, v):
    """v: scalar, bytes/str, or (elem_type, [values]) for arrays."""
    if t in SCALAR:
        return struct.pack(SCALAR[t], v)
    if t == T_STR:
        return enc_str(v)
    et, items = v
    out = struct.pack('<IQ', et, len(items))
    for x in items:
        out += enc_value(et, x)
    return out


def gguf_bytes(kvs, tensors, version=3, alignment=32, pad_end=True):
    """kvs: [(key, type, value)]; tensors: [(name, ne list, ggml type, data bytes)]."""
    out = struct.pack('<IIQQ', 0x46554747, version, len(tensors), len(kvs))
    for k, t, v in kvs:
        out += enc_str(k) + struct.pack('<I', t) + enc_value(t, v)
    offs, off = [], 0
    for name, ne, gt, data in tensors:
        offs.append(off)
        off += len(data)
        off = (off + alignment - 1) // alignment * alignment
    for (name, ne, gt, data), o in zip(tensors, offs):
        out += enc_str(name) + struct.pack('<I', len(ne))
        out += b''.join(struct.pack('<Q', n) for n in ne)
        out += struct.pack('<IQ', gt, o)
    if tensors or pad_end:
        out += b'\0' * ((-len(out)) % alignment)
    for i, (name, ne, gt, data) in enumerate(tensors):
        out += data
        if i + 1 < len(tensors):  # the file ends with the last tensor's data
            out += b'\0' * ((-len(out)) % alignment)
    return out


def tensor_bytes(ne, gt):
    bs, ts = GGML[gt]
    n = 1
    for x in ne[1:]:
        n *= x
    return ne[0] // bs * ts * n


def shrink_field(field):
    """A gguf-py ReaderField -> (type, value) with arrays/strings cut."""
    types = field.types
    t = int(types[0])
    if t == T_ARR:
        et = int(types[1])
        items = []
        for idx in field.data[:6]:
            part = field.parts[idx]
            if et == T_STR:
                items.append(bytes(part)[:32])
            elif et == T_ARR:
                return None  # nested arrays are covered by the synthetic seeds
            else:
                items.append(part.tolist()[0])
        return T_ARR, (et, items)
    part = field.parts[field.data[0]]
    if t == T_STR:
        return T_STR, bytes(part)[:200]
    return t, part.tolist()[0]


def shrink_model(path):
    import gguf
    r = gguf.GGUFReader(path)
    kvs = []
    for key, field in r.fields.items():
        if key.startswith('GGUF.'):
            continue
        sv = shrink_field(field)
        if sv is not None:
            kvs.append((key, sv[0], sv[1]))
    tensors = []
    for t in r.tensors[:4]:
        gt = int(t.tensor_type)
        if gt not in GGML:
            continue
        bs = GGML[gt][0]
        ne = [bs * (2 if bs == 1 else 1)] + ([2] if len(t.shape) > 1 else [])
        nb = tensor_bytes(ne, gt)
        raw = bytes(memoryview(t.data).cast('B'))[:nb] if t.n_bytes else b''
        raw = raw + b'\0' * (nb - len(raw))
        tensors.append((t.name, ne, gt, raw))
    return kvs, tensors


def synthetic():
    """(name, bytes) of hand-made seeds."""
    every = [
        ('general.architecture', T_STR, 'llama'),
        ('t.u8', T_U8, 200), ('t.i8', T_I8, -5), ('t.u16', T_U16, 60000),
        ('t.i16', T_I16, -30000), ('t.u32', T_U32, 4000000000), ('t.i32', T_I32, -7),
        ('t.f32', T_F32, 1.5), ('t.bool', T_BOOL, True), ('t.u64', T_U64, 2**63 + 5),
        ('t.i64', T_I64, -2**40), ('t.f64', T_F64, -0.25),
        ('t.strs', T_ARR, (T_STR, ['a', '', 'ccc'])),
        ('t.bools', T_ARR, (T_BOOL, [True, False])),
        ('t.f64s', T_ARR, (T_F64, [0.5, 1e300])),
        ('t.nested', T_ARR, (T_ARR, [(T_U16, [1, 2]), (T_U16, []), (T_STR, ['x'])])),
        ('t.deep', T_ARR, (T_ARR, [(T_ARR, [(T_ARR, [(T_I8, [1])])])])),
    ]
    seeds = []
    ts = [('a', [4, 2], 0, bytes(range(32))), ('b', [32], 8, bytes(range(34)))]
    seeds.append(('every-type-v3', gguf_bytes(every, ts)))
    seeds.append(('every-type-v2', gguf_bytes(every, ts, version=2)))
    al = [('general.alignment', T_U32, 64)]
    seeds.append(('align64', gguf_bytes(al, ts, alignment=64)))
    seeds.append(('align1', gguf_bytes([('general.alignment', T_U32, 1)], ts, alignment=1)))
    many = []
    for i, gt in enumerate(sorted(GGML)):
        bs = GGML[gt][0]
        ne = [bs, 1, 1, 2] if i % 3 == 0 else [bs * 2]
        many.append(('blk.%d.w' % i, ne, gt, bytes(tensor_bytes(ne, gt))))
    seeds.append(('many-types', gguf_bytes([('general.architecture', T_STR, 'qwen2')], many)))
    seeds.append(('vocab-only-unpadded',
                  gguf_bytes([('tokenizer.ggml.tokens', T_ARR, (T_STR, ['<unk>', 'a', 'bc']))],
                             [], pad_end=False)))
    seeds.append(('empty', gguf_bytes([], [])))
    for depth in (8, 9):  # the nesting bound (GGUF_MAX_ARRAY_DEPTH = 8) and one past it
        v = (T_U8, [7])
        for _ in range(depth - 1):
            v = (T_ARR, [v])
        seeds.append(('deep%d' % depth, gguf_bytes([('deep', T_ARR, v)], [])))
    return seeds


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    root = os.path.dirname(here)
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--models', default=os.path.join(
        os.environ.get('ORCD_SHARED', os.path.join(root, '..', 'shared')), 'models'))
    ap.add_argument('--out', default=os.path.join(root, 'fuzz-corpus-gguf'))
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)

    written = 0
    for name, data in synthetic():
        with open(os.path.join(args.out, 'syn-' + name + '.gguf'), 'wb') as f:
            f.write(data)
        written += 1
    if os.path.isdir(args.models):
        for fn in sorted(os.listdir(args.models)):
            if not fn.endswith('.gguf'):
                continue
            kvs, tensors = shrink_model(os.path.join(args.models, fn))
            data = gguf_bytes(kvs, tensors)
            with open(os.path.join(args.out, 'model-' + fn), 'wb') as f:
                f.write(data)
            written += 1
    else:
        print('note: %s not found; synthetic seeds only' % args.models, file=sys.stderr)
    print('wrote %d seeds to %s' % (written, args.out))


if __name__ == '__main__':
    main()
