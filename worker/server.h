/* server.h — the worker's request loop: threads, queue, writer, shutdown.
 *
 *   reader thread   decodes frames from in_fd; answers Health and Cancel at
 *                   once; Infer goes to a bounded queue (requests waiting
 *                   for the running batch, at most max_queue: full is Error
 *                   RESOURCE_EXHAUSTED; an id already in flight is Error
 *                   ALREADY_EXISTS); Shutdown / EOF start draining
 *   generation      wk_server_run() on the caller's thread: moves queued
 *                   requests into the scheduler (worker/request.c,
 *                   worker/scheduler.c) and steps it — every running
 *                   sequence advances one step at a time, new ones join
 *                   between steps
 *   writer thread   the only writer of out_fd; frames are queued, so the
 *                   reader never blocks on stdout; the queue is bounded
 *                   (max_output): when the client stops reading, the
 *                   generation loop waits (Health.output_paused) rather
 *                   than queueing without bound
 *
 * Cancel of a queued request removes it; it is answered with CancelAck(found)
 * and then Done(reason CANCELLED, 0 tokens, no Started). Requests still
 * queued at shutdown get the same Done(cancelled).
 *
 * Exit statuses returned by wk_server_run (worker-orcd exits with them):
 *   0  clean shutdown (Shutdown request, stdin EOF, SIGTERM, SIGINT)
 *   3  fatal framing error: bad flag byte, frame truncated at EOF, read error
 *   4  the model failed to load (after Error id 0)
 *   5  stdout closed (EPIPE): nothing can be reported any more
 *   6  the backend failed in a way that leaves it unusable (CUDA/cuBLAS)
 */
#ifndef WK_SERVER_H
#define WK_SERVER_H

#include <stdbool.h>
#include <stddef.h>

#include "core/backend.h"
#include "core/status.h"

#ifdef __cplusplus
extern "C" {
#endif

enum {
    WK_EXIT_OK = 0,
    WK_EXIT_USAGE = 2,
    WK_EXIT_PROTOCOL = 3,
    WK_EXIT_LOAD = 4,
    WK_EXIT_OUTPUT = 5,
    WK_EXIT_BACKEND = 6,
};

struct wk_model;

struct wk_server_config {
    size_t max_frame; /* 0: WK_FRAME_MAX_DEFAULT */
    int max_queue;    /* requests waiting for the running batch; <= 0: 16 */
    size_t max_output; /* output queue bound, bytes: generation waits while this
                          much is queued for stdout (0: 4 MiB); see server.c */
};

struct wk_server;

wk_status wk_server_create(const struct wk_server_config *cfg, int in_fd, int out_fd,
                           struct wk_server **out, char *err, size_t err_len);

/* Start the reader and writer threads. Until wk_server_set_ready, Health
 * answers LOADING and Infer requests wait in the queue. */
wk_status wk_server_start(struct wk_server *s, char *err, size_t err_len);

/* The model is loaded: remember it (borrowed) and send Ready (id 0). */
void wk_server_set_ready(struct wk_server *s, const struct wk_model *m, struct wk_backend *b,
                         double load_seconds);

/* Loading failed: send Error (id 0) with st and msg, fail queued requests;
 * wk_server_run then returns WK_EXIT_LOAD. */
void wk_server_set_failed(struct wk_server *s, wk_status st, const char *msg);

/* Serve the queue on this thread until shutdown; flush; return the exit status. */
int wk_server_run(struct wk_server *s);

/* Stop accepting, cancel the running request, cancel the queued ones.
 * Thread-safe; idempotent (the first exit status wins). */
void wk_server_shutdown(struct wk_server *s, int exit_status, const char *why);

bool wk_server_stopping(struct wk_server *s);

/* Joins what is left and frees. NULL is a no-op. */
void wk_server_destroy(struct wk_server *s);

#ifdef __cplusplus
}
#endif

#endif
