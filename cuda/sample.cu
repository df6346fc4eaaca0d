/* sample.cu — the sampler on the GPU, mirroring worker/sample.c step by step
 * (see core/sample.h): repetition penalty, greedy argmax (ties to the lower
 * id), temperature, top-k, softmax (weights in double, relative to the max),
 * top-p, min-p, renormalization and the draw u = wk_rng_u01(seed, step) over
 * the order (value descending, id ascending); logprob and top-N from the
 * log-softmax of the raw logits.
 *
 * The order is made by a stable radix sort (cub) of 32-bit keys whose
 * ascending order is the value's descending order, over ids in ascending
 * order, so ties fall to the lower id as on the CPU. Sums are in double with
 * a fixed order; the only differences from the CPU are the association of
 * those double sums (about 1e-16 relative).
 */
#include <cub/cub.cuh>
#include <math.h>

#include "cuda/ops.cuh"
#include "core/rng.h"

#define RED_THREADS 256
#define SEL_THREADS 1024

struct red_part {
    float zbest;   /* best penalized value of the block */
    int32_t zarg;  /* its id */
    float rmax;    /* max raw logit (NaN -> -inf) */
    double rsum;   /* sum exp(raw - rmax), double */
};

__device__ __forceinline__ uint32_t fkey_d(float f) {
    if (f == 0.0f) f = 0.0f;
    uint32_t u = __float_as_uint(f);
    u = (u & 0x80000000u) ? ~u : (u | 0x80000000u);
    return ~u;
}

__device__ __forceinline__ float clean(float v) { return v == v ? v : -INFINITY; }

#define al256 wk_al256

static int red_blocks(int n) {
    int b = (n + 1023) / 1024;
    return b < 1 ? 1 : (b > 256 ? 256 : b);
}

static size_t cub_bytes(int n) {
    size_t bytes = 0;
    cub::DoubleBuffer<uint32_t> dk(nullptr, nullptr);
    cub::DoubleBuffer<int32_t> dv(nullptr, nullptr);
    cub::DeviceRadixSort::SortPairs(nullptr, bytes, dk, dv, n);
    return bytes;
}

size_t wk_cu_sampler_bytes(int n_vocab, int hist_cap) {
    size_t n = (size_t)n_vocab;
    return al256(n * 4) + 4 * al256(n * 4) + al256((n + 1) * 8) + al256(n / 8 + 1) + al256((size_t)hist_cap * 4) +
           al256((size_t)red_blocks(n_vocab) * sizeof(red_part)) + al256(cub_bytes(n_vocab)) + 256 +
           al256(sizeof(wk_cu_sample_res));
}

void wk_cu_sampler_init(wk_cu_sampler *s, int n_vocab, int hist_cap, uint8_t *mem) {
    size_t n = (size_t)n_vocab;
    s->n_vocab = n_vocab;
    s->n_red = red_blocks(n_vocab);
    s->hist_cap = hist_cap;
    s->z = (float *)mem; mem += al256(n * 4);
    s->keys[0] = (uint32_t *)mem; mem += al256(n * 4);
    s->keys[1] = (uint32_t *)mem; mem += al256(n * 4);
    s->ids[0] = (int32_t *)mem; mem += al256(n * 4);
    s->ids[1] = (int32_t *)mem; mem += al256(n * 4);
    s->w = (double *)mem; mem += al256((n + 1) * 8);
    s->seen = mem; mem += al256(n / 8 + 1);
    s->hist = (int32_t *)mem; mem += al256((size_t)hist_cap * 4);
    s->red = mem; mem += al256((size_t)s->n_red * sizeof(red_part));
    s->counter = (unsigned *)mem; mem += 256;
    s->cub_bytes = cub_bytes(n_vocab);
    s->cub_tmp = mem; mem += al256(s->cub_bytes);
    s->res = (wk_cu_sample_res *)mem;
}

// --- kernels -------------------------------------------------------------------------

