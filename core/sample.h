/* sample.h — the reference sampler (CPU; the CUDA backend mirrors it).
 *
 * Order, on a copy of the logits of the last position:
 *   1. repetition penalty over the last repeat_last_n history tokens (each
 *      distinct id once): l > 0 ? l / penalty : l * penalty
 *   2. temperature == 0: argmax (ties to the lowest id); done
 *   3. divide by temperature
 *   4. top-k (k > 0): keep the k largest (ties broken by lower id)
 *   5. softmax over what is kept
 *   6. top-p (0 < p < 1): keep the smallest prefix (by descending prob) whose
 *      mass >= p
 *   7. min-p (> 0): drop tokens with prob < min_p * max prob
 *   8. renormalize; u = wk_rng_u01(seed, step); first token whose cumulative
 *      prob exceeds u * total (descending order, ties by lower id)
 * logprob / top-N: log-softmax of the raw (unpenalized) logits.
 * Deterministic: same inputs => same output, bit for bit.
 */
#ifndef WK_SAMPLE_H
#define WK_SAMPLE_H

#include "core/backend.h"

#ifdef __cplusplus
extern "C" {
#endif

/* logits: n_vocab floats, read-only. scratch is owned by the caller
 * (wk_sampler_scratch_bytes(n_vocab) bytes) so the hot path does not allocate. */
size_t wk_sampler_scratch_bytes(int n_vocab);
void wk_sample_logits(const float *logits, int n_vocab, const struct wk_sampling *p,
                      const int32_t *history, size_t n_history, uint64_t step, void *scratch,
                      struct wk_sample_out *out);

/* Validate request parameters; INVALID_ARGUMENT naming the field. */
wk_status wk_sampling_validate(const struct wk_sampling *p, char *err, size_t err_len);

#ifdef __cplusplus
}
#endif

#endif
