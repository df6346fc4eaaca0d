/* attention.cu — attention of every row of a step over its own sequence's
 * K/V pages, batch-invariant.
 *
 * Two kernels, chosen by the model's head_dim (so one model always runs one
 * of them, decode and prefill alike):
 *   - flash_kernel (hd 64, 96, 128, 256; below): query tiles of one sequence
 *     on the tensor cores, keys in absolute blocks of 64, online softmax per
 *     row — the order is written out above flash_kernel and in cuda/NOTES.md;
 *   - attn_split_kernel (any other hd, e.g. stories260K's 8): one block per
 *     (row, head, split), scalar.
 * Both cut a row's keys at absolute multiples of WK_ATT_CHUNK, so the splits
 * of a row depend only on its own position and window; a row with one split
 * is finished by its split block, otherwise the split's (max, sum, o) go to
 * `part` and a merge kernel folds the splits in split order.
 *
 * Scalar kernel: a row at position pos sees keys [p0, pos] (p0 = pos -
 * window + 1 for a sliding-window layer, else 0). Per (row, head, split), one
 * block of ATT_THREADS threads: scores one thread per key (its K row read in
 * 16-byte loads, dims in order), block max and block sum through the fixed
 * trees of common.cuh, then p·V with thread groups over keys (group g takes
 * keys g, g+G, ...) folded in group order.
 */
#include "cuda/attention.cuh"

__global__ void __launch_bounds__(ATT_THREADS) attn_split_kernel(const __grid_constant__ wk_attn_args a, int max_split) {
    extern __shared__ float sm[]; /* q (hd) | scores (CHUNK) | pv partials (ATT_THREADS) or (G, hd) */
    __shared__ float red[32];
    wk_dep_enter();
    wk_attn_split_body(a, blockIdx.x, blockIdx.y, blockIdx.z, max_split, sm, red);
}

template <bool BASE2>
__global__ void merge_kernel(const __grid_constant__ wk_attn_args a, int max_split) {
    wk_dep_enter();
    wk_attn_merge_body<BASE2>(a, max_split, blockIdx.x, blockIdx.y);
}

template <int HD>
__global__ void __launch_bounds__(256) flash_kernel(const __grid_constant__ wk_attn_args a, int n_rows, int max_split,
                                                    int hgroups) {
    extern __shared__ __align__(16) unsigned char fa_sm[];
    wk_flash_body<HD>(a, n_rows, max_split, hgroups, blockIdx.x, blockIdx.y, blockIdx.z, fa_sm);
}

static cudaError_t scalar_attention(const wk_attn_args &a, int n_rows, int max_split, cudaStream_t st) {
    const size_t smem = wk_att_split_smem(a.hd);
    cudaError_t e = wk_launch_pdl(attn_split_kernel, n_rows, dim3(n_rows, a.n_head, max_split), ATT_THREADS, smem, st, a,
                                  max_split);
    if (e != cudaSuccess || max_split == 1) return e;
    return wk_launch_pdl(merge_kernel<false>, n_rows, dim3(n_rows, a.n_head), 128, 0, st, a, max_split);
}

template <int HD>
static cudaError_t launch_flash(const wk_attn_args &a, int n_rows, int max_split, cudaStream_t st) {
    const int G = a.n_head / a.n_head_kv, nw = G < 8 ? G : 8, hgroups = (G + 7) / 8;
    const size_t smem = wk_flash_smem(HD, nw);
    static size_t smem_set = 0;
    if (smem > 48 * 1024 && smem > smem_set) {
        cudaError_t e = cudaFuncSetAttribute(flash_kernel<HD>, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem);
        if (e != cudaSuccess) return e;
        smem_set = smem;
    }
    cudaError_t e = wk_launch_pdl(flash_kernel<HD>, n_rows, dim3(n_rows, a.n_head_kv * hgroups, max_split), nw * 32, smem, st,
                                  a, n_rows, max_split, hgroups);
    if (e != cudaSuccess || max_split == 1) return e;
    return wk_launch_pdl(merge_kernel<true>, n_rows, dim3(n_rows, a.n_head), 128, 0, st, a, max_split);
}

cudaError_t wk_cu_attention(const wk_attn_args &a, int n_rows, int max_split, cudaStream_t st) {
    if (n_rows <= 0) return cudaSuccess;
    if (a.n_head % a.n_head_kv == 0) switch (a.hd) {
        case 64: return launch_flash<64>(a, n_rows, max_split, st);
        case 96: return launch_flash<96>(a, n_rows, max_split, st);
        case 128: return launch_flash<128>(a, n_rows, max_split, st);
        case 256: return launch_flash<256>(a, n_rows, max_split, st);
        default: break;
        }
    return scalar_attention(a, n_rows, max_split, st);
}
