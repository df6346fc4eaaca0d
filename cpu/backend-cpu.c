/* backend-cpu.c — the reference backend: the whole forward pass in plain C,
 * fp32 math, weights read from the mapped GGUF and dequantized on the fly.
 * It is the oracle for the CUDA kernels, so it favours clarity over speed
 * except in the matmul (cpu/ops.c), where the time goes.
 *
 * Per layer, for the tokens of one chunk (n ≤ CHUNK):
 *   h = rmsnorm(x) * attn_norm
 *   q = Wq h + bq; k = Wk h + bk; v = Wv h + bv;  rope(q), rope(k)
 *   K/V cache[pos..pos+n) = k, v
 *   a = softmax(q Kᵀ / sqrt(head_dim), causal) V   (GQA: head h reads kv head h / group)
 *   x += Wo a
 *   h = rmsnorm(x) * ffn_norm
 *   x += Wdown (silu(Wgate h) * (Wup h))
 * logits = output · (rmsnorm(x) * output_norm)
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cpu/ops.h"
#include "loader/model.h"
#include "worker/backend.h"
#include "worker/sample.h"

#define CHUNK 64 /* tokens per prefill step: bounds the activation buffers */

struct cpu_impl {
    struct cpu_pool *pool;
    int n_embd, qd, kvd, n_ff, n_vocab;
    float *k_cache, *v_cache; /* (n_layer, n_ctx, kvd) fp32 */
    /* activations for one chunk (CHUNK rows each) */
    float *x, *h, *q, *k, *v, *att, *tmp, *gate, *up;
    float *scores;          /* (n_threads, n_ctx) attention scratch */
    float *last_logits;     /* (n_vocab) logits of the last forward's last token */
    void *sample_scratch;
    float *hidden;          /* (n_layer+1, hidden_n, n_embd) when record_hidden */
    int hidden_n, hidden_cap;
};

struct attn_job {
    const struct wk_model *m;
    struct cpu_impl *c;
    int layer, n, pos, n_ctx;
};

/* One (token, head) pair per task: scores over positions 0..pos+t. */
static void attn_worker(void *varg, int ith, int nth) {
    struct attn_job *j = varg;
    const struct wk_hparams *hp = &j->m->hp;
    struct cpu_impl *c = j->c;
    const int hd = hp->head_dim, group = hp->n_head / hp->n_head_kv;
    const float scale = 1.0f / sqrtf((float)hd);
    float *sc = c->scores + (size_t)ith * j->n_ctx;
    const float *kc = c->k_cache + (size_t)j->layer * j->n_ctx * c->kvd;
    const float *vc = c->v_cache + (size_t)j->layer * j->n_ctx * c->kvd;
    const int total = j->n * hp->n_head;
    for (int task = ith; task < total; task += nth) {
        int t = task / hp->n_head, h = task % hp->n_head;
        int kvh = h / group, n_kv = j->pos + t + 1;
        const float *qh = c->q + (size_t)t * c->qd + (size_t)h * hd;
        float mx = -INFINITY;
        for (int p = 0; p < n_kv; p++) {
            const float *kp = kc + (size_t)p * c->kvd + (size_t)kvh * hd;
            float s = 0;
            for (int i = 0; i < hd; i++) s += qh[i] * kp[i];
            sc[p] = s * scale;
            if (sc[p] > mx) mx = sc[p];
        }
        double sum = 0;
        for (int p = 0; p < n_kv; p++) { sc[p] = expf(sc[p] - mx); sum += sc[p]; }
        float inv = (float)(1.0 / sum);
        float *out = c->att + (size_t)t * c->qd + (size_t)h * hd;
        for (int i = 0; i < hd; i++) out[i] = 0;
        for (int p = 0; p < n_kv; p++) {
            const float *vp = vc + (size_t)p * c->kvd + (size_t)kvh * hd;
            float w = sc[p] * inv;
            for (int i = 0; i < hd; i++) out[i] += w * vp[i];
        }
    }
}

