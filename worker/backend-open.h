/* backend-open.h — open a backend by device name (the one constructor). */
#ifndef WK_BACKEND_OPEN_H
#define WK_BACKEND_OPEN_H

#include "core/backend.h"

enum wk_device_kind { WK_DEVICE_AUTO, WK_DEVICE_CPU, WK_DEVICE_CUDA };

/* "auto" (or NULL) | "cpu" | "cuda" | "cuda:N" -> kind and index;
 * anything else: INVALID_ARGUMENT. */
wk_status wk_device_parse(const char *device, enum wk_device_kind *kind, int *index, char *err, size_t err_len);

/* auto: cuda (device 0) when a CUDA device is usable, else the cpu; a CUDA
 * device that exists but cannot hold the model is an error, not a fallback.
 * cfg may be NULL (defaults); its .device is replaced by the parsed index. */
wk_status wk_backend_open(const struct wk_model *m, const char *device, const struct wk_backend_config *cfg,
                          struct wk_backend **out, char *err, size_t err_len);

#endif
