/* norm-rope.cu — the per-row elementwise steps of the forward pass:
 * embedding, rmsnorm (pre-norm into the GEMM inputs, post-norm added to the
 * residual), the q/k/v step after the QKV GEMM (bias, per-head norms, rope,
 * K/V into the row's page), the gated activation, and the row gather for
 * the logits. One block (or warp) per row; each row's sums run in an order
 * fixed by the row length and the block size, so rows never see each other.
 */
#include <math.h>

#include "cuda/ops.cuh"

#define NORM_THREADS 256

__global__ void embed_kernel(wk_cu_mat m, const int32_t *tok, float scale, float *x) {
    const int r = blockIdx.x, n = m.n_in;
    const uint8_t *row = m.w + (size_t)tok[r] * m.row_bytes;
    float *xr = x + (size_t)r * n;
    const bool vec = !(m.type == GGML_TYPE_F32 || m.type == GGML_TYPE_F16 || m.type == GGML_TYPE_BF16) ||
                     m.row_bytes % 16 == 0;
    for (int c = threadIdx.x; 8 * c < n; c += blockDim.x) {
        float v[8];
        if (vec && 8 * c + 8 <= n) {
            WK_TYPE_SWITCH(m.type, wk_deq8<T_>(row, c, v));
        } else {
            for (int e = 0; e < 8; e++) v[e] = 8 * c + e < n ? wk_deq1(m.type, row, 8 * c + e) : 0.0f;
        }
        for (int e = 0; e < 8 && 8 * c + e < n; e++) xr[8 * c + e] = v[e] * scale;
    }
}

cudaError_t wk_cu_embed(const wk_cu_mat &embd, const int32_t *tok, int n_rows, float scale, float *x,
                        cudaStream_t st) {
    if (n_rows <= 0) return cudaSuccess;
    embed_kernel<<<n_rows, 128, 0, st>>>(embd, tok, scale, x);
    return cudaGetLastError();
}

/* mode 0: y = rmsnorm(x) * w (f32 + f16, zero padding to ldy);
 * mode 1: out += rmsnorm(x) * w. */
__global__ void __launch_bounds__(NORM_THREADS)
    rmsnorm_kernel(const float *x, int ldx, const float *w, int n, float eps, float *y32, __half *y16, int ldy,
                   int mode) {
    __shared__ float sh[32];
    const float *xr = x + (size_t)blockIdx.x * ldx;
    float ss = 0.0f;
    for (int i = threadIdx.x; i < n; i += NORM_THREADS) ss = fmaf(xr[i], xr[i], ss);
    ss = wk_block_sum(ss, sh);
    const float scale = rsqrtf(ss / (float)n + eps);
    if (mode == 1) {
        float *o = y32 + (size_t)blockIdx.x * ldy;
        for (int i = threadIdx.x; i < n; i += NORM_THREADS) o[i] += xr[i] * scale * w[i];
        return;
    }
    float *o = y32 + (size_t)blockIdx.x * ldy;
    __half *o16 = y16 ? y16 + (size_t)blockIdx.x * ldy : NULL;
    const int n_out = min(ldy, (n + WK_GEMM_BK - 1) / WK_GEMM_BK * WK_GEMM_BK); /* zeros up to the k-tile end */
    for (int i = threadIdx.x; i < n_out; i += NORM_THREADS) {
        const float v = i < n ? xr[i] * scale * w[i] : 0.0f;
        o[i] = v;
        if (o16) o16[i] = __float2half_rn(v);
    }
}

cudaError_t wk_cu_rmsnorm(const float *x, int ldx, const float *w, int n_rows, int n, float eps, float *y32,
                          __half *y16, int ldy, cudaStream_t st) {
    if (n_rows <= 0) return cudaSuccess;
    rmsnorm_kernel<<<n_rows, NORM_THREADS, 0, st>>>(x, ldx, w, n, eps, y32, y16, ldy, 0);
    return cudaGetLastError();
}

cudaError_t wk_cu_rmsnorm_add(const float *in, int ldin, const float *w, int n_rows, int n, float eps, float *x,
                              cudaStream_t st) {
    if (n_rows <= 0) return cudaSuccess;
    rmsnorm_kernel<<<n_rows, NORM_THREADS, 0, st>>>(in, ldin, w, n, eps, x, NULL, n, 1);
    return cudaGetLastError();
}

/* One warp per (row, head) (q heads, then k heads, then v heads): the head is
 * staged in shared memory, normed (warp xor tree over lane-strided squares),
 * rotated, then stored (q f32, k/v f16 into the row's page). */
