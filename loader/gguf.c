/* gguf.c — GGUF v2/v3 reader (format: see gguf.h).
 *
 * Parsing is one forward pass over the bytes with a bounds-checked cursor.
 * Every count read from the file is checked against the bytes that remain
 * (times the smallest possible encoding of one element) before it is used,
 * and arrays grow as elements are actually parsed, so what we allocate is
 * proportional to bytes really present, never to a claimed count. Nested
 * arrays recurse at most GGUF_MAX_ARRAY_DEPTH levels.
 *
 * Order of checks:
 *   header → key/values (types, lengths, nesting) → duplicate keys →
 *   general.alignment → tensor infos (name, dims, type, block multiple,
 *   byte size) → duplicate names → data section start → per-tensor offset
 *   alignment and bounds → overlap between tensors (sorted by offset).
 *
 * Multi-byte values are little-endian in the file; the reader assumes a
 * little-endian host (x86-64, aarch64), as ggml does.
 */
#include "loader/gguf.h"

#include <errno.h>
#include <fcntl.h>
#include <float.h>
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "loader/quants.h"

/* Smallest encodings, used to bound claimed counts by the bytes left. */
#define MIN_KV_BYTES 13     /* u64 key len + 0-byte key + u32 type + 1-byte value */
#define MIN_TENSOR_BYTES 32 /* u64 name len + u32 n_dims + 1 × u64 ne + u32 type + u64 offset */
#define MIN_ARRAY_BYTES 12  /* nested array: u32 elem type + u64 count */
#define MIN_STR_BYTES 8     /* u64 length */
#define MAX_KEY_LEN 65535   /* GGUF spec: keys are at most 2^16-1 bytes */
#define SHOW_MAX 64         /* bytes of a name quoted in a message */

// ---------------------------------------------------------------------------
// cursor and errors

struct rd {
    const uint8_t *base;
    size_t size;
    size_t pos;
    const char *fn; /* public entry point, first word of every message */
    char *err;
    size_t err_len;
    wk_status st;
};

static bool fail(struct rd *r, wk_status st, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;

static bool fail(struct rd *r, wk_status st, const char *fmt, ...) {
    r->st = st;
    if (r->err && r->err_len > 0) {
        int n = snprintf(r->err, r->err_len, "%s: ", r->fn);
        if (n >= 0 && (size_t)n < r->err_len) {
            va_list ap;
            va_start(ap, fmt);
            vsnprintf(r->err + n, r->err_len - (size_t)n, fmt, ap);
            va_end(ap);
        }
    }
    return false;
}

static size_t left(const struct rd *r) { return r->size - r->pos; }

static bool rd_u32(struct rd *r, uint32_t *v) {
    if (left(r) < 4) return false;
    memcpy(v, r->base + r->pos, 4);
    r->pos += 4;
    return true;
}

static bool rd_u64(struct rd *r, uint64_t *v) {
    if (left(r) < 8) return false;
    memcpy(v, r->base + r->pos, 8);
    r->pos += 8;
    return true;
}

/* A name from the file, quoted safely in a message: at most SHOW_MAX bytes,
 * anything but printable ASCII (and the quote) replaced by '?', "..." when
 * cut. buf must hold SHOW_MAX + 4 bytes. */
static const char *show(struct gguf_str s, char *buf) {
    size_t n = s.len < SHOW_MAX ? (size_t)s.len : SHOW_MAX;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s.ptr[i];
        buf[i] = (c >= 0x20 && c < 0x7f && c != '\'') ? (char)c : '?';
    }
    if (s.len > SHOW_MAX) {
        memcpy(buf + n, "...", 3);
        n += 3;
    }
    buf[n] = '\0';
    return buf;
}

/* Grow *p (elements of elsz bytes, *cap of them) to hold `need`; new slots
 * are zeroed. false on overflow or OOM. */
static bool grow(void **p, uint64_t *cap, uint64_t need, size_t elsz) {
    if (need <= *cap) return true;
    uint64_t nc = *cap ? *cap : 8;
    while (nc < need) nc *= 2;
    if (nc > SIZE_MAX / elsz) return false;
    void *q = realloc(*p, (size_t)(nc * elsz));
    if (!q) return false;
    memset((char *)q + *cap * elsz, 0, (size_t)((nc - *cap) * elsz));
    *p = q;
    *cap = nc;
    return true;
}

// ---------------------------------------------------------------------------
// values

/* Size of a scalar element in an array; 0 for STRING/ARRAY. */
static size_t scalar_size(enum gguf_type t) {
    switch (t) {
    case GGUF_TYPE_UINT8: case GGUF_TYPE_INT8: case GGUF_TYPE_BOOL: return 1;
    case GGUF_TYPE_UINT16: case GGUF_TYPE_INT16: return 2;
    case GGUF_TYPE_UINT32: case GGUF_TYPE_INT32: case GGUF_TYPE_FLOAT32: return 4;
    case GGUF_TYPE_UINT64: case GGUF_TYPE_INT64: case GGUF_TYPE_FLOAT64: return 8;
    default: return 0;
    }
}

