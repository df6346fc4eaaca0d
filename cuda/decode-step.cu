/* decode-step.cu — a pure-decode step of up to WK_DECODE_MAX_ROWS rows as
 * ONE persistent kernel: one block per SM walks the whole forward pass and
 * the logits, the blocks meeting at grid barriers (a counter in global
 * memory) between dependent phases instead of ending kernels.
 *
 * Phases of a layer (each block takes items i = blockIdx.x, + grid, ...):
 *   1. every block rmsnorms the step's rows itself (attn_norm, into its own
 *      rows of a16/a32 — no barrier needed), then QKV tiles → qkv
 *   2. q/k/v step per (row, head), one warp each → q, K/V pages     | barrier
 *   3. attention per (row, KV head group, split) → h16/h32 or part  | barrier
 *      (+ the split merge per (row, head) when a row has > 1 split)  | barrier
 *   4. Wo tiles, added into x                                        | barrier
 *   5. every block rmsnorms (ffn_norm); per column tile the gate tile,
 *      the up tile and the GLU of those columns → h16/h32           | barrier
 *   6. down tiles, added into x                                      | barrier
 * then the final norm and the logits tiles of every row.
 * Weights do not depend on the activations, so each GEMM phase starts by
 * asking L2 for the block's tiles of the GEMM phase two ahead
 * (cp.async.bulk.prefetch): HBM streams the next weights while the barriers
 * and the short phases run, and the tiles load from L2.
 *
 * Same bits as the step's kernels (the batch-invariance contract, ops.cuh):
 * every item runs the very body those kernels run — gemm-tile.cuh (same
 * k-tile → warp order and warp-order sum, whatever the tile shape),
 * rowops.cuh (embedding, the NORM_THREADS-block rmsnorm, the q/k/v head
 * step, the GLU value), attention.cuh (flash / scalar split / merge) — on
 * the same f16/f32 inputs. tests/test-cuda's invariance check compares a
 * sequence decoded alone (this kernel) with the same rows run in mixed
 * eager steps (the kernels), bit for bit.
 */
#include "cuda/attention.cuh"
#include "cuda/gemm-tile.cuh"
#include "cuda/rowops.cuh"

#define DS_THREADS 256         /* = GEMM_WARPS * 32 = NORM_THREADS = ATT_THREADS */
#define DS_LOGIT_PREFETCH 4    /* logits tiles of a block asked of L2 ahead of the one computed */

static_assert(DS_THREADS == GEMM_WARPS * 32 && DS_THREADS == NORM_THREADS && DS_THREADS == ATT_THREADS,
              "the persistent block runs every body with the block size of its own kernel");

struct ds_out {
    float *y;
    int ldy, add;
    __device__ __forceinline__ void operator()(int m, int n, float v) const {
        float *o = y + (size_t)m * ldy + n;
        if (add) *o += v;
        else *o = v;
    }
};

/* All blocks of the grid meet; writes before it are visible after it (the
 * cooperative-groups pattern: block barrier, one thread's fenced arrive and
 * acquire-spin, block barrier). target: the count every block has reached. */
__device__ __forceinline__ void grid_sync(unsigned *bar, unsigned &target) {
    target += gridDim.x;
    __syncthreads();
    if (threadIdx.x == 0) {
        __threadfence();
        atomicAdd(bar, 1u);
        unsigned v;
        do {
            asm volatile("ld.acquire.gpu.global.u32 %0, [%1];" : "=r"(v) : "l"(__cvta_generic_to_global(bar)) : "memory");
        } while (v < target);
        __threadfence();
    }
    __syncthreads();
}

__device__ __forceinline__ void prefetch_l2(const void *p, size_t bytes) {
    size_t s = __cvta_generic_to_global(p) & ~(size_t)15;
    const size_t e = (__cvta_generic_to_global(p) + bytes + 15) & ~(size_t)15; /* arena tensors are 256-aligned */
    while (s < e) {
        const unsigned n = (unsigned)(e - s < ((size_t)1 << 20) ? e - s : ((size_t)1 << 20));
        asm volatile("cp.async.bulk.prefetch.L2.global [%0], %1;" ::"l"(s), "r"(n) : "memory");
        s += n;
    }
}

// --- GEMM phases ----------------------------------------------------------------

