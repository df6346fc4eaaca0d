/* test-gguf.c — the GGUF parser: real model files, a hand-built file that
 * uses every value type, and corrupt files (each must give BAD_GGUF with a
 * message naming what was wrong, never a crash).
 *
 * Synthetic files are written with a small in-test writer (struct tu_wb) that
 * encodes the layout documented in loader/gguf.h. Every corrupt file is
 * parsed from its own malloc'ed buffer of exactly its length, so a read past
 * the end shows up under ASan/valgrind. */
#include <check.h>
#include <dirent.h>
#include <fcntl.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "loader/gguf.h"
#include "loader/quants.h"
#include "tests/testutil.h"

// ---------------------------------------------------------------------------
// a tiny GGUF writer

/* Tensor info with dims ne[0..n_dims). */
static void wb_tensor(struct tu_wb *b, const char *name, uint32_t n_dims, const uint64_t *ne,
                      uint32_t type, uint64_t offset) {
    tu_wb_str(b, name);
    tu_wb_u32(b, n_dims);
    for (uint32_t i = 0; i < n_dims; i++) tu_wb_u64(b, ne[i]);
    tu_wb_u32(b, type);
    tu_wb_u64(b, offset);
}

/* Parse a copy of b's bytes of exactly `n` bytes. */
static wk_status parse_n(const struct tu_wb *b, size_t n, struct gguf_file *f, char *err, size_t len) {
    void *copy = malloc(n ? n : 1);
    ck_assert_ptr_nonnull(copy);
    memcpy(copy, b->p, n);
    wk_status st = gguf_file_parse(copy, n, f, err, len);
    if (st == WK_STATUS_OK) {
        /* keep the buffer alive with the result: tests free it via f->base */
        return st;
    }
    free(copy);
    return st;
}

static void parsed_free(struct gguf_file *f) {
    void *base = (void *)f->base;
    gguf_file_close(f);
    free(base);
}

/* Expect BAD_GGUF with a message that contains every string in `needles`
 * (NULL-terminated). */
static void expect_bad_v(const struct tu_wb *b, const char *const *needles) {
    struct gguf_file f;
    char err[256] = "";
    wk_status st = parse_n(b, b->n, &f, err, sizeof err);
    if (st == WK_STATUS_OK) parsed_free(&f);
    ck_assert_msg(st == WK_STATUS_BAD_GGUF, "status %s, err '%s'", wk_status_name(st), err);
    ck_assert_msg(strncmp(err, "gguf_file_parse: ", 17) == 0, "message '%s' lacks the prefix", err);
    for (int i = 0; needles[i]; i++)
        ck_assert_msg(strstr(err, needles[i]) != NULL, "message '%s' lacks '%s'", err, needles[i]);
    /* the failed parse left a closed struct */
    ck_assert_ptr_null(f.kv);
    ck_assert_ptr_null(f.tensors);
    ck_assert_int_eq(f.fd, -1);
}
#define expect_bad(b, ...) expect_bad_v((b), (const char *const[]){__VA_ARGS__, NULL})

// ---------------------------------------------------------------------------
// a small valid file that uses every value type
//
//   kv: general.architecture = "llama"          string
//       t.u8 = 200 ; t.i8 = -5 ; t.u16 = 60000 ; t.i16 = -30000
//       t.u32 = 4000000000 ; t.i32 = -2000000000 ; t.f32 = 1.5
//       t.bool = true ; t.u64 = 2^63 + 5 ; t.i64 = -2^40 ; t.f64 = -0.25
//       t.strs = ["a", "", "ccc"]                array of string
//       t.i32s = [1, -2, 3]                      array of int32
//       t.f32s = [0.5, 2.0]                      array of float32
//       t.nested = [[1, 2], [], [3]]             array of array of uint16
//   tensors: "a" {4, 2} f32 at 0 (32 bytes); "b" {32} q8_0 at 32 (34 bytes)
//   data: 32-byte aligned; a's floats are 0..7; the file ends with b's data.
#define VALID_N_KV 16

static void build_valid(struct tu_wb *b, uint32_t version) {
    tu_wb_header(b, version, 2, VALID_N_KV);
    tu_wb_kv_str(b, "general.architecture", "llama");
    tu_wb_str(b, "t.u8"); tu_wb_u32(b, GGUF_TYPE_UINT8); tu_wb_u8(b, 200);
    tu_wb_str(b, "t.i8"); tu_wb_u32(b, GGUF_TYPE_INT8); tu_wb_u8(b, (uint8_t)-5);
    tu_wb_str(b, "t.u16"); tu_wb_u32(b, GGUF_TYPE_UINT16); { uint16_t v = 60000; tu_wb_bytes(b, &v, 2); }
    tu_wb_str(b, "t.i16"); tu_wb_u32(b, GGUF_TYPE_INT16); { int16_t v = -30000; tu_wb_bytes(b, &v, 2); }
    tu_wb_kv_u32(b, "t.u32", 4000000000u);
    tu_wb_str(b, "t.i32"); tu_wb_u32(b, GGUF_TYPE_INT32); { int32_t v = -2000000000; tu_wb_bytes(b, &v, 4); }
    tu_wb_str(b, "t.f32"); tu_wb_u32(b, GGUF_TYPE_FLOAT32); tu_wb_f32(b, 1.5f);
    tu_wb_str(b, "t.bool"); tu_wb_u32(b, GGUF_TYPE_BOOL); tu_wb_u8(b, 1);
    tu_wb_str(b, "t.u64"); tu_wb_u32(b, GGUF_TYPE_UINT64); tu_wb_u64(b, (1ull << 63) + 5);
    tu_wb_str(b, "t.i64"); tu_wb_u32(b, GGUF_TYPE_INT64); { int64_t v = -(1ll << 40); tu_wb_bytes(b, &v, 8); }
    tu_wb_str(b, "t.f64"); tu_wb_u32(b, GGUF_TYPE_FLOAT64); { double v = -0.25; tu_wb_bytes(b, &v, 8); }
    tu_wb_str(b, "t.strs"); tu_wb_u32(b, GGUF_TYPE_ARRAY); tu_wb_u32(b, GGUF_TYPE_STRING); tu_wb_u64(b, 3);
    tu_wb_str(b, "a"); tu_wb_str(b, ""); tu_wb_str(b, "ccc");
    tu_wb_str(b, "t.i32s"); tu_wb_u32(b, GGUF_TYPE_ARRAY); tu_wb_u32(b, GGUF_TYPE_INT32); tu_wb_u64(b, 3);
    { int32_t v[3] = {1, -2, 3}; tu_wb_bytes(b, v, sizeof v); }
    tu_wb_str(b, "t.f32s"); tu_wb_u32(b, GGUF_TYPE_ARRAY); tu_wb_u32(b, GGUF_TYPE_FLOAT32); tu_wb_u64(b, 2);
    tu_wb_f32(b, 0.5f); tu_wb_f32(b, 2.0f);
    tu_wb_str(b, "t.nested"); tu_wb_u32(b, GGUF_TYPE_ARRAY); tu_wb_u32(b, GGUF_TYPE_ARRAY); tu_wb_u64(b, 3);
    { uint16_t v[3] = {1, 2, 3};
      tu_wb_u32(b, GGUF_TYPE_UINT16); tu_wb_u64(b, 2); tu_wb_bytes(b, v, 4);
      tu_wb_u32(b, GGUF_TYPE_UINT16); tu_wb_u64(b, 0);
      tu_wb_u32(b, GGUF_TYPE_UINT16); tu_wb_u64(b, 1); tu_wb_bytes(b, v + 2, 2); }
    const uint64_t ne_a[2] = {4, 2}, ne_b[1] = {32};
    wb_tensor(b, "a", 2, ne_a, GGML_TYPE_F32, 0);
    wb_tensor(b, "b", 1, ne_b, GGML_TYPE_Q8_0, 32);
    tu_wb_pad(b, 32);
    for (int i = 0; i < 8; i++) tu_wb_f32(b, (float)i);
    for (int i = 0; i < 34; i++) tu_wb_u8(b, (uint8_t)(0xa0 + i));
}

