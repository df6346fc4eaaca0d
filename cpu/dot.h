/* dot.h — fp32 dot products and the matmul tile of the CPU backend over
 * weight rows of any supported type (loader/quants.h), dequantized on the
 * fly. Results are the same bits on every build (the summation order is
 * fixed in the source; see dot.c). */
#ifndef WK_CPU_DOT_H
#define WK_CPU_DOT_H

#include <stddef.h>
#include <stdint.h>

#include "loader/quants.h"

/* dot(row, x) for one row of n elements of `type` against fp32 x, computed in
 * fp32 the way dequantize-then-dot would (the CPU backend's matmul kernel). */
float wk_dot_row(uint32_t type, const void *row, const float *x, int64_t n);


/* y[r] = wk_dot_row(type, w + r*row_stride_bytes, x, n) for r < n_rows. */
void wk_dot_rows(uint32_t type, const void *w, size_t row_stride_bytes, int n_rows,
                 const float *x, int64_t n, float *y);

/* Batched matmul tile for prefill: for rows r in [r0, r1) of the weight
 * matrix w (row r at w + r*row_stride_bytes, n elements each) and tokens
 * t < n_tok,
 *     y[t*n_out + r] = dot(row r, x + t*n)
 * x: (n_tok, n) fp32, y: (n_tok, n_out) fp32; only columns [r0, r1) of y are
 * written. Each weight row is dequantized once per call (in tiles of 4 rows ×
 * 1024 elements held in L1) and dotted with all n_tok inputs. Threads split
 * [r0, r1). Equals per-token wk_dot_row up to fp32 summation order. */
void wk_matmul_rows(uint32_t type, const void *w, size_t row_stride_bytes, int64_t n,
                    int r0, int r1, const float *x, int n_tok, float *y, int n_out);

#endif
