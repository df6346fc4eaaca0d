/* sample.c — the reference sampler (see sample.h for the order of steps).
 *
 * Everything here is a pure function of (logits, params, history, step): no
 * global state, no allocation, no threads, no floating-point reassociation.
 * Orders are total: by value descending, then by token id ascending.
 *
 * Cost at n_vocab = 151936 (the temperature > 0 path): a pass that copies
 * the logits and finds the raw top-N, the penalty, a pass of exp() for the
 * softmax normalizer (skipped when top-k bounds the set), a pass of exp() for
 * the log-softmax of the raw logits (skipped at temperature 1 without
 * penalty: it is the same sum), and a radix sort of only the candidates
 * that can matter:
 *   - top-k: a 4-pass radix select finds the k-th key, then a radix sort of k;
 *   - min-p: only tokens with prob >= min_p * max prob can survive;
 *   - otherwise the probability mass within a few distances of the max
 *     logit (2 .. 32 nats) picks the smallest level whose mass reaches what the
 *     top-p cut (p * total) or the draw (u * total) needs. Those tokens form
 *     a prefix of the full descending order, so walking them gives the same
 *     answer as walking the whole sorted vocabulary. If rounding makes that
 *     prefix fall short, the step is redone over the whole vocabulary.
 */
#include "core/sample.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "core/rng.h"

// ----------------------------------------------------------------------------
// scratch layout

struct cand {
    uint32_t key; /* order key: smaller = better (value desc) */
    int32_t id;
};

struct scratch {
    double *w;      /* [n] exp(z - zmax) for the tokens that were considered */
    struct cand *a; /* [n] candidates */
    struct cand *b; /* [n] radix ping-pong buffer */
    float *z;       /* [n] penalized logits, then divided by the temperature */
    uint8_t *seen;  /* [(n+7)/8] bitmap: history ids already penalized */
};

static size_t align_up(size_t x) { return (x + 63) & ~(size_t)63; }

size_t wk_sampler_scratch_bytes(int n_vocab) {
    size_t n = n_vocab > 0 ? (size_t)n_vocab : 1;
    return align_up(n * sizeof(double)) + 2 * align_up(n * sizeof(struct cand)) +
           align_up(n * sizeof(float)) + align_up((n + 7) / 8) + 64;
}

static struct scratch scratch_carve(void *mem, int n_vocab) {
    size_t n = (size_t)n_vocab;
    uintptr_t p = ((uintptr_t)mem + 63) & ~(uintptr_t)63;
    struct scratch s;
    s.w = (double *)p;
    p += align_up(n * sizeof(double));
    s.a = (struct cand *)p;
    p += align_up(n * sizeof(struct cand));
    s.b = (struct cand *)p;
    p += align_up(n * sizeof(struct cand));
    s.z = (float *)p;
    p += align_up(n * sizeof(float));
    s.seen = (uint8_t *)p;
    return s;
}

// ----------------------------------------------------------------------------
// exp over arrays

/* w[i] = exp((double)z[i] - shift) for i < n, with z[i] - shift <= 0 (a NaN
 * or -inf input, or anything below -708, gives 0). Two lanes at a time in
 * GCC vector extensions, so it compiles to SIMD on any target; the error is
 * within ~2 ulp of exp() (Cody-Waite reduction by ln 2, degree-13 Taylor on
 * |r| <= ln2/2: truncation 4e-18). Deterministic: the same code on the same
 * inputs, no reassociation. */
typedef double v2d __attribute__((vector_size(16)));
typedef int64_t v2i __attribute__((vector_size(16)));

