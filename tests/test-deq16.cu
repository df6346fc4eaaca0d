/* test-deq16.cu — the GEMM's weight chunks of Q8_0, Q5_0 and Q4_0
 * (wk_load_w8, gemm-tile.cuh) have the bits of the loader's dequantization
 * rounded once to f16.
 *
 * These types take a shortcut on the GPU: the integers are made f16 under a
 * magic exponent and the scale is multiplied in f16x2 (cuda/common.cuh),
 * which is __float2half_rn(d * q) exactly because d * q is exact in f32.
 * This checks it on random blocks — every quant byte random, scales drawn
 * from all finite f16 values (subnormals, zeros of both signs and the
 * largest included) — against the CPU loader's wk_dequantize_row rounded to
 * f16 on the host, element by element, bit for bit (uploaded in the
 * device's row layout, wk_grouped_to_dev, as the backend does). (The other types keep
 * the f32 formula on the GPU, where fused multiply-adds may round
 * differently from the CPU's; test-cuda bounds those.) No device: exit 77. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cuda/gemm-tile.cuh"

#define N_BLOCKS 8192 /* blocks of 32 elements a type */

/* out[c] = wk_load_w8<T>(w, c) for every 8-element chunk c of one long row */
template <int T>
__global__ void chunks_kernel(const uint8_t *w, int n_chunks, uint4 *out) {
    const int c = blockIdx.x * blockDim.x + threadIdx.x;
    if (c < n_chunks) out[c] = wk_load_w8<T>(w, c);
}

/* out[8c..8c+7] = wk_deq8<T>(w, c): the f32 path (token embeddings) over the same layout */
template <int T>
__global__ void chunks32_kernel(const uint8_t *w, int n_chunks, float *out) {
    const int c = blockIdx.x * blockDim.x + threadIdx.x;
    if (c < n_chunks) wk_deq8<T>(w, c, out + 8 * c);
}

static uint32_t rng_state = 12345u;
static uint32_t rnd(void) { /* xorshift32: the test's data only */
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 17;
    rng_state ^= rng_state << 5;
    return rng_state;
}

/* A random finite f16 (any sign, exponent 0..30, any mantissa). */
static uint16_t rnd_finite_half(void) {
    const uint32_t r = rnd();
    const uint16_t e = (uint16_t)(r % 31u), m = (uint16_t)((r >> 5) & 0x3FFu), s = (uint16_t)((r >> 15) & 1u);
    return (uint16_t)(s << 15 | e << 10 | m);
}

/* One type T: blocks of 32 elements, block_bytes each, the f16 scale d first. */
template <int T>
static int check_type(const char *name, int block_bytes) {
    const int n_elems = N_BLOCKS * 32, n_chunks = n_elems / 8;
    const size_t bytes = (size_t)N_BLOCKS * block_bytes;
    uint8_t *h = (uint8_t *)malloc(bytes);
    float *ref = (float *)malloc((size_t)n_elems * sizeof(float));
    uint4 *got = (uint4 *)malloc((size_t)n_chunks * sizeof(uint4));
    for (size_t i = 0; i < bytes; i++) h[i] = (uint8_t)rnd();
    for (int b = 0; b < N_BLOCKS; b++) {
        const uint16_t d = rnd_finite_half();
        memcpy(h + (size_t)b * block_bytes, &d, 2);
    }
    wk_dequantize_row((uint32_t)T, h, ref, n_elems);
    { /* the GPU reads these types in their device layout (N_BLOCKS % 4 == 0: the same size) */
        uint8_t *dev = (uint8_t *)malloc(wk_grouped_row_bytes(T, n_elems));
        wk_grouped_to_dev(T, h, dev, n_elems);
        free(h);
        h = dev;
    }

    uint8_t *dw = NULL;
    uint4 *dout = NULL;
    int bad = -1;
    if (cudaMalloc(&dw, bytes) == cudaSuccess && cudaMalloc(&dout, (size_t)n_chunks * sizeof(uint4)) == cudaSuccess &&
        cudaMemcpy(dw, h, bytes, cudaMemcpyHostToDevice) == cudaSuccess) {
        chunks_kernel<T><<<(n_chunks + 255) / 256, 256>>>(dw, n_chunks, dout);
        if (cudaMemcpy(got, dout, (size_t)n_chunks * sizeof(uint4), cudaMemcpyDeviceToHost) == cudaSuccess) {
            bad = 0;
            for (int c = 0; c < n_chunks; c++) {
                uint16_t g[8];
                memcpy(g, &got[c], sizeof g);
                for (int e = 0; e < 8; e++) {
                    const float r = ref[8 * c + e];
                    const __half rh = __float2half_rn(r);
                    uint16_t want;
                    memcpy(&want, &rh, 2);
                    /* NaN cannot come from finite scales; compare the bits */
                    if (g[e] != want) {
                        if (bad < 5)
                            fprintf(stderr, "  %s chunk %d elem %d: got 0x%04x, loader %.9g -> 0x%04x\n", name, c,
                                    e, g[e], r, want);
                        bad++;
                    }
                }
            }
        }
    }
    if (bad < 0) fprintf(stderr, "%s: CUDA error %s\n", name, cudaGetErrorString(cudaGetLastError()));
    else printf("DEQ16 %-5s %d chunks: %d elements differ from the loader's value rounded to f16\n", name, n_chunks, bad);
    /* the f32 path: d * q, one rounding, as the loader: the same bits */
    int bad32 = -1;
    float *d32 = NULL, *got32 = (float *)malloc((size_t)n_elems * sizeof(float));
    if (bad >= 0 && got32 && cudaMalloc(&d32, (size_t)n_elems * sizeof(float)) == cudaSuccess) {
        chunks32_kernel<T><<<(n_chunks + 255) / 256, 256>>>(dw, n_chunks, d32);
        if (cudaMemcpy(got32, d32, (size_t)n_elems * sizeof(float), cudaMemcpyDeviceToHost) == cudaSuccess) {
            bad32 = 0;
            for (int i = 0; i < n_elems; i++)
                if (memcmp(&got32[i], &ref[i], sizeof(float)) != 0) {
                    if (bad32 < 5) fprintf(stderr, "  %s f32 elem %d: got %.9g, loader %.9g\n", name, i, got32[i], ref[i]);
                    bad32++;
                }
        }
    }
    if (bad32 < 0) fprintf(stderr, "%s: f32 path: CUDA error %s\n", name, cudaGetErrorString(cudaGetLastError()));
    else printf("DEQ32 %-5s %d elements: %d differ from the loader's value\n", name, n_elems, bad32);
    cudaFree(d32);
    free(got32);
    cudaFree(dw);
    cudaFree(dout);
    free(h);
    free(ref);
    free(got);
    return bad == 0 && bad32 == 0 ? 0 : 1;
}

int main(void) {
    int n_dev = 0;
    if (cudaGetDeviceCount(&n_dev) != cudaSuccess || n_dev < 1) {
        printf("SKIP test-deq16: no CUDA device\n");
        return 77;
    }
    int fails = 0;
    fails += check_type<GGML_TYPE_Q8_0>("Q8_0", 34);
    fails += check_type<GGML_TYPE_Q5_0>("Q5_0", 22);
    fails += check_type<GGML_TYPE_Q4_0>("Q4_0", 18);
    printf("test-deq16: %d of 3 types differ\n", fails);
    return fails ? 1 : 0;
}
