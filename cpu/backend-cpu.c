/* backend-cpu.c — the reference backend: the whole forward pass in plain C,
 * fp32 math, weights read from the mapped GGUF and dequantized on the fly.
 * It is the oracle for the CUDA kernels, so it favours clarity over speed
 * except in the matmul (cpu/ops.c, cpu/dot.c), where the time goes.
 *
 * One step runs every row of the batch together (the rows of all sequences,
 * in batch order): each weight matrix is read once per step for all rows.
 * The general forward pass is the one loader/model.h spells out; per layer:
 *   h = rmsnorm(x) * attn_norm
 *   q,k,v = W h + b; per-head q/k norms; rope(q), rope(k)
 *   K/V pages[pos] = k, v                       (every row, before attention)
 *   a = softmax(attn_scale q Kᵀ, causal, window) V    (row's own page table)
 *   x += postnorm(Wo a)
 *   h = rmsnorm(x) * ffn_norm
 *   x += postnorm(Wdown (act(Wgate h) * (Wup h)))
 * logits = output · (rmsnorm(x) * output_norm), only for the rows asked for.
 *
 * Batch invariance: every reduction of a row (matmul, norm, attention) reads
 * only that row and the K/V before it, in an order fixed by the code, so a
 * token's results do not depend on the rest of the batch.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/backend.h"
#include "core/sample.h"
#include "cpu/ops.h"
#include "loader/model.h"

#define LOGIT_ROWS 16 /* rows of logits computed per output matmul */

struct cpu_impl {
    struct cpu_pool *pool;
    int n_embd, qd, kvd, n_ff, n_vocab;
    float *k_pool, *v_pool; /* (n_layer, n_kv_pages, PAGE, kvd) fp32 */
    struct wk_rope *ropes;  /* (n_layer) each layer's rope at this n_ctx */
    /* per-row state of the current step (max_step_tokens rows each) */
    int32_t *row_seq, *row_pos, *row_tok;
    float *x, *h, *q, *k, *v, *att, *tmp, *gate, *up;
    float *scores;         /* (n_threads, n_ctx) attention scratch */
    float *logits_tmp;     /* (LOGIT_ROWS, n_vocab) */
    float *sample_logits;  /* (max_seqs, n_vocab): last-row logits of sequence i */
    bool *has_logits;      /* (max_seqs) */
    int n_seqs_last;       /* sequences in the last forward */
    void *sample_scratch;
    float *hidden;         /* (n_layer+1, hidden_n, n_embd) when record_hidden */
    int hidden_n;
};

/* K (or V) of layer l, page `page`, slot `slot`: kvd floats. */
static inline float *kv_at(const struct wk_backend *b, float *pool, int l, int page, int slot) {
    const struct cpu_impl *c = b->impl;
    return pool + (((size_t)l * b->n_kv_pages + page) * WK_KV_PAGE_TOKENS + slot) * c->kvd;
}

struct attn_job {
    const struct wk_backend *b;
    const struct wk_batch *batch;
    int layer, n_rows;
};

/* One (row, head) pair per task: scores over the visible positions of the
 * row's own sequence, read through its page table. */
static void attn_worker(void *varg, int ith, int nth) {
    struct attn_job *j = varg;
    const struct wk_backend *b = j->b;
    const struct wk_model *m = b->model;
    const struct wk_hparams *hp = &m->hp;
    struct cpu_impl *c = b->impl;
    const int hd = hp->head_dim, group = hp->n_head / hp->n_head_kv;
    const int window = m->layers[j->layer].window;
    float *sc = c->scores + (size_t)ith * b->n_ctx;
    const int total = j->n_rows * hp->n_head;
    for (int task = ith; task < total; task += nth) {
        const int r = task / hp->n_head, h = task % hp->n_head;
        const struct wk_batch_seq *s = &j->batch->seqs[c->row_seq[r]];
        const int kvh = h / group, pos = c->row_pos[r];
        const int p0 = window > 0 && pos - window + 1 > 0 ? pos - window + 1 : 0;
        const float *qh = c->q + (size_t)r * c->qd + (size_t)h * hd;
        float mx = -INFINITY;
        for (int p = p0; p <= pos; p++) {
            const float *kp = kv_at(b, c->k_pool, j->layer, s->pages[p / WK_KV_PAGE_TOKENS], p % WK_KV_PAGE_TOKENS) +
                              (size_t)kvh * hd;
            float d = 0;
            for (int i = 0; i < hd; i++) d += qh[i] * kp[i];
            sc[p] = d * hp->attn_scale;
            if (sc[p] > mx) mx = sc[p];
        }
        double sum = 0;
        for (int p = p0; p <= pos; p++) { sc[p] = expf(sc[p] - mx); sum += sc[p]; }
        const float inv = (float)(1.0 / sum);
        float *out = c->att + (size_t)r * c->qd + (size_t)h * hd;
        for (int i = 0; i < hd; i++) out[i] = 0;
        for (int p = p0; p <= pos; p++) {
            const float *vp = kv_at(b, c->v_pool, j->layer, s->pages[p / WK_KV_PAGE_TOKENS], p % WK_KV_PAGE_TOKENS) +
                              (size_t)kvh * hd;
            const float w = sc[p] * inv;
            for (int i = 0; i < hd; i++) out[i] += w * vp[i];
        }
    }
}