const char *gguf_type_name(enum gguf_type t) {
    switch (t) {
    case GGUF_TYPE_UINT8: return "uint8";
    case GGUF_TYPE_INT8: return "int8";
    case GGUF_TYPE_UINT16: return "uint16";
    case GGUF_TYPE_INT16: return "int16";
    case GGUF_TYPE_UINT32: return "uint32";
    case GGUF_TYPE_INT32: return "int32";
    case GGUF_TYPE_FLOAT32: return "float32";
    case GGUF_TYPE_BOOL: return "bool";
    case GGUF_TYPE_STRING: return "string";
    case GGUF_TYPE_ARRAY: return "array";
    case GGUF_TYPE_UINT64: return "uint64";
    case GGUF_TYPE_INT64: return "int64";
    case GGUF_TYPE_FLOAT64: return "float64";
    default: return "unknown";
    }
}

static void free_value(struct gguf_value *v) {
    if (!v || v->type != GGUF_TYPE_ARRAY) return;
    if (v->v.arr.arrs) {
        for (uint64_t i = 0; i < v->v.arr.n; i++) free_value(&v->v.arr.arrs[i]);
    }
    free(v->v.arr.arrs);
    free(v->v.arr.strs);
    v->v.arr.arrs = NULL;
    v->v.arr.strs = NULL;
    v->v.arr.n = 0;
}

/* Decode one little-endian scalar of type t at p into v (widened). */
static void decode_scalar(enum gguf_type t, const uint8_t *p, struct gguf_value *v) {
    switch (t) {
    case GGUF_TYPE_UINT8: v->v.u64 = p[0]; break;
    case GGUF_TYPE_INT8: v->v.i64 = (int8_t)p[0]; break;
    case GGUF_TYPE_UINT16: { uint16_t x; memcpy(&x, p, 2); v->v.u64 = x; break; }
    case GGUF_TYPE_INT16: { int16_t x; memcpy(&x, p, 2); v->v.i64 = x; break; }
    case GGUF_TYPE_UINT32: { uint32_t x; memcpy(&x, p, 4); v->v.u64 = x; break; }
    case GGUF_TYPE_INT32: { int32_t x; memcpy(&x, p, 4); v->v.i64 = x; break; }
    case GGUF_TYPE_UINT64: { uint64_t x; memcpy(&x, p, 8); v->v.u64 = x; break; }
    case GGUF_TYPE_INT64: { int64_t x; memcpy(&x, p, 8); v->v.i64 = x; break; }
    case GGUF_TYPE_FLOAT32: { float x; memcpy(&x, p, 4); v->v.f64 = x; break; }
    case GGUF_TYPE_FLOAT64: { double x; memcpy(&x, p, 8); v->v.f64 = x; break; }
    case GGUF_TYPE_BOOL: v->v.b = p[0] != 0; break;
    default: break;
    }
}

/* A string: u64 length + bytes. `what` names the owner for messages. */
static bool parse_str(struct rd *r, struct gguf_str *s, const char *what) {
    size_t at = r->pos;
    uint64_t len;
    if (!rd_u64(r, &len))
        return fail(r, WK_STATUS_BAD_GGUF, "%s: string length truncated at offset %zu", what, at);
    if (len > left(r))
        return fail(r, WK_STATUS_BAD_GGUF,
                    "%s: string length %" PRIu64 " at offset %zu exceeds the %zu bytes left", what,
                    len, at, left(r));
    s->len = len;
    s->ptr = (const char *)(r->base + r->pos);
    r->pos += (size_t)len;
    return true;
}

/* One value of `type`; depth = number of arrays already entered. On failure
 * v holds only what free_value() releases. */
