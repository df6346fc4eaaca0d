/* kernels.cu — the forward-pass kernels of the CUDA backend and their
 * launchers (declared in kernels.cuh).
 *
 * Decode (one token) is five kernels per layer: four launches of one
 * matrix-vector kernel (mv_kernel), whose input stage can rms-norm the vector
 * and whose epilogue can store, add into the residual, apply SwiGLU, or add
 * biases + rope + write the K/V cache; and the split decode attention.
 * Prefill (many tokens) uses cuBLAS for the matrices (backend-cuda.cu) and the
 * simple row kernels below.
 *
 * Every reduction has a fixed order (warp shuffles in a fixed pattern, then
 * per-warp partials in warp order). The only atomics are counters that pick
 * which block combines split results; the combination itself runs in index
 * order, so results are bitwise reproducible.
 */
#include <math.h>
#include <stdlib.h>

#include <utility>

#include "cuda/kernels.cuh"

// --- programmatic dependent launch ----------------------------------------------------

/* Decode kernels are launched with programmatic stream serialization: a
 * kernel may be scheduled while the one before it still runs. Each waits
 * (griddepcontrol.wait) for its predecessor to finish before touching any
 * data a predecessor reads or writes, then lets its own successor launch.
 * Work done before the wait only reads weights (immutable): the matrix-vector
 * kernel prefetches its first rows into L2 there, which hides the launch and
 * the first DRAM round trip. Both instructions are no-ops in a plain launch. */
__device__ __forceinline__ void pdl_wait() { asm volatile("griddepcontrol.wait;" ::: "memory"); }
__device__ __forceinline__ void pdl_launch() { asm volatile("griddepcontrol.launch_dependents;" ::: "memory"); }

static bool g_pdl = true;
static int g_mv_blocks_per_sm = 2;
static int g_mv_warps_per_sm = 64; /* split rows over warps until about this many per SM have work */
static int g_mv_waves = 1;         /* grid cap, in waves of resident blocks (WK_CUDA_MV_WAVES, measurements) */
/* L1 look-ahead after griddepcontrol.wait (WK_CUDA_EARLY=mask for measurements):
 * 1: mv_kernel prefetches its first unit's weight chunks into L1 before the
 *    input stage (measured slower: off); 2: mv_kernel loads its epilogue
 *    operands (residual, bias, rope) before the dot products; 4: decode
 *    attention prefetches its K/V rows into L1; 8: decode attention loads q
 *    together with the position (measured: no gain, off); 16: mv_kernel
 *    multiplies the rms scale into the finished dot products instead of
 *    into the staged input (no block reduction and rescaling pass between
 *    the input stage and the dot products); 32: mv_kernel's cross-warp sums
 *    alternate between two buffers (one barrier a pass instead of two) */
static int g_early = 2 | 4 | 16 | 32;

template <typename... K, typename... A>
static cudaError_t launch(void (*kernel)(K...), dim3 grid, dim3 block, size_t smem, cudaStream_t st, A &&...args) {
    cudaLaunchConfig_t cfg = {};
    cfg.gridDim = grid;
    cfg.blockDim = block;
    cfg.dynamicSmemBytes = smem;
    cfg.stream = st;
    cudaLaunchAttribute at[1];
    at[0].id = cudaLaunchAttributeProgrammaticStreamSerialization;
    at[0].val.programmaticStreamSerializationAllowed = g_pdl ? 1 : 0;
    cfg.attrs = at;
    cfg.numAttrs = 1;
    cudaError_t e = cudaLaunchKernelEx(&cfg, kernel, std::forward<A>(args)...);
    if (e != cudaSuccess) return e;
    return cudaGetLastError();
}

// --- block reductions -------------------------------------------------------------

__device__ __forceinline__ double warp_sum_d(double v) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

/* Sum over the block; every thread gets the result. red: >= 32 doubles. */
__device__ double block_sum_d(double v, double *red) {
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nw = (blockDim.x + 31) >> 5;
    v = warp_sum_d(v);
    __syncthreads();
    if (lane == 0) red[warp] = v;
    __syncthreads();
    if (warp == 0) {
        double t = lane < nw ? red[lane] : 0.0;
        t = warp_sum_d(t);
        if (lane == 0) red[0] = t;
    }
    __syncthreads();
    return red[0];
}

__device__ float block_sum_f(float v, float *red) {
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nw = (blockDim.x + 31) >> 5;
    v = wk_warp_sum(v);
    __syncthreads();
    if (lane == 0) red[warp] = v;
    __syncthreads();
    if (warp == 0) {
        float t = lane < nw ? red[lane] : 0.0f;
        t = wk_warp_sum(t);
        if (lane == 0) red[0] = t;
    }
    __syncthreads();
    return red[0];
}

__device__ float block_max_f(float v, float *red) {
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nw = (blockDim.x + 31) >> 5;
    v = wk_warp_max(v);
    __syncthreads();
    if (lane == 0) red[warp] = v;
    __syncthreads();
    if (warp == 0) {
        float t = lane < nw ? red[lane] : -INFINITY;
        t = wk_warp_max(t);
        if (lane == 0) red[0] = t;
    }
    __syncthreads();
    return red[0];
}

// --- rope -------------------------------------------------------------------------

/* Pair unit i (0 <= i < head_dim/2) of a head: the two rows it covers and
 * whether they rotate. NORM rotates (2i, 2i+1), NEOX (i, i + rope_dim/2),
 * for i < rope_dim/2; the rest of the head passes through in adjacent pairs. */
