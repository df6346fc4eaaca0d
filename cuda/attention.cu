/* attention.cu — attention of every row of a step over its own sequence's
 * K/V pages, batch-invariant.
 *
 * A row at position pos sees keys [p0, pos] (p0 = pos - window + 1 for a
 * sliding-window layer, else 0). The keys are cut at absolute multiples of
 * WK_ATT_CHUNK, so the splits of a row depend only on its own position and
 * window — the same whether it runs as a decode row or inside a prefill
 * chunk, alone or among 63 other rows. Per (row, head, split), one block of
 * ATT_THREADS threads: scores one thread per key (its K row read in 16-byte
 * loads, dims in order), block max
 * and block sum through the fixed trees of common.cuh, then p·V with thread
 * groups over keys (group g takes keys g, g+G, ...) folded in group order.
 * A row with one split writes o / l directly; otherwise the split's
 * (max, sum, o) go to `part` and merge_kernel folds the splits in order.
 */
#include <math.h>

#include "cuda/ops.cuh"

#define ATT_THREADS 256
#define PV_UNROLL 8 /* keys whose V loads are in flight together (order of the sums unchanged) */

__device__ __forceinline__ void row_range(const wk_attn_args &a, int r, int *pos, int *p0) {
    *pos = a.row_pos[r];
    *p0 = a.window > 0 && *pos - a.window + 1 > 0 ? *pos - a.window + 1 : 0;
}

__global__ void __launch_bounds__(ATT_THREADS) attn_split_kernel(const __grid_constant__ wk_attn_args a) {
    extern __shared__ float sm[]; /* q (hd) | scores (CHUNK) | pv partials (ATT_THREADS) or (G, hd) */
    __shared__ float red[32];
    const int r = blockIdx.x, h = blockIdx.y, tid = threadIdx.x;
    int pos, p0;
    row_range(a, r, &pos, &p0);
    const int s_first = p0 / WK_ATT_CHUNK, s_last = pos / WK_ATT_CHUNK, n_split = s_last - s_first + 1;
    const int s = s_first + blockIdx.z;
    if (s > s_last) return;
    const int k_lo = max(p0, s * WK_ATT_CHUNK), k_hi = min(pos + 1, (s + 1) * WK_ATT_CHUNK), nk = k_hi - k_lo;
    const int hd = a.hd, kvd = a.n_head_kv * hd, kvh = h / (a.n_head / a.n_head_kv);
    float *qs = sm, *sc = sm + hd, *pv = sc + WK_ATT_CHUNK;
    const int32_t *pt = a.pt + a.row_pt[r];
    for (int i = tid; i < hd; i += ATT_THREADS) qs[i] = a.q[(size_t)r * a.n_head * hd + h * hd + i];
    __syncthreads();

    float mx = -INFINITY;
    for (int j = tid; j < nk; j += ATT_THREADS) {
        const int p = k_lo + j;
        const uint4 *kp = reinterpret_cast<const uint4 *>(
            a.kc + ((size_t)pt[p / WK_KV_PAGE_TOKENS] * WK_KV_PAGE_TOKENS + p % WK_KV_PAGE_TOKENS) * kvd + kvh * hd);
        float d = 0.0f;
        for (int i0 = 0; i0 < hd / 8; i0 += 8) {
            uint4 u[8];
#pragma unroll
            for (int i = 0; i < 8; i++)
                if (i0 + i < hd / 8) u[i] = kp[i0 + i];
#pragma unroll
            for (int i = 0; i < 8; i++) {
                if (i0 + i >= hd / 8) break;
                const __half2 *h2 = reinterpret_cast<const __half2 *>(&u[i]);
#pragma unroll
                for (int e = 0; e < 4; e++) {
                    const float2 kf = __half22float2(h2[e]);
                    const int dd = 8 * (i0 + i) + 2 * e;
                    d = fmaf(qs[dd], kf.x, d);
                    d = fmaf(qs[dd + 1], kf.y, d);
                }
            }
        }
        d *= a.scale;
        sc[j] = d;
        mx = fmaxf(mx, d);
    }
    mx = wk_block_max(mx, red);
    float l = 0.0f;
    for (int j = tid; j < nk; j += ATT_THREADS) {
        const float e = expf(sc[j] - mx);
        sc[j] = e;
        l += e;
    }
    l = wk_block_sum(l, red); /* also the barrier that publishes sc */

    /* p·V: G groups of hd threads (hd <= ATT_THREADS), or every thread over dims */
    const int G = hd <= ATT_THREADS ? ATT_THREADS / hd : 1;
    const float inv = n_split == 1 ? 1.0f / l : 1.0f;
    float *outp = a.part + (((size_t)r * a.n_head + h) * gridDim.z + blockIdx.z) * (hd + 2);
    for (int d0 = 0; d0 < hd; d0 += ATT_THREADS) {
        const int g = (tid / hd) % G, d = d0 + (G > 1 ? tid % hd : tid);
        const bool active = (G > 1 ? tid < G * hd : true) && d < hd;
        float acc = 0.0f;
        if (active)
            for (int j0 = g; j0 < nk; j0 += G * PV_UNROLL) {
                float v[PV_UNROLL];
#pragma unroll
                for (int u = 0; u < PV_UNROLL; u++) {
                    const int j = j0 + u * G, p = k_lo + j;
                    v[u] = j < nk ? __half2float(a.vc[((size_t)pt[p / WK_KV_PAGE_TOKENS] * WK_KV_PAGE_TOKENS +
                                                       p % WK_KV_PAGE_TOKENS) * kvd + kvh * hd + d])
                                  : 0.0f;
                }
#pragma unroll
                for (int u = 0; u < PV_UNROLL; u++)
                    if (j0 + u * G < nk) acc = fmaf(sc[j0 + u * G], v[u], acc);
            }
        if (active) pv[g * hd + (d - d0)] = acc;
        __syncthreads();
        if (tid < hd && d0 + tid < hd && tid < ATT_THREADS) {
            const int dd = d0 + tid;
            float o = 0.0f;
            if (G > 1)
                for (int gg = 0; gg < G; gg++) o += pv[gg * hd + tid];
            else
                o = pv[tid];
            if (n_split == 1) {
                const size_t oi = (size_t)r * a.ld + h * hd + dd;
                a.y32[oi] = o * inv;
                a.y16[oi] = __float2half_rn(o * inv);
            } else {
                outp[2 + dd] = o;
            }
        }
        __syncthreads();
    }
    if (n_split > 1 && tid == 0) outp[0] = mx, outp[1] = l;
}