static void add_bias(float *y, const struct wk_tensor *b, int n_rows, int n) {
    if (!b->data) return;
    const float *bv = b->data;
    for (int t = 0; t < n_rows; t++)
        for (int i = 0; i < n; i++) y[(size_t)t * n + i] += bv[i];
}

/* rmsnorm of each n-float row in place (norm->data NULL: nothing). */
static void norm_rows(float *y, const struct wk_tensor *norm, int n_rows, int n, float eps) {
    if (!norm->data) return;
    for (int t = 0; t < n_rows; t++) cpu_rmsnorm(y + (size_t)t * n, norm->data, y + (size_t)t * n, n, eps);
}

static void record(struct cpu_impl *c, int layer, const float *src, int n_rows) {
    if (c->hidden)
        memcpy(c->hidden + (size_t)layer * c->hidden_n * c->n_embd, src, (size_t)n_rows * c->n_embd * sizeof(float));
}

/* The layers over all n rows; leaves the final normed states in c->h. */
static void forward_rows(struct wk_backend *b, const struct wk_batch *batch, int n) {
    const struct wk_model *m = b->model;
    const struct wk_hparams *hp = &m->hp;
    struct cpu_impl *c = b->impl;
    const int E = c->n_embd, hd = hp->head_dim;
    for (int r = 0; r < n; r++) {
        float *xr = c->x + (size_t)r * E;
        cpu_embed_row(&m->tok_embd, c->row_tok[r], xr);
        if (hp->embd_scale != 1.0f)
            for (int i = 0; i < E; i++) xr[i] *= hp->embd_scale;
    }
    for (int l = 0; l < hp->n_layer; l++) {
        const struct wk_layer *L = &m->layers[l];
        for (int r = 0; r < n; r++)
            cpu_rmsnorm(c->x + (size_t)r * E, L->attn_norm.data, c->h + (size_t)r * E, E, hp->rms_eps);
        cpu_matmul(c->pool, &L->wq, c->h, n, c->q);
        cpu_matmul(c->pool, &L->wk, c->h, n, c->k);
        cpu_matmul(c->pool, &L->wv, c->h, n, c->v);
        add_bias(c->q, &L->bq, n, c->qd);
        add_bias(c->k, &L->bk, n, c->kvd);
        add_bias(c->v, &L->bv, n, c->kvd);
        norm_rows(c->q, &L->attn_q_norm, n * hp->n_head, hd, hp->rms_eps);
        norm_rows(c->k, &L->attn_k_norm, n * hp->n_head_kv, hd, hp->rms_eps);
        for (int r = 0; r < n; r++) {
            const int pos = c->row_pos[r];
            const struct wk_batch_seq *s = &batch->seqs[c->row_seq[r]];
            cpu_rope(c->q + (size_t)r * c->qd, hp->n_head, hd, &c->ropes[l], pos, hp->rope_type);
            cpu_rope(c->k + (size_t)r * c->kvd, hp->n_head_kv, hd, &c->ropes[l], pos, hp->rope_type);
            const int page = s->pages[pos / WK_KV_PAGE_TOKENS], slot = pos % WK_KV_PAGE_TOKENS;
            memcpy(kv_at(b, c->k_pool, l, page, slot), c->k + (size_t)r * c->kvd, (size_t)c->kvd * sizeof(float));
            memcpy(kv_at(b, c->v_pool, l, page, slot), c->v + (size_t)r * c->kvd, (size_t)c->kvd * sizeof(float));
        }
        struct attn_job aj = {b, batch, l, n};
        int64_t work = 0;
        for (int r = 0; r < n; r++) work += (int64_t)hp->n_head * (c->row_pos[r] + 1) * hd * 2;
        cpu_pool_run_work(c->pool, attn_worker, &aj, work);
        cpu_matmul(c->pool, &L->wo, c->att, n, c->tmp);
        norm_rows(c->tmp, &L->attn_post_norm, n, E, hp->rms_eps);
        for (size_t i = 0; i < (size_t)n * E; i++) c->x[i] += c->tmp[i];

        for (int r = 0; r < n; r++)
            cpu_rmsnorm(c->x + (size_t)r * E, L->ffn_norm.data, c->h + (size_t)r * E, E, hp->rms_eps);
        cpu_matmul(c->pool, &L->w_gate, c->h, n, c->gate);
        cpu_matmul(c->pool, &L->w_up, c->h, n, c->up);
        cpu_glu(c->gate, c->up, (size_t)n * c->n_ff, hp->act);
        cpu_matmul(c->pool, &L->w_down, c->gate, n, c->tmp);
        norm_rows(c->tmp, &L->ffn_post_norm, n, E, hp->rms_eps);
        for (size_t i = 0; i < (size_t)n * E; i++) c->x[i] += c->tmp[i];
        record(c, l, c->x, n);
    }
    for (int r = 0; r < n; r++)
        cpu_rmsnorm(c->x + (size_t)r * E, m->output_norm.data, c->h + (size_t)r * E, E, hp->rms_eps);
    record(c, hp->n_layer, c->h, n);
}