__device__ __forceinline__ bool rope_pair(int i, int rope_dim, int neox, int *p0, int *p1) {
    const int half = rope_dim / 2;
    if (i < half) {
        *p0 = neox ? i : 2 * i;
        *p1 = neox ? i + half : 2 * i + 1;
        return true;
    }
    *p0 = rope_dim + 2 * (i - half);
    *p1 = *p0 + 1;
    return false;
}

// --- the decode matrix-vector kernel ------------------------------------------------

/* Dot products of one or two rows of the same type against xs over the
 * 8-element chunks c0, c0+cs, ...: lane l of a warp takes chunk c0 = 32w + l,
 * so a warp's loads cover a contiguous stretch of each row. */
template <int T, bool TWO>
__device__ __forceinline__ void dot_chunks(const uint8_t *r0, const uint8_t *r1, const float *xs, int nC, int c0,
                                           int cs, float &a0, float &a1) {
#pragma unroll 2
    for (int c = c0; c < nC; c += cs) {
        const float4 xa = reinterpret_cast<const float4 *>(xs)[2 * c];
        const float4 xb = reinterpret_cast<const float4 *>(xs)[2 * c + 1];
        const float xv[8] = {xa.x, xa.y, xa.z, xa.w, xb.x, xb.y, xb.z, xb.w};
        a0 += wk_dot8<T>(r0, c, xv);
        if (TWO) a1 += wk_dot8<T>(r1, c, xv);
    }
}

/* Row dot for rows whose length is not a multiple of 8 (float types only):
 * plain layout, lane-strided elements. */
__device__ __forceinline__ float dot_plain(int type, const uint8_t *r, const float *xs, int n, int j0, int js) {
    float a = 0.0f;
    for (int i = j0; i < n; i += js) a = fmaf(wk_deq1(type, r, i), xs[i], a);
    return a;
}

/* a0 = row ra of ma · x, a1 = row rb of mb · x (rb < 0: none), over the
 * 8-element chunks j0, j0+js, ... (elements, for rows not a multiple of 8)
 * (the warp's share when several warps split a row); warp-reduced, valid in
 * every lane. */
__device__ __forceinline__ void dot_pair(const wk_cu_mat &ma, int ra, const wk_cu_mat &mb, int rb,
                                         const float *xs, int n, int j0, int js, float &a0, float &a1) {
    a0 = 0.0f;
    a1 = 0.0f;
    const uint8_t *p0 = ma.w + (size_t)ra * ma.row_bytes;
    const uint8_t *p1 = rb >= 0 ? mb.w + (size_t)rb * mb.row_bytes : nullptr;
    if (n % 8 != 0) {
        a0 = dot_plain(ma.type, p0, xs, n, j0, js);
        if (p1) a1 = dot_plain(mb.type, p1, xs, n, j0, js);
    } else {
        const int nC = n / 8;
        if (p1 && ma.type == mb.type) {
            WK_TYPE_SWITCH(ma.type, dot_chunks<T_, true>(p0, p1, xs, nC, j0, js, a0, a1));
        } else {
            float dummy;
            WK_TYPE_SWITCH(ma.type, dot_chunks<T_, false>(p0, nullptr, xs, nC, j0, js, a0, dummy));
            if (p1) WK_TYPE_SWITCH(mb.type, dot_chunks<T_, false>(p1, nullptr, xs, nC, j0, js, a1, dummy));
        }
    }
    a0 = wk_warp_sum(a0);
    a1 = wk_warp_sum(a1);
}

/* The rows of work unit u: two rows of m[0] (STORE/ADD), gate row u with up
 * row u (SWIGLU), or the rope pair of a Q/K head (two adjacent rows of V). */
__device__ __forceinline__ void unit_rows(const wk_mv_args &a, int u, const wk_cu_mat **ma, const wk_cu_mat **mb,
                                          int *r0, int *r1, int *seg, int *rot_i) {
    *ma = *mb = &a.m[0];
    *seg = 0;
    *rot_i = -1;
    if (a.out_mode == WK_OUT_STORE || a.out_mode == WK_OUT_ADD) {
        *r0 = 2 * u;
        *r1 = 2 * u + 1 < a.m[0].n_rows ? 2 * u + 1 : -1;
    } else if (a.out_mode == WK_OUT_SWIGLU) {
        *r0 = *r1 = u;
        *mb = &a.m[1];
    } else {
        const int hd = a.head_dim, hp = hd / 2;
        const int uq = a.n_head * hp, uk = a.n_head_kv * hp;
        int uu;
        if (u < uq) { *seg = 0; uu = u; }
        else if (u < uq + uk) { *seg = 1; uu = u - uq; }
        else { *seg = 2; uu = u - uq - uk; }
        const int head = uu / hp, i = uu % hp;
        int p0 = 2 * i, p1 = 2 * i + 1;
        if (*seg < 2 && rope_pair(i, a.rope_dim, a.rope_neox, &p0, &p1)) *rot_i = i;
        *r0 = head * hd + p0;
        *r1 = head * hd + p1;
        *ma = *mb = &a.m[*seg];
    }
}

__device__ __forceinline__ void prefetch_row(const wk_cu_mat *m, int r, int k0, int ks) {
    if (r < 0) return;
    const uint8_t *p = m->w + (size_t)r * m->row_bytes;
    const int lines = (int)((m->row_bytes + 127) / 128);
    for (int k = k0; k < lines; k += ks) asm volatile("prefetch.global.L2 [%0];" ::"l"(p + 128 * (size_t)k));
}

