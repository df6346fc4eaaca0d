/* orcd-synth — write a qwen2 GGUF v3 file with random weights.
 *
 * Default dimensions are Qwen2.5-0.5B's (24 layers, n_embd 896, n_ff 4864,
 * 14 heads / 2 KV heads of 64, context 32768, rope base 1e6, rms eps 1e-6,
 * 151936 tokens) with the real Qwen2.5 vocabulary copied from --vocab, so the
 * worker can be benchmarked at full size without downloading the model.
 *
 *   orcd-synth --vocab ../shared/models/qwen2.5-vocab.gguf --type q4_k_m -o q.gguf
 *
 * Metadata keys and tensor names are the ones llama.cpp's converter writes
 * for Qwen2.5 (the key set of tiny-qwen2-f32.gguf). Tensors, in file order:
 *   token_embd.weight {n_embd, n_vocab}
 *   blk.N.attn_norm.weight, attn_q.weight + .bias, attn_k.weight + .bias,
 *         attn_v.weight + .bias, attn_output.weight, ffn_norm.weight,
 *         ffn_gate.weight, ffn_up.weight, ffn_down.weight
 *   output_norm.weight, [output.weight with --output-weight]
 *
 * Types (--type): f32 (everything), f16 / q8_0 (every matrix; norms and biases
 * f32), q4_k_m (llama.cpp's Q4_K_M mix: llama_tensor_get_type in
 * llama-quant.cpp):
 *   output.weight, or token_embd when tied: Q6_K, or Q8_0 when n_embd % 256
 *   attn_v, ffn_down: Q6_K in "use_more_bits" layers
 *       (i < n/8 || i >= 7n/8 || (i - n/8) % 3 == 2), else Q4_K
 *   other matrices (token_embd when untied included): Q4_K
 *   then a type whose block does not divide the row falls back:
 *   Q4_K -> Q5_0, Q6_K -> Q8_0 (and to F16 if even 32 does not divide)
 * At Qwen2.5-0.5B size with --output-weight this gives the official file's
 * counts (f32 121, q5_0 133, q8_0 13, q4_K 12, q6_K 12); tied, token_embd
 * takes output's Q8_0 and q5_0 is 132.
 *
 * Values: a counter-based generator, value = f(seed, tensor index, element
 * index), so every --type of one seed quantizes the same fp32 numbers
 * (matrices ~N(0, 0.02²), norms ~1 ± 0.02, biases ~N(0, 0.01²)). The
 * quantizers are round-to-nearest (no search): valid blocks, not llama.cpp's
 * best ones. --verify dequantizes every tensor with the loader's
 * wk_dequantize_row, reports the relative RMS error per type, and loads the
 * result with wk_model_load.
 */
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "loader/model.h"
#include "loader/quants.h"
#include "core/status.h"

#define ALIGNMENT 32

// ----------------------------------------------------------------------------
// small helpers

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static uint64_t splitmix64(uint64_t x) {
    x += 0x9E3779B97F4A7C15ull;
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
    x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
    return x ^ (x >> 31);
}

/* Round-to-nearest-even float -> IEEE half. */
static uint16_t f32_to_f16(float f) {
    uint32_t x;
    memcpy(&x, &f, 4);
    uint32_t sign = (x >> 16) & 0x8000u;
    uint32_t ax = x & 0x7fffffffu;
    if (ax >= 0x7f800000u) return (uint16_t)(sign | (ax > 0x7f800000u ? 0x7e00u : 0x7c00u));
    if (ax >= 0x477ff000u) return (uint16_t)(sign | 0x7c00u); /* >= 65520 rounds to inf */
    if (ax < 0x38800000u) { /* below 2^-14: half subnormal, unit 2^-24 */
        float v;
        memcpy(&v, &ax, 4);
        return (uint16_t)(sign | (uint32_t)lrintf(v * 16777216.0f));
    }
    uint32_t h = ((((ax >> 23) - 127 + 15)) << 10) | ((ax & 0x7fffffu) >> 13);
    uint32_t rem = ax & 0x1fffu;
    if (rem > 0x1000u || (rem == 0x1000u && (h & 1u))) h++;
    return (uint16_t)(sign | h);
}

static float f16_to_f32(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    uint32_t e = (h >> 10) & 0x1f, m = h & 0x3ff;
    float out;
    if (e == 0) {
        out = ldexpf((float)m, -24);
        return sign ? -out : out;
    }
    uint32_t x = sign | (e == 31 ? (0xffu << 23) | (m << 13) : ((e - 15 + 127) << 23) | (m << 13));
    memcpy(&out, &x, 4);
    return out;
}

/* fp32 -> fp16 -> fp32: the value a reader will see for a stored scale. */
static float f16_round(float f) { return f16_to_f32(f32_to_f16(f)); }

static void put_f16(uint8_t *p, float f) {
    uint16_t h = f32_to_f16(f);
    p[0] = (uint8_t)h;
    p[1] = (uint8_t)(h >> 8);
}

// ----------------------------------------------------------------------------
// quantizers: one block of fp32 -> ggml block bytes (layouts in loader/quants.h)

static const struct { uint32_t type; const char *name; int blck; size_t size; } k_types[] = {
    {GGML_TYPE_F32, "f32", 1, 4},     {GGML_TYPE_F16, "f16", 1, 2},
    {GGML_TYPE_Q5_0, "q5_0", 32, 22}, {GGML_TYPE_Q8_0, "q8_0", 32, 34},
    {GGML_TYPE_Q4_K, "q4_K", 256, 144}, {GGML_TYPE_Q6_K, "q6_K", 256, 210},
};
#define N_TYPES (sizeof k_types / sizeof k_types[0])

static int type_slot(uint32_t type) {
    for (size_t i = 0; i < N_TYPES; i++)
        if (k_types[i].type == type) return (int)i;
    WK_ASSERT(!"type not handled by orcd-synth");
    return -1;
}

static size_t row_size(uint32_t type, int64_t n) {
    int s = type_slot(type);
    return (size_t)(n / k_types[s].blck) * k_types[s].size;
}

/* Q8_0: d = amax/127, q = round(x/d). 34 bytes. */
static void quant_q8_0(const float *x, uint8_t *b) {
    float amax = 0;
    for (int i = 0; i < 32; i++) amax = fmaxf(amax, fabsf(x[i]));
    float d = f16_round(amax / 127.0f), id = d > 0 ? 1.0f / d : 0;
    put_f16(b, d);
    for (int i = 0; i < 32; i++) {
        long q = lrintf(x[i] * id);
        b[2 + i] = (uint8_t)(int8_t)(q > 127 ? 127 : q < -127 ? -127 : q);
    }
}

/* Q5_0 (ggml's rule): d = (signed value of largest magnitude) / -16,
 * q = clamp(round(x/d) + 16, 0, 31), x = d*(q-16). 22 bytes: d, qh[4], qs[16]. */
