/* test-sample.c — the reference sampler (worker/sample.c).
 *
 * Expected answers come from hand-computable logits (powers of two as
 * probabilities), from an independent naive implementation of the order in
 * sample.h written here (full qsort, plain double softmax), and from
 * statistics (100k draws against the softmax). */
#include <check.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "tests/testutil.h"
#include "core/rng.h"
#include "core/sample.h"

// ---------------------------------------------------------------------------
// helpers

static void *scratch_for(int n) {
    void *s = malloc(wk_sampler_scratch_bytes(n));
    ck_assert_ptr_nonnull(s);
    memset(s, 0xA5, wk_sampler_scratch_bytes(n)); /* garbage, as a caller's may be */
    return s;
}

static struct wk_sampling params(float temp) {
    struct wk_sampling p = {
        .temperature = temp, .top_k = 0, .top_p = 1.0f, .min_p = 0.0f,
        .repetition_penalty = 1.0f, .repeat_last_n = 64, .seed = 42, .n_logprobs = 0,
    };
    return p;
}

static int32_t sample1(const float *l, int n, const struct wk_sampling *p, const int32_t *h,
                       size_t nh, uint64_t step, void *scratch) {
    struct wk_sample_out o;
    wk_sample_logits(l, n, p, h, nh, step, scratch, &o);
    return o.token;
}

/* deterministic pseudo-random floats for test inputs (not the sampler's RNG use) */
static float frand(uint64_t *st, float lo, float hi) {
    *st += 1;
    return lo + (hi - lo) * (float)wk_rng_u01(0x7e57, *st);
}

/* logits whose softmax over the first k entries is 1/2, 1/4, 1/8, ..., and the
 * rest (filler) very unlikely */
static void halving_logits(float *l, int n, int k, float filler) {
    for (int i = 0; i < n; i++) l[i] = filler;
    for (int i = 0; i < k; i++) l[i] = -(float)i * (float)M_LN2;
}

// ---------------------------------------------------------------------------
// an independent naive reference of the order in sample.h

struct ref_c {
    double z;
    int id;
};
static int ref_cmp(const void *a, const void *b) {
    const struct ref_c *x = a, *y = b;
    if (x->z != y->z) return x->z > y->z ? -1 : 1;
    return x->id < y->id ? -1 : x->id > y->id;
}

static int32_t ref_sample(const float *logits, int n, const struct wk_sampling *p,
                          const int32_t *h, size_t nh, uint64_t step) {
    float *z = malloc(sizeof(float) * n);
    for (int i = 0; i < n; i++) z[i] = logits[i];
    if (p->repetition_penalty != 1.0f && p->repeat_last_n > 0) {
        size_t win = nh < (size_t)p->repeat_last_n ? nh : (size_t)p->repeat_last_n;
        char *done = calloc(n, 1);
        for (size_t j = nh - win; j < nh; j++) {
            int id = h[j];
            if (done[id]) continue;
            done[id] = 1;
            z[id] = z[id] > 0 ? z[id] / p->repetition_penalty : z[id] * p->repetition_penalty;
        }
        free(done);
    }
    int32_t tok = 0;
    if (p->temperature == 0.0f) {
        for (int i = 1; i < n; i++)
            if (z[i] > z[tok]) tok = i;
        free(z);
        return tok;
    }
    struct ref_c *c = malloc(sizeof *c * n);
    for (int i = 0; i < n; i++) {
        c[i].z = z[i] / p->temperature;
        c[i].id = i;
    }
    qsort(c, n, sizeof *c, ref_cmp);
    int m = n;
    if (p->top_k > 0 && p->top_k < n) m = p->top_k;
    double *pr = malloc(sizeof(double) * n), s = 0;
    for (int j = 0; j < m; j++) s += (pr[j] = exp(c[j].z - c[0].z));
    for (int j = 0; j < m; j++) pr[j] /= s;
    if (p->top_p > 0 && p->top_p < 1) {
        double acc = 0;
        for (int j = 0; j < m; j++) {
            acc += pr[j];
            if (acc >= p->top_p) {
                m = j + 1;
                break;
            }
        }
    }
    if (p->min_p > 0) {
        int j = 1;
        while (j < m && pr[j] >= p->min_p * pr[0]) j++;
        m = j;
    }
    double tot = 0;
    for (int j = 0; j < m; j++) tot += pr[j];
    double u = wk_rng_u01(p->seed, step) * tot, acc = 0;
    tok = c[m - 1].id;
    for (int j = 0; j < m; j++) {
        acc += pr[j];
        if (acc > u) {
            tok = c[j].id;
            break;
        }
    }
    free(pr);
    free(c);
    free(z);
    return tok;
}

