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

#endif
