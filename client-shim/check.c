/* SPDX-License-Identifier: MIT */
/* Check sessions (session.h): the way to a relay walked once, each step reported, ended by
 * a WebSocket ping the relay answers. `wgws-shim --check` walks it to every relay in turn and
 * prints each step and a verdict on stdout, exit status 0 only when every relay works; a
 * serving shim walks it once at start to its first relay and logs the result, so a wrong pin
 * or a refusing proxy shows at start, not at WireGuard's first packet. A check session has no
 * local source (its address is AF_UNSPEC: no datagram can reach it) and no second chance:
 * session_fail() of a check session comes here. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "log.h"
#include "session.h"

static uint64_t now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000 + (uint64_t)ts.tv_nsec / 1000;
}

static void check_relay(struct shim *sh, unsigned relay)
{
	const struct shim_conf *c = sh->conf;
	struct sockaddr_storage none = { .ss_family = AF_UNSPEC };
	char via[ADDR_HOST_MAX + 64];
	struct session *s = session_new(sh, &none, sizeof(none));

	if (!s) {
		log_warnx("check of %s: out of memory", c->relay_strs[relay]);
		return;
	}
	s->check = true;
	s->relay = relay;
	snprintf(s->name, sizeof(s->name), "check");
	if (sh->check == CHECK_ONLY) {
		printf("%s%s (%s)\n", relay ? "\n" : "", c->relay_strs[relay],
		       session_via(s, via, sizeof(via)));
		fflush(stdout);
	}
	s->check_t0 = now_us();
	session_connect(s);
}

void check_begin(struct shim *sh)
{
	sh->check_relay = sh->check == CHECK_ONLY ? 0 : sh->relay_cur;
	check_relay(sh, sh->check_relay);
}

/* s is done (and freed): the next relay, or the verdict. */
static void check_next(struct shim *sh)
{
	if (sh->check != CHECK_ONLY)
		return;
	if (++sh->check_relay < sh->conf->nrelays) {
		check_relay(sh, sh->check_relay);
		return;
	}
	if (!sh->check_failed)
		printf("\nverdict: %s from here\n", sh->conf->nrelays > 1 ? "every relay works" :
			"the relay works");
	else
		printf("\nverdict: %u of %u relay%s do%s not work from here\n", sh->check_failed,
		       sh->conf->nrelays, sh->conf->nrelays > 1 ? "s" : "",
		       sh->check_failed > 1 ? "" : "es");
	fflush(stdout);
	sh->stop = true;
}

void check_step(struct session *s, const char *fmt, ...)
{
	char what[SHIM_ERR_LEN * 2];
	uint64_t t = now_us();
	va_list ap;

	if (!s->check)
		return;
	va_start(ap, fmt);
	vsnprintf(what, sizeof(what), fmt, ap);
	va_end(ap);
	if (s->sh->check == CHECK_ONLY) {
		printf("  ok    %s (%.1f ms)\n", what, (double)(t - s->check_t0) / 1000.0);
		fflush(stdout);
	} else {
		log_debug("start-up check: %s", what);
	}
	s->check_t0 = t;
}

void check_failed(struct session *s, const char *why)
{
	struct shim *sh = s->sh;
	unsigned relay = s->relay;

	session_free(s);
	if (sh->check == CHECK_ONLY) {
		printf("  FAIL  %s\n", why);
		sh->check_failed++;
	} else {
		log_warnx("start-up check: %s does not work from here: %s (the shim serves on; "
			  "WireGuard's packets will try again)", sh->conf->relay_strs[relay], why);
	}
	check_next(sh);
}

int check_opened(struct session *s)
{
	static const char payload[] = "wgws-check";

	check_step(s, "WebSocket upgrade on %s: 101, subprotocol wgws", session_relay(s)->path);
	s->probe_at = s->sh->now; /* no pong within SHIM_PROBE_MS: session_tick fails it */
	s->probe_why = "the check's ping";
	deadline_hint(s);
	if (ws_send(s, WS_OP_PING, payload, sizeof(payload) - 1) < 0)
		return session_fail(s, "cannot queue the check's ping");
	return session_flush(s);
}

int check_pong(struct session *s)
{
	struct shim *sh = s->sh;
	char via[ADDR_HOST_MAX + 64];
	double ms = (double)(now_us() - s->check_t0) / 1000.0;

	if (sh->check == CHECK_ONLY) {
		printf("  ok    round trip through the relay: a ping answered in %.1f ms\n", ms);
		fflush(stdout);
	} else {
		log_info("start-up check: %s works from here (%s, %s, a ping answered in %.1f ms)",
			 sh->conf->relay_strs[s->relay], session_via(s, via, sizeof(via)),
			 SSL_get_version(s->ssl), ms);
	}
	session_free(s);
	check_next(sh);
	return -1;
}