__global__ void __launch_bounds__(256) mv_kernel(const __grid_constant__ wk_mv_args a) {
    extern __shared__ float xs[];
    __shared__ double red[32];
    const int n = a.n_in, tid = threadIdx.x, nt = blockDim.x;
    {
        // before the predecessor is done: pull this warp's first rows into L2
        const int w = tid >> 5, u = blockIdx.x * ((nt >> 5) / a.wpu) + w / a.wpu;
        if (u < a.n_units) {
            const wk_cu_mat *ma, *mb;
            int r0, r1, seg, rot;
            unit_rows(a, u, &ma, &mb, &r0, &r1, &seg, &rot);
            const int k0 = (w % a.wpu) * 32 + (tid & 31), ks = 32 * a.wpu;
            prefetch_row(ma, r0, k0, ks);
            prefetch_row(mb, r1, k0, ks);
        }
    }
    pdl_wait();
    pdl_launch();
    int pos = 0;
    if (a.out_mode == WK_OUT_QKV) pos = *a.d_pos;
    const int nC8 = n / 8;
    if ((a.early & 1) && n % 8 == 0) {
        /* this lane's chunks of its first unit into L1 while x is staged
         * (the rows are in L2 already: prefetched above). Measured 7-12%
         * slower, also with one prefetch per line: off by default */
        const int w = tid >> 5, u = blockIdx.x * ((nt >> 5) / a.wpu) + w / a.wpu;
        if (u < a.n_units) {
            const wk_cu_mat *ma, *mb;
            int r0, r1, seg, rot;
            unit_rows(a, u, &ma, &mb, &r0, &r1, &seg, &rot);
            const uint8_t *p0 = ma->w + (size_t)r0 * ma->row_bytes;
            const uint8_t *p1 = r1 >= 0 ? mb->w + (size_t)r1 * mb->row_bytes : nullptr;
            for (int c = (w % a.wpu) * 32 + (tid & 31); c < nC8; c += 32 * a.wpu) {
                asm volatile("prefetch.global.L1 [%0];" ::"l"(p0 + (size_t)c * ma->row_bytes / nC8));
                if (p1) asm volatile("prefetch.global.L1 [%0];" ::"l"(p1 + (size_t)c * mb->row_bytes / nC8));
            }
        }
    }

    // input stage: xs = the input vector, times the norm weights for IN_NORM.
    // x and the norm weights are loaded together (one round trip). The rms
    // scale multiplies the finished dot products (early & 16: the warps' sums
    // of squares only need the barrier that ends the stage), or, without 16,
    // is applied to the entries each thread wrote after a block reduction.
    const bool norm = a.in_mode == WK_IN_NORM;
    double ss = 0.0;
    if (n % 4 == 0) {
        const float4 *in4 = reinterpret_cast<const float4 *>(a.in);
        const float4 *w4 = reinterpret_cast<const float4 *>(a.norm_w);
        for (int i4 = tid; i4 < n / 4; i4 += nt) {
            const float4 v = in4[i4];
            const float4 w = norm ? w4[i4] : make_float4(1.0f, 1.0f, 1.0f, 1.0f);
            const float vv[4] = {v.x, v.y, v.z, v.w}, ww[4] = {w.x, w.y, w.z, w.w};
#pragma unroll
            for (int k = 0; k < 4; k++) {
                const int i = 4 * i4 + k;
                ss += (double)vv[k] * vv[k];
                xs[i] = vv[k] * ww[k];
            }
        }
    } else {
        for (int i = tid; i < n; i += nt) {
            const float v = a.in[i];
            ss += (double)v * v;
            xs[i] = norm ? v * a.norm_w[i] : v;
        }
    }
    const bool late_scale = norm && (a.early & 16);
    if (late_scale) {
        ss = warp_sum_d(ss); // the warps' sums, added in warp order after the barrier below
        if ((tid & 31) == 0) red[tid >> 5] = ss;
    } else if (norm) {
        ss = block_sum_d(ss, red);
        const float scale = (float)(1.0 / sqrt(ss / n + (double)a.eps));
        for (int i = tid * (n % 4 == 0 ? 4 : 1); i < n;) {
            const int kmax = n % 4 == 0 ? 4 : 1;
            for (int k = 0; k < kmax; k++) {
                const int j = i + k;
                float *p = &xs[j];
                *p = *p * scale;
            }
            i += nt * kmax;
        }
    }
    __syncthreads();
    float rscale = 1.0f;
    if (late_scale) {
        double t = 0.0;
        for (int k = 0; k < (nt >> 5); k++) t += red[k];
        rscale = (float)(1.0 / sqrt(t / n + (double)a.eps));
    }

    /* wpu warps share a unit (warp `sub` takes the 8-element chunks
     * 32*sub + lane + 32*wpu*k of the row), their sums added in warp order
     * through shared memory */
    const int lane = tid & 31, warp = tid >> 5, wpb = nt >> 5, wpu = a.wpu, upb = wpb / wpu;
    const int lu = warp / wpu, sub = warp % wpu;
    /* two buffers of the warps' partial sums, alternating by pass: with 32 in
     * `early`, a pass writes the buffer the previous pass did not read, so one
     * barrier a pass suffices */
    __shared__ float part[2][2][32];
    int pass = 0;
    for (int base = blockIdx.x * upb; base < a.n_units; base += gridDim.x * upb, pass++) {
        const int u = base + lu;
        const bool valid = u < a.n_units;
        int seg = 0, r0 = 0, r1 = -1, rot_i = -1;
        const wk_cu_mat *ma, *mb;
        unit_rows(a, valid ? u : 0, &ma, &mb, &r0, &r1, &seg, &rot_i);
        float a0 = 0.0f, a1 = 0.0f;
        /* the epilogue's operands, in flight during the dot products */
        float e0 = 0.0f, e1 = 0.0f;
        float2 cs = make_float2(1.0f, 0.0f);
        const bool early = (a.early & 2) && valid && sub == 0 && lane == 0;
        if (early) {
            if (a.out_mode == WK_OUT_ADD) {
                e0 = a.y[r0];
                if (r1 >= 0) e1 = a.y[r1];
            } else if (a.out_mode == WK_OUT_STORE) {
                if (a.bias[0]) {
                    e0 = a.bias[0][r0];
                    if (r1 >= 0) e1 = a.bias[0][r1];
                }
            } else if (a.out_mode == WK_OUT_QKV) {
                if (a.bias[seg]) {
                    e0 = a.bias[seg][r0];
                    e1 = a.bias[seg][r1];
                }
                if (rot_i >= 0) cs = a.rope_cs[(size_t)pos * (a.rope_dim / 2) + rot_i];
            }
        }
        if (valid) dot_pair(*ma, r0, *mb, r1, xs, n, sub * 32 + lane, 32 * wpu, a0, a1);
        if (wpu > 1) {
            float(*pp)[32] = part[(a.early & 32) ? pass & 1 : 0];
            if (lane == 0) {
                pp[0][warp] = a0;
                pp[1][warp] = a1;
            }
            __syncthreads();
            if (sub == 0) {
                a0 = 0.0f;
                a1 = 0.0f;
                for (int k = 0; k < wpu; k++) {
                    a0 += pp[0][warp + k];
                    a1 += pp[1][warp + k];
                }
            }
            if (!(a.early & 32)) __syncthreads();
        }
        if (!valid || sub != 0 || lane != 0) continue;
        a0 *= rscale;
        a1 *= rscale;
        if (a.out_mode == WK_OUT_ADD) {
            if (early) {
                a.y[r0] = e0 + a0;
                if (r1 >= 0) a.y[r1] = e1 + a1;
            } else {
                a.y[r0] += a0;
                if (r1 >= 0) a.y[r1] += a1;
            }
        } else if (a.out_mode == WK_OUT_STORE) {
            if (early) {
                a.y[r0] = a0 + e0;
                if (r1 >= 0) a.y[r1] = a1 + e1;
            } else {
                a.y[r0] = a0 + (a.bias[0] ? a.bias[0][r0] : 0.0f);
                if (r1 >= 0) a.y[r1] = a1 + (a.bias[0] ? a.bias[0][r1] : 0.0f);
            }
        } else if (a.out_mode == WK_OUT_SWIGLU) {
            a.y[u] = a0 / (1.0f + expf(-a0)) * a1;
        } else {
            if (early) {
                if (a.bias[seg]) {
                    a0 += e0;
                    a1 += e1;
                }
            } else if (a.bias[seg]) {
                a0 += a.bias[seg][r0];
                a1 += a.bias[seg][r1];
            }
            if (rot_i >= 0) {
                if (!early) cs = a.rope_cs[(size_t)pos * (a.rope_dim / 2) + rot_i];
                float x0 = a0, x1 = a1;
                a0 = x0 * cs.x - x1 * cs.y;
                a1 = x0 * cs.y + x1 * cs.x;
            }
            if (seg == 0) {
                a.y[r0] = a0;
                a.y[r1] = a1;
            } else {
                const size_t kvd = (size_t)a.n_head_kv * a.head_dim;
                __half *c = seg == 1 ? a.k_cache : a.v_cache;
                c[(size_t)pos * kvd + r0] = __float2half(a0);
                c[(size_t)pos * kvd + r1] = __float2half(a1);
            }
        }
    }
}

