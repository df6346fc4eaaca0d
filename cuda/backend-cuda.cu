/* backend-cuda.cu — the CUDA backend (core/backend.h): VRAM arenas, weight
 * upload, the batched forward pass over the paged KV pool, and sampling.
 *
 * Everything runs on one non-blocking stream. Memory, sized at creation:
 *   weights  every tensor in its GGUF type (1-D tensors as f32), 256-aligned
 *   kv       K and V pools: (n_layer, n_kv_pages + 1, PAGE, kvd) f16 each; the
 *            extra last page takes the K/V of graph padding rows
 *   state    per-row activations for max_step_tokens rows, rope tables, the
 *            attention split partials, logits, the sampler
 * One step (enqueue_step), for the rows of every sequence in batch order:
 *   embed → per layer: rmsnorm → QKV GEMM → qkv_post (bias, head norms, rope,
 *   K/V into the row's page) → attention (row's page table) → Wo GEMM
 *   (+post-norm) into x → rmsnorm → gate|up GEMM → GLU → down GEMM (+post-norm)
 *   into x → final rmsnorm → logits of the rows asked for. A decode step (<= 8
 *   rows) folds qkv_post into the QKV GEMM and the GLU into the gate|up GEMM
 *   (their epilogues; gemm-fused.cu) where the model allows — the same bits.
 * Row metadata (token, position, page-table offset; the page tables) goes up
 * in one copy from pinned memory, and every kernel reads it from device
 * memory, so a pure-decode step of B rows replays one captured CUDA graph
 * per batch-size bucket and attention depth — the splits the longest row
 * needs, rounded up to a power of two (padding rows write only the spare page).
 * Batch invariance: every kernel computes a row in an order fixed by the
 * model's shapes (see ops.cuh, gemm.cu, attention.cu), so eager steps, graph
 * replays and any mix of rows give a token bit-identical results.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cuda/ops.cuh"
#include "loader/model.h"
#include "core/backend.h"

#define STAGE_BYTES (32u << 20)
#define MAX_ROPES 4         /* distinct rope tables (gemma3: local + global) */
#define N_BUCKETS 8         /* decode graphs for 1, 2, 4, ..., 128 rows */
#define N_SPLIT_CLASSES 12  /* ... and for attention grids 1, 2, 4, ..., 2048 splits deep (capped at max_split) */

static int roundup(int x, int m) { return (x + m - 1) / m * m; }

struct cu_layer {
    wk_cu_mat wq, wk, wv, wo, gate, up, down;
    const float *attn_norm, *ffn_norm, *bq, *bk, *bv, *q_norm, *k_norm, *attn_post, *ffn_post; /* f32; may be NULL */
    int window, rope;
};

struct cu_impl {
    int dev, n_sm;
    cudaStream_t st;
    /* shapes */
    int E, qd, kvd, n_ff, V, n_layer, hd, n_head, n_kv, rd, neox, gelu;
    float eps, embd_scale, attn_scale;
    int ld;           /* activation row stride (elements): max of E, qd, n_ff rounded up to WK_GEMM_BK */
    int R;            /* rows of the activation buffers (multiple of WK_GEMM_MROWS) */
    int LR;           /* rows of the logits buffer */
    int max_split;    /* attention splits of a full context */
    int pt_cap;       /* page-table entries per step */
    int n_pages;      /* pool pages (+1 spare) */

    uint8_t *warena, *karena, *sarena;
    size_t wbytes, kvbytes, sbytes;

    cu_layer *L;
    wk_cu_mat embd, out;
    const float *out_norm;
    float2 *rope_cs[MAX_ROPES];
    int n_ropes, n_rope_tabs;      /* filled / carved tables */

    __half *kc, *vc;                 /* (n_layer, n_pages, PAGE, kvd) */
    int32_t *d_meta;                 /* row_tok (R) | row_pos (R) | row_pt (R) | logit_rows (LR) | pt (pt_cap) */
    int32_t *h_meta;                 /* pinned, same layout */
    float *x, *h32, *qkv, *q, *gu, *tmp, *part, *lg32, *logits, *sample_logits;
    __half *h16, *lg16;
    float *act32;                    /* (8, ld) the GLU's output of a decode step (wk_cu_gemm_glu) */
    __half *act16;
    wk_cu_sample_res *d_gres, *h_gres, *h_res;
    uint8_t *greedy_ws;              /* wk_cu_greedy_rows' counters and partials */
    wk_cu_sampler smp;
    int32_t *h_hist;                 /* pinned (max_seqs, hist_cap) */

    uint8_t *h_stage[2];
    cudaEvent_t ev_stage[2], ev_meta;

    cudaGraphExec_t graph[N_BUCKETS][N_SPLIT_CLASSES]; /* captured when first needed */
    bool graph_failed[N_BUCKETS][N_SPLIT_CLASSES];

    /* the last forward */
    int n_seqs_last;
    bool *has_logits;                /* (max_seqs) */
    bool gres_valid;
    bool force_eager;                /* warm-up: kernels load outside graph capture */
    float *hidden;                   /* (n_layer+1, R, E) when record_hidden */
    int hidden_n;
};

static int32_t *meta_tok(cu_impl *, int32_t *m) { return m; }
static int32_t *meta_pos(cu_impl *c, int32_t *m) { return m + c->R; }
static int32_t *meta_rpt(cu_impl *c, int32_t *m) { return m + 2 * c->R; }
static int32_t *meta_lrows(cu_impl *c, int32_t *m) { return m + 3 * c->R; }
static int32_t *meta_pt(cu_impl *c, int32_t *m) { return m + 3 * c->R + c->LR; }
static size_t meta_count(const cu_impl *c) { return (size_t)3 * c->R + c->LR + c->pt_cap; }

// --- weights ------------------------------------------------------------------------

/* F16/BF16 rows that are not whole 8-element chunks go up as F32 (the
 * tensor-core GEMM reads 16-byte chunks; see gemm.cu). */
static bool widen_to_f32(const wk_tensor *t) {
    return (t->type == GGML_TYPE_F16 || t->type == GGML_TYPE_BF16) && t->ne[0] % 8 != 0;
}

static size_t tensor_dev_bytes(const wk_tensor *t, bool vec) {
    if (!t->data) return 0;
    if (vec) return wk_al256((size_t)t->ne[0] * sizeof(float));
    if (widen_to_f32(t)) return wk_al256((size_t)t->ne[0] * t->ne[1] * sizeof(float));
    if (wk_grouped(t->type)) return wk_al256(wk_grouped_row_bytes(t->type, t->ne[0]) * (size_t)t->ne[1]);
    return wk_al256(t->nbytes);
}

struct uploader {
    cu_impl *c;
    int cur;
    uint8_t *cursor;
};

/* Host → device through two pinned staging buffers (the file read of one
 * overlaps the DMA of the other). */
