/* norm-rope.cu — the per-row elementwise steps of the forward pass:
 * embedding, rmsnorm (pre-norm into the GEMM inputs, post-norm added to the
 * residual), the q/k/v step after the QKV GEMM (bias, per-head norms, rope,
 * K/V into the row's page), the gated activation, and the row gather for
 * the logits. One block (or warp) per row; each row's sums run in an order
 * fixed by the row length and the block size, so rows never see each other.
 */
#include "cuda/rowops.cuh"

__global__ void embed_kernel(wk_cu_mat m, const int32_t *tok, float scale, float *x) {
    wk_dep_enter();
    wk_embed_row(m, tok[blockIdx.x], scale, x + (size_t)blockIdx.x * m.n_in);
}

cudaError_t wk_cu_embed(const wk_cu_mat &embd, const int32_t *tok, int n_rows, float scale, float *x,
                        cudaStream_t st) {
    if (n_rows <= 0) return cudaSuccess;
    return wk_launch_pdl(embed_kernel, n_rows, n_rows, 128, 0, st, embd, tok, scale, x);
}

/* mode 0: y = rmsnorm(x) * w (f32 + f16, zero padding to ldy);
 * mode 1: out += rmsnorm(x) * w.
 * The row stays in registers (thread t holds elements t, t+256, ...: the
 * order of wk_rms_scale's sum), its norm weights loaded before the wait, so
 * the block makes one round trip to memory instead of one per element of a
 * thread (the loads of a loop that stores cannot be hoisted over its stores).
 * Rows longer than NORM_REG_ELEMS * NORM_THREADS take the loops of rowops.cuh. */
#define NORM_REG_ELEMS 16
__global__ void __launch_bounds__(NORM_THREADS)
    rmsnorm_kernel(const float *x, int ldx, const float *w, int n, float eps, float *y32, __half *y16, int ldy,
                   int mode) {
    __shared__ float sh[32];
    const int n_out = mode == 1 ? n : min(ldy, (n + WK_GEMM_BK - 1) / WK_GEMM_BK * WK_GEMM_BK); /* zeros to the k-tile end */
    const float *xr = x + (size_t)blockIdx.x * ldx;
    if (n_out > NORM_REG_ELEMS * NORM_THREADS) {
        wk_dep_enter();
        const float scale = wk_rms_scale(xr, n, eps, sh);
        if (mode == 1) {
            float *o = y32 + (size_t)blockIdx.x * ldy;
            for (int i = threadIdx.x; i < n; i += NORM_THREADS) o[i] += xr[i] * scale * w[i];
            return;
        }
        wk_rmsnorm_store(xr, w, n, scale, y32 + (size_t)blockIdx.x * ldy, y16 ? y16 + (size_t)blockIdx.x * ldy : NULL,
                         n_out);
        return;
    }
    float wv[NORM_REG_ELEMS], xv[NORM_REG_ELEMS];
#pragma unroll
    for (int k = 0; k < NORM_REG_ELEMS; k++) {
        const int i = threadIdx.x + k * NORM_THREADS;
        wv[k] = i < n ? __ldg(w + i) : 0.0f; /* a weight: before the wait */
    }
    wk_dep_enter();
#pragma unroll
    for (int k = 0; k < NORM_REG_ELEMS; k++) {
        const int i = threadIdx.x + k * NORM_THREADS;
        xv[k] = i < n ? xr[i] : 0.0f;
    }
    float ss = 0.0f;
#pragma unroll
    for (int k = 0; k < NORM_REG_ELEMS; k++)
        if (threadIdx.x + k * NORM_THREADS < n) ss = fmaf(xv[k], xv[k], ss);
    const float scale = wk_rms_scale_of(ss, n, eps, sh);
    float *o = y32 + (size_t)blockIdx.x * ldy;
    __half *o16 = y16 ? y16 + (size_t)blockIdx.x * ldy : NULL;
#pragma unroll
    for (int k = 0; k < NORM_REG_ELEMS; k++) {
        const int i = threadIdx.x + k * NORM_THREADS;
        if (i >= n_out) break;
        const float v = i < n ? xv[k] * scale * wv[k] : 0.0f;
        if (mode == 1) {
            o[i] += v;
        } else {
            o[i] = v;
            if (o16) o16[i] = __float2half_rn(v);
        }
    }
}