static bool parse_value(struct rd *r, enum gguf_type type, struct gguf_value *v, const char *what,
                        int depth) {
    memset(v, 0, sizeof *v);
    v->type = type;
    size_t at = r->pos;
    size_t esz = scalar_size(type);
    if (esz) {
        if (left(r) < esz)
            return fail(r, WK_STATUS_BAD_GGUF, "%s: %s value truncated at offset %zu", what,
                        gguf_type_name(type), at);
        if (type == GGUF_TYPE_BOOL && r->base[r->pos] > 1)
            return fail(r, WK_STATUS_BAD_GGUF, "%s: bool value %u at offset %zu (must be 0 or 1)",
                        what, r->base[r->pos], at);
        decode_scalar(type, r->base + r->pos, v);
        r->pos += esz;
        return true;
    }
    if (type == GGUF_TYPE_STRING) return parse_str(r, &v->v.str, what);
    if (type != GGUF_TYPE_ARRAY)
        return fail(r, WK_STATUS_BAD_GGUF, "%s: unknown value type %u at offset %zu", what,
                    (unsigned)type, at);

    /* ARRAY: u32 elem type; u64 count; count × elem */
    if (depth >= GGUF_MAX_ARRAY_DEPTH)
        return fail(r, WK_STATUS_BAD_GGUF, "%s: arrays nested deeper than %d levels at offset %zu",
                    what, GGUF_MAX_ARRAY_DEPTH, at);
    uint32_t et;
    uint64_t n;
    if (!rd_u32(r, &et) || !rd_u64(r, &n))
        return fail(r, WK_STATUS_BAD_GGUF, "%s: array header truncated at offset %zu", what, at);
    if (et >= GGUF_TYPE__COUNT)
        return fail(r, WK_STATUS_BAD_GGUF, "%s: unknown array element type %" PRIu32
                    " at offset %zu", what, et, at);
    v->v.arr.type = (enum gguf_type)et;
    size_t min = scalar_size((enum gguf_type)et);
    if (et == GGUF_TYPE_STRING) min = MIN_STR_BYTES;
    if (et == GGUF_TYPE_ARRAY) min = MIN_ARRAY_BYTES;
    if (n > left(r) / min)
        return fail(r, WK_STATUS_BAD_GGUF,
                    "%s: array of %" PRIu64 " %s at offset %zu cannot fit in the %zu bytes left",
                    what, n, gguf_type_name((enum gguf_type)et), at, left(r));

    if (et == GGUF_TYPE_STRING) {
        uint64_t cap = 0;
        for (uint64_t i = 0; i < n; i++) {
            if (!grow((void **)&v->v.arr.strs, &cap, i + 1, sizeof(struct gguf_str)))
                return fail(r, WK_STATUS_OOM_HOST, "%s: out of memory for %" PRIu64 " strings",
                            what, n);
            if (!parse_str(r, &v->v.arr.strs[i], what)) return false;
        }
    } else if (et == GGUF_TYPE_ARRAY) {
        uint64_t cap = 0;
        for (uint64_t i = 0; i < n; i++) {
            if (!grow((void **)&v->v.arr.arrs, &cap, i + 1, sizeof(struct gguf_value)))
                return fail(r, WK_STATUS_OOM_HOST, "%s: out of memory for %" PRIu64 " arrays",
                            what, n);
            v->v.arr.n = i + 1; /* so free_value() releases element i if it fails half-way */
            if (!parse_value(r, GGUF_TYPE_ARRAY, &v->v.arr.arrs[i], what, depth + 1))
                return false;
        }
    } else {
        v->v.arr.data = r->base + r->pos;
        if (et == GGUF_TYPE_BOOL) {
            for (uint64_t i = 0; i < n; i++) {
                if (v->v.arr.data[i] > 1)
                    return fail(r, WK_STATUS_BAD_GGUF,
                                "%s: bool element %" PRIu64 " is %u (must be 0 or 1)", what, i,
                                v->v.arr.data[i]);
            }
        }
        r->pos += (size_t)(n * min);
    }
    v->v.arr.n = n;
    return true;
}

// ---------------------------------------------------------------------------
// duplicate names: sort (name, index) pairs, compare neighbours
//
// Sorting bounds the work at O(n log n) comparisons whatever the names are
// (a hash set could be fed colliding names by a hostile file).

static bool str_same(struct gguf_str a, struct gguf_str b) {
    return a.len == b.len && (a.len == 0 || memcmp(a.ptr, b.ptr, (size_t)a.len) == 0);
}

struct name_ref {
    struct gguf_str s;
    uint64_t idx;
};

static int cmp_name_ref(const void *a, const void *b) {
    const struct name_ref *x = a, *y = b;
    if (x->s.len != y->s.len) return x->s.len < y->s.len ? -1 : 1;
    int c = x->s.len ? memcmp(x->s.ptr, y->s.ptr, (size_t)x->s.len) : 0;
    if (c) return c;
    return x->idx < y->idx ? -1 : x->idx > y->idx;
}

/* items: n structs of `stride` bytes, each with a struct gguf_str at `off`.
 * Returns 1 and sets *first, *second (first < second) on a duplicate, 0 if
 * none, -1 on OOM. */
static int find_duplicate(const void *items, size_t stride, size_t off, uint64_t n,
                          uint64_t *first, uint64_t *second) {
    if (n < 2) return 0;
    if (n > SIZE_MAX / sizeof(struct name_ref)) return -1;
    struct name_ref *refs = malloc((size_t)n * sizeof *refs);
    if (!refs) return -1;
    for (uint64_t i = 0; i < n; i++) {
        memcpy(&refs[i].s, (const char *)items + i * stride + off, sizeof refs[i].s);
        refs[i].idx = i;
    }
    qsort(refs, (size_t)n, sizeof *refs, cmp_name_ref);
    int found = 0;
    for (uint64_t i = 0; i + 1 < n; i++) {
        if (str_same(refs[i].s, refs[i + 1].s)) {
            /* the earliest second occurrence, for a stable message */
            if (!found || refs[i + 1].idx < *second) {
                *first = refs[i].idx;
                *second = refs[i + 1].idx;
            }
            found = 1;
        }
    }
    free(refs);
    return found;
}

