/* check.h — the CUDA backend's one error-check generator (STYLE §9).
 *
 *   CUDA_CHECK(x)   fatal: the context is gone (log file:line and abort)
 *   CUDA_TRY(x)     recoverable: fill err (the caller's `err`, `err_len`) and
 *                   return WK_STATUS_CUDA from the calling function
 *   CUBLAS_TRY(x)   the same for cuBLAS, returning WK_STATUS_CUBLAS
 *   TRY(x)          propagate a wk_status
 * A failed call's sticky-free error is cleared with cudaGetLastError() as
 * ggml does, so a recoverable failure (an OOM) does not poison later calls.
 */
#ifndef WK_CUDA_CHECK_H
#define WK_CUDA_CHECK_H

#include <stdlib.h>

#include "core/log.h"
#include "core/status.h"

#define WK_CU_CHECK_GEN(expr, type, ok, to_str, fail)                                       \
    do {                                                                                    \
        type e_ = (expr);                                                                   \
        if (e_ != (ok)) {                                                                   \
            (void)cudaGetLastError();                                                       \
            fail(#expr, to_str(e_));                                                        \
        }                                                                                   \
    } while (0)

#define WK_CU_FAIL_FATAL_(what, msg)                                                        \
    do {                                                                                    \
        wk_log(WK_LOG_ERROR, "%s: %s failed at %s:%d: %s", __func__, what, __FILE__,        \
               __LINE__, msg);                                                              \
        abort();                                                                            \
    } while (0)
#define WK_CU_FAIL_CUDA_(what, msg)                                                         \
    return wk_errf(err, err_len, WK_STATUS_CUDA, "%s: %s failed at %s:%d: %s", __func__,    \
                   what, __FILE__, __LINE__, msg)
#define WK_CU_FAIL_CUBLAS_(what, msg)                                                       \
    return wk_errf(err, err_len, WK_STATUS_CUBLAS, "%s: %s failed at %s:%d: %s", __func__,  \
                   what, __FILE__, __LINE__, msg)

#define CUDA_CHECK(x) WK_CU_CHECK_GEN(x, cudaError_t, cudaSuccess, cudaGetErrorString, WK_CU_FAIL_FATAL_)
#define CUDA_TRY(x) WK_CU_CHECK_GEN(x, cudaError_t, cudaSuccess, cudaGetErrorString, WK_CU_FAIL_CUDA_)
#define CUBLAS_TRY(x) WK_CU_CHECK_GEN(x, cublasStatus_t, CUBLAS_STATUS_SUCCESS, cublasGetStatusString, WK_CU_FAIL_CUBLAS_)

#define TRY(x)                                                                              \
    do {                                                                                    \
        wk_status st_ = (x);                                                                \
        if (st_ != WK_STATUS_OK) return st_;                                                \
    } while (0)

#endif
