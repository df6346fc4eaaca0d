/* test-batch.c — batch invariance of a backend, bit for bit (DESIGN.md,
 * numerics; core/backend.h):
 *   - a sequence's logits alone == inside batches of other sequences' prefill
 *     chunks and decode rows, with its own prompt split into other chunks,
 *     and its pages scattered through the pool;
 *   - a prefix whose pages another sequence computed (prefix reuse) gives the
 *     same logits as computing it again;
 *   - bad batches (page ids, positions, sizes) are refused before any work;
 *   - on a device other than the CPU: every prompt row's logits within 2e-2
 *     relative L2 of the CPU backend's (the tolerance test-cuda uses).
 * Every tiny-qwen2 weight type, stories260K (llama) and tiny phi3 (fused
 * tensors, LongRoPE factors).
 *
 *   test-batch [cpu|cuda]     (default cpu; cuda: exit 77 without a GPU, 1 if it fails to start)
 * Exit 77 (skip) when ../shared/models is absent. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/backend.h"
#include "loader/model.h"
#include "tests/testutil.h"
#include "worker/backend-open.h"

#define PAGE WK_KV_PAGE_TOKENS

static const char *g_device = "cpu";

static const char *k_models[] = {
    "models/stories260K.gguf",     "models/tiny-qwen2-f32.gguf",  "models/tiny-qwen2-f16.gguf",
    "models/tiny-qwen2-q8_0.gguf", "models/tiny-qwen2-q4_0.gguf", "models/tiny-qwen2-q4_1.gguf",
    "models/tiny-qwen2-q5_0.gguf", "models/tiny-qwen2-q5_1.gguf", "models/tiny-qwen2-q6_k.gguf",
    "models/tiny-qwen2-q4_k_m.gguf", "models/tiny-qwen2-q5_k_m.gguf", "models/tiny-phi3-f32.gguf",
    "models/tiny-phi3-q8_0-128k.gguf",
};
#define N_LISTED (int)(sizeof k_models / sizeof k_models[0])
/* $ORCD_TEST_EXTRA_MODEL (an absolute path, e.g. the real Gemma 3 file on the
 * GPU machine) joins the list as its last entry. */
static int N_MODELS = N_LISTED;

static const char *model_rel(int i) {
    return i < N_LISTED ? k_models[i] : getenv("ORCD_TEST_EXTRA_MODEL");
}

/* Every backend in this file: 256 positions, a 64-page pool, 4 sequences and
 * 96 tokens a step (the bad-batch test relies on these bounds). */
static const struct wk_backend_config k_cfg = {.n_ctx = 256, .kv_tokens = 64 * PAGE, .max_seqs = 4,
                                               .max_step_tokens = 96};

struct fixture {
    struct wk_model m;
    struct wk_backend *b;
    int V;
};

static void open_model(struct fixture *f, int i) {
    char path[512], err[512];
    if (i < N_LISTED) tu_shared_path(path, sizeof path, k_models[i]);
    else snprintf(path, sizeof path, "%s", model_rel(i));
    ck_assert_msg(wk_model_load(path, &f->m, err, sizeof err) == WK_STATUS_OK, "%s: %s", model_rel(i), err);
    wk_status s = wk_backend_open(&f->m, g_device, &k_cfg, &f->b, err, sizeof err);
    ck_assert_msg(s == WK_STATUS_OK, "%s on %s: %s", model_rel(i), g_device, err);
    f->V = f->m.hp.n_vocab;
}

static void close_model(struct fixture *f) {
    wk_backend_free(f->b);
    wk_model_free(&f->m);
}

static void random_ids(int32_t *ids, int n, int V, unsigned seed) {
    for (int i = 0; i < n; i++) {
        seed = seed * 1103515245u + 12345u;
        ids[i] = (int32_t)((seed >> 8) % (unsigned)V);
    }
}

/* One sequence as a test drives it: its tokens (prompt then the tokens fed
 * back), its page table, how far it has run. */