// ---------------------------------------------------------------------------
// greedy, determinism

START_TEST(test_greedy_argmax_ties_lowest) {
    float l[10] = {0, 1, 2, 5, -1, 3, 4, 5, 5, -7};
    void *sc = scratch_for(10);
    struct wk_sampling p = params(0.0f);
    ck_assert_int_eq(sample1(l, 10, &p, NULL, 0, 0, sc), 3);
    l[3] = NAN; /* NaN never wins */
    ck_assert_int_eq(sample1(l, 10, &p, NULL, 0, 0, sc), 7);
    float z[4] = {-0.0f, 0.0f, -1.0f, -0.0f};
    ck_assert_int_eq(sample1(z, 4, &p, NULL, 0, 0, sc), 0);
    /* greedy ignores top-k/top-p/min-p and the seed */
    p.top_k = 3;
    p.top_p = 0.1f;
    p.seed = 99;
    ck_assert_int_eq(sample1(l, 10, &p, NULL, 0, 5, sc), 7);
    free(sc);
}
END_TEST

START_TEST(test_same_seed_same_token) {
    const int n = 5000;
    float *l = malloc(sizeof(float) * n);
    uint64_t st = 1;
    for (int i = 0; i < n; i++) l[i] = frand(&st, -4, 4);
    void *sc = scratch_for(n);
    struct wk_sampling p = params(0.9f);
    p.n_logprobs = 5;
    p.top_p = 0.9f;
    for (uint64_t step = 0; step < 50; step++) {
        struct wk_sample_out a, b;
        memset(&a, 0, sizeof a);
        memset(&b, 0xFF, sizeof b);
        wk_sample_logits(l, n, &p, NULL, 0, step, sc, &a);
        memset(sc, 0x5A, wk_sampler_scratch_bytes(n));
        wk_sample_logits(l, n, &p, NULL, 0, step, sc, &b);
        ck_assert_int_eq(a.token, b.token);
        ck_assert_int_eq(memcmp(&a.logprob, &b.logprob, sizeof a.logprob), 0);
        ck_assert_int_eq(a.n_top, 5);
        ck_assert_int_eq(b.n_top, 5);
        ck_assert_int_eq(memcmp(a.top_logprobs, b.top_logprobs, 5 * sizeof(float)), 0);
        ck_assert_int_eq(memcmp(a.top_ids, b.top_ids, 5 * sizeof(int32_t)), 0);
    }
    /* different seeds (same step) and different steps (same seed) differ */
    int distinct_seeds = 0, distinct_steps = 0;
    int32_t prev_seed = -1, prev_step = -1;
    for (int k = 0; k < 200; k++) {
        p.seed = 1000 + (uint64_t)k;
        int32_t t = sample1(l, n, &p, NULL, 0, 7, sc);
        distinct_seeds += t != prev_seed;
        prev_seed = t;
        p.seed = 42;
        t = sample1(l, n, &p, NULL, 0, (uint64_t)k, sc);
        distinct_steps += t != prev_step;
        prev_step = t;
    }
    /* ~4500 tokens share the mass: consecutive repeats are rare */
    ck_assert_int_ge(distinct_seeds, 190);
    ck_assert_int_ge(distinct_steps, 190);
    free(sc);
    free(l);
}
END_TEST

// ---------------------------------------------------------------------------
// distributions

