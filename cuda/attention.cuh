/* attention.cuh — the device bodies of attention.cu's kernels (scalar
 * split, flash, merge), apart from their launch so that a kernel running
 * several steps at once (the persistent decode kernel of branch
 * `persistent`, cuda/NOTES.md) runs the very same bodies and a row gets the
 * same bits from either. The order of
 * every row's arithmetic is written out in attention.cu and cuda/NOTES.md.
 */
#ifndef WK_CUDA_ATTENTION_CUH
#define WK_CUDA_ATTENTION_CUH

#include <math.h>

#include "cuda/ops.cuh"


#define ATT_THREADS 256
#define PV_UNROLL 8 /* keys whose V loads are in flight together (order of the sums unchanged) */

/* shared bytes of the scalar split body for head_dim hd */
__host__ __device__ constexpr size_t wk_att_split_smem(int hd) {
    return (size_t)(hd + WK_ATT_CHUNK + (ATT_THREADS / hd > 1 ? ATT_THREADS / hd * hd : ATT_THREADS)) * sizeof(float);
}

__device__ __forceinline__ void wk_att_row_range(const wk_attn_args &a, int r, int *pos, int *p0) {
    *pos = a.row_pos[r];
    *p0 = a.window > 0 && *pos - a.window + 1 > 0 ? *pos - a.window + 1 : 0;
}

/* One (row r, head h, split z) of the scalar kernel by an ATT_THREADS block;
 * sm: wk_att_split_smem floats, red: 32 floats. */
