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
/* Read a whole file (malloc'ed, caller frees); NULL on failure. */
void *tu_read_file(const char *path, size_t *len);
/* The ids of the "key: 1 2 3" line of a reference log (../shared/reference),
 * malloc'ed (caller frees); NULL when the file or the key is missing. */
#include <stdint.h>
int32_t *tu_read_ids(const char *path, const char *key, size_t *n);
/* ||a-b|| / ||b|| over n floats. */
double tu_rel_l2(const float *a, const float *b, size_t n);

#endif