static void quant_q5_0(const float *x, uint8_t *b) {
    float amax = 0, max = 0;
    for (int i = 0; i < 32; i++)
        if (fabsf(x[i]) > amax) { amax = fabsf(x[i]); max = x[i]; }
    float d = f16_round(max / -16.0f), id = d != 0 ? 1.0f / d : 0;
    put_f16(b, d);
    uint32_t qh = 0;
    uint8_t *qs = b + 6;
    for (int j = 0; j < 16; j++) {
        int q0 = (int)floorf(x[j] * id + 16.5f), q1 = (int)floorf(x[j + 16] * id + 16.5f);
        q0 = q0 < 0 ? 0 : q0 > 31 ? 31 : q0;
        q1 = q1 < 0 ? 0 : q1 > 31 ? 31 : q1;
        qs[j] = (uint8_t)((q0 & 0xf) | ((q1 & 0xf) << 4));
        qh |= (uint32_t)((q0 >> 4) & 1) << j;
        qh |= (uint32_t)((q1 >> 4) & 1) << (j + 16);
    }
    b[2] = (uint8_t)qh; b[3] = (uint8_t)(qh >> 8); b[4] = (uint8_t)(qh >> 16); b[5] = (uint8_t)(qh >> 24);
}

/* Q4_K: 8 sub-blocks of 32, x = d*sc*q - dmin*m with 6-bit sc, m and q 0..15.
 * 144 bytes: d, dmin, scales[12], qs[128]. Sub-block scale = range/15 and
 * min = -min(0, min x), both then quantized against the block's largest. */
static void quant_q4_K(const float *x, uint8_t *b) {
    float scale[8], mins[8], max_scale = 0, max_min = 0;
    for (int j = 0; j < 8; j++) {
        float mn = x[32 * j], mx = x[32 * j];
        for (int i = 1; i < 32; i++) {
            mn = fminf(mn, x[32 * j + i]);
            mx = fmaxf(mx, x[32 * j + i]);
        }
        if (mn > 0) mn = 0;
        scale[j] = (mx - mn) / 15.0f;
        mins[j] = -mn;
        max_scale = fmaxf(max_scale, scale[j]);
        max_min = fmaxf(max_min, mins[j]);
    }
    float d = f16_round(max_scale / 63.0f), dmin = f16_round(max_min / 63.0f);
    put_f16(b, d);
    put_f16(b + 2, dmin);
    uint8_t sc[8], m[8];
    for (int j = 0; j < 8; j++) {
        long ls = d > 0 ? lrintf(scale[j] / d) : 0, lm = dmin > 0 ? lrintf(mins[j] / dmin) : 0;
        sc[j] = (uint8_t)(ls > 63 ? 63 : ls);
        m[j] = (uint8_t)(lm > 63 ? 63 : lm);
    }
    /* 12 scale bytes (ggml get_scale_min_k4): j < 4 in the low 6 bits of
     * bytes j (scale) and j+4 (min); j >= 4 split over byte j+4's nibbles and
     * the top 2 bits of bytes j-4 (scale) and j (min). */
    uint8_t *s = b + 4;
    memset(s, 0, 12);
    for (int j = 0; j < 8; j++) {
        if (j < 4) {
            s[j] |= sc[j];
            s[j + 4] |= m[j];
        } else {
            s[j + 4] = (uint8_t)((sc[j] & 0xf) | ((m[j] & 0xf) << 4));
            s[j - 4] |= (uint8_t)((sc[j] >> 4) << 6);
            s[j] |= (uint8_t)((m[j] >> 4) << 6);
        }
    }
    uint8_t q[256];
    for (int j = 0; j < 8; j++) {
        float ed = d * sc[j], em = dmin * m[j], ie = ed > 0 ? 1.0f / ed : 0;
        for (int i = 0; i < 32; i++) {
            long v = lrintf((x[32 * j + i] + em) * ie);
            q[32 * j + i] = (uint8_t)(v < 0 ? 0 : v > 15 ? 15 : v);
        }
    }
    /* qs: per 64 elements, 32 bytes: low nibble = elem l, high = elem l+32 */
    uint8_t *qs = b + 16;
    for (int c = 0; c < 4; c++)
        for (int l = 0; l < 32; l++)
            qs[32 * c + l] = (uint8_t)(q[64 * c + l] | (q[64 * c + l + 32] << 4));
}

/* Q6_K: 16 sub-blocks of 16, x = d*sc*(q-32), int8 sc, q 0..63.
 * 210 bytes: ql[128], qh[64], scales[16], d. */
static void quant_q6_K(const float *x, uint8_t *b) {
    float s[16], max_s = 0;
    for (int j = 0; j < 16; j++) {
        float amax = 0;
        for (int i = 0; i < 16; i++) amax = fmaxf(amax, fabsf(x[16 * j + i]));
        s[j] = amax / 31.0f;
        max_s = fmaxf(max_s, s[j]);
    }
    float d = f16_round(max_s / 127.0f);
    uint8_t *ql = b, *qh = b + 128;
    int8_t *scales = (int8_t *)(b + 192);
    put_f16(b + 208, d);
    uint8_t q[256];
    for (int j = 0; j < 16; j++) {
        long ls = d > 0 ? lrintf(s[j] / d) : 0;
        scales[j] = (int8_t)(ls > 127 ? 127 : ls);
        float e = d * scales[j], ie = e > 0 ? 1.0f / e : 0;
        for (int i = 0; i < 16; i++) {
            long v = lrintf(x[16 * j + i] * ie);
            v = v < -32 ? -32 : v > 31 ? 31 : v;
            q[16 * j + i] = (uint8_t)(v + 32);
        }
    }
    /* per 128 elements: ql 64 bytes (elem l | elem l+64 << 4, and l+32 | l+96),
     * qh 32 bytes (the top 2 bits of l, l+32, l+64, l+96) */
    for (int h = 0; h < 2; h++) {
        const uint8_t *L = q + 128 * h;
        uint8_t *pl = ql + 64 * h, *ph = qh + 32 * h;
        for (int l = 0; l < 32; l++) {
            pl[l] = (uint8_t)((L[l] & 0xf) | ((L[l + 64] & 0xf) << 4));
            pl[l + 32] = (uint8_t)((L[l + 32] & 0xf) | ((L[l + 96] & 0xf) << 4));
            ph[l] = (uint8_t)((L[l] >> 4) | ((L[l + 32] >> 4) << 2) | ((L[l + 64] >> 4) << 4) |
                              ((L[l + 96] >> 4) << 6));
        }
    }
}

static void quantize_row(uint32_t type, const float *x, uint8_t *dst, int64_t n) {
    switch (type) {
    case GGML_TYPE_F32: memcpy(dst, x, (size_t)n * 4); break;
    case GGML_TYPE_F16:
        for (int64_t i = 0; i < n; i++) put_f16(dst + 2 * i, x[i]);
        break;
    case GGML_TYPE_Q8_0:
        for (int64_t i = 0; i < n; i += 32) quant_q8_0(x + i, dst + (i / 32) * 34);
        break;
    case GGML_TYPE_Q5_0:
        for (int64_t i = 0; i < n; i += 32) quant_q5_0(x + i, dst + (i / 32) * 22);
        break;
    case GGML_TYPE_Q4_K:
        for (int64_t i = 0; i < n; i += 256) quant_q4_K(x + i, dst + (i / 256) * 144);
        break;
    case GGML_TYPE_Q6_K:
        for (int64_t i = 0; i < n; i += 256) quant_q6_K(x + i, dst + (i / 256) * 210);
        break;
    default: WK_ASSERT(!"unhandled type");
    }
}

