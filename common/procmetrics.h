/* SPDX-License-Identifier: MIT */
/* The metrics every wgws daemon exposes about itself, in Prometheus text: PREFIX_build_info
 * and the standard process_* family (resident memory, open and maximum descriptors, CPU
 * seconds, start time), read from /proc/self, which the sandboxes allow (read-only opens).
 * Cheap enough for an event loop: see open_fds() for the descriptor count. */
#ifndef WGWS_PROCMETRICS_H
#define WGWS_PROCMETRICS_H

#include <stddef.h>

/* Note the start time (call once, early). */
void procmetrics_init(void);

/* Append the lines (HELP and TYPE included) to buf[0..size); returns the bytes written, 0
 * when they did not fit (nothing partial is left: the caller's length is unchanged). */
size_t metrics_build_process(char *buf, size_t size, const char *prefix, const char *version);

#endif