__global__ void clean_kernel(const float *logits, int n, float *z, uint8_t *seen) {
    for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += gridDim.x * blockDim.x) {
        z[i] = clean(logits[i]);
        if (i <= n / 8) seen[i] = 0;
    }
}

/* Sequential on purpose: each distinct id of the window once, in order. */
__global__ void penalty_kernel(float *z, uint8_t *seen, int n, const int32_t *hist, int n_hist, float pen) {
    for (int j = 0; j < n_hist; j++) {
        int id = hist[j];
        if (id < 0 || id >= n) continue;
        uint8_t bit = (uint8_t)(1u << (id & 7));
        if (seen[id >> 3] & bit) continue;
        seen[id >> 3] |= bit;
        z[id] = z[id] > 0.0f ? z[id] / pen : z[id] * pen;
    }
}

__device__ __forceinline__ void argmax_merge(float &v, int &i, float v2, int i2) {
    if (v2 > v || (v2 == v && i2 < i)) { v = v2; i = i2; }
}

/* Fixed-order warp reductions. */
__device__ __forceinline__ void warp_argmax(float &v, int &i) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) argmax_merge(v, i, __shfl_xor_sync(0xffffffffu, v, o), __shfl_xor_sync(0xffffffffu, i, o));
}
__device__ __forceinline__ double warp_sumd(double v) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

/* Per block over a contiguous range: argmax of zsrc (the greedy choice), max
 * of the raw logits and sum exp(raw - max) in double. The last block to
 * finish (the counter only counts) combines the blocks in index order:
 * res->token = res->argmax, res->lse; with `finalize` also the logprob of
 * the token (the whole greedy step in one kernel). */
__global__ void __launch_bounds__(RED_THREADS)
    reduce_kernel(const float *zsrc, const float *raw, int n, red_part *part, unsigned *counter, int finalize,
                  wk_cu_sample_res *res) {
    __shared__ float sv[32];
    __shared__ int si[32];
    __shared__ double sd[32];
    __shared__ bool last;
    const int chunk = (n + gridDim.x - 1) / gridDim.x;
    const int b0 = blockIdx.x * chunk, b1 = min(n, b0 + chunk), tid = threadIdx.x;
    const int lane = tid & 31, warp = tid >> 5, nw = blockDim.x >> 5;
    float bv = -INFINITY, rm = -INFINITY;
    int bi = n;
    for (int i = b0 + tid; i < b1; i += blockDim.x) {
        argmax_merge(bv, bi, clean(zsrc[i]), i);
        rm = fmaxf(rm, clean(raw[i]));
    }
    warp_argmax(bv, bi);
    rm = wk_warp_max(rm);
    if (lane == 0) { sv[warp] = bv; si[warp] = bi; sd[warp] = rm; }
    __syncthreads();
    if (warp == 0) {
        float v = lane < nw ? sv[lane] : -INFINITY, m = lane < nw ? (float)sd[lane] : -INFINITY;
        int i = lane < nw ? si[lane] : n;
        warp_argmax(v, i);
        m = wk_warp_max(m);
        if (lane == 0) { sv[0] = v; si[0] = i; sd[0] = m; }
    }
    __syncthreads();
    const float zb = sv[0], M = (float)sd[0];
    const int za = si[0];
    double acc = 0.0;
    if (M != -INFINITY)
        for (int i = b0 + tid; i < b1; i += blockDim.x) {
            float v = raw[i];
            if (v == v) acc += exp((double)v - (double)M);
        }
    acc = warp_sumd(acc);
    __syncthreads();
    if (lane == 0) sd[warp] = acc;
    __syncthreads();
    if (tid == 0) {
        double t = 0.0;
        for (int w = 0; w < nw; w++) t += sd[w];
        part[blockIdx.x].zbest = zb;
        part[blockIdx.x].zarg = za;
        part[blockIdx.x].rmax = M;
        part[blockIdx.x].rsum = t;
        __threadfence();
        last = atomicAdd(counter, 1u) == gridDim.x - 1;
    }
    __syncthreads();
    if (!last || warp != 0) return;
    __threadfence();
    // combine the blocks: lane-strided in index order, then a fixed shuffle tree
    float v = -INFINITY, m = -INFINITY;
    int i = n;
    for (int b = lane; b < (int)gridDim.x; b += 32) {
        argmax_merge(v, i, __ldcg(&part[b].zbest), __ldcg(&part[b].zarg));
        m = fmaxf(m, __ldcg(&part[b].rmax));
    }
    warp_argmax(v, i);
    m = wk_warp_max(m);
    double s = 0.0;
    if (m != -INFINITY)
        for (int b = lane; b < (int)gridDim.x; b += 32) {
            float pm = __ldcg(&part[b].rmax);
            if (pm != -INFINITY) s += __ldcg(&part[b].rsum) * exp((double)pm - (double)m);
        }
    s = warp_sumd(s);
    if (lane == 0) {
        if (i >= n) i = 0;
        const double lse = m == -INFINITY ? (double)NAN : (double)m + log(s);
        res->argmax = i;
        res->token = i;
        res->lse = lse;
        res->n_top = 0;
        if (finalize) {
            const float tv = raw[i];
            res->logprob = lse != lse ? (float)-log((double)n) : (tv == tv ? (float)((double)tv - lse) : -INFINITY);
        }
        *counter = 0;
    }
}

