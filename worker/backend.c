/* backend.c — pick a backend by device name (see backend.h). */
#include "worker/backend.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "loader/model.h"

#define WK_DEFAULT_CTX_CAP 4096

wk_status wk_backend_create(const struct wk_model *m, const char *device, int n_ctx,
                            struct wk_backend **out, char *err, size_t err_len) {
    *out = NULL;
    if (!m) return wk_errf(err, err_len, WK_STATUS_INVALID_ARGUMENT, "%s: no model", __func__);
    if (n_ctx <= 0) {
        n_ctx = m->hp.n_ctx_train > 0 ? m->hp.n_ctx_train : WK_DEFAULT_CTX_CAP;
        if (n_ctx > WK_DEFAULT_CTX_CAP) n_ctx = WK_DEFAULT_CTX_CAP;
    }
    if (!device || strcmp(device, "cpu") == 0)
        return wk_backend_cpu_create(m, n_ctx, 0, out, err, err_len);
    if (strcmp(device, "cuda") == 0) return wk_backend_cuda_create(m, n_ctx, 0, out, err, err_len);
    if (strncmp(device, "cuda:", 5) == 0) {
        const char *num = device + 5;
        char *end = NULL;
        errno = 0;
        long idx = strtol(num, &end, 10);
        if (*num == '\0' || *end != '\0' || errno != 0 || idx < 0 || idx > 1024)
            return wk_errf(err, err_len, WK_STATUS_INVALID_ARGUMENT,
                           "%s: device '%s': expected cuda:N with N a device index", __func__, device);
        return wk_backend_cuda_create(m, n_ctx, (int)idx, out, err, err_len);
    }
    return wk_errf(err, err_len, WK_STATUS_INVALID_ARGUMENT,
                   "%s: device '%s': expected cpu, cuda or cuda:N", __func__, device);
}
