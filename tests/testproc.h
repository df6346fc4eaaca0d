/* testproc.h — a worker process driven through pipes, for the tests that
 * speak the protocol (test-worker, test-real-models). */
#ifndef WK_TESTPROC_H
#define WK_TESTPROC_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#include "worker.pb-c.h"

struct wk_frame_reader;

struct tu_proc {
    pid_t pid;                  /* -1 once reaped */
    int to;                     /* worker stdin (write end), -1 once closed */
    int from;                   /* worker stdout (read end) */
    struct wk_frame_reader *rd; /* frames read from `from`, owned */
};

/* fork + exec argv (argv[0] = the worker binary) with stdin/stdout on pipes;
 * SIGPIPE is ignored in the caller so writes to a dead worker fail instead of
 * killing the test. Does not wait for Ready. NULL if a pipe or fork failed. */
struct tu_proc *tu_proc_spawn(const char *const *argv);

/* Write len raw bytes / one framed Request to the worker's stdin. */
bool tu_proc_send_raw(struct tu_proc *p, const void *buf, size_t len);
bool tu_proc_send(struct tu_proc *p, const Orcd__V1__Request *r);

/* The next Response (caller frees with orcd__v1__response__free_unpacked),
 * or NULL at EOF, timeout, or an undecodable frame; *why (if given) says
 * which: "eof", "timeout", "bad frame", "undecodable". */
Orcd__V1__Response *tu_proc_recv(struct tu_proc *p, int timeout_ms, const char **why);

#endif