static wk_status stage_copy(uploader *u, uint8_t *dst, const void *src, size_t n, char *err, size_t err_len) {
    cu_impl *c = u->c;
    const uint8_t *s = (const uint8_t *)src;
    while (n > 0) {
        const size_t k = n < STAGE_BYTES ? n : STAGE_BYTES;
        CUDA_TRY(cudaEventSynchronize(c->ev_stage[u->cur]));
        memcpy(c->h_stage[u->cur], s, k);
        CUDA_TRY(cudaMemcpyAsync(dst, c->h_stage[u->cur], k, cudaMemcpyHostToDevice, c->st));
        CUDA_TRY(cudaEventRecord(c->ev_stage[u->cur], c->st));
        u->cur ^= 1;
        dst += k, s += k, n -= k;
    }
    return WK_STATUS_OK;
}

/* A Q8_0 / Q5_0 / Q4_0 matrix in the device's row layout (wk_grouped_to_dev),
 * a stage-buffer's worth of rows at a time. */
static wk_status upload_grouped(uploader *u, const wk_tensor *t, wk_cu_mat *m, char *err, size_t err_len) {
    const size_t src_rb = wk_row_bytes(t->type, t->ne[0]), dev_rb = wk_grouped_row_bytes(t->type, t->ne[0]);
    const int64_t n_rows = t->ne[1], per = STAGE_BYTES / dev_rb > 0 ? (int64_t)(STAGE_BYTES / dev_rb) : 1;
    uint8_t *buf = (uint8_t *)malloc((size_t)per * dev_rb);
    if (!buf) return wk_errf(err, err_len, WK_STATUS_OOM_HOST, "%s: out of memory", __func__);
    wk_status s = WK_STATUS_OK;
    for (int64_t r0 = 0; r0 < n_rows && s == WK_STATUS_OK; r0 += per) {
        const int64_t k = n_rows - r0 < per ? n_rows - r0 : per;
        for (int64_t r = 0; r < k; r++)
            wk_grouped_to_dev(t->type, (const uint8_t *)t->data + (r0 + r) * src_rb, buf + r * dev_rb, t->ne[0]);
        s = stage_copy(u, u->cursor + r0 * dev_rb, buf, (size_t)k * dev_rb, err, err_len);
    }
    free(buf);
    if (s != WK_STATUS_OK) return s;
    m->row_bytes = dev_rb;
    u->cursor += wk_al256(dev_rb * (size_t)n_rows);
    return WK_STATUS_OK;
}

static wk_status upload_mat(uploader *u, const wk_tensor *t, wk_cu_mat *m, char *err, size_t err_len) {
    if (!wk_cuda_type_ok(t->type))
        return wk_errf(err, err_len, WK_STATUS_BAD_MODEL,
                       "%s: tensor '%s' has type %u, which the CUDA backend cannot compute with", __func__, t->name,
                       t->type);
    m->w = u->cursor;
    m->type = (int)t->type;
    m->row_bytes = wk_row_bytes(t->type, t->ne[0]);
    m->n_rows = (int)t->ne[1];
    m->n_in = (int)t->ne[0];
    if (widen_to_f32(t)) {
        const size_t n = (size_t)t->ne[0];
        float *row = (float *)malloc(n * sizeof(float));
        if (!row) return wk_errf(err, err_len, WK_STATUS_OOM_HOST, "%s: out of memory", __func__);
        for (int64_t r = 0; r < t->ne[1]; r++) {
            wk_dequantize_row(t->type, (const uint8_t *)t->data + r * m->row_bytes, row, (int64_t)n);
            wk_status s = stage_copy(u, u->cursor + r * n * sizeof(float), row, n * sizeof(float), err, err_len);
            if (s != WK_STATUS_OK) {
                free(row);
                return s;
            }
        }
        free(row);
        m->type = GGML_TYPE_F32;
        m->row_bytes = n * sizeof(float);
        u->cursor += wk_al256(n * t->ne[1] * sizeof(float));
        return WK_STATUS_OK;
    }
    if (wk_grouped(t->type)) /* rows rearranged for aligned loads (wk_grouped_to_dev) */
        return upload_grouped(u, t, m, err, err_len);
    TRY(stage_copy(u, u->cursor, t->data, t->nbytes, err, err_len));
    u->cursor += wk_al256(t->nbytes);
    return WK_STATUS_OK;
}

static wk_status upload_vec(uploader *u, const wk_tensor *t, const float **out, char *err, size_t err_len) {
    *out = NULL;
    if (!t->data) return WK_STATUS_OK;
    const size_t n = (size_t)t->ne[0];
    float *tmp = (float *)malloc(n * sizeof(float));
    if (!tmp) return wk_errf(err, err_len, WK_STATUS_OOM_HOST, "%s: out of memory", __func__);
    wk_dequantize_row(t->type, t->data, tmp, (int64_t)n);
    wk_status s = stage_copy(u, u->cursor, tmp, n * sizeof(float), err, err_len); /* copied when it returns */
    free(tmp);
    if (s != WK_STATUS_OK) return s;
    *out = (const float *)u->cursor;
    u->cursor += wk_al256(n * sizeof(float));
    return WK_STATUS_OK;
}

#define LAYER_VECS(L) {&L->attn_norm, &L->ffn_norm, &L->bq, &L->bk, &L->bv, &L->attn_q_norm, &L->attn_k_norm, \
                       &L->attn_post_norm, &L->ffn_post_norm}
#define LAYER_MATS(L) {&L->wq, &L->wk, &L->wv, &L->wo, &L->w_gate, &L->w_up, &L->w_down}

static size_t weights_bytes(const wk_model *m) {
    size_t b = tensor_dev_bytes(&m->tok_embd, false) + tensor_dev_bytes(&m->output_norm, true);
    if (!m->tied_output) b += tensor_dev_bytes(&m->output, false);
    for (int l = 0; l < m->hp.n_layer; l++) {
        const wk_layer *L = &m->layers[l];
        const wk_tensor *vecs[9] = LAYER_VECS(L);
        const wk_tensor *mats[7] = LAYER_MATS(L);
        for (int i = 0; i < 9; i++) b += tensor_dev_bytes(vecs[i], true);
        for (int i = 0; i < 7; i++) b += tensor_dev_bytes(mats[i], false);
    }
    return b;
}

static wk_status upload_weights(cu_impl *c, const wk_model *m, char *err, size_t err_len) {
    uploader u = {c, 0, c->warena};
    TRY(upload_mat(&u, &m->tok_embd, &c->embd, err, err_len));
    TRY(upload_vec(&u, &m->output_norm, &c->out_norm, err, err_len));
    if (m->tied_output) c->out = c->embd;
    else TRY(upload_mat(&u, &m->output, &c->out, err, err_len));
    for (int l = 0; l < m->hp.n_layer; l++) {
        const wk_layer *L = &m->layers[l];
        cu_layer *D = &c->L[l];
        const wk_tensor *vecs[9] = LAYER_VECS(L);
        const float **dv[9] = {&D->attn_norm, &D->ffn_norm, &D->bq, &D->bk, &D->bv, &D->q_norm, &D->k_norm,
                               &D->attn_post, &D->ffn_post};
        for (int i = 0; i < 9; i++) TRY(upload_vec(&u, vecs[i], dv[i], err, err_len));
        const wk_tensor *mats[7] = LAYER_MATS(L);
        wk_cu_mat *dm[7] = {&D->wq, &D->wk, &D->wv, &D->wo, &D->gate, &D->up, &D->down};
        for (int i = 0; i < 7; i++) TRY(upload_mat(&u, mats[i], dm[i], err, err_len));
        D->window = L->window;
    }
    CUDA_TRY(cudaStreamSynchronize(c->st));
    return WK_STATUS_OK;
}