/* 256 threads a block; enough warps per unit that ~64 warps per SM have
 * work (measured best, NOTES.md), so that small matrices still spread over
 * the whole chip; at most one wave of blocks. */
cudaError_t wk_cu_matvec(const wk_mv_args &a_in, int n_sm, cudaStream_t st) {
    wk_mv_args a = a_in;
    a.early = g_early;
    const int wpb = 8;
    const int nC = a.n_in % 8 == 0 ? a.n_in / 8 : a.n_in; /* what a lane steps over */
    int wpu = 1;
    while (wpu < wpb && (long)a.n_units * wpu < (long)g_mv_warps_per_sm * n_sm && nC > 32 * wpu) wpu *= 2;
    a.wpu = wpu;
    const int upb = wpb / wpu;
    int blocks = wk_cdiv(a.n_units, upb);
    /* one wave: the input stage runs once per block (2 or 3 waves measured slower) */
    const int max_blocks = n_sm * g_mv_blocks_per_sm * g_mv_waves;
    if (blocks > max_blocks) blocks = max_blocks;
    const size_t smem = (size_t)a.n_in * sizeof(float);
    return launch(mv_kernel, dim3(blocks), dim3(wpb * 32), smem, st, a);
}

// --- decode attention --------------------------------------------------------------

/* Block (head h, split s) over keys [s*CHUNK, min(L, (s+1)*CHUNK)): one
 * thread per key for the scores (16-byte loads of the f16 row), then the
 * threads split into groups that each sum p·V over a strided subset of the
 * keys for 8 dimensions, reduced in group order. The partial {m, l, o/l}
 * goes to part; the last block of a head to finish (a counter, which only
 * counts: the combination below runs in split order whatever finished last)
 * combines the splits into out and resets the counter for the next step. */