__global__ void keys_kernel(const float *z, int n, float temp, uint32_t *keys, int32_t *ids) {
    for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += gridDim.x * blockDim.x) {
        float v = temp > 0.0f ? z[i] / temp : clean(z[i]);
        keys[i] = fkey_d(v);
        ids[i] = i;
    }
}

__device__ int block_min_i(int v, int *red) {
    __syncthreads();
    red[threadIdx.x] = v;
    __syncthreads();
    for (int s = blockDim.x / 2; s > 0; s >>= 1) {
        if (threadIdx.x < s) red[threadIdx.x] = min(red[threadIdx.x], red[threadIdx.x + s]);
        __syncthreads();
    }
    int r = red[0];
    __syncthreads();
    return r;
}

__device__ int block_max_i(int v, int *red) {
    __syncthreads();
    red[threadIdx.x] = v;
    __syncthreads();
    for (int s = blockDim.x / 2; s > 0; s >>= 1) {
        if (threadIdx.x < s) red[threadIdx.x] = max(red[threadIdx.x], red[threadIdx.x + s]);
        __syncthreads();
    }
    int r = red[0];
    __syncthreads();
    return r;
}

/* Steps 4-8 over the sorted order (ids): see sample.c sample_temperature. */
__global__ void __launch_bounds__(SEL_THREADS)
    select_kernel(const float *z, float temp, const int32_t *ids, int n, int top_k, float top_p_f, float min_p_f,
                  double u, double *w, wk_cu_sample_res *res) {
    __shared__ double cs[SEL_THREADS]; /* chunk sums, then exclusive prefixes */
    __shared__ int ri[SEL_THREADS];
    const int tid = threadIdx.x;
    const int K = (top_k > 0 && top_k < n) ? top_k : n;
    const float zmax_f = z[ids[0]] / temp;
    if (!isfinite(zmax_f)) return; /* degenerate: res->token stays the argmax */
    const double zmax = zmax_f;
    const bool use_top_p = top_p_f > 0.0f && top_p_f < 1.0f, use_min_p = min_p_f > 0.0f;
    const double top_p = top_p_f, min_p = min_p_f;
    const int C = (K + SEL_THREADS - 1) / SEL_THREADS;
    const int c0 = min(K, tid * C), c1 = min(K, c0 + C);
    double acc = 0.0;
    for (int j = c0; j < c1; j++) {
        double wj = exp((double)(z[ids[j]] / temp) - zmax);
        w[j] = wj;
        acc += wj;
    }
    cs[tid] = acc;
    __syncthreads();
    if (tid == 0) {
        double run = 0.0;
        for (int t = 0; t < SEL_THREADS; t++) {
            double c = cs[t];
            cs[t] = run;
            run += c;
        }
        w[n] = run; /* s0: scratch slot past the weights */
    }
    __syncthreads();
    const double s0 = w[n];
    const double excl = cs[tid];
    // 6. top-p
    int n_keep = K;
    if (use_top_p) {
        const double need = top_p * s0;
        double a = excl;
        int cand = K;
        for (int j = c0; j < c1; j++) {
            a += w[j];
            if (a >= need) { cand = j + 1; break; }
        }
        n_keep = block_min_i(cand, ri);
    }
    // 7. min-p (w[0] == 1 is the max)
    if (use_min_p) {
        int cand = n_keep;
        for (int j = max(c0, 1); j < min(c1, n_keep); j++)
            if (w[j] < min_p) { cand = j; break; }
        n_keep = block_min_i(cand, ri);
    }
    // 8. renormalize and draw
    double total = s0;
    const bool kept_all = n_keep == K;
    if (!kept_all) {
        double part = 0.0;
        if (c0 < n_keep) {
            part = excl;
            for (int j = c0; j < min(c1, n_keep); j++) part += w[j];
        }
        // the prefix through n_keep-1 is in the thread whose chunk holds it
        const int owner = (n_keep - 1) / C;
        __syncthreads();
        if (tid == owner) cs[0] = part; // cs no longer needed except excl (held in a register)
        __syncthreads();
        total = cs[0];
    }
    const double target = u * total;
    int cand = n;
    {
        double a = excl;
        for (int j = c0; j < min(c1, n_keep); j++) {
            a += w[j];
            if (a > target) { cand = j; break; }
        }
    }
    int pick = block_min_i(cand, ri);
    if (pick >= n) {
        int last = -1;
        for (int j = c0; j < min(c1, n_keep); j++)
            if (w[j] > 0.0) last = j;
        pick = block_max_i(last, ri);
        if (pick < 0) pick = 0;
    }
    if (tid == 0) res->token = ids[pick];
}

