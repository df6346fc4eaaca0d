/* fuzz-gguf.c — libFuzzer target for the GGUF parser.
 *
 * Build: CC=clang meson setup build-fuzz -Dfuzz=true -Dcuda=disabled -Db_lundef=false
 *        ninja -C build-fuzz tests/fuzz-gguf
 * Seed:  python3 tools/make-gguf-corpus.py   (writes fuzz-corpus-gguf/)
 * Run:   build-fuzz/tests/fuzz-gguf fuzz-corpus-gguf -max_total_time=300 -rss_limit_mb=2048
 *
 * Each input is parsed from a private copy of exactly its size (ASan catches
 * any read past the end); on success every accessor is exercised on every
 * key, array element and tensor, and the tensor views are checked against
 * the buffer bounds. A failure must come with BAD_GGUF (or OOM) and a
 * message. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "loader/gguf.h"
#include "loader/quants.h"

static volatile uint64_t g_sink; /* keeps the reads from being optimized out */

static void touch_str(struct gguf_str s) {
    if (s.len) g_sink += (uint8_t)s.ptr[0] + (uint8_t)s.ptr[s.len - 1];
}

static void walk_value(const struct gguf_value *v, int depth) {
    if (depth > GGUF_MAX_ARRAY_DEPTH) abort();
    if (v->type == GGUF_TYPE_STRING) touch_str(v->v.str);
    if (v->type != GGUF_TYPE_ARRAY) return;
    uint64_t n = v->v.arr.n;
    for (uint64_t i = 0; i < n; i++) {
        double d;
        int64_t x;
        struct gguf_str s;
        bool num = gguf_arr_f64(v, i, &d);
        if (num) g_sink += (uint64_t)(d == d);
        if (gguf_arr_i64(v, i, &x)) g_sink += (uint64_t)x;
        if (gguf_arr_str(v, i, &s)) touch_str(s);
        if (v->v.arr.type == GGUF_TYPE_ARRAY) walk_value(&v->v.arr.arrs[i], depth + 1);
        if (i > 4096) break; /* long arrays: the rest is the same code */
    }
    /* out of range is refused */
    double d;
    if (gguf_arr_f64(v, n, &d)) abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    uint8_t *buf = malloc(size ? size : 1);
    if (!buf) return 0;
    if (size) memcpy(buf, data, size);

    struct gguf_file f;
    char err[256];
    err[0] = '\0';
    wk_status st = gguf_file_parse(buf, size, &f, err, sizeof err);
    if (st != WK_STATUS_OK) {
        if (st != WK_STATUS_BAD_GGUF && st != WK_STATUS_OOM_HOST) abort();
        if (strncmp(err, "gguf_file_parse: ", 17) != 0) abort();
        if (f.kv || f.tensors) abort();
        gguf_file_close(&f);
        free(buf);
        return 0;
    }

    for (uint64_t i = 0; i < f.n_kv; i++) {
        const struct gguf_kv *kv = &f.kv[i];
        /* keys are unique, so lookup by a NUL-terminated copy finds this one */
        char key[128];
        if (kv->key.len < sizeof key && memchr(kv->key.ptr, 0, kv->key.len) == NULL) {
            memcpy(key, kv->key.ptr, kv->key.len);
            key[kv->key.len] = '\0';
            if (gguf_find_kv(&f, key) != kv) abort();
            int64_t x;
            uint32_t u;
            float fl;
            bool b;
            struct gguf_str s;
            const struct gguf_value *arr;
            g_sink += gguf_get_i64(&f, key, &x) ? (uint64_t)x : 0;
            g_sink += gguf_get_u32(&f, key, &u) ? u : 0;
            g_sink += gguf_get_f32(&f, key, &fl) ? (fl == fl) : 0;
            g_sink += gguf_get_bool(&f, key, &b) ? b : 0;
            if (gguf_get_str(&f, key, &s)) touch_str(s);
            if (gguf_get_arr(&f, key, &arr) && arr != &kv->value) abort();
        }
        (void)gguf_type_name(kv->value.type);
        walk_value(&kv->value, 0);
    }

    if (f.alignment == 0 || (f.alignment & (f.alignment - 1))) abort();
    if (f.data_offset > size) abort();
    for (uint64_t i = 0; i < f.n_tensors; i++) {
        const struct gguf_tensor_info *t = &f.tensors[i];
        if (t->n_dims < 1 || t->n_dims > GGUF_MAX_DIMS) abort();
        const struct wk_type_info *ti = wk_type_info(t->type);
        if (!ti || t->ne[0] % ti->block_size) abort();
        const uint8_t *p = t->data;
        if (p < buf || p > buf + size || t->nbytes > (uint64_t)(buf + size - p)) abort();
        if (t->offset % f.alignment) abort();
        if (t->nbytes) g_sink += p[0] + p[t->nbytes - 1];
        char name[GGUF_MAX_NAME];
        if (t->name.len >= sizeof name) abort();
        memcpy(name, t->name.ptr, t->name.len);
        name[t->name.len] = '\0';
        if (!memchr(t->name.ptr, 0, t->name.len) && gguf_find_tensor(&f, name) != t) abort();
    }
    (void)gguf_find_tensor(&f, "token_embd.weight");
    (void)gguf_find_kv(&f, "general.architecture");

    gguf_file_close(&f);
    free(buf);
    return 0;
}