cudaError_t wk_cu_rmsnorm(const float *x, int ldx, const float *w, int n_rows, int n, float eps, float *y32,
                          __half *y16, int ldy, cudaStream_t st) {
    if (n_rows <= 0) return cudaSuccess;
    return wk_launch_pdl(rmsnorm_kernel, n_rows, n_rows, NORM_THREADS, 0, st, x, ldx, w, n, eps, y32, y16, ldy, 0);
}

cudaError_t wk_cu_rmsnorm_add(const float *in, int ldin, const float *w, int n_rows, int n, float eps, float *x,
                              cudaStream_t st) {
    if (n_rows <= 0) return cudaSuccess;
    return wk_launch_pdl(rmsnorm_kernel, n_rows, n_rows, NORM_THREADS, 0, st, in, ldin, w, n, eps, x, (__half *)NULL, n, 1);
}

/* One warp per (row, head) (q heads, then k heads, then v heads): the head is
 * staged in shared memory, normed (warp xor tree over lane-strided squares),
 * rotated, then stored (q f32, k/v f16 into the row's page). */
__global__ void __launch_bounds__(32) qkv_post_kernel(const __grid_constant__ wk_qkv_post_args a) {
    extern __shared__ float h[]; /* (hd) */
    wk_qkv_post_head(a, blockIdx.x, blockIdx.y, threadIdx.x, h); /* calls wk_dep_enter() */
}

cudaError_t wk_cu_qkv_post(const wk_qkv_post_args &a, int n_rows, cudaStream_t st) {
    if (n_rows <= 0) return cudaSuccess;
    return wk_launch_pdl(qkv_post_kernel, n_rows, dim3(n_rows, a.n_head + 2 * a.n_head_kv), 32, a.hd * sizeof(float), st, a);
}

__global__ void glu_kernel(const float *gu, int n_ff, int gelu, float *y32, __half *y16, int ld) {
    wk_dep_enter();
    const float *g = gu + (size_t)blockIdx.x * 2 * n_ff, *u = g + n_ff;
    float *o = y32 + (size_t)blockIdx.x * ld;
    __half *o16 = y16 + (size_t)blockIdx.x * ld;
    const int n_out = min(ld, (n_ff + WK_GEMM_BK - 1) / WK_GEMM_BK * WK_GEMM_BK);
    for (int i = blockIdx.y * blockDim.x + threadIdx.x; i < n_out; i += gridDim.y * blockDim.x) {
        const float v = i < n_ff ? wk_glu_value(g[i], u[i], gelu) : 0.0f;
        o[i] = v;
        o16[i] = __float2half_rn(v);
    }
}

cudaError_t wk_cu_glu(const float *gu, int n_rows, int n_ff, bool gelu, float *y32, __half *y16, int ld,
                      cudaStream_t st) {
    if (n_rows <= 0) return cudaSuccess;
    return wk_launch_pdl(glu_kernel, n_rows, dim3(n_rows, wk_cdiv(n_ff, 256)), 256, 0, st, gu, n_ff, gelu ? 1 : 0, y32, y16, ld);
}

__global__ void gather_kernel(const __half *s16, const float *s32, int ld, const int32_t *rows, __half *d16,
                              float *d32) {
    wk_dep_enter();
    const int src = rows[blockIdx.x];
    for (int i = threadIdx.x; i < ld; i += blockDim.x) {
        d16[(size_t)blockIdx.x * ld + i] = s16[(size_t)src * ld + i];
        d32[(size_t)blockIdx.x * ld + i] = s32[(size_t)src * ld + i];
    }
}

cudaError_t wk_cu_gather_rows(const __half *src16, const float *src32, int ld, const int32_t *rows, int n,
                              __half *dst16, float *dst32, cudaStream_t st) {
    if (n <= 0) return cudaSuccess;
    return wk_launch_pdl(gather_kernel, n, n, 256, 0, st, src16, src32, ld, rows, dst16, dst32);
}
