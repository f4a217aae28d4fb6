/* SPDX-License-Identifier: MIT */
/* libFuzzer harness for the config line parser: any bytes, one line at a time. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "conf.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char line[1100], err[CONF_ERR_LEN];
	struct conf_line cl;

	if (size >= sizeof(line))
		return 0;
	memcpy(line, data, size);
	line[size] = '\0';
	if (conf_parse_line(line, &cl, err) == 0 && cl.kind != CONF_BLANK) {
		if (!cl.key || strlen(cl.key) > size)
			abort();
		if (cl.kind == CONF_PAIR && (!cl.value || !*cl.value))
			abort();
	}
	return 0;
}