static void check_valid(const struct gguf_file *f, uint32_t version) {
    ck_assert_uint_eq(f->version, version);
    ck_assert_uint_eq(f->n_kv, VALID_N_KV);
    ck_assert_uint_eq(f->n_tensors, 2);
    ck_assert_uint_eq(f->alignment, 32);
    ck_assert_uint_eq(f->data_offset % 32, 0);
    ck_assert_uint_eq(f->data_offset + 32 + 34, f->size);

    struct gguf_str s;
    ck_assert(gguf_get_str(f, "general.architecture", &s));
    ck_assert(gguf_str_eq(s, "llama"));
    ck_assert(!gguf_str_eq(s, "llam"));
    ck_assert(!gguf_str_eq(s, "llamas"));

    int64_t i64;
    uint32_t u32;
    float f32;
    bool bv;
    ck_assert(gguf_get_i64(f, "t.u8", &i64)); ck_assert_int_eq(i64, 200);
    ck_assert(gguf_get_i64(f, "t.i8", &i64)); ck_assert_int_eq(i64, -5);
    ck_assert(gguf_get_u32(f, "t.u16", &u32)); ck_assert_uint_eq(u32, 60000);
    ck_assert(gguf_get_i64(f, "t.i16", &i64)); ck_assert_int_eq(i64, -30000);
    ck_assert(gguf_get_u32(f, "t.u32", &u32)); ck_assert_uint_eq(u32, 4000000000u);
    ck_assert(gguf_get_i64(f, "t.u32", &i64)); ck_assert_int_eq(i64, 4000000000ll);
    ck_assert(gguf_get_i64(f, "t.i32", &i64)); ck_assert_int_eq(i64, -2000000000);
    ck_assert(!gguf_get_u32(f, "t.i32", &u32)); /* negative: out of range */
    ck_assert(!gguf_get_u32(f, "t.i8", &u32));
    ck_assert(gguf_get_f32(f, "t.f32", &f32)); ck_assert(f32 == 1.5f);
    ck_assert(gguf_get_f32(f, "t.f64", &f32)); ck_assert(f32 == -0.25f);
    ck_assert(gguf_get_f32(f, "t.i16", &f32)); ck_assert(f32 == -30000.0f);
    ck_assert(gguf_get_bool(f, "t.bool", &bv)); ck_assert(bv);
    ck_assert(gguf_get_i64(f, "t.bool", &i64)); ck_assert_int_eq(i64, 1);
    ck_assert(gguf_get_u32(f, "t.bool", &u32)); ck_assert_uint_eq(u32, 1);
    ck_assert(gguf_get_f32(f, "t.u32", &f32)); ck_assert(f32 == 4e9f);
    ck_assert_str_eq(gguf_type_name(gguf_find_kv(f, "t.i8")->value.type), "int8");
    ck_assert_str_eq(gguf_type_name(gguf_find_kv(f, "t.nested")->value.type), "array");
    ck_assert_str_eq(gguf_type_name(GGUF_TYPE__COUNT), "unknown");
    ck_assert(!gguf_get_i64(f, "t.u64", &i64)); /* 2^63+5 does not fit int64 */
    ck_assert(!gguf_get_u32(f, "t.u64", &u32));
    ck_assert_uint_eq(gguf_find_kv(f, "t.u64")->value.v.u64, (1ull << 63) + 5);
    ck_assert(gguf_get_i64(f, "t.i64", &i64)); ck_assert_int_eq(i64, -(1ll << 40));
    ck_assert(!gguf_get_u32(f, "t.i64", &u32));
    /* incompatible types and absent keys */
    ck_assert(!gguf_get_str(f, "t.u8", &s));
    ck_assert(!gguf_get_i64(f, "t.f32", &i64));
    ck_assert(!gguf_get_i64(f, "general.architecture", &i64));
    ck_assert(!gguf_get_f32(f, "general.architecture", &f32));
    ck_assert(!gguf_get_bool(f, "t.u8", &bv));
    ck_assert(!gguf_get_i64(f, "no.such.key", &i64));
    ck_assert_ptr_null(gguf_find_kv(f, "t.u"));
    ck_assert_ptr_null(gguf_find_kv(f, "t.u88"));

    const struct gguf_value *arr;
    ck_assert(!gguf_get_arr(f, "t.u8", &arr));
    ck_assert(gguf_get_arr(f, "t.strs", &arr));
    ck_assert_int_eq(arr->v.arr.type, GGUF_TYPE_STRING);
    ck_assert_uint_eq(arr->v.arr.n, 3);
    ck_assert(gguf_arr_str(arr, 0, &s) && gguf_str_eq(s, "a"));
    ck_assert(gguf_arr_str(arr, 1, &s) && s.len == 0);
    ck_assert(gguf_arr_str(arr, 2, &s) && gguf_str_eq(s, "ccc"));
    ck_assert(!gguf_arr_str(arr, 3, &s));
    double d;
    ck_assert(!gguf_arr_f64(arr, 0, &d)); /* strings are not numeric */

    ck_assert(gguf_get_arr(f, "t.i32s", &arr));
    ck_assert_uint_eq(arr->v.arr.n, 3);
    ck_assert(gguf_arr_i64(arr, 1, &i64)); ck_assert_int_eq(i64, -2);
    ck_assert(gguf_arr_f64(arr, 2, &d)); ck_assert(d == 3.0);
    ck_assert(!gguf_arr_i64(arr, 3, &i64));
    ck_assert(!gguf_arr_str(arr, 0, &s));

    ck_assert(gguf_get_arr(f, "t.f32s", &arr));
    ck_assert(gguf_arr_f64(arr, 0, &d)); ck_assert(d == 0.5);
    ck_assert(gguf_arr_i64(arr, 1, &i64)); ck_assert_int_eq(i64, 2); /* integral float */
    ck_assert(!gguf_arr_i64(arr, 0, &i64));                           /* 0.5 is not */

    ck_assert(gguf_get_arr(f, "t.nested", &arr));
    ck_assert_int_eq(arr->v.arr.type, GGUF_TYPE_ARRAY);
    ck_assert_uint_eq(arr->v.arr.n, 3);
    ck_assert(!gguf_arr_i64(arr, 0, &i64)); /* elements are arrays */
    const struct gguf_value *in = arr->v.arr.arrs;
    ck_assert_int_eq(in[0].type, GGUF_TYPE_ARRAY);
    ck_assert_int_eq(in[0].v.arr.type, GGUF_TYPE_UINT16);
    ck_assert_uint_eq(in[0].v.arr.n, 2);
    ck_assert_uint_eq(in[1].v.arr.n, 0);
    ck_assert_uint_eq(in[2].v.arr.n, 1);
    ck_assert(gguf_arr_i64(&in[0], 1, &i64)); ck_assert_int_eq(i64, 2);
    ck_assert(gguf_arr_i64(&in[2], 0, &i64)); ck_assert_int_eq(i64, 3);
    ck_assert(!gguf_arr_i64(&in[1], 0, &i64));

    const struct gguf_tensor_info *ta = gguf_find_tensor(f, "a");
    const struct gguf_tensor_info *tb = gguf_find_tensor(f, "b");
    ck_assert_ptr_nonnull(ta);
    ck_assert_ptr_nonnull(tb);
    ck_assert_ptr_null(gguf_find_tensor(f, "c"));
    ck_assert_ptr_null(gguf_find_tensor(f, "ab"));
    ck_assert_uint_eq(ta->n_dims, 2);
    ck_assert_int_eq(ta->ne[0], 4);
    ck_assert_int_eq(ta->ne[1], 2);
    ck_assert_int_eq(ta->ne[2], 1);
    ck_assert_int_eq(ta->ne[3], 1);
    ck_assert_uint_eq(ta->type, GGML_TYPE_F32);
    ck_assert_uint_eq(ta->nbytes, 32);
    ck_assert_ptr_eq(ta->data, f->base + f->data_offset);
    float fl[8];
    memcpy(fl, ta->data, sizeof fl);
    for (int i = 0; i < 8; i++) ck_assert(fl[i] == (float)i);
    ck_assert_uint_eq(tb->n_dims, 1);
    ck_assert_int_eq(tb->ne[0], 32);
    ck_assert_uint_eq(tb->nbytes, 34);
    ck_assert_uint_eq(tb->offset, 32);
    ck_assert_uint_eq(((const uint8_t *)tb->data)[0], 0xa0);
    ck_assert_uint_eq(((const uint8_t *)tb->data)[33], 0xa0 + 33);
}