static inline __attribute__((always_inline)) v2d exp2_nonpos(v2d x) {
    const double shift_c = 0x1.8p52; /* adding it rounds to an integer */
    const double inv_ln2 = 0x1.71547652b82fep0;
    const double ln2_hi = 0x1.62e42fefa3800p-1, ln2_lo = 0x1.ef35793c7673p-45;
    const v2d lo = {-708.0, -708.0};
    v2i ok = x >= lo;         /* false for NaN and -inf */
    x = (v2d)((v2i)x & ok);   /* masked lanes compute exp(0), then get zeroed */
    v2d t = x * inv_ln2 + shift_c;
    v2d kd = t - shift_c;
    v2d r = x - kd * ln2_hi;
    r = r - kd * ln2_lo;
    v2d p = r * (1.0 / 6227020800.0) + (1.0 / 479001600.0);
    p = p * r + (1.0 / 39916800.0);
    p = p * r + (1.0 / 3628800.0);
    p = p * r + (1.0 / 362880.0);
    p = p * r + (1.0 / 40320.0);
    p = p * r + (1.0 / 5040.0);
    p = p * r + (1.0 / 720.0);
    p = p * r + (1.0 / 120.0);
    p = p * r + (1.0 / 24.0);
    p = p * r + (1.0 / 6.0);
    p = p * r + 0.5;
    p = p * r + 1.0;
    p = p * r + 1.0;
    /* 2^k from t's bits: bits(t) = bits(shift_c) + k */
    const v2i bias = {0x4338000000000000ll - 1023, 0x4338000000000000ll - 1023};
    v2i e = ((v2i)t - bias) << 52;
    v2d y = p * (v2d)e;
    return (v2d)((v2i)y & ok);
}

static void exp_shifted(const float *z, int n, double shift, double *w) {
    int i = 0;
    /* four independent vectors per iteration: the polynomial is one long
     * dependency chain, so this is what keeps the FP units busy */
    for (; i + 8 <= n; i += 8) {
        v2d x0 = {(double)z[i] - shift, (double)z[i + 1] - shift};
        v2d x1 = {(double)z[i + 2] - shift, (double)z[i + 3] - shift};
        v2d x2 = {(double)z[i + 4] - shift, (double)z[i + 5] - shift};
        v2d x3 = {(double)z[i + 6] - shift, (double)z[i + 7] - shift};
        v2d y0 = exp2_nonpos(x0), y1 = exp2_nonpos(x1), y2 = exp2_nonpos(x2),
            y3 = exp2_nonpos(x3);
        memcpy(w + i, &y0, sizeof y0);
        memcpy(w + i + 2, &y1, sizeof y1);
        memcpy(w + i + 4, &y2, sizeof y2);
        memcpy(w + i + 6, &y3, sizeof y3);
    }
    for (; i + 2 <= n; i += 2) {
        v2d x = {(double)z[i] - shift, (double)z[i + 1] - shift};
        v2d y = exp2_nonpos(x);
        memcpy(w + i, &y, sizeof y);
    }
    if (i < n) {
        v2d x = {(double)z[i] - shift, -INFINITY};
        w[i] = exp2_nonpos(x)[0];
    }
}

/* exp of one value with the same arithmetic */
static double exp1_nonpos(double x) {
    v2d v = {x, x};
    return exp2_nonpos(v)[0];
}

// ----------------------------------------------------------------------------
// keys and sorting

/* Map a (non-NaN) float to a uint32 whose ascending order is the float's
 * descending order. -0 and +0 map to the same key. */
static inline uint32_t fkey(float f) {
    if (f == 0.0f) f = 0.0f;
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    u = (u & 0x80000000u) ? ~u : (u | 0x80000000u); /* ascending with f */
    return ~u;
}

/* Stable LSD radix sort of c[0..n) by key ascending; tmp has room for n.
 * Returns the buffer holding the result (c or tmp). Ties keep input order.
 * Three passes of 11, 11 and 10 bits; the three histograms come from one
 * read, and a pass where every key has the same digit is skipped. */