__global__ void attn_merge_kernel(const __grid_constant__ wk_attn_args a, int max_split) {
    const int r = blockIdx.x, h = blockIdx.y;
    int pos, p0;
    row_range(a, r, &pos, &p0);
    const int n_split = pos / WK_ATT_CHUNK - p0 / WK_ATT_CHUNK + 1;
    if (n_split == 1) return;
    const int hd = a.hd;
    const float *part = a.part + ((size_t)r * a.n_head + h) * max_split * (hd + 2);
    float M = -INFINITY;
    for (int s = 0; s < n_split; s++) M = fmaxf(M, part[s * (hd + 2)]);
    float L = 0.0f;
    for (int s = 0; s < n_split; s++) L += part[s * (hd + 2) + 1] * expf(part[s * (hd + 2)] - M);
    for (int d = threadIdx.x; d < hd; d += blockDim.x) {
        float o = 0.0f;
        for (int s = 0; s < n_split; s++) o += part[s * (hd + 2) + 2 + d] * expf(part[s * (hd + 2)] - M);
        const size_t oi = (size_t)r * a.ld + h * hd + d;
        a.y32[oi] = o / L;
        a.y16[oi] = __float2half_rn(o / L);
    }
}

cudaError_t wk_cu_attention(const wk_attn_args &a, int n_rows, int max_split, cudaStream_t st) {
    if (n_rows <= 0) return cudaSuccess;
    const int G = a.hd <= ATT_THREADS ? ATT_THREADS / a.hd : 1;
    const int pv_floats = G > 1 ? G * a.hd : ATT_THREADS;
    const size_t smem = (size_t)(a.hd + WK_ATT_CHUNK + pv_floats) * sizeof(float);
    attn_split_kernel<<<dim3(n_rows, a.n_head, max_split), ATT_THREADS, smem, st>>>(a);
    cudaError_t e = cudaGetLastError();
    if (e != cudaSuccess || max_split == 1) return e;
    attn_merge_kernel<<<dim3(n_rows, a.n_head), 128, 0, st>>>(a, max_split);
    return cudaGetLastError();
}