struct seq {
    int32_t toks[128];
    int n_toks;      /* tokens known (prompt + decode inputs) */
    int done;        /* tokens whose K/V are written */
    int32_t pages[16];
    int n_pages;
};

static struct wk_batch_seq part(struct seq *s, int n, bool sample, float *logits) {
    struct wk_batch_seq q = {.tokens = s->toks + s->done, .n_tokens = n, .pos = s->done, .pages = s->pages,
                             .n_pages = s->n_pages, .sample = sample, .logits = logits};
    return q;
}

static void step(struct fixture *f, struct wk_batch_seq *qs, int n, struct seq **owners) {
    char err[256];
    struct wk_batch batch = {n, qs};
    ck_assert_msg(f->b->ops->forward(f->b, &batch, err, sizeof err) == WK_STATUS_OK, "%s", err);
    for (int i = 0; i < n; i++) owners[i]->done += qs[i].n_tokens;
}

/* The greedy next token of sequence i of the last step. */
static int32_t greedy(struct fixture *f, int i, const struct seq *s) {
    char err[256];
    struct wk_sampling g = {.temperature = 0, .top_p = 1, .repetition_penalty = 1};
    struct wk_sample_req r = {.seq = i, .p = &g, .history = s->toks, .n_history = (size_t)s->n_toks, .step = 0};
    struct wk_sample_out o;
    ck_assert_msg(f->b->ops->sample(f->b, &r, 1, &o, err, sizeof err) == WK_STATUS_OK, "%s", err);
    return o.token;
}

#define N_PROMPT 40
#define N_DECODE 6

/* Reference: the sequence alone, the prompt in one step, pages 0, 1, 2, ...;
 * rows[k] = logits before decode token k (N_DECODE + 1 rows). */
static void run_alone(struct fixture *f, const int32_t *prompt, float *rows, int32_t *gen) {
    struct seq a = {.n_toks = N_PROMPT, .n_pages = 16};
    memcpy(a.toks, prompt, N_PROMPT * sizeof *prompt);
    for (int i = 0; i < 16; i++) a.pages[i] = i;
    float *tmp = malloc((size_t)N_PROMPT * f->V * sizeof *tmp);
    struct seq *own[1] = {&a};
    struct wk_batch_seq q = part(&a, N_PROMPT, true, tmp);
    step(f, &q, 1, own);
    memcpy(rows, tmp + (size_t)(N_PROMPT - 1) * f->V, (size_t)f->V * sizeof *rows);
    for (int k = 0; k < N_DECODE; k++) {
        gen[k] = greedy(f, 0, &a);
        a.toks[a.n_toks++] = gen[k];
        q = part(&a, 1, true, rows + (size_t)(k + 1) * f->V);
        step(f, &q, 1, own);
    }
    free(tmp);
}

static void assert_same_row(const float *got, const float *want, int V, const char *model, const char *what, int k) {
    if (memcmp(got, want, (size_t)V * sizeof *got) == 0) return;
    int i = 0;
    while (got[i] == want[i]) i++;
    ck_abort_msg("%s: %s row %d differs from the sequence alone at logit %d: %.9g vs %.9g (%s)", model, what, k, i,
                 got[i], want[i], g_device);
}

/* Sequence A inside a batch with B (decoding) and C (prefilling), A's prompt
 * in chunks of 7, 13, 20, its pages scattered from the top of the pool. */