// ---------------------------------------------------------------------------
// header, key/values, tensor infos

static bool parse_kvs(struct rd *r, struct gguf_file *f, uint64_t n_kv) {
    uint64_t cap = 0;
    char name[SHOW_MAX + 4], what[SHOW_MAX + 16];
    for (uint64_t i = 0; i < n_kv; i++) {
        if (!grow((void **)&f->kv, &cap, i + 1, sizeof(struct gguf_kv)))
            return fail(r, WK_STATUS_OOM_HOST, "out of memory for %" PRIu64 " key/values", n_kv);
        struct gguf_kv *kv = &f->kv[i];
        snprintf(what, sizeof what, "key/value %" PRIu64 " key", i);
        if (!parse_str(r, &kv->key, what)) return false;
        f->n_kv = i + 1; /* kv[i] is released by close from here on */
        if (kv->key.len == 0)
            return fail(r, WK_STATUS_BAD_GGUF, "key/value %" PRIu64 ": empty key", i);
        if (kv->key.len > MAX_KEY_LEN)
            return fail(r, WK_STATUS_BAD_GGUF, "key '%s': key is %" PRIu64 " bytes (max %d)",
                        show(kv->key, name), kv->key.len, MAX_KEY_LEN);
        if (memchr(kv->key.ptr, 0, (size_t)kv->key.len))
            return fail(r, WK_STATUS_BAD_GGUF, "key '%s': key contains a NUL byte",
                        show(kv->key, name));
        snprintf(what, sizeof what, "key '%s'", show(kv->key, name));
        size_t at = r->pos;
        uint32_t t;
        if (!rd_u32(r, &t))
            return fail(r, WK_STATUS_BAD_GGUF, "%s: value type truncated at offset %zu", what, at);
        if (t >= GGUF_TYPE__COUNT)
            return fail(r, WK_STATUS_BAD_GGUF, "%s: unknown value type %" PRIu32 " at offset %zu",
                        what, t, at);
        if (!parse_value(r, (enum gguf_type)t, &kv->value, what, 0)) return false;
    }
    return true;
}

/* general.alignment: absent → default; else u32, nonzero power of two. */
static bool parse_alignment(struct rd *r, struct gguf_file *f) {
    f->alignment = GGUF_DEFAULT_ALIGNMENT;
    const struct gguf_kv *kv = gguf_find_kv(f, "general.alignment");
    if (!kv) return true;
    if (kv->value.type != GGUF_TYPE_UINT32)
        return fail(r, WK_STATUS_BAD_GGUF, "key 'general.alignment' has type %s (must be uint32)",
                    gguf_type_name(kv->value.type));
    uint64_t a = kv->value.v.u64;
    if (a == 0 || (a & (a - 1)) != 0)
        return fail(r, WK_STATUS_BAD_GGUF,
                    "key 'general.alignment' is %" PRIu64 " (must be a nonzero power of two)", a);
    f->alignment = a;
    return true;
}