__global__ void __launch_bounds__(32) qkv_post_kernel(const __grid_constant__ wk_qkv_post_args a) {
    extern __shared__ float h[]; /* (hd) */
    const int r = blockIdx.x, head = blockIdx.y, lane = threadIdx.x;
    const int qd = a.n_head * a.hd, kvd = a.n_head_kv * a.hd;
    const float *row = a.qkv + (size_t)r * (qd + 2 * kvd);
    const int pos = a.row_pos[r];
    const int half = a.rd / 2;
    const float2 *cs = a.cs + (size_t)pos * (half > 0 ? half : 1);
    const int kind = head < a.n_head ? 0 : head < a.n_head + a.n_head_kv ? 1 : 2;
    const int hh = kind == 0 ? head : kind == 1 ? head - a.n_head : head - a.n_head - a.n_head_kv;
    const int off = kind == 0 ? hh * a.hd : kind == 1 ? qd + hh * a.hd : qd + kvd + hh * a.hd;
    const float *bias = kind == 0 ? a.bq : kind == 1 ? a.bk : a.bv;
    const float *nw = kind == 0 ? a.q_norm : kind == 1 ? a.k_norm : NULL;
    float ss = 0.0f;
    for (int i = lane; i < a.hd; i += 32) {
        float v = row[off + i];
        if (bias) v += bias[hh * a.hd + i];
        h[i] = v;
        ss = fmaf(v, v, ss);
    }
    ss = wk_warp_sum(ss);
    __syncwarp();
    if (nw) {
        const float sc = rsqrtf(ss / (float)a.hd + a.eps);
        for (int i = lane; i < a.hd; i += 32) h[i] = h[i] * sc * nw[i];
        __syncwarp();
    }
    if (kind < 2) {
        for (int i = lane; i < half; i += 32) {
            const int ia = a.neox ? i : 2 * i, ib = a.neox ? i + half : 2 * i + 1;
            const float x0 = h[ia], x1 = h[ib], c = cs[i].x, s = cs[i].y;
            h[ia] = x0 * c - x1 * s;
            h[ib] = x0 * s + x1 * c;
        }
        __syncwarp();
    }
    if (kind == 0) {
        for (int i = lane; i < a.hd; i += 32) a.q[(size_t)r * qd + hh * a.hd + i] = h[i];
    } else {
        const int page = a.pt[a.row_pt[r] + pos / WK_KV_PAGE_TOKENS], slot = pos % WK_KV_PAGE_TOKENS;
        __half *dst = (kind == 1 ? a.kc : a.vc) + ((size_t)page * WK_KV_PAGE_TOKENS + slot) * kvd + hh * a.hd;
        for (int i = lane; i < a.hd; i += 32) dst[i] = __float2half_rn(h[i]);
    }
}

cudaError_t wk_cu_qkv_post(const wk_qkv_post_args &a, int n_rows, cudaStream_t st) {
    if (n_rows <= 0) return cudaSuccess;
    qkv_post_kernel<<<dim3(n_rows, a.n_head + 2 * a.n_head_kv), 32, a.hd * sizeof(float), st>>>(a);
    return cudaGetLastError();
}

__global__ void glu_kernel(const float *gu, int n_ff, int gelu, float *y32, __half *y16, int ld) {
    const float *g = gu + (size_t)blockIdx.x * 2 * n_ff, *u = g + n_ff;
    float *o = y32 + (size_t)blockIdx.x * ld;
    __half *o16 = y16 + (size_t)blockIdx.x * ld;
    const int n_out = min(ld, (n_ff + WK_GEMM_BK - 1) / WK_GEMM_BK * WK_GEMM_BK);
    for (int i = blockIdx.y * blockDim.x + threadIdx.x; i < n_out; i += gridDim.y * blockDim.x) {
        float v = 0.0f;
        if (i < n_ff) {
            const float x = g[i];
            if (gelu) v = 0.5f * x * (1.0f + tanhf(0.7978845608028654f * (x + 0.044715f * x * x * x))) * u[i];
            else v = x / (1.0f + expf(-x)) * u[i];
        }
        o[i] = v;
        o16[i] = __float2half_rn(v);
    }
}

cudaError_t wk_cu_glu(const float *gu, int n_rows, int n_ff, bool gelu, float *y32, __half *y16, int ld,
                      cudaStream_t st) {
    if (n_rows <= 0) return cudaSuccess;
    glu_kernel<<<dim3(n_rows, wk_cdiv(n_ff, 256)), 256, 0, st>>>(gu, n_ff, gelu ? 1 : 0, y32, y16, ld);
    return cudaGetLastError();
}

__global__ void gather_kernel(const __half *s16, const float *s32, int ld, const int32_t *rows, __half *d16,
                              float *d32) {
    const int src = rows[blockIdx.x];
    for (int i = threadIdx.x; i < ld; i += blockDim.x) {
        d16[(size_t)blockIdx.x * ld + i] = s16[(size_t)src * ld + i];
        d32[(size_t)blockIdx.x * ld + i] = s32[(size_t)src * ld + i];
    }
}

cudaError_t wk_cu_gather_rows(const __half *src16, const float *src32, int ld, const int32_t *rows, int n,
                              __half *dst16, float *dst32, cudaStream_t st) {
    if (n <= 0) return cudaSuccess;
    gather_kernel<<<n, 256, 0, st>>>(src16, src32, ld, rows, dst16, dst32);
    return cudaGetLastError();
}