/* logprob of the chosen token and the top-N (sorted raw order in ids). */
__global__ void finalize_kernel(const float *raw, int n, const int32_t *ids, int n_top, wk_cu_sample_res *res) {
    if (threadIdx.x != 0) return;
    const double lse = res->lse;
    const bool uniform = lse != lse;
    const float lpu = (float)-log((double)n);
    float tv = raw[res->token];
    res->logprob = uniform ? lpu : (tv == tv ? (float)((double)tv - lse) : -INFINITY);
    res->n_top = n_top;
    for (int j = 0; j < n_top; j++) {
        int id = ids[j];
        res->top_ids[j] = id;
        res->top_logprobs[j] = uniform ? lpu : (float)((double)clean(raw[id]) - lse);
    }
}

// --- launchers -----------------------------------------------------------------------

/* Greedy over rows of logits, GREEDY_BLOCKS blocks a row (one block took
 * ~60 µs for a 152k vocabulary on an H200: the double exp of one SM; 32
 * blocks 21 µs).
 * Block b of a row takes the contiguous range [b·chunk, (b+1)·chunk): argmax
 * (ties to the lower id; NaN counts as -inf, as on the CPU) and its value
 * mx_b (thread t takes elements t, t+256, ... of the range, folded through
 * the fixed warp trees in thread order), then s_b = sum exp(x - mx_b) in
 * double, the same way. The last block of the row to finish (a counter per
 * row, reset by that block) folds the blocks in block order: M = max mx_b,
 * the argmax by (value desc, id asc), S = sum_b s_b·exp(mx_b - M); lse =
 * M + log S; the token's logprob x[tok] - lse. The order depends only on
 * the vocabulary size. */
#define GREEDY_THREADS 256
#define GREEDY_BLOCKS 128

struct greedy_part {
    float mx;
    int32_t arg;
    double sum;
};

size_t wk_cu_greedy_ws_bytes(int max_rows) {
    return wk_al256((size_t)max_rows * 4) + wk_al256((size_t)max_rows * GREEDY_BLOCKS * sizeof(greedy_part));
}