static bool same_rope(const wk_rope &a, const wk_rope &b) {
    return a.dim == b.dim && a.theta == b.theta && a.freq_factors == b.freq_factors && a.attn_factor == b.attn_factor;
}

/* Distinct layer ropes (each gets a table), at most MAX_ROPES + 1. */
static int count_ropes(const wk_model *m, int n_ctx) {
    wk_rope seen[MAX_ROPES + 1];
    int n = 0;
    for (int l = 0; l < m->hp.n_layer && n <= MAX_ROPES; l++) {
        const wk_rope r = wk_model_rope(m, l, n_ctx);
        int k = 0;
        while (k < n && !same_rope(seen[k], r)) k++;
        if (k == n) seen[n++] = r;
    }
    return n;
}

/* One (n_ctx, rd/2) {cos, sin} table per distinct layer rope, filled with
 * core/rope.h's formula (the CPU computes the same floats per row). */
static wk_status upload_ropes(cu_impl *c, const wk_model *m, int n_ctx, char *err, size_t err_len) {
    const int half = c->rd / 2 > 0 ? c->rd / 2 : 1;
    wk_rope seen[MAX_ROPES];
    c->n_ropes = 0;
    float2 *tab = (float2 *)malloc((size_t)n_ctx * half * sizeof(float2));
    if (!tab) return wk_errf(err, err_len, WK_STATUS_OOM_HOST, "%s: out of memory for the rope table", __func__);
    wk_status s = WK_STATUS_OK;
    for (int l = 0; l < c->n_layer && s == WK_STATUS_OK; l++) {
        const wk_rope r = wk_model_rope(m, l, n_ctx);
        int k = 0;
        while (k < c->n_ropes && !same_rope(seen[k], r)) k++;
        if (k == c->n_ropes) {
            if (k == MAX_ROPES) {
                s = wk_errf(err, err_len, WK_STATUS_BAD_MODEL, "%s: more than %d distinct rope settings", __func__,
                            MAX_ROPES);
                break;
            }
            seen[k] = r;
            c->n_ropes++;
            for (int p = 0; p < n_ctx; p++)
                for (int i = 0; i < c->rd / 2; i++) {
                    float cs, sn;
                    wk_rope_cos_sin(&r, p, i, &cs, &sn);
                    tab[(size_t)p * half + i] = make_float2(cs, sn);
                }
            uploader u = {c, 0, NULL};
            s = stage_copy(&u, (uint8_t *)c->rope_cs[k], tab, (size_t)n_ctx * half * sizeof(float2), err, err_len);
            if (s == WK_STATUS_OK && cudaStreamSynchronize(c->st) != cudaSuccess)
                s = wk_errf(err, err_len, WK_STATUS_CUDA, "%s: rope upload failed", __func__);
        }
        c->L[l].rope = k;
    }
    free(tab);
    return s;
}

// --- one step ------------------------------------------------------------------------

/* Launch the GEMM of up to 3 segments sharing an input, one launch per run
 * of equal weight types (a Q4_K_M layer may mix them). */
static wk_status gemm(cu_impl *c, const wk_gemm_seg *segs, int n, const __half *x16, const float *x32, int rows,
                      bool add, char *err, size_t err_len) {
    for (int i = 0; i < n;) {
        int j = i + 1;
        while (j < n && segs[j].W.type == segs[i].W.type) j++;
        CUDA_TRY(wk_cu_gemm(segs + i, j - i, x16, x32, c->ld, rows, add, c->st));
        i = j;
    }
    return WK_STATUS_OK;
}

/* Residual update x += post_norm(W · a): straight into x without a post-norm. */
static wk_status proj_residual(cu_impl *c, const wk_cu_mat &W, const float *post, const __half *a16, const float *a32,
                               int rows, char *err, size_t err_len) {
    if (!post) {
        wk_gemm_seg s = {W, c->x, c->E};
        return gemm(c, &s, 1, a16, a32, rows, true, err, err_len);
    }
    wk_gemm_seg s = {W, c->tmp, c->E};
    TRY(gemm(c, &s, 1, a16, a32, rows, false, err, err_len));
    CUDA_TRY(wk_cu_rmsnorm_add(c->tmp, c->E, post, rows, c->E, c->eps, c->x, c->st));
    return WK_STATUS_OK;
}

/* act(gate · h) * (up · h) for the normed rows in h16 / h32, into *a16 /
 * *a32: one kernel into act16 / act32 for a decode step (wk_cu_gemm_glu),
 * else the GEMM into gu and the GLU kernel into h16 / h32 — the same bits. */
static wk_status gate_up_glu(cu_impl *c, const cu_layer &L, int rows, __half **a16, float **a32, char *err,
                             size_t err_len) {
    cudaError_t e = wk_cu_gemm_glu(L.gate, L.up, c->h16, c->ld, rows, c->gelu, c->act32, c->act16, c->ld, c->st);
    if (e != cudaErrorNotSupported) {
        CUDA_TRY(e);
        *a16 = c->act16, *a32 = c->act32;
        return WK_STATUS_OK;
    }
    wk_gemm_seg gu[2] = {{L.gate, c->gu, 2 * c->n_ff}, {L.up, c->gu + c->n_ff, 2 * c->n_ff}};
    TRY(gemm(c, gu, 2, c->h16, c->h32, rows, false, err, err_len));
    CUDA_TRY(wk_cu_glu(c->gu, rows, c->n_ff, c->gelu, c->h32, c->h16, c->ld, c->st));
    *a16 = c->h16, *a32 = c->h32;
    return WK_STATUS_OK;
}

/* Enqueue the layers for `rows` rows whose metadata is in d_meta; leaves the
 * final-normed rows in h32/h16. max_split: attention grid depth. record:
 * copy each layer's x into the hidden buffer. */