START_TEST(test_valid_v3_and_v2) {
    for (uint32_t version = 2; version <= 3; version++) {
        struct tu_wb b = {0};
        build_valid(&b, version);
        struct gguf_file f;
        char err[256] = "";
        wk_status st = gguf_file_parse(b.p, b.n, &f, err, sizeof err);
        ck_assert_msg(st == WK_STATUS_OK, "v%u: %s", version, err);
        check_valid(&f, version);
        gguf_file_close(&f);
        ck_assert_ptr_null(f.kv);
        gguf_file_close(&f); /* twice is fine */
        free(b.p);
    }
}
END_TEST

START_TEST(test_close_safe) {
    gguf_file_close(NULL);
    /* a zeroed struct has fd 0, which must not be closed */
    int fd = open("/dev/null", O_RDONLY);
    ck_assert_int_ge(fd, 0);
    int saved = dup(0);
    ck_assert_int_eq(dup2(fd, 0), 0);
    struct gguf_file z;
    memset(&z, 0, sizeof z);
    gguf_file_close(&z);
    ck_assert_int_ne(fcntl(0, F_GETFD), -1);
    ck_assert_int_eq(z.fd, -1);
    gguf_file_close(&z); /* and again */
    dup2(saved, 0);
    close(saved);
    close(fd);
}
END_TEST

/* Every strict prefix of the valid file is refused cleanly. */
START_TEST(test_every_truncation) {
    struct tu_wb b = {0};
    build_valid(&b, 3);
    for (size_t n = 0; n < b.n; n++) {
        struct gguf_file f;
        char err[256] = "";
        wk_status st = parse_n(&b, n, &f, err, sizeof err);
        if (st == WK_STATUS_OK) parsed_free(&f);
        ck_assert_msg(st == WK_STATUS_BAD_GGUF, "prefix %zu/%zu: status %s", n, b.n,
                      wk_status_name(st));
        ck_assert_msg(strncmp(err, "gguf_file_parse: ", 17) == 0 && strlen(err) > 20,
                      "prefix %zu: message '%s'", n, err);
    }
    free(b.p);
}
END_TEST

START_TEST(test_bad_header) {
    struct tu_wb b = {0};
    build_valid(&b, 3);
    b.p[0] = 'X';
    expect_bad(&b, "magic");
    free(b.p);

    for (uint32_t v = 0; v < 6; v++) {
        if (v == 2 || v == 3) continue;
        struct tu_wb c = {0};
        build_valid(&c, v);
        char ver[32];
        snprintf(ver, sizeof ver, "version %u", v);
        expect_bad(&c, ver);
        free(c.p);
    }
    struct tu_wb c = {0};
    build_valid(&c, 0x03000000u); /* version 3 written big-endian */
    expect_bad(&c, "big-endian");
    free(c.p);
}
END_TEST

START_TEST(test_huge_counts) {
    struct tu_wb b = {0};
    tu_wb_header(&b, 3, 0, UINT64_MAX);
    tu_wb_kv_u32(&b, "k", 1);
    expect_bad(&b, "n_kv 18446744073709551615");
    free(b.p);

    b = (struct tu_wb){0};
    tu_wb_header(&b, 3, 1ull << 40, 1);
    tu_wb_kv_u32(&b, "k", 1);
    expect_bad(&b, "n_tensors 1099511627776");
    free(b.p);

    /* key length */
    b = (struct tu_wb){0};
    tu_wb_header(&b, 3, 0, 1);
    tu_wb_u64(&b, UINT64_MAX);
    tu_wb_zeros(&b, 16);
    expect_bad(&b, "key/value 0 key", "string length 18446744073709551615");
    free(b.p);

    /* string value length */
    b = (struct tu_wb){0};
    tu_wb_header(&b, 3, 0, 1);
    tu_wb_str(&b, "general.name");
    tu_wb_u32(&b, GGUF_TYPE_STRING);
    tu_wb_u64(&b, 1ull << 62);
    tu_wb_zeros(&b, 16);
    expect_bad(&b, "key 'general.name'", "string length 4611686018427387904");
    free(b.p);

    /* array counts: scalar, string and array elements */
    const uint32_t et[3] = {GGUF_TYPE_UINT8, GGUF_TYPE_STRING, GGUF_TYPE_ARRAY};
    for (int i = 0; i < 3; i++) {
        b = (struct tu_wb){0};
        tu_wb_header(&b, 3, 0, 1);
        tu_wb_str(&b, "tokenizer.ggml.tokens");
        tu_wb_u32(&b, GGUF_TYPE_ARRAY);
        tu_wb_u32(&b, et[i]);
        tu_wb_u64(&b, 1000);
        tu_wb_zeros(&b, 999 * (i == 0)); /* one byte short for uint8 */
        tu_wb_zeros(&b, 64 * (i != 0));
        expect_bad(&b, "key 'tokenizer.ggml.tokens'", "array of 1000");
        free(b.p);
    }
    b = (struct tu_wb){0};
    tu_wb_header(&b, 3, 0, 1);
    tu_wb_str(&b, "arr");
    tu_wb_u32(&b, GGUF_TYPE_ARRAY);
    tu_wb_u32(&b, GGUF_TYPE_UINT64);
    tu_wb_u64(&b, (UINT64_MAX / 8) + 2); /* n × 8 wraps around */
    tu_wb_zeros(&b, 64);
    expect_bad(&b, "key 'arr'", "array of");
    free(b.p);

    /* a string element inside an array */
    b = (struct tu_wb){0};
    tu_wb_header(&b, 3, 0, 1);
    tu_wb_str(&b, "tokenizer.ggml.merges");
    tu_wb_u32(&b, GGUF_TYPE_ARRAY);
    tu_wb_u32(&b, GGUF_TYPE_STRING);
    tu_wb_u64(&b, 2);
    tu_wb_str(&b, "ok");
    tu_wb_u64(&b, 1000);
    tu_wb_zeros(&b, 10);
    expect_bad(&b, "key 'tokenizer.ggml.merges'", "string length 1000");
    free(b.p);
}
END_TEST

