/* test-cuda.c — the CUDA backend against the CPU backend (the oracle).
 *
 *   - every ../shared/models/tiny-qwen2-* variant, stories260K, and a BF16
 *     copy of tiny-qwen2-f32 made in memory (no shipped file is BF16): per-layer
 *     hidden states and logits of a batched prefill and of teacher-forced
 *     one-token decode steps (eager, with hidden states recorded, and again
 *     through the captured CUDA graph), relative L2 error per weight type
 *     printed and bounded;
 *   - greedy tokens identical to llama.cpp's reference: stories260K (100),
 *     tiny-qwen2-f32 (32, both prompts);
 *   - a long context: a 2,100-token prompt (four prefill chunks, split decode
 *     attention) against the CPU;
 *   - the GPU sampler against worker/sample.c on the same logits, over many
 *     parameter sets and seeds (same token, logprob, top-N);
 *   - reproducibility: 10 runs of one seeded request give identical streams;
 *   - batch invariance, every weight type: a sequence's logits (every prompt
 *     row and four decode steps) are bit-identical run alone in one prefill
 *     step and run in chunks of 7/13/25 tokens inside batches with other
 *     sequences' prefill chunks and decode rows, on scattered pages, and
 *     decoded through the 4-row graph beside two others.
 *
 * Without a GPU (or in a -Dcuda=disabled build) it prints SKIP and exits 77.
 * One CUDA context serves every test, so Check's fork mode is off.
 */
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "loader/model.h"
#include "loader/quants.h"
#include "tests/testutil.h"
#include "core/backend.h"
#include "core/sample.h"

#define CTX 256

/* Tolerances (relative L2 vs the CPU backend). The CPU keeps K/V in fp32
 * and computes every matrix in fp32; the GPU keeps K/V in f16, and prefill
 * feeds f16 activations to the tensor cores for non-F32 weights. */
#define TOL_PREFILL 2e-2
#define TOL_DECODE 1e-2


static struct wk_model *load(const char *rel) {
    char path[512], err[512];
    tu_shared_path(path, sizeof path, rel);
    if (!tu_have_file(path, "model")) return NULL;
    struct wk_model *m = calloc(1, sizeof *m);
    wk_status s = wk_model_load(path, m, err, sizeof err);
    ck_assert_msg(s == WK_STATUS_OK, "%s: %s", rel, err);
    return m;
}

static void unload(struct wk_model *m) {
    wk_model_free(m);
    free(m);
}

static struct wk_backend *cuda(const struct wk_model *m, int n_ctx) {
    char err[512];
    struct wk_backend *b = NULL;
    wk_status s = wk_backend_cuda_create(m, &(struct wk_backend_config){.n_ctx = n_ctx}, &b, err, sizeof err);
    ck_assert_msg(s == WK_STATUS_OK, "cuda create: %s", err);
    return b;
}

static struct wk_backend *cpu(const struct wk_model *m, int n_ctx) {
    char err[512];
    struct wk_backend *b = NULL;
    ck_assert_int_eq(wk_backend_cpu_create(m, &(struct wk_backend_config){.n_ctx = n_ctx}, &b, err, sizeof err), WK_STATUS_OK);
    return b;
}

static void fwd(struct wk_backend *b, const int32_t *t, int n, int pos, float *logits, bool all) {
    char err[512];
    wk_status s = wk_backend_forward_one(b, t, n, pos, logits, all, err, sizeof err);
    ck_assert_msg(s == WK_STATUS_OK, "%s forward(n=%d, pos=%d): %s", b->ops->name, n, pos, err);
}

/* Worst relative L2 over layers 0..n_layer of the recorded hidden states. */
static double hidden_err(struct wk_backend *g, struct wk_backend *c, int n_rows) {
    const struct wk_hparams *hp = &g->model->hp;
    size_t sz = (size_t)n_rows * hp->n_embd;
    float *a = malloc(sz * sizeof *a), *b = malloc(sz * sizeof *b);
    char err[256];
    double worst = 0;
    for (int l = 0; l <= hp->n_layer; l++) {
        for (size_t i = 0; i < sz; i++) a[i] = NAN; /* poison: every element must be written */
        ck_assert_msg(g->ops->get_hidden(g, l, a, err, sizeof err) == WK_STATUS_OK, "%s", err);
        ck_assert_msg(c->ops->get_hidden(c, l, b, err, sizeof err) == WK_STATUS_OK, "%s", err);
        double e = tu_rel_l2(a, b, sz);
        ck_assert_msg(e == e, "layer %d: NaN in the GPU's hidden state", l);
        if (e > worst) worst = e;
    }
    free(a);
    free(b);
    return worst;
}