struct ds_seg {
    const wk_cu_mat *W;
    float *y;
    int ldy;
};

/* n8 tiles per block tile: 4 when that still gives half the blocks a tile,
 * else 1 (the shape never changes a result, see gemm-tile.cuh). */
__device__ __forceinline__ int pick_nt(int cols) { return (cols + 31) / 32 >= (int)gridDim.x / 2 ? 4 : 1; }

/* weight rows a tile of W covers: the fp32 path always takes 8 (a warp each) */
__device__ __forceinline__ int tile_cols(const wk_cu_mat &W, int nt) { return W.type == GGML_TYPE_F32 ? 8 : 8 * nt; }

/* One tile shape of one type, kept out of line: inlined together, the 22
 * variants spilled thousands of bytes (each alone needs <= 182 registers). */
template <int T, int NT>
__device__ __noinline__ void tile_fn(const wk_cu_mat &W, int n0, const __half *a16, int lda, int rows, uint8_t *sm,
                                     ds_out epi) {
    gemm_mma_tile<T, 1, NT, NT == 4 ? 2 : 4, ds_out, true>(W, n0, a16, lda, rows, 0, W.n_in, sm, epi);
}

__device__ __noinline__ void tile_f32(const wk_cu_mat &W, int n0, const float *a32, int lda, int rows, ds_out epi) {
    gemm_f32_cols(W, n0, a32, lda, 0, rows, W.n_in, epi);
}

__device__ __forceinline__ void tile_any(const wk_cu_mat &W, int n0, int nt, const __half *a16, const float *a32,
                                         int lda, int rows, uint8_t *sm, ds_out epi) {
    if (W.type == GGML_TYPE_F32) tile_f32(W, n0, a32, lda, rows, epi);
    else if (nt == 4) WK_TYPE_SWITCH(W.type, (tile_fn<T_, 4>(W, n0, a16, lda, rows, sm, epi)))
    else WK_TYPE_SWITCH(W.type, (tile_fn<T_, 1>(W, n0, a16, lda, rows, sm, epi)))
}

/* Tile it of the segments: which segment, first weight row. false past the end. */
__device__ __forceinline__ bool find_tile(const ds_seg *S, int ns, int nt, int it, int *si, int *n0) {
    for (int i = 0; i < ns; i++) {
        const int c = tile_cols(*S[i].W, nt), t = (S[i].W->n_rows + c - 1) / c;
        if (it < t) {
            *si = i, *n0 = it * c;
            return true;
        }
        it -= t;
    }
    return false;
}

__device__ __forceinline__ int seg_cols(const ds_seg *S, int ns) {
    int n = 0;
    for (int i = 0; i < ns; i++) n += S[i].W->n_rows;
    return n;
}

/* Ask L2 for this block's tiles of a phase (at most max_tiles of them). */
__device__ __forceinline__ void prefetch_tiles(const ds_seg *S, int ns, int max_tiles) {
    if (threadIdx.x != 0) return;
    const int nt = pick_nt(seg_cols(S, ns));
    int si, n0;
    for (int it = blockIdx.x, k = 0; k < max_tiles && find_tile(S, ns, nt, it, &si, &n0); it += gridDim.x, k++) {
        const wk_cu_mat &W = *S[si].W;
        const int n = min(tile_cols(W, nt), W.n_rows - n0);
        prefetch_l2(W.w + (size_t)n0 * W.row_bytes, (size_t)n * W.row_bytes);
    }
}

/* y (=|+=) A · Wᵀ over the segments' tiles; with `ahead` > 0 each tile also
 * asks L2 for the block's tile that many tiles later (the logits). */
__device__ void gemm_phase(const ds_seg *S, int ns, const __half *a16, const float *a32, int lda, int rows, int add,
                           uint8_t *sm, int ahead) {
    const int nt = pick_nt(seg_cols(S, ns));
    int si, n0;
    for (int it = blockIdx.x; find_tile(S, ns, nt, it, &si, &n0); it += gridDim.x) {
        int sj, m0;
        if (ahead > 0 && threadIdx.x == 0 && find_tile(S, ns, nt, it + ahead * (int)gridDim.x, &sj, &m0)) {
            const wk_cu_mat &W = *S[sj].W;
            prefetch_l2(W.w + (size_t)m0 * W.row_bytes, (size_t)min(tile_cols(W, nt), W.n_rows - m0) * W.row_bytes);
        }
        tile_any(*S[si].W, n0, nt, a16, a32, lda, rows, sm, ds_out{S[si].y, S[si].ldy, add});
    }
}