__global__ void __launch_bounds__(WK_CU_ATT_THREADS)
    attn_decode_kernel(const float *q, const __half *kc, const __half *vc, const int *d_pos, int n_head,
                       int n_head_kv, int hd, int max_split, float *part, float *out, unsigned *counters,
                       int early) {
    __shared__ float qs[WK_CU_MAX_HEAD_DIM];
    __shared__ float sc[WK_CU_ATT_CHUNK];
    __shared__ float red[32];
    __shared__ float acc[WK_CU_ATT_THREADS * 8];
    __shared__ bool last;
    pdl_wait();
    pdl_launch();
    const int h = blockIdx.x, s = blockIdx.y, tid = threadIdx.x;
    // q loaded together with the position (one round trip for both; early & 8,
    // measured no faster: off by default)
    constexpr int QV = (WK_CU_MAX_HEAD_DIM + WK_CU_ATT_THREADS - 1) / WK_CU_ATT_THREADS;
    float qv[QV];
    if (early & 8) {
#pragma unroll
        for (int k = 0; k < QV; k++) {
            const int d = tid + k * WK_CU_ATT_THREADS;
            qv[k] = d < hd ? q[(size_t)h * hd + d] : 0.0f;
        }
    }
    const int L = *d_pos + 1, ns = (L + WK_CU_ATT_CHUNK - 1) / WK_CU_ATT_CHUNK;
    if (s >= ns) return;
    const int t0 = s * WK_CU_ATT_CHUNK, nk = min(WK_CU_ATT_CHUNK, L - t0);
    const int kvh = h / (n_head / n_head_kv), hd8 = hd / 8;
    const size_t kvd = (size_t)n_head_kv * hd;
    const float scale = 1.0f / sqrtf((float)hd);
    if (early & 4) {
        /* this block's K and V rows into L1 while q arrives: the score and
         * p·V loads below then hit L1 instead of each waiting on L2 */
        for (int t = tid; t < nk; t += blockDim.x) {
            const char *kr = reinterpret_cast<const char *>(kc + (size_t)(t0 + t) * kvd + (size_t)kvh * hd);
            const char *vr = reinterpret_cast<const char *>(vc + (size_t)(t0 + t) * kvd + (size_t)kvh * hd);
            for (int off = 0; off < 2 * hd; off += 128) {
                asm volatile("prefetch.global.L1 [%0];" ::"l"(kr + off));
                asm volatile("prefetch.global.L1 [%0];" ::"l"(vr + off));
            }
        }
    }
    if (early & 8) {
#pragma unroll
        for (int k = 0; k < QV; k++) {
            const int d = tid + k * WK_CU_ATT_THREADS;
            if (d < hd) qs[d] = qv[k];
        }
    } else {
        for (int d = tid; d < hd; d += blockDim.x) qs[d] = q[(size_t)h * hd + d];
    }
    __syncthreads();
    for (int t = tid; t < nk; t += blockDim.x) {
        const uint4 *kr = reinterpret_cast<const uint4 *>(kc + (size_t)(t0 + t) * kvd + (size_t)kvh * hd);
        float a = 0.0f;
#pragma unroll 8
        for (int c = 0; c < hd8; c++) {
            uint4 u = kr[c];
            const __half2 *h2 = reinterpret_cast<const __half2 *>(&u);
#pragma unroll
            for (int k = 0; k < 4; k++) {
                float2 f = __half22float2(h2[k]);
                a = fmaf(qs[8 * c + 2 * k], f.x, a);
                a = fmaf(qs[8 * c + 2 * k + 1], f.y, a);
            }
        }
        sc[t] = a * scale;
    }
    __syncthreads();
    float mx = -INFINITY;
    for (int t = tid; t < nk; t += blockDim.x) mx = fmaxf(mx, sc[t]);
    mx = block_max_f(mx, red);
    float sum = 0.0f;
    for (int t = tid; t < nk; t += blockDim.x) {
        float p = expf(sc[t] - mx);
        sc[t] = p;
        sum += p;
    }
    sum = block_sum_f(sum, red); // ends with a barrier: sc is complete
    const int G = blockDim.x / hd8, g = tid / hd8, c = tid % hd8;
    float o[8];
#pragma unroll
    for (int e = 0; e < 8; e++) o[e] = 0.0f;
    if (g < G) {
        const __half *vb = vc + (size_t)t0 * kvd + (size_t)kvh * hd + 8 * c;
#pragma unroll 4
        for (int t = g; t < nk; t += G) {
            uint4 u = *reinterpret_cast<const uint4 *>(vb + (size_t)t * kvd);
            const __half2 *h2 = reinterpret_cast<const __half2 *>(&u);
            const float p = sc[t];
#pragma unroll
            for (int k = 0; k < 4; k++) {
                float2 f = __half22float2(h2[k]);
                o[2 * k] = fmaf(p, f.x, o[2 * k]);
                o[2 * k + 1] = fmaf(p, f.y, o[2 * k + 1]);
            }
        }
#pragma unroll
        for (int e = 0; e < 8; e++) acc[(g * hd8 + c) * 8 + e] = o[e];
    }
    __syncthreads();
    if (ns == 1) { // one split: no partials to combine
        for (int d = tid; d < hd; d += blockDim.x) {
            float r = 0.0f;
            for (int gg = 0; gg < G; gg++) r += acc[(gg * hd8 + d / 8) * 8 + d % 8];
            out[(size_t)h * hd + d] = r / sum;
        }
        return;
    }
    float *pp = part + ((size_t)h * max_split + s) * (hd + 2);
    for (int d = tid; d < hd; d += blockDim.x) {
        float r = 0.0f;
        for (int gg = 0; gg < G; gg++) r += acc[(gg * hd8 + d / 8) * 8 + d % 8];
        pp[2 + d] = r / sum;
    }
    if (tid == 0) {
        pp[0] = mx;
        pp[1] = sum;
    }
    // the last block of this head combines the splits
    __threadfence();
    __syncthreads();
    if (tid == 0) last = atomicAdd(&counters[h], 1u) == (unsigned)(ns - 1);
    __syncthreads();
    if (!last) return;
    __threadfence();
    const float *base = part + (size_t)h * max_split * (hd + 2);
    for (int d = tid; d < hd; d += blockDim.x) {
        float M = -INFINITY;
        for (int k = 0; k < ns; k++) M = fmaxf(M, __ldcg(base + (size_t)k * (hd + 2)));
        float num = 0.0f, den = 0.0f;
        for (int k = 0; k < ns; k++) {
            const float *p = base + (size_t)k * (hd + 2);
            float w = __ldcg(p + 1) * expf(__ldcg(p) - M);
            den += w;
            num += w * __ldcg(p + 2 + d);
        }
        out[(size_t)h * hd + d] = num / den;
    }
    if (tid == 0) counters[h] = 0;
}

