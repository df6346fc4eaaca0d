/* gguf.h — GGUF v2/v3 reader: header, metadata, tensor table, data section.
 *
 * File layout (all little-endian):
 *   u32  magic "GGUF" (0x46554747)
 *   u32  version (2 or 3)
 *   u64  n_tensors
 *   u64  n_kv
 *   n_kv × { str key; u32 value_type; value }
 *       str   = u64 length + that many bytes (UTF-8, not NUL-terminated)
 *       value = scalar of value_type, or STRING (str), or
 *               ARRAY: u32 elem_type; u64 count; count × elem (elements may
 *               themselves be arrays: nested)
 *   n_tensors × { str name; u32 n_dims (1..4); u64 ne[n_dims];
 *                 u32 ggml_type; u64 offset (relative to the data section) }
 *   padding to `general.alignment` (u32, power of two; default 32)
 *   data section: each tensor at data_offset + offset, offset % alignment == 0
 *
 * ne[0] is the innermost (contiguous) dimension: a 2-D weight with
 * ne = {n_in, n_out} is n_out rows of n_in elements each. Quantized types pack
 * ne[0] into blocks (ne[0] % block_size == 0).
 *
 * Everything read is validated before use (counts against remaining bytes,
 * overflow, types, alignment, bounds, overlap); any failure returns
 * WK_STATUS_BAD_GGUF with a message naming the key or tensor.
 */
#ifndef WK_GGUF_H
#define WK_GGUF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/status.h"

#ifdef __cplusplus
extern "C" {
#endif

#define GGUF_MAGIC 0x46554747u /* "GGUF" little-endian */
#define GGUF_DEFAULT_ALIGNMENT 32
#define GGUF_MAX_DIMS 4

enum gguf_type {
    GGUF_TYPE_UINT8 = 0,
    GGUF_TYPE_INT8 = 1,
    GGUF_TYPE_UINT16 = 2,
    GGUF_TYPE_INT16 = 3,
    GGUF_TYPE_UINT32 = 4,
    GGUF_TYPE_INT32 = 5,
    GGUF_TYPE_FLOAT32 = 6,
    GGUF_TYPE_BOOL = 7,
    GGUF_TYPE_STRING = 8,
    GGUF_TYPE_ARRAY = 9,
    GGUF_TYPE_UINT64 = 10,
    GGUF_TYPE_INT64 = 11,
    GGUF_TYPE_FLOAT64 = 12,
    GGUF_TYPE__COUNT
};

/* A string borrowed from the file buffer: not NUL-terminated. */
struct gguf_str {
    uint64_t len;
    const char *ptr; /* borrowed: points into the mapping */
};

/* One metadata value. Scalars are widened on parse: unsigned ints into u64,
 * signed into i64, FLOAT32/FLOAT64 into f64, BOOL into b. */
struct gguf_value {
    enum gguf_type type;
    union {
        uint64_t u64;
        int64_t i64;
        double f64;
        bool b;
        struct gguf_str str;
        struct {
            enum gguf_type type; /* element type */
            uint64_t n;          /* element count */
            /* numeric/bool elements: raw little-endian, n × elem size,
             * borrowed from the mapping, possibly unaligned (use memcpy) */
            const uint8_t *data;
            struct gguf_str *strs;    /* type STRING: n entries, owned */
            struct gguf_value *arrs;  /* type ARRAY: n nested arrays, owned */
        } arr;
    } v;
};

struct gguf_kv {
    struct gguf_str key;
    struct gguf_value value;
};

struct gguf_tensor_info {
    struct gguf_str name;      /* borrowed */
    uint32_t n_dims;           /* 1..4 */
    int64_t ne[GGUF_MAX_DIMS]; /* unused dims are 1 */
    uint32_t type;             /* enum ggml_type (loader/quants.h) */
    uint64_t offset;           /* relative to the data section */
    uint64_t nbytes;           /* validated size in bytes */
    const void *data;          /* borrowed: points into the mapping */
};

struct gguf_file {
    int fd;               /* always -1 once open: the descriptor is closed as soon as
                           * the file is mapped (a zeroed struct must never close fd 0) */
    void *map;            /* mmap of the whole file, or NULL */
    const uint8_t *base;  /* start of the bytes (map, or the caller's buffer) */
    size_t size;          /* bytes in the file */
    uint32_t version;
    uint64_t n_kv;
    struct gguf_kv *kv;   /* n_kv entries, owned */
    uint64_t n_tensors;
    struct gguf_tensor_info *tensors; /* n_tensors entries, owned */
    uint64_t alignment;
    uint64_t data_offset; /* start of the data section in the file */
};

/* Map and parse `path`. On error *out holds nothing (closing it is safe) and
 * err says what was wrong: "gguf_file_open: tensor 'blk.0.attn_q.weight':
 * ...". */
wk_status gguf_file_open(const char *path, struct gguf_file *out, char *err, size_t err_len);

/* Parse a file already in memory (fuzzing, tests). buf is borrowed and must
 * outlive *out. Same validation as gguf_file_open. */
wk_status gguf_file_parse(const void *buf, size_t size, struct gguf_file *out, char *err,
                          size_t err_len);

/* Free everything; safe on a zeroed or half-built struct and on NULL. */
void gguf_file_close(struct gguf_file *f);

/* --- lookups (NULL / false when absent or of an incompatible type) --- */
const struct gguf_kv *gguf_find_kv(const struct gguf_file *f, const char *key);
const struct gguf_tensor_info *gguf_find_tensor(const struct gguf_file *f, const char *name);

/* Any integer type (or bool) that fits; false if absent, not an integer, or
 * out of range of the output type. */
bool gguf_get_i64(const struct gguf_file *f, const char *key, int64_t *out);
bool gguf_get_u32(const struct gguf_file *f, const char *key, uint32_t *out);
/* FLOAT32/FLOAT64 (and integers, converted). */
bool gguf_get_f32(const struct gguf_file *f, const char *key, float *out);
bool gguf_get_bool(const struct gguf_file *f, const char *key, bool *out);
/* STRING only. */
bool gguf_get_str(const struct gguf_file *f, const char *key, struct gguf_str *out);
/* ARRAY only; *out points into f. */
bool gguf_get_arr(const struct gguf_file *f, const char *key, const struct gguf_value **out);

/* Element i of a numeric array as a double / int64 (false when out of range
 * or not numeric). */
bool gguf_arr_f64(const struct gguf_value *arr, uint64_t i, double *out);
bool gguf_arr_i64(const struct gguf_value *arr, uint64_t i, int64_t *out);

/* Compare a borrowed string with a C string. */
bool gguf_str_eq(struct gguf_str s, const char *c);

const char *gguf_type_name(enum gguf_type t);

/* --- helpers added by the parser (gguf.c) --- */

/* Tensor names are shorter than this (ggml's GGML_MAX_NAME): a name fits a
 * char[GGUF_MAX_NAME] with its NUL. Longer names are refused. */
#define GGUF_MAX_NAME 64
/* Arrays nest at most this deep (an array of arrays is depth 2). */
#define GGUF_MAX_ARRAY_DEPTH 8

/* Element i of a STRING array (borrowed); false when out of range or not a
 * string array. */
bool gguf_arr_str(const struct gguf_value *arr, uint64_t i, struct gguf_str *out);

#ifdef __cplusplus
}
#endif

#endif