/* The step's GEMM phases in order: 4 per layer (QKV, Wo, gate|up, down),
 * then the logits. Fills the segments of phase k. */
__device__ __forceinline__ int phase_segs(const wk_decode_args &p, int k, ds_seg S[3]) {
    if (k >= 4 * p.n_layer) {
        S[0] = ds_seg{&p.out, p.logits, p.V};
        return k == 4 * p.n_layer ? 1 : 0;
    }
    const wk_decode_layer &L = p.L[k / 4];
    const int W3 = p.qd + 2 * p.kvd;
    switch (k % 4) {
    case 0:
        S[0] = ds_seg{&L.wq, p.qkv, W3};
        S[1] = ds_seg{&L.wk, p.qkv + p.qd, W3};
        S[2] = ds_seg{&L.wv, p.qkv + p.qd + p.kvd, W3};
        return 3;
    case 1: S[0] = ds_seg{&L.wo, p.x, p.E}; return 1;
    case 2:
        S[0] = ds_seg{&L.gate, p.gu, 2 * p.n_ff};
        S[1] = ds_seg{&L.up, p.gu + p.n_ff, 2 * p.n_ff};
        return 2;
    default: S[0] = ds_seg{&L.down, p.x, p.E}; return 1;
    }
}

__device__ __forceinline__ void prefetch_phase(const wk_decode_args &p, int k) {
    ds_seg S[3];
    const int ns = phase_segs(p, k, S);
    if (ns > 0) prefetch_tiles(S, ns, k == 4 * p.n_layer ? DS_LOGIT_PREFETCH : 1 << 30);
}

/* gate|up and the GLU: per column tile, the gate tile, the up tile (same
 * shape), then act(gate)·up of those columns into h32/h16. */
__device__ void gate_up_phase(const wk_decode_args &p, const wk_decode_layer &L, const __half *a16, const float *a32,
                              int lda, uint8_t *sm) {
    const int nt = L.gate.type == GGML_TYPE_F32 || L.up.type == GGML_TYPE_F32 ? 1 : pick_nt(2 * p.n_ff);
    const int cols = 8 * nt, tiles = (p.n_ff + cols - 1) / cols, B = p.n_rows;
    const int n_out = min(p.ld, (p.n_ff + WK_GEMM_BK - 1) / WK_GEMM_BK * WK_GEMM_BK);
    for (int it = blockIdx.x; it < tiles; it += gridDim.x) {
        const int n0 = it * cols;
        tile_any(L.gate, n0, nt, a16, a32, lda, B, sm, ds_out{p.gu, 2 * p.n_ff, 0});
        tile_any(L.up, n0, nt, a16, a32, lda, B, sm, ds_out{p.gu + p.n_ff, 2 * p.n_ff, 0});
        __syncthreads();
        /* the last tile also writes the zeros up to the k-tile end */
        const int n_hi = it == tiles - 1 ? n_out : n0 + cols;
        for (int o = threadIdx.x; o < B * (n_hi - n0); o += DS_THREADS) {
            const int m = o / (n_hi - n0), n = n0 + o % (n_hi - n0);
            const float *g = p.gu + (size_t)m * 2 * p.n_ff;
            const float v = n < p.n_ff ? wk_glu_value(g[n], g[p.n_ff + n], p.gelu) : 0.0f;
            p.h32[(size_t)m * p.ld + n] = v;
            p.h16[(size_t)m * p.ld + n] = __float2half_rn(v);
        }
        __syncthreads();
    }
}

// --- row phases --------------------------------------------------------------------

/* rmsnorm of the step's rows into this block's own rows of a16/a32. */
__device__ void norm_rows(const wk_decode_args &p, const float *w, float *a32, __half *a16, float *red) {
    const int n_out = min(p.lda_a, (p.E + WK_GEMM_BK - 1) / WK_GEMM_BK * WK_GEMM_BK);
    for (int r = 0; r < p.n_rows; r++) {
        const float *xr = p.x + (size_t)r * p.E;
        const float scale = wk_rms_scale(xr, p.E, p.eps, red);
        wk_rmsnorm_store(xr, w, p.E, scale, a32 + (size_t)r * p.lda_a, a16 + (size_t)r * p.lda_a, n_out);
    }
    __syncthreads();
}