// ----------------------------------------------------------------------------
// the tensor plan

enum kind { KIND_MATRIX, KIND_NORM, KIND_BIAS };

struct tensor {
    char name[64];
    int n_dims;
    int64_t ne[2];  /* ne[0] = row length, ne[1] = rows (1 for vectors) */
    uint32_t type;
    enum kind kind;
    uint64_t key;   /* generator key of this tensor */
    uint64_t offset; /* in the data section */
    uint64_t nbytes;
};

struct cfg {
    int n_layer, n_embd, n_ff, n_head, n_head_kv, n_vocab, n_ctx;
    const char *type; /* f32 | f16 | q8_0 | q4_k_m */
    uint64_t seed;
    bool output_weight;
};

/* Normal-ish value: the sum of four 16-bit uniforms (Irwin-Hall, ±3.46σ). */
static void gen_row(const struct tensor *t, int64_t row, float *x) {
    const float k = 1.7320508f / 32768.0f; /* sqrt(3): unit variance */
    float std = t->kind == KIND_MATRIX ? 0.02f : t->kind == KIND_NORM ? 0.02f : 0.01f;
    float mean = t->kind == KIND_NORM ? 1.0f : 0.0f;
    uint64_t base = t->key + (uint64_t)row * (uint64_t)t->ne[0];
    for (int64_t i = 0; i < t->ne[0]; i++) {
        uint64_t h = splitmix64(base + (uint64_t)i);
        int32_t s = (int32_t)(h & 0xffff) + (int32_t)((h >> 16) & 0xffff) +
                    (int32_t)((h >> 32) & 0xffff) + (int32_t)(h >> 48) - 131070;
        x[i] = mean + std * k * (float)s;
    }
}

static bool use_more_bits(int i, int n) { return i < n / 8 || i >= 7 * n / 8 || (i - n / 8) % 3 == 2; }

/* llama.cpp's fallback for rows a type's block does not divide. */
static uint32_t fit_type(uint32_t type, int64_t nx) {
    if (nx % k_types[type_slot(type)].blck == 0) return type;
    if (type == GGML_TYPE_Q4_K) type = GGML_TYPE_Q5_0;
    else if (type == GGML_TYPE_Q6_K) type = GGML_TYPE_Q8_0;
    return nx % k_types[type_slot(type)].blck == 0 ? type : GGML_TYPE_F16;
}

/* Type of a matrix. layer = -1 for token_embd / output. */
static uint32_t matrix_type(const struct cfg *c, const char *what, int layer, int64_t nx) {
    if (!strcmp(c->type, "f32")) return GGML_TYPE_F32;
    if (!strcmp(c->type, "f16")) return GGML_TYPE_F16;
    if (!strcmp(c->type, "q8_0")) return fit_type(GGML_TYPE_Q8_0, nx);
    /* q4_k_m */
    uint32_t t = GGML_TYPE_Q4_K;
    bool is_output = !strcmp(what, "output") || (!strcmp(what, "token_embd") && !c->output_weight);
    if (is_output) t = nx % 256 ? GGML_TYPE_Q8_0 : GGML_TYPE_Q6_K;
    else if ((!strcmp(what, "attn_v") || !strcmp(what, "ffn_down")) && use_more_bits(layer, c->n_layer))
        t = GGML_TYPE_Q6_K;
    return fit_type(t, nx);
}

static void add_tensor(struct tensor *ts, int *n, const struct cfg *c, const char *name,
                       enum kind kind, int64_t ne0, int64_t ne1, uint32_t type) {
    struct tensor *t = &ts[*n];
    memset(t, 0, sizeof *t);
    snprintf(t->name, sizeof t->name, "%s", name);
    t->n_dims = ne1 > 1 || kind == KIND_MATRIX ? 2 : 1;
    t->ne[0] = ne0;
    t->ne[1] = ne1;
    t->type = type;
    t->kind = kind;
    /* element keys never overlap between tensors (< 2^40 elements each) */
    t->key = splitmix64(c->seed) + ((uint64_t)(*n + 1) << 40);
    t->nbytes = row_size(type, ne0) * (uint64_t)ne1;
    (*n)++;
}

static int build_plan(const struct cfg *c, struct tensor *ts) {
    int n = 0, hd = c->n_embd / c->n_head;
    int64_t nq = (int64_t)c->n_head * hd, nkv = (int64_t)c->n_head_kv * hd;
    char name[64];
    add_tensor(ts, &n, c, "token_embd.weight", KIND_MATRIX, c->n_embd, c->n_vocab,
               matrix_type(c, "token_embd", -1, c->n_embd));
    for (int l = 0; l < c->n_layer; l++) {
#define T(suffix, kind, ne0, ne1, what)                                            \
    snprintf(name, sizeof name, "blk.%d.%s", l, suffix);                           \
    add_tensor(ts, &n, c, name, kind, ne0, ne1,                                    \
               kind == KIND_MATRIX ? matrix_type(c, what, l, ne0) : GGML_TYPE_F32)
        T("attn_norm.weight", KIND_NORM, c->n_embd, 1, "");
        T("attn_q.weight", KIND_MATRIX, c->n_embd, nq, "attn_q");
        T("attn_q.bias", KIND_BIAS, nq, 1, "");
        T("attn_k.weight", KIND_MATRIX, c->n_embd, nkv, "attn_k");
        T("attn_k.bias", KIND_BIAS, nkv, 1, "");
        T("attn_v.weight", KIND_MATRIX, c->n_embd, nkv, "attn_v");
        T("attn_v.bias", KIND_BIAS, nkv, 1, "");
        T("attn_output.weight", KIND_MATRIX, nq, c->n_embd, "attn_output");
        T("ffn_norm.weight", KIND_NORM, c->n_embd, 1, "");
        T("ffn_gate.weight", KIND_MATRIX, c->n_embd, c->n_ff, "ffn_gate");
        T("ffn_up.weight", KIND_MATRIX, c->n_embd, c->n_ff, "ffn_up");
        T("ffn_down.weight", KIND_MATRIX, c->n_ff, c->n_embd, "ffn_down");
#undef T
    }
    add_tensor(ts, &n, c, "output_norm.weight", KIND_NORM, c->n_embd, 1, GGML_TYPE_F32);
    if (c->output_weight)
        add_tensor(ts, &n, c, "output.weight", KIND_MATRIX, c->n_embd, c->n_vocab,
                   matrix_type(c, "output", -1, c->n_embd));
    uint64_t off = 0;
    for (int i = 0; i < n; i++) {
        ts[i].offset = off;
        off += (ts[i].nbytes + ALIGNMENT - 1) / ALIGNMENT * ALIGNMENT;
    }
    return n;
}

// ----------------------------------------------------------------------------
// a growable byte buffer for the header

struct buf {
    uint8_t *p;
    size_t n, cap;
    bool oom;
};