__global__ void __launch_bounds__(GREEDY_THREADS)
    greedy_rows_kernel(const float *logits, int n, greedy_part *parts, unsigned *counters, wk_cu_sample_res *res) {
    __shared__ float sv[32];
    __shared__ int si[32];
    __shared__ double sd[32];
    __shared__ bool last;
    wk_dep_enter();
    const int row = blockIdx.y, nb = gridDim.x;
    const float *x = logits + (size_t)row * n;
    const int chunk = (n + nb - 1) / nb, b0 = blockIdx.x * chunk, b1 = min(n, b0 + chunk);
    const int lane = threadIdx.x & 31, w = threadIdx.x >> 5, nw = GREEDY_THREADS / 32;
    float bv = -INFINITY;
    int bi = n;
#pragma unroll 4
    for (int i = b0 + threadIdx.x; i < b1; i += GREEDY_THREADS) argmax_merge(bv, bi, clean(x[i]), i);
    warp_argmax(bv, bi);
    if (lane == 0) sv[w] = bv, si[w] = bi;
    __syncthreads();
    if (w == 0) {
        bv = lane < nw ? sv[lane] : -INFINITY, bi = lane < nw ? si[lane] : n;
        warp_argmax(bv, bi);
        if (lane == 0) sv[0] = bv, si[0] = bi;
    }
    __syncthreads();
    const float mx = sv[0];
    const int arg = si[0];
    double sum = 0.0;
    if (mx > -INFINITY)
        for (int i = b0 + threadIdx.x; i < b1; i += GREEDY_THREADS) sum += exp((double)clean(x[i]) - (double)mx);
    sum = warp_sumd(sum);
    if (lane == 0) sd[w] = sum;
    __syncthreads();
    greedy_part *pr = parts + (size_t)row * nb;
    if (threadIdx.x == 0) {
        double t = 0.0;
        for (int k = 0; k < nw; k++) t += sd[k];
        pr[blockIdx.x] = greedy_part{mx, arg, t};
        __threadfence();
        last = atomicAdd(&counters[row], 1u) == (unsigned)nb - 1;
    }
    __syncthreads();
    if (!last || w != 0) return;
    __threadfence();
    /* warp 0 folds the row's partials: the lanes load them (ld.cg: never a
     * stale L1 line of an earlier step) and weight them in parallel — one
     * lane loading all of them one after another took ~45 µs at 128 blocks —
     * then lane 0 adds the weights in block order, the same sum as before */
    __shared__ double sw[GREEDY_BLOCKS];
    float M = -INFINITY;
    int tok = n;
    for (int k = lane; k < nb; k += 32) argmax_merge(M, tok, __ldcg(&pr[k].mx), __ldcg(&pr[k].arg));
    warp_argmax(M, tok); /* a max under a total order: the same for any fold order */
    for (int k = lane; k < nb; k += 32) {
        const float m = __ldcg(&pr[k].mx);
        sw[k] = M > -INFINITY && m > -INFINITY ? __ldcg(&pr[k].sum) * exp((double)m - (double)M) : 0.0;
    }
    __syncwarp();
    if (lane != 0) return;
    counters[row] = 0;
    double S = 0.0;
    for (int k = 0; k < nb; k++) S += sw[k]; /* + 0.0 for an empty block: S >= +0 stays as it was */
    if (tok >= n) tok = 0;
    wk_cu_sample_res *r = res + row;
    r->token = tok;
    r->argmax = tok;
    r->n_top = 0;
    if (M > -INFINITY) {
        const double lse = (double)M + log(S);
        r->lse = lse;
        r->logprob = (float)((double)clean(x[tok]) - lse);
    } else {
        r->lse = NAN;
        r->logprob = (float)-log((double)n);
    }
}

