/* gemm-launch.cuh — host helpers the GEMM launchers share (gemm.cu,
 * gemm-fused.cu). */
#ifndef WK_CUDA_GEMM_LAUNCH_CUH
#define WK_CUDA_GEMM_LAUNCH_CUH

#include "cuda/gemm-tile.cuh"

/* How many blocks of a (staged or paired decode) kernel with `smem` shared bytes are
 * resident at once on the device (0: the driver could not say). The answer
 * is remembered for the few row lengths a model has (one a distinct n_in),
 * so that the launches of an eager step do not ask the driver again. */
template <auto kernel>
static int wave_blocks(size_t smem) {
    static size_t key[4]; /* per instantiation */
    static int val[4], n_keys = 0, n_sm = 0;
    for (int i = 0; i < n_keys; i++)
        if (key[i] == smem) return val[i];
    int dev = 0, max_smem = 0, per_sm = 0;
    if (cudaGetDevice(&dev) != cudaSuccess ||
        (!n_sm && cudaDeviceGetAttribute(&n_sm, cudaDevAttrMultiProcessorCount, dev) != cudaSuccess) ||
        cudaDeviceGetAttribute(&max_smem, cudaDevAttrMaxSharedMemoryPerBlockOptin, dev) != cudaSuccess ||
        cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, max_smem) != cudaSuccess ||
        cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, kernel, GEMM_WARPS * 32, smem) != cudaSuccess) {
        (void)cudaGetLastError();
        return 0;
    }
    if (n_keys < 4) key[n_keys] = smem, val[n_keys++] = per_sm * n_sm;
    return per_sm * n_sm;
}

/* Launch `kernel` (GEMM_WARPS warps a block, smem shared bytes, params p)
 * as `blocks` blocks if all of them are resident at once — one wave — and
 * return true; false, with nothing launched, if they are not. The staged
 * and paired decode kernels rely on it: only in one wave does every block
 * start its weight traffic before the kernel before it ends. */
template <auto kernel, class P>
static bool launch_one_wave(int blocks, size_t smem, int rows, cudaStream_t st, const P &p, cudaError_t *err) {
    if (blocks > wave_blocks<kernel>(smem)) return false;
    *err = wk_launch_pdl(kernel, rows, dim3(blocks), GEMM_WARPS * 32, smem, st, p);
    return true;
}

#endif