static wk_status enqueue_layers(struct wk_backend *b, int rows, int max_split, bool record, char *err,
                                size_t err_len) {
    cu_impl *c = (cu_impl *)b->impl;
    const int32_t *row_tok = meta_tok(c, c->d_meta), *row_pos = meta_pos(c, c->d_meta);
    const int32_t *row_pt = meta_rpt(c, c->d_meta), *pt = meta_pt(c, c->d_meta);
    const size_t layer_kv = (size_t)c->n_pages * WK_KV_PAGE_TOKENS * c->kvd;
    CUDA_TRY(wk_cu_embed(c->embd, row_tok, rows, c->embd_scale, c->x, c->st));
    for (int l = 0; l < c->n_layer; l++) {
        const cu_layer &L = c->L[l];
        __half *kc = c->kc + l * layer_kv, *vc = c->vc + l * layer_kv;
        CUDA_TRY(wk_cu_rmsnorm(c->x, c->E, L.attn_norm, rows, c->E, c->eps, c->h32, c->h16, c->ld, c->st));
        wk_qkv_post_args qa = {c->qkv, L.bq, L.bk, L.bv, L.q_norm, L.k_norm, c->eps, c->rope_cs[L.rope],
                               c->n_head, c->n_kv, c->hd, c->rd, c->neox, row_pos, row_pt, pt, c->q, kc, vc};
        /* q, k, v: one kernel for a decode step (wk_cu_gemm_qkv), else the GEMM and qkv_post — the same bits */
        const cudaError_t qe = wk_cu_gemm_qkv(L.wq, L.wk, L.wv, c->h16, c->ld, rows, qa, c->st);
        if (qe == cudaErrorNotSupported) {
            const int W3 = c->qd + 2 * c->kvd;
            wk_gemm_seg qkv[3] = {{L.wq, c->qkv, W3}, {L.wk, c->qkv + c->qd, W3}, {L.wv, c->qkv + c->qd + c->kvd, W3}};
            TRY(gemm(c, qkv, 3, c->h16, c->h32, rows, false, err, err_len));
            CUDA_TRY(wk_cu_qkv_post(qa, rows, c->st));
        } else {
            CUDA_TRY(qe);
        }
        wk_attn_args aa = {c->q, kc, vc, row_pos, row_pt, pt, c->n_head, c->n_kv, c->hd, L.window, c->attn_scale,
                           c->part, c->h32, c->h16, c->ld};
        CUDA_TRY(wk_cu_attention(aa, rows, max_split, c->st));
        TRY(proj_residual(c, L.wo, L.attn_post, c->h16, c->h32, rows, err, err_len));

        CUDA_TRY(wk_cu_rmsnorm(c->x, c->E, L.ffn_norm, rows, c->E, c->eps, c->h32, c->h16, c->ld, c->st));
        __half *a16 = c->h16;
        float *a32 = c->h32;
        TRY(gate_up_glu(c, L, rows, &a16, &a32, err, err_len));
        TRY(proj_residual(c, L.down, L.ffn_post, a16, a32, rows, err, err_len));
        if (record)
            CUDA_TRY(cudaMemcpyAsync(c->hidden + (size_t)l * c->hidden_n * c->E, c->x, (size_t)rows * c->E * 4,
                                     cudaMemcpyDeviceToDevice, c->st));
    }
    CUDA_TRY(wk_cu_rmsnorm(c->x, c->E, c->out_norm, rows, c->E, c->eps, c->h32, c->h16, c->ld, c->st));
    if (record)
        CUDA_TRY(cudaMemcpy2DAsync(c->hidden + (size_t)c->n_layer * c->hidden_n * c->E, c->E * 4, c->h32, c->ld * 4,
                                   c->E * 4, rows, cudaMemcpyDeviceToDevice, c->st));
    return WK_STATUS_OK;
}

/* Logits of rows (device list lrows, n of them, at most LR; NULL: rows 0..n-1) into `logits`
 * (n, V), through the gathered rows. */
static wk_status enqueue_logits(cu_impl *c, const int32_t *lrows, int n, float *logits, char *err, size_t err_len) {
    wk_gemm_seg s = {c->out, logits, c->V};
    if (!lrows) { /* every row, in order */
        CUDA_TRY(wk_cu_gemm(&s, 1, c->h16, c->h32, c->ld, n, false, c->st));
        return WK_STATUS_OK;
    }
    CUDA_TRY(wk_cu_gather_rows(c->h16, c->h32, c->ld, lrows, n, c->lg16, c->lg32, c->st));
    CUDA_TRY(wk_cu_gemm(&s, 1, c->lg16, c->lg32, c->ld, n, false, c->st));
    return WK_STATUS_OK;
}

/* A pure-decode step of B (bucketed) rows as one graph: metadata upload,
 * layers (attention max_split splits deep), logits of every row straight
 * into sample_logits, greedy results back to pinned memory. */
static wk_status enqueue_decode(struct wk_backend *b, int B, int max_split, char *err, size_t err_len) {
    cu_impl *c = (cu_impl *)b->impl;
    CUDA_TRY(cudaMemcpyAsync(c->d_meta, c->h_meta, meta_count(c) * sizeof(int32_t), cudaMemcpyHostToDevice, c->st));
    TRY(enqueue_layers(b, B, max_split, false, err, err_len));
    TRY(enqueue_logits(c, NULL, B, c->sample_logits, err, err_len)); /* a decode step samples every row */
    CUDA_TRY(wk_cu_greedy_rows(c->sample_logits, c->V, B, c->d_gres, c->greedy_ws, c->LR, c->st));
    CUDA_TRY(cudaMemcpyAsync(c->h_gres, c->d_gres, (size_t)B * sizeof(wk_cu_sample_res), cudaMemcpyDeviceToHost,
                             c->st));
    return WK_STATUS_OK;
}

static int bucket_of(int n) {
    int k = 0;
    while ((1 << k) < n) k++;
    return k;
}

/* Attention splits (grid depth) of split class sc: 2^sc, at most max_split. */
static int class_splits(const cu_impl *c, int sc) { return (1 << sc) < c->max_split ? 1 << sc : c->max_split; }

/* The smallest split class deep enough for rows up to position max_pos: a
 * row's splits depend only on its own position (attention.cu), so a shallower
 * grid gives the same bits, and a step of short sequences in a long context
 * does not launch max_split blocks a head (all but one exiting) and the merge
 * kernel for nothing. */
static int split_class(const cu_impl *c, int max_pos) {
    const int need = max_pos / WK_ATT_CHUNK + 1;
    int sc = 0;
    while (sc + 1 < N_SPLIT_CLASSES && class_splits(c, sc) < need) sc++;
    return sc;
}

static wk_status run_decode_graph(struct wk_backend *b, int bk, int sc, char *err, size_t err_len) {
    cu_impl *c = (cu_impl *)b->impl;
    const int splits = class_splits(c, sc);
    cudaGraphExec_t *gx = &c->graph[bk][sc];
    if (!*gx && !c->graph_failed[bk][sc]) {
        cudaGraph_t g = NULL;
        CUDA_TRY(cudaStreamBeginCapture(c->st, cudaStreamCaptureModeRelaxed));
        wk_status s = enqueue_decode(b, 1 << bk, splits, err, err_len);
        cudaError_t e = cudaStreamEndCapture(c->st, &g);
        if (s != WK_STATUS_OK) {
            if (g) cudaGraphDestroy(g);
            return s;
        }
        if (e == cudaSuccess) e = cudaGraphInstantiate(gx, g, 0);
        if (g) cudaGraphDestroy(g);
        if (e != cudaSuccess) {
            (void)cudaGetLastError();
            *gx = NULL;
            c->graph_failed[bk][sc] = true; /* eager from now on: the same kernels */
            wk_log(WK_LOG_WARN, "cuda: decode graph for %d rows, %d splits unavailable (%s); running eagerly", 1 << bk,
                   splits, cudaGetErrorString(e));
        }
    }
    if (*gx) {
        CUDA_TRY(cudaGraphLaunch(*gx, c->st));
        return WK_STATUS_OK;
    }
    return enqueue_decode(b, 1 << bk, splits, err, err_len);
}