/* One tensor info; validates everything that does not need the data offset. */
static bool parse_tensor_info(struct rd *r, uint64_t i, struct gguf_tensor_info *t) {
    char name[SHOW_MAX + 4], what[SHOW_MAX + 16];
    snprintf(what, sizeof what, "tensor %" PRIu64 " name", i);
    if (!parse_str(r, &t->name, what)) return false;
    if (t->name.len == 0) return fail(r, WK_STATUS_BAD_GGUF, "tensor %" PRIu64 ": empty name", i);
    if (t->name.len >= GGUF_MAX_NAME)
        return fail(r, WK_STATUS_BAD_GGUF, "tensor '%s': name is %" PRIu64 " bytes (max %d)",
                    show(t->name, name), t->name.len, GGUF_MAX_NAME - 1);
    show(t->name, name);
    if (memchr(t->name.ptr, 0, (size_t)t->name.len))
        return fail(r, WK_STATUS_BAD_GGUF, "tensor '%s': name contains a NUL byte", name);

    size_t at = r->pos;
    if (!rd_u32(r, &t->n_dims))
        return fail(r, WK_STATUS_BAD_GGUF, "tensor '%s': n_dims truncated at offset %zu", name, at);
    if (t->n_dims < 1 || t->n_dims > GGUF_MAX_DIMS)
        return fail(r, WK_STATUS_BAD_GGUF, "tensor '%s': n_dims is %" PRIu32 " (must be 1..%d)",
                    name, t->n_dims, GGUF_MAX_DIMS);
    for (int d = 0; d < GGUF_MAX_DIMS; d++) t->ne[d] = 1;
    int64_t nelem = 1;
    for (uint32_t d = 0; d < t->n_dims; d++) {
        uint64_t ne;
        at = r->pos;
        if (!rd_u64(r, &ne))
            return fail(r, WK_STATUS_BAD_GGUF, "tensor '%s': ne[%" PRIu32 "] truncated at offset %zu",
                        name, d, at);
        if (ne == 0)
            return fail(r, WK_STATUS_BAD_GGUF, "tensor '%s': ne[%" PRIu32 "] is 0", name, d);
        if (ne > (uint64_t)INT64_MAX)
            return fail(r, WK_STATUS_BAD_GGUF, "tensor '%s': ne[%" PRIu32 "] is %" PRIu64
                        " (too large)", name, d, ne);
        if ((int64_t)ne > INT64_MAX / nelem)
            return fail(r, WK_STATUS_BAD_GGUF,
                        "tensor '%s': element count overflows at ne[%" PRIu32 "] = %" PRIu64,
                        name, d, ne);
        t->ne[d] = (int64_t)ne;
        nelem *= (int64_t)ne;
    }
    at = r->pos;
    if (!rd_u32(r, &t->type))
        return fail(r, WK_STATUS_BAD_GGUF, "tensor '%s': type truncated at offset %zu", name, at);
    const struct wk_type_info *ti = wk_type_info(t->type);
    if (!ti || ti->block_size <= 0 || ti->type_size == 0)
        return fail(r, WK_STATUS_BAD_GGUF, "tensor '%s': unknown type id %" PRIu32, name, t->type);
    if (t->ne[0] % ti->block_size != 0)
        return fail(r, WK_STATUS_BAD_GGUF,
                    "tensor '%s': ne[0] = %" PRId64 " is not a multiple of the %s block size %d",
                    name, t->ne[0], ti->name ? ti->name : "?", ti->block_size);
    at = r->pos;
    if (!rd_u64(r, &t->offset))
        return fail(r, WK_STATUS_BAD_GGUF, "tensor '%s': offset truncated at offset %zu", name, at);

    /* bytes = (ne0 / block) × type_size × (ne1·ne2·ne3), checked in u64 */
    uint64_t row = (uint64_t)(t->ne[0] / ti->block_size);
    uint64_t rows = (uint64_t)(nelem / t->ne[0]);
    if (row > UINT64_MAX / ti->type_size || row * ti->type_size > UINT64_MAX / rows)
        return fail(r, WK_STATUS_BAD_GGUF, "tensor '%s': byte size overflows", name);
    t->nbytes = row * ti->type_size * rows;
    return true;
}

static int cmp_by_offset(const void *a, const void *b) {
    const struct gguf_tensor_info *x = *(const struct gguf_tensor_info *const *)a;
    const struct gguf_tensor_info *y = *(const struct gguf_tensor_info *const *)b;
    if (x->offset != y->offset) return x->offset < y->offset ? -1 : 1;
    if (x->nbytes != y->nbytes) return x->nbytes < y->nbytes ? -1 : 1;
    return 0;
}

static bool parse_tensors(struct rd *r, struct gguf_file *f, uint64_t n_tensors) {
    uint64_t cap = 0;
    char n1[SHOW_MAX + 4], n2[SHOW_MAX + 4];
    for (uint64_t i = 0; i < n_tensors; i++) {
        if (!grow((void **)&f->tensors, &cap, i + 1, sizeof(struct gguf_tensor_info)))
            return fail(r, WK_STATUS_OOM_HOST, "out of memory for %" PRIu64 " tensor infos",
                        n_tensors);
        f->n_tensors = i + 1;
        if (!parse_tensor_info(r, i, &f->tensors[i])) return false;
    }

    uint64_t a = 0, b = 0;
    int dup = find_duplicate(f->tensors, sizeof(struct gguf_tensor_info),
                             offsetof(struct gguf_tensor_info, name), f->n_tensors, &a, &b);
    if (dup < 0) return fail(r, WK_STATUS_OOM_HOST, "out of memory checking tensor names");
    if (dup > 0)
        return fail(r, WK_STATUS_BAD_GGUF, "tensor '%s': duplicate name (tensors %" PRIu64
                    " and %" PRIu64 ")", show(f->tensors[b].name, n1), a, b);

    /* The data section starts at the aligned end of the tensor infos. A file
     * without tensors may end before that point (writers skip the padding):
     * then data_offset is clamped to the file size. */
    uint64_t end = r->pos;
    uint64_t data = (end + f->alignment - 1) / f->alignment * f->alignment;
    if (data > r->size) {
        if (f->n_tensors > 0)
            return fail(r, WK_STATUS_BAD_GGUF,
                        "data section at %" PRIu64 " begins past the end of the file (%zu bytes)",
                        data, r->size);
        data = r->size;
    }
    f->data_offset = data;
    uint64_t avail = r->size - data;
    for (uint64_t i = 0; i < f->n_tensors; i++) {
        struct gguf_tensor_info *t = &f->tensors[i];
        show(t->name, n1);
        if (t->offset % f->alignment != 0)
            return fail(r, WK_STATUS_BAD_GGUF,
                        "tensor '%s': offset %" PRIu64 " is not a multiple of the alignment %"
                        PRIu64, n1, t->offset, f->alignment);
        if (t->offset > avail || t->nbytes > avail - t->offset)
            return fail(r, WK_STATUS_BAD_GGUF,
                        "tensor '%s': data [%" PRIu64 ", +%" PRIu64 ") runs past the end of the "
                        "file (%" PRIu64 " data bytes)", n1, t->offset, t->nbytes, avail);
        t->data = r->base + data + t->offset;
    }

    /* Overlap: sort views by offset, compare neighbours. */
    if (f->n_tensors > 1) {
        if (f->n_tensors > SIZE_MAX / sizeof(void *))
            return fail(r, WK_STATUS_OOM_HOST, "out of memory checking overlap");
        const struct gguf_tensor_info **ord = malloc((size_t)f->n_tensors * sizeof *ord);
        if (!ord) return fail(r, WK_STATUS_OOM_HOST, "out of memory checking overlap");
        for (uint64_t i = 0; i < f->n_tensors; i++) ord[i] = &f->tensors[i];
        qsort(ord, (size_t)f->n_tensors, sizeof *ord, cmp_by_offset);
        for (uint64_t i = 0; i + 1 < f->n_tensors; i++) {
            const struct gguf_tensor_info *x = ord[i], *y = ord[i + 1];
            if (x->offset + x->nbytes > y->offset) {
                fail(r, WK_STATUS_BAD_GGUF,
                     "tensor '%s': data [%" PRIu64 ", %" PRIu64 ") overlaps tensor '%s' at %"
                     PRIu64, show(y->name, n2), y->offset, y->offset + y->nbytes,
                     show(x->name, n1), x->offset);
                free(ord);
                return false;
            }
        }
        free(ord);
    }
    return true;
}