/* Logits of rows rows[0..n) (each a row of c->h) into dst[i * n_vocab]. */
static void logits_rows(struct wk_backend *b, const int *rows, int n, float *const *dst) {
    struct cpu_impl *c = b->impl;
    const int E = c->n_embd;
    for (int i0 = 0; i0 < n; i0 += LOGIT_ROWS) {
        const int cn = n - i0 < LOGIT_ROWS ? n - i0 : LOGIT_ROWS;
        for (int i = 0; i < cn; i++)
            memcpy(c->tmp + (size_t)i * E, c->h + (size_t)rows[i0 + i] * E, (size_t)E * sizeof(float));
        cpu_matmul(c->pool, &b->model->output, c->tmp, cn, c->logits_tmp);
        for (int i = 0; i < cn; i++)
            memcpy(dst[i0 + i], c->logits_tmp + (size_t)i * c->n_vocab, (size_t)c->n_vocab * sizeof(float));
    }
}

static wk_status cpu_forward(struct wk_backend *b, const struct wk_batch *batch, char *err, size_t err_len) {
    struct cpu_impl *c = b->impl;
    const struct wk_model *m = b->model;
    int n = 0;
    wk_status st = wk_batch_check(b, batch, &n, NULL, err, err_len);
    if (st != WK_STATUS_OK) return st;
    free(c->hidden);
    c->hidden = NULL;
    if (b->record_hidden) {
        c->hidden = malloc((size_t)(m->hp.n_layer + 1) * n * c->n_embd * sizeof(float));
        if (!c->hidden) return wk_errf(err, err_len, WK_STATUS_OOM_HOST, "no memory for hidden states");
        c->hidden_n = n;
    }
    for (int i = 0, r = 0; i < batch->n_seqs; i++) {
        const struct wk_batch_seq *s = &batch->seqs[i];
        for (int t = 0; t < s->n_tokens; t++, r++) {
            c->row_seq[r] = i;
            c->row_pos[r] = s->pos + t;
            c->row_tok[r] = s->tokens[t];
        }
    }
    forward_rows(b, batch, n);

    /* Logits: every row of sequences that asked for them (copied straight to
     * their buffers), and the last row of sequences to sample. */
    /* at most every row plus one sampled row per sequence */
    const size_t cap = (size_t)n + (size_t)batch->n_seqs;
    int *rows = malloc(cap * sizeof *rows);
    float **dst = malloc(cap * sizeof *dst);
    if (!rows || !dst) {
        free(rows), free(dst);
        return wk_errf(err, err_len, WK_STATUS_OOM_HOST, "out of memory");
    }
    int k = 0;
    c->n_seqs_last = batch->n_seqs;
    for (int i = 0, r0 = 0; i < batch->n_seqs; i++) {
        const struct wk_batch_seq *s = &batch->seqs[i];
        c->has_logits[i] = s->sample;
        if (s->logits)
            for (int t = 0; t < s->n_tokens; t++) rows[k] = r0 + t, dst[k++] = s->logits + (size_t)t * c->n_vocab;
        if (s->sample) rows[k] = r0 + s->n_tokens - 1, dst[k++] = c->sample_logits + (size_t)i * c->n_vocab;
        r0 += s->n_tokens;
    }
    logits_rows(b, rows, k, dst);
    free(rows), free(dst);
    return WK_STATUS_OK;
}