static struct cand *radix_sort(struct cand *c, struct cand *tmp, size_t n) {
    static const int shift[3] = {0, 11, 22};
    static const uint32_t mask[3] = {0x7FF, 0x7FF, 0x3FF};
    uint32_t cnt[3][2048];
    memset(cnt, 0, sizeof cnt);
    for (size_t i = 0; i < n; i++) {
        uint32_t k = c[i].key;
        cnt[0][k & 0x7FF]++;
        cnt[1][(k >> 11) & 0x7FF]++;
        cnt[2][k >> 22]++;
    }
    for (int pass = 0; pass < 3; pass++) {
        uint32_t *h = cnt[pass];
        const int nb = (int)mask[pass] + 1;
        bool trivial = false;
        uint32_t pos = 0;
        for (int d = 0; d < nb; d++) {
            uint32_t k = h[d];
            if (k == n) trivial = true;
            h[d] = pos;
            pos += k;
        }
        if (trivial) continue; /* every key has the same digit here */
        const int sh = shift[pass];
        const uint32_t m = mask[pass];
        for (size_t i = 0; i < n; i++) tmp[h[(c[i].key >> sh) & m]++] = c[i];
        struct cand *t = c;
        c = tmp;
        tmp = t;
    }
    return c;
}

/* The k-th smallest key (1-based k <= n) of fkey(z[i]) over all i, and how
 * many tokens with exactly that key belong to the k best (taking the lowest
 * ids first). Four histogram passes, most significant digit first. */
static uint32_t radix_select(const float *z, int n, int k, int *n_ties) {
    uint32_t prefix = 0, mask = 0;
    int want = k;
    size_t cnt[256];
    for (int shift = 24; shift >= 0; shift -= 8) {
        memset(cnt, 0, sizeof cnt);
        for (int i = 0; i < n; i++) {
            uint32_t key = fkey(z[i]);
            if ((key & mask) == prefix) cnt[(key >> shift) & 255]++;
        }
        int d = 0;
        for (; d < 256; d++) {
            if ((size_t)want <= cnt[d]) break;
            want -= (int)cnt[d];
        }
        WK_ASSERT(d < 256);
        prefix |= (uint32_t)d << shift;
        mask |= 255u << shift;
    }
    *n_ties = want;
    return prefix;
}

// ----------------------------------------------------------------------------
// steps

/* Levels at which the candidate set may be cut, as distances below the max
 * (scaled) logit: z >= zmax - 2, 4, 8, 16, 32 nats (weights down to e^-32
 * of the max); past the last, everything is a candidate. A predicate on z,
 * not on the computed weight, so each level is exactly a prefix of the
 * descending order. */
#define N_LEVELS 5
static const double LEVELS[N_LEVELS] = {2.0, 4.0, 8.0, 16.0, 32.0};

/* Sum of w[0..n) in a fixed order: two interleaved partial sums, even and
 * odd ids, added at the end (halves the latency chain; deterministic). */
static double sum_fixed(const double *w, int n) {
    double a = 0.0, b = 0.0;
    int i = 0;
    for (; i + 2 <= n; i += 2) {
        a += w[i];
        b += w[i + 1];
    }
    if (i < n) a += w[i];
    return a + b;
}

/* Level membership is z >= cut_below(zmax, lvl): one float compare, the
 * same in the mass sums and in the candidate collection. (-inf for lvl =
 * inf: everything.) */
static float cut_below(double zmax, double lvl) {
    return isinf(lvl) ? -INFINITY : (float)(zmax - lvl);
}

/* sum_fixed(w, n), and mass[k] = the sum of the w[i] with z[i] >=
 * cut_below(zmax, LEVELS[k]) (same even/odd order). */