__device__ __forceinline__ void wk_attn_split_body(const wk_attn_args &a, int r, int h, int z, int max_split, float *sm,
                                                   float *red) {
    const int tid = threadIdx.x;
    int pos, p0;
    wk_att_row_range(a, r, &pos, &p0);
    const int s_first = p0 / WK_ATT_CHUNK, s_last = pos / WK_ATT_CHUNK, n_split = s_last - s_first + 1;
    const int s = s_first + z;
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
    float *outp = a.part + (((size_t)r * a.n_head + h) * max_split + z) * (hd + 2);
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

/* The splits of a row folded in split order. The partials' maxima are in the
 * natural-log domain (scalar kernel) or the base-2 domain (flash kernel). */
template <bool BASE2>
__device__ __forceinline__ void wk_attn_merge_body(const wk_attn_args &a, int max_split, int r, int h) {
    int pos, p0;
    wk_att_row_range(a, r, &pos, &p0);
    const int n_split = pos / WK_ATT_CHUNK - p0 / WK_ATT_CHUNK + 1;
    if (n_split == 1) return;
    const int hd = a.hd;
    const float *part = a.part + ((size_t)r * a.n_head + h) * max_split * (hd + 2);
    float M = -INFINITY;
    for (int s = 0; s < n_split; s++) M = fmaxf(M, part[s * (hd + 2)]);
    float L = 0.0f;
    for (int s = 0; s < n_split; s++) {
        const float x = part[s * (hd + 2)] - M;
        L = fmaf(part[s * (hd + 2) + 1], BASE2 ? exp2f(x) : expf(x), L);
    }
    for (int d = threadIdx.x; d < hd; d += blockDim.x) {
        float o = 0.0f;
        for (int s = 0; s < n_split; s++) {
            const float x = part[s * (hd + 2)] - M;
            o = fmaf(part[s * (hd + 2) + 2 + d], BASE2 ? exp2f(x) : expf(x), o);
        }
        const size_t oi = (size_t)r * a.ld + h * hd + d;
        a.y32[oi] = o / L;
        a.y16[oi] = __float2half_rn(o / L);
    }
}

/* ---- flash attention on the tensor cores (hd in FA_HDS) ------------------------
 *
 * Tiles: a tile is a run of consecutive step rows of ONE sequence (same page
 * table, consecutive positions) inside one aligned group of 16 positions
 * [16m, 16m + 16). Row r starts a tile iff r == 0, or row r-1 is another
 * sequence / not position pos-1, or pos % 16 == 0 — a local test, so the
 * block of row r decides alone; the other blocks exit. All rows of a tile
 * share the last key block (64 | 1024 and 16 | 64) and the split bounds.
 *
 * Block = (tile, KV head, group of HB <= 8 of its q heads, split s of 1024
 * keys). The block's (row, head) pairs — n rows × HB heads, pair p = row
 * p / HB, head p % HB — fill m16 tiles of 16 pairs, one warp each (a decode
 * row of a GQA model: all its heads of the KV head in one tile); pairs past
 * the last are zero and masked. Keys go in absolute blocks of 64 (block b =
 * keys [64b, 64b+64)), in increasing b, from the tile's first key to its
 * last in the split; K and V of a block are copied into shared memory
 * (cp.async, FA_STAGES(hd) blocks in flight) once for all the block's warps,
 * V read back transposed by ldmatrix.
 *
 * Per pair and key block, in this order (identical for a pair whatever the
 * other pairs of its tile are: the mma output element (i, j) depends only on
 * A row i and B column j, the k16 steps run in increasing order into one
 * accumulator):
 *   S = Q·Kᵀ (f16 in, f32 acc, dims in k16 steps 0, 1, ...); s = S·scale·log2e;
 *   masked (k < p0 or k > pos) -> -inf; mb = max over the row (fixed quad
 *   tree); m' = max(m, mb); mu = m' == -inf ? 0 : m';
 *   p = exp2(s - mu); rs = thread sum over (n8 tile, col) in order, then
 *   the quad tree (xor 1, xor 2);
 *   if m == -inf: l = rs, acc = 0, else a = exp2(m - mu), l = l·a + rs, acc *= a;
 *   acc += P(f16)·V (k16 steps of keys in increasing order); m = m'.
 * A key block with no key for a row leaves (m, l, acc) = (-inf, 0, 0) — the
 * first block with a key resets acc and l — so a row's result is the same as
 * when it runs alone (a decode row is a tile of one row).
 * End of split: one split -> y = acc · (1/l); else (m, l, acc) to part and
 * flash_merge folds the splits in split order (exp2 domain).
 */
#define FA_KB 64

#define FA_PAGES (WK_ATT_CHUNK / WK_KV_PAGE_TOKENS + 2) /* page ids a split's keys span, at most */

/* key blocks whose K and V are in flight together (shared memory: 2 × 64 × (hd + 8) halfs each) */
__host__ __device__ constexpr int wk_flash_stages(int hd) { return hd <= 64 ? 4 : hd <= 128 ? 3 : 2; }

/* shared bytes of the flash body with nw warps: q tiles (nw × 16 pairs), the
 * K and V stages (rows of hd + 8 halfs: 16-byte aligned, conflict-free), the
 * split's page ids */
__host__ __device__ constexpr size_t wk_flash_smem(int hd, int nw) {
    return (size_t)(nw * 16 + wk_flash_stages(hd) * 2 * FA_KB) * (hd + 8) * 2 + FA_PAGES * 4;
}

__device__ __forceinline__ void fa_mma(float c[4], uint32_t a0, uint32_t a1, uint32_t a2, uint32_t a3, uint32_t b0,
                                       uint32_t b1) {
    asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
                 "{%0,%1,%2,%3};\n"
                 : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
                 : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "r"(b0), "r"(b1));
}

__device__ __forceinline__ uint32_t fa_pack(float x, float y) {
    __half2 h = __floats2half2_rn(x, y);
    return *reinterpret_cast<uint32_t *>(&h);
}

/* 16 bytes global -> shared, zero-filled when !valid (src then not read) */
__device__ __forceinline__ void fa_cp16(void *dst, const void *src, bool valid) {
    const uint32_t d = (uint32_t)__cvta_generic_to_shared(dst);
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(d), "l"(src), "r"(valid ? 16 : 0) : "memory");
}
__device__ __forceinline__ void fa_cp_commit() { asm volatile("cp.async.commit_group;\n" ::: "memory"); }
template <int N> __device__ __forceinline__ void fa_cp_wait() { asm volatile("cp.async.wait_group %0;\n" ::"n"(N) : "memory"); }

/* B fragments of P·V for n8 tiles j and j + 1 (dims 8j..8j+15) and keys
 * 16kk..16kk+15 from V stored [key][dim]: b[0], b[1] tile j; b[2], b[3] tile j+1 */
__device__ __forceinline__ void fa_ldv(uint32_t b[4], const __half *vs, int QS, int kk, int j, int lane) {
    const __half *p = vs + (16 * kk + (lane & 15)) * QS + 8 * j + 8 * (lane >> 4);
    const uint32_t a = (uint32_t)__cvta_generic_to_shared(p);
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                 : "=r"(b[0]), "=r"(b[1]), "=r"(b[2]), "=r"(b[3])
                 : "r"(a));
}