/* draws at temperature 1: frequencies within 0.01 of the softmax */
static void check_frequencies(int n, const float *l, const struct wk_sampling *p0,
                              const double *expect, int n_expect, int draws) {
    void *sc = scratch_for(n);
    struct wk_sampling p = *p0;
    int *cnt = calloc(n, sizeof(int));
    for (int k = 0; k < draws; k++) cnt[sample1(l, n, &p, NULL, 0, (uint64_t)k, sc)]++;
    double other = 1.0;
    /* within 0.01, or 4.5 standard deviations where fewer draws are affordable */
    for (int i = 0; i < n_expect; i++) {
        double f = cnt[i] / (double)draws;
        double tol = fmax(0.01, 4.5 * sqrt(expect[i] * (1 - expect[i]) / draws));
        if (fabs(f - expect[i]) >= tol)
            ck_abort_msg("token %d: frequency %.4f, softmax %.4f", i, f, expect[i]);
        other -= expect[i];
    }
    int rest = 0;
    for (int i = n_expect; i < n; i++) rest += cnt[i];
    double tol = fmax(0.01, 4.5 * sqrt(other * (1 - other) / draws));
    ck_assert_msg(fabs(rest / (double)draws - other) < tol, "tail frequency %.4f vs %.4f",
                  rest / (double)draws, other);
    free(cnt);
    free(sc);
}

START_TEST(test_frequencies_match_softmax) {
    float l[8] = {1.0f, 0.5f, 2.0f, -1.0f, 0.0f, 1.5f, -3.0f, 0.25f};
    double e[8], s = 0;
    for (int i = 0; i < 8; i++) s += (e[i] = exp(l[i]));
    for (int i = 0; i < 8; i++) e[i] /= s;
    struct wk_sampling p = params(1.0f);
    check_frequencies(8, l, &p, e, 8, 100000);

    /* temperature 2: softmax of l/2 */
    s = 0;
    for (int i = 0; i < 8; i++) s += (e[i] = exp(l[i] / 2.0));
    for (int i = 0; i < 8; i++) e[i] /= s;
    p.temperature = 2.0f;
    check_frequencies(8, l, &p, e, 8, 100000);
}
END_TEST

/* a Qwen-sized vocabulary: a few heavy tokens on top of a spread-out tail
 * that holds ~30% of the mass, so the draw often walks deep into the tail */
START_TEST(test_frequencies_large_vocab) {
    const int n = 151936;
    float *l = malloc(sizeof(float) * n);
    uint64_t st = 9;
    for (int i = 0; i < n; i++) l[i] = frand(&st, -6.0f, 0.0f);
    l[0] = 10.0f;
    l[1] = 9.5f;
    l[2] = 9.0f;
    double s = 0, e[3];
    for (int i = 0; i < n; i++) s += exp((double)l[i]);
    for (int i = 0; i < 3; i++) e[i] = exp((double)l[i]) / s;
    struct wk_sampling p = params(1.0f);
    check_frequencies(n, l, &p, e, 3, 1500);
    free(l);
}
END_TEST

// ---------------------------------------------------------------------------
// top-k, top-p, min-p

START_TEST(test_top_k_1_is_greedy) {
    const int n = 3000;
    float *l = malloc(sizeof(float) * n);
    void *sc = scratch_for(n);
    uint64_t st = 3;
    for (int trial = 0; trial < 40; trial++) {
        for (int i = 0; i < n; i++) l[i] = frand(&st, -2, 2);
        if (trial % 4 == 0) l[trial * 7] = l[trial * 7 + 100] = 3.0f; /* a tie at the top */
        struct wk_sampling g = params(0.0f), p = params(1.5f);
        p.top_k = 1;
        p.seed = (uint64_t)trial;
        int32_t greedy = sample1(l, n, &g, NULL, 0, 0, sc);
        for (uint64_t step = 0; step < 10; step++)
            ck_assert_int_eq(sample1(l, n, &p, NULL, 0, step, sc), greedy);
        if (trial % 4 == 0) ck_assert_int_eq(greedy, trial * 7);
    }
    free(sc);
    free(l);
}
END_TEST

/* draw many times; return the support as a bitmask over the first 16 ids
 * (any token >= 16 sets bit 16) and the counts */