static double sum_and_levels(const double *w, const float *z, double zmax, int n, double *mass) {
    v2d s = {0.0, 0.0}, m[N_LEVELS];
    v2d cut[N_LEVELS];
    for (int k = 0; k < N_LEVELS; k++) {
        m[k] = s;
        double c = cut_below(zmax, LEVELS[k]);
        cut[k] = (v2d){c, c};
    }
    int i = 0;
    for (; i + 2 <= n; i += 2) {
        v2d x, zz = {(double)z[i], (double)z[i + 1]};
        memcpy(&x, w + i, sizeof x);
        s += x;
        for (int k = 0; k < N_LEVELS; k++) m[k] += (v2d)((v2i)x & (zz >= cut[k]));
    }
    if (i < n) {
        v2d x = {w[i], 0.0}, zz = {(double)z[i], -INFINITY};
        s += x;
        for (int k = 0; k < N_LEVELS; k++) m[k] += (v2d)((v2i)x & (zz >= cut[k]));
    }
    for (int k = 0; k < N_LEVELS; k++) mass[k] = m[k][0] + m[k][1];
    return s[0] + s[1];
}

static float max_fixed(const float *z, int n) {
    float a = -INFINITY, b = -INFINITY;
    int i = 0;
    for (; i + 2 <= n; i += 2) {
        a = z[i] > a ? z[i] : a;
        b = z[i + 1] > b ? z[i + 1] : b;
    }
    if (i < n) a = z[i] > a ? z[i] : a;
    return a > b ? a : b;
}

/* Repetition penalty on z (a copy of the logits), each distinct id in the
 * window once. */
static void apply_penalty(float *z, uint8_t *seen, int n, const struct wk_sampling *p,
                          const int32_t *history, size_t n_history) {
    if (!(p->repetition_penalty != 1.0f && p->repeat_last_n > 0 && history && n_history > 0))
        return;
    size_t win = (size_t)p->repeat_last_n < n_history ? (size_t)p->repeat_last_n : n_history;
    const int32_t *h = history + (n_history - win);
    const float pen = p->repetition_penalty;
    memset(seen, 0, ((size_t)n + 7) / 8); /* the caller's scratch is uninitialized */
    for (size_t j = 0; j < win; j++) {
        int32_t id = h[j];
        if (id < 0 || id >= n) continue;
        uint8_t bit = (uint8_t)(1u << (id & 7));
        if (seen[id >> 3] & bit) continue;
        seen[id >> 3] |= bit;
        z[id] = z[id] > 0.0f ? z[id] / pen : z[id] * pen;
    }
}

static int32_t argmax(const float *z, int n) {
    int32_t best = 0;
    for (int i = 1; i < n; i++) {
        if (z[i] > z[best]) best = i; /* strict: ties stay with the lower id */
    }
    return best;
}

/* Pass 1 over the raw logits, fused with the copy into z: z = logits with
 * NaN -> -inf; returns the max raw logit and fills out's top-N (value desc,
 * id asc; NaN counts as -inf). */
static double copy_and_top(const float *logits, float *z, int n, int n_top,
                           struct wk_sample_out *out) {
    float m = -INFINITY;
    int nt = 0;
    for (int i = 0; i < n; i++) {
        float v = logits[i];
        if (v != v) v = -INFINITY;
        z[i] = v;
        m = v > m ? v : m;
        if (n_top > 0 && (nt < n_top || v > out->top_logprobs[nt - 1])) {
            int j = nt < n_top ? nt++ : n_top - 1;
            while (j > 0 && v > out->top_logprobs[j - 1]) {
                out->top_logprobs[j] = out->top_logprobs[j - 1];
                out->top_ids[j] = out->top_ids[j - 1];
                j--;
            }
            out->top_logprobs[j] = v;
            out->top_ids[j] = i;
        }
    }
    out->n_top = nt;
    return m;
}

/* Log-softmax of the raw logits: logprob of `token`, and out's top-N (raw
 * values from copy_and_top) turned into logprobs. m: the max raw logit.
 * s_known > 0: sum(exp(logits - m)) is already known (it is the sampler's
 * normalizer when temperature 1 and no penalty left the logits unchanged:
 * the same arithmetic in the same order). */