cudaError_t wk_cu_greedy_rows(const float *logits, int n_vocab, int n, wk_cu_sample_res *res, void *ws, int max_rows,
                              cudaStream_t st) {
    if (n <= 0) return cudaSuccess;
    if (n > max_rows) return cudaErrorInvalidValue;
    unsigned *counters = (unsigned *)ws;
    greedy_part *parts = (greedy_part *)((uint8_t *)ws + wk_al256((size_t)max_rows * 4));
    const int nb = n_vocab >= GREEDY_BLOCKS * GREEDY_THREADS ? GREEDY_BLOCKS : 1;
    return wk_launch_pdl(greedy_rows_kernel, n, dim3(nb, n), GREEDY_THREADS, 0, st, logits, n_vocab, parts, counters, res);
}

#define TRY_LAUNCH()                                  \
    do {                                              \
        cudaError_t e_ = cudaGetLastError();          \
        if (e_ != cudaSuccess) return e_;             \
    } while (0)

cudaError_t wk_cu_sample(wk_cu_sampler *s, const float *logits, const struct wk_sampling *p, int n_hist,
                         uint64_t step, cudaStream_t st) {
    const int n = s->n_vocab;
    const int eb = (n + 255) / 256 < 1024 ? (n + 255) / 256 : 1024;
    const bool pen = p->repetition_penalty != 1.0f && n_hist > 0;
    const float *zsrc = logits;
    if (pen || p->temperature > 0.0f) {
        clean_kernel<<<eb, 256, 0, st>>>(logits, n, s->z, s->seen);
        TRY_LAUNCH();
        zsrc = s->z;
    }
    if (pen) {
        penalty_kernel<<<1, 1, 0, st>>>(s->z, s->seen, n, s->hist, n_hist, p->repetition_penalty);
        TRY_LAUNCH();
    }
    red_part *part = (red_part *)s->red;
    int n_top = p->n_logprobs < 0 ? 0 : p->n_logprobs;
    if (n_top > WK_MAX_LOGPROBS) n_top = WK_MAX_LOGPROBS;
    if (n_top > n) n_top = n;
    const bool one_pass = !(p->temperature > 0.0f) && n_top == 0;
    reduce_kernel<<<s->n_red, RED_THREADS, 0, st>>>(zsrc, logits, n, part, s->counter, one_pass ? 1 : 0, s->res);
    TRY_LAUNCH();
    if (one_pass) return cudaSuccess;
    if (p->temperature > 0.0f) {
        keys_kernel<<<eb, 256, 0, st>>>(s->z, n, p->temperature, s->keys[0], s->ids[0]);
        TRY_LAUNCH();
        cub::DoubleBuffer<uint32_t> dk(s->keys[0], s->keys[1]);
        cub::DoubleBuffer<int32_t> dv(s->ids[0], s->ids[1]);
        size_t bytes = s->cub_bytes;
        cudaError_t e = cub::DeviceRadixSort::SortPairs(s->cub_tmp, bytes, dk, dv, n, 0, 32, st);
        if (e != cudaSuccess) return e;
        const double u = wk_rng_u01(p->seed, step);
        select_kernel<<<1, SEL_THREADS, 0, st>>>(s->z, p->temperature, dv.Current(), n, p->top_k, p->top_p,
                                                 p->min_p, u, s->w, s->res);
        TRY_LAUNCH();
    }
    const int32_t *top_ids = s->ids[0];
    if (n_top > 0) {
        keys_kernel<<<eb, 256, 0, st>>>(logits, n, 0.0f, s->keys[0], s->ids[0]);
        TRY_LAUNCH();
        cub::DoubleBuffer<uint32_t> dk(s->keys[0], s->keys[1]);
        cub::DoubleBuffer<int32_t> dv(s->ids[0], s->ids[1]);
        size_t bytes = s->cub_bytes;
        cudaError_t e = cub::DeviceRadixSort::SortPairs(s->cub_tmp, bytes, dk, dv, n, 0, 32, st);
        if (e != cudaSuccess) return e;
        top_ids = dv.Current();
    }
    finalize_kernel<<<1, 32, 0, st>>>(logits, n, top_ids, n_top, s->res);
    return cudaGetLastError();
}