// --- the interface ------------------------------------------------------------------------

static wk_status cu_forward(struct wk_backend *b, const struct wk_batch *batch, char *err, size_t err_len) {
    cu_impl *c = (cu_impl *)b->impl;
    int n = 0, n_pt = 0;
    TRY(wk_batch_check(b, batch, &n, &n_pt, err, err_len));
    CUDA_TRY(cudaSetDevice(c->dev));
    bool decode = !b->record_hidden && !c->force_eager && batch->n_seqs == n && n <= (1 << (N_BUCKETS - 1)) && n <= c->LR;
    const int B = decode ? 1 << bucket_of(n) : n;
    if (decode && (B > c->R || B > c->LR || n_pt + 1 > c->pt_cap)) decode = false;

    /* metadata into pinned memory (the previous step's copy has been consumed) */
    CUDA_TRY(cudaEventSynchronize(c->ev_meta));
    int32_t *tok = meta_tok(c, c->h_meta), *pos = meta_pos(c, c->h_meta), *rpt = meta_rpt(c, c->h_meta);
    int32_t *lrows = meta_lrows(c, c->h_meta), *pt = meta_pt(c, c->h_meta);
    int r = 0, po = 0, max_pos = 0;
    for (int i = 0; i < batch->n_seqs; i++) {
        const struct wk_batch_seq *s = &batch->seqs[i];
        const int need = (s->pos + s->n_tokens + WK_KV_PAGE_TOKENS - 1) / WK_KV_PAGE_TOKENS;
        memcpy(pt + po, s->pages, (size_t)need * sizeof(int32_t));
        for (int t = 0; t < s->n_tokens; t++, r++) {
            tok[r] = s->tokens[t];
            pos[r] = s->pos + t;
            rpt[r] = po;
        }
        if (s->pos + s->n_tokens - 1 > max_pos) max_pos = s->pos + s->n_tokens - 1;
        po += need;
        c->has_logits[i] = s->sample;
    }
    c->n_seqs_last = batch->n_seqs;
    if (decode) {
        /* padding rows: token 0 at position 0 of the spare page */
        pt[po] = c->n_pages - 1;
        for (; r < B; r++) tok[r] = 0, pos[r] = 0, rpt[r] = po;
        for (int i = 0; i < B; i++) lrows[i] = i;
        CUDA_TRY(cudaGetLastError());
        TRY(run_decode_graph(b, bucket_of(n), split_class(c, max_pos), err, err_len));
        CUDA_TRY(cudaEventRecord(c->ev_meta, c->st));
        c->gres_valid = true;
        bool copied = false;
        for (int i = 0; i < batch->n_seqs; i++)
            if (batch->seqs[i].logits) {
                CUDA_TRY(cudaMemcpyAsync(batch->seqs[i].logits, c->sample_logits + (size_t)i * c->V,
                                         (size_t)c->V * sizeof(float), cudaMemcpyDeviceToHost, c->st));
                copied = true;
            }
        if (copied) CUDA_TRY(cudaStreamSynchronize(c->st));
        return WK_STATUS_OK;
    }

    /* eager: any mix of rows */
    c->gres_valid = false;
    if (b->record_hidden) {
        if (c->hidden) cudaFree(c->hidden);
        c->hidden = NULL;
        const size_t need = (size_t)(c->n_layer + 1) * n * c->E * sizeof(float);
        cudaError_t e = cudaMalloc(&c->hidden, need);
        if (e != cudaSuccess) {
            (void)cudaGetLastError();
            c->hidden = NULL;
            return wk_errf(err, err_len, WK_STATUS_OOM_DEV, "%s: no room for %zu MiB of hidden states", __func__,
                           need >> 20);
        }
        c->hidden_n = n;
    }
    CUDA_TRY(cudaMemcpyAsync(c->d_meta, c->h_meta, meta_count(c) * sizeof(int32_t), cudaMemcpyHostToDevice, c->st));
    CUDA_TRY(cudaEventRecord(c->ev_meta, c->st));
    TRY(enqueue_layers(b, n, max_pos / WK_ATT_CHUNK + 1, b->record_hidden, err, err_len));

    /* logits: the sampled rows (into sample_logits), then every row of the
     * sequences that asked for all, in chunks of LR rows */
    bool host_copy = false;
    for (int i = 0, r0 = 0; i < batch->n_seqs; i++) {
        const struct wk_batch_seq *s = &batch->seqs[i];
        if (s->sample || s->logits) {
            /* rows of this sequence whose logits are needed */
            const int first = s->logits ? 0 : s->n_tokens - 1;
            for (int t0 = first; t0 < s->n_tokens; t0 += c->LR) {
                const int cn = s->n_tokens - t0 < c->LR ? s->n_tokens - t0 : c->LR;
                /* the row list for this chunk goes through a small device copy */
                CUDA_TRY(cudaEventSynchronize(c->ev_meta));
                for (int k = 0; k < cn; k++) lrows[k] = r0 + t0 + k;
                CUDA_TRY(cudaMemcpyAsync(meta_lrows(c, c->d_meta), lrows, (size_t)cn * sizeof(int32_t),
                                         cudaMemcpyHostToDevice, c->st));
                CUDA_TRY(cudaEventRecord(c->ev_meta, c->st));
                TRY(enqueue_logits(c, meta_lrows(c, c->d_meta), cn, c->logits, err, err_len));
                const bool has_last = t0 + cn == s->n_tokens;
                if (s->sample && has_last)
                    CUDA_TRY(cudaMemcpyAsync(c->sample_logits + (size_t)i * c->V, c->logits + (size_t)(cn - 1) * c->V,
                                             (size_t)c->V * sizeof(float), cudaMemcpyDeviceToDevice, c->st));
                if (s->logits) {
                    CUDA_TRY(cudaMemcpyAsync(s->logits + (size_t)t0 * c->V, c->logits, (size_t)cn * c->V * sizeof(float),
                                             cudaMemcpyDeviceToHost, c->st));
                    host_copy = true;
                    CUDA_TRY(cudaStreamSynchronize(c->st)); /* c->logits is reused by the next chunk */
                }
            }
        }
        r0 += s->n_tokens;
    }
    if (host_copy) CUDA_TRY(cudaStreamSynchronize(c->st));
    return WK_STATUS_OK;
}