/* The splits of the longest row of this layer (the same in every block). */
__device__ __forceinline__ int max_splits(const wk_decode_args &p, int window) {
    int S = 1;
    for (int r = 0; r < p.n_rows; r++) {
        const int pos = p.row_pos[r], p0 = window > 0 && pos - window + 1 > 0 ? pos - window + 1 : 0;
        S = max(S, pos / WK_ATT_CHUNK - p0 / WK_ATT_CHUNK + 1);
    }
    return S;
}

template <int HD>
__device__ void flash_items(const wk_attn_args &a, int B, int max_split, int S, uint8_t *sm) {
    const int G = a.n_head / a.n_head_kv, hgroups = (G + 7) / 8, Y = a.n_head_kv * hgroups;
    for (int it = blockIdx.x; it < B * Y * S; it += gridDim.x) {
        wk_flash_body<HD>(a, B, max_split, hgroups, it / (Y * S), (it / S) % Y, it % S, sm);
        __syncthreads();
    }
}

__device__ void attention_phase(const wk_decode_args &p, const wk_attn_args &a, int S, uint8_t *sm, float *red) {
    const int B = p.n_rows;
    switch (p.hd) {
    case 64: flash_items<64>(a, B, p.max_split, S, sm); return;
    case 96: flash_items<96>(a, B, p.max_split, S, sm); return;
    case 128: flash_items<128>(a, B, p.max_split, S, sm); return;
    case 256: flash_items<256>(a, B, p.max_split, S, sm); return;
    default:
        for (int it = blockIdx.x; it < B * p.n_head * S; it += gridDim.x) {
            wk_attn_split_body(a, it / (p.n_head * S), (it / S) % p.n_head, it % S, p.max_split,
                               reinterpret_cast<float *>(sm), red);
            __syncthreads();
        }
    }
}

static __device__ __forceinline__ bool flash_hd(int hd) { return hd == 64 || hd == 96 || hd == 128 || hd == 256; }

// --- the kernel ---------------------------------------------------------------------

