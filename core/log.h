/* log.h — the worker's one logging function. stderr only, one line per event.
 *
 * Plain form:  2026-11-27T17:20:01.123Z info  server: ready (load 0.12 s)
 * JSON form:   {"ts":"2026-11-27T17:20:01.123Z","level":"info","msg":"server: ready ..."}
 * Each line is written with a single write(2), so lines from different
 * threads never interleave. stdout is never touched (it carries frames).
 */
#ifndef WK_LOG_H
#define WK_LOG_H

#include <stdbool.h>

#ifdef __cplusplus
extern "C" {
#endif

enum wk_log_level { WK_LOG_DEBUG = 0, WK_LOG_INFO, WK_LOG_WARN, WK_LOG_ERROR, WK_LOG_OFF };

/* Messages below `level` are dropped (default WK_LOG_INFO). */
void wk_log_set_level(enum wk_log_level level);
enum wk_log_level wk_log_get_level(void);
/* One JSON object per line instead of plain text. */
void wk_log_set_json(bool json);
/* "debug" | "info" | "warn" | "error" | "off" -> level; -1 if unknown. */
int wk_log_level_parse(const char *name);

void wk_log(enum wk_log_level level, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;

#ifdef __cplusplus
}
#endif

#endif
