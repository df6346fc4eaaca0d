/* status.h — the one error table of the project.
 *
 * Every recoverable failure returns a wk_status and fills a caller-owned
 * `char *err, size_t err_len` buffer with "func: what was wrong" (STYLE.md
 * §4.4-4.5). The table maps each status to a gRPC status name, which is what
 * the worker sends in Error responses.
 */
#ifndef WK_STATUS_H
#define WK_STATUS_H

#include <stdarg.h>
#include <stddef.h>

/*      name               grpc name             message */
#define WK_STATUS_MAP(XX)                                                   \
    XX(OK,              "OK",                  "ok")                        \
    XX(IO,              "UNAVAILABLE",         "i/o error")                 \
    XX(BAD_FRAME,       "INVALID_ARGUMENT",    "malformed request frame")   \
    XX(BAD_GGUF,        "INVALID_ARGUMENT",    "invalid or unsupported GGUF file") \
    XX(BAD_MODEL,       "FAILED_PRECONDITION", "unsupported model")         \
    XX(INVALID_ARGUMENT,"INVALID_ARGUMENT",    "invalid argument")          \
    XX(OUT_OF_RANGE,    "OUT_OF_RANGE",        "out of range")              \
    XX(NOT_FOUND,       "NOT_FOUND",           "not found")                 \
    XX(ALREADY_EXISTS,  "ALREADY_EXISTS",      "already exists")            \
    XX(OOM_HOST,        "RESOURCE_EXHAUSTED",  "host allocation failed")    \
    XX(OOM_DEV,         "RESOURCE_EXHAUSTED",  "device allocation failed")  \
    XX(RESOURCE_EXHAUSTED,"RESOURCE_EXHAUSTED","resource exhausted")        \
    XX(CANCELLED,       "CANCELLED",           "cancelled")                 \
    XX(UNAVAILABLE,     "UNAVAILABLE",         "unavailable")               \
    XX(UNIMPLEMENTED,   "UNIMPLEMENTED",       "not implemented")           \
    XX(CUDA,            "INTERNAL",            "CUDA runtime error")        \
    XX(CUBLAS,          "INTERNAL",            "cuBLAS error")              \
    XX(INTERNAL,        "INTERNAL",            "internal error")

typedef enum wk_status {
#define WK_STATUS_ENUM(name, grpc, msg) WK_STATUS_##name,
    WK_STATUS_MAP(WK_STATUS_ENUM)
#undef WK_STATUS_ENUM
    WK_STATUS__COUNT
} wk_status;

#ifdef __cplusplus
extern "C" {
#endif

/* "BAD_GGUF" */
const char *wk_status_name(wk_status s);
/* "invalid or unsupported GGUF file" */
const char *wk_status_str(wk_status s);
/* gRPC status name, e.g. "INVALID_ARGUMENT" */
const char *wk_status_grpc(wk_status s);

/* snprintf into err (when err != NULL), then return s. Lets a failing site
 * write `return wk_errf(err, n, WK_STATUS_BAD_GGUF, "%s: ...", __func__, ...)`. */
wk_status wk_errf(char *err, size_t err_len, wk_status s, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 4, 5)))
#endif
    ;

/* Bugs abort, bad inputs return (STYLE.md §4.8). */
void wk__assert_fail(const char *expr, const char *file, int line, const char *func);
#define WK_ASSERT(x) \
    do { if (!(x)) wk__assert_fail(#x, __FILE__, __LINE__, __func__); } while (0)

#ifdef __cplusplus
}
#endif

#endif