cudaError_t wk_cu_attn_decode(const float *q, const __half *kc, const __half *vc, const int *d_pos, int n_head,
                              int n_head_kv, int head_dim, int max_split, float *part, float *out,
                              unsigned *counters, cudaStream_t st) {
    return launch(attn_decode_kernel, dim3(n_head, max_split), dim3(WK_CU_ATT_THREADS), 0, st, q, kc, vc, d_pos,
                  n_head, n_head_kv, head_dim, max_split, part, out, counters, g_early);
}

// --- row kernels -------------------------------------------------------------------

__global__ void embed_kernel(wk_cu_mat m, int n_embd, const int32_t *tok, float *x) {
    pdl_wait();
    pdl_launch();
    const int r = blockIdx.x;
    const uint8_t *row = m.w + (size_t)tok[r] * m.row_bytes;
    float *out = x + (size_t)r * n_embd;
    if (n_embd % 32 == 0) {
        for (int j = threadIdx.x; j < n_embd / 32; j += blockDim.x) {
            float v[32];
            WK_TYPE_SWITCH(m.type, wk_deq32<T_>(row, j, v));
#pragma unroll
            for (int e = 0; e < 32; e++) out[32 * j + e] = v[e];
        }
    } else {
        for (int i = threadIdx.x; i < n_embd; i += blockDim.x) out[i] = wk_deq1(m.type, row, i);
    }
}

cudaError_t wk_cu_embed(const wk_cu_mat &embd, int n_embd, const int32_t *tok, int n, float *x, cudaStream_t st) {
    embed_kernel<<<n, 128, 0, st>>>(embd, n_embd, tok, x);
    return cudaGetLastError();
}

__global__ void rmsnorm_kernel(const float *x, const float *w, int n, float eps, float *y, __half *y16) {
    __shared__ double red[32];
    pdl_wait();
    pdl_launch();
    const float *xr = x + (size_t)blockIdx.x * n;
    double ss = 0.0;
    for (int i = threadIdx.x; i < n; i += blockDim.x) ss += (double)xr[i] * xr[i];
    ss = block_sum_d(ss, red);
    const float scale = (float)(1.0 / sqrt(ss / n + (double)eps));
    for (int i = threadIdx.x; i < n; i += blockDim.x) {
        float v = xr[i] * scale * w[i];
        y[(size_t)blockIdx.x * n + i] = v;
        if (y16) y16[(size_t)blockIdx.x * n + i] = __float2half(v);
    }
}

cudaError_t wk_cu_rmsnorm(const float *x, const float *w, int n, int n_embd, float eps, float *y, __half *y16,
                          cudaStream_t st) {
    rmsnorm_kernel<<<n, 256, 0, st>>>(x, w, n_embd, eps, y, y16);
    return cudaGetLastError();
}

__global__ void dequant_f16_kernel(wk_cu_mat m, int n_in, int row0, int n_rows, __half *out) {
    const size_t stride = (size_t)gridDim.x * blockDim.x;
    if (n_in % 32 == 0) {
        const int nU = n_in / 32;
        const size_t total = (size_t)n_rows * nU;
        for (size_t t = blockIdx.x * (size_t)blockDim.x + threadIdx.x; t < total; t += stride) {
            const int r = (int)(t / nU), j = (int)(t % nU);
            const uint8_t *row = m.w + (size_t)(row0 + r) * m.row_bytes;
            float v[32];
            WK_TYPE_SWITCH(m.type, wk_deq32<T_>(row, j, v));
            __half2 *o = reinterpret_cast<__half2 *>(out + (size_t)r * n_in + 32 * j);
#pragma unroll
            for (int e = 0; e < 16; e++) o[e] = __floats2half2_rn(v[2 * e], v[2 * e + 1]);
        }
    } else {
        const size_t total = (size_t)n_rows * n_in;
        for (size_t t = blockIdx.x * (size_t)blockDim.x + threadIdx.x; t < total; t += stride) {
            const int r = (int)(t / n_in), i = (int)(t % n_in);
            out[t] = __float2half(wk_deq1(m.type, m.w + (size_t)(row0 + r) * m.row_bytes, i));
        }
    }
}