static wk_status cu_sample(struct wk_backend *b, const struct wk_sample_req *reqs, int n, struct wk_sample_out *out,
                           char *err, size_t err_len) {
    cu_impl *c = (cu_impl *)b->impl;
    CUDA_TRY(cudaSetDevice(c->dev));
    bool need_greedy = false;
    if (n < 0 || n > b->max_seqs)
        return wk_errf(err, err_len, WK_STATUS_INVALID_ARGUMENT, "%d sampling requests (at most %d)", n, b->max_seqs);
    for (int i = 0; i < n; i++) {
        const struct wk_sample_req *q = &reqs[i];
        if (q->seq < 0 || q->seq >= c->n_seqs_last || !c->has_logits[q->seq])
            return wk_errf(err, err_len, WK_STATUS_INVALID_ARGUMENT, "sequence %d of the last step has no logits",
                           q->seq);
    }
    const int hist_cap = c->smp.hist_cap;
    for (int i = 0; i < n; i++) {
        const struct wk_sample_req *q = &reqs[i];
        const struct wk_sampling *p = q->p;
        const bool pen = p->repetition_penalty != 1.0f && p->repeat_last_n > 0 && q->history && q->n_history > 0;
        if (!(p->temperature > 0.0f) && !pen && p->n_logprobs <= 0) {
            need_greedy = true;
            continue;
        }
        int n_win = 0;
        if (pen) {
            size_t w = (size_t)p->repeat_last_n < q->n_history ? (size_t)p->repeat_last_n : q->n_history;
            if (w > (size_t)hist_cap) w = (size_t)hist_cap;
            n_win = (int)w;
            int32_t *hh = c->h_hist + (size_t)i * hist_cap;
            memcpy(hh, q->history + (q->n_history - w), w * sizeof(int32_t));
            CUDA_TRY(cudaMemcpyAsync(c->smp.hist, hh, w * sizeof(int32_t), cudaMemcpyHostToDevice, c->st));
        }
        CUDA_TRY(wk_cu_sample(&c->smp, c->sample_logits + (size_t)q->seq * c->V, p, n_win, q->step, c->st));
        CUDA_TRY(cudaMemcpyAsync(&c->h_res[i], c->smp.res, sizeof(wk_cu_sample_res), cudaMemcpyDeviceToHost, c->st));
    }
    if (need_greedy && !c->gres_valid) {
        CUDA_TRY(wk_cu_greedy_rows(c->sample_logits, c->V, c->n_seqs_last, c->d_gres, c->greedy_ws, c->LR, c->st));
        CUDA_TRY(cudaMemcpyAsync(c->h_gres, c->d_gres, (size_t)c->n_seqs_last * sizeof(wk_cu_sample_res),
                                 cudaMemcpyDeviceToHost, c->st));
        c->gres_valid = true;
    }
    CUDA_TRY(cudaStreamSynchronize(c->st));
    for (int i = 0; i < n; i++) {
        const struct wk_sampling *p = reqs[i].p;
        const bool pen = p->repetition_penalty != 1.0f && p->repeat_last_n > 0 && reqs[i].history &&
                         reqs[i].n_history > 0;
        const wk_cu_sample_res *r = (!(p->temperature > 0.0f) && !pen && p->n_logprobs <= 0) ? &c->h_gres[reqs[i].seq]
                                                                                               : &c->h_res[i];
        out[i].token = r->token;
        out[i].logprob = r->logprob;
        out[i].n_top = r->n_top;
        for (int j = 0; j < r->n_top; j++) {
            out[i].top_ids[j] = r->top_ids[j];
            out[i].top_logprobs[j] = r->top_logprobs[j];
        }
    }
    return WK_STATUS_OK;
}

static wk_status cu_get_hidden(struct wk_backend *b, int layer, float *dst, char *err, size_t err_len) {
    cu_impl *c = (cu_impl *)b->impl;
    if (!c->hidden || !b->record_hidden || layer < 0 || layer > c->n_layer)
        return wk_errf(err, err_len, WK_STATUS_INVALID_ARGUMENT,
                       "%s: no hidden state for layer %d (record_hidden off?)", __func__, layer);
    CUDA_TRY(cudaSetDevice(c->dev));
    CUDA_TRY(cudaStreamSynchronize(c->st));
    CUDA_TRY(cudaMemcpy(dst, c->hidden + (size_t)layer * c->hidden_n * c->E, (size_t)c->hidden_n * c->E * 4,
                        cudaMemcpyDeviceToHost));
    return WK_STATUS_OK;
}

static void cu_destroy(struct wk_backend *b) {
    if (!b) return;
    cu_impl *c = (cu_impl *)b->impl;
    if (c) {
        if (c->st) cudaStreamSynchronize(c->st);
        for (int i = 0; i < N_BUCKETS; i++)
            for (int j = 0; j < N_SPLIT_CLASSES; j++)
                if (c->graph[i][j]) cudaGraphExecDestroy(c->graph[i][j]);
        for (int i = 0; i < 2; i++) {
            if (c->ev_stage[i]) cudaEventDestroy(c->ev_stage[i]);
            if (c->h_stage[i]) cudaFreeHost(c->h_stage[i]);
        }
        if (c->ev_meta) cudaEventDestroy(c->ev_meta);
        if (c->h_meta) cudaFreeHost(c->h_meta);
        if (c->h_gres) cudaFreeHost(c->h_gres);
        if (c->h_res) cudaFreeHost(c->h_res);
        if (c->h_hist) cudaFreeHost(c->h_hist);
        if (c->hidden) cudaFree(c->hidden);
        if (c->warena) cudaFree(c->warena);
        if (c->karena) cudaFree(c->karena);
        if (c->sarena) cudaFree(c->sarena);
        if (c->st) cudaStreamDestroy(c->st);
        free(c->L);
        free(c->has_logits);
        free(c);
    }
    free(b);
}

static const struct wk_backend_ops cu_ops = {
    "cuda", cu_forward, cu_sample, cu_get_hidden, cu_destroy,
};

// --- creation --------------------------------------------------------------------------------

/* Carve the state arena; with base == NULL only counts. Returns bytes. */
static size_t carve_state(cu_impl *c, int n_ctx, int max_seqs, uint8_t *base) {
    size_t off = 0;
#define CARVE(ptr, type, count)                                             \
    do {                                                                    \
        if (base) ptr = (type *)(base + off);                               \
        off += wk_al256((size_t)(count) * sizeof(type));                    \
    } while (0)
    const size_t R = (size_t)c->R;
    const int half = c->rd / 2 > 0 ? c->rd / 2 : 1;
    for (int i = 0; i < c->n_rope_tabs; i++) CARVE(c->rope_cs[i], float2, (size_t)n_ctx * half);
    CARVE(c->d_meta, int32_t, meta_count(c));
    CARVE(c->x, float, R * c->E);
    CARVE(c->tmp, float, R * c->E);
    CARVE(c->h32, float, R * c->ld);
    CARVE(c->h16, __half, R * c->ld);
    CARVE(c->qkv, float, R * (c->qd + 2 * c->kvd));
    CARVE(c->q, float, R * c->qd);
    CARVE(c->gu, float, R * 2 * c->n_ff);
    CARVE(c->act32, float, 8 * (size_t)c->ld);
    CARVE(c->act16, __half, 8 * (size_t)c->ld);
    CARVE(c->part, float, R * c->n_head * c->max_split * (c->hd + 2));
    CARVE(c->lg32, float, (size_t)roundup(c->LR, WK_GEMM_MROWS) * c->ld);
    CARVE(c->lg16, __half, (size_t)roundup(c->LR, WK_GEMM_MROWS) * c->ld);
    CARVE(c->logits, float, (size_t)c->LR * c->V);
    CARVE(c->sample_logits, float, (size_t)c->LR * c->V);
    CARVE(c->d_gres, wk_cu_sample_res, c->LR);
    CARVE(c->greedy_ws, uint8_t, wk_cu_greedy_ws_bytes(c->LR));
    uint8_t *smem = NULL;
    const int hist_cap = n_ctx + 1;
    CARVE(smem, uint8_t, wk_cu_sampler_bytes(c->V, hist_cap));
    if (base) wk_cu_sampler_init(&c->smp, c->V, hist_cap, smem);
#undef CARVE
    (void)max_seqs;
    return off;
}