static unsigned support(const float *l, int n, const struct wk_sampling *p, int draws, int *cnt) {
    void *sc = scratch_for(n);
    unsigned mask = 0;
    for (int k = 0; k < draws; k++) {
        int32_t t = sample1(l, n, p, NULL, 0, (uint64_t)k, sc);
        mask |= 1u << (t < 16 ? t : 16);
        if (cnt && t < 16) cnt[t]++;
    }
    free(sc);
    return mask;
}

static void check_truncation(int n, int draws) {
    /* probs 1/2, 1/4, 1/8, 1/16, 1/32 ... over ids 0..9; filler far below */
    float *l = malloc(sizeof(float) * n);
    halving_logits(l, n, 10, -60.0f);
    struct wk_sampling p = params(1.0f);
    int cnt[16] = {0};

    p.top_p = 0.7f; /* 0.5 < 0.7 <= 0.75 -> {0, 1} */
    ck_assert_uint_eq(support(l, n, &p, draws, cnt), 0x3u);
    ck_assert_msg(fabs(cnt[0] / (double)draws - 2.0 / 3.0) < 4.5 * sqrt(2.0 / 9.0 / draws), "p(0|top-p) = %g",
                  cnt[0] / (double)draws);
    p.top_p = 0.8f; /* 0.75 < 0.8 <= 0.875 -> {0, 1, 2} */
    ck_assert_uint_eq(support(l, n, &p, draws, NULL), 0x7u);
    p.top_p = 0.4f; /* the first token alone already has 0.5 */
    ck_assert_uint_eq(support(l, n, &p, draws, NULL), 0x1u);

    p.top_p = 1.0f;
    p.min_p = 0.3f; /* keep prob >= 0.15: {0.5, 0.25} */
    memset(cnt, 0, sizeof cnt);
    ck_assert_uint_eq(support(l, n, &p, draws, cnt), 0x3u);
    ck_assert_msg(fabs(cnt[1] / (double)draws - 1.0 / 3.0) < 4.5 * sqrt(2.0 / 9.0 / draws), "p(1|min-p) = %g",
                  cnt[1] / (double)draws);
    p.min_p = 0.2f; /* keep prob >= 0.1: {0.5, 0.25, 0.125} */
    ck_assert_uint_eq(support(l, n, &p, draws, NULL), 0x7u);
    p.min_p = 0.1f; /* >= 0.05: 0.0625 survives, 0.03125 does not */
    ck_assert_uint_eq(support(l, n, &p, draws, NULL), 0xFu);

    /* together: top-p 0.95 keeps 5 tokens (0.96875), min-p 0.2 then keeps 3 */
    p.top_p = 0.95f;
    p.min_p = 0.2f;
    ck_assert_uint_eq(support(l, n, &p, draws, NULL), 0x7u);
    /* top-k 2 and top-p 0.9: after top-k the probs are 2/3, 1/3 -> both kept */
    p.min_p = 0.0f;
    p.top_k = 2;
    p.top_p = 0.9f;
    ck_assert_uint_eq(support(l, n, &p, draws, NULL), 0x3u);
    /* top-k 3 and top-p 0.5: probs 4/7, 2/7, 1/7 -> only the first */
    p.top_k = 3;
    p.top_p = 0.5f;
    ck_assert_uint_eq(support(l, n, &p, draws, NULL), 0x1u);
    /* top-k 4 alone: ids 0..3 all appear */
    p.top_k = 4;
    p.top_p = 1.0f;
    ck_assert_uint_eq(support(l, n, &p, draws, NULL), 0xFu);
    /* nothing: the filler (1e-26 each, 4e-21 in all) never shows up, but
     * with 20000 draws the 10 hand-made tokens do (the last: p = 2^-10, ~20
     * hits) */
    p.top_k = 0;
    unsigned all = support(l, n, &p, draws, NULL);
    ck_assert_uint_eq(all & ~0x3FFu, 0);
    if (draws >= 20000) ck_assert_uint_eq(all, 0x3FFu);
    free(l);
}

START_TEST(test_top_p_min_p_sets_small) { check_truncation(16, 20000); }
END_TEST

START_TEST(test_top_p_min_p_sets_large) { check_truncation(151936, 150); }
END_TEST

