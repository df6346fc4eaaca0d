/* testproc.c — see testproc.h. */
#include "tests/testproc.h"

#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <unistd.h>

#include "worker/frame.h"

struct tu_proc *tu_proc_spawn(const char *const *argv) {
    int in[2], out[2];
    if (pipe2(in, O_CLOEXEC) != 0) return NULL;
    if (pipe2(out, O_CLOEXEC) != 0) {
        close(in[0]);
        close(in[1]);
        return NULL;
    }
    struct tu_proc *p = calloc(1, sizeof *p);
    struct wk_frame_reader *rd = malloc(sizeof *rd);
    pid_t pid = p && rd ? fork() : -1;
    if (pid < 0) {
        free(p);
        free(rd);
        close(in[0]); close(in[1]); close(out[0]); close(out[1]);
        return NULL;
    }
    if (pid == 0) {
        dup2(in[0], 0);
        dup2(out[1], 1);
        signal(SIGPIPE, SIG_DFL);
        execv(argv[0], (char *const *)argv);
        _exit(127);
    }
    close(in[0]);
    close(out[1]);
    signal(SIGPIPE, SIG_IGN);
    p->pid = pid;
    p->to = in[1];
    p->from = out[0];
    p->rd = rd;
    wk_frame_reader_init(p->rd, p->from, 64u << 20);
    return p;
}

bool tu_proc_send_raw(struct tu_proc *p, const void *buf, size_t len) {
    char err[128];
    return wk_write_full(p->to, buf, len, err, sizeof err) == WK_STATUS_OK;
}

bool tu_proc_send(struct tu_proc *p, const Orcd__V1__Request *r) {
    uint8_t *fr;
    size_t len;
    char err[128];
    if (wk_frame_pack(&r->base, &fr, &len, err, sizeof err) != WK_STATUS_OK) return false;
    bool ok = tu_proc_send_raw(p, fr, len);
    free(fr);
    return ok;
}

Orcd__V1__Response *tu_proc_recv(struct tu_proc *p, int timeout_ms, const char **why) {
    struct wk_frame_info info;
    enum wk_frame_ev ev = wk_frame_reader_next(p->rd, timeout_ms, -1, &info);
    if (ev != WK_FRAME_MSG) {
        if (why) *why = ev == WK_FRAME_TIMEOUT ? "timeout" : ev == WK_FRAME_EOF ? "eof" : "bad frame";
        return NULL;
    }
    Orcd__V1__Response *r = orcd__v1__response__unpack(NULL, (size_t)info.len, info.payload);
    if (!r && why) *why = "undecodable";
    return r;
}