static wk_status check_model(const wk_model *m, char *err, size_t err_len) {
    const wk_hparams *hp = &m->hp;
    if (hp->head_dim % 8 || hp->head_dim > 256 || hp->rope_dim % 2 || hp->rope_dim > hp->head_dim ||
        hp->n_head_kv < 1 || hp->n_head % hp->n_head_kv)
        return wk_errf(err, err_len, WK_STATUS_BAD_MODEL,
                       "%s: head_dim %d / rope_dim %d / heads %d:%d are outside what the kernels support "
                       "(head_dim a multiple of 8 up to 256, even rope_dim <= head_dim, n_head a multiple of n_head_kv)",
                       __func__, hp->head_dim, hp->rope_dim, hp->n_head, hp->n_head_kv);
    return WK_STATUS_OK;
}

/* The shapes the kernels and buffers are sized by (no allocation). */
static void set_shapes(struct wk_backend *b, cu_impl *c, const wk_model *m, int n_ctx, int max_seqs, int max_rows) {
    const wk_hparams *hp = &m->hp;
    b->n_ctx = n_ctx;
    b->n_vocab = hp->n_vocab;
    b->max_seqs = max_seqs;
    b->max_step_tokens = max_rows;
    c->E = hp->n_embd, c->n_head = hp->n_head, c->n_kv = hp->n_head_kv, c->hd = hp->head_dim;
    c->rd = hp->rope_dim, c->neox = hp->rope_type == WK_ROPE_NEOX, c->gelu = hp->act == WK_ACT_GELU_TANH;
    c->qd = hp->n_head * hp->head_dim, c->kvd = hp->n_head_kv * hp->head_dim;
    c->n_ff = hp->n_ff, c->V = hp->n_vocab, c->n_layer = hp->n_layer;
    c->eps = hp->rms_eps, c->embd_scale = hp->embd_scale, c->attn_scale = hp->attn_scale;
    int w = c->E > c->qd ? c->E : c->qd;
    if (c->n_ff > w) w = c->n_ff;
    c->ld = roundup(w, WK_GEMM_BK);
    c->LR = max_seqs > 64 ? max_seqs : 64;
    const int bucket_rows = 1 << bucket_of(max_seqs); /* the largest decode graph */
    c->R = roundup(max_rows > bucket_rows ? max_rows : bucket_rows, WK_GEMM_MROWS);
    c->max_split = wk_cdiv(n_ctx, WK_ATT_CHUNK);
    c->pt_cap = max_seqs * wk_cdiv(n_ctx, WK_KV_PAGE_TOKENS) + max_rows + 1;
    c->n_rope_tabs = count_ropes(m, n_ctx);
}

static wk_status open_device(struct wk_backend *b, cu_impl *c, int device, char *err, size_t err_len) {
    cudaDeviceProp prop;
    c->dev = device;
    CUDA_TRY(cudaSetDevice(device));
    CUDA_TRY(cudaGetDeviceProperties(&prop, device));
    c->n_sm = prop.multiProcessorCount;
    snprintf(b->info.device, sizeof b->info.device, "%.127s", prop.name);
    b->info.mem_total = prop.totalGlobalMem;
    CUDA_TRY(cudaStreamCreateWithFlags(&c->st, cudaStreamNonBlocking));
    CUDA_TRY(cudaEventCreateWithFlags(&c->ev_stage[0], cudaEventDisableTiming));
    CUDA_TRY(cudaEventCreateWithFlags(&c->ev_stage[1], cudaEventDisableTiming));
    CUDA_TRY(cudaEventCreateWithFlags(&c->ev_meta, cudaEventDisableTiming));
    return WK_STATUS_OK;
}

/* The KV pool: kv_tokens when configured, else as many pages as fit in 90%
 * of the free VRAM after weights, state and a reserve, at most n_ctx per
 * sequence. OOM_DEV with the numbers when that is not even one sequence. */
static wk_status size_kv_pool(struct wk_backend *b, cu_impl *c, int kv_tokens, char *err, size_t err_len) {
    size_t free_b = 0, total_b = 0;
    c->wbytes = weights_bytes(b->model);
    c->sbytes = carve_state(c, b->n_ctx, b->max_seqs, NULL);
    CUDA_TRY(cudaMemGetInfo(&free_b, &total_b));
    const size_t page_bytes = (size_t)2 * c->n_layer * WK_KV_PAGE_TOKENS * c->kvd * sizeof(__half);
    const size_t reserve = (size_t)256 << 20; /* context, graphs, hidden states of tests */
    const size_t fixed = c->wbytes + c->sbytes + reserve;
    const int64_t seq_pages = wk_cdiv(b->n_ctx, WK_KV_PAGE_TOKENS);
    int64_t n_pages;
    if (kv_tokens > 0) {
        n_pages = ((int64_t)kv_tokens + WK_KV_PAGE_TOKENS - 1) / WK_KV_PAGE_TOKENS;
    } else {
        const int64_t fit = free_b > fixed ? (int64_t)((double)(free_b - fixed) * 0.9 / (double)page_bytes) - 1 : 0;
        n_pages = seq_pages * b->max_seqs;
        if (fit < n_pages) n_pages = fit > 0 ? fit : 0;
    }
    if (n_pages > (1 << 24)) n_pages = 1 << 24;
    const size_t kv_need = (size_t)(n_pages + 1) * page_bytes;
    if (n_pages < 1 || fixed + kv_need > free_b || (kv_tokens <= 0 && n_pages < seq_pages))
        return wk_errf(err, err_len, WK_STATUS_OOM_DEV,
                       "%s: %s has %zu MiB free; the model needs %zu MiB of weights + %zu MiB of activations "
                       "(%d-token steps) + %zu MiB reserve, and a KV pool of %lld tokens (%zu MiB at %zu KiB a "
                       "page of %d tokens; one %d-token sequence needs %lld pages)",
                       __func__, b->info.device, free_b >> 20, c->wbytes >> 20, c->sbytes >> 20,
                       b->max_step_tokens, reserve >> 20, (long long)n_pages * WK_KV_PAGE_TOKENS, kv_need >> 20,
                       page_bytes >> 10, WK_KV_PAGE_TOKENS, b->n_ctx, (long long)seq_pages);
    b->n_kv_pages = (int)n_pages;
    c->n_pages = (int)n_pages + 1; /* + the spare page of graph padding rows */
    c->kvbytes = (size_t)c->n_pages * page_bytes;
    return WK_STATUS_OK;
}