/* the sampler against the naive reference over random configurations */
START_TEST(test_matches_naive_reference) {
    const int sizes[] = {7, 300, 20000, 151936};
    uint64_t st = 77;
    int mismatches = 0, total = 0;
    for (size_t si = 0; si < sizeof sizes / sizeof sizes[0]; si++) {
        int n = sizes[si];
        float *l = malloc(sizeof(float) * n);
        void *sc = scratch_for(n);
        int32_t hist[32];
        for (int cfg = 0; cfg < 12; cfg++) {
            float spread = cfg % 3 == 0 ? 2.0f : cfg % 3 == 1 ? 10.0f : 30.0f;
            for (int i = 0; i < n; i++) l[i] = frand(&st, -spread, spread);
            if (cfg % 4 == 3)
                for (int i = 0; i < n; i += 3) l[i] = l[i / 2]; /* many exact ties */
            for (int j = 0; j < 32; j++) hist[j] = (int32_t)(frand(&st, 0, (float)n - 1));
            struct wk_sampling p = params(cfg % 2 ? 0.7f : 1.3f);
            p.top_k = cfg % 5 == 1 ? 40 : cfg % 5 == 2 ? n / 2 + 1 : 0;
            p.top_p = cfg % 3 == 0 ? 1.0f : cfg % 3 == 1 ? 0.9f : 0.5f;
            p.min_p = cfg % 4 == 2 ? 0.05f : 0.0f;
            p.repetition_penalty = cfg % 2 ? 1.3f : 1.0f;
            p.repeat_last_n = 20;
            p.seed = (uint64_t)cfg * 31 + si;
            for (uint64_t step = 0; step < (n > 50000 ? 3u : 40u); step++) {
                int32_t a = sample1(l, n, &p, hist, 32, step, sc);
                int32_t b = ref_sample(l, n, &p, hist, 32, step);
                total++;
                if (a != b) {
                    mismatches++;
                    fprintf(stderr, "n=%d cfg=%d step=%d: sampler %d, reference %d\n", n, cfg,
                            (int)step, a, b);
                }
            }
        }
        free(sc);
        free(l);
    }
    fprintf(stderr, "naive reference: %d/%d agree\n", total - mismatches, total);
    ck_assert_int_eq(mismatches, 0);
}
END_TEST

// ---------------------------------------------------------------------------
// repetition penalty

START_TEST(test_repetition_penalty) {
    void *sc = scratch_for(4);
    struct wk_sampling p = params(0.0f);
    p.repetition_penalty = 2.0f;
    /* positive logits are divided */
    float a[4] = {2.0f, -1.0f, 1.5f, -0.5f};
    int32_t h1[] = {0, 1};
    ck_assert_int_eq(sample1(a, 4, &p, NULL, 0, 0, sc), 0);
    ck_assert_int_eq(sample1(a, 4, &p, h1, 2, 0, sc), 2); /* 2.0 -> 1.0 < 1.5 */
    /* negative logits are multiplied */
    float b[3] = {-0.3f, -0.2f, -5.0f};
    int32_t h2[] = {1};
    ck_assert_int_eq(sample1(b, 3, &p, NULL, 0, 0, sc), 1);
    ck_assert_int_eq(sample1(b, 3, &p, h2, 1, 0, sc), 0); /* -0.2 -> -0.4 < -0.3 */
    /* each distinct id once: 2.0 -> 1.0 (> 0.75), not 0.5 */
    float c[2] = {2.0f, 0.75f};
    int32_t h3[] = {0, 0, 0};
    ck_assert_int_eq(sample1(c, 2, &p, h3, 3, 0, sc), 0);
    p.repetition_penalty = 3.0f; /* 2/3 < 0.75 */
    ck_assert_int_eq(sample1(c, 2, &p, h3, 3, 0, sc), 1);
    /* the window: only the last repeat_last_n tokens count */
    float c3[3] = {2.0f, 0.75f, -1.0f};
    int32_t h4[] = {0, 2, 2, 2};
    p.repeat_last_n = 3;
    ck_assert_int_eq(sample1(c3, 3, &p, h4, 4, 0, sc), 0);
    p.repeat_last_n = 4;
    ck_assert_int_eq(sample1(c3, 3, &p, h4, 4, 0, sc), 1);
    p.repeat_last_n = 0; /* off */
    ck_assert_int_eq(sample1(c3, 3, &p, h4, 4, 0, sc), 0);
    /* penalty 1 is off; out-of-range history ids are ignored */
    p.repeat_last_n = 64;
    p.repetition_penalty = 1.0f;
    ck_assert_int_eq(sample1(c3, 3, &p, h4, 4, 0, sc), 0);
    int32_t h5[] = {-1, 7, 1 << 30};
    p.repetition_penalty = 3.0f;
    ck_assert_int_eq(sample1(c, 2, &p, h5, 3, 0, sc), 0);
    /* logprob is of the raw logits, not the penalized ones */
    struct wk_sample_out o;
    wk_sample_logits(c, 2, &p, h3, 3, 0, sc, &o);
    ck_assert_int_eq(o.token, 1);
    double lse = log(exp(2.0) + exp(0.75));
    ck_assert_double_eq_tol(o.logprob, 0.75 - lse, 1e-6);
    free(sc);
}
END_TEST