static void add_bias(float *y, const struct wk_tensor *b, int n_tok, int n) {
    if (!b->data) return;
    const float *bv = b->data;
    for (int t = 0; t < n_tok; t++)
        for (int i = 0; i < n; i++) y[(size_t)t * n + i] += bv[i];
}

/* Forward one chunk of n tokens at positions pos..pos+n-1; leaves the final
 * normed states in c->h. */
static void forward_chunk(struct wk_backend *b, const int32_t *tok, int n, int pos, int hidden_off) {
    const struct wk_model *m = b->model;
    const struct wk_hparams *hp = &m->hp;
    struct cpu_impl *c = b->impl;
    const int E = c->n_embd;
    for (int t = 0; t < n; t++) cpu_embed_row(&m->tok_embd, tok[t], c->x + (size_t)t * E);
    for (int l = 0; l < hp->n_layer; l++) {
        const struct wk_layer *L = &m->layers[l];
        for (int t = 0; t < n; t++)
            cpu_rmsnorm(c->x + (size_t)t * E, L->attn_norm.data, c->h + (size_t)t * E, E, hp->rms_eps);
        cpu_matmul(c->pool, &L->wq, c->h, n, c->q);
        cpu_matmul(c->pool, &L->wk, c->h, n, c->k);
        cpu_matmul(c->pool, &L->wv, c->h, n, c->v);
        add_bias(c->q, &L->bq, n, c->qd);
        add_bias(c->k, &L->bk, n, c->kvd);
        add_bias(c->v, &L->bv, n, c->kvd);
        for (int t = 0; t < n; t++) {
            cpu_rope(c->q + (size_t)t * c->qd, hp->n_head, hp->head_dim, hp->rope_dim, pos + t, hp->rope_theta, hp->rope_type);
            cpu_rope(c->k + (size_t)t * c->kvd, hp->n_head_kv, hp->head_dim, hp->rope_dim, pos + t, hp->rope_theta, hp->rope_type);
            size_t off = ((size_t)l * b->n_ctx + pos + t) * c->kvd;
            memcpy(c->k_cache + off, c->k + (size_t)t * c->kvd, (size_t)c->kvd * sizeof(float));
            memcpy(c->v_cache + off, c->v + (size_t)t * c->kvd, (size_t)c->kvd * sizeof(float));
        }
        struct attn_job aj = {m, c, l, n, pos, b->n_ctx};
        cpu_pool_run_work(c->pool, attn_worker, &aj, (int64_t)n * hp->n_head * (pos + n) * hp->head_dim * 2);
        cpu_matmul(c->pool, &L->wo, c->att, n, c->tmp);
        for (size_t i = 0; i < (size_t)n * E; i++) c->x[i] += c->tmp[i];

        for (int t = 0; t < n; t++)
            cpu_rmsnorm(c->x + (size_t)t * E, L->ffn_norm.data, c->h + (size_t)t * E, E, hp->rms_eps);
        cpu_matmul(c->pool, &L->w_gate, c->h, n, c->gate);
        cpu_matmul(c->pool, &L->w_up, c->h, n, c->up);
        for (size_t i = 0; i < (size_t)n * c->n_ff; i++) {
            float g = c->gate[i];
            c->gate[i] = g / (1.0f + expf(-g)) * c->up[i];
        }
        cpu_matmul(c->pool, &L->w_down, c->gate, n, c->tmp);
        for (size_t i = 0; i < (size_t)n * E; i++) c->x[i] += c->tmp[i];
        if (c->hidden)
            memcpy(c->hidden + ((size_t)l * c->hidden_n + hidden_off) * E, c->x, (size_t)n * E * sizeof(float));
    }
    for (int t = 0; t < n; t++)
        cpu_rmsnorm(c->x + (size_t)t * E, m->output_norm.data, c->h + (size_t)t * E, E, hp->rms_eps);
    if (c->hidden)
        memcpy(c->hidden + ((size_t)hp->n_layer * c->hidden_n + hidden_off) * E, c->h, (size_t)n * E * sizeof(float));
}