/* The three device arenas, the state carved out of one, pinned host buffers. */
static wk_status alloc_arenas(struct wk_backend *b, cu_impl *c, char *err, size_t err_len) {
    cudaError_t e = cudaMalloc(&c->warena, c->wbytes);
    if (e == cudaSuccess) e = cudaMalloc(&c->sarena, c->sbytes);
    if (e == cudaSuccess) e = cudaMalloc(&c->karena, c->kvbytes);
    if (e != cudaSuccess) {
        (void)cudaGetLastError();
        return wk_errf(err, err_len, WK_STATUS_OOM_DEV, "%s: cudaMalloc of %zu + %zu + %zu MiB failed: %s", __func__,
                       c->wbytes >> 20, c->sbytes >> 20, c->kvbytes >> 20, cudaGetErrorString(e));
    }
    carve_state(c, b->n_ctx, b->max_seqs, c->sarena);
    c->kc = (__half *)c->karena;
    c->vc = c->kc + (size_t)c->n_layer * c->n_pages * WK_KV_PAGE_TOKENS * c->kvd;
    CUDA_TRY(cudaMallocHost(&c->h_stage[0], STAGE_BYTES));
    CUDA_TRY(cudaMallocHost(&c->h_stage[1], STAGE_BYTES));
    CUDA_TRY(cudaMallocHost(&c->h_meta, meta_count(c) * sizeof(int32_t)));
    CUDA_TRY(cudaMallocHost(&c->h_gres, (size_t)c->LR * sizeof(wk_cu_sample_res)));
    CUDA_TRY(cudaMallocHost(&c->h_res, (size_t)b->max_seqs * sizeof(wk_cu_sample_res)));
    CUDA_TRY(cudaMallocHost(&c->h_hist, (size_t)b->max_seqs * c->smp.hist_cap * sizeof(int32_t)));
    b->info.mem_weights = c->wbytes;
    b->info.mem_kv = c->kvbytes;
    b->info.mem_scratch = c->sbytes;
    return WK_STATUS_OK;
}

/* KV pool and state to zero: the padding columns and rows of the GEMM inputs
 * stay zero from here on. */
static wk_status zero_state(cu_impl *c, char *err, size_t err_len) {
    CUDA_TRY(cudaMemsetAsync(c->karena, 0, c->kvbytes, c->st));
    CUDA_TRY(cudaMemsetAsync(c->d_meta, 0, c->sbytes - (size_t)((uint8_t *)c->d_meta - c->sarena), c->st));
    CUDA_TRY(cudaMemsetAsync(c->smp.counter, 0, sizeof(unsigned), c->st));
    CUDA_TRY(cudaEventRecord(c->ev_meta, c->st));
    CUDA_TRY(cudaStreamSynchronize(c->st));
    return WK_STATUS_OK;
}

/* Before Ready: one eager step (the kernels load outside any capture) and
 * one decode step (the 1-row graph is captured). They write position 0 of
 * the pool's last page, which its next owner overwrites before reading. */
static wk_status warm_up(struct wk_backend *b, char *err, size_t err_len) {
    cu_impl *c = (cu_impl *)b->impl;
    const int32_t tok0 = 0, page = b->n_kv_pages - 1;
    struct wk_batch_seq q = {&tok0, 1, 0, &page, 1, 0, false, NULL};
    struct wk_batch batch = {1, &q};
    c->force_eager = true;
    wk_status s = cu_forward(b, &batch, err, err_len);
    c->force_eager = false;
    TRY(s);
    TRY(cu_forward(b, &batch, err, err_len));
    CUDA_TRY(cudaStreamSynchronize(c->st));
    return WK_STATUS_OK;
}

extern "C" wk_status wk_backend_cuda_create(const struct wk_model *m, const struct wk_backend_config *cfg,
                                            struct wk_backend **out, char *err, size_t err_len) {
    *out = NULL;
    const wk_hparams *hp = &m->hp;
    const struct wk_backend_config c0 = cfg ? *cfg : wk_backend_config{};
    const int n_ctx = c0.n_ctx > 0 ? c0.n_ctx : wk_backend_default_ctx(hp->n_ctx_train);
    const int max_seqs = c0.max_seqs > 0 ? c0.max_seqs : 64;
    const int max_rows = c0.max_step_tokens > 0 ? c0.max_step_tokens : 512;
    if (n_ctx > (1 << 20))
        return wk_errf(err, err_len, WK_STATUS_INVALID_ARGUMENT, "%s: context %d is outside [1, 1048576]", __func__,
                       n_ctx);
    TRY(check_model(m, err, err_len));
    int n_dev = 0;
    cudaError_t e0 = cudaGetDeviceCount(&n_dev);
    if (e0 != cudaSuccess || n_dev == 0) {
        (void)cudaGetLastError();
        return wk_errf(err, err_len, WK_STATUS_UNAVAILABLE, "%s: no CUDA device (%s)", __func__,
                       e0 != cudaSuccess ? cudaGetErrorString(e0) : "none found");
    }
    if (c0.device < 0 || c0.device >= n_dev)
        return wk_errf(err, err_len, WK_STATUS_INVALID_ARGUMENT, "%s: device %d is outside [0, %d)", __func__,
                       c0.device, n_dev);

    struct wk_backend *b = (struct wk_backend *)calloc(1, sizeof *b);
    cu_impl *c = (cu_impl *)calloc(1, sizeof *c);
    if (!b || !c) {
        free(b), free(c);
        return wk_errf(err, err_len, WK_STATUS_OOM_HOST, "%s: out of memory", __func__);
    }
    b->ops = &cu_ops;
    b->model = m;
    b->impl = c;
    set_shapes(b, c, m, n_ctx, max_seqs, max_rows);
    wk_status s = WK_STATUS_OK;
    c->has_logits = (bool *)calloc((size_t)max_seqs, sizeof(bool));
    c->L = (cu_layer *)calloc(c->n_layer > 0 ? (size_t)c->n_layer : 1, sizeof(cu_layer));
    if (!c->has_logits || !c->L)
        s = wk_errf(err, err_len, WK_STATUS_OOM_HOST, "%s: out of memory", __func__);
    else if (c->n_rope_tabs > MAX_ROPES)
        s = wk_errf(err, err_len, WK_STATUS_BAD_MODEL, "%s: more than %d distinct rope settings", __func__, MAX_ROPES);
    if (s == WK_STATUS_OK) s = open_device(b, c, c0.device, err, err_len);
    if (s == WK_STATUS_OK) s = size_kv_pool(b, c, c0.kv_tokens, err, err_len);
    if (s == WK_STATUS_OK) s = alloc_arenas(b, c, err, err_len);
    if (s == WK_STATUS_OK) s = upload_weights(c, m, err, err_len);
    if (s == WK_STATUS_OK) s = upload_ropes(c, m, n_ctx, err, err_len);
    if (s == WK_STATUS_OK) s = zero_state(c, err, err_len);
    if (s == WK_STATUS_OK) s = warm_up(b, err, err_len);
    if (s != WK_STATUS_OK) {
        cu_destroy(b);
        return s;
    }
    *out = b;
    return WK_STATUS_OK;
}