// ---------------------------------------------------------------------------
// logprobs

START_TEST(test_logprobs) {
    const int n = 20;
    float l[20];
    uint64_t st = 5;
    for (int i = 0; i < n; i++) l[i] = frand(&st, -5, 5);
    l[4] = l[11]; /* a tie: 4 must come before 11 */
    void *sc = scratch_for(n);
    struct wk_sampling p = params(0.8f);
    p.n_logprobs = WK_MAX_LOGPROBS;
    struct wk_sample_out o;
    wk_sample_logits(l, n, &p, NULL, 0, 3, sc, &o);
    ck_assert_int_eq(o.n_top, n);
    double m = -INFINITY, s = 0, sum = 0;
    for (int i = 0; i < n; i++) m = fmax(m, l[i]);
    for (int i = 0; i < n; i++) s += exp((double)l[i] - m);
    for (int j = 0; j < n; j++) {
        sum += exp(o.top_logprobs[j]);
        ck_assert_double_eq_tol(o.top_logprobs[j], l[o.top_ids[j]] - m - log(s), 1e-5);
        if (j > 0) {
            ck_assert(o.top_logprobs[j] <= o.top_logprobs[j - 1]);
            if (l[o.top_ids[j]] == l[o.top_ids[j - 1]])
                ck_assert_int_lt(o.top_ids[j - 1], o.top_ids[j]);
        }
        if (o.top_ids[j] == o.token) ck_assert_float_eq(o.top_logprobs[j], o.logprob);
    }
    ck_assert_double_eq_tol(sum, 1.0, 1e-5);
    /* top-3 of a known vector */
    float k[6] = {0.5f, 3.0f, -1.0f, 3.0f, 2.0f, 0.0f};
    p.n_logprobs = 3;
    p.temperature = 0.0f;
    wk_sample_logits(k, 6, &p, NULL, 0, 0, sc, &o);
    ck_assert_int_eq(o.token, 1);
    ck_assert_int_eq(o.n_top, 3);
    ck_assert_int_eq(o.top_ids[0], 1);
    ck_assert_int_eq(o.top_ids[1], 3);
    ck_assert_int_eq(o.top_ids[2], 4);
    double lse = log(exp(0.5) + 2 * exp(3.0) + exp(-1.0) + exp(2.0) + 1.0);
    ck_assert_double_eq_tol(o.logprob, 3.0 - lse, 1e-6);
    ck_assert_double_eq_tol(o.top_logprobs[2], 2.0 - lse, 1e-6);
    /* huge logits: the max shift keeps it finite */
    float big[3] = {1000.0f, 999.0f, -1000.0f};
    wk_sample_logits(big, 3, &p, NULL, 0, 0, sc, &o);
    ck_assert(isfinite(o.logprob));
    ck_assert_double_eq_tol(o.logprob, -log(1.0 + exp(-1.0)), 1e-6);
    /* n_logprobs 0: nothing */
    p.n_logprobs = 0;
    wk_sample_logits(k, 6, &p, NULL, 0, 0, sc, &o);
    ck_assert_int_eq(o.n_top, 0);
    free(sc);
}
END_TEST

// ---------------------------------------------------------------------------
// validation