/* One tensor with the given dims/type/offset after a minimal header; the
 * data section holds `data_bytes` zero bytes. */
static void build_one_tensor(struct tu_wb *b, const char *name, uint32_t n_dims, const uint64_t *ne,
                             uint32_t type, uint64_t offset, size_t data_bytes) {
    tu_wb_header(b, 3, 1, 1);
    tu_wb_kv_str(b, "general.architecture", "llama");
    wb_tensor(b, name, n_dims, ne, type, offset);
    tu_wb_pad(b, 32);
    tu_wb_zeros(b, data_bytes);
}

START_TEST(test_bad_tensor_shape) {
    struct tu_wb b = {0};
    const uint64_t big[4] = {1ull << 32, 1ull << 32, 1, 1};
    build_one_tensor(&b, "blk.0.attn_q.weight", 2, big, GGML_TYPE_F32, 0, 64);
    expect_bad(&b, "tensor 'blk.0.attn_q.weight'", "overflow");
    free(b.p);

    /* element count fits int64 but the byte size does not */
    b = (struct tu_wb){0};
    const uint64_t wide[1] = {1ull << 62};
    build_one_tensor(&b, "wide", 1, wide, GGML_TYPE_F32, 0, 64);
    expect_bad(&b, "tensor 'wide'", "byte size overflows");
    free(b.p);

    b = (struct tu_wb){0};
    const uint64_t neg[2] = {4, 1ull << 63};
    build_one_tensor(&b, "neg", 2, neg, GGML_TYPE_F32, 0, 64);
    expect_bad(&b, "tensor 'neg'", "ne[1]", "too large");
    free(b.p);

    b = (struct tu_wb){0};
    const uint64_t zero[2] = {4, 0};
    build_one_tensor(&b, "zero", 2, zero, GGML_TYPE_F32, 0, 64);
    expect_bad(&b, "tensor 'zero'", "ne[1] is 0");
    free(b.p);

    const uint32_t dims[2] = {0, 5};
    for (int i = 0; i < 2; i++) {
        b = (struct tu_wb){0};
        const uint64_t ne[5] = {1, 1, 1, 1, 1};
        build_one_tensor(&b, "output.weight", dims[i], ne, GGML_TYPE_F32, 0, 64);
        char msg[32];
        snprintf(msg, sizeof msg, "n_dims is %u", dims[i]);
        expect_bad(&b, "tensor 'output.weight'", msg);
        free(b.p);
    }

    const uint32_t types[3] = {4, 99, 0xffffffffu};
    for (int i = 0; i < 3; i++) {
        b = (struct tu_wb){0};
        const uint64_t ne[1] = {32};
        build_one_tensor(&b, "token_embd.weight", 1, ne, types[i], 0, 256);
        char msg[48];
        snprintf(msg, sizeof msg, "unknown type id %u", types[i]);
        expect_bad(&b, "tensor 'token_embd.weight'", msg);
        free(b.p);
    }

    b = (struct tu_wb){0};
    const uint64_t odd[2] = {33, 2};
    build_one_tensor(&b, "blk.1.ffn_up.weight", 2, odd, GGML_TYPE_Q8_0, 0, 256);
    expect_bad(&b, "tensor 'blk.1.ffn_up.weight'", "ne[0] = 33", "block size 32");
    free(b.p);

    b = (struct tu_wb){0};
    const uint64_t k[1] = {448};
    build_one_tensor(&b, "blk.0.ffn_down.weight", 1, k, GGML_TYPE_Q4_K, 0, 1024);
    expect_bad(&b, "tensor 'blk.0.ffn_down.weight'", "block size 256");
    free(b.p);
}
END_TEST

START_TEST(test_unsupported_type_parses) {
    /* Q2_K is a known type we cannot compute with: parsed, left to the loader */
    struct tu_wb b = {0};
    const uint64_t ne[2] = {256, 2};
    build_one_tensor(&b, "q2", 2, ne, GGML_TYPE_Q2_K, 0, 2 * 84);
    struct gguf_file f;
    char err[256] = "";
    ck_assert_msg(gguf_file_parse(b.p, b.n, &f, err, sizeof err) == WK_STATUS_OK, "%s", err);
    ck_assert_uint_eq(f.tensors[0].nbytes, 168);
    ck_assert(!wk_type_info(f.tensors[0].type)->supported);
    gguf_file_close(&f);
    free(b.p);
}
END_TEST

START_TEST(test_alignment) {
    const uint32_t bad[3] = {0, 3, 48};
    for (int i = 0; i < 3; i++) {
        struct tu_wb b = {0};
        tu_wb_header(&b, 3, 0, 1);
        tu_wb_kv_u32(&b, "general.alignment", bad[i]);
        char msg[64];
        snprintf(msg, sizeof msg, "is %u (must be a nonzero power of two)", bad[i]);
        expect_bad(&b, "key 'general.alignment'", msg);
        free(b.p);
    }
    struct tu_wb b = {0};
    tu_wb_header(&b, 3, 0, 1);
    tu_wb_str(&b, "general.alignment");
    tu_wb_u32(&b, GGUF_TYPE_UINT64);
    tu_wb_u64(&b, 64);
    expect_bad(&b, "key 'general.alignment'", "uint64");
    free(b.p);

    /* alignment 64 honoured: data section and offsets */
    b = (struct tu_wb){0};
    tu_wb_header(&b, 3, 2, 1);
    tu_wb_kv_u32(&b, "general.alignment", 64);
    const uint64_t ne[1] = {4};
    wb_tensor(&b, "x", 1, ne, GGML_TYPE_F32, 0);
    wb_tensor(&b, "y", 1, ne, GGML_TYPE_F32, 64);
    tu_wb_pad(&b, 64);
    size_t data = b.n;
    tu_wb_zeros(&b, 64 + 16);
    struct gguf_file f;
    char err[256] = "";
    ck_assert_msg(gguf_file_parse(b.p, b.n, &f, err, sizeof err) == WK_STATUS_OK, "%s", err);
    ck_assert_uint_eq(f.alignment, 64);
    ck_assert_uint_eq(f.data_offset, data);
    ck_assert_ptr_eq(gguf_find_tensor(&f, "y")->data, b.p + data + 64);
    gguf_file_close(&f);
    /* with alignment 64, offset 32 is misaligned */
    free(b.p);
    b = (struct tu_wb){0};
    tu_wb_header(&b, 3, 2, 1);
    tu_wb_kv_u32(&b, "general.alignment", 64);
    wb_tensor(&b, "x", 1, ne, GGML_TYPE_F32, 0);
    wb_tensor(&b, "y", 1, ne, GGML_TYPE_F32, 32);
    tu_wb_pad(&b, 64);
    tu_wb_zeros(&b, 128);
    expect_bad(&b, "tensor 'y'", "offset 32", "alignment 64");
    free(b.p);
}
END_TEST