static double rows_err(const float *a, const float *b, int rows, int V) {
    double worst = 0;
    for (int r = 0; r < rows; r++) {
        double e = tu_rel_l2(a + (size_t)r * V, b + (size_t)r * V, V);
        if (!(e == e)) return INFINITY;
        if (e > worst) worst = e;
    }
    return worst;
}

// --- CUDA vs CPU on every model --------------------------------------------------------

static const char *models[] = {"stories260K", "tiny-qwen2-f32", "tiny-qwen2-f16", "tiny-qwen2-q8_0",
                               "tiny-qwen2-q4_0", "tiny-qwen2-q4_1", "tiny-qwen2-q5_0", "tiny-qwen2-q5_1",
                               "tiny-qwen2-q6_k", "tiny-qwen2-q4_k_m", "tiny-qwen2-q5_k_m", "tiny-qwen2-bf16"};

/* No shipped model is BF16: make one in memory from the F32 model, every
 * matrix (and token_embd) rounded to bfloat16 (nearest even); norms and
 * biases stay F32. Returns the buffers to free. */
static uint16_t bf16_round(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    return (uint16_t)((u + 0x7FFFu + ((u >> 16) & 1u)) >> 16);
}

static void *to_bf16(struct wk_tensor *t) {
    ck_assert_int_eq(t->type, GGML_TYPE_F32);
    size_t n = (size_t)t->ne[0] * (size_t)t->ne[1];
    uint16_t *b = malloc(n * sizeof *b);
    const float *f = t->data;
    for (size_t i = 0; i < n; i++) b[i] = bf16_round(f[i]);
    t->type = GGML_TYPE_BF16;
    t->data = b;
    t->nbytes = n * sizeof *b;
    return b;
}

static void **make_bf16(struct wk_model *m, size_t *n_bufs) {
    void **bufs = calloc(2 + 7 * (size_t)m->hp.n_layer, sizeof *bufs);
    size_t k = 0;
    bufs[k++] = to_bf16(&m->tok_embd);
    if (m->tied_output) m->output = m->tok_embd;
    else bufs[k++] = to_bf16(&m->output);
    for (int l = 0; l < m->hp.n_layer; l++) {
        struct wk_layer *L = &m->layers[l];
        struct wk_tensor *mats[7] = {&L->wq, &L->wk, &L->wv, &L->wo, &L->w_gate, &L->w_up, &L->w_down};
        for (int i = 0; i < 7; i++) bufs[k++] = to_bf16(mats[i]);
    }
    *n_bufs = k;
    return bufs;
}

START_TEST(vs_cpu) {
    const char *name = models[_i];
    const bool bf16 = strcmp(name, "tiny-qwen2-bf16") == 0;
    char rel[256], path[512];
    snprintf(rel, sizeof rel, "models/%s.gguf", bf16 ? "tiny-qwen2-f32" : name);
    struct wk_model *m = load(rel);
    if (!m) return;
    size_t n_bufs = 0;
    void **bufs = bf16 ? make_bf16(m, &n_bufs) : NULL;
    /* prompt + continuation from the reference logs */
    if (strcmp(name, "stories260K") == 0)
        snprintf(rel, sizeof rel, "reference/stories260K/once.txt");
    else
        snprintf(rel, sizeof rel, "reference/tiny-qwen2/%s.chat.exact.txt", bf16 ? "f32" : name + strlen("tiny-qwen2-"));
    size_t np, ng;
    int32_t *prompt = tu_read_ids(tu_shared_path(path, sizeof path, rel), "prompt_ids", &np);
    int32_t *gen = tu_read_ids(path, "gen_ids", &ng);
    ck_assert_msg(prompt && gen && np > 1 && ng >= 16, "%s: reference ids", path);
    const int n_dec = 16, V = m->hp.n_vocab;

    struct wk_backend *g = cuda(m, CTX), *c = cpu(m, CTX);
    g->record_hidden = c->record_hidden = true;
    float *lg = malloc((np + n_dec) * (size_t)V * sizeof(float));
    float *lc = malloc((np + n_dec) * (size_t)V * sizeof(float));
    for (size_t i = 0; i < np * (size_t)V; i++) lg[i] = NAN;

    /* prefill: every row's logits, hidden states of every layer */
    fwd(g, prompt, (int)np, 0, lg, true);
    fwd(c, prompt, (int)np, 0, lc, true);
    double e_ph = hidden_err(g, c, (int)np);
    double e_pl = rows_err(lg, lc, (int)np, V);

    /* decode, eager with hidden states */
    double e_dh = 0, e_dl = 0;
    for (int k = 0; k < n_dec; k++) {
        fwd(g, &gen[k], 1, (int)np + k, lg + (size_t)k * V, false);
        fwd(c, &gen[k], 1, (int)np + k, lc + (size_t)k * V, false);
        double e = hidden_err(g, c, 1);
        if (e > e_dh) e_dh = e;
    }
    e_dl = rows_err(lg, lc, n_dec, V);

    /* the same again through the CUDA graph (no hidden states), from a
     * prefill of only the last row's logits */
    g->record_hidden = false;
    float *lg2 = malloc((size_t)(n_dec + 1) * V * sizeof(float));
    fwd(g, prompt, (int)np, 0, lg2, false);
    for (int k = 0; k < n_dec; k++) fwd(g, &gen[k], 1, (int)np + k, lg2 + (size_t)(k + 1) * V, false);
    double e_graph = rows_err(lg2 + V, lc, n_dec, V);
    /* graph and eager decode run the same kernels: bitwise equal */
    ck_assert_msg(memcmp(lg2 + V, lg, (size_t)n_dec * V * sizeof(float)) == 0,
                  "%s: graph decode differs from eager decode", name);

    /* prefill's last row vs the one-token path on the same position */
    fwd(c, prompt, (int)np, 0, lc, false);
    double e_plast = tu_rel_l2(lg2, lc, V);

    fprintf(stderr,
            "REL-L2 %-18s type %-7s prefill(n=%zu): hidden %.2e logits %.2e last %.2e | decode: hidden %.2e "
            "logits %.2e graph %.2e\n",
            name, bf16 ? "bf16" : m->ftype_name, np, e_ph, e_pl, e_plast, e_dh, e_dl, e_graph);
    ck_assert_msg(e_ph < TOL_PREFILL && e_pl < TOL_PREFILL && e_plast < TOL_PREFILL, "%s prefill: %g %g %g", name, e_ph,
                  e_pl, e_plast);
    ck_assert_msg(e_dh < TOL_DECODE && e_dl < TOL_DECODE && e_graph < TOL_DECODE, "%s decode: %g %g %g", name, e_dh,
                  e_dl, e_graph);

    free(lg); free(lc); free(lg2); free(prompt); free(gen);
    wk_backend_free(g);
    wk_backend_free(c);
    unload(m);
    for (size_t i = 0; i < n_bufs; i++) free(bufs[i]);
    free(bufs);
}
END_TEST