static void raw_logprobs(const float *logits, int n, int32_t token, double m, double s_known,
                         double *w, struct wk_sample_out *out) {
    const int nt = out->n_top;
    if (isinf(m)) { /* all -inf (no information: uniform), or +inf logits share it all */
        int cnt = 0;
        for (int i = 0; i < n; i++) cnt += logits[i] == (float)m;
        double lp_at = -log((double)cnt);
        float tv = logits[token];
        out->logprob = tv == (float)m ? (float)lp_at : -INFINITY;
        for (int j = 0; j < nt; j++)
            out->top_logprobs[j] = out->top_logprobs[j] == (float)m ? (float)lp_at : -INFINITY;
        return;
    }
    /* pass 2: log-sum-exp with the max shifted out, in double, fixed order */
    double s = s_known;
    if (!(s > 0.0)) {
        exp_shifted(logits, n, m, w);
        s = sum_fixed(w, n);
    }
    double lse = m + log(s);
    float tv = logits[token];
    out->logprob = tv == tv ? (float)((double)tv - lse) : -INFINITY;
    for (int j = 0; j < nt; j++) out->top_logprobs[j] = (float)((double)out->top_logprobs[j] - lse);
}

/* Steps 3-8 for temperature > 0. z holds the penalized logits (finite or
 * -inf). Returns the token, or -1 when the distribution is degenerate
 * (overflow after the division, or nothing finite): the caller falls back
 * to argmax. */