static void buf_put(struct buf *b, const void *src, size_t n) {
    if (b->oom) return;
    if (b->n + n > b->cap) {
        size_t cap = b->cap ? b->cap : 1 << 16;
        while (cap < b->n + n) cap *= 2;
        uint8_t *p = realloc(b->p, cap);
        if (!p) { b->oom = true; return; }
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->n, src, n);
    b->n += n;
}
static void buf_u32(struct buf *b, uint32_t v) { buf_put(b, &v, 4); } /* little-endian host */
static void buf_u64(struct buf *b, uint64_t v) { buf_put(b, &v, 8); }
static void buf_str(struct buf *b, const char *s, size_t n) { buf_u64(b, n); buf_put(b, s, n); }
static void kv_key(struct buf *b, const char *key, uint32_t type) {
    buf_str(b, key, strlen(key));
    buf_u32(b, type);
}
static void kv_u32(struct buf *b, const char *key, uint32_t v) { kv_key(b, key, GGUF_TYPE_UINT32); buf_u32(b, v); }
static void kv_f32(struct buf *b, const char *key, float v) { kv_key(b, key, GGUF_TYPE_FLOAT32); buf_put(b, &v, 4); }
static void kv_string(struct buf *b, const char *key, const char *v) {
    kv_key(b, key, GGUF_TYPE_STRING);
    buf_str(b, v, strlen(v));
}

// ----------------------------------------------------------------------------
// reading the vocabulary file: a minimal GGUF key/value scanner. We need the
// raw byte span of each key/value to copy it verbatim, which the loader's
// parsed view does not keep.

struct rkv {
    const char *key;
    size_t key_len;
    uint32_t type;
    size_t val;       /* offset of the value */
    size_t start, end; /* byte span of the whole key/value */
};

struct vocab_file {
    uint8_t *data;
    size_t size;
    struct rkv *kv;
    uint64_t n_kv;
};

static const size_t k_scalar_size[] = {1, 1, 2, 2, 4, 4, 4, 1, 0, 0, 8, 8, 8};

/* Advance *pos over one value of `type`; false when it runs off the end. */
static bool skip_value(const uint8_t *d, size_t size, size_t *pos, uint32_t type, int depth) {
    if (type >= GGUF_TYPE__COUNT || depth > 4) return false;
    if (type == GGUF_TYPE_STRING) {
        uint64_t n;
        if (size - *pos < 8) return false;
        memcpy(&n, d + *pos, 8);
        if (n > size - *pos - 8) return false;
        *pos += 8 + n;
        return true;
    }
    if (type == GGUF_TYPE_ARRAY) {
        uint32_t et;
        uint64_t n;
        if (size - *pos < 12) return false;
        memcpy(&et, d + *pos, 4);
        memcpy(&n, d + *pos + 4, 8);
        *pos += 12;
        if (et >= GGUF_TYPE__COUNT) return false;
        if (et != GGUF_TYPE_STRING && et != GGUF_TYPE_ARRAY) {
            if (n > (size - *pos) / k_scalar_size[et]) return false;
            *pos += n * k_scalar_size[et];
            return true;
        }
        for (uint64_t i = 0; i < n; i++)
            if (!skip_value(d, size, pos, et, depth + 1)) return false;
        return true;
    }
    if (size - *pos < k_scalar_size[type]) return false;
    *pos += k_scalar_size[type];
    return true;
}

static void vocab_file_free(struct vocab_file *v) {
    free(v->data);
    free(v->kv);
    memset(v, 0, sizeof *v);
}

static wk_status vocab_file_read(const char *path, struct vocab_file *v, char *err, size_t n_err) {
    memset(v, 0, sizeof *v);
    wk_status s = WK_STATUS_BAD_GGUF;
    FILE *f = fopen(path, "rb");
    if (!f) return wk_errf(err, n_err, WK_STATUS_NOT_FOUND, "%s: %s: %s", __func__, path, strerror(errno));
    if (fseek(f, 0, SEEK_END) != 0) goto io;
    long sz = ftell(f);
    if (sz < 24 || fseek(f, 0, SEEK_SET) != 0) goto io;
    v->size = (size_t)sz;
    v->data = malloc(v->size);
    if (!v->data) { s = wk_errf(err, n_err, WK_STATUS_OOM_HOST, "%s: %zu bytes", __func__, v->size); goto fail; }
    if (fread(v->data, 1, v->size, f) != v->size) goto io;
    fclose(f);
    f = NULL;
    uint32_t magic, version;
    memcpy(&magic, v->data, 4);
    memcpy(&version, v->data + 4, 4);
    memcpy(&v->n_kv, v->data + 16, 8);
    if (magic != GGUF_MAGIC || version < 2 || version > 3) {
        s = wk_errf(err, n_err, WK_STATUS_BAD_GGUF, "%s: %s: not a GGUF v2/v3 file", __func__, path);
        goto fail;
    }
    if (v->n_kv > v->size / 12) {
        s = wk_errf(err, n_err, WK_STATUS_BAD_GGUF, "%s: %s: n_kv %" PRIu64 " too large", __func__, path, v->n_kv);
        goto fail;
    }
    v->kv = calloc(v->n_kv ? v->n_kv : 1, sizeof *v->kv);
    if (!v->kv) { s = wk_errf(err, n_err, WK_STATUS_OOM_HOST, "%s: kv table", __func__); goto fail; }
    size_t pos = 24;
    for (uint64_t i = 0; i < v->n_kv; i++) {
        struct rkv *r = &v->kv[i];
        r->start = pos;
        uint64_t kl;
        if (v->size - pos < 8) goto bad;
        memcpy(&kl, v->data + pos, 8);
        if (kl > v->size - pos - 8 || v->size - pos - 8 - kl < 4) goto bad;
        r->key = (const char *)v->data + pos + 8;
        r->key_len = (size_t)kl;
        pos += 8 + kl;
        memcpy(&r->type, v->data + pos, 4);
        pos += 4;
        r->val = pos;
        if (!skip_value(v->data, v->size, &pos, r->type, 0)) goto bad;
        r->end = pos;
    }
    return WK_STATUS_OK;
bad:
    s = wk_errf(err, n_err, WK_STATUS_BAD_GGUF, "%s: %s: truncated or malformed key/value", __func__, path);
    goto fail;
io:
    s = wk_errf(err, n_err, WK_STATUS_IO, "%s: %s: read failed", __func__, path);
fail:
    if (f) fclose(f);
    vocab_file_free(v);
    return s;
}

static const struct rkv *vocab_find(const struct vocab_file *v, const char *key) {
    size_t n = strlen(key);
    for (uint64_t i = 0; i < v->n_kv; i++)
        if (v->kv[i].key_len == n && !memcmp(v->kv[i].key, key, n)) return &v->kv[i];
    return NULL;
}

/* An array value's element type and count; *pos left at the first element. */
static bool arr_header(const struct vocab_file *v, const struct rkv *r, uint32_t *et, uint64_t *n,
                       size_t *pos) {
    if (!r || r->type != GGUF_TYPE_ARRAY) return false;
    memcpy(et, v->data + r->val, 4);
    memcpy(n, v->data + r->val + 4, 8);
    *pos = r->val + 12;
    return true;
}