__global__ void __launch_bounds__(DS_THREADS, 1) decode_step_kernel(const __grid_constant__ wk_decode_args p) {
    extern __shared__ __align__(16) uint8_t sm[];
    __shared__ float red[32];
    unsigned target = 0;
    const int B = p.n_rows, w = threadIdx.x >> 5, lane = threadIdx.x & 31;
    float *a32 = p.a32 + (size_t)blockIdx.x * B * p.lda_a;
    __half *a16 = p.a16 + (size_t)blockIdx.x * B * p.lda_a;

    prefetch_phase(p, 0);
    prefetch_phase(p, 1);
    for (int r = blockIdx.x; r < B; r += gridDim.x) wk_embed_row(p.embd, p.row_tok[r], p.embd_scale, p.x + (size_t)r * p.E);
    grid_sync(p.bar, target);

    for (int l = 0; l < p.n_layer; l++) {
        const wk_decode_layer &L = p.L[l];
        ds_seg S[3];
        int ns;

        /* 1. norm + QKV */
        prefetch_phase(p, 4 * l + 2);
        norm_rows(p, L.attn_norm, a32, a16, red);
        ns = phase_segs(p, 4 * l, S);
        gemm_phase(S, ns, a16, a32, p.lda_a, B, 0, sm, 0);
        grid_sync(p.bar, target);

        /* 2. q/k/v heads: one warp per (row, head) */
        const wk_qkv_post_args qa = {p.qkv, L.bq, L.bk, L.bv, L.q_norm, L.k_norm, p.eps, L.cs,
                                     p.n_head, p.n_kv, p.hd, p.rd, p.neox, p.row_pos, p.row_pt, p.pt,
                                     p.q, L.kc, L.vc};
        const int NH = p.n_head + 2 * p.n_kv;
        float *hbuf = reinterpret_cast<float *>(sm) + w * p.hd;
        for (int it = blockIdx.x * GEMM_WARPS + w; it < B * NH; it += gridDim.x * GEMM_WARPS)
            wk_qkv_post_head(qa, it / NH, it % NH, lane, hbuf);
        grid_sync(p.bar, target);

        /* 3. attention (+ merge) */
        const wk_attn_args aa = {p.q, L.kc, L.vc, p.row_pos, p.row_pt, p.pt, p.n_head, p.n_kv, p.hd, L.window,
                                 p.attn_scale, p.part, p.h32, p.h16, p.ld};
        const int Sp = max_splits(p, L.window);
        attention_phase(p, aa, Sp, sm, red);
        grid_sync(p.bar, target);
        if (Sp > 1) {
            for (int it = blockIdx.x; it < B * p.n_head; it += gridDim.x) {
                if (flash_hd(p.hd)) wk_attn_merge_body<true>(aa, p.max_split, it / p.n_head, it % p.n_head);
                else wk_attn_merge_body<false>(aa, p.max_split, it / p.n_head, it % p.n_head);
            }
            grid_sync(p.bar, target);
        }

        /* 4. Wo into x */
        prefetch_phase(p, 4 * l + 3);
        ns = phase_segs(p, 4 * l + 1, S);
        gemm_phase(S, ns, p.h16, p.h32, p.ld, B, 1, sm, 0);
        grid_sync(p.bar, target);

        /* 5. norm + gate|up + GLU */
        prefetch_phase(p, 4 * l + 4);
        norm_rows(p, L.ffn_norm, a32, a16, red);
        gate_up_phase(p, L, a16, a32, p.lda_a, sm);
        grid_sync(p.bar, target);

        /* 6. down into x */
        prefetch_phase(p, 4 * l + 5);
        ns = phase_segs(p, 4 * l + 3, S);
        gemm_phase(S, ns, p.h16, p.h32, p.ld, B, 1, sm, 0);
        grid_sync(p.bar, target);
    }

    /* final norm + logits of every row */
    norm_rows(p, p.out_norm, a32, a16, red);
    ds_seg S[3];
    const int ns = phase_segs(p, 4 * p.n_layer, S);
    gemm_phase(S, ns, a16, a32, p.lda_a, B, 0, sm, DS_LOGIT_PREFETCH);
}

// --- host --------------------------------------------------------------------------

bool wk_cu_decode_supported(bool has_post_norms) { return !has_post_norms; }

int wk_cu_decode_grid(int n_sm) { return n_sm; }

size_t wk_cu_decode_smem(int hd, int n_head, int n_kv) {
    size_t s = wk_gemm_tile_smem(1, 4, 2);
    s = s > wk_gemm_tile_smem(1, 1, 4) ? s : wk_gemm_tile_smem(1, 1, 4);
    const size_t att = (hd == 64 || hd == 96 || hd == 128 || hd == 256) ? wk_flash_smem(hd, GEMM_WARPS)
                                                                         : wk_att_split_smem(hd);
    const size_t heads = (size_t)GEMM_WARPS * hd * sizeof(float);
    (void)n_head, (void)n_kv;
    if (att > s) s = att;
    if (heads > s) s = heads;
    return s;
}

cudaError_t wk_cu_decode_step(const wk_decode_args &a, int grid, size_t smem, cudaStream_t st) {
    static size_t smem_set = 0;
    if (smem > smem_set) {
        cudaError_t e = cudaFuncSetAttribute(decode_step_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem);
        if (e != cudaSuccess) return e;
        smem_set = smem;
    }
    cudaError_t e = cudaMemsetAsync(a.bar, 0, sizeof(unsigned), st);
    if (e != cudaSuccess) return e;
    /* cooperative: the launch fails rather than deadlock if the grid cannot be resident at once */
    cudaLaunchConfig_t cfg = {};
    cfg.gridDim = dim3(grid);
    cfg.blockDim = dim3(DS_THREADS);
    cfg.dynamicSmemBytes = smem;
    cfg.stream = st;
    cudaLaunchAttribute attr[1];
    attr[0].id = cudaLaunchAttributeCooperative;
    attr[0].val.cooperative = 1;
    cfg.attrs = attr;
    cfg.numAttrs = 1;
    return cudaLaunchKernelEx(&cfg, decode_step_kernel, a);
}
