/* rowops.cuh — the per-row bodies of norm-rope.cu's kernels, shared with
 * the persistent decode kernel (branch `persistent`) so a row gets the same bits
 * from either: embedding row, rmsnorm row, one head's q/k/v step, the gated
 * activation of one element.
 */
#ifndef WK_CUDA_ROWOPS_CUH
#define WK_CUDA_ROWOPS_CUH

#include <math.h>

#include "cuda/ops.cuh"

#define NORM_THREADS 256 /* rmsnorm's block: its sum-of-squares order depends on it */

/* xr[0..n) = dequant(embd row tok) * scale; threads of the block stride the
 * 8-element chunks (elementwise: any block size gives the same values). */
__device__ __forceinline__ void wk_embed_row(const wk_cu_mat &m, int tok, float scale, float *xr) {
    const int n = m.n_in;
    const uint8_t *row = m.w + (size_t)tok * m.row_bytes;
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

/* The rmsnorm scale 1/sqrt(mean(x²) + eps) from each thread's sum of
 * squares ss (thread i of NORM_THREADS: x[i]², x[i+256]², ... by fma, in
 * that order), folded by the fixed block tree. Every thread of the
 * (NORM_THREADS-thread) block calls it and gets the result. */
__device__ __forceinline__ float wk_rms_scale_of(float ss, int n, float eps, float *sh) {
    ss = wk_block_sum(ss, sh);
    return rsqrtf(ss / (float)n + eps);
}

/* The row's rmsnorm scale (wk_rms_scale_of) read from memory. */
__device__ __forceinline__ float wk_rms_scale(const float *xr, int n, float eps, float *sh) {
    float ss = 0.0f;
    for (int i = threadIdx.x; i < n; i += NORM_THREADS) ss = fmaf(xr[i], xr[i], ss);
    return wk_rms_scale_of(ss, n, eps, sh);
}

/* o[i] = x[i] * scale * w[i] for i < n, zeros up to n_out (the k-tile end). */
__device__ __forceinline__ void wk_rmsnorm_store(const float *xr, const float *w, int n, float scale, float *o,
                                                 __half *o16, int n_out) {
    for (int i = threadIdx.x; i < n_out; i += blockDim.x) {
        const float v = i < n ? xr[i] * scale * w[i] : 0.0f;
        o[i] = v;
        if (o16) o16[i] = __float2half_rn(v);
    }
}

/* Rotate the pair (x0, x1) by the angle whose (cos, sin) is cs. Explicit
 * roundings: the same bits wherever this is inlined (qkv_post here, the QKV
 * GEMM's epilogue in gemm-fused.cu). */
__device__ __forceinline__ void wk_rope_pair(float &x0, float &x1, float2 cs) {
    const float y0 = __fsub_rn(__fmul_rn(x0, cs.x), __fmul_rn(x1, cs.y));
    const float y1 = __fadd_rn(__fmul_rn(x0, cs.y), __fmul_rn(x1, cs.x));
    x0 = y0, x1 = y1;
}

/* One head of one row after the QKV GEMM, by one warp (lane = its lane; h:
 * hd floats of shared memory of this warp): bias, per-head rmsnorm (warp xor
 * tree over lane-strided squares), rope at the row's position, then q (f32)
 * to a.q or k/v (f16) into the row's page. head: q heads, then k, then v.
 * Everything the head needs that no kernel of the step writes — bias, norm
 * weights, the row's position, rope row and page (the step's metadata is
 * uploaded before its first kernel) — is loaded before wk_dep_enter(), the
 * head's values right after it, so the warp waits on memory twice, not once
 * per stage. hd <= 256, rd <= hd (check_model). */
__device__ __forceinline__ void wk_qkv_post_head(const wk_qkv_post_args &a, int r, int head, int lane, float *h) {
    const int qd = a.n_head * a.hd, kvd = a.n_head_kv * a.hd;
    const float *row = a.qkv + (size_t)r * (qd + 2 * kvd);
    const int kind = head < a.n_head ? 0 : head < a.n_head + a.n_head_kv ? 1 : 2;
    const int hh = kind == 0 ? head : kind == 1 ? head - a.n_head : head - a.n_head - a.n_head_kv;
    const int off = kind == 0 ? hh * a.hd : kind == 1 ? qd + hh * a.hd : qd + kvd + hh * a.hd;
    const float *bias = kind == 0 ? a.bq : kind == 1 ? a.bk : a.bv;
    const float *nw = kind == 0 ? a.q_norm : kind == 1 ? a.k_norm : NULL;
    const int half = a.rd / 2;
    float bv[8], nv[8];
    float2 csv[4];
#pragma unroll
    for (int k = 0; k < 8; k++) {
        const int i = lane + 32 * k;
        bv[k] = bias && i < a.hd ? bias[hh * a.hd + i] : 0.0f;
        nv[k] = nw && i < a.hd ? nw[i] : 0.0f;
    }
    const int pos = a.row_pos[r];
    const float2 *cs = a.cs + (size_t)pos * (half > 0 ? half : 1);
#pragma unroll
    for (int k = 0; k < 4; k++) {
        const int i = lane + 32 * k;
        csv[k] = kind < 2 && i < half ? cs[i] : make_float2(0.0f, 0.0f);
    }
    const int page = kind > 0 ? a.pt[a.row_pt[r] + pos / WK_KV_PAGE_TOKENS] : 0;
    wk_dep_enter();
    float v[8];
#pragma unroll
    for (int k = 0; k < 8; k++) {
        const int i = lane + 32 * k;
        v[k] = i < a.hd ? row[off + i] : 0.0f;
    }
    float ss = 0.0f;
#pragma unroll
    for (int k = 0; k < 8; k++) {
        const int i = lane + 32 * k;
        if (i >= a.hd) break;
        if (bias) v[k] += bv[k];
        h[i] = v[k];
        ss = fmaf(v[k], v[k], ss);
    }
    ss = wk_warp_sum(ss);
    __syncwarp();
    if (nw) {
        const float sc = rsqrtf(ss / (float)a.hd + a.eps);
#pragma unroll
        for (int k = 0; k < 8; k++) {
            const int i = lane + 32 * k;
            if (i >= a.hd) break;
            h[i] = h[i] * sc * nv[k];
        }
        __syncwarp();
    }
    if (kind < 2) {
#pragma unroll
        for (int k = 0; k < 4; k++) {
            const int i = lane + 32 * k;
            if (i >= half) break;
            const int ia = a.neox ? i : 2 * i, ib = a.neox ? i + half : 2 * i + 1;
            wk_rope_pair(h[ia], h[ib], csv[k]);
        }
        __syncwarp();
    }
    if (kind == 0) {
        for (int i = lane; i < a.hd; i += 32) a.q[(size_t)r * qd + hh * a.hd + i] = h[i];
    } else {
        const int slot = pos % WK_KV_PAGE_TOKENS;
        __half *dst = (kind == 1 ? a.kc : a.vc) + ((size_t)page * WK_KV_PAGE_TOKENS + slot) * kvd + hh * a.hd;
        for (int i = lane; i < a.hd; i += 32) dst[i] = __float2half_rn(h[i]);
    }
    __syncwarp(); /* h is the warp's next head */
}

/* act(gate) * up: tanh-GELU or SiLU. Not inlined: the GLU kernel and the
 * gate/up GEMM's GLU epilogue (gemm-fused.cu) must give the same bits, and one
 * compiled body leaves the compiler no per-call-site choice (such as
 * contracting a multiply and an add into an fma). */
static __device__ __noinline__ float wk_glu_value(float x, float u, bool gelu) {
    if (gelu) return 0.5f * x * (1.0f + tanhf(0.7978845608028654f * (x + 0.044715f * x * x * x))) * u;
    return x / (1.0f + expf(-x)) * u;
}

#endif