__device__ __forceinline__ bool fa_joins(const wk_attn_args &a, int r) {
    const int p = a.row_pos[r];
    return a.row_pt[r] == a.row_pt[r - 1] && p == a.row_pos[r - 1] + 1 && (p & 15) != 0;
}

/* The flash block (bx: the tile's first row, by: KV head × q-head group,
 * bz: split) by a block of nw >= min(G, 8) warps (warps past the pairs only
 * copy); fa_sm: wk_flash_smem(HD, nw) bytes. Calls wk_dep_enter() itself:
 * the rows' positions and the page ids of the split (the step's metadata)
 * are read before it, so a key block's K/V copies do not wait for a
 * page-table load first. */
template <int HD>
__device__ __forceinline__ void wk_flash_body(const wk_attn_args &a, int n_rows, int max_split, int hgroups, int bx,
                                              int by, int bz, unsigned char *fa_sm) {
    constexpr int QS = HD + 8;  /* halfs per staged q / k / v row */
    constexpr int NKS = HD / 16; /* k16 steps of S */
    constexpr int NDT = HD / 8;  /* n8 tiles of O */
    constexpr int ST = wk_flash_stages(HD);
    const int r0 = bx;
    if (r0 > 0 && fa_joins(a, r0)) return;
    int n = 1;
    while (n < 16 && r0 + n < n_rows && fa_joins(a, r0 + n)) n++;
    const int G = a.n_head / a.n_head_kv, kvh = by / hgroups, hg = by % hgroups, HB = min(G - hg * 8, 8);
    const int nw = blockDim.x / 32, w = threadIdx.x / 32, lane = threadIdx.x % 32, g = lane / 4, t = lane % 4;
    const int n_pairs = n * HB;
    const bool active = 16 * w < n_pairs;
    const int pmax = a.row_pos[r0 + n - 1], pfirst = a.row_pos[r0];
    const int p0min = a.window > 0 && pfirst - a.window + 1 > 0 ? pfirst - a.window + 1 : 0;
    const int s = p0min / WK_ATT_CHUNK + bz, s_last = pmax / WK_ATT_CHUNK;
    if (s > s_last) return;
    const int k_lo = max(p0min, s * WK_ATT_CHUNK), k_hi = min(pmax, s * WK_ATT_CHUNK + WK_ATT_CHUNK - 1);
    const int kvd = a.n_head_kv * HD;
    const int32_t *pt = a.pt + a.row_pt[r0];

    __half *qs = reinterpret_cast<__half *>(fa_sm) + w * 16 * QS;
    __half *kvs = reinterpret_cast<__half *>(fa_sm) + nw * 16 * QS; /* stage i: K at 2i, V at 2i + 1 (FA_KB rows each) */
    int *pg = reinterpret_cast<int *>(kvs + ST * 2 * FA_KB * QS); /* page ids of pages [pg_lo, k_hi / PAGE] */
    const int pg_lo = k_lo / WK_KV_PAGE_TOKENS;
    for (int i = threadIdx.x; i <= k_hi / WK_KV_PAGE_TOKENS - pg_lo; i += blockDim.x) pg[i] = pt[pg_lo + i];

    /* pair p of the block -> its step row and its q head */
    auto pair_row = [&](int p) { return r0 + p / HB; };
    auto pair_head = [&](int p) { return kvh * G + hg * 8 + p % HB; };
    /* this thread's two pairs: tile rows g and g + 8 */
    int rp[2], rp0[2], rr[2], rh[2];
    for (int i = 0; i < 2; i++) {
        const int pr = 16 * w + g + 8 * i;
        const bool ok = pr < n_pairs;
        rr[i] = pair_row(ok ? pr : 0);
        rh[i] = pair_head(ok ? pr : 0);
        rp[i] = ok ? a.row_pos[rr[i]] : -1;
        rp0[i] = a.window > 0 && rp[i] - a.window + 1 > 0 ? rp[i] - a.window + 1 : 0;
    }
    __syncthreads(); /* pg */
    wk_dep_enter();

    /* K and V of key block kb into stage st: FA_KB keys × HD/8 chunks each */
    auto copy_block = [&](int kb, int st) {
        __half *ks = kvs + (size_t)(2 * st) * FA_KB * QS, *vs = ks + FA_KB * QS;
        for (int c = threadIdx.x; c < FA_KB * (HD / 8); c += blockDim.x) {
            const int j = c / (HD / 8), ch = c % (HD / 8), kp = kb * FA_KB + j;
            const bool ok = kp >= p0min && kp <= pmax;
            const size_t off = ok ? ((size_t)pg[kp / WK_KV_PAGE_TOKENS - pg_lo] * WK_KV_PAGE_TOKENS +
                                     kp % WK_KV_PAGE_TOKENS) * kvd + kvh * HD + ch * 8
                                  : 0;
            fa_cp16(ks + j * QS + ch * 8, a.kc + off, ok);
            fa_cp16(vs + j * QS + ch * 8, a.vc + off, ok);
        }
    };
    const int kb0 = k_lo / FA_KB, nkb = k_hi / FA_KB - kb0 + 1;
#pragma unroll
    for (int i = 0; i < ST - 1; i++) {
        if (i < nkb) copy_block(kb0 + i, i);
        fa_cp_commit();
    }
    if (active) {
        /* the warp's 16 q rows, 16 float2 a lane at a time: all loads before the first
         * store (a load after a store to shared memory through these pointers is not
         * hoisted over it: one round trip per element otherwise) */
        constexpr int QB = 16, NQ = 16 * (HD / 2) / 32; /* float2 a lane in all (HD / 4) */
#pragma unroll
        for (int k0 = 0; k0 < NQ; k0 += QB) {
            float2 v[QB];
#pragma unroll
            for (int k = 0; k < QB; k++) {
                const int i = lane + 32 * (k0 + k), pr = i / (HD / 2), d = 2 * (i % (HD / 2)), pp = 16 * w + pr;
                v[k] = make_float2(0.0f, 0.0f);
                if (k0 + k < NQ && pp < n_pairs)
                    v[k] = *reinterpret_cast<const float2 *>(a.q + (size_t)pair_row(pp) * a.n_head * HD +
                                                             pair_head(pp) * HD + d);
            }
#pragma unroll
            for (int k = 0; k < QB; k++) {
                const int i = lane + 32 * (k0 + k), pr = i / (HD / 2), d = 2 * (i % (HD / 2));
                if (k0 + k < NQ) *reinterpret_cast<__half2 *>(qs + pr * QS + d) = __floats2half2_rn(v[k].x, v[k].y);
            }
        }
    }
    const float sl = a.scale * 1.4426950408889634f;
    float m[2] = {-INFINITY, -INFINITY}, l[2] = {0.0f, 0.0f};
    float acc[NDT][4];
#pragma unroll
    for (int j = 0; j < NDT; j++) acc[j][0] = acc[j][1] = acc[j][2] = acc[j][3] = 0.0f;

    for (int it = 0; it < nkb; it++) {
        fa_cp_wait<ST - 2>(); /* this thread's copies of block it have landed */
        __syncthreads();      /* everyone's have; block it - 1 consumed (its stage is refilled next) */
        if (it + ST - 1 < nkb) copy_block(kb0 + it + ST - 1, (it + ST - 1) % ST);
        fa_cp_commit();
        if (!active) continue;
        const int kb = kb0 + it;
        const __half *ks = kvs + (size_t)(2 * (it % ST)) * FA_KB * QS, *vs = ks + FA_KB * QS;

        float sc[FA_KB / 8][4];
#pragma unroll
        for (int j = 0; j < FA_KB / 8; j++) sc[j][0] = sc[j][1] = sc[j][2] = sc[j][3] = 0.0f;
#pragma unroll
        for (int kk = 0; kk < NKS; kk++) {
            const uint32_t a0 = *reinterpret_cast<const uint32_t *>(qs + g * QS + 16 * kk + 2 * t);
            const uint32_t a1 = *reinterpret_cast<const uint32_t *>(qs + (g + 8) * QS + 16 * kk + 2 * t);
            const uint32_t a2 = *reinterpret_cast<const uint32_t *>(qs + g * QS + 16 * kk + 8 + 2 * t);
            const uint32_t a3 = *reinterpret_cast<const uint32_t *>(qs + (g + 8) * QS + 16 * kk + 8 + 2 * t);
#pragma unroll
            for (int j = 0; j < FA_KB / 8; j++) {
                const __half *kr = ks + (j * 8 + g) * QS + 16 * kk + 2 * t;
                fa_mma(sc[j], a0, a1, a2, a3, *reinterpret_cast<const uint32_t *>(kr),
                       *reinterpret_cast<const uint32_t *>(kr + 8));
            }
        }
        /* online softmax, per pair (i = 0: tile row g, elements 0,1; i = 1: row g+8, elements 2,3) */
#pragma unroll
        for (int i = 0; i < 2; i++) {
            float mb = -INFINITY;
#pragma unroll
            for (int j = 0; j < FA_KB / 8; j++)
#pragma unroll
                for (int e = 0; e < 2; e++) {
                    const int kp = kb * FA_KB + j * 8 + 2 * t + e;
                    const float v = kp >= rp0[i] && kp <= rp[i] ? sc[j][2 * i + e] * sl : -INFINITY;
                    sc[j][2 * i + e] = v;
                    mb = fmaxf(mb, v);
                }
            mb = fmaxf(mb, __shfl_xor_sync(0xffffffffu, mb, 1));
            mb = fmaxf(mb, __shfl_xor_sync(0xffffffffu, mb, 2));
            const float mn = fmaxf(m[i], mb), mu = mn == -INFINITY ? 0.0f : mn;
            float rs = 0.0f;
#pragma unroll
            for (int j = 0; j < FA_KB / 8; j++)
#pragma unroll
                for (int e = 0; e < 2; e++) {
                    const float p = exp2f(sc[j][2 * i + e] - mu);
                    sc[j][2 * i + e] = p;
                    rs += p;
                }
            rs += __shfl_xor_sync(0xffffffffu, rs, 1);
            rs += __shfl_xor_sync(0xffffffffu, rs, 2);
            if (m[i] == -INFINITY) {
                l[i] = rs;
#pragma unroll
                for (int j = 0; j < NDT; j++) acc[j][2 * i] = acc[j][2 * i + 1] = 0.0f;
            } else {
                const float al = exp2f(m[i] - mu);
                l[i] = __fadd_rn(__fmul_rn(l[i], al), rs);
#pragma unroll
                for (int j = 0; j < NDT; j++) acc[j][2 * i] *= al, acc[j][2 * i + 1] *= al;
            }
            m[i] = mn;
        }
        /* acc += P·V */
#pragma unroll
        for (int kk = 0; kk < FA_KB / 16; kk++) {
            const uint32_t a0 = fa_pack(sc[2 * kk][0], sc[2 * kk][1]), a1 = fa_pack(sc[2 * kk][2], sc[2 * kk][3]);
            const uint32_t a2 = fa_pack(sc[2 * kk + 1][0], sc[2 * kk + 1][1]),
                           a3 = fa_pack(sc[2 * kk + 1][2], sc[2 * kk + 1][3]);
#pragma unroll
            for (int j = 0; j < NDT; j += 2) {
                uint32_t b[4];
                fa_ldv(b, vs, QS, kk, j, lane);
                fa_mma(acc[j], a0, a1, a2, a3, b[0], b[1]);
                fa_mma(acc[j + 1], a0, a1, a2, a3, b[2], b[3]);
            }
        }
    }
    fa_cp_wait<0>(); /* (only empty groups can be left) */
    if (!active) return;
#pragma unroll
    for (int i = 0; i < 2; i++) {
        if (rp[i] < 0) continue; /* a pair past the last */
        const int r = rr[i], h = rh[i], sf = rp0[i] / WK_ATT_CHUNK, sidx = s - sf, n_split = s_last - sf + 1;
        if (sidx < 0) continue;
        if (n_split == 1) {
            const float inv = 1.0f / l[i];
#pragma unroll
            for (int j = 0; j < NDT; j++) {
                const size_t oi = (size_t)r * a.ld + h * HD + j * 8 + 2 * t;
                const float o0 = acc[j][2 * i] * inv, o1 = acc[j][2 * i + 1] * inv;
                *reinterpret_cast<float2 *>(a.y32 + oi) = make_float2(o0, o1);
                *reinterpret_cast<__half2 *>(a.y16 + oi) = __floats2half2_rn(o0, o1);
            }
        } else {
            float *outp = a.part + (((size_t)r * a.n_head + h) * max_split + sidx) * (HD + 2);
            if (t == 0) outp[0] = m[i], outp[1] = l[i];
#pragma unroll
            for (int j = 0; j < NDT; j++) {
                outp[2 + j * 8 + 2 * t] = acc[j][2 * i];
                outp[3 + j * 8 + 2 * t] = acc[j][2 * i + 1];
            }
        }
    }
}


#endif
