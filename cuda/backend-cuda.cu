/* backend-cuda.cu — the CUDA backend: VRAM arenas, weight upload, the
 * forward pass (prefill through cuBLAS, decode through fused kernels
 * replayed as one CUDA graph) and sampling on the GPU.
 *
 * Everything runs on one non-blocking stream per backend, with one cuBLAS
 * handle bound to it. Memory is two cudaMalloc'ed arenas sized at creation:
 *   weights  every tensor in its GGUF type (1-D tensors as f32), 256-aligned
 *   state    K/V cache (n_layer, n_ctx, n_head_kv*head_dim) f16, the rope
 *            table, decode and prefill activations, the sampler, the cuBLAS
 *            workspace
 * Decode (n == 1) per layer: [rmsnorm+QKV+bias+rope+KV write] [attention,
 * split over the context, the last split combining] [Wo+residual] [rmsnorm+gate/up+SwiGLU]
 * [down+residual]; then [rmsnorm+logits]. The token id and position are read
 * from device memory (copied from pinned memory by the graph's first node),
 * so one captured graph serves every step. sample() is the one
 * synchronization per step: the sampled token comes back through pinned
 * memory.
 */
#include <cublas_v2.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cuda/kernels.cuh"
#include "loader/model.h"
#include "core/backend.h"