// ----------------------------------------------------------------------------
// cutting the vocabulary (--vocab-size smaller than the file's): keep the
// first K normal tokens, then every control / user-defined token (so
// <|im_start|>, <|im_end|> and <|endoftext|> survive), drop the unused [PAD]
// tokens; keep a merge only when its two parts and their concatenation
// survive. Ids named by tokenizer.ggml.*_token_id are remapped.

struct strset {
    const char **p;
    uint32_t *len;
    size_t cap;
};

static uint64_t fnv1a(const char *s, size_t n) {
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < n; i++) h = (h ^ (uint8_t)s[i]) * 1099511628211ull;
    return h;
}

static bool strset_init(struct strset *s, size_t n) {
    s->cap = 16;
    while (s->cap < 2 * n) s->cap *= 2;
    s->p = calloc(s->cap, sizeof *s->p);
    s->len = calloc(s->cap, sizeof *s->len);
    return s->p && s->len;
}
static void strset_free(struct strset *s) { free(s->p); free(s->len); }
static void strset_add(struct strset *s, const char *p, size_t n) {
    size_t i = fnv1a(p, n) & (s->cap - 1);
    while (s->p[i]) {
        if (s->len[i] == n && !memcmp(s->p[i], p, n)) return;
        i = (i + 1) & (s->cap - 1);
    }
    s->p[i] = p;
    s->len[i] = (uint32_t)n;
}
static bool strset_has(const struct strset *s, const char *p, size_t n) {
    size_t i = fnv1a(p, n) & (s->cap - 1);
    while (s->p[i]) {
        if (s->len[i] == n && !memcmp(s->p[i], p, n)) return true;
        i = (i + 1) & (s->cap - 1);
    }
    return false;
}

/* Writes the cut tokens, token_type and merges arrays into b and fills
 * old2new (n_full entries, -1 = dropped). */
static wk_status write_cut_vocab(const struct vocab_file *v, int n_cut, struct buf *b, int64_t **old2new_out,
                                 char *err, size_t n_err) {
    wk_status s = WK_STATUS_OK;
    const struct rkv *rt = vocab_find(v, "tokenizer.ggml.tokens");
    const struct rkv *rty = vocab_find(v, "tokenizer.ggml.token_type");
    const struct rkv *rm = vocab_find(v, "tokenizer.ggml.merges");
    uint32_t et, ety;
    uint64_t n, nty;
    size_t pos, posty;
    const char **tok = NULL;
    uint64_t *tok_len = NULL;
    int32_t *type = NULL;
    int64_t *old2new = NULL, *keep = NULL;
    struct strset set = {0};
    if (!arr_header(v, rt, &et, &n, &pos) || et != GGUF_TYPE_STRING || !arr_header(v, rty, &ety, &nty, &posty) ||
        ety != GGUF_TYPE_INT32 || nty != n)
        return wk_errf(err, n_err, WK_STATUS_BAD_GGUF, "%s: tokenizer.ggml.tokens / token_type missing or malformed",
                       __func__);
    tok = calloc(n, sizeof *tok);
    tok_len = calloc(n, sizeof *tok_len);
    type = calloc(n, sizeof *type);
    old2new = malloc(n * sizeof *old2new);
    keep = malloc(n * sizeof *keep);
    if (!tok || !tok_len || !type || !old2new || !keep || !strset_init(&set, (size_t)n_cut)) {
        s = wk_errf(err, n_err, WK_STATUS_OOM_HOST, "%s: vocabulary tables", __func__);
        goto done;
    }
    uint64_t n_normal = 0, n_special = 0;
    for (uint64_t i = 0; i < n; i++) {
        memcpy(&tok_len[i], v->data + pos, 8);
        tok[i] = (const char *)v->data + pos + 8;
        pos += 8 + tok_len[i];
        memcpy(&type[i], v->data + posty + 4 * i, 4);
        old2new[i] = -1;
        n_normal += type[i] == 1;
        n_special += type[i] == 3 || type[i] == 4;
    }
    if ((uint64_t)n_cut < n_special + 256 || (uint64_t)n_cut > n_normal + n_special) {
        s = wk_errf(err, n_err, WK_STATUS_INVALID_ARGUMENT,
                    "%s: --vocab-size %d: must be in %" PRIu64 "..%" PRIu64 " (256 + %" PRIu64
                    " special tokens .. normal + special), or the full %" PRIu64,
                    __func__, n_cut, n_special + 256, n_normal + n_special, n_special, n);
        goto done;
    }
    int64_t k = 0, want_normal = n_cut - (int64_t)n_special;
    for (uint64_t i = 0; i < n && k < want_normal; i++)
        if (type[i] == 1) keep[k++] = (int64_t)i;
    for (uint64_t i = 0; i < n; i++)
        if (type[i] == 3 || type[i] == 4) keep[k++] = (int64_t)i;
    WK_ASSERT(k == n_cut);
    for (int64_t j = 0; j < k; j++) {
        old2new[keep[j]] = j;
        strset_add(&set, tok[keep[j]], tok_len[keep[j]]);
    }
    kv_key(b, "tokenizer.ggml.tokens", GGUF_TYPE_ARRAY);
    buf_u32(b, GGUF_TYPE_STRING);
    buf_u64(b, (uint64_t)k);
    for (int64_t j = 0; j < k; j++) buf_str(b, tok[keep[j]], tok_len[keep[j]]);
    kv_key(b, "tokenizer.ggml.token_type", GGUF_TYPE_ARRAY);
    buf_u32(b, GGUF_TYPE_INT32);
    buf_u64(b, (uint64_t)k);
    for (int64_t j = 0; j < k; j++) buf_put(b, &type[keep[j]], 4);
    uint32_t etm;
    uint64_t nm = 0, kept = 0;
    size_t posm;
    if (arr_header(v, rm, &etm, &nm, &posm) && etm == GGUF_TYPE_STRING) {
        struct buf mb = {0};
        for (uint64_t i = 0; i < nm; i++) {
            uint64_t len;
            memcpy(&len, v->data + posm, 8);
            const char *m = (const char *)v->data + posm + 8;
            posm += 8 + len;
            const char *sp = memchr(m, ' ', len);
            if (!sp) continue;
            size_t la = (size_t)(sp - m), lb = len - la - 1;
            char cat[512];
            if (la + lb > sizeof cat) continue;
            memcpy(cat, m, la);
            memcpy(cat + la, sp + 1, lb);
            if (strset_has(&set, m, la) && strset_has(&set, sp + 1, lb) && strset_has(&set, cat, la + lb)) {
                buf_str(&mb, m, len);
                kept++;
            }
        }
        kv_key(b, "tokenizer.ggml.merges", GGUF_TYPE_ARRAY);
        buf_u32(b, GGUF_TYPE_STRING);
        buf_u64(b, kept);
        if (mb.oom) b->oom = true;
        else if (mb.n) buf_put(b, mb.p, mb.n);
        free(mb.p);
    }
    fprintf(stderr, "orcd-synth: vocabulary cut to %d tokens (%" PRIu64 " special), %" PRIu64 " of %" PRIu64
            " merges kept\n", n_cut, n_special, kept, nm);
    *old2new_out = old2new;
    old2new = NULL;
done:
    free(tok);
    free(tok_len);
    free(type);
    free(old2new);
    free(keep);
    strset_free(&set);
    return s;
}