START_TEST(test_bad_offsets) {
    struct tu_wb b = {0};
    const uint64_t ne[1] = {8};
    build_one_tensor(&b, "misaligned", 1, ne, GGML_TYPE_F32, 4, 64);
    expect_bad(&b, "tensor 'misaligned'", "offset 4");
    free(b.p);

    b = (struct tu_wb){0};
    build_one_tensor(&b, "past.end", 1, ne, GGML_TYPE_F32, 32, 48); /* needs 64 */
    expect_bad(&b, "tensor 'past.end'", "past the end");
    free(b.p);

    b = (struct tu_wb){0};
    build_one_tensor(&b, "far", 1, ne, GGML_TYPE_F32, UINT64_MAX - 31, 48); /* off + size wraps */
    expect_bad(&b, "tensor 'far'", "past the end");
    free(b.p);

    b = (struct tu_wb){0};
    tu_wb_header(&b, 3, 3, 0);
    const uint64_t n16[1] = {16}; /* 64 bytes */
    wb_tensor(&b, "first", 1, n16, GGML_TYPE_F32, 0);
    wb_tensor(&b, "third", 1, n16, GGML_TYPE_F32, 128);
    wb_tensor(&b, "second", 1, n16, GGML_TYPE_F32, 96); /* [96,160) overlaps [128,192) */
    tu_wb_pad(&b, 32);
    tu_wb_zeros(&b, 192);
    expect_bad(&b, "tensor 'third'", "overlaps tensor 'second'");
    free(b.p);

    /* same offset twice */
    b = (struct tu_wb){0};
    tu_wb_header(&b, 3, 2, 0);
    wb_tensor(&b, "p", 1, n16, GGML_TYPE_F32, 64);
    wb_tensor(&b, "q", 1, n16, GGML_TYPE_F32, 64);
    tu_wb_pad(&b, 32);
    tu_wb_zeros(&b, 128);
    expect_bad(&b, "overlaps");
    free(b.p);

    /* adjacent is fine */
    b = (struct tu_wb){0};
    tu_wb_header(&b, 3, 2, 0);
    wb_tensor(&b, "p", 1, n16, GGML_TYPE_F32, 64);
    wb_tensor(&b, "q", 1, n16, GGML_TYPE_F32, 0);
    tu_wb_pad(&b, 32);
    tu_wb_zeros(&b, 128);
    struct gguf_file f;
    char err[256] = "";
    ck_assert_msg(gguf_file_parse(b.p, b.n, &f, err, sizeof err) == WK_STATUS_OK, "%s", err);
    gguf_file_close(&f);
    free(b.p);
}
END_TEST

START_TEST(test_duplicates_and_names) {
    struct tu_wb b = {0};
    tu_wb_header(&b, 3, 0, 3);
    tu_wb_kv_u32(&b, "llama.block_count", 5);
    tu_wb_kv_str(&b, "general.name", "x");
    tu_wb_kv_u32(&b, "llama.block_count", 6);
    expect_bad(&b, "key 'llama.block_count'", "duplicate");
    free(b.p);

    b = (struct tu_wb){0};
    tu_wb_header(&b, 3, 2, 0);
    const uint64_t ne[1] = {8};
    wb_tensor(&b, "blk.0.attn_k.bias", 1, ne, GGML_TYPE_F32, 0);
    wb_tensor(&b, "blk.0.attn_k.bias", 1, ne, GGML_TYPE_F32, 32);
    tu_wb_pad(&b, 32);
    tu_wb_zeros(&b, 64);
    expect_bad(&b, "tensor 'blk.0.attn_k.bias'", "duplicate");
    free(b.p);

    b = (struct tu_wb){0};
    tu_wb_header(&b, 3, 0, 1);
    tu_wb_kv_u32(&b, "", 5);
    expect_bad(&b, "key/value 0", "empty key");
    free(b.p);

    b = (struct tu_wb){0};
    build_one_tensor(&b, "", 1, ne, GGML_TYPE_F32, 0, 32);
    expect_bad(&b, "tensor 0", "empty name");
    free(b.p);

    char longname[100];
    memset(longname, 'n', 70);
    longname[70] = '\0';
    b = (struct tu_wb){0};
    build_one_tensor(&b, longname, 1, ne, GGML_TYPE_F32, 0, 32);
    expect_bad(&b, "tensor 'nnnnnnnn", "name is 70 bytes");
    free(b.p);

    /* NUL bytes: such a name could not be looked up with a C string */
    b = (struct tu_wb){0};
    build_one_tensor(&b, "ab", 1, ne, GGML_TYPE_F32, 0, 32);
    uint8_t *ab = memmem(b.p, b.n, "ab", 2);
    ck_assert_ptr_nonnull(ab);
    ab[1] = '\0';
    expect_bad(&b, "tensor 'a?'", "NUL byte");
    free(b.p);
    b = (struct tu_wb){0};
    tu_wb_header(&b, 3, 0, 1);
    tu_wb_kv_u32(&b, "general.x", 1);
    b.p[24 + 8 + 7] = '\0'; /* header, key length, "general" */
    expect_bad(&b, "key 'general?x'", "NUL byte");
    free(b.p);

    /* keys are at most 65535 bytes (GGUF spec) */
    char *longkey = malloc(70001);
    memset(longkey, 'k', 70000);
    longkey[70000] = '\0';
    b = (struct tu_wb){0};
    tu_wb_header(&b, 3, 0, 1);
    tu_wb_kv_u32(&b, longkey, 1);
    free(longkey);
    expect_bad(&b, "key 'kkkkkkkk", "...'", "key is 70000 bytes (max 65535)");
    free(b.p);

    /* a name with control bytes is quoted safely */
    b = (struct tu_wb){0};
    tu_wb_header(&b, 3, 0, 1);
    tu_wb_str(&b, "bad\nkey\x01");
    tu_wb_u32(&b, 77);
    tu_wb_u32(&b, 0);
    expect_bad(&b, "key 'bad?key?'", "unknown value type 77");
    free(b.p);
}
END_TEST

/* Many keys: lookups work, a duplicate far from its twin is found, and the
 * check stays fast (sort-based, not quadratic). */
START_TEST(test_many_keys) {
    const int n = 200000;
    struct tu_wb b = {0};
    tu_wb_header(&b, 3, 0, (uint64_t)n);
    char key[32];
    for (int i = 0; i < n; i++) {
        snprintf(key, sizeof key, "k.%06d", i);
        tu_wb_str(&b, key);
        tu_wb_u32(&b, GGUF_TYPE_UINT32);
        tu_wb_u32(&b, (uint32_t)i * 3u);
    }
    struct gguf_file f;
    char err[256] = "";
    ck_assert_msg(gguf_file_parse(b.p, b.n, &f, err, sizeof err) == WK_STATUS_OK, "%s", err);
    ck_assert_uint_eq(f.n_kv, (uint64_t)n);
    uint32_t u;
    ck_assert(gguf_get_u32(&f, "k.123456", &u));
    ck_assert_uint_eq(u, 123456u * 3u);
    ck_assert(!gguf_get_u32(&f, "k.200000", &u));
    gguf_file_close(&f);
    /* rename the last key to collide with key 77777 */
    size_t last = b.n - 4 - 4 - 8; /* value, type, key bytes */
    memcpy(b.p + last + 2, "077777", 6);
    expect_bad(&b, "key 'k.077777'", "duplicate", "77777 and 199999");
    free(b.p);
}
END_TEST