#define CUBLAS_TRY(x)                                                                      \
    do {                                                                                   \
        cublasStatus_t s_ = (x);                                                           \
        if (s_ != CUBLAS_STATUS_SUCCESS)                                                   \
            return wk_errf(err, err_len, WK_STATUS_CUBLAS, "%s: %s failed at %s:%d: %s",    \
                           __func__, #x, __FILE__, __LINE__, cublasGetStatusString(s_));   \
    } while (0)

#define TRY(x)                                \
    do {                                      \
        wk_status st_ = (x);                  \
        if (st_ != WK_STATUS_OK) return st_;  \
    } while (0)

#define PREFILL_ROWS 512   /* tokens per prefill chunk */
#define LOGIT_ROWS 32      /* rows of logits computed per step of all_logits */
#define STAGE_BYTES (32u << 20)
#define BLAS_WS_BYTES (32u << 20)

static size_t al256(size_t x) { return (x + 255) & ~(size_t)255; }

struct cu_layer {
    wk_cu_mat wq, wk, wv, wo, gate, up, down;
    const float *attn_norm, *ffn_norm, *bq, *bk, *bv; /* f32, device; biases may be NULL */
};

struct cu_impl {
    int dev, n_sm;
    cudaStream_t st;
    cublasHandle_t blas;
    int E, qd, kvd, n_ff, V, n_layer, hd, n_head, n_kv, rd, neox, max_split;
    float eps;

    uint8_t *warena; /* weights */
    size_t wbytes;
    uint8_t *sarena; /* KV cache + activations */
    size_t sbytes, kv_bytes;

    cu_layer *L;     /* host array of device views */
    wk_cu_mat embd, out;
    const float *out_norm;

    __half *kc, *vc;  /* (n_layer, n_ctx, kvd) f16 */
    float2 *rope_cs;  /* (n_ctx, rd/2) */
    /* decode */
    float *dx, *dq, *dpart, *dattn, *dact; /* (E) (qd) (n_head, max_split, hd+2) (qd) (n_ff) */
    unsigned *dcount;                      /* (n_head) split counters of decode attention */
    int *dparams;                  /* {token, pos} */
    float *logits;                 /* (LOGIT_ROWS, V) */
    /* prefill, PREFILL_ROWS rows each */
    int P;
    float *px, *ph, *pq, *pk, *pv, *pa, *pg, *pu; /* (P,E) (P,W) (P,qd) (P,kvd) (P,kvd) (P,qd) (P,n_ff) (P,n_ff) */
    __half *p16;                                  /* (P, W), W = max(E, qd, n_ff) */
    int32_t *ptok;                                /* (P) */
    __half *wtmp;                                 /* dequantized weight tile */
    size_t wtmp_elems;
    void *blas_ws;
    wk_cu_sampler smp;

    /* pinned host memory */
    int *h_params;
    int32_t *h_tok;
    int32_t *h_hist;
    wk_cu_sample_res *h_res;
    wk_cu_sample_res *h_gres;     /* greedy result of the last decode step (the graph's last node writes it) */
    uint8_t *h_stage[2];

    cudaEvent_t ev_step, ev_stage[2];
    cudaGraphExec_t gexec;
    bool graph_off;

    const float *d_last;  /* logits of the last forward's last token */
    wk_cu_sample_res *d_gres; /* device side of h_gres */
    bool gres_valid;          /* h_gres belongs to d_last */
    float *hidden;        /* (n_layer+1, hidden_n, E) when record_hidden */
    size_t hidden_cap;
    int hidden_n;
};

// --- weights ----------------------------------------------------------------------

static bool is_float_type(uint32_t t) {
    return t == GGML_TYPE_F32 || t == GGML_TYPE_F16 || t == GGML_TYPE_BF16;
}

/* Bytes a tensor takes in the arena: matrices as stored, vectors as f32. */
static size_t tensor_dev_bytes(const wk_tensor *t, bool vec) {
    if (!t->data) return 0;
    if (vec) return al256((size_t)t->ne[0] * sizeof(float));
    return al256(t->nbytes);
}

struct uploader {
    cu_impl *c;
    int cur;
    uint8_t *cursor;
};

/* Copy n bytes from host src to device dst through the pinned staging
 * buffers: while one buffer's DMA runs, the next is filled from the file. */
static wk_status stage_copy(uploader *u, uint8_t *dst, const void *src, size_t n, char *err, size_t err_len) {
    cu_impl *c = u->c;
    const uint8_t *s = (const uint8_t *)src;
    while (n > 0) {
        size_t k = n < STAGE_BYTES ? n : STAGE_BYTES;
        CUDA_TRY(cudaEventSynchronize(c->ev_stage[u->cur]));
        memcpy(c->h_stage[u->cur], s, k);
        CUDA_TRY(cudaMemcpyAsync(dst, c->h_stage[u->cur], k, cudaMemcpyHostToDevice, c->st));
        CUDA_TRY(cudaEventRecord(c->ev_stage[u->cur], c->st));
        u->cur ^= 1;
        dst += k;
        s += k;
        n -= k;
    }
    return WK_STATUS_OK;
}

/* Upload a matrix as stored; fills the device view. */
static wk_status upload_mat(uploader *u, const wk_tensor *t, wk_cu_mat *m, char *err, size_t err_len) {
    if (!wk_cuda_type_ok(t->type))
        return wk_errf(err, err_len, WK_STATUS_BAD_MODEL, "%s: tensor '%s' has type %u, which the CUDA backend cannot compute with",
                       __func__, t->name, t->type);
    if (t->ne[0] % 32 != 0 && !is_float_type(t->type))
        return wk_errf(err, err_len, WK_STATUS_BAD_MODEL, "%s: tensor '%s' rows of %lld are not whole blocks", __func__,
                       t->name, (long long)t->ne[0]);
    m->w = u->cursor;
    m->type = (int)t->type;
    m->row_bytes = wk_row_bytes(t->type, t->ne[0]);
    m->n_rows = (int)t->ne[1];
    TRY(stage_copy(u, u->cursor, t->data, t->nbytes, err, err_len));
    u->cursor += al256(t->nbytes);
    return WK_STATUS_OK;
}

/* Upload a vector (norm weights, biases) as f32; NULL when absent. */
static wk_status upload_vec(uploader *u, const wk_tensor *t, const float **out, char *err, size_t err_len) {
    *out = NULL;
    if (!t->data) return WK_STATUS_OK;
    const size_t n = (size_t)t->ne[0];
    if (t->type == GGML_TYPE_F32) {
        TRY(stage_copy(u, u->cursor, t->data, n * sizeof(float), err, err_len));
    } else {
        const struct wk_type_info *ti = wk_type_info(t->type);
        if (!ti || !ti->supported || n % (size_t)ti->block_size != 0)
            return wk_errf(err, err_len, WK_STATUS_BAD_MODEL, "%s: tensor '%s' has unsupported type %u", __func__, t->name,
                           t->type);
        float *tmp = (float *)malloc(n * sizeof(float));
        if (!tmp) return wk_errf(err, err_len, WK_STATUS_OOM_HOST, "%s: out of memory", __func__);
        wk_dequantize_row(t->type, t->data, tmp, (int64_t)n);
        /* stage_copy has copied tmp into pinned memory when it returns */
        wk_status s = stage_copy(u, u->cursor, tmp, n * sizeof(float), err, err_len);
        free(tmp);
        if (s != WK_STATUS_OK) return s;
    }
    *out = (const float *)u->cursor;
    u->cursor += al256(n * sizeof(float));
    return WK_STATUS_OK;
}

static size_t weights_bytes(const wk_model *m) {
    size_t b = tensor_dev_bytes(&m->tok_embd, false) + tensor_dev_bytes(&m->output_norm, true);
    if (!m->tied_output) b += tensor_dev_bytes(&m->output, false);
    for (int l = 0; l < m->hp.n_layer; l++) {
        const wk_layer *L = &m->layers[l];
        b += tensor_dev_bytes(&L->attn_norm, true) + tensor_dev_bytes(&L->ffn_norm, true);
        b += tensor_dev_bytes(&L->bq, true) + tensor_dev_bytes(&L->bk, true) + tensor_dev_bytes(&L->bv, true);
        const wk_tensor *mats[7] = {&L->wq, &L->wk, &L->wv, &L->wo, &L->w_gate, &L->w_up, &L->w_down};
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
        TRY(upload_vec(&u, &L->attn_norm, &D->attn_norm, err, err_len));
        TRY(upload_vec(&u, &L->ffn_norm, &D->ffn_norm, err, err_len));
        TRY(upload_vec(&u, &L->bq, &D->bq, err, err_len));
        TRY(upload_vec(&u, &L->bk, &D->bk, err, err_len));
        TRY(upload_vec(&u, &L->bv, &D->bv, err, err_len));
        TRY(upload_mat(&u, &L->wq, &D->wq, err, err_len));
        TRY(upload_mat(&u, &L->wk, &D->wk, err, err_len));
        TRY(upload_mat(&u, &L->wv, &D->wv, err, err_len));
        TRY(upload_mat(&u, &L->wo, &D->wo, err, err_len));
        TRY(upload_mat(&u, &L->w_gate, &D->gate, err, err_len));
        TRY(upload_mat(&u, &L->w_up, &D->up, err, err_len));
        TRY(upload_mat(&u, &L->w_down, &D->down, err, err_len));
    }
    CUDA_TRY(cudaStreamSynchronize(c->st));
    return WK_STATUS_OK;
}

// --- matrices through cuBLAS (prefill) --------------------------------------------------

/* y (n, ldy) [+]= x · W[row0 .. row0+nrows)ᵀ, fp32 accumulation.
 * Row-major y (n × nrows, leading dim ldy) is column-major yᵀ (nrows × n), so
 * cuBLAS computes C = op(A) · B with A = W viewed column-major as
 * (n_in × nrows) and transposed (op T), B = x viewed column-major as (n_in × n)
 * (op N), m = nrows, k = n_in. F32 weights use SGEMM on x32; every other type
 * uses f16 operands (F16 as stored, the rest dequantized into wtmp) on x16. */
static wk_status gemm(cu_impl *c, const wk_cu_mat &W, int n_in, int row0, int nrows, const float *x32,
                      const __half *x16, int n, float *y, int ldy, float beta, char *err, size_t err_len) {
    const float one = 1.0f;
    if (W.type == GGML_TYPE_F32) {
        const float *A = (const float *)(W.w + (size_t)row0 * W.row_bytes);
        CUBLAS_TRY(cublasSgemm(c->blas, CUBLAS_OP_T, CUBLAS_OP_N, nrows, n, n_in, &one, A, n_in, x32, n_in, &beta, y,
                               ldy));
        return WK_STATUS_OK;
    }
    const __half *A;
    if (W.type == GGML_TYPE_F16) {
        A = (const __half *)(W.w + (size_t)row0 * W.row_bytes);
    } else {
        WK_ASSERT((size_t)nrows * n_in <= c->wtmp_elems);
        CUDA_TRY(wk_cu_dequant_f16(W, n_in, row0, nrows, c->wtmp, c->st));
        A = c->wtmp;
    }
    CUBLAS_TRY(cublasGemmEx(c->blas, CUBLAS_OP_T, CUBLAS_OP_N, nrows, n, n_in, &one, A, CUDA_R_16F, n_in, x16,
                            CUDA_R_16F, n_in, &beta, y, CUDA_R_32F, ldy, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
    return WK_STATUS_OK;
}

static wk_status gemm_full(cu_impl *c, const wk_cu_mat &W, int n_in, const float *x32, const __half *x16, int n,
                           float *y, float beta, char *err, size_t err_len) {
    return gemm(c, W, n_in, 0, W.n_rows, x32, x16, n, y, W.n_rows, beta, err, err_len);
}

// --- hidden states (tests) ---------------------------------------------------------------

static wk_status hidden_reserve(cu_impl *c, int n, char *err, size_t err_len) {
    size_t need = (size_t)(c->n_layer + 1) * n * c->E * sizeof(float);
    if (need > c->hidden_cap) {
        if (c->hidden) cudaFree(c->hidden);
        c->hidden = NULL;
        c->hidden_cap = 0;
        CUDA_TRY(cudaMalloc(&c->hidden, need));
        c->hidden_cap = need;
    }
    c->hidden_n = n;
    return WK_STATUS_OK;
}

static float *hidden_at(cu_impl *c, int layer, int row) {
    return c->hidden + ((size_t)layer * c->hidden_n + row) * c->E;
}

// --- prefill -------------------------------------------------------------------------------

static wk_status prefill_chunk(struct wk_backend *b, const int32_t *tok, int n, int pos, int off, float *logits,
                               bool all_logits, bool last, char *err, size_t err_len) {
    cu_impl *c = (cu_impl *)b->impl;
    const size_t layer_kv = (size_t)b->n_ctx * c->kvd;
    CUDA_TRY(cudaEventSynchronize(c->ev_step)); /* h_tok of the previous chunk consumed */
    memcpy(c->h_tok, tok, (size_t)n * sizeof(int32_t));
    CUDA_TRY(cudaMemcpyAsync(c->ptok, c->h_tok, (size_t)n * sizeof(int32_t), cudaMemcpyHostToDevice, c->st));
    CUDA_TRY(cudaEventRecord(c->ev_step, c->st));
    CUDA_TRY(wk_cu_embed(c->embd, c->E, c->ptok, n, c->px, c->st));
    for (int l = 0; l < c->n_layer; l++) {
        const cu_layer &L = c->L[l];
        __half *kc = c->kc + l * layer_kv, *vc = c->vc + l * layer_kv;
        CUDA_TRY(wk_cu_rmsnorm(c->px, L.attn_norm, n, c->E, c->eps, c->ph, c->p16, c->st));
        TRY(gemm_full(c, L.wq, c->E, c->ph, c->p16, n, c->pq, 0.0f, err, err_len));
        TRY(gemm_full(c, L.wk, c->E, c->ph, c->p16, n, c->pk, 0.0f, err, err_len));
        TRY(gemm_full(c, L.wv, c->E, c->ph, c->p16, n, c->pv, 0.0f, err, err_len));
        CUDA_TRY(wk_cu_qkv_post(c->pq, c->pk, c->pv, L.bq, L.bk, L.bv, c->rope_cs, n, pos, c->n_head, c->n_kv, c->hd,
                                c->rd, c->neox, kc, vc, c->st));
        CUDA_TRY(wk_cu_attn_prefill(c->pq, kc, vc, n, pos, c->n_head, c->n_kv, c->hd, c->pa, c->st));
        CUDA_TRY(wk_cu_to_f16(c->pa, (size_t)n * c->qd, c->p16, c->st));
        TRY(gemm_full(c, L.wo, c->qd, c->pa, c->p16, n, c->px, 1.0f, err, err_len));
        CUDA_TRY(wk_cu_rmsnorm(c->px, L.ffn_norm, n, c->E, c->eps, c->ph, c->p16, c->st));
        TRY(gemm_full(c, L.gate, c->E, c->ph, c->p16, n, c->pg, 0.0f, err, err_len));
        TRY(gemm_full(c, L.up, c->E, c->ph, c->p16, n, c->pu, 0.0f, err, err_len));
        CUDA_TRY(wk_cu_swiglu(c->pg, c->pu, (size_t)n * c->n_ff, c->ph, c->p16, c->st));
        TRY(gemm_full(c, L.down, c->n_ff, c->ph, c->p16, n, c->px, 1.0f, err, err_len));
        if (c->hidden && b->record_hidden)
            CUDA_TRY(cudaMemcpyAsync(hidden_at(c, l, off), c->px, (size_t)n * c->E * sizeof(float),
                                     cudaMemcpyDeviceToDevice, c->st));
    }
    if ((logits && all_logits) || b->record_hidden) {
        CUDA_TRY(wk_cu_rmsnorm(c->px, c->out_norm, n, c->E, c->eps, c->ph, c->p16, c->st));
        if (b->record_hidden)
            CUDA_TRY(cudaMemcpyAsync(hidden_at(c, c->n_layer, off), c->ph, (size_t)n * c->E * sizeof(float),
                                     cudaMemcpyDeviceToDevice, c->st));
    }
    if (logits && all_logits) {
        const bool direct = c->out.type == GGML_TYPE_F32 || c->out.type == GGML_TYPE_F16;
        int tile = direct ? c->V : (int)(c->wtmp_elems / c->E);
        if (tile > c->V) tile = c->V;
        for (int r0 = 0; r0 < n; r0 += LOGIT_ROWS) {
            const int nr = n - r0 < LOGIT_ROWS ? n - r0 : LOGIT_ROWS;
            for (int v0 = 0; v0 < c->V; v0 += tile) {
                const int nv = c->V - v0 < tile ? c->V - v0 : tile;
                TRY(gemm(c, c->out, c->E, v0, nv, c->ph + (size_t)r0 * c->E, c->p16 + (size_t)r0 * c->E, nr,
                         c->logits + v0, c->V, 0.0f, err, err_len));
            }
            CUDA_TRY(cudaMemcpyAsync(logits + (size_t)(off + r0) * c->V, c->logits, (size_t)nr * c->V * sizeof(float),
                                     cudaMemcpyDeviceToHost, c->st));
            c->d_last = c->logits + (size_t)(nr - 1) * c->V;
        }
    } else if (last) {
        /* only the last token's logits: the decode kernel on its row */
        wk_mv_args a;
        memset(&a, 0, sizeof a);
        a.n_in = c->E;
        a.in_mode = WK_IN_NORM;
        a.in = c->px + (size_t)(n - 1) * c->E;
        a.norm_w = c->out_norm;
        a.eps = c->eps;
        a.out_mode = WK_OUT_STORE;
        a.m[0] = c->out;
        a.n_units = wk_cdiv(c->V, 2);
        a.y = c->logits;
        CUDA_TRY(wk_cu_matvec(a, c->n_sm, c->st));
        c->d_last = c->logits;
        if (logits)
            CUDA_TRY(cudaMemcpyAsync(logits, c->logits, (size_t)c->V * sizeof(float), cudaMemcpyDeviceToHost, c->st));
    }
    return WK_STATUS_OK;
}

// --- decode ----------------------------------------------------------------------------------

/* Enqueue one decode step (token and position from h_params). record: also
 * copy each layer's state into the hidden buffer. */
static wk_status decode_enqueue(struct wk_backend *b, bool record, char *err, size_t err_len) {
    cu_impl *c = (cu_impl *)b->impl;
    const size_t layer_kv = (size_t)b->n_ctx * c->kvd;
    const int *d_tok = c->dparams, *d_pos = c->dparams + 1;
    CUDA_TRY(cudaMemcpyAsync(c->dparams, c->h_params, 2 * sizeof(int), cudaMemcpyHostToDevice, c->st));
    CUDA_TRY(wk_cu_embed(c->embd, c->E, d_tok, 1, c->dx, c->st));
    for (int l = 0; l < c->n_layer; l++) {
        const cu_layer &L = c->L[l];
        wk_mv_args a;
        // rmsnorm + QKV + biases + rope + K/V cache write
        memset(&a, 0, sizeof a);
        a.n_in = c->E;
        a.in_mode = WK_IN_NORM;
        a.in = c->dx;
        a.norm_w = L.attn_norm;
        a.eps = c->eps;
        a.d_pos = d_pos;
        a.out_mode = WK_OUT_QKV;
        a.n_units = (c->qd + 2 * c->kvd) / 2;
        a.m[0] = L.wq; a.m[1] = L.wk; a.m[2] = L.wv;
        a.bias[0] = L.bq; a.bias[1] = L.bk; a.bias[2] = L.bv;
        a.y = c->dq;
        a.n_head = c->n_head; a.n_head_kv = c->n_kv; a.head_dim = c->hd; a.rope_dim = c->rd; a.rope_neox = c->neox;
        a.rope_cs = c->rope_cs;
        a.k_cache = c->kc + l * layer_kv;
        a.v_cache = c->vc + l * layer_kv;
        CUDA_TRY(wk_cu_matvec(a, c->n_sm, c->st));
        // attention partials
        CUDA_TRY(wk_cu_attn_decode(c->dq, c->kc + l * layer_kv, c->vc + l * layer_kv, d_pos, c->n_head, c->n_kv,
                                   c->hd, c->max_split, c->dpart, c->dattn, c->dcount, c->st));
        // Wo + residual
        memset(&a, 0, sizeof a);
        a.n_in = c->qd;
        a.in_mode = WK_IN_PLAIN;
        a.in = c->dattn;
        a.out_mode = WK_OUT_ADD;
        a.m[0] = L.wo;
        a.n_units = wk_cdiv(c->E, 2);
        a.y = c->dx;
        CUDA_TRY(wk_cu_matvec(a, c->n_sm, c->st));
        // rmsnorm + gate/up + SwiGLU
        memset(&a, 0, sizeof a);
        a.n_in = c->E;
        a.in_mode = WK_IN_NORM;
        a.in = c->dx;
        a.norm_w = L.ffn_norm;
        a.eps = c->eps;
        a.out_mode = WK_OUT_SWIGLU;
        a.m[0] = L.gate; a.m[1] = L.up;
        a.n_units = c->n_ff;
        a.y = c->dact;
        CUDA_TRY(wk_cu_matvec(a, c->n_sm, c->st));
        // down + residual
        memset(&a, 0, sizeof a);
        a.n_in = c->n_ff;
        a.in_mode = WK_IN_PLAIN;
        a.in = c->dact;
        a.out_mode = WK_OUT_ADD;
        a.m[0] = L.down;
        a.n_units = wk_cdiv(c->E, 2);
        a.y = c->dx;
        CUDA_TRY(wk_cu_matvec(a, c->n_sm, c->st));
        if (record)
            CUDA_TRY(cudaMemcpyAsync(hidden_at(c, l, 0), c->dx, (size_t)c->E * sizeof(float), cudaMemcpyDeviceToDevice,
                                     c->st));
    }
    wk_mv_args a;
    memset(&a, 0, sizeof a);
    a.n_in = c->E;
    a.in_mode = WK_IN_NORM;
    a.in = c->dx;
    a.norm_w = c->out_norm;
    a.eps = c->eps;
    a.out_mode = WK_OUT_STORE;
    a.m[0] = c->out;
    a.n_units = wk_cdiv(c->V, 2);
    a.y = c->logits;
    CUDA_TRY(wk_cu_matvec(a, c->n_sm, c->st));
    if (record)
        CUDA_TRY(wk_cu_rmsnorm(c->dx, c->out_norm, 1, c->E, c->eps, hidden_at(c, c->n_layer, 0), NULL, c->st));
    // the greedy choice, so a plain greedy sample() only waits and reads
    CUDA_TRY(wk_cu_sample_greedy(&c->smp, c->logits, c->d_gres, c->st));
    CUDA_TRY(cudaMemcpyAsync(c->h_gres, c->d_gres, sizeof(wk_cu_sample_res), cudaMemcpyDeviceToHost, c->st));
    return WK_STATUS_OK;
}

static wk_status capture_graph(struct wk_backend *b, char *err, size_t err_len) {
    cu_impl *c = (cu_impl *)b->impl;
    cudaGraph_t g = NULL;
    CUDA_TRY(cudaStreamBeginCapture(c->st, cudaStreamCaptureModeThreadLocal));
    wk_status s = decode_enqueue(b, false, err, err_len);
    cudaError_t e = cudaStreamEndCapture(c->st, &g);
    if (s != WK_STATUS_OK) {
        if (g) cudaGraphDestroy(g);
        return s;
    }
    if (e != cudaSuccess) {
        (void)cudaGetLastError();
        return wk_errf(err, err_len, WK_STATUS_CUDA, "%s: capture failed: %s", __func__, cudaGetErrorString(e));
    }
    e = cudaGraphInstantiate(&c->gexec, g, 0);
    cudaGraphDestroy(g);
    if (e != cudaSuccess) {
        (void)cudaGetLastError();
        c->gexec = NULL;
        return wk_errf(err, err_len, WK_STATUS_CUDA, "%s: instantiate failed: %s", __func__, cudaGetErrorString(e));
    }
    return WK_STATUS_OK;
}

// --- ops ---------------------------------------------------------------------------------

static wk_status cu_forward(struct wk_backend *b, const int32_t *tokens, int n, int pos, float *logits,
                            bool all_logits, char *err, size_t err_len) {
    cu_impl *c = (cu_impl *)b->impl;
    if (n < 1 || pos < 0 || (int64_t)pos + n > b->n_ctx)
        return wk_errf(err, err_len, WK_STATUS_OUT_OF_RANGE, "%s: tokens [%d, %d) do not fit the context of %d",
                       __func__, pos, pos + n, b->n_ctx);
    for (int i = 0; i < n; i++)
        if (tokens[i] < 0 || tokens[i] >= c->V)
            return wk_errf(err, err_len, WK_STATUS_INVALID_ARGUMENT, "%s: token id %d at %d is outside [0, %d)",
                           __func__, tokens[i], i, c->V);
    CUDA_TRY(cudaSetDevice(c->dev)); /* the calling thread may not be the one that created us */
    if (b->record_hidden) TRY(hidden_reserve(c, n, err, err_len));

    if (n == 1) {
        CUDA_TRY(cudaEventSynchronize(c->ev_step)); /* the previous step has read h_params */
        c->h_params[0] = tokens[0];
        c->h_params[1] = pos;
        if (b->record_hidden || c->graph_off) {
            TRY(decode_enqueue(b, b->record_hidden, err, err_len));
        } else {
            if (!c->gexec) {
                wk_status s = capture_graph(b, err, err_len);
                if (s != WK_STATUS_OK) {
                    fprintf(stderr, "wk cuda: %s; decoding without a graph\n", err);
                    c->graph_off = true;
                    TRY(decode_enqueue(b, false, err, err_len));
                }
            }
            if (c->gexec) CUDA_TRY(cudaGraphLaunch(c->gexec, c->st));
        }
        CUDA_TRY(cudaEventRecord(c->ev_step, c->st));
        c->d_last = c->logits;
        c->gres_valid = true;
        if (logits) {
            CUDA_TRY(cudaMemcpyAsync(logits, c->logits, (size_t)c->V * sizeof(float), cudaMemcpyDeviceToHost, c->st));
            CUDA_TRY(cudaStreamSynchronize(c->st));
        }
        return WK_STATUS_OK;
    }
    c->gres_valid = false;
    for (int c0 = 0; c0 < n; c0 += c->P) {
        const int cn = n - c0 < c->P ? n - c0 : c->P;
        TRY(prefill_chunk(b, tokens + c0, cn, pos + c0, c0, logits, all_logits, c0 + cn == n, err, err_len));
    }
    CUDA_TRY(cudaEventRecord(c->ev_step, c->st));
    CUDA_TRY(cudaStreamSynchronize(c->st));
    return WK_STATUS_OK;
}

static wk_status cu_sample(struct wk_backend *b, const struct wk_sampling *p, const int32_t *history,
                           size_t n_history, uint64_t step, struct wk_sample_out *out, char *err, size_t err_len) {
    cu_impl *c = (cu_impl *)b->impl;
    if (!c->d_last) return wk_errf(err, err_len, WK_STATUS_INVALID_ARGUMENT, "%s: no forward pass yet", __func__);
    CUDA_TRY(cudaSetDevice(c->dev));
    const bool pen = p->repetition_penalty != 1.0f && p->repeat_last_n > 0 && history && n_history > 0;
    if (c->gres_valid && !(p->temperature > 0.0f) && !pen && p->n_logprobs <= 0) {
        /* computed at the end of the decode step */
        CUDA_TRY(cudaStreamSynchronize(c->st));
        out->token = c->h_gres->token;
        out->logprob = c->h_gres->logprob;
        out->n_top = 0;
        return WK_STATUS_OK;
    }
    int n_win = 0;
    if (pen) {
        size_t w = (size_t)p->repeat_last_n < n_history ? (size_t)p->repeat_last_n : n_history;
        if (w > (size_t)c->smp.hist_cap) w = (size_t)c->smp.hist_cap; /* the window's tail: the ids nearest */
        n_win = (int)w;
        memcpy(c->h_hist, history + (n_history - w), w * sizeof(int32_t));
        CUDA_TRY(cudaMemcpyAsync(c->smp.hist, c->h_hist, w * sizeof(int32_t), cudaMemcpyHostToDevice, c->st));
    }
    CUDA_TRY(wk_cu_sample(&c->smp, c->d_last, p, n_win, step, c->st));
    CUDA_TRY(cudaMemcpyAsync(c->h_res, c->smp.res, sizeof(wk_cu_sample_res), cudaMemcpyDeviceToHost, c->st));
    CUDA_TRY(cudaStreamSynchronize(c->st));
    out->token = c->h_res->token;
    out->logprob = c->h_res->logprob;
    out->n_top = c->h_res->n_top;
    for (int j = 0; j < out->n_top; j++) {
        out->top_ids[j] = c->h_res->top_ids[j];
        out->top_logprobs[j] = c->h_res->top_logprobs[j];
    }
    return WK_STATUS_OK;
}

static wk_status cu_get_hidden(struct wk_backend *b, int layer, float *dst, char *err, size_t err_len) {
    cu_impl *c = (cu_impl *)b->impl;
    if (!c->hidden || !b->record_hidden || layer < 0 || layer > c->n_layer)
        return wk_errf(err, err_len, WK_STATUS_INVALID_ARGUMENT, "%s: no hidden state for layer %d (record_hidden off?)",
                       __func__, layer);
    CUDA_TRY(cudaSetDevice(c->dev));
    CUDA_TRY(cudaStreamSynchronize(c->st));
    CUDA_TRY(cudaMemcpy(dst, hidden_at(c, layer, 0), (size_t)c->hidden_n * c->E * sizeof(float),
                        cudaMemcpyDeviceToHost));
    return WK_STATUS_OK;
}

static void cu_destroy(struct wk_backend *b) {
    if (!b) return;
    cu_impl *c = (cu_impl *)b->impl;
    if (c) {
        if (c->st) cudaStreamSynchronize(c->st);
        if (c->gexec) cudaGraphExecDestroy(c->gexec);
        if (c->blas) cublasDestroy(c->blas);
        if (c->ev_step) cudaEventDestroy(c->ev_step);
        for (int i = 0; i < 2; i++) {
            if (c->ev_stage[i]) cudaEventDestroy(c->ev_stage[i]);
            if (c->h_stage[i]) cudaFreeHost(c->h_stage[i]);
        }
        if (c->h_params) cudaFreeHost(c->h_params);
        if (c->h_tok) cudaFreeHost(c->h_tok);
        if (c->h_hist) cudaFreeHost(c->h_hist);
        if (c->h_res) cudaFreeHost(c->h_res);
        if (c->h_gres) cudaFreeHost(c->h_gres);
        if (c->hidden) cudaFree(c->hidden);
        if (c->warena) cudaFree(c->warena);
        if (c->sarena) cudaFree(c->sarena);
        if (c->st) cudaStreamDestroy(c->st);
        free(c->L);
        free(c);
    }
    free(b);
}

static const struct wk_backend_ops cu_ops = {
    "cuda", cu_forward, cu_sample, cu_get_hidden, cu_destroy,
};

// --- creation --------------------------------------------------------------------------------

/* Carve the state arena; with base == NULL only counts. Returns bytes. */
static size_t carve_state(cu_impl *c, int n_ctx, uint8_t *base) {
    size_t off = 0;
#define CARVE(ptr, type, count)                                             \
    do {                                                                    \
        if (base) ptr = (type *)(base + off);                               \
        off += al256((size_t)(count) * sizeof(type));                       \
    } while (0)
    const size_t kv = (size_t)c->n_layer * n_ctx * c->kvd;
    CARVE(c->kc, __half, kv);
    CARVE(c->vc, __half, kv);
    c->kv_bytes = 2 * al256(kv * sizeof(__half));
    CARVE(c->rope_cs, float2, (size_t)n_ctx * (c->rd / 2 > 0 ? c->rd / 2 : 1));
    CARVE(c->dx, float, c->E);
    CARVE(c->dq, float, c->qd);
    CARVE(c->dpart, float, (size_t)c->n_head * c->max_split * (c->hd + 2));
    CARVE(c->dattn, float, c->qd);
    CARVE(c->dcount, unsigned, c->n_head);
    CARVE(c->dact, float, c->n_ff);
    CARVE(c->dparams, int, 2);
    CARVE(c->d_gres, wk_cu_sample_res, 1);
    CARVE(c->logits, float, (size_t)LOGIT_ROWS * c->V);
    const int W = c->E > c->qd ? (c->E > c->n_ff ? c->E : c->n_ff) : (c->qd > c->n_ff ? c->qd : c->n_ff);
    const size_t P = (size_t)c->P;
    CARVE(c->px, float, P * c->E);
    CARVE(c->ph, float, P * W);
    CARVE(c->pq, float, P * c->qd);
    CARVE(c->pk, float, P * c->kvd);
    CARVE(c->pv, float, P * c->kvd);
    CARVE(c->pa, float, P * c->qd);
    CARVE(c->pg, float, P * c->n_ff);
    CARVE(c->pu, float, P * c->n_ff);
    CARVE(c->p16, __half, P * W);
    CARVE(c->ptok, int32_t, P);
    CARVE(c->wtmp, __half, c->wtmp_elems > 0 ? c->wtmp_elems : 1);
    uint8_t *ws = NULL;
    CARVE(ws, uint8_t, BLAS_WS_BYTES);
    c->blas_ws = ws;
    const size_t sb = wk_cu_sampler_bytes(c->V, n_ctx + 1);
    uint8_t *smem = NULL;
    CARVE(smem, uint8_t, sb);
    if (base) wk_cu_sampler_init(&c->smp, c->V, n_ctx + 1, smem);
#undef CARVE
    return off;
}

static size_t mat_elems_if_dequant(const wk_tensor *t) {
    if (!t->data || t->type == GGML_TYPE_F32 || t->type == GGML_TYPE_F16) return 0;
    return (size_t)t->ne[0] * (size_t)t->ne[1];
}

extern "C" wk_status wk_backend_cuda_create(const struct wk_model *m, int n_ctx, int device, struct wk_backend **out,
                                            char *err, size_t err_len) {
    *out = NULL;
    const wk_hparams *hp = &m->hp;
    if (n_ctx < 1 || n_ctx > (1 << 20))
        return wk_errf(err, err_len, WK_STATUS_INVALID_ARGUMENT, "%s: context %d is outside [1, 1048576]", __func__, n_ctx);
    if (hp->head_dim % 8 || hp->head_dim > WK_CU_MAX_HEAD_DIM || hp->rope_dim % 2 || hp->rope_dim > hp->head_dim ||
        hp->n_head_kv < 1 || hp->n_head % hp->n_head_kv)
        return wk_errf(err, err_len, WK_STATUS_BAD_MODEL,
                       "%s: head_dim %d / rope_dim %d / heads %d:%d are outside what the kernels support "
                       "(head_dim a multiple of 8 up to %d, even rope_dim <= head_dim, n_head a multiple of n_head_kv)",
                       __func__, hp->head_dim, hp->rope_dim, hp->n_head, hp->n_head_kv, WK_CU_MAX_HEAD_DIM);
    int n_dev = 0;
    cudaError_t e0 = cudaGetDeviceCount(&n_dev);
    if (e0 != cudaSuccess || n_dev == 0) {
        (void)cudaGetLastError();
        return wk_errf(err, err_len, WK_STATUS_UNAVAILABLE, "%s: no CUDA device (%s)", __func__,
                       e0 != cudaSuccess ? cudaGetErrorString(e0) : "none found");
    }
    if (device < 0 || device >= n_dev)
        return wk_errf(err, err_len, WK_STATUS_INVALID_ARGUMENT, "%s: device %d is outside [0, %d)", __func__, device,
                       n_dev);

    struct wk_backend *b = (struct wk_backend *)calloc(1, sizeof *b);
    cu_impl *c = (cu_impl *)calloc(1, sizeof *c);
    if (!b || !c) {
        free(b);
        free(c);
        return wk_errf(err, err_len, WK_STATUS_OOM_HOST, "%s: out of memory", __func__);
    }
    b->ops = &cu_ops;
    b->model = m;
    b->n_ctx = n_ctx;
    b->impl = c;
    wk_status s = WK_STATUS_OK;
#define FAIL_IF(expr)                   \
    do {                                \
        s = (expr);                     \
        if (s != WK_STATUS_OK) goto fail; \
    } while (0)

    c->dev = device;
    c->E = hp->n_embd;
    c->n_head = hp->n_head;
    c->n_kv = hp->n_head_kv;
    c->hd = hp->head_dim;
    c->rd = hp->rope_dim;
    c->neox = hp->rope_type == WK_ROPE_NEOX;
    c->qd = hp->n_head * hp->head_dim;
    c->kvd = hp->n_head_kv * hp->head_dim;
    c->n_ff = hp->n_ff;
    c->V = hp->n_vocab;
    c->n_layer = hp->n_layer;
    c->eps = hp->rms_eps;
    c->max_split = wk_cdiv(n_ctx, WK_CU_ATT_CHUNK);
    c->P = n_ctx < PREFILL_ROWS ? n_ctx : PREFILL_ROWS;
    c->graph_off = getenv("WK_CUDA_NOGRAPH") != NULL; /* for measuring what the graph saves */
    if (c->P < 1) c->P = 1;
    {
        size_t we = 0;
        for (int l = 0; l < hp->n_layer; l++) {
            const wk_layer *L = &m->layers[l];
            const wk_tensor *mats[7] = {&L->wq, &L->wk, &L->wv, &L->wo, &L->w_gate, &L->w_up, &L->w_down};
            for (int i = 0; i < 7; i++)
                if (mat_elems_if_dequant(mats[i]) > we) we = mat_elems_if_dequant(mats[i]);
        }
        size_t oe = mat_elems_if_dequant(&m->output);
        const size_t cap = (size_t)8 << 20; /* output tiles: at most 8M elements (16 MiB) at a time */
        if (oe > cap) oe = cap;
        if (oe > we) we = oe;
        if (we > 0 && we < (size_t)hp->n_embd) we = (size_t)hp->n_embd;
        c->wtmp_elems = we;
    }

    {
        char e2[256];
        (void)e2;
        cudaError_t e;
#define CU(x)                                                                                           \
    do {                                                                                                \
        e = (x);                                                                                        \
        if (e != cudaSuccess) {                                                                         \
            (void)cudaGetLastError();                                                                   \
            s = wk_errf(err, err_len, WK_STATUS_CUDA, "%s: %s failed: %s", __func__, #x, cudaGetErrorString(e)); \
            goto fail;                                                                                  \
        }                                                                                               \
    } while (0)
        CU(cudaSetDevice(device));
        cudaDeviceProp prop;
        CU(cudaGetDeviceProperties(&prop, device));
        c->n_sm = prop.multiProcessorCount;
        snprintf(b->info.device, sizeof b->info.device, "%.127s", prop.name);
        b->info.mem_total = prop.totalGlobalMem;
        CU(cudaStreamCreateWithFlags(&c->st, cudaStreamNonBlocking));
        CU(cudaEventCreateWithFlags(&c->ev_step, cudaEventDisableTiming));
        CU(cudaEventCreateWithFlags(&c->ev_stage[0], cudaEventDisableTiming));
        CU(cudaEventCreateWithFlags(&c->ev_stage[1], cudaEventDisableTiming));

        c->wbytes = weights_bytes(m);
        c->sbytes = carve_state(c, n_ctx, NULL);
        size_t free_b = 0, total_b = 0;
        CU(cudaMemGetInfo(&free_b, &total_b));
        const size_t reserve = (size_t)256 << 20; /* context, cuBLAS, graph */
        if (c->wbytes + c->sbytes + reserve > free_b) {
            s = wk_errf(err, err_len, WK_STATUS_OOM_DEV,
                        "%s: %s has %zu MiB free; the model needs %zu MiB of weights + %zu MiB of KV cache and "
                        "activations for a %d-token context (+%zu MiB reserve)",
                        __func__, prop.name, free_b >> 20, c->wbytes >> 20, c->sbytes >> 20, n_ctx, reserve >> 20);
            goto fail;
        }
        e = cudaMalloc(&c->warena, c->wbytes);
        if (e == cudaSuccess) e = cudaMalloc(&c->sarena, c->sbytes);
        if (e != cudaSuccess) {
            (void)cudaGetLastError();
            s = wk_errf(err, err_len, WK_STATUS_OOM_DEV, "%s: cudaMalloc of %zu + %zu MiB failed: %s", __func__,
                        c->wbytes >> 20, c->sbytes >> 20, cudaGetErrorString(e));
            goto fail;
        }
        carve_state(c, n_ctx, c->sarena);
        CU(cudaMallocHost(&c->h_stage[0], STAGE_BYTES));
        CU(cudaMallocHost(&c->h_stage[1], STAGE_BYTES));
        CU(cudaMallocHost(&c->h_params, 2 * sizeof(int)));
        CU(cudaMallocHost(&c->h_tok, (size_t)c->P * sizeof(int32_t)));
        CU(cudaMallocHost(&c->h_hist, (size_t)(n_ctx + 1) * sizeof(int32_t)));
        CU(cudaMallocHost(&c->h_res, sizeof(wk_cu_sample_res)));
        CU(cudaMallocHost(&c->h_gres, sizeof(wk_cu_sample_res)));
        int max_in = c->E > c->qd ? c->E : c->qd;
        if (c->n_ff > max_in) max_in = c->n_ff;
        CU(wk_cu_kernels_init(max_in, c->hd, getenv("WK_CUDA_NOPDL") == NULL));
        c->L = (cu_layer *)calloc((size_t)c->n_layer, sizeof(cu_layer));
        if (!c->L) {
            s = wk_errf(err, err_len, WK_STATUS_OOM_HOST, "%s: out of memory", __func__);
            goto fail;
        }
        if (cublasCreate(&c->blas) != CUBLAS_STATUS_SUCCESS) {
            c->blas = NULL;
            s = wk_errf(err, err_len, WK_STATUS_CUBLAS, "%s: cublasCreate failed", __func__);
            goto fail;
        }
        if (cublasSetStream(c->blas, c->st) != CUBLAS_STATUS_SUCCESS ||
            cublasSetWorkspace(c->blas, c->blas_ws, BLAS_WS_BYTES) != CUBLAS_STATUS_SUCCESS ||
            cublasSetMathMode(c->blas, CUBLAS_DEFAULT_MATH) != CUBLAS_STATUS_SUCCESS) {
            s = wk_errf(err, err_len, WK_STATUS_CUBLAS, "%s: cuBLAS stream/workspace setup failed", __func__);
            goto fail;
        }
        // rope table, computed as the CPU backend does (angle in double)
        {
            const int hr = c->rd / 2 > 0 ? c->rd / 2 : 1;
            float2 *tab = (float2 *)malloc((size_t)n_ctx * hr * sizeof(float2));
            if (!tab) {
                s = wk_errf(err, err_len, WK_STATUS_OOM_HOST, "%s: out of memory for the rope table", __func__);
                goto fail;
            }
            for (int p = 0; p < n_ctx; p++)
                for (int i = 0; i < c->rd / 2; i++) {
                    double ang = (double)p * pow((double)hp->rope_theta, -2.0 * i / c->rd);
                    tab[(size_t)p * hr + i] = make_float2((float)cos(ang), (float)sin(ang));
                }
            uploader u = {c, 0, NULL};
            s = stage_copy(&u, (uint8_t *)c->rope_cs, tab, (size_t)n_ctx * hr * sizeof(float2), err, err_len);
            free(tab);
            if (s != WK_STATUS_OK) goto fail;
        }
        FAIL_IF(upload_weights(c, m, err, err_len));
        CU(cudaMemsetAsync(c->kc, 0, c->kv_bytes, c->st));
        CU(cudaMemsetAsync(c->dcount, 0, (size_t)c->n_head * sizeof(unsigned), c->st));
        CU(cudaMemsetAsync(c->smp.counter, 0, sizeof(unsigned), c->st));
        CU(cudaStreamSynchronize(c->st));
#undef CU
    }
    b->info.mem_weights = c->wbytes;
    b->info.mem_kv = c->kv_bytes;
    b->info.mem_scratch = c->sbytes - c->kv_bytes;
    {
        /* Warm-up before Ready: a 2-token prefill (cuBLAS kernels loaded) and
         * one decode step (the graph captured), so the first request's time to
         * first token does not pay for them. It writes KV positions 0..1,
         * which every request overwrites before reading. */
        const int32_t warm[2] = {0, 0};
        if (n_ctx >= 2) {
            FAIL_IF(cu_forward(b, warm, 2, 0, NULL, false, err, err_len));
            FAIL_IF(cu_forward(b, warm, 1, 1, NULL, false, err, err_len));
        }
    }
    *out = b;
    return WK_STATUS_OK;
fail:
    cu_destroy(b);
    return s;
#undef FAIL_IF
}
