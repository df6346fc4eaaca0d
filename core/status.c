/* status.c — names and messages generated from WK_STATUS_MAP. */
#include "core/status.h"

#include <stdio.h>
#include <stdlib.h>

const char *wk_status_name(wk_status s) {
    switch (s) {
#define XX(name, grpc, msg) case WK_STATUS_##name: return #name;
        WK_STATUS_MAP(XX)
#undef XX
    default: return "UNKNOWN";
    }
}

const char *wk_status_str(wk_status s) {
    switch (s) {
#define XX(name, grpc, msg) case WK_STATUS_##name: return msg;
        WK_STATUS_MAP(XX)
#undef XX
    default: return "unknown status";
    }
}

const char *wk_status_grpc(wk_status s) {
    switch (s) {
#define XX(name, grpc, msg) case WK_STATUS_##name: return grpc;
        WK_STATUS_MAP(XX)
#undef XX
    default: return "UNKNOWN";
    }
}

wk_status wk_errf(char *err, size_t err_len, wk_status s, const char *fmt, ...) {
    if (err && err_len > 0) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, err_len, fmt, ap);
        va_end(ap);
    }
    return s;
}

void wk__assert_fail(const char *expr, const char *file, int line, const char *func) {
    fprintf(stderr, "%s:%d: %s: assertion failed: %s\n", file, line, func, expr);
    fflush(stderr);
    abort();
}