/* An array nested `depth` deep: [[[...[1u8]...]]] */
static void build_nested(struct tu_wb *b, int depth) {
    tu_wb_header(b, 3, 0, 1);
    tu_wb_str(b, "deep");
    tu_wb_u32(b, GGUF_TYPE_ARRAY);
    for (int i = 1; i < depth; i++) {
        tu_wb_u32(b, GGUF_TYPE_ARRAY);
        tu_wb_u64(b, 1);
    }
    tu_wb_u32(b, GGUF_TYPE_UINT8);
    tu_wb_u64(b, 1);
    tu_wb_u8(b, 7);
}

START_TEST(test_nesting) {
    struct tu_wb b = {0};
    build_nested(&b, GGUF_MAX_ARRAY_DEPTH);
    struct gguf_file f;
    char err[256] = "";
    ck_assert_msg(gguf_file_parse(b.p, b.n, &f, err, sizeof err) == WK_STATUS_OK, "%s", err);
    const struct gguf_value *v;
    ck_assert(gguf_get_arr(&f, "deep", &v));
    for (int i = 1; i < GGUF_MAX_ARRAY_DEPTH; i++) {
        ck_assert_int_eq(v->v.arr.type, GGUF_TYPE_ARRAY);
        ck_assert_uint_eq(v->v.arr.n, 1);
        v = &v->v.arr.arrs[0];
    }
    int64_t x;
    ck_assert(gguf_arr_i64(v, 0, &x));
    ck_assert_int_eq(x, 7);
    gguf_file_close(&f);
    free(b.p);

    b = (struct tu_wb){0};
    build_nested(&b, GGUF_MAX_ARRAY_DEPTH + 1);
    expect_bad(&b, "key 'deep'", "nested deeper than 8");
    free(b.p);

    /* hostile: a long chain of nested arrays is stopped at the bound */
    b = (struct tu_wb){0};
    build_nested(&b, 100000);
    expect_bad(&b, "key 'deep'", "nested deeper");
    free(b.p);
}
END_TEST

START_TEST(test_bad_values) {
    struct tu_wb b = {0};
    tu_wb_header(&b, 3, 0, 1);
    tu_wb_str(&b, "flag");
    tu_wb_u32(&b, GGUF_TYPE_BOOL);
    tu_wb_u8(&b, 2);
    expect_bad(&b, "key 'flag'", "bool value 2");
    free(b.p);

    b = (struct tu_wb){0};
    tu_wb_header(&b, 3, 0, 1);
    tu_wb_str(&b, "flags");
    tu_wb_u32(&b, GGUF_TYPE_ARRAY);
    tu_wb_u32(&b, GGUF_TYPE_BOOL);
    tu_wb_u64(&b, 3);
    tu_wb_u8(&b, 1); tu_wb_u8(&b, 0); tu_wb_u8(&b, 9);
    expect_bad(&b, "key 'flags'", "bool element 2");
    free(b.p);

    b = (struct tu_wb){0};
    tu_wb_header(&b, 3, 0, 1);
    tu_wb_str(&b, "arr");
    tu_wb_u32(&b, GGUF_TYPE_ARRAY);
    tu_wb_u32(&b, 13);
    tu_wb_u64(&b, 0);
    expect_bad(&b, "key 'arr'", "unknown array element type 13");
    free(b.p);

    b = (struct tu_wb){0};
    tu_wb_header(&b, 3, 0, 1);
    tu_wb_str(&b, "general.name");
    tu_wb_u32(&b, GGUF_TYPE__COUNT);
    tu_wb_zeros(&b, 8);
    expect_bad(&b, "key 'general.name'", "unknown value type 13");
    free(b.p);
}
END_TEST

START_TEST(test_no_tensors_short_padding) {
    /* vocab-only files end right after the metadata (no padding): accepted,
     * data_offset clamped to the size */
    struct tu_wb b = {0};
    tu_wb_header(&b, 3, 0, 1);
    tu_wb_kv_str(&b, "general.architecture", "qwen2!");
    ck_assert_uint_ne(b.n % 32, 0);
    struct gguf_file f;
    char err[256] = "";
    ck_assert_msg(gguf_file_parse(b.p, b.n, &f, err, sizeof err) == WK_STATUS_OK, "%s", err);
    ck_assert_uint_eq(f.data_offset, b.n);
    ck_assert_uint_eq(f.n_tensors, 0);
    gguf_file_close(&f);
    free(b.p);
}
END_TEST

START_TEST(test_file_open) {
    struct tu_wb b = {0};
    build_valid(&b, 3);
    char path[] = "/tmp/test-gguf-XXXXXX";
    int fd = mkstemp(path);
    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(write(fd, b.p, b.n), (ssize_t)b.n);
    close(fd);

    struct gguf_file f;
    char err[256] = "";
    wk_status st = gguf_file_open(path, &f, err, sizeof err);
    ck_assert_msg(st == WK_STATUS_OK, "%s", err);
    ck_assert_int_ge(f.fd, 0);
    ck_assert_ptr_nonnull(f.map);
    ck_assert_uint_eq(f.size, b.n);
    check_valid(&f, 3);
    gguf_file_close(&f);

    /* corrupt on disk: message names the entry point */
    fd = open(path, O_WRONLY | O_TRUNC);
    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(write(fd, b.p, b.n - 1), (ssize_t)(b.n - 1));
    close(fd);
    st = gguf_file_open(path, &f, err, sizeof err);
    ck_assert_int_eq(st, WK_STATUS_BAD_GGUF);
    ck_assert_msg(strstr(err, "gguf_file_open: tensor 'b'") != NULL, "%s", err);
    ck_assert_ptr_null(f.map);
    unlink(path);

    st = gguf_file_open(path, &f, err, sizeof err);
    ck_assert_int_eq(st, WK_STATUS_NOT_FOUND);
    ck_assert_msg(strstr(err, path) != NULL, "%s", err);
    gguf_file_close(&f);

    st = gguf_file_open("/tmp", &f, err, sizeof err);
    ck_assert_int_eq(st, WK_STATUS_BAD_GGUF);
    ck_assert_msg(strstr(err, "not a regular file") != NULL, "%s", err);

    /* a file shorter than the header */
    fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(write(fd, "GGUF", 4), 4);
    close(fd);
    st = gguf_file_open(path, &f, err, sizeof err);
    ck_assert_int_eq(st, WK_STATUS_BAD_GGUF);
    ck_assert_msg(strstr(err, "4 bytes") != NULL, "%s", err);
    unlink(path);

    /* NULL buffer with a size */
    st = gguf_file_parse(NULL, 10, &f, err, sizeof err);
    ck_assert_int_eq(st, WK_STATUS_INVALID_ARGUMENT);

    /* NULL err buffer is allowed */
    st = gguf_file_open("/nonexistent/x.gguf", &f, NULL, 0);
    ck_assert_int_eq(st, WK_STATUS_NOT_FOUND);
    free(b.p);
}
END_TEST