static int32_t sample_temperature(struct scratch *s, int n, const struct wk_sampling *p,
                                  uint64_t step, double *full_s0) {
    float *z = s->z;
    double *w = s->w;
    for (int i = 0; i < n; i++) z[i] = z[i] / p->temperature;

    const bool use_top_p = p->top_p > 0.0f && p->top_p < 1.0f;
    const bool use_min_p = p->min_p > 0.0f;
    const double top_p = p->top_p, min_p = p->min_p;
    const double u = wk_rng_u01(p->seed, step);

    struct cand *c = s->a;
    size_t n_c = 0;    /* candidates: a prefix of the sorted kept set K0 */
    size_t n_k0;       /* |K0|: what top-k kept */
    double s0 = 0.0;   /* softmax normalizer over K0, in a fixed order */
    double zmax;

    if (p->top_k > 0 && p->top_k < n) {
        /* 4. top-k: the k best keys, collected in id order, then sorted */
        int ties;
        uint32_t kth = radix_select(z, n, p->top_k, &ties);
        uint32_t best = UINT32_MAX;
        for (int i = 0; i < n; i++) {
            uint32_t key = fkey(z[i]);
            if (key < kth || (key == kth && ties-- > 0)) {
                c[n_c].key = key;
                c[n_c].id = i;
                n_c++;
                if (key < best) best = key;
            }
        }
        WK_ASSERT(n_c == (size_t)p->top_k);
        zmax = -INFINITY;
        for (size_t j = 0; j < n_c; j++) {
            if (z[c[j].id] > zmax) zmax = z[c[j].id];
        }
        if (!isfinite(zmax)) return -1;
        /* 5. softmax over what is kept */
        for (size_t j = 0; j < n_c; j++) {
            double wi = exp1_nonpos((double)z[c[j].id] - zmax);
            w[c[j].id] = wi;
            s0 += wi;
        }
        n_k0 = n_c;
        c = radix_sort(c, s->b, n_c);
    } else {
        zmax = max_fixed(z, n);
        if (!isfinite(zmax)) return -1;
        /* 5. softmax over the whole vocabulary, and the mass above each level */
        exp_shifted(z, n, zmax, w);
        double mass[N_LEVELS];
        s0 = sum_and_levels(w, z, zmax, n, mass);
        *full_s0 = s0;
        n_k0 = (size_t)n;
        /* Which tokens can matter? min-p: those it keeps. Otherwise the
         * tokens above the first level whose mass reaches what the top-p cut
         * (>= p*s0) or the draw (> u*s0) needs; a relative margin of 1e-9
         * covers the different summation order. */
        int level = N_LEVELS;
        if (!use_min_p) {
            double need = (use_top_p ? top_p : u) * s0 * (1.0 + 1e-9);
            for (level = 0; level < N_LEVELS && !(mass[level] > need); level++) {}
        }
        for (int attempt = 0; attempt < 2; attempt++) {
            const double lvl = level < N_LEVELS ? LEVELS[level] : INFINITY;
            /* branch-free compaction: write every token, advance on the kept */
            n_c = 0;
            if (use_min_p) {
                for (int i = 0; i < n; i++) {
                    c[n_c].key = fkey(z[i]);
                    c[n_c].id = i;
                    n_c += w[i] >= min_p;
                }
            } else {
                const float zcut = cut_below(zmax, lvl);
                for (int i = 0; i < n; i++) {
                    c[n_c].key = fkey(z[i]);
                    c[n_c].id = i;
                    n_c += z[i] >= zcut;
                }
            }
            struct cand *sorted = radix_sort(c, s->b, n_c);
            if (attempt == 0 && n_c < n_k0 && !use_min_p) {
                /* does the prefix reach what it must? (rounding check) */
                double need = (use_top_p ? top_p : u) * s0, acc = 0.0;
                bool ok = false;
                for (size_t j = 0; j < n_c && !ok; j++) {
                    acc += w[sorted[j].id];
                    ok = use_top_p ? acc >= need : acc > need;
                }
                if (!ok) {
                    level = N_LEVELS; /* redo over everything */
                    continue;
                }
            }
            c = sorted;
            break;
        }
    }

    /* the candidates' weights in sorted order, in the radix buffer not
     * holding c, so the walks below read memory in sequence */
    double *wc = (double *)(c == s->a ? s->b : s->a);
    for (size_t j = 0; j < n_c; j++) wc[j] = w[c[j].id];

    /* 6. top-p: the smallest prefix whose mass >= p (mass relative to s0).
     * kept_all: K (what survives 6-7) is still all of K0, so the normalizer
     * is s0 and the candidates need not hold all of K. */
    bool kept_all = !(use_min_p && n_c < n_k0); /* min-p already cut the candidates */
    size_t n_keep = n_c;
    double prefix_sum = -1.0; /* sum of wc[0..n_keep) when known */
    if (use_top_p) {
        double need = top_p * s0, acc = 0.0;
        for (size_t j = 0; j < n_c; j++) {
            acc += wc[j];
            if (acc >= need) {
                n_keep = j + 1;
                break;
            }
        }
        prefix_sum = acc;
        if (n_keep < n_k0) kept_all = false;
    }
    /* 7. min-p: drop prob < min_p * max prob (the max has weight exactly 1),
     * keeping the order of the rest */
    if (use_min_p) {
        size_t j = 0;
        for (size_t i = 0; i < n_keep; i++) {
            if (wc[i] >= min_p) {
                c[j] = c[i];
                wc[j++] = wc[i];
            }
        }
        if (j < n_keep) {
            kept_all = false;
            prefix_sum = -1.0;
        }
        n_keep = j;
    }
    /* 8. renormalize and draw */
    double total = s0;
    if (!kept_all) {
        total = prefix_sum;
        if (total < 0.0) {
            total = 0.0;
            for (size_t j = 0; j < n_keep; j++) total += wc[j];
        }
    }
    double target = u * total, acc = 0.0;
    for (size_t j = 0; j < n_keep; j++) {
        acc += wc[j];
        if (acc > target) return c[j].id;
    }
    /* Only rounding gets here (the cumulative sum in sorted order fell short
     * of u * total summed in id order): take the last token with weight. */
    for (size_t j = n_keep; j-- > 0;) {
        if (wc[j] > 0.0) return c[j].id;
    }
    return c[0].id;
}

// ----------------------------------------------------------------------------
// public

