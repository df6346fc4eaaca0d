/* log.c — one line per event on stderr, plain or JSON (see log.h). */
#include "core/log.h"

#include <errno.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static atomic_int g_level = WK_LOG_INFO;
static atomic_bool g_json = false;

static const char *const level_names[] = {"debug", "info", "warn", "error", "off"};

void wk_log_set_level(enum wk_log_level level) { atomic_store(&g_level, (int)level); }
enum wk_log_level wk_log_get_level(void) { return (enum wk_log_level)atomic_load(&g_level); }
void wk_log_set_json(bool json) { atomic_store(&g_json, json); }

int wk_log_level_parse(const char *name) {
    for (int i = 0; i <= WK_LOG_OFF; i++)
        if (name && strcmp(name, level_names[i]) == 0) return i;
    if (name && strcmp(name, "warning") == 0) return WK_LOG_WARN;
    return -1;
}

/* Append s to buf[*n..cap) as the inside of a JSON string. */
static void json_escape(char *buf, size_t cap, size_t *n, const char *s) {
    for (; *s && *n + 7 < cap; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\') {
            buf[(*n)++] = '\\';
            buf[(*n)++] = (char)c;
        } else if (c == '\n') {
            buf[(*n)++] = '\\';
            buf[(*n)++] = 'n';
        } else if (c < 0x20) {
            *n += (size_t)snprintf(buf + *n, cap - *n, "\\u%04x", c);
        } else {
            buf[(*n)++] = (char)c;
        }
    }
}

void wk_log(enum wk_log_level level, const char *fmt, ...) {
    if ((int)level < atomic_load(&g_level) || level >= WK_LOG_OFF) return;
    int saved_errno = errno;

    char msg[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    /* one event = one line: fold embedded newlines */
    size_t ml = strlen(msg);
    while (ml > 0 && msg[ml - 1] == '\n') msg[--ml] = '\0';

    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    struct tm tm;
    gmtime_r(&ts.tv_sec, &tm);
    char when[64];
    snprintf(when, sizeof when, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900,
             tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
             (int)(ts.tv_nsec / 1000000) % 1000);

    char line[4096 + 64];
    size_t n = 0;
    if (atomic_load(&g_json)) {
        n = (size_t)snprintf(line, sizeof line, "{\"ts\":\"%s\",\"level\":\"%s\",\"msg\":\"", when,
                             level_names[level]);
        json_escape(line, sizeof line - 4, &n, msg);
        memcpy(line + n, "\"}\n", 3);
        n += 3;
    } else {
        for (char *p = msg; *p; p++)
            if (*p == '\n' || *p == '\r') *p = ' ';
        n = (size_t)snprintf(line, sizeof line, "%s %-5s %s\n", when, level_names[level], msg);
        if (n >= sizeof line) {
            n = sizeof line - 1;
            line[n - 1] = '\n';
        }
    }
    /* one write per line: lines from several threads do not interleave */
    const char *p = line;
    while (n > 0) {
        ssize_t w = write(STDERR_FILENO, p, n);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) break;
        p += w;
        n -= (size_t)w;
    }
    errno = saved_errno;
}