// --- greedy equals the reference --------------------------------------------------------

static void greedy(struct wk_backend *b, const int32_t *prompt, size_t np, int32_t *out, size_t n) {
    char err[256];
    int32_t *hist = malloc((np + n) * sizeof *hist);
    memcpy(hist, prompt, np * sizeof *hist);
    fwd(b, prompt, (int)np, 0, NULL, false);
    struct wk_sampling gp = {.temperature = 0, .top_p = 1, .repetition_penalty = 1};
    for (size_t k = 0; k < n; k++) {
        struct wk_sample_out so;
        ck_assert_msg(wk_backend_sample_one(b, &gp, hist, np + k, k, &so, err, sizeof err) == WK_STATUS_OK, "%s", err);
        out[k] = so.token;
        hist[np + k] = so.token;
        if (k + 1 < n) fwd(b, &so.token, 1, (int)(np + k), NULL, false);
    }
    free(hist);
}

START_TEST(greedy_stories_100) {
    struct wk_model *m = load("models/stories260K.gguf");
    if (!m) return;
    char ref[512];
    size_t np, ng;
    int32_t *prompt = tu_read_ids(tu_shared_path(ref, sizeof ref, "reference/stories260K/once.txt"), "prompt_ids", &np);
    int32_t *want = tu_read_ids(ref, "gen_ids", &ng);
    ck_assert(prompt && want && ng == 100);
    struct wk_backend *g = cuda(m, CTX);
    int32_t got[100];
    greedy(g, prompt, np, got, 100);
    for (int i = 0; i < 100; i++) ck_assert_msg(got[i] == want[i], "token %d: got %d want %d", i, got[i], want[i]);
    fprintf(stderr, "GREEDY stories260K: 100/100 tokens equal the reference\n");
    free(prompt); free(want);
    wk_backend_free(g);
    unload(m);
}
END_TEST

START_TEST(greedy_qwen_f32) {
    struct wk_model *m = load("models/tiny-qwen2-f32.gguf");
    if (!m) return;
    struct wk_backend *g = cuda(m, CTX);
    const char *pr[] = {"once", "chat"};
    for (int p = 0; p < 2; p++) {
        char rel[128], ref[512];
        snprintf(rel, sizeof rel, "reference/tiny-qwen2/f32.%s.txt", pr[p]);
        size_t np, ng;
        int32_t *prompt = tu_read_ids(tu_shared_path(ref, sizeof ref, rel), "prompt_ids", &np);
        int32_t *want = tu_read_ids(ref, "gen_ids", &ng);
        ck_assert(prompt && want && ng == 32);
        int32_t got[32];
        greedy(g, prompt, np, got, 32);
        for (int i = 0; i < 32; i++)
            ck_assert_msg(got[i] == want[i], "%s token %d: got %d want %d", pr[p], i, got[i], want[i]);
        fprintf(stderr, "GREEDY tiny-qwen2-f32 %s: 32/32 tokens equal the reference\n", pr[p]);
        free(prompt); free(want);
    }
    wk_backend_free(g);
    unload(m);
}
END_TEST