START_TEST(alone_equals_batched) {
    struct fixture f;
    open_model(&f, _i);
    const int V = f.V;
    int32_t prompt[N_PROMPT];
    random_ids(prompt, N_PROMPT, V, 1234u + (unsigned)_i);
    float *want = malloc((size_t)(N_DECODE + 1) * V * sizeof *want);
    int32_t gen[N_DECODE];
    run_alone(&f, prompt, want, gen);

    struct seq a = {.n_toks = N_PROMPT, .n_pages = 16}, b = {.n_toks = 23, .n_pages = 16},
               c = {.n_toks = 57, .n_pages = 16};
    memcpy(a.toks, prompt, sizeof prompt);
    random_ids(b.toks, b.n_toks, V, 77u);
    random_ids(c.toks, c.n_toks, V, 99u);
    for (int i = 0; i < 16; i++) {
        a.pages[i] = 63 - 2 * i; /* 63, 61, ... */
        b.pages[i] = 62 - 2 * i; /* 62, 60, ... */
        c.pages[i] = i;          /* 0, 1, ...  (beside a's pages: 63-2*15 = 33) */
    }
    float *rows = malloc((size_t)N_PROMPT * V * sizeof *rows);
    float *brow = malloc((size_t)23 * V * sizeof *brow);
    struct wk_batch_seq q[3];
    struct seq *own[3];

    /* step 1: B's whole prompt (all its logits copied out and sampled: the
     * path where one sequence asks for both), A's first 7 tokens, C's first 30 */
    q[0] = part(&b, 23, true, brow), own[0] = &b;
    q[1] = part(&a, 7, false, NULL), own[1] = &a;
    q[2] = part(&c, 30, false, NULL), own[2] = &c;
    step(&f, q, 3, own);
    int32_t tb = greedy(&f, 0, &b);
    b.toks[b.n_toks++] = tb;
    /* step 2: A's next 13, B decodes, C's last 27 */
    q[0] = part(&a, 13, false, NULL), own[0] = &a;
    q[1] = part(&b, 1, true, NULL), own[1] = &b;
    q[2] = part(&c, 27, true, NULL), own[2] = &c;
    step(&f, q, 3, own);
    b.toks[b.n_toks++] = greedy(&f, 1, &b);
    c.toks[c.n_toks++] = greedy(&f, 2, &c);
    /* step 3: C and B decode, A's last 20 tokens with all their logits */
    q[0] = part(&c, 1, true, NULL), own[0] = &c;
    q[1] = part(&b, 1, true, NULL), own[1] = &b;
    q[2] = part(&a, 20, true, rows), own[2] = &a;
    step(&f, q, 3, own);
    assert_same_row(rows + (size_t)19 * V, want, V, model_rel(_i), "prompt", 0);
    /* decode: A alone once, then beside B and C in varying order */
    for (int k = 0; k < N_DECODE; k++) {
        /* A's index in the previous step: 2 after step 3, then 1 when B went first */
        int32_t t = greedy(&f, k == 0 ? 2 : ((k - 1) % 2 ? 1 : 0), &a);
        ck_assert_int_eq(t, gen[k]);
        a.toks[a.n_toks++] = t;
        int n = 0;
        if (k % 2) q[n] = part(&b, 1, false, NULL), own[n++] = &b, b.toks[b.n_toks++] = 5;
        q[n] = part(&a, 1, true, rows), own[n++] = &a;
        if (k % 3) q[n] = part(&c, 1, false, NULL), own[n++] = &c, c.toks[c.n_toks++] = 7;
        step(&f, q, n, own);
        assert_same_row(rows, want + (size_t)(k + 1) * V, V, model_rel(_i), "decode", k + 1);
    }
    free(rows), free(brow), free(want);
    close_model(&f);
}
END_TEST

/* Prefix reuse: B's first two pages are A's (the same 32-token prefix, computed
 * by A); B computes only its own tail. Its logits equal computing all of it. */