static wk_status cpu_sample(struct wk_backend *b, const struct wk_sample_req *reqs, int n, struct wk_sample_out *out,
                            char *err, size_t err_len) {
    struct cpu_impl *c = b->impl;
    for (int i = 0; i < n; i++) {
        const struct wk_sample_req *q = &reqs[i];
        if (q->seq < 0 || q->seq >= c->n_seqs_last || !c->has_logits[q->seq])
            return wk_errf(err, err_len, WK_STATUS_INVALID_ARGUMENT, "sequence %d of the last step has no logits",
                           q->seq);
        wk_sample_logits(c->sample_logits + (size_t)q->seq * c->n_vocab, c->n_vocab, q->p, q->history, q->n_history,
                         q->step, c->sample_scratch, &out[i]);
    }
    return WK_STATUS_OK;
}

static wk_status cpu_get_hidden(struct wk_backend *b, int layer, float *dst, char *err, size_t err_len) {
    struct cpu_impl *c = b->impl;
    if (!c->hidden || layer < 0 || layer > b->model->hp.n_layer)
        return wk_errf(err, err_len, WK_STATUS_INVALID_ARGUMENT, "no hidden state for layer %d (record_hidden off?)",
                       layer);
    memcpy(dst, c->hidden + (size_t)layer * c->hidden_n * c->n_embd, (size_t)c->hidden_n * c->n_embd * sizeof(float));
    return WK_STATUS_OK;
}

static void cpu_destroy(struct wk_backend *b) {
    if (!b) return;
    struct cpu_impl *c = b->impl;
    if (c) {
        cpu_pool_free(c->pool);
        free(c->k_pool), free(c->v_pool), free(c->ropes);
        free(c->row_seq), free(c->row_pos), free(c->row_tok);
        free(c->x), free(c->h), free(c->q), free(c->k), free(c->v), free(c->att), free(c->tmp);
        free(c->gate), free(c->up), free(c->scores), free(c->logits_tmp), free(c->sample_logits);
        free(c->has_logits), free(c->sample_scratch), free(c->hidden);
        free(c);
    }
    free(b);
}

static const struct wk_backend_ops cpu_ops = {
    .name = "cpu",
    .forward = cpu_forward,
    .sample = cpu_sample,
    .get_hidden = cpu_get_hidden,
    .destroy = cpu_destroy,
};