// --- long context -----------------------------------------------------------------------

START_TEST(long_context) {
    struct wk_model *m = load("models/tiny-qwen2-f32.gguf");
    if (!m) return;
    const int n = 2100, n_dec = 8, ctx = 2304, V = m->hp.n_vocab;
    int32_t *ids = malloc((n + n_dec) * sizeof *ids);
    uint64_t z = 12345;
    for (int i = 0; i < n + n_dec; i++) {
        z = z * 6364136223846793005ull + 1442695040888963407ull;
        ids[i] = (int32_t)((z >> 33) % 1024);
    }
    struct wk_backend *g = cuda(m, ctx), *c = cpu(m, ctx);
    float *lg = malloc((size_t)(n_dec + 1) * V * sizeof(float)), *lc = malloc((size_t)(n_dec + 1) * V * sizeof(float));
    fwd(g, ids, n, 0, lg, false);
    fwd(c, ids, n, 0, lc, false);
    double e_p = tu_rel_l2(lg, lc, V);
    for (int k = 0; k < n_dec; k++) {
        fwd(g, &ids[n + k], 1, n + k, lg + (size_t)(k + 1) * V, false);
        fwd(c, &ids[n + k], 1, n + k, lc + (size_t)(k + 1) * V, false);
    }
    double e_d = rows_err(lg + V, lc + V, n_dec, V);
    fprintf(stderr, "LONG tiny-qwen2-f32 prompt %d tokens: prefill last-row logits rel L2 %.2e, decode (%d steps) %.2e\n",
            n, e_p, n_dec, e_d);
    ck_assert_msg(e_p < TOL_PREFILL && e_d < TOL_DECODE, "long context: %g %g", e_p, e_d);
    /* past the context: refused */
    char err[256];
    ck_assert_int_eq(wk_backend_forward_one(g, ids, 10, ctx - 5, NULL, false, err, sizeof err), WK_STATUS_OUT_OF_RANGE);
    int32_t bad = V;
    ck_assert_int_eq(wk_backend_forward_one(g, &bad, 1, 0, NULL, false, err, sizeof err), WK_STATUS_INVALID_ARGUMENT);
    free(ids); free(lg); free(lc);
    wk_backend_free(g);
    wk_backend_free(c);
    unload(m);
}
END_TEST

// --- sampler ------------------------------------------------------------------------------

START_TEST(sampler_vs_cpu) {
    const char *files[] = {"models/tiny-qwen2-q8_0.gguf", "models/stories260K.gguf"};
    struct wk_sampling sets[] = {
        {.temperature = 0, .top_p = 1, .repetition_penalty = 1, .n_logprobs = 5},
        {.temperature = 0, .top_p = 1, .repetition_penalty = 1.3f, .repeat_last_n = 64, .n_logprobs = 3},
        {.temperature = 0.7f, .top_p = 1, .repetition_penalty = 1},
        {.temperature = 1.0f, .top_k = 40, .top_p = 1, .repetition_penalty = 1, .n_logprobs = 20},
        {.temperature = 0.8f, .top_p = 0.9f, .repetition_penalty = 1},
        {.temperature = 1.2f, .top_p = 1, .min_p = 0.05f, .repetition_penalty = 1},
        {.temperature = 0.9f, .top_k = 50, .top_p = 0.95f, .min_p = 0.02f, .repetition_penalty = 1.1f,
         .repeat_last_n = 32, .n_logprobs = 4},
        {.temperature = 2.0f, .top_k = 1, .top_p = 1, .repetition_penalty = 1},
        {.temperature = 1.5f, .top_p = 0.5f, .repetition_penalty = 0.8f, .repeat_last_n = 200},
    };
    const int n_sets = (int)(sizeof sets / sizeof *sets);
    int checked = 0, mismatched = 0;
    for (int f = 0; f < 2; f++) {
        struct wk_model *m = load(files[f]);
        if (!m) continue;
        const int V = m->hp.n_vocab;
        struct wk_backend *g = cuda(m, CTX);
        int32_t hist[96];
        for (int i = 0; i < 96; i++) hist[i] = (i * 97 + 13) % (V < 1000 ? V : 1000);
        float *logits = malloc((size_t)V * sizeof *logits);
        void *scratch = malloc(wk_sampler_scratch_bytes(V));
        char err[256];
        for (int pos = 0; pos < 4; pos++) {
            fwd(g, hist, 8 + pos, 0, logits, false); /* different logits each round */
            for (int s = 0; s < n_sets; s++)
                for (uint64_t seed = 1; seed <= 12; seed++) {
                    struct wk_sampling p = sets[s];
                    p.seed = seed * 7919 + (uint64_t)pos;
                    struct wk_sample_out og, oc;
                    memset(&og, 0, sizeof og);
                    memset(&oc, 0, sizeof oc);
                    uint64_t step = seed * 3;
                    ck_assert_msg(wk_backend_sample_one(g, &p, hist, 96, step, &og, err, sizeof err) == WK_STATUS_OK, "%s", err);
                    wk_sample_logits(logits, V, &p, hist, 96, step, scratch, &oc);
                    checked++;
                    bool ok = og.token == oc.token && fabsf(og.logprob - oc.logprob) <= 1e-4f + 1e-5f * fabsf(oc.logprob) &&
                              og.n_top == oc.n_top;
                    for (int j = 0; ok && j < oc.n_top; j++)
                        ok = og.top_ids[j] == oc.top_ids[j] &&
                             fabsf(og.top_logprobs[j] - oc.top_logprobs[j]) <= 1e-4f + 1e-5f * fabsf(oc.top_logprobs[j]);
                    if (!ok) {
                        mismatched++;
                        fprintf(stderr, "SAMPLER mismatch %s set %d seed %llu: gpu %d (%g, n_top %d) cpu %d (%g, n_top %d)\n",
                                files[f], s, (unsigned long long)p.seed, og.token, og.logprob, og.n_top, oc.token,
                                oc.logprob, oc.n_top);
                    }
                }
        }
        free(logits);
        free(scratch);
        wk_backend_free(g);
        unload(m);
    }
    fprintf(stderr, "SAMPLER %d draws compared with worker/sample.c, %d mismatches\n", checked, mismatched);
    ck_assert_int_eq(mismatched, 0);
}
END_TEST

