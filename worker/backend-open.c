/* backend-open.c — the one backend constructor: a device name
 * (auto | cpu | cuda | cuda:N) to a backend. The only place a device
 * string is parsed; the worker, orcd-bench and orcd-logits all come here. */
#include "worker/backend-open.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"

wk_status wk_device_parse(const char *device, enum wk_device_kind *kind, int *index, char *err, size_t err_len) {
    *index = 0;
    if (!device || !strcmp(device, "auto")) { *kind = WK_DEVICE_AUTO; return WK_STATUS_OK; }
    if (!strcmp(device, "cpu")) { *kind = WK_DEVICE_CPU; return WK_STATUS_OK; }
    *kind = WK_DEVICE_CUDA;
    if (!strcmp(device, "cuda")) return WK_STATUS_OK;
    if (!strncmp(device, "cuda:", 5)) {
        const char *num = device + 5;
        char *end = NULL;
        errno = 0;
        long idx = strtol(num, &end, 10);
        if (*num >= '0' && *num <= '9' && *end == '\0' && errno == 0 && idx <= 1024) {
            *index = (int)idx;
            return WK_STATUS_OK;
        }
    }
    return wk_errf(err, err_len, WK_STATUS_INVALID_ARGUMENT,
                   "device '%s': expected auto, cpu, cuda or cuda:N (N a device index)", device);
}

wk_status wk_backend_open(const struct wk_model *m, const char *device, const struct wk_backend_config *cfg,
                          struct wk_backend **out, char *err, size_t err_len) {
    *out = NULL;
    if (!m) return wk_errf(err, err_len, WK_STATUS_INVALID_ARGUMENT, "%s: no model", __func__);
    enum wk_device_kind kind;
    struct wk_backend_config c = cfg ? *cfg : (struct wk_backend_config){0};
    wk_status s = wk_device_parse(device, &kind, &c.device, err, err_len);
    if (s != WK_STATUS_OK) return s;
    switch (kind) {
    case WK_DEVICE_CPU:
        return wk_backend_cpu_create(m, &c, out, err, err_len);
    case WK_DEVICE_CUDA:
        return wk_backend_cuda_create(m, &c, out, err, err_len);
    case WK_DEVICE_AUTO:
        s = wk_backend_cuda_create(m, &c, out, err, err_len);
        if (s != WK_STATUS_UNAVAILABLE && s != WK_STATUS_CUDA) return s; /* OK, or e.g. OOM_DEV */
        wk_log(WK_LOG_INFO, "device auto: no usable CUDA device (%s); using the cpu", err);
        return wk_backend_cpu_create(m, &c, out, err, err_len);
    }
    return WK_STATUS_INTERNAL;
}
