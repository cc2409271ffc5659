/* log.h - one line per event on stderr: `level module: message key=value ...`.
 * Never pass secrets (tokens, passwords, keys) to these functions. */
#ifndef AL_LOG_H
#define AL_LOG_H

enum log_level { LOG_LVL_DEBUG = 0, LOG_LVL_INFO, LOG_LVL_WARN, LOG_LVL_ERROR };

void log_set_level(enum log_level level);
int log_level_parse(const char *name, enum log_level *out);
int log_enabled(enum log_level level);
void log_msg(enum log_level level, const char *module, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

#define log_debug(mod, ...)                                       \
	do {                                                      \
		if (log_enabled(LOG_LVL_DEBUG))                   \
			log_msg(LOG_LVL_DEBUG, mod, __VA_ARGS__); \
	} while (0)
#define log_info(mod, ...) log_msg(LOG_LVL_INFO, mod, __VA_ARGS__)
#define log_warn(mod, ...) log_msg(LOG_LVL_WARN, mod, __VA_ARGS__)
#define log_error(mod, ...) log_msg(LOG_LVL_ERROR, mod, __VA_ARGS__)

#endif