static void expect_invalid(struct wk_sampling p, const char *field) {
    char err[256] = "";
    wk_status st = wk_sampling_validate(&p, err, sizeof err);
    ck_assert_int_eq(st, WK_STATUS_INVALID_ARGUMENT);
    ck_assert_msg(strstr(err, field) != NULL, "message '%s' does not name %s", err, field);
}

START_TEST(test_validate) {
    char err[256];
    struct wk_sampling ok = params(0.7f);
    ok.top_k = 40;
    ok.top_p = 0.9f;
    ok.min_p = 0.05f;
    ok.repetition_penalty = 1.1f;
    ok.n_logprobs = WK_MAX_LOGPROBS;
    ck_assert_int_eq(wk_sampling_validate(&ok, err, sizeof err), WK_STATUS_OK);
    struct wk_sampling edge = params(100.0f);
    edge.top_p = 0.0f;
    ck_assert_int_eq(wk_sampling_validate(&edge, err, sizeof err), WK_STATUS_OK);
    edge.top_p = 1.0f;
    edge.temperature = 0.0f;
    ck_assert_int_eq(wk_sampling_validate(&edge, err, sizeof err), WK_STATUS_OK);

    struct wk_sampling p = ok;
    p.temperature = -0.1f;
    expect_invalid(p, "temperature");
    p.temperature = 100.5f;
    expect_invalid(p, "temperature");
    p.temperature = NAN;
    expect_invalid(p, "temperature");
    p.temperature = INFINITY;
    expect_invalid(p, "temperature");
    p = ok;
    p.top_p = 1.5f;
    expect_invalid(p, "top_p");
    char e2[256];
    wk_sampling_validate(&p, e2, sizeof e2);
    ck_assert_msg(strstr(e2, "top_p must be in [0, 1], got 1.5"), "%s", e2);
    p.top_p = -0.01f;
    expect_invalid(p, "top_p");
    p.top_p = NAN;
    expect_invalid(p, "top_p");
    p = ok;
    p.min_p = 1.0f;
    expect_invalid(p, "min_p");
    p.min_p = -1.0f;
    expect_invalid(p, "min_p");
    p = ok;
    p.repetition_penalty = 0.0f;
    expect_invalid(p, "repetition_penalty");
    p.repetition_penalty = -1.0f;
    expect_invalid(p, "repetition_penalty");
    p.repetition_penalty = INFINITY;
    expect_invalid(p, "repetition_penalty");
    p = ok;
    p.top_k = -1;
    expect_invalid(p, "top_k");
    p = ok;
    p.n_logprobs = WK_MAX_LOGPROBS + 1;
    expect_invalid(p, "logprobs");
    p.n_logprobs = -1;
    expect_invalid(p, "logprobs");
    p = ok;
    p.repeat_last_n = -2;
    expect_invalid(p, "repeat_last_n");
}
END_TEST

// ---------------------------------------------------------------------------
// degenerate inputs and speed

START_TEST(test_degenerate) {
    void *sc = scratch_for(5);
    struct wk_sampling p = params(1.0f);
    float allneg[5] = {-INFINITY, -INFINITY, -INFINITY, -INFINITY, -INFINITY};
    ck_assert_int_eq(sample1(allneg, 5, &p, NULL, 0, 0, sc), 0);
    float one[5] = {-INFINITY, -INFINITY, 2.0f, NAN, -INFINITY};
    for (uint64_t s = 0; s < 100; s++) ck_assert_int_eq(sample1(one, 5, &p, NULL, 0, s, sc), 2);
    /* a tiny temperature overflows l/T: falls back to argmax */
    float l[5] = {1.0f, 3.0f, 2.0f, 3.5f, 0.0f};
    p.temperature = 1e-38f;
    ck_assert_int_eq(sample1(l, 5, &p, NULL, 0, 0, sc), 3);
    p.temperature = 1e-3f;
    ck_assert_int_eq(sample1(l, 5, &p, NULL, 0, 0, sc), 3);
    /* uniform logits, every token reachable */
    float u[5] = {1, 1, 1, 1, 1};
    p.temperature = 1.0f;
    int seen = 0;
    for (uint64_t s = 0; s < 200; s++) seen |= 1 << sample1(u, 5, &p, NULL, 0, s, sc);
    ck_assert_int_eq(seen, 0x1F);
    free(sc);
}
END_TEST