static bool parse_all(struct rd *r, struct gguf_file *f) {
    uint32_t magic = 0, version = 0;
    uint64_t n_tensors = 0, n_kv = 0;
    if (!rd_u32(r, &magic))
        return fail(r, WK_STATUS_BAD_GGUF, "file is %zu bytes (too small)", r->size);
    if (magic != GGUF_MAGIC)
        return fail(r, WK_STATUS_BAD_GGUF, "bad magic 0x%08" PRIx32 " (expected \"GGUF\")", magic);
    if (!rd_u32(r, &version))
        return fail(r, WK_STATUS_BAD_GGUF, "header truncated: file is %zu bytes", r->size);
    if (version == 1)
        return fail(r, WK_STATUS_BAD_GGUF, "GGUF version 1 (u32 counts) is not supported");
    if (version != 2 && version != 3) {
        if ((version & 0xffffu) == 0 && version != 0)
            return fail(r, WK_STATUS_BAD_GGUF,
                        "version 0x%08" PRIx32 ": big-endian GGUF is not supported", version);
        return fail(r, WK_STATUS_BAD_GGUF, "unsupported GGUF version %" PRIu32 " (need 2 or 3)",
                    version);
    }
    f->version = version;
    if (!rd_u64(r, &n_tensors) || !rd_u64(r, &n_kv))
        return fail(r, WK_STATUS_BAD_GGUF, "header truncated: file is %zu bytes", r->size);
    if (n_kv > left(r) / MIN_KV_BYTES)
        return fail(r, WK_STATUS_BAD_GGUF,
                    "n_kv %" PRIu64 " cannot fit in the %zu bytes after the header", n_kv, left(r));
    if (n_tensors > left(r) / MIN_TENSOR_BYTES ||
        n_tensors * MIN_TENSOR_BYTES > left(r) - n_kv * MIN_KV_BYTES)
        return fail(r, WK_STATUS_BAD_GGUF,
                    "n_tensors %" PRIu64 " cannot fit in the %zu bytes after the header",
                    n_tensors, left(r));

    if (!parse_kvs(r, f, n_kv)) return false;
    uint64_t a = 0, b = 0;
    char name[SHOW_MAX + 4];
    int dup = find_duplicate(f->kv, sizeof(struct gguf_kv), offsetof(struct gguf_kv, key), f->n_kv,
                             &a, &b);
    if (dup < 0) return fail(r, WK_STATUS_OOM_HOST, "out of memory checking keys");
    if (dup > 0)
        return fail(r, WK_STATUS_BAD_GGUF,
                    "key '%s': duplicate key (key/values %" PRIu64 " and %" PRIu64 ")",
                    show(f->kv[b].key, name), a, b);
    if (!parse_alignment(r, f)) return false;
    return parse_tensors(r, f, n_tensors);
}

static wk_status parse_into(const char *fn, const void *buf, size_t size, struct gguf_file *out,
                            char *err, size_t err_len) {
    struct rd r = {.base = buf, .size = size, .fn = fn, .err = err, .err_len = err_len,
                   .st = WK_STATUS_OK};
    if (!parse_all(&r, out)) return r.st;
    return WK_STATUS_OK;
}

// ---------------------------------------------------------------------------
// public: open / parse / close