/* The repetition penalty is in effect (step 1 changes something). */
static bool penalty_on(const struct wk_sampling *p, const int32_t *history, size_t n_history) {
    return p->repetition_penalty != 1.0f && p->repeat_last_n > 0 && history && n_history > 0;
}

void wk_sample_logits(const float *logits, int n_vocab, const struct wk_sampling *p,
                      const int32_t *history, size_t n_history, uint64_t step, void *scratch,
                      struct wk_sample_out *out) {
    WK_ASSERT(logits && n_vocab > 0 && p && scratch && out);
    struct scratch s = scratch_carve(scratch, n_vocab);
    const int n = n_vocab;
    int n_top = p->n_logprobs < 0 ? 0 : p->n_logprobs;
    if (n_top > WK_MAX_LOGPROBS) n_top = WK_MAX_LOGPROBS;
    if (n_top > n) n_top = n;

    /* 1. a copy of the logits (NaN -> -inf), then the repetition penalty */
    double m_raw = copy_and_top(logits, s.z, n, n_top, out);
    apply_penalty(s.z, s.seen, n, p, history, n_history);

    int32_t token = -1;
    double full_s0 = 0.0;
    if (p->temperature > 0.0f) {
        token = sample_temperature(&s, n, p, step, &full_s0);
        if (token < 0) { /* z was divided: redo step 1 for the argmax */
            for (int i = 0; i < n; i++) s.z[i] = logits[i] == logits[i] ? logits[i] : -INFINITY;
            apply_penalty(s.z, s.seen, n, p, history, n_history);
            full_s0 = 0.0;
        }
    }
    if (token < 0) token = argmax(s.z, n); /* 2. greedy */
    out->token = token;

    bool same = p->temperature == 1.0f && !penalty_on(p, history, n_history);
    raw_logprobs(logits, n, token, m_raw, same ? full_s0 : 0.0, s.w, out);
}

wk_status wk_sampling_validate(const struct wk_sampling *p, char *err, size_t err_len) {
    if (!p) return wk_errf(err, err_len, WK_STATUS_INVALID_ARGUMENT, "%s: no sampling parameters", __func__);
    if (!(p->temperature >= 0.0f && p->temperature <= 100.0f))
        return wk_errf(err, err_len, WK_STATUS_INVALID_ARGUMENT,
                       "%s: temperature must be in [0, 100], got %g", __func__, (double)p->temperature);
    if (p->top_k < 0)
        return wk_errf(err, err_len, WK_STATUS_INVALID_ARGUMENT, "%s: top_k must be >= 0, got %d",
                       __func__, p->top_k);
    if (!(p->top_p >= 0.0f && p->top_p <= 1.0f))
        return wk_errf(err, err_len, WK_STATUS_INVALID_ARGUMENT,
                       "%s: top_p must be in [0, 1], got %g", __func__, (double)p->top_p);
    if (!(p->min_p >= 0.0f && p->min_p < 1.0f))
        return wk_errf(err, err_len, WK_STATUS_INVALID_ARGUMENT,
                       "%s: min_p must be in [0, 1), got %g", __func__, (double)p->min_p);
    if (!(p->repetition_penalty > 0.0f && isfinite(p->repetition_penalty)))
        return wk_errf(err, err_len, WK_STATUS_INVALID_ARGUMENT,
                       "%s: repetition_penalty must be > 0 and finite, got %g", __func__,
                       (double)p->repetition_penalty);
    if (p->repeat_last_n < 0)
        return wk_errf(err, err_len, WK_STATUS_INVALID_ARGUMENT,
                       "%s: repeat_last_n must be >= 0, got %d", __func__, p->repeat_last_n);
    if (p->n_logprobs < 0 || p->n_logprobs > WK_MAX_LOGPROBS)
        return wk_errf(err, err_len, WK_STATUS_INVALID_ARGUMENT,
                       "%s: logprobs must be in [0, %d], got %d", __func__, WK_MAX_LOGPROBS,
                       p->n_logprobs);
    return WK_STATUS_OK;
}