static wk_status cpu_forward(struct wk_backend *b, const int32_t *tokens, int n, int pos, float *logits,
                             bool all_logits, char *err, size_t err_len) {
    struct cpu_impl *c = b->impl;
    const struct wk_model *m = b->model;
    if (n < 1 || pos < 0 || (int64_t)pos + n > b->n_ctx)
        return wk_errf(err, err_len, WK_STATUS_OUT_OF_RANGE,
                       "%s: tokens [%d, %d) do not fit the context of %d", __func__, pos, pos + n, b->n_ctx);
    for (int i = 0; i < n; i++)
        if (tokens[i] < 0 || tokens[i] >= c->n_vocab)
            return wk_errf(err, err_len, WK_STATUS_INVALID_ARGUMENT, "%s: token id %d at %d is outside [0, %d)",
                           __func__, tokens[i], i, c->n_vocab);
    free(c->hidden);
    c->hidden = NULL;
    if (b->record_hidden) {
        c->hidden = malloc((size_t)(m->hp.n_layer + 1) * n * c->n_embd * sizeof(float));
        if (!c->hidden) return wk_errf(err, err_len, WK_STATUS_OOM_HOST, "%s: no memory for hidden states", __func__);
        c->hidden_n = n;
    }
    for (int c0 = 0; c0 < n; c0 += CHUNK) {
        int cn = n - c0 < CHUNK ? n - c0 : CHUNK;
        forward_chunk(b, tokens + c0, cn, pos + c0, c0);
        bool last = c0 + cn == n;
        if (all_logits && logits) {
            cpu_matmul(c->pool, &m->output, c->h, cn, logits + (size_t)c0 * c->n_vocab);
            if (last) memcpy(c->last_logits, logits + (size_t)(n - 1) * c->n_vocab, (size_t)c->n_vocab * sizeof(float));
        } else if (last) {
            cpu_matmul(c->pool, &m->output, c->h + (size_t)(cn - 1) * c->n_embd, 1, c->last_logits);
            if (logits) memcpy(logits, c->last_logits, (size_t)c->n_vocab * sizeof(float));
        }
    }
    return WK_STATUS_OK;
}

static wk_status cpu_sample(struct wk_backend *b, const struct wk_sampling *p, const int32_t *history,
                            size_t n_history, uint64_t step, struct wk_sample_out *out, char *err,
                            size_t err_len) {
    struct cpu_impl *c = b->impl;
    (void)err; (void)err_len;
    wk_sample_logits(c->last_logits, c->n_vocab, p, history, n_history, step, c->sample_scratch, out);
    return WK_STATUS_OK;
}

static wk_status cpu_get_hidden(struct wk_backend *b, int layer, float *dst, char *err, size_t err_len) {
    struct cpu_impl *c = b->impl;
    if (!c->hidden || layer < 0 || layer > b->model->hp.n_layer)
        return wk_errf(err, err_len, WK_STATUS_INVALID_ARGUMENT, "%s: no hidden state for layer %d (record_hidden off?)",
                       __func__, layer);
    memcpy(dst, c->hidden + (size_t)layer * c->hidden_n * c->n_embd, (size_t)c->hidden_n * c->n_embd * sizeof(float));
    return WK_STATUS_OK;
}