wk_status gguf_file_parse(const void *buf, size_t size, struct gguf_file *out, char *err,
                          size_t err_len) {
    if (!out) return wk_errf(err, err_len, WK_STATUS_INVALID_ARGUMENT, "%s: out is NULL", __func__);
    memset(out, 0, sizeof *out);
    out->fd = -1;
    if (!buf && size > 0)
        return wk_errf(err, err_len, WK_STATUS_INVALID_ARGUMENT, "%s: buf is NULL", __func__);
    out->base = buf;
    out->size = size;
    wk_status st = parse_into(__func__, buf, size, out, err, err_len);
    if (st != WK_STATUS_OK) gguf_file_close(out);
    return st;
}

wk_status gguf_file_open(const char *path, struct gguf_file *out, char *err, size_t err_len) {
    if (!out) return wk_errf(err, err_len, WK_STATUS_INVALID_ARGUMENT, "%s: out is NULL", __func__);
    memset(out, 0, sizeof *out);
    out->fd = -1;
    if (!path) return wk_errf(err, err_len, WK_STATUS_INVALID_ARGUMENT, "%s: path is NULL", __func__);

    wk_status st = WK_STATUS_OK;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        int e = errno;
        return wk_errf(err, err_len, e == ENOENT ? WK_STATUS_NOT_FOUND : WK_STATUS_IO,
                       "%s: cannot open '%s': %s", __func__, path, strerror(e));
    }
    struct stat sb;
    if (fstat(fd, &sb) != 0) {
        st = wk_errf(err, err_len, WK_STATUS_IO, "%s: cannot stat '%s': %s", __func__, path,
                     strerror(errno));
        goto fail;
    }
    if (!S_ISREG(sb.st_mode)) {
        st = wk_errf(err, err_len, WK_STATUS_BAD_GGUF, "%s: '%s' is not a regular file", __func__,
                     path);
        goto fail;
    }
    if (sb.st_size < 24) {
        st = wk_errf(err, err_len, WK_STATUS_BAD_GGUF, "%s: '%s' is %lld bytes (too small for a "
                     "GGUF header)", __func__, path, (long long)sb.st_size);
        goto fail;
    }
    if ((uint64_t)sb.st_size > SIZE_MAX) {
        st = wk_errf(err, err_len, WK_STATUS_BAD_GGUF, "%s: '%s' is too large to map", __func__,
                     path);
        goto fail;
    }
    void *map = mmap(NULL, (size_t)sb.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
    if (map == MAP_FAILED) {
        st = wk_errf(err, err_len, WK_STATUS_IO, "%s: cannot map '%s' (%lld bytes): %s", __func__,
                     path, (long long)sb.st_size, strerror(errno));
        goto fail;
    }
    out->fd = fd;
    out->map = map;
    out->base = map;
    out->size = (size_t)sb.st_size;
    st = parse_into(__func__, out->base, out->size, out, err, err_len);
    if (st != WK_STATUS_OK) gguf_file_close(out);
    return st;

fail:
    close(fd);
    return st;
}

void gguf_file_close(struct gguf_file *f) {
    if (!f) return;
    if (f->kv) {
        for (uint64_t i = 0; i < f->n_kv; i++) free_value(&f->kv[i].value);
    }
    free(f->kv);
    free(f->tensors);
    /* Only a struct that gguf_file_open filled owns a mapping and an fd; a
     * zeroed struct has fd 0, which is not ours to close. */
    if (f->map) {
        munmap(f->map, f->size);
        if (f->fd >= 0) close(f->fd);
    }
    memset(f, 0, sizeof *f);
    f->fd = -1;
}

// ---------------------------------------------------------------------------
// lookups

bool gguf_str_eq(struct gguf_str s, const char *c) {
    if (!c) return false;
    size_t n = strlen(c);
    return s.len == n && (n == 0 || memcmp(s.ptr, c, n) == 0);
}

const struct gguf_kv *gguf_find_kv(const struct gguf_file *f, const char *key) {
    if (!f || !key || !f->kv) return NULL;
    for (uint64_t i = 0; i < f->n_kv; i++) {
        if (gguf_str_eq(f->kv[i].key, key)) return &f->kv[i];
    }
    return NULL;
}

const struct gguf_tensor_info *gguf_find_tensor(const struct gguf_file *f, const char *name) {
    if (!f || !name || !f->tensors) return NULL;
    for (uint64_t i = 0; i < f->n_tensors; i++) {
        if (gguf_str_eq(f->tensors[i].name, name)) return &f->tensors[i];
    }
    return NULL;
}

static bool is_unsigned(enum gguf_type t) {
    return t == GGUF_TYPE_UINT8 || t == GGUF_TYPE_UINT16 || t == GGUF_TYPE_UINT32 ||
           t == GGUF_TYPE_UINT64;
}

static bool is_signed(enum gguf_type t) {
    return t == GGUF_TYPE_INT8 || t == GGUF_TYPE_INT16 || t == GGUF_TYPE_INT32 ||
           t == GGUF_TYPE_INT64;
}

static bool is_float(enum gguf_type t) { return t == GGUF_TYPE_FLOAT32 || t == GGUF_TYPE_FLOAT64; }

