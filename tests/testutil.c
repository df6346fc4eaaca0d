/* testutil.c — see testutil.h. */
#include "tests/testutil.h"

#include <check.h>

#include "loader/gguf.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

const char *tu_shared_path(char *buf, size_t n, const char *rel) {
    const char *root = getenv("ORCD_SHARED");
    snprintf(buf, n, "%s/%s", root && *root ? root : "../shared", rel);
    return buf;
}

bool tu_have_file(const char *path, const char *what) {
    struct stat st;
    if (stat(path, &st) == 0) return true;
    fprintf(stderr, "SKIP %s: %s not found\n", what, path);
    return false;
}

const char *tu_group(int argc, char **argv) { return argc > 1 ? argv[1] : "base"; }

void tu_require_shared(const char *what, const char *const *rels) {
    bool ok = true;
    for (size_t i = 0; rels[i]; i++) {
        char path[1024];
        tu_shared_path(path, sizeof path, rels[i]);
        struct stat st;
        if (stat(path, &st) != 0) {
            printf("SKIP %s: %s not found\n", what, path);
            ok = false;
        }
    }
    if (!ok) {
        fflush(stdout);
        exit(77);
    }
}

void *tu_read_file(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long sz = ftell(f);
    fseek(f, 0, SEEK_SET);
    void *buf = malloc(sz > 0 ? (size_t)sz : 1);
    if (buf && sz > 0 && fread(buf, 1, (size_t)sz, f) != (size_t)sz) {
        free(buf);
        buf = NULL;
    }
    fclose(f);
    if (buf && len) *len = (size_t)sz;
    return buf;
}

double tu_rel_l2(const float *a, const float *b, size_t n) {
    double num = 0, den = 0;
    for (size_t i = 0; i < n; i++) {
        double d = (double)a[i] - (double)b[i];
        num += d * d;
        den += (double)b[i] * b[i];
    }
    return den > 0 ? sqrt(num / den) : sqrt(num);
}

int32_t *tu_read_ids(const char *path, const char *key, size_t *n) {
    size_t len;
    *n = 0;
    char *txt = tu_read_file(path, &len);
    if (!txt) return NULL;
    char *t2 = realloc(txt, len + 1);
    if (!t2) { free(txt); return NULL; }
    txt = t2;
    txt[len] = 0;
    char pat[64];
    snprintf(pat, sizeof pat, "\n%s:", key);
    char *p = strstr(txt, pat);
    int32_t *ids = NULL;
    size_t k = 0, cap = 256;
    if (p && (ids = malloc(cap * sizeof *ids))) {
        p += strlen(pat);
        while (*p && *p != '\n') {
            char *end;
            long v = strtol(p, &end, 10);
            if (end == p) break;
            if (k == cap) {
                int32_t *g = realloc(ids, (cap *= 2) * sizeof *ids);
                if (!g) break;
                ids = g;
            }
            ids[k++] = (int32_t)v;
            p = end;
        }
    }
    free(txt);
    *n = k;
    return ids;
}

// --- GGUF writer -------------------------------------------------------------

void tu_wb_bytes(struct tu_wb *b, const void *src, size_t n) {
    if (b->n + n > b->cap) {
        size_t c = b->cap ? b->cap : 256;
        while (c < b->n + n) c *= 2;
        uint8_t *p = realloc(b->p, c);
        if (!p) abort(); /* a test helper: nothing sensible to do */
        b->p = p;
        b->cap = c;
    }
    if (n) memcpy(b->p + b->n, src, n);
    b->n += n;
}
void tu_wb_u8(struct tu_wb *b, uint8_t v) { tu_wb_bytes(b, &v, 1); }
void tu_wb_u32(struct tu_wb *b, uint32_t v) { tu_wb_bytes(b, &v, 4); }
void tu_wb_u64(struct tu_wb *b, uint64_t v) { tu_wb_bytes(b, &v, 8); }
void tu_wb_f32(struct tu_wb *b, float v) { tu_wb_bytes(b, &v, 4); }
void tu_wb_str(struct tu_wb *b, const char *s) {
    tu_wb_u64(b, strlen(s));
    tu_wb_bytes(b, s, strlen(s));
}
void tu_wb_zeros(struct tu_wb *b, size_t n) {
    for (size_t i = 0; i < n; i++) tu_wb_u8(b, 0);
}
void tu_wb_pad(struct tu_wb *b, size_t align) {
    while (b->n % align) tu_wb_u8(b, 0);
}
void tu_wb_header(struct tu_wb *b, uint32_t version, uint64_t n_tensors, uint64_t n_kv) {
    tu_wb_u32(b, GGUF_MAGIC);
    tu_wb_u32(b, version);
    tu_wb_u64(b, n_tensors);
    tu_wb_u64(b, n_kv);
}
void tu_wb_kv_u32(struct tu_wb *b, const char *key, uint32_t v) {
    tu_wb_str(b, key);
    tu_wb_u32(b, GGUF_TYPE_UINT32);
    tu_wb_u32(b, v);
}
void tu_wb_kv_str(struct tu_wb *b, const char *key, const char *v) {
    tu_wb_str(b, key);
    tu_wb_u32(b, GGUF_TYPE_STRING);
    tu_wb_str(b, v);
}

int tu_run_suite(Suite *s) {
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    const int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? 1 : 0;
}