/* CPU time of this thread: the build machine is shared, and wall time there
 * measures the neighbours */
static double now_ms(void) {
    struct timespec t;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
    return t.tv_sec * 1e3 + t.tv_nsec / 1e6;
}

static int dcmp(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

START_TEST(test_speed_151936) {
    const int n = 151936;
    float *l = malloc(sizeof(float) * n);
    uint64_t st = 11;
    /* roughly LLM-shaped: a broad body with a few strong tokens */
    for (int i = 0; i < n; i++) l[i] = frand(&st, -8.0f, 4.0f);
    for (int i = 0; i < 50; i++) l[(i * 2654435761u) % n] = 6.0f + (float)i * 0.1f;
    void *sc = scratch_for(n);
    int32_t hist[64];
    for (int i = 0; i < 64; i++) hist[i] = (i * 7919) % n;
    struct {
        const char *name;
        float temp, top_p, min_p;
        int top_k, lp;
    } cfgs[] = {
        {"greedy", 0.0f, 1.0f, 0.0f, 0, 0},
        {"t=0.8", 0.8f, 1.0f, 0.0f, 0, 0},
        {"t=0.8 top_p=0.95", 0.8f, 0.95f, 0.0f, 0, 5},
        {"t=1.0 top_p=0.999", 1.0f, 0.999f, 0.0f, 0, 0},
        {"t=0.7 top_k=40 top_p=0.9", 0.7f, 0.9f, 0.0f, 40, 20},
        {"t=1 top_k=50000", 1.0f, 1.0f, 0.0f, 50000, 0},
        {"t=1 min_p=0.05", 1.0f, 1.0f, 0.05f, 0, 0},
        {"t=3 top_p=0.99 (flat)", 3.0f, 0.99f, 0.0f, 0, 0},
    };
    for (size_t c = 0; c < sizeof cfgs / sizeof cfgs[0]; c++) {
        struct wk_sampling p = params(cfgs[c].temp);
        p.top_p = cfgs[c].top_p;
        p.min_p = cfgs[c].min_p;
        p.top_k = cfgs[c].top_k;
        p.n_logprobs = cfgs[c].lp;
        p.repetition_penalty = 1.1f;
        double t[21];
        for (int r = 0; r < 21; r++) {
            double t0 = now_ms();
            (void)sample1(l, n, &p, hist, 64, (uint64_t)r, sc);
            t[r] = now_ms() - t0;
        }
        qsort(t, 21, sizeof t[0], dcmp);
        fprintf(stderr, "sample n=%d %-26s cpu ms: min %.3f median %.3f max %.3f\n", n,
                cfgs[c].name, t[0], t[10], t[20]);
    }
    free(sc);
    free(l);
}
END_TEST

static Suite *sample_suite(void) {
    Suite *s = suite_create("sample");
    TCase *tc = tcase_create("sample");
    tcase_set_timeout(tc, 300);
    tcase_add_test(tc, test_greedy_argmax_ties_lowest);
    tcase_add_test(tc, test_same_seed_same_token);
    tcase_add_test(tc, test_frequencies_match_softmax);
    tcase_add_test(tc, test_frequencies_large_vocab);
    tcase_add_test(tc, test_top_k_1_is_greedy);
    tcase_add_test(tc, test_top_p_min_p_sets_small);
    tcase_add_test(tc, test_top_p_min_p_sets_large);
    tcase_add_test(tc, test_matches_naive_reference);
    tcase_add_test(tc, test_repetition_penalty);
    tcase_add_test(tc, test_logprobs);
    tcase_add_test(tc, test_validate);
    tcase_add_test(tc, test_degenerate);
    /* a benchmark, not a test: prints timings, asserts nothing about them */
    if (getenv("WK_SAMPLE_BENCH")) tcase_add_test(tc, test_speed_151936);
    suite_add_tcase(s, tc);
    return s;
}

int main(void) {
    return tu_run_suite(sample_suite());
}