START_TEST(prefix_reuse_equals_recompute) {
    struct fixture f;
    open_model(&f, _i);
    const int V = f.V;
    const int NP = 2 * PAGE, NT = 9;
    struct seq a = {.n_toks = NP + 5, .n_pages = 16}, b = {.n_toks = NP + NT, .n_pages = 16},
               full = {.n_toks = NP + NT, .n_pages = 16};
    random_ids(a.toks, NP, V, 4242u);
    random_ids(a.toks + NP, 5, V, 11u);
    memcpy(b.toks, a.toks, (size_t)NP * sizeof *a.toks);
    random_ids(b.toks + NP, NT, V, 12u);
    memcpy(full.toks, b.toks, (size_t)(NP + NT) * sizeof *b.toks);
    for (int i = 0; i < 16; i++) {
        a.pages[i] = 10 + i;
        full.pages[i] = 48 + i;
        b.pages[i] = i < 2 ? a.pages[i] : 30 + i;
    }
    float *want = malloc((size_t)(NP + NT) * V * sizeof *want);
    float *got = malloc((size_t)NT * V * sizeof *got);
    struct seq *own[2];
    struct wk_batch_seq q[2];
    q[0] = part(&a, NP + 5, false, NULL), own[0] = &a;
    step(&f, q, 1, own);
    q[0] = part(&full, NP + NT, false, want), own[0] = &full;
    step(&f, q, 1, own);
    b.done = NP; /* the shared pages hold positions [0, NP) */
    q[0] = part(&b, NT, true, got), own[0] = &b;
    q[1] = part(&a, 1, false, NULL), own[1] = &a; /* a decodes beside it, into its third page */
    a.toks[a.n_toks++] = 3;
    step(&f, q, 2, own);
    for (int k = 0; k < NT; k++)
        assert_same_row(got + (size_t)k * V, want + (size_t)(NP + k) * V, V, model_rel(_i), "prefix-hit", k);
    free(want), free(got);
    close_model(&f);
}
END_TEST

/* The device against the CPU oracle: all 40 prompt rows. */
START_TEST(device_matches_cpu) {
    struct fixture f;
    open_model(&f, _i);
    const int V = f.V;
    char err[512];
    struct wk_backend *cpu = NULL;
    ck_assert_msg(wk_backend_cpu_create(&f.m, &k_cfg, &cpu, err, sizeof err) == WK_STATUS_OK, "%s", err);
    int32_t prompt[N_PROMPT];
    random_ids(prompt, N_PROMPT, V, 555u + (unsigned)_i);
    float *a = malloc((size_t)N_PROMPT * V * sizeof *a), *b = malloc((size_t)N_PROMPT * V * sizeof *b);
    ck_assert_msg(wk_backend_forward_one(f.b, prompt, N_PROMPT, 0, a, true, err, sizeof err) == WK_STATUS_OK, "%s", err);
    ck_assert_msg(wk_backend_forward_one(cpu, prompt, N_PROMPT, 0, b, true, err, sizeof err) == WK_STATUS_OK, "%s", err);
    double worst = 0;
    for (int r = 0; r < N_PROMPT; r++) {
        double e = tu_rel_l2(a + (size_t)r * V, b + (size_t)r * V, (size_t)V);
        if (e > worst) worst = e;
    }
    fprintf(stderr, "test-batch: %s on %s vs cpu: worst row rel L2 %.2e\n", model_rel(_i), g_device, worst);
    ck_assert_msg(worst < 2e-2, "%s: %s vs cpu rel L2 %.3g", model_rel(_i), g_device, worst);
    free(a), free(b);
    wk_backend_free(cpu);
    close_model(&f);
}
END_TEST

/* Bad batches are refused with the right status, and the backend still
 * works afterwards. */