static void cpu_destroy(struct wk_backend *b) {
    if (!b) return;
    struct cpu_impl *c = b->impl;
    if (c) {
        cpu_pool_free(c->pool);
        free(c->k_cache); free(c->v_cache);
        free(c->x); free(c->h); free(c->q); free(c->k); free(c->v); free(c->att); free(c->tmp);
        free(c->gate); free(c->up); free(c->scores); free(c->last_logits); free(c->sample_scratch);
        free(c->hidden);
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

wk_status wk_backend_cpu_create(const struct wk_model *m, int n_ctx, int n_threads, struct wk_backend **out,
                                char *err, size_t err_len) {
    *out = NULL;
    const struct wk_hparams *hp = &m->hp;
    if (n_ctx < 1 || n_ctx > (1 << 20))
        return wk_errf(err, err_len, WK_STATUS_INVALID_ARGUMENT, "%s: context %d is outside [1, 1048576]", __func__, n_ctx);
    if (n_threads <= 0) {
        long nc = sysconf(_SC_NPROCESSORS_ONLN);
        /* past ~8 threads the per-matmul hand-off costs more than it saves */
        n_threads = nc > 0 ? (int)(nc > 8 ? 8 : nc) : 1;
    }
    struct wk_backend *b = calloc(1, sizeof *b);
    struct cpu_impl *c = calloc(1, sizeof *c);
    if (!b || !c) { free(b); free(c); return wk_errf(err, err_len, WK_STATUS_OOM_HOST, "%s: out of memory", __func__); }
    b->ops = &cpu_ops;
    b->model = m;
    b->n_ctx = n_ctx;
    b->impl = c;
    c->n_embd = hp->n_embd;
    c->qd = hp->n_head * hp->head_dim;
    c->kvd = hp->n_head_kv * hp->head_dim;
    c->n_ff = hp->n_ff;
    c->n_vocab = hp->n_vocab;
    c->pool = cpu_pool_create(n_threads);
    size_t kv = (size_t)hp->n_layer * n_ctx * c->kvd;
    int width = c->n_embd > c->qd ? c->n_embd : c->qd;
    c->k_cache = malloc(kv * sizeof(float));
    c->v_cache = malloc(kv * sizeof(float));
    c->x = malloc((size_t)CHUNK * c->n_embd * sizeof(float));
    c->h = malloc((size_t)CHUNK * c->n_embd * sizeof(float));
    c->q = malloc((size_t)CHUNK * c->qd * sizeof(float));
    c->k = malloc((size_t)CHUNK * c->kvd * sizeof(float));
    c->v = malloc((size_t)CHUNK * c->kvd * sizeof(float));
    c->att = malloc((size_t)CHUNK * c->qd * sizeof(float));
    c->tmp = malloc((size_t)CHUNK * width * sizeof(float));
    c->gate = malloc((size_t)CHUNK * c->n_ff * sizeof(float));
    c->up = malloc((size_t)CHUNK * c->n_ff * sizeof(float));
    c->scores = malloc((size_t)cpu_pool_size(c->pool) * n_ctx * sizeof(float));
    c->last_logits = calloc((size_t)c->n_vocab, sizeof(float));
    c->sample_scratch = malloc(wk_sampler_scratch_bytes(c->n_vocab));
    if (!c->pool || !c->k_cache || !c->v_cache || !c->x || !c->h || !c->q || !c->k || !c->v || !c->att || !c->tmp ||
        !c->gate || !c->up || !c->scores || !c->last_logits || !c->sample_scratch) {
        cpu_destroy(b);
        return wk_errf(err, err_len, WK_STATUS_OOM_HOST, "%s: out of memory for a %d-token context (%zu MiB of KV cache)",
                       __func__, n_ctx, 2 * kv * sizeof(float) >> 20);
    }
    snprintf(b->info.device, sizeof b->info.device, "cpu (%d threads)", cpu_pool_size(c->pool));
    b->info.mem_weights = m->weight_bytes;
    b->info.mem_kv = 2 * kv * sizeof(float);
    b->info.mem_scratch = (size_t)CHUNK * (4 * c->n_embd + 2 * c->qd + 2 * c->kvd + 2 * c->n_ff) * sizeof(float);
    *out = b;
    return WK_STATUS_OK;
}