cudaError_t wk_cu_dequant_f16(const wk_cu_mat &m, int n_in, int row0, int n_rows, __half *out, cudaStream_t st) {
    dequant_f16_kernel<<<1024, 256, 0, st>>>(m, n_in, row0, n_rows, out);
    return cudaGetLastError();
}

__global__ void to_f16_kernel(const float *x, size_t n, __half *y) {
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x)
        y[i] = __float2half(x[i]);
}

cudaError_t wk_cu_to_f16(const float *x, size_t n, __half *y, cudaStream_t st) {
    int blocks = (int)((n + 255) / 256);
    if (blocks > 4096) blocks = 4096;
    to_f16_kernel<<<blocks, 256, 0, st>>>(x, n, y);
    return cudaGetLastError();
}

__global__ void qkv_post_kernel(float *q, const float *k, const float *v, const float *bq, const float *bk,
                                const float *bv, const float2 *rope_cs, int pos0, int n_head, int n_head_kv,
                                int hd, int rope_dim, int neox, __half *kc, __half *vc) {
    const int t = blockIdx.x, pos = pos0 + t, hp = hd / 2;
    const int qd = n_head * hd, kvd = n_head_kv * hd;
    const int uq = n_head * hp, uk = n_head_kv * hp;
    for (int u = threadIdx.x; u < uq + uk; u += blockDim.x) {
        const bool isq = u < uq;
        const int uu = isq ? u : u - uq, head = uu / hp, i = uu % hp;
        int p0, p1;
        const bool rot = rope_pair(i, rope_dim, neox, &p0, &p1);
        const int r0 = head * hd + p0, r1 = head * hd + p1;
        const float *src = isq ? q + (size_t)t * qd : k + (size_t)t * kvd;
        const float *b = isq ? bq : bk;
        float a0 = src[r0], a1 = src[r1];
        if (b) {
            a0 += b[r0];
            a1 += b[r1];
        }
        if (rot) {
            float2 cs = rope_cs[(size_t)pos * (rope_dim / 2) + i];
            float x0 = a0, x1 = a1;
            a0 = x0 * cs.x - x1 * cs.y;
            a1 = x0 * cs.y + x1 * cs.x;
        }
        if (isq) {
            q[(size_t)t * qd + r0] = a0;
            q[(size_t)t * qd + r1] = a1;
        } else {
            kc[(size_t)pos * kvd + r0] = __float2half(a0);
            kc[(size_t)pos * kvd + r1] = __float2half(a1);
        }
    }
    for (int r = threadIdx.x; r < kvd; r += blockDim.x) {
        float a = v[(size_t)t * kvd + r] + (bv ? bv[r] : 0.0f);
        vc[(size_t)pos * kvd + r] = __float2half(a);
    }
}

cudaError_t wk_cu_qkv_post(float *q, const float *k, const float *v, const float *bq, const float *bk,
                           const float *bv, const float2 *rope_cs, int n, int pos0, int n_head, int n_head_kv,
                           int head_dim, int rope_dim, int rope_neox, __half *kc, __half *vc, cudaStream_t st) {
    qkv_post_kernel<<<n, 256, 0, st>>>(q, k, v, bq, bk, bv, rope_cs, pos0, n_head, n_head_kv, head_dim, rope_dim,
                                       rope_neox, kc, vc);
    return cudaGetLastError();
}

/* Prefill attention: block = (head, 8 queries), one warp per query; K/V
 * tiles of 32 keys staged in shared memory (f32, rows padded by one word),
 * online softmax in fp32. No n×n matrix anywhere. */
