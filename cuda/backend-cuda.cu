// placeholder: the CUDA backend is not written yet.
#include "worker/backend.h"

extern "C" wk_status wk_backend_cuda_create(const struct wk_model *m, int n_ctx, int device,
                                            struct wk_backend **out, char *err, size_t err_len) {
    (void)m; (void)n_ctx; (void)device;
    *out = NULL;
    return wk_errf(err, err_len, WK_STATUS_UNIMPLEMENTED, "%s: not written yet", __func__);
}