// --- reproducibility --------------------------------------------------------------------------

/* One request: prefill + n sampled tokens; tokens and logprob bits out. */
static void run_request(struct wk_backend *b, const int32_t *prompt, size_t np, int n, uint32_t *stream) {
    char err[256];
    int32_t *hist = malloc((np + n) * sizeof *hist);
    memcpy(hist, prompt, np * sizeof *hist);
    fwd(b, prompt, (int)np, 0, NULL, false);
    struct wk_sampling p = {.temperature = 0.9f, .top_k = 0, .top_p = 0.95f, .min_p = 0, .repetition_penalty = 1.05f,
                            .repeat_last_n = 64, .seed = 424242, .n_logprobs = 2};
    for (int k = 0; k < n; k++) {
        struct wk_sample_out so;
        ck_assert_msg(wk_backend_sample_one(b, &p, hist, np + k, (uint64_t)k, &so, err, sizeof err) == WK_STATUS_OK, "%s", err);
        hist[np + k] = so.token;
        stream[2 * k] = (uint32_t)so.token;
        memcpy(&stream[2 * k + 1], &so.logprob, 4);
        if (k + 1 < n) fwd(b, &so.token, 1, (int)np + k, NULL, false);
    }
    free(hist);
}

START_TEST(reproducible_10_runs) {
    struct wk_model *m = load("models/tiny-qwen2-q4_k_m.gguf");
    if (!m) return;
    int32_t prompt[24];
    for (int i = 0; i < 24; i++) prompt[i] = (i * 131 + 7) % 1000;
    const int n = 64;
    uint32_t first[2 * 64], again[2 * 64];
    struct wk_backend *g = cuda(m, CTX);
    run_request(g, prompt, 24, n, first);
    int same = 1;
    for (int r = 1; r < 10; r++) {
        /* runs 1..4 on the same backend, 5..9 on fresh ones */
        if (r == 5) {
            wk_backend_free(g);
            g = cuda(m, CTX);
        }
        run_request(g, prompt, 24, n, again);
        if (memcmp(first, again, sizeof first) == 0) same++;
    }
    fprintf(stderr, "REPRO tiny-qwen2-q4_k_m seed 424242: %d/10 runs byte-identical (%d tokens)\n", same, n);
    ck_assert_int_eq(same, 10);
    wk_backend_free(g);
    unload(m);
}
END_TEST

// --- batch invariance ----------------------------------------------------------------

#define INV_NA 45
#define INV_ND 4

static void fwd_batch(struct wk_backend *b, struct wk_batch_seq *seqs, int n) {
    char err[512];
    struct wk_batch batch = {n, seqs};
    wk_status s = b->ops->forward(b, &batch, err, sizeof err);
    ck_assert_msg(s == WK_STATUS_OK, "forward of %d sequences: %s", n, err);
}