// ---------------------------------------------------------------------------
// real files in $ORCD_SHARED/models
//
// Expected numbers were read with the gguf Python package (gguf-py,
// GGUFReader): GGUF.version, GGUF.kv_count, GGUF.tensor_count, the reader's
// data_offset, general.architecture, len(tokenizer.ggml.tokens), and the sums
// of each tensor's absolute data_offset and n_bytes over all tensors.

struct model_fact {
    const char *file;
    uint32_t version;
    uint64_t n_kv, n_tensors, data_offset; /* data_offset: 0 = no tensors */
    const char *arch;
    uint64_t n_tokens, sum_abs_offset, sum_nbytes;
};

static const struct model_fact k_facts[] = {
    {"llama-spm-vocab.gguf", 3, 22, 0, 0, "llama", 32000, 0, 0},
    {"phi-3-vocab.gguf", 3, 26, 0, 0, "phi3", 32064, 0, 0},
    {"qwen2.5-vocab.gguf", 3, 21, 0, 0, "qwen2", 151936, 0, 0},
    {"stories260K.gguf", 3, 19, 48, 14176, "llama", 512, 32032768ull, 1171200ull},
    {"tiny-qwen2-f16.gguf", 3, 22, 26, 33376, "qwen2", 1152, 85563840ull, 7009536ull},
    {"tiny-qwen2-f32.gguf", 3, 22, 26, 33376, "qwen2", 1152, 170088896ull, 14005504ull},
    {"tiny-qwen2-q4_0.gguf", 3, 22, 26, 33376, "qwen2", 1152, 29824704ull, 2239232ull},
    {"tiny-qwen2-q4_1.gguf", 3, 22, 26, 33376, "qwen2", 1152, 31559360ull, 2425600ull},
    {"tiny-qwen2-q4_k_m.gguf", 3, 22, 26, 33376, "qwen2", 1152, 32828992ull, 2625408ull},
    {"tiny-qwen2-q5_0.gguf", 3, 22, 26, 33376, "qwen2", 1152, 33294016ull, 2611968ull},
    {"tiny-qwen2-q5_1.gguf", 3, 22, 26, 33376, "qwen2", 1152, 35028672ull, 2798336ull},
    {"tiny-qwen2-q5_k_m.gguf", 3, 22, 26, 33376, "qwen2", 1152, 34814528ull, 2809984ull},
    {"tiny-qwen2-q6_k.gguf", 3, 22, 26, 33376, "qwen2", 1152, 42202048ull, 3563520ull},
    {"tiny-qwen2-q8_0.gguf", 3, 22, 26, 33376, "qwen2", 1152, 45942720ull, 3730176ull},
};

START_TEST(test_real_models_facts) {
    char path[1024];
    int seen = 0;
    for (size_t i = 0; i < sizeof k_facts / sizeof k_facts[0]; i++) {
        const struct model_fact *m = &k_facts[i];
        char rel[256];
        snprintf(rel, sizeof rel, "models/%s", m->file);
        tu_shared_path(path, sizeof path, rel);
        seen++;
        struct gguf_file f;
        char err[256] = "";
        wk_status st = gguf_file_open(path, &f, err, sizeof err);
        ck_assert_msg(st == WK_STATUS_OK, "%s: %s", m->file, err);
        ck_assert_uint_eq(f.version, m->version);
        ck_assert_uint_eq(f.n_kv, m->n_kv);
        ck_assert_uint_eq(f.n_tensors, m->n_tensors);
        if (m->n_tensors) ck_assert_uint_eq(f.data_offset, m->data_offset);
        struct gguf_str s;
        ck_assert(gguf_get_str(&f, "general.architecture", &s));
        ck_assert_msg(gguf_str_eq(s, m->arch), "%s: arch", m->file);
        const struct gguf_value *toks;
        ck_assert(gguf_get_arr(&f, "tokenizer.ggml.tokens", &toks));
        ck_assert_int_eq(toks->v.arr.type, GGUF_TYPE_STRING);
        ck_assert_uint_eq(toks->v.arr.n, m->n_tokens);
        uint64_t so = 0, sb = 0;
        for (uint64_t t = 0; t < f.n_tensors; t++) {
            so += f.data_offset + f.tensors[t].offset;
            sb += f.tensors[t].nbytes;
            ck_assert_ptr_eq(f.tensors[t].data, f.base + f.data_offset + f.tensors[t].offset);
        }
        ck_assert_msg(so == m->sum_abs_offset, "%s: offsets %llu", m->file, (unsigned long long)so);
        ck_assert_msg(sb == m->sum_nbytes, "%s: bytes %llu", m->file, (unsigned long long)sb);
        gguf_file_close(&f);
    }
    ck_assert_int_gt(seen, 0);
}
END_TEST

/* Details checked against gguf-py for two files (values printed by
 * GGUFReader: fields, tensor shapes, the first floats of tensor data). */
