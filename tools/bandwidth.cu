/* bandwidth.cu — device-to-device copy bandwidth of the current CUDA device,
 * for orcd-bench's "share of the card's bandwidth". Kept out of cuda/ (the
 * backend) since only the benchmark needs it.
 *
 * A 1 GiB cudaMemcpyAsync between two device buffers, one warm-up, then
 * ITERS copies timed with events; bandwidth = (read + written bytes) / time.
 */
#include <cuda_runtime.h>

#include "core/status.h"

#define COPY_BYTES ((size_t)1 << 30)
#define ITERS 10

extern "C" wk_status wk_cuda_measure_copy_bandwidth(double *bytes_per_s, char *err, size_t n) {
    void *a = NULL, *b = NULL;
    cudaEvent_t e0 = NULL, e1 = NULL;
    cudaStream_t st = NULL;
    float ms = 0;
    wk_status s = WK_STATUS_OK;
    cudaError_t ce;
    *bytes_per_s = 0;
#define TRY(x)                                                                                  \
    do {                                                                                        \
        ce = (x);                                                                               \
        if (ce != cudaSuccess) {                                                                \
            s = wk_errf(err, n, ce == cudaErrorMemoryAllocation ? WK_STATUS_OOM_DEV : WK_STATUS_CUDA, \
                        "%s: %s: %s", __func__, #x, cudaGetErrorString(ce));                    \
            (void)cudaGetLastError();                                                           \
            goto done;                                                                          \
        }                                                                                       \
    } while (0)
    TRY(cudaMalloc(&a, COPY_BYTES));
    TRY(cudaMalloc(&b, COPY_BYTES));
    TRY(cudaStreamCreateWithFlags(&st, cudaStreamNonBlocking));
    TRY(cudaEventCreate(&e0));
    TRY(cudaEventCreate(&e1));
    TRY(cudaMemsetAsync(a, 1, COPY_BYTES, st));
    TRY(cudaMemcpyAsync(b, a, COPY_BYTES, cudaMemcpyDeviceToDevice, st)); /* warm-up */
    TRY(cudaEventRecord(e0, st));
    for (int i = 0; i < ITERS; i++)
        TRY(cudaMemcpyAsync(i % 2 ? a : b, i % 2 ? b : a, COPY_BYTES, cudaMemcpyDeviceToDevice, st));
    TRY(cudaEventRecord(e1, st));
    TRY(cudaEventSynchronize(e1));
    TRY(cudaEventElapsedTime(&ms, e0, e1));
    if (ms > 0) *bytes_per_s = 2.0 * (double)COPY_BYTES * ITERS / (ms * 1e-3);
#undef TRY
done:
    if (e0) cudaEventDestroy(e0);
    if (e1) cudaEventDestroy(e1);
    if (st) cudaStreamDestroy(st);
    cudaFree(a);
    cudaFree(b);
    return s;
}
