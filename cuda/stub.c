/* stub.c — the CUDA backend entry point in builds without nvcc. */
#include "core/backend.h"

wk_status wk_backend_cuda_create(const struct wk_model *m, const struct wk_backend_config *cfg,
                                 struct wk_backend **out, char *err, size_t err_len) {
    (void)m; (void)cfg;
    *out = NULL;
    return wk_errf(err, err_len, WK_STATUS_UNAVAILABLE,
                   "this worker was built without CUDA (meson -Dcuda=disabled)");
}