/* A's logits alone vs inside mixed batches, bit for bit. */
START_TEST(batch_invariant) {
    const char *name = models[_i];
    if (strcmp(name, "tiny-qwen2-bf16") == 0) return; /* same kernels as f32 */
    char rel[256];
    snprintf(rel, sizeof rel, "models/%s.gguf", name);
    struct wk_model *m = load(rel);
    if (!m) return;
    const int V = m->hp.n_vocab, top = V < 1000 ? V : 1000;
    int32_t a[INV_NA + INV_ND], bt[64], ct[64];
    for (int i = 0; i < INV_NA + INV_ND; i++) a[i] = (i * 37 + 11) % top;
    for (int i = 0; i < 64; i++) bt[i] = (i * 53 + 5) % top, ct[i] = (i * 71 + 3) % top;
    char err[512];
    struct wk_backend *g = NULL;
    struct wk_backend_config cfg = {.n_ctx = CTX, .kv_tokens = 64 * WK_KV_PAGE_TOKENS, .max_seqs = 8,
                                    .max_step_tokens = 64};
    ck_assert_msg(wk_backend_cuda_create(m, &cfg, &g, err, sizeof err) == WK_STATUS_OK, "%s", err);
    const size_t rowb = (size_t)V * sizeof(float);
    float *ref = malloc((INV_NA + INV_ND) * rowb), *got = malloc((INV_NA + INV_ND) * rowb);
    float *junk = malloc(64 * rowb);

    /* alone: pages 0..3, the prompt in one step, then one decode row per step */
    int32_t pa0[8] = {0, 1, 2, 3, 4, 5, 6, 7};
    struct wk_batch_seq q = {.tokens = a, .n_tokens = INV_NA, .pos = 0, .pages = pa0, .n_pages = 8, .sample = true,
                             .logits = ref};
    fwd_batch(g, &q, 1);
    for (int k = 0; k < INV_ND; k++) {
        q = (struct wk_batch_seq){.tokens = &a[INV_NA + k], .n_tokens = 1, .pos = INV_NA + k, .pages = pa0,
                                  .n_pages = 8, .sample = true, .logits = ref + (size_t)(INV_NA + k) * V};
        fwd_batch(g, &q, 1);
    }

    /* batched: A on scattered pages, in chunks 7 / 13 / 25 beside B and C */
    int32_t pa[8] = {40, 17, 9, 33, 22, 50, 12, 61}, pb[8] = {20, 21, 23, 24, 25, 26, 27, 28};
    int32_t pc[8] = {30, 31, 32, 34, 35, 36, 37, 38};
    for (size_t i = 0; i < (INV_NA + INV_ND) * (size_t)V; i++) got[i] = NAN;
    struct wk_batch_seq s3[3];
    s3[0] = (struct wk_batch_seq){.tokens = bt, .n_tokens = 20, .pos = 0, .pages = pb, .n_pages = 8};
    s3[1] = (struct wk_batch_seq){.tokens = a, .n_tokens = 7, .pos = 0, .pages = pa, .n_pages = 8, .logits = got};
    s3[2] = (struct wk_batch_seq){.tokens = ct, .n_tokens = 5, .pos = 0, .pages = pc, .n_pages = 8, .sample = true,
                                  .logits = junk};
    fwd_batch(g, s3, 3);
    s3[0] = (struct wk_batch_seq){.tokens = &a[7], .n_tokens = 13, .pos = 7, .pages = pa, .n_pages = 8,
                                  .logits = got + (size_t)7 * V};
    s3[1] = (struct wk_batch_seq){.tokens = &bt[20], .n_tokens = 1, .pos = 20, .pages = pb, .n_pages = 8,
                                  .sample = true};
    s3[2] = (struct wk_batch_seq){.tokens = &ct[5], .n_tokens = 25, .pos = 5, .pages = pc, .n_pages = 8};
    fwd_batch(g, s3, 3);
    s3[0] = (struct wk_batch_seq){.tokens = &bt[21], .n_tokens = 1, .pos = 21, .pages = pb, .n_pages = 8,
                                  .sample = true};
    s3[1] = (struct wk_batch_seq){.tokens = &ct[30], .n_tokens = 1, .pos = 30, .pages = pc, .n_pages = 8};
    s3[2] = (struct wk_batch_seq){.tokens = &a[20], .n_tokens = 25, .pos = 20, .pages = pa, .n_pages = 8,
                                  .sample = true, .logits = got + (size_t)20 * V};
    fwd_batch(g, s3, 3);
    /* decode: A, B, C as one 3-row step (the 4-row graph with a padding row) */
    for (int k = 0; k < INV_ND; k++) {
        s3[0] = (struct wk_batch_seq){.tokens = &ct[31 + k], .n_tokens = 1, .pos = 31 + k, .pages = pc, .n_pages = 8,
                                      .sample = true};
        s3[1] = (struct wk_batch_seq){.tokens = &a[INV_NA + k], .n_tokens = 1, .pos = INV_NA + k, .pages = pa,
                                      .n_pages = 8, .sample = true, .logits = got + (size_t)(INV_NA + k) * V};
        s3[2] = (struct wk_batch_seq){.tokens = &bt[22 + k], .n_tokens = 1, .pos = 22 + k, .pages = pb, .n_pages = 8,
                                      .sample = true};
        fwd_batch(g, s3, 3);
    }
    int bad_rows = 0, first_bad = -1;
    for (int r = 0; r < INV_NA + INV_ND; r++)
        if (memcmp(ref + (size_t)r * V, got + (size_t)r * V, rowb) != 0) {
            if (first_bad < 0) first_bad = r;
            bad_rows++;
        }
    double e = first_bad >= 0 ? tu_rel_l2(got + (size_t)first_bad * V, ref + (size_t)first_bad * V, V) : 0;
    fprintf(stderr, "INVARIANT %-18s %d/%d logit rows bit-identical alone vs batched/chunked%s",
            name, INV_NA + INV_ND - bad_rows, INV_NA + INV_ND, bad_rows ? "" : "\n");
    if (bad_rows) fprintf(stderr, " (first differing row %d, rel L2 %.2e)\n", first_bad, e);
    ck_assert_msg(bad_rows == 0, "%s: %d rows differ (first %d)", name, bad_rows, first_bad);
    free(ref), free(got), free(junk);
    wk_backend_free(g);
    unload(m);
}
END_TEST