wk_status wk_backend_cpu_create(const struct wk_model *m, const struct wk_backend_config *cfg,
                                struct wk_backend **out, char *err, size_t err_len) {
    *out = NULL;
    const struct wk_hparams *hp = &m->hp;
    const struct wk_backend_config c0 = cfg ? *cfg : (struct wk_backend_config){0};
    const int n_ctx = c0.n_ctx > 0 ? c0.n_ctx : wk_backend_default_ctx(hp->n_ctx_train);
    const int max_seqs = c0.max_seqs > 0 ? c0.max_seqs : 64;
    const int max_rows = c0.max_step_tokens > 0 ? c0.max_step_tokens : 512;
    if (n_ctx > (1 << 20))
        return wk_errf(err, err_len, WK_STATUS_INVALID_ARGUMENT, "context %d is outside [1, 1048576]", n_ctx);
    int64_t kv_tokens = c0.kv_tokens > 0 ? c0.kv_tokens : (int64_t)n_ctx * 4;
    const int64_t n_pages = (kv_tokens + WK_KV_PAGE_TOKENS - 1) / WK_KV_PAGE_TOKENS;
    if (n_pages > (1 << 24))
        return wk_errf(err, err_len, WK_STATUS_INVALID_ARGUMENT, "KV pool of %lld tokens is too large",
                       (long long)kv_tokens);
    int n_threads = c0.threads;
    if (n_threads <= 0) {
        long nc = sysconf(_SC_NPROCESSORS_ONLN);
        /* past ~8 threads the per-matmul hand-off costs more than it saves */
        n_threads = nc > 0 ? (int)(nc > 8 ? 8 : nc) : 1;
    }
    struct wk_backend *b = calloc(1, sizeof *b);
    struct cpu_impl *c = calloc(1, sizeof *c);
    if (!b || !c) {
        free(b), free(c);
        return wk_errf(err, err_len, WK_STATUS_OOM_HOST, "out of memory");
    }
    b->ops = &cpu_ops;
    b->model = m;
    b->n_ctx = n_ctx;
    b->n_vocab = hp->n_vocab;
    b->n_kv_pages = (int)n_pages;
    b->max_seqs = max_seqs;
    b->max_step_tokens = max_rows;
    b->impl = c;
    c->n_embd = hp->n_embd;
    c->qd = hp->n_head * hp->head_dim;
    c->kvd = hp->n_head_kv * hp->head_dim;
    c->n_ff = hp->n_ff;
    c->n_vocab = hp->n_vocab;
    c->pool = cpu_pool_create(n_threads);
    const size_t kv = (size_t)hp->n_layer * n_pages * WK_KV_PAGE_TOKENS * c->kvd;
    const int width = c->n_embd > c->qd ? c->n_embd : c->qd;
    const size_t R = (size_t)max_rows;
    c->k_pool = malloc(kv * sizeof(float));
    c->v_pool = malloc(kv * sizeof(float));
    c->ropes = malloc((size_t)hp->n_layer * sizeof *c->ropes);
    c->row_seq = malloc(R * sizeof(int32_t));
    c->row_pos = malloc(R * sizeof(int32_t));
    c->row_tok = malloc(R * sizeof(int32_t));
    c->x = malloc(R * c->n_embd * sizeof(float));
    c->h = malloc(R * c->n_embd * sizeof(float));
    c->q = malloc(R * c->qd * sizeof(float));
    c->k = malloc(R * c->kvd * sizeof(float));
    c->v = malloc(R * c->kvd * sizeof(float));
    c->att = malloc(R * c->qd * sizeof(float));
    c->tmp = malloc((R > LOGIT_ROWS ? R : LOGIT_ROWS) * width * sizeof(float));
    c->gate = malloc(R * c->n_ff * sizeof(float));
    c->up = malloc(R * c->n_ff * sizeof(float));
    c->scores = c->pool ? malloc((size_t)cpu_pool_size(c->pool) * n_ctx * sizeof(float)) : NULL;
    c->logits_tmp = malloc((size_t)LOGIT_ROWS * c->n_vocab * sizeof(float));
    c->sample_logits = malloc((size_t)max_seqs * c->n_vocab * sizeof(float));
    c->has_logits = calloc((size_t)max_seqs, sizeof(bool));
    c->sample_scratch = malloc(wk_sampler_scratch_bytes(c->n_vocab));
    if (!c->pool || !c->k_pool || !c->v_pool || !c->ropes || !c->row_seq || !c->row_pos || !c->row_tok || !c->x ||
        !c->h || !c->q || !c->k || !c->v || !c->att || !c->tmp || !c->gate || !c->up || !c->scores ||
        !c->logits_tmp || !c->sample_logits || !c->has_logits || !c->sample_scratch) {
        cpu_destroy(b);
        return wk_errf(err, err_len, WK_STATUS_OOM_HOST,
                       "out of memory for a KV pool of %lld tokens (%zu MiB) and %d-row steps",
                       (long long)(n_pages * WK_KV_PAGE_TOKENS), 2 * kv * sizeof(float) >> 20, max_rows);
    }
    for (int l = 0; l < hp->n_layer; l++) c->ropes[l] = wk_model_rope(m, l, n_ctx);
    snprintf(b->info.device, sizeof b->info.device, "cpu (%d threads)", cpu_pool_size(c->pool));
    b->info.mem_weights = m->weight_bytes;
    b->info.mem_kv = 2 * kv * sizeof(float);
    b->info.mem_scratch = R * (4 * c->n_embd + 2 * c->qd + 2 * c->kvd + 2 * c->n_ff) * sizeof(float) +
                          (size_t)(LOGIT_ROWS + max_seqs) * c->n_vocab * sizeof(float);
    *out = b;
    return WK_STATUS_OK;
}
