/* rng.h — the counter-based RNG shared by the CPU and CUDA samplers.
 *
 * u = wk_rng_u01(seed, counter): a pure function (SplitMix64 finalizer over
 * seed and counter), so the draw for token k of a request depends only on
 * the request's seed and k — never on thread timing or on the backend. Both
 * backends call this same code, so a seed means the same thing on both.
 */
#ifndef WK_RNG_H
#define WK_RNG_H

#include <stdint.h>

#if defined(__CUDACC__)
#define WK_HD __host__ __device__ __forceinline__
#else
#define WK_HD static inline
#endif

WK_HD uint64_t wk_rng_mix64(uint64_t z) {
    z += 0x9E3779B97F4A7C15ull;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

/* Uniform double in [0, 1) with 53 random bits. */
WK_HD double wk_rng_u01(uint64_t seed, uint64_t counter) {
    uint64_t z = wk_rng_mix64(wk_rng_mix64(seed) ^ (counter * 0xD1B54A32D192ED03ull));
    return (double)(z >> 11) * (1.0 / 9007199254740992.0);
}

#endif