// --- benchmark (test-cuda --bench MODEL.gguf) ------------------------------------------------

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* Aggregate greedy decode tokens/s with S concurrent sequences (16-token
 * prompts, then n_gen steps of S decode rows each, sample() every step), and
 * prefill tokens/s of one prompt of P tokens in steps of up to 2048. One JSON
 * line per measurement on stdout. */
static int bench(const char *path) {
    char err[512];
    struct wk_model m;
    memset(&m, 0, sizeof m);
    if (wk_model_load(path, &m, err, sizeof err) != WK_STATUS_OK) {
        fprintf(stderr, "bench: %s\n", err);
        return 1;
    }
    /* BENCH_QUICK=1 (profiling): 1 and 64 streams, a 512-token prefill */
    const bool quick = getenv("BENCH_QUICK") != NULL;
    const int streams[] = {1, 8, 32, 64}, n_gen = 64;
    struct wk_backend *b = NULL;
    struct wk_backend_config cfg = {.n_ctx = 1024, .max_seqs = 64, .max_step_tokens = 1024};
    if (wk_backend_cuda_create(&m, &cfg, &b, err, sizeof err) != WK_STATUS_OK) {
        fprintf(stderr, "bench: %s\n", err);
        return 1;
    }
    const int ppseq = 1024 / WK_KV_PAGE_TOKENS;
    int32_t *pages = malloc((size_t)64 * ppseq * sizeof *pages);
    for (int i = 0; i < 64 * ppseq; i++) pages[i] = i;
    struct wk_batch_seq seqs[64];
    struct wk_sample_req reqs[64];
    struct wk_sample_out outs[64];
    int32_t prompt[64][16], cur[64];
    int32_t hist[64][16 + 128];
    struct wk_sampling gp = {.temperature = 0, .top_p = 1, .repetition_penalty = 1};
    for (int si = 0; si < 4; si++) {
        const int S = streams[si];
        if ((quick && S != 1 && S != 64) || getenv("BENCH_PREFILL")) continue;
        for (int rep = 0; rep < 2; rep++) {
            for (int i = 0; i < S; i++) {
                for (int t = 0; t < 16; t++) prompt[i][t] = hist[i][t] = (i * 131 + t * 17 + 1) % 1000;
                seqs[i] = (struct wk_batch_seq){.tokens = prompt[i], .n_tokens = 16, .pos = 0,
                                                .pages = pages + (size_t)i * ppseq, .n_pages = ppseq, .sample = true};
                reqs[i] = (struct wk_sample_req){.seq = i, .p = &gp, .history = hist[i], .n_history = 16, .step = 0};
            }
            struct wk_batch batch = {S, seqs};
            if (b->ops->forward(b, &batch, err, sizeof err) != WK_STATUS_OK ||
                b->ops->sample(b, reqs, S, outs, err, sizeof err) != WK_STATUS_OK) {
                fprintf(stderr, "bench: %s\n", err);
                return 1;
            }
            const double t0 = now_s();
            for (int k = 0; k < n_gen; k++) {
                for (int i = 0; i < S; i++) {
                    cur[i] = outs[i].token;
                    seqs[i].tokens = &cur[i];
                    seqs[i].n_tokens = 1;
                    seqs[i].pos = 16 + k;
                    reqs[i].step = (uint64_t)k + 1;
                }
                if (b->ops->forward(b, &batch, err, sizeof err) != WK_STATUS_OK ||
                    b->ops->sample(b, reqs, S, outs, err, sizeof err) != WK_STATUS_OK) {
                    fprintf(stderr, "bench: %s\n", err);
                    return 1;
                }
            }
            const double dt = now_s() - t0;
            if (rep == 1)
                printf("{\"model\": \"%s\", \"ftype\": \"%s\", \"device\": \"%s\", \"streams\": %d, \"decode_tok_s\": %.1f, "
                       "\"step_ms\": %.3f}\n", m.name, m.ftype_name, b->info.device, S, S * n_gen / dt, dt * 1e3 / n_gen);
        }
    }
    wk_backend_free(b);
    const int plens[] = {512, 4096, 16384};
    for (int pi = 0; pi < (quick ? 1 : 3); pi++) {
        const int P = plens[pi];
        struct wk_backend_config pc = {.n_ctx = P, .kv_tokens = P, .max_seqs = 1, .max_step_tokens = P < 2048 ? P : 2048};
        if (wk_backend_cuda_create(&m, &pc, &b, err, sizeof err) != WK_STATUS_OK) {
            fprintf(stderr, "bench: %s\n", err);
            return 1;
        }
        int32_t *ids = malloc((size_t)P * sizeof *ids);
        for (int i = 0; i < P; i++) ids[i] = (i * 7919 + 3) % 1000;
        double best = 1e30;
        for (int rep = 0; rep < 3; rep++) {
            const double t0 = now_s();
            if (wk_backend_forward_one(b, ids, P, 0, NULL, false, err, sizeof err) != WK_STATUS_OK) {
                fprintf(stderr, "bench: %s\n", err);
                return 1;
            }
            struct wk_sample_out so;
            wk_backend_sample_one(b, &gp, ids, (size_t)P, 0, &so, err, sizeof err); /* waits for the GPU */
            const double dt = now_s() - t0;
            if (dt < best) best = dt;
        }
        printf("{\"model\": \"%s\", \"ftype\": \"%s\", \"device\": \"%s\", \"prefill_tokens\": %d, \"prefill_tok_s\": %.0f}\n",
               m.name, m.ftype_name, b->info.device, P, P / best);
        free(ids);
        wk_backend_free(b);
    }
    free(pages);
    wk_model_free(&m);
    return 0;
}