#define PF_Q 8
#define PF_K 32
__global__ void __launch_bounds__(PF_Q * 32)
    attn_prefill_kernel(const float *q, const __half *kc, const __half *vc, int n, int pos0, int n_head,
                        int n_head_kv, int hd, float *out) {
    extern __shared__ float sm[];
    float *Ks = sm, *Vs = sm + PF_K * (hd + 1), *Qs = sm + 2 * PF_K * (hd + 1);
    const int h = blockIdx.x, qi0 = blockIdx.y * PF_Q;
    const int tid = threadIdx.x, lane = tid & 31, w = tid >> 5;
    const int i = qi0 + w;
    const bool valid = i < n;
    const int pos_q = pos0 + i;
    const int last_key = pos0 + min(n - 1, qi0 + PF_Q - 1);
    const int kvh = h / (n_head / n_head_kv);
    const size_t kvd = (size_t)n_head_kv * hd, qd = (size_t)n_head * hd;
    const float scale = 1.0f / sqrtf((float)hd);
    for (int d = lane; d < hd; d += 32) Qs[w * hd + d] = valid ? q[(size_t)i * qd + (size_t)h * hd + d] : 0.0f;
    float m = -INFINITY, l = 0.0f;
    float o[WK_CU_MAX_HEAD_DIM / 32];
#pragma unroll
    for (int k = 0; k < WK_CU_MAX_HEAD_DIM / 32; k++) o[k] = 0.0f;
    for (int kt = 0; kt <= last_key; kt += PF_K) {
        __syncthreads();
        for (int idx = tid; idx < PF_K * hd; idx += blockDim.x) {
            const int j = idx / hd, d = idx % hd, t = kt + j;
            float kv = 0.0f, vv = 0.0f;
            if (t <= last_key) {
                kv = __half2float(kc[(size_t)t * kvd + (size_t)kvh * hd + d]);
                vv = __half2float(vc[(size_t)t * kvd + (size_t)kvh * hd + d]);
            }
            Ks[j * (hd + 1) + d] = kv;
            Vs[j * (hd + 1) + d] = vv;
        }
        __syncthreads();
        if (!valid || kt > pos_q) continue;
        const int t = kt + lane;
        float s = -INFINITY;
        if (t <= pos_q) {
            float acc = 0.0f;
            for (int d = 0; d < hd; d++) acc = fmaf(Qs[w * hd + d], Ks[lane * (hd + 1) + d], acc);
            s = acc * scale;
        }
        const float m_new = fmaxf(m, wk_warp_max(s));
        const float p = t <= pos_q ? expf(s - m_new) : 0.0f;
        const float corr = expf(m - m_new);
        l = l * corr + wk_warp_sum(p);
#pragma unroll
        for (int k = 0; k < WK_CU_MAX_HEAD_DIM / 32; k++) o[k] *= corr;
        const int jmax = min(PF_K, pos_q - kt + 1);
        for (int j = 0; j < jmax; j++) {
            const float pj = __shfl_sync(0xffffffffu, p, j);
#pragma unroll
            for (int k = 0; k < WK_CU_MAX_HEAD_DIM / 32; k++) {
                const int d = lane + 32 * k;
                if (d < hd) o[k] = fmaf(pj, Vs[j * (hd + 1) + d], o[k]);
            }
        }
        m = m_new;
    }
    if (valid) {
#pragma unroll
        for (int k = 0; k < WK_CU_MAX_HEAD_DIM / 32; k++) {
            const int d = lane + 32 * k;
            if (d < hd) out[(size_t)i * qd + (size_t)h * hd + d] = o[k] / l;
        }
    }
}

static size_t attn_prefill_smem(int hd) { return (size_t)(2 * PF_K * (hd + 1) + PF_Q * hd) * sizeof(float); }

cudaError_t wk_cu_attn_prefill(const float *q, const __half *kc, const __half *vc, int n, int pos0, int n_head,
                               int n_head_kv, int head_dim, float *out, cudaStream_t st) {
    dim3 grid(n_head, wk_cdiv(n, PF_Q));
    attn_prefill_kernel<<<grid, PF_Q * 32, attn_prefill_smem(head_dim), st>>>(q, kc, vc, n, pos0, n_head,
                                                                               n_head_kv, head_dim, out);
    return cudaGetLastError();
}

__global__ void swiglu_kernel(const float *g, const float *u, size_t n, float *act, __half *act16) {
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) {
        float gv = g[i];
        float v = gv / (1.0f + expf(-gv)) * u[i];
        act[i] = v;
        if (act16) act16[i] = __float2half(v);
    }
}

cudaError_t wk_cu_swiglu(const float *g, const float *u, size_t n, float *act, __half *act16, cudaStream_t st) {
    int blocks = (int)((n + 255) / 256);
    if (blocks > 4096) blocks = 4096;
    swiglu_kernel<<<blocks, 256, 0, st>>>(g, u, n, act, act16);
    return cudaGetLastError();
}

__global__ void add_kernel(float *x, const float *y, size_t n) {
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x)
        x[i] += y[i];
}

cudaError_t wk_cu_add(float *x, const float *y, size_t n, cudaStream_t st) {
    int blocks = (int)((n + 255) / 256);
    if (blocks > 4096) blocks = 4096;
    add_kernel<<<blocks, 256, 0, st>>>(x, y, n);
    return cudaGetLastError();
}

/* Raise the dynamic shared-memory limits for the largest shapes of the model. */
cudaError_t wk_cu_kernels_init(int max_n_in, int head_dim, bool pdl) {
    g_pdl = pdl;
    cudaError_t e = cudaFuncSetAttribute(mv_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                         (int)((size_t)max_n_in * sizeof(float)));
    if (e != cudaSuccess) return e;
    int nb = 0;
    e = cudaOccupancyMaxActiveBlocksPerMultiprocessor(&nb, mv_kernel, 256, (size_t)max_n_in * sizeof(float));
    if (e != cudaSuccess) return e;
    g_mv_blocks_per_sm = nb > 0 ? nb : 1;
    /* tuning knob, for measurements only (cuda/NOTES.md) */
    const char *env = getenv("WK_CUDA_MV_WARPS");
    if (env && atoi(env) > 0) g_mv_warps_per_sm = atoi(env);
    env = getenv("WK_CUDA_EARLY");
    if (env) g_early = atoi(env);
    env = getenv("WK_CUDA_MV_WAVES");
    if (env && atoi(env) > 0) g_mv_waves = atoi(env);
    return cudaFuncSetAttribute(attn_prefill_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                (int)attn_prefill_smem(head_dim));
}