START_TEST(bad_batches_refused) {
    struct fixture f;
    open_model(&f, 1);
    char err[256];
    int32_t ids[100] = {0}, pages[16];
    for (int i = 0; i < 16; i++) pages[i] = i;
    struct wk_batch_seq q = {.tokens = ids, .n_tokens = 4, .pos = 0, .pages = pages, .n_pages = 16};
    struct wk_batch batch = {1, &q};
    pages[0] = 64; /* the pool has 64 pages */
    ck_assert_int_eq(f.b->ops->forward(f.b, &batch, err, sizeof err), WK_STATUS_INVALID_ARGUMENT);
    pages[0] = -1;
    ck_assert_int_eq(f.b->ops->forward(f.b, &batch, err, sizeof err), WK_STATUS_INVALID_ARGUMENT);
    pages[0] = 0;
    q.pos = 254; /* n_ctx 256 */
    ck_assert_int_eq(f.b->ops->forward(f.b, &batch, err, sizeof err), WK_STATUS_OUT_OF_RANGE);
    q.pos = 0;
    q.n_pages = 0; /* pages do not cover the tokens */
    ck_assert_int_eq(f.b->ops->forward(f.b, &batch, err, sizeof err), WK_STATUS_INVALID_ARGUMENT);
    q.n_pages = 16;
    q.n_tokens = 97; /* max_step_tokens 96 */
    ck_assert_int_eq(f.b->ops->forward(f.b, &batch, err, sizeof err), WK_STATUS_INVALID_ARGUMENT);
    q.n_tokens = 4;
    ids[2] = f.V; /* token id out of range */
    ck_assert_int_eq(f.b->ops->forward(f.b, &batch, err, sizeof err), WK_STATUS_INVALID_ARGUMENT);
    ids[2] = 0;
    struct wk_batch_seq five[5] = {q, q, q, q, q}; /* max_seqs 4 */
    struct wk_batch b5 = {5, five};
    ck_assert_int_eq(f.b->ops->forward(f.b, &b5, err, sizeof err), WK_STATUS_INVALID_ARGUMENT);
    struct wk_sampling g = {.temperature = 0, .top_p = 1, .repetition_penalty = 1};
    struct wk_sample_req r = {.seq = 0, .p = &g};
    struct wk_sample_out o;
    q.sample = false;
    ck_assert_int_eq(f.b->ops->forward(f.b, &batch, err, sizeof err), WK_STATUS_OK);
    ck_assert_int_eq(f.b->ops->sample(f.b, &r, 1, &o, err, sizeof err), WK_STATUS_INVALID_ARGUMENT);
    q.sample = true;
    ck_assert_int_eq(f.b->ops->forward(f.b, &batch, err, sizeof err), WK_STATUS_OK);
    ck_assert_int_eq(f.b->ops->sample(f.b, &r, 1, &o, err, sizeof err), WK_STATUS_OK);
    ck_assert(o.token >= 0 && o.token < f.V);
    close_model(&f);
}
END_TEST

int main(int argc, char **argv) {
    if (argc > 1) g_device = argv[1];
    char path[512];
    const char *extra = getenv("ORCD_TEST_EXTRA_MODEL");
    if (extra && *extra) N_MODELS = N_LISTED + 1;
    for (int i = 0; i < N_LISTED; i++) {
        tu_shared_path(path, sizeof path, k_models[i]);
        if (!tu_have_file(path, "test-batch model")) return 77;
    }
    if (strcmp(g_device, "cpu") != 0) {
        /* probe the device once, in the parent, before Check forks */
        struct fixture f = {0};
        char err[512];
        tu_shared_path(path, sizeof path, k_models[0]);
        if (wk_model_load(path, &f.m, err, sizeof err) != WK_STATUS_OK) return 1;
        struct wk_backend_config cfg = {.n_ctx = 64, .kv_tokens = 64};
        wk_status s = wk_backend_open(&f.m, g_device, &cfg, &f.b, err, sizeof err);
        close_model(&f);
        if (s == WK_STATUS_UNAVAILABLE) { /* no device here */
            fprintf(stderr, "SKIP test-batch on %s: %s\n", g_device, err);
            return 77;
        }
        if (s != WK_STATUS_OK) { /* a device that fails to start is a failure, not a skip */
            fprintf(stderr, "test-batch on %s: the backend failed to start: %s\n", g_device, err);
            return 1;
        }
        setenv("CK_FORK", "no", 1); /* CUDA is undefined in a forked child */
    }
    Suite *su = suite_create("batch");
    TCase *tc = tcase_create("invariance");
    tcase_set_timeout(tc, 600);
    tcase_add_loop_test(tc, alone_equals_batched, 0, N_MODELS);
    tcase_add_loop_test(tc, prefix_reuse_equals_recompute, 0, N_MODELS);
    tcase_add_test(tc, bad_batches_refused);
    if (strcmp(g_device, "cpu") != 0) tcase_add_loop_test(tc, device_matches_cpu, 0, N_MODELS);
    suite_add_tcase(su, tc);
    return tu_run_suite(su);
}