/* All tokenizer.* keys of the vocabulary file, cut to n_vocab if smaller.
 * The chat template comes from template_path when the vocabulary lacks one. */
static wk_status write_tokenizer_kvs(const struct vocab_file *v, const struct vocab_file *tmpl, int n_vocab,
                                     struct buf *b, uint64_t *n_kv, char *err, size_t n_err) {
    const struct rkv *rt = vocab_find(v, "tokenizer.ggml.tokens");
    uint32_t et;
    uint64_t n;
    size_t pos;
    if (!arr_header(v, rt, &et, &n, &pos))
        return wk_errf(err, n_err, WK_STATUS_BAD_GGUF, "%s: vocabulary has no tokenizer.ggml.tokens", __func__);
    if ((uint64_t)n_vocab > n)
        return wk_errf(err, n_err, WK_STATUS_INVALID_ARGUMENT, "%s: --vocab-size %d > %" PRIu64 " tokens in the file",
                       __func__, n_vocab, n);
    bool cut = (uint64_t)n_vocab < n, have_template = false;
    int64_t *old2new = NULL;
    for (uint64_t i = 0; i < v->n_kv; i++) {
        const struct rkv *r = &v->kv[i];
        if (r->key_len < 10 || memcmp(r->key, "tokenizer.", 10)) continue;
        char key[128];
        snprintf(key, sizeof key, "%.*s", (int)r->key_len, r->key);
        have_template |= !strcmp(key, "tokenizer.chat_template");
        if (cut && !strcmp(key, "tokenizer.ggml.tokens")) {
            wk_status s = write_cut_vocab(v, n_vocab, b, &old2new, err, n_err);
            if (s) return s;
            *n_kv += 2 + (vocab_find(v, "tokenizer.ggml.merges") != NULL);
            continue;
        }
        if (cut && (!strcmp(key, "tokenizer.ggml.token_type") || !strcmp(key, "tokenizer.ggml.merges"))) continue;
        size_t kl = strlen(key);
        if (cut && kl > 9 && !strcmp(key + kl - 9, "_token_id") && r->type == GGUF_TYPE_UINT32) {
            uint32_t id;
            memcpy(&id, v->data + r->val, 4);
            if (!old2new || id >= n || old2new[id] < 0) {
                free(old2new);
                return wk_errf(err, n_err, WK_STATUS_BAD_GGUF, "%s: %s = %u is not kept by the cut (or precedes "
                               "tokenizer.ggml.tokens)", __func__, key, id);
            }
            kv_u32(b, key, (uint32_t)old2new[id]);
        } else {
            buf_put(b, v->data + r->start, r->end - r->start);
        }
        (*n_kv)++;
    }
    free(old2new);
    if (!have_template) {
        const struct rkv *r = tmpl ? vocab_find(tmpl, "tokenizer.chat_template") : NULL;
        if (r) {
            buf_put(b, tmpl->data + r->start, r->end - r->start);
            (*n_kv)++;
        } else {
            fprintf(stderr, "orcd-synth: warning: no tokenizer.chat_template (pass --template-from FILE.gguf)\n");
        }
    }
    return WK_STATUS_OK;
}

// ----------------------------------------------------------------------------
// generation: threads fill one tensor's bytes, row ranges each

struct job {
    const struct tensor *t;
    uint8_t *out;
    int64_t r0, r1;
    bool verify;
    double err2, ref2; /* verify: sums of squared error and squared reference */
    float *x, *y;      /* scratch rows */
};

static void *job_run(void *arg) {
    struct job *j = arg;
    const struct tensor *t = j->t;
    size_t rb = row_size(t->type, t->ne[0]);
    for (int64_t r = j->r0; r < j->r1; r++) {
        gen_row(t, r, j->x);
        uint8_t *dst = j->out + (size_t)r * rb;
        quantize_row(t->type, j->x, dst, t->ne[0]);
        if (j->verify) {
            wk_dequantize_row(t->type, dst, j->y, t->ne[0]);
            for (int64_t i = 0; i < t->ne[0]; i++) {
                double e = (double)j->y[i] - j->x[i];
                j->err2 += e * e;
                j->ref2 += (double)j->x[i] * j->x[i];
            }
        }
    }
    return NULL;
}

// ----------------------------------------------------------------------------

static void usage(FILE *f) {
    fprintf(f,
            "usage: orcd-synth --vocab VOCAB.gguf -o OUT.gguf [options]\n"
            "  --type f16|q8_0|q4_k_m|f32   weight types (default f16)\n"
            "  --seed N                     generator seed (default 1)\n"
            "  --layers N --embd N --ff N --heads N --kv-heads N --ctx N\n"
            "                               (default Qwen2.5-0.5B: 24 896 4864 14 2 32768)\n"
            "  --vocab-size N               cut the vocabulary to N tokens (default: all)\n"
            "  --output-weight              write output.weight (default: tied to token_embd)\n"
            "  --template-from FILE.gguf    chat template source when VOCAB has none\n"
            "                               (default: tiny-qwen2-f32.gguf next to VOCAB)\n"
            "  --threads N                  (default: one per core)\n"
            "  --verify                     dequantize every tensor and compare with the fp32\n"
            "                               source, then load the file with wk_model_load\n");
}

static int verify_load(const char *path, const struct cfg *c, int n_tensors) {
    struct wk_model m;
    char err[512] = "";
    double t0 = now_s();
    wk_status s = wk_model_load(path, &m, err, sizeof err);
    if (s) {
        fprintf(stderr, "orcd-synth: verify: wk_model_load: %s (%s)\n", err, wk_status_name(s));
        return 1;
    }
    int bad = m.hp.n_layer != c->n_layer || m.hp.n_embd != c->n_embd || m.hp.n_ff != c->n_ff ||
              m.hp.n_head != c->n_head || m.hp.n_head_kv != c->n_head_kv || m.hp.n_vocab != c->n_vocab ||
              m.hp.head_dim != c->n_embd / c->n_head || m.hp.n_ctx_train != c->n_ctx ||
              fabsf(m.hp.rope_theta - 1e6f) > 1.0f || fabsf(m.hp.rms_eps - 1e-6f) > 1e-9f ||
              strcmp(m.arch_name, "qwen2") != 0 || m.tied_output == c->output_weight ||
              m.gguf.n_tensors != (uint64_t)n_tensors;
    fprintf(stderr,
            "orcd-synth: verify: wk_model_load ok in %.2fs: %s, %d layers, embd %d, ff %d, heads %d/%d, "
            "vocab %d, ctx %d, tied %d, %" PRIu64 " tensors, %" PRIu64 " params, ftype %s%s\n",
            now_s() - t0, m.name, m.hp.n_layer, m.hp.n_embd, m.hp.n_ff, m.hp.n_head, m.hp.n_head_kv,
            m.hp.n_vocab, m.hp.n_ctx_train, (int)m.tied_output, m.gguf.n_tensors, m.n_params, m.ftype_name,
            bad ? "  MISMATCH" : "");
    wk_model_free(&m);
    return bad;
}