/* Integer (or bool) scalar value as int64; false for other types or a u64
 * above INT64_MAX. */
static bool value_i64(const struct gguf_value *v, int64_t *out) {
    if (is_unsigned(v->type)) {
        if (v->v.u64 > (uint64_t)INT64_MAX) return false;
        *out = (int64_t)v->v.u64;
        return true;
    }
    if (is_signed(v->type)) {
        *out = v->v.i64;
        return true;
    }
    if (v->type == GGUF_TYPE_BOOL) {
        *out = v->v.b ? 1 : 0;
        return true;
    }
    return false;
}

bool gguf_get_i64(const struct gguf_file *f, const char *key, int64_t *out) {
    const struct gguf_kv *kv = gguf_find_kv(f, key);
    int64_t x;
    if (!kv || !out || !value_i64(&kv->value, &x)) return false;
    *out = x;
    return true;
}

bool gguf_get_u32(const struct gguf_file *f, const char *key, uint32_t *out) {
    const struct gguf_kv *kv = gguf_find_kv(f, key);
    if (!kv || !out) return false;
    if (is_unsigned(kv->value.type)) {
        if (kv->value.v.u64 > UINT32_MAX) return false;
        *out = (uint32_t)kv->value.v.u64;
        return true;
    }
    int64_t x;
    if (!value_i64(&kv->value, &x) || x < 0 || x > (int64_t)UINT32_MAX) return false;
    *out = (uint32_t)x;
    return true;
}

bool gguf_get_f32(const struct gguf_file *f, const char *key, float *out) {
    const struct gguf_kv *kv = gguf_find_kv(f, key);
    if (!kv || !out) return false;
    double d;
    if (is_float(kv->value.type)) {
        d = kv->value.v.f64;
        if (isfinite(d) && fabs(d) > FLT_MAX) return false; /* finite double, no float */
    } else if (is_unsigned(kv->value.type)) {
        d = (double)kv->value.v.u64;
    } else if (is_signed(kv->value.type)) {
        d = (double)kv->value.v.i64;
    } else {
        return false;
    }
    *out = (float)d;
    return true;
}

bool gguf_get_bool(const struct gguf_file *f, const char *key, bool *out) {
    const struct gguf_kv *kv = gguf_find_kv(f, key);
    if (!kv || !out || kv->value.type != GGUF_TYPE_BOOL) return false;
    *out = kv->value.v.b;
    return true;
}

bool gguf_get_str(const struct gguf_file *f, const char *key, struct gguf_str *out) {
    const struct gguf_kv *kv = gguf_find_kv(f, key);
    if (!kv || !out || kv->value.type != GGUF_TYPE_STRING) return false;
    *out = kv->value.v.str;
    return true;
}

bool gguf_get_arr(const struct gguf_file *f, const char *key, const struct gguf_value **out) {
    const struct gguf_kv *kv = gguf_find_kv(f, key);
    if (!kv || !out || kv->value.type != GGUF_TYPE_ARRAY) return false;
    *out = &kv->value;
    return true;
}

/* Element i of a scalar array, decoded into a widened value. */
static bool arr_elem(const struct gguf_value *arr, uint64_t i, struct gguf_value *e) {
    if (!arr || arr->type != GGUF_TYPE_ARRAY || i >= arr->v.arr.n) return false;
    size_t esz = scalar_size(arr->v.arr.type);
    if (!esz || !arr->v.arr.data) return false;
    memset(e, 0, sizeof *e);
    e->type = arr->v.arr.type;
    decode_scalar(e->type, arr->v.arr.data + i * esz, e);
    return true;
}

bool gguf_arr_f64(const struct gguf_value *arr, uint64_t i, double *out) {
    struct gguf_value e;
    if (!out || !arr_elem(arr, i, &e)) return false;
    if (is_float(e.type)) *out = e.v.f64;
    else if (is_unsigned(e.type)) *out = (double)e.v.u64;
    else if (is_signed(e.type)) *out = (double)e.v.i64;
    else *out = e.v.b ? 1.0 : 0.0;
    return true;
}

bool gguf_arr_i64(const struct gguf_value *arr, uint64_t i, int64_t *out) {
    struct gguf_value e;
    if (!out || !arr_elem(arr, i, &e)) return false;
    if (is_float(e.type)) {
        /* only integral values in range: 2^63 is the first double too large */
        double d = e.v.f64;
        if (!(d >= -9223372036854775808.0 && d < 9223372036854775808.0) || d != trunc(d))
            return false;
        *out = (int64_t)d;
        return true;
    }
    return value_i64(&e, out);
}

bool gguf_arr_str(const struct gguf_value *arr, uint64_t i, struct gguf_str *out) {
    if (!arr || !out || arr->type != GGUF_TYPE_ARRAY || arr->v.arr.type != GGUF_TYPE_STRING ||
        i >= arr->v.arr.n || !arr->v.arr.strs)
        return false;
    *out = arr->v.arr.strs[i];
    return true;
}