// --- main --------------------------------------------------------------------------------------

int main(int argc, char **argv) {
    if (argc == 3 && strcmp(argv[1], "--bench") == 0) return bench(argv[2]);
    /* Is there a GPU? (stories260K is small and always shipped with the tests) */
    char path[512], err[512];
    tu_shared_path(path, sizeof path, "models/stories260K.gguf");
    if (!tu_have_file(path, "test-cuda")) return 77;
    struct wk_model probe;
    memset(&probe, 0, sizeof probe);
    if (wk_model_load(path, &probe, err, sizeof err) != WK_STATUS_OK) {
        fprintf(stderr, "test-cuda: %s\n", err);
        return 1;
    }
    struct wk_backend *b = NULL;
    wk_status s = wk_backend_cuda_create(&probe, &(struct wk_backend_config){.n_ctx = 16}, &b, err, sizeof err);
    wk_backend_free(b);
    wk_model_free(&probe);
    if (s == WK_STATUS_UNAVAILABLE) {
        fprintf(stderr, "SKIP test-cuda: no GPU here (%s)\n", err);
        return 77;
    }
    if (s != WK_STATUS_OK) {
        fprintf(stderr, "test-cuda: CUDA backend failed to start: %s\n", err);
        return 1;
    }

    /* test cases can be picked with CK_RUN_CASE (e.g. under compute-sanitizer) */
    Suite *su = suite_create("cuda");
    TCase *tc = tcase_create("vs-cpu");
    tcase_add_loop_test(tc, vs_cpu, 0, (int)(sizeof models / sizeof *models));
    suite_add_tcase(su, tc);
    tc = tcase_create("invariance");
    tcase_add_loop_test(tc, batch_invariant, 0, (int)(sizeof models / sizeof *models));
    suite_add_tcase(su, tc);
    tc = tcase_create("greedy");
    tcase_add_test(tc, greedy_stories_100);
    tcase_add_test(tc, greedy_qwen_f32);
    suite_add_tcase(su, tc);
    tc = tcase_create("long");
    tcase_add_test(tc, long_context);
    suite_add_tcase(su, tc);
    tc = tcase_create("sampler");
    tcase_add_test(tc, sampler_vs_cpu);
    suite_add_tcase(su, tc);
    tc = tcase_create("repro");
    tcase_add_test(tc, reproducible_10_runs);
    suite_add_tcase(su, tc);
    SRunner *sr = srunner_create(su);
    srunner_set_fork_status(sr, CK_NOFORK); /* one CUDA context for all tests */
    srunner_run_all(sr, CK_VERBOSE);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? 1 : 0;
}