int main(int argc, char **argv) {
    struct cfg c = {.n_layer = 24, .n_embd = 896, .n_ff = 4864, .n_head = 14, .n_head_kv = 2,
                    .n_vocab = -1, .n_ctx = 32768, .type = "f16", .seed = 1};
    const char *vocab_path = NULL, *out_path = NULL, *tmpl_path = NULL;
    int n_threads = (int)sysconf(_SC_NPROCESSORS_ONLN);
    bool verify = false;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
#define INTARG(flag, dst)                                                   \
    if (!strcmp(a, flag)) {                                                 \
        if (!v) goto missing;                                               \
        char *end;                                                          \
        long x = strtol(v, &end, 10);                                       \
        if (*end || x <= 0 || x > (1L << 30)) goto bad_value;               \
        dst = (int)x;                                                       \
        i++;                                                                \
        continue;                                                           \
    }
        INTARG("--layers", c.n_layer)
        INTARG("--embd", c.n_embd)
        INTARG("--ff", c.n_ff)
        INTARG("--heads", c.n_head)
        INTARG("--kv-heads", c.n_head_kv)
        INTARG("--vocab-size", c.n_vocab)
        INTARG("--ctx", c.n_ctx)
        INTARG("--threads", n_threads)
#undef INTARG
        if (!strcmp(a, "--vocab")) { if (!v) goto missing; vocab_path = v; i++; }
        else if (!strcmp(a, "-o")) { if (!v) goto missing; out_path = v; i++; }
        else if (!strcmp(a, "--type")) { if (!v) goto missing; c.type = v; i++; }
        else if (!strcmp(a, "--template-from")) { if (!v) goto missing; tmpl_path = v; i++; }
        else if (!strcmp(a, "--seed")) { if (!v) goto missing; c.seed = strtoull(v, NULL, 0); i++; }
        else if (!strcmp(a, "--output-weight")) c.output_weight = true;
        else if (!strcmp(a, "--verify")) verify = true;
        else if (!strcmp(a, "-h") || !strcmp(a, "--help")) { usage(stdout); return 0; }
        else { fprintf(stderr, "orcd-synth: unknown argument '%s'\n", a); usage(stderr); return 2; }
        continue;
    missing:
        fprintf(stderr, "orcd-synth: %s needs a value\n", a);
        return 2;
    bad_value:
        fprintf(stderr, "orcd-synth: %s: bad value '%s'\n", a, v);
        return 2;
    }
    uint32_t ftype;
    if (!strcmp(c.type, "f32")) ftype = 0;
    else if (!strcmp(c.type, "f16")) ftype = 1;
    else if (!strcmp(c.type, "q8_0")) ftype = 7;
    else if (!strcmp(c.type, "q4_k_m")) ftype = 15;
    else { fprintf(stderr, "orcd-synth: --type %s: want f16, q8_0, q4_k_m or f32\n", c.type); return 2; }
    if (!vocab_path || !out_path) { usage(stderr); return 2; }
    if (c.n_embd % c.n_head || c.n_head % c.n_head_kv || (c.n_embd / c.n_head) % 2) {
        fprintf(stderr, "orcd-synth: --embd %d must divide into --heads %d of even size, and heads by --kv-heads %d\n",
                c.n_embd, c.n_head, c.n_head_kv);
        return 2;
    }
    if (c.n_embd % 32 || c.n_ff % 32) {
        fprintf(stderr, "orcd-synth: --embd and --ff must be multiples of 32\n");
        return 2;
    }
    if (n_threads < 1) n_threads = 1;

    int rc = 1;
    char err[512] = "";
    struct vocab_file voc = {0}, tmpl = {0};
    struct buf hdr = {0};
    struct tensor *ts = NULL;
    uint8_t *data = NULL;
    float *scratch = NULL;
    FILE *f = NULL;
    bool created = false; /* remove a half-written file on failure */
    double t_start = now_s();

    wk_status s = vocab_file_read(vocab_path, &voc, err, sizeof err);
    if (s) goto fail;
    uint32_t et;
    uint64_t n_tok;
    size_t pos;
    if (!arr_header(&voc, vocab_find(&voc, "tokenizer.ggml.tokens"), &et, &n_tok, &pos)) {
        snprintf(err, sizeof err, "%s has no tokenizer.ggml.tokens", vocab_path);
        goto fail;
    }
    if (c.n_vocab < 0) c.n_vocab = (int)n_tok;
    if (!vocab_find(&voc, "tokenizer.chat_template")) {
        char def[4096];
        if (!tmpl_path) {
            const char *slash = strrchr(vocab_path, '/');
            snprintf(def, sizeof def, "%.*stiny-qwen2-f32.gguf", slash ? (int)(slash - vocab_path + 1) : 0,
                     vocab_path);
            if (access(def, R_OK) == 0) tmpl_path = def;
        }
        if (tmpl_path && (s = vocab_file_read(tmpl_path, &tmpl, err, sizeof err))) goto fail;
    }

    /* --- metadata, in the order llama.cpp's converter writes it */
    uint64_t n_kv = 0;
    char name[128];
    snprintf(name, sizeof name, "synthetic-qwen2-%dL-%d-%s-seed%" PRIu64, c.n_layer, c.n_embd, c.type, c.seed);
    struct buf kvb = {0};
    kv_string(&kvb, "general.architecture", "qwen2");
    kv_string(&kvb, "general.name", name);
    kv_u32(&kvb, "qwen2.block_count", (uint32_t)c.n_layer);
    kv_u32(&kvb, "qwen2.context_length", (uint32_t)c.n_ctx);
    kv_u32(&kvb, "qwen2.embedding_length", (uint32_t)c.n_embd);
    kv_u32(&kvb, "qwen2.feed_forward_length", (uint32_t)c.n_ff);
    kv_u32(&kvb, "qwen2.attention.head_count", (uint32_t)c.n_head);
    kv_u32(&kvb, "qwen2.attention.head_count_kv", (uint32_t)c.n_head_kv);
    kv_f32(&kvb, "qwen2.rope.freq_base", 1e6f);
    kv_f32(&kvb, "qwen2.attention.layer_norm_rms_epsilon", 1e-6f);
    kv_u32(&kvb, "general.file_type", ftype);
    n_kv += 11;
    s = write_tokenizer_kvs(&voc, tmpl.data ? &tmpl : NULL, c.n_vocab, &kvb, &n_kv, err, sizeof err);
    if (s) { free(kvb.p); goto fail; }
    kv_u32(&kvb, "general.quantization_version", 2);
    n_kv++;

    /* --- tensor plan */
    ts = calloc((size_t)c.n_layer * 12 + 3, sizeof *ts);
    if (!ts) { free(kvb.p); snprintf(err, sizeof err, "out of memory"); goto fail; }
    int n_t = build_plan(&c, ts);

    buf_u32(&hdr, GGUF_MAGIC);
    buf_u32(&hdr, 3);
    buf_u64(&hdr, (uint64_t)n_t);
    buf_u64(&hdr, n_kv);
    if (!kvb.oom) buf_put(&hdr, kvb.p, kvb.n);
    hdr.oom |= kvb.oom;
    free(kvb.p);
    for (int i = 0; i < n_t; i++) {
        buf_str(&hdr, ts[i].name, strlen(ts[i].name));
        buf_u32(&hdr, (uint32_t)ts[i].n_dims);
        for (int d = 0; d < ts[i].n_dims; d++) buf_u64(&hdr, (uint64_t)ts[i].ne[d]);
        buf_u32(&hdr, ts[i].type);
        buf_u64(&hdr, ts[i].offset);
    }
    static const uint8_t zeros[ALIGNMENT];
    buf_put(&hdr, zeros, (ALIGNMENT - hdr.n % ALIGNMENT) % ALIGNMENT);
    if (hdr.oom) { snprintf(err, sizeof err, "out of memory (header)"); goto fail; }

    /* --- counts per type */
    int count[N_TYPES] = {0};
    uint64_t bytes[N_TYPES] = {0}, max_nbytes = 0, total = 0;
    int64_t max_row = 0;
    for (int i = 0; i < n_t; i++) {
        count[type_slot(ts[i].type)]++;
        bytes[type_slot(ts[i].type)] += ts[i].nbytes;
        if (ts[i].nbytes > max_nbytes) max_nbytes = ts[i].nbytes;
        if (ts[i].ne[0] > max_row) max_row = ts[i].ne[0];
        total = ts[i].offset + ts[i].nbytes;
    }
    fprintf(stderr, "orcd-synth: %s: qwen2 %d layers, embd %d, ff %d, heads %d/%d, vocab %d, %d tensors:", c.type,
            c.n_layer, c.n_embd, c.n_ff, c.n_head, c.n_head_kv, c.n_vocab, n_t);
    for (size_t i = 0; i < N_TYPES; i++)
        if (count[i]) fprintf(stderr, " %s %d", k_types[i].name, count[i]);
    fprintf(stderr, "\n");

    /* --- data */
    data = malloc(max_nbytes);
    scratch = malloc(sizeof(float) * 2 * (size_t)max_row * (size_t)n_threads);
    struct job *jobs = calloc((size_t)n_threads, sizeof *jobs);
    pthread_t *tid = calloc((size_t)n_threads, sizeof *tid);
    if (!data || !scratch || !jobs || !tid) {
        free(jobs);
        free(tid);
        snprintf(err, sizeof err, "out of memory (%" PRIu64 " bytes per tensor)", max_nbytes);
        goto fail;
    }
    f = fopen(out_path, "wb");
    if (!f) { free(jobs); free(tid); snprintf(err, sizeof err, "%s: %s", out_path, strerror(errno)); goto fail; }
    struct stat st;
    created = fstat(fileno(f), &st) == 0 && S_ISREG(st.st_mode); /* never unlink /dev/... */
    setvbuf(f, NULL, _IOFBF, 8 << 20);
    bool ok = fwrite(hdr.p, 1, hdr.n, f) == hdr.n;
    double err2[N_TYPES] = {0}, ref2[N_TYPES] = {0};
    for (int i = 0; i < n_t && ok; i++) {
        const struct tensor *t = &ts[i];
        int64_t rows = t->ne[1], per = (rows + n_threads - 1) / n_threads;
        int nj = 0;
        for (int k = 0; k < n_threads && (int64_t)k * per < rows; k++) {
            jobs[k] = (struct job){.t = t, .out = data, .r0 = (int64_t)k * per,
                                   .r1 = (int64_t)(k + 1) * per < rows ? (int64_t)(k + 1) * per : rows,
                                   .verify = verify && t->type != GGML_TYPE_F32,
                                   .x = scratch + (size_t)2 * k * (size_t)max_row,
                                   .y = scratch + (size_t)(2 * k + 1) * (size_t)max_row};
            nj++;
        }
        int started = 0;
        for (int k = 1; k < nj; k++, started++)
            if (pthread_create(&tid[k], NULL, job_run, &jobs[k])) break;
        job_run(&jobs[0]);
        for (int k = 1; k <= started; k++) pthread_join(tid[k], NULL);
        for (int k = started + 1; k < nj; k++) job_run(&jobs[k]); /* thread creation failed: run here */
        int slot = type_slot(t->type);
        for (int k = 0; k < nj; k++) {
            err2[slot] += jobs[k].err2;
            ref2[slot] += jobs[k].ref2;
        }
        if (verify && t->type != GGML_TYPE_F32 && wk_row_bytes(t->type, t->ne[0]) != row_size(t->type, t->ne[0])) {
            snprintf(err, sizeof err, "verify: %s: row bytes %zu, loader says %zu", t->name,
                     row_size(t->type, t->ne[0]), wk_row_bytes(t->type, t->ne[0]));
            ok = false;
            break;
        }
        ok = fwrite(data, 1, t->nbytes, f) == t->nbytes;
        size_t pad = (ALIGNMENT - t->nbytes % ALIGNMENT) % ALIGNMENT;
        if (ok && i + 1 < n_t) ok = fwrite(zeros, 1, pad, f) == pad;
    }
    free(jobs);
    free(tid);
    if (fclose(f) != 0) ok = false;
    f = NULL;
    if (!ok) {
        if (!err[0]) snprintf(err, sizeof err, "%s: write failed: %s", out_path, strerror(errno));
        goto fail;
    }
    double dt = now_s() - t_start;
    fprintf(stderr, "orcd-synth: wrote %s: %" PRIu64 " bytes (%.1f MiB; data %.1f MiB) in %.2fs with %d threads\n",
            out_path, (uint64_t)hdr.n + total, ((double)hdr.n + (double)total) / 1048576.0,
            (double)total / 1048576.0, dt, n_threads);
    for (size_t i = 0; i < N_TYPES; i++)
        if (count[i])
            fprintf(stderr, "orcd-synth:   %-5s %4d tensors %10.2f MiB\n", k_types[i].name, count[i],
                    (double)bytes[i] / 1048576.0);
    rc = 0;
    if (verify) {
        /* round-to-nearest bounds: relative RMS error of the dequantized rows */
        for (size_t i = 0; i < N_TYPES; i++) {
            if (!count[i] || k_types[i].type == GGML_TYPE_F32) continue;
            double rel = ref2[i] > 0 ? sqrt(err2[i] / ref2[i]) : 0;
            double lim = k_types[i].type == GGML_TYPE_F16 ? 0.001
                       : k_types[i].type == GGML_TYPE_Q8_0 ? 0.02 : 0.15;
            bool pass = rel < lim;
            fprintf(stderr, "orcd-synth: verify: %-5s relative RMS error %.5f (limit %.3f) %s\n", k_types[i].name,
                    rel, lim, pass ? "ok" : "FAIL");
            if (!pass) rc = 1;
        }
        if (verify_load(out_path, &c, n_t)) rc = 1;
    }
    goto done;
fail:
    fprintf(stderr, "orcd-synth: %s\n", err);
    if (f) fclose(f);
    if (created) unlink(out_path);
done:
    vocab_file_free(&voc);
    vocab_file_free(&tmpl);
    free(hdr.p);
    free(ts);
    free(data);
    free(scratch);
    return rc;
}
