/* rope.h — the rotary-embedding angle, one formula for both backends.
 *
 * Pair i (0 <= i < rope_dim/2) of a head at position pos is rotated by
 *     angle = pos * theta^(-2i/rope_dim) / factor[i]
 * (factor = 1 without frequency factors; Phi-3 LongRoPE divides each
 * frequency by its factor), and cos/sin are multiplied by attn_factor
 * (1 unless the model says; LongRoPE's magnitude correction). Computed in
 * double so both backends start from the same float cos/sin: the CPU calls
 * it per row, CUDA fills its (n_ctx, rope_dim/2) table with it at load.
 * Which pairs rotate (NORM: (2i, 2i+1); NEOX: (i, i + rope_dim/2)) is the
 * backend's business.
 */
#ifndef WK_ROPE_H
#define WK_ROPE_H

#include <math.h>

struct wk_rope {
    int dim;                   /* rotated dims per head (even) */
    float theta;               /* frequency base */
    const float *freq_factors; /* dim/2 floats, or NULL; borrowed */
    float attn_factor;         /* scales cos and sin; 1 = none */
};

static inline void wk_rope_cos_sin(const struct wk_rope *r, int pos, int i, float *c, float *s) {
    double inv = pow((double)r->theta, -2.0 * i / r->dim);
    if (r->freq_factors) inv /= (double)r->freq_factors[i];
    const double ang = (double)pos * inv;
    *c = (float)(cos(ang) * r->attn_factor);
    *s = (float)(sin(ang) * r->attn_factor);
}

#endif
