/* ops.c — thread pool and fp32 kernels of the CPU backend (see ops.h). */
#include "cpu/ops.h"

#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "cpu/dot.h"
#include "loader/quants.h"

// --- thread pool --------------------------------------------------------------

struct cpu_pool {
    int n;
    pthread_t *threads;
    pthread_mutex_t mu;
    pthread_cond_t cv_start, cv_done;
    unsigned long gen;  /* bumped for every job */
    int pending;        /* helper threads still running the current job */
    int quit;
    void (*fn)(void *, int, int);
    void *arg;
};

struct pool_thread_arg { struct cpu_pool *p; int ith; };

static void *pool_main(void *varg) {
    struct pool_thread_arg a = *(struct pool_thread_arg *)varg;
    free(varg);
    struct cpu_pool *p = a.p;
    unsigned long seen = 0;
    for (;;) {
        pthread_mutex_lock(&p->mu);
        while (p->gen == seen && !p->quit) pthread_cond_wait(&p->cv_start, &p->mu);
        if (p->quit) { pthread_mutex_unlock(&p->mu); return NULL; }
        seen = p->gen;
        void (*fn)(void *, int, int) = p->fn;
        void *arg = p->arg;
        pthread_mutex_unlock(&p->mu);
        fn(arg, a.ith, p->n);
        pthread_mutex_lock(&p->mu);
        if (--p->pending == 0) pthread_cond_signal(&p->cv_done);
        pthread_mutex_unlock(&p->mu);
    }
}

struct cpu_pool *cpu_pool_create(int n_threads) {
    if (n_threads < 1) n_threads = 1;
    struct cpu_pool *p = calloc(1, sizeof *p);
    if (!p) return NULL;
    p->n = n_threads;
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->cv_start, NULL);
    pthread_cond_init(&p->cv_done, NULL);
    p->threads = calloc((size_t)n_threads, sizeof *p->threads);
    if (!p->threads) { free(p); return NULL; }
    for (int i = 1; i < n_threads; i++) {
        struct pool_thread_arg *a = malloc(sizeof *a);
        if (!a || pthread_create(&p->threads[i], NULL, pool_main, (a->p = p, a->ith = i, a)) != 0) {
            free(a);
            p->n = i; /* run with what started */
            break;
        }
    }
    return p;
}

void cpu_pool_free(struct cpu_pool *p) {
    if (!p) return;
    pthread_mutex_lock(&p->mu);
    p->quit = 1;
    pthread_cond_broadcast(&p->cv_start);
    pthread_mutex_unlock(&p->mu);
    for (int i = 1; i < p->n; i++) pthread_join(p->threads[i], NULL);
    pthread_mutex_destroy(&p->mu);
    pthread_cond_destroy(&p->cv_start);
    pthread_cond_destroy(&p->cv_done);
    free(p->threads);
    free(p);
}

int cpu_pool_size(const struct cpu_pool *p) { return p ? p->n : 1; }

void cpu_pool_run(struct cpu_pool *p, void (*fn)(void *arg, int ith, int nth), void *arg) {
    cpu_pool_run_work(p, fn, arg, INT64_MAX);
}

/* Below this much work (multiply-adds) a job runs on the caller's thread:
 * waking helpers costs more than it saves, and far more when the cores are
 * busy with other processes. */
#define POOL_MIN_WORK (1 << 18)

void cpu_pool_run_work(struct cpu_pool *p, void (*fn)(void *arg, int ith, int nth), void *arg, int64_t work) {
    if (!p || p->n == 1 || work < POOL_MIN_WORK) { fn(arg, 0, 1); return; }
    pthread_mutex_lock(&p->mu);
    p->fn = fn;
    p->arg = arg;
    p->pending = p->n - 1;
    p->gen++;
    pthread_cond_broadcast(&p->cv_start);
    pthread_mutex_unlock(&p->mu);
    fn(arg, 0, p->n);
    pthread_mutex_lock(&p->mu);
    while (p->pending > 0) pthread_cond_wait(&p->cv_done, &p->mu);
    pthread_mutex_unlock(&p->mu);
}

// --- kernels ----------------------------------------------------------------------

void cpu_rmsnorm(const float *x, const float *w, float *out, int n, float eps) {
    double ss = 0.0;
    for (int i = 0; i < n; i++) ss += (double)x[i] * x[i];
    float scale = (float)(1.0 / sqrt(ss / n + eps));
    for (int i = 0; i < n; i++) out[i] = x[i] * scale * w[i];
}

struct matmul_job {
    const struct wk_tensor *W;
    const float *x;
    int n_tok;
    float *y;
    size_t row_bytes;
};

/* Rows are split into contiguous ranges per thread. Every call goes through
 * wk_matmul_rows, whatever n_tok: a row's result depends only on that weight
 * row and that token's x (its summation order is fixed by the tile shape, not
 * by the batch), which is what makes the forward batch-invariant. */
static void matmul_worker(void *varg, int ith, int nth) {
    struct matmul_job *j = varg;
    const int64_t n_in = j->W->ne[0], n_out = j->W->ne[1];
    const int64_t r0 = n_out * ith / nth, r1 = n_out * (ith + 1) / nth;
    if (r1 <= r0) return;
    wk_matmul_rows(j->W->type, j->W->data, j->row_bytes, n_in, (int)r0, (int)r1, j->x, j->n_tok, j->y, (int)n_out);
}

void cpu_matmul(struct cpu_pool *p, const struct wk_tensor *W, const float *x, int n_tok, float *y) {
    struct matmul_job j = {W, x, n_tok, y, wk_row_bytes(W->type, W->ne[0])};
    cpu_pool_run_work(p, matmul_worker, &j, W->ne[0] * W->ne[1] * n_tok);
}

void cpu_rope(float *v, int n_heads, int head_dim, const struct wk_rope *r, int pos, enum wk_rope_type type) {
    const int half = r->dim / 2;
    for (int i = 0; i < half; i++) {
        float c, s;
        wk_rope_cos_sin(r, pos, i, &c, &s);
        for (int h = 0; h < n_heads; h++) {
            float *hv = v + (size_t)h * head_dim;
            int a = type == WK_ROPE_NEOX ? i : 2 * i;
            int b = type == WK_ROPE_NEOX ? i + half : 2 * i + 1;
            float x0 = hv[a], x1 = hv[b];
            hv[a] = x0 * c - x1 * s;
            hv[b] = x0 * s + x1 * c;
        }
    }
}

void cpu_glu(float *gate, const float *up, size_t n, enum wk_act act) {
    if (act == WK_ACT_GELU_TANH) {
        const float k = 0.7978845608028654f; /* sqrt(2/pi) */
        for (size_t i = 0; i < n; i++) {
            float g = gate[i];
            gate[i] = 0.5f * g * (1.0f + tanhf(k * (g + 0.044715f * g * g * g))) * up[i];
        }
    } else {
        for (size_t i = 0; i < n; i++) {
            float g = gate[i];
            gate[i] = g / (1.0f + expf(-g)) * up[i];
        }
    }
}

void cpu_embed_row(const struct wk_tensor *tok_embd, int32_t id, float *out) {
    size_t rb = wk_row_bytes(tok_embd->type, tok_embd->ne[0]);
    wk_dequantize_row(tok_embd->type, (const uint8_t *)tok_embd->data + (size_t)id * rb, out, tok_embd->ne[0]);
}