START_TEST(test_real_models_details) {
    char path[1024];
    tu_shared_path(path, sizeof path, "models/stories260K.gguf");
    {
        struct gguf_file f;
        char err[256] = "";
        ck_assert_msg(gguf_file_open(path, &f, err, sizeof err) == WK_STATUS_OK, "%s", err);
        uint32_t u;
        ck_assert(gguf_get_u32(&f, "llama.embedding_length", &u)); ck_assert_uint_eq(u, 64);
        ck_assert(gguf_get_u32(&f, "llama.feed_forward_length", &u)); ck_assert_uint_eq(u, 172);
        ck_assert(gguf_get_u32(&f, "llama.attention.head_count_kv", &u)); ck_assert_uint_eq(u, 4);
        ck_assert(gguf_get_u32(&f, "tokenizer.ggml.padding_token_id", &u));
        ck_assert_uint_eq(u, 4294967295u);
        float eps;
        ck_assert(gguf_get_f32(&f, "llama.attention.layer_norm_rms_epsilon", &eps));
        ck_assert(eps == 1e-5f);
        const struct gguf_value *tokens;
        struct gguf_str s;
        ck_assert(gguf_get_arr(&f, "tokenizer.ggml.tokens", &tokens));
        ck_assert(gguf_arr_str(tokens, 0, &s) && gguf_str_eq(s, "<unk>"));
        const struct gguf_value *tt;
        int64_t x;
        ck_assert(gguf_get_arr(&f, "tokenizer.ggml.token_type", &tt));
        ck_assert(gguf_arr_i64(tt, 0, &x)); ck_assert_int_eq(x, 2);
        const struct gguf_tensor_info *t = gguf_find_tensor(&f, "blk.2.ffn_down.weight");
        ck_assert_ptr_nonnull(t);
        ck_assert_uint_eq(t->n_dims, 2);
        ck_assert_int_eq(t->ne[0], 172);
        ck_assert_int_eq(t->ne[1], 64);
        ck_assert_uint_eq(f.data_offset + t->offset, 733536);
        t = gguf_find_tensor(&f, "token_embd.weight");
        float v[2];
        memcpy(v, t->data, sizeof v);
        ck_assert(fabsf(v[0] - -0.29474878f) < 1e-7f && fabsf(v[1] - 0.5618956f) < 1e-7f);
        ck_assert_ptr_null(gguf_find_tensor(&f, "blk.5.ffn_up.weight"));
        gguf_file_close(&f);
    }
    tu_shared_path(path, sizeof path, "models/tiny-qwen2-f32.gguf");
    {
        struct gguf_file f;
        char err[256] = "";
        ck_assert_msg(gguf_file_open(path, &f, err, sizeof err) == WK_STATUS_OK, "%s", err);
        float theta;
        ck_assert(gguf_get_f32(&f, "qwen2.rope.freq_base", &theta));
        ck_assert(theta == 1e6f);
        bool add_bos = true;
        ck_assert(gguf_get_bool(&f, "tokenizer.ggml.add_bos_token", &add_bos));
        ck_assert(!add_bos);
        uint32_t u;
        ck_assert(gguf_get_u32(&f, "tokenizer.ggml.eos_token_id", &u)); ck_assert_uint_eq(u, 1026);
        const struct gguf_value *merges;
        ck_assert(gguf_get_arr(&f, "tokenizer.ggml.merges", &merges));
        ck_assert_uint_eq(merges->v.arr.n, 768);
        struct gguf_str s;
        ck_assert(gguf_arr_str(merges, 0, &s) && gguf_str_eq(s, "\xc4\xa0 \xc4\xa0"));
        ck_assert_ptr_null(gguf_find_tensor(&f, "output.weight")); /* tied embeddings */
        const struct gguf_tensor_info *t = gguf_find_tensor(&f, "blk.0.attn_q.weight");
        ck_assert_ptr_nonnull(t);
        ck_assert_int_eq(t->ne[0], 448);
        ck_assert_int_eq(t->ne[1], 448);
        ck_assert_uint_eq(t->nbytes, 802816);
        ck_assert_uint_eq(f.data_offset + t->offset, 2099552);
        float v[2];
        memcpy(v, t->data, sizeof v);
        ck_assert(fabsf(v[0] - 0.03242067f) < 1e-7f && fabsf(v[1] - 0.05793971f) < 1e-7f);
        gguf_file_close(&f);
    }
    /* q4_k_m: type mix f32 11, q5_0 11, q8_0 2, q4_K 1, q6_K 1 (gguf-py) */
    tu_shared_path(path, sizeof path, "models/tiny-qwen2-q4_k_m.gguf");
    {
        struct gguf_file f;
        char err[256] = "";
        ck_assert_msg(gguf_file_open(path, &f, err, sizeof err) == WK_STATUS_OK, "%s", err);
        int count[GGML_TYPE__COUNT] = {0};
        for (uint64_t i = 0; i < f.n_tensors; i++) count[f.tensors[i].type]++;
        ck_assert_int_eq(count[GGML_TYPE_F32], 11);
        ck_assert_int_eq(count[GGML_TYPE_Q5_0], 11);
        ck_assert_int_eq(count[GGML_TYPE_Q8_0], 2);
        ck_assert_int_eq(count[GGML_TYPE_Q4_K], 1);
        ck_assert_int_eq(count[GGML_TYPE_Q6_K], 1);
        const struct gguf_tensor_info *t = gguf_find_tensor(&f, "blk.0.attn_k.weight");
        ck_assert_uint_eq(t->type, GGML_TYPE_Q5_0);
        ck_assert_uint_eq(t->nbytes, 19712);
        ck_assert_uint_eq(f.data_offset + t->offset, 583776);
        gguf_file_close(&f);
    }
}
END_TEST

/* Every file in the models folder parses, and each of its prefixes at a few
 * cut points inside the header/metadata is refused. */
START_TEST(test_real_models_all_and_cut) {
    char dir[1024];
    tu_shared_path(dir, sizeof dir, "models");
    DIR *d = opendir(dir);
    ck_assert_msg(d != NULL, "%s not found", dir);
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        size_t n = strlen(e->d_name);
        if (n < 5 || strcmp(e->d_name + n - 5, ".gguf") != 0) continue;
        char path[2048];
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        size_t len = 0;
        uint8_t *buf = tu_read_file(path, &len);
        ck_assert_ptr_nonnull(buf);
        struct gguf_file f;
        char err[256] = "";
        ck_assert_msg(gguf_file_parse(buf, len, &f, err, sizeof err) == WK_STATUS_OK, "%s: %s",
                      e->d_name, err);
        uint64_t meta_end = f.n_tensors ? f.data_offset : f.size;
        gguf_file_close(&f);
        /* cuts through the metadata and tensor table */
        for (int k = 1; k <= 16; k++) {
            size_t cut = (size_t)(meta_end * (uint64_t)k / 17);
            uint8_t *p = malloc(cut ? cut : 1);
            memcpy(p, buf, cut);
            wk_status st = gguf_file_parse(p, cut, &f, err, sizeof err);
            ck_assert_msg(st == WK_STATUS_BAD_GGUF, "%s cut at %zu: %s", e->d_name, cut,
                          wk_status_name(st));
            free(p);
        }
        free(buf);
    }
    closedir(d);
}
END_TEST

/* Groups (tests/meson.build runs each as its own test):
 *   base  hand-written GGUF files only
 *   real  the model files in ../shared/models (SKIP, exit 77, when absent) */
static Suite *gguf_suite(const char *group) {
    Suite *s = suite_create("gguf");
    if (!strcmp(group, "real")) {
        const char *rels[sizeof k_facts / sizeof k_facts[0] + 1];
        static char buf[sizeof k_facts / sizeof k_facts[0]][256];
        size_t n = 0;
        for (; n < sizeof k_facts / sizeof k_facts[0]; n++) {
            snprintf(buf[n], sizeof buf[n], "models/%s", k_facts[n].file);
            rels[n] = buf[n];
        }
        rels[n] = NULL;
        tu_require_shared("gguf real-model tests", rels);
        TCase *real = tcase_create("real");
        tcase_set_timeout(real, 120);
        tcase_add_test(real, test_real_models_facts);
        tcase_add_test(real, test_real_models_details);
        tcase_add_test(real, test_real_models_all_and_cut);
        suite_add_tcase(s, real);
        return s;
    }
    TCase *tc = tcase_create("synthetic");
    tcase_add_test(tc, test_valid_v3_and_v2);
    tcase_add_test(tc, test_close_safe);
    tcase_add_test(tc, test_every_truncation);
    tcase_add_test(tc, test_bad_header);
    tcase_add_test(tc, test_huge_counts);
    tcase_add_test(tc, test_bad_tensor_shape);
    tcase_add_test(tc, test_unsupported_type_parses);
    tcase_add_test(tc, test_alignment);
    tcase_add_test(tc, test_bad_offsets);
    tcase_add_test(tc, test_duplicates_and_names);
    tcase_add_test(tc, test_many_keys);
    tcase_add_test(tc, test_nesting);
    tcase_add_test(tc, test_bad_values);
    tcase_add_test(tc, test_no_tensors_short_padding);
    tcase_add_test(tc, test_file_open);
    suite_add_tcase(s, tc);
    return s;
}

int main(int argc, char **argv) {
    return tu_run_suite(gguf_suite(tu_group(argc, argv)));
}
