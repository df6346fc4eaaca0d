/* testutil.h — helpers shared by the Check tests. */
#ifndef WK_TESTUTIL_H
#define WK_TESTUTIL_H

#include <stdbool.h>
#include <stddef.h>

/* $ORCD_SHARED/<rel> (default ../shared relative to the source tree) into buf;
 * returns buf. */
const char *tu_shared_path(char *buf, size_t n, const char *rel);
/* True if the file exists; otherwise prints "SKIP <what>: <path> not found"
 * to stderr and returns false. */
bool tu_have_file(const char *path, const char *what);
/* Test binaries are split in groups by what they need (argv[1], default
 * "base"; meson runs each group as its own test). A group that needs files
 * from ../shared calls tu_require_shared first: when any of rels (paths
 * relative to ../shared, NULL-terminated) is absent it prints
 * "SKIP <what>: <path> not found" on stdout and exits 77, which meson shows
 * as SKIP. Inside such a group a missing file is then a test failure. */
const char *tu_group(int argc, char **argv);
void tu_require_shared(const char *what, const char *const *rels);

/* Read a whole file (malloc'ed, caller frees); NULL on failure. */
void *tu_read_file(const char *path, size_t *len);
/* The ids of the "key: 1 2 3" line of a reference log (../shared/reference),
 * malloc'ed (caller frees); NULL when the file or the key is missing. */
#include <stdint.h>
int32_t *tu_read_ids(const char *path, const char *key, size_t *n);
/* Run a Check suite (forking per test, normal output) and free it: 0 when
 * every test passed, else 1 (the test binary's exit status). */
struct Suite;
int tu_run_suite(struct Suite *s);

/* ||a-b|| / ||b|| over n floats. */
double tu_rel_l2(const float *a, const float *b, size_t n);


/* A growable byte buffer for writing GGUF files by hand (little-endian
 * host; layout in loader/gguf.h). Aborts on out-of-memory. */
struct tu_wb {
    uint8_t *p;
    size_t n, cap;
};
void tu_wb_bytes(struct tu_wb *b, const void *src, size_t n);
void tu_wb_u8(struct tu_wb *b, uint8_t v);
void tu_wb_u32(struct tu_wb *b, uint32_t v);
void tu_wb_u64(struct tu_wb *b, uint64_t v);
void tu_wb_f32(struct tu_wb *b, float v);
void tu_wb_str(struct tu_wb *b, const char *s);    /* u64 length + bytes */
void tu_wb_zeros(struct tu_wb *b, size_t n);
void tu_wb_pad(struct tu_wb *b, size_t align);     /* zeros up to a multiple of align */
void tu_wb_header(struct tu_wb *b, uint32_t version, uint64_t n_tensors, uint64_t n_kv);
void tu_wb_kv_u32(struct tu_wb *b, const char *key, uint32_t v);
void tu_wb_kv_str(struct tu_wb *b, const char *key, const char *v);

#endif
