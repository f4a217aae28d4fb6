/* SPDX-License-Identifier: MIT */
/* The --metrics listener: GET /metrics (Prometheus text) and GET /healthz, one request per
 * connection, in a few dozen lines of our own rather than an lws vhost. lws picks a vhost by
 * the request's Host header among vhosts of the same port, and vhosts without a listener all
 * share one "port": a tunnel client naming the metrics vhost would have been served metrics.
 *
 * Bounded: at most METRICS_CONNS_MAX connections (more are closed at accept), a request head
 * of at most METRICS_REQ_MAX bytes read within --header-timeout, one answer, then close. An
 * answer the socket does not take at once (a body of thousands of token lines, a slow
 * scraper) is kept, its rest written as the socket drains, within --header-timeout again.
 * Accept errors pause the listener instead of spinning. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "log.h"
#include "relay.h"

enum {
	METRICS_REQ_MAX = 2048,
	METRICS_BODY_MAX = 262144, /* room for --tokens' TOKENS_MAX lines */
};

struct mconn {
	ev_io io;
	ev_timer deadline;
	int fd;
	size_t len;
	char req[METRICS_REQ_MAX + 1];
	char *out;          /* the rest of an answer the socket did not take at once */
	size_t out_len, out_off;
};

static struct {
	struct ev_loop *loop;
	struct listener listener;
	unsigned conns;
	struct mconn *slots[METRICS_CONNS_MAX];
} m = { .listener.fd = -1 };

/* Single-threaded: one answer buffer for all. */
static char answer[METRICS_BODY_MAX + 256];

static void mconn_close(struct mconn *c)
{
	for (unsigned i = 0; i < METRICS_CONNS_MAX; i++)
		if (m.slots[i] == c)
			m.slots[i] = NULL;
	ev_io_stop(m.loop, &c->io);
	ev_timer_stop(m.loop, &c->deadline);
	close(c->fd);
	free(c->out);
	free(c);
	m.conns--;
}

static void on_write(struct ev_loop *loop, ev_io *w, int revents)
{
	struct mconn *c = w->data;
	ssize_t n = send(c->fd, c->out + c->out_off, c->out_len - c->out_off,
			 MSG_NOSIGNAL | MSG_DONTWAIT);

	if (n < 0 && (errno == EAGAIN || errno == EINTR))
		return;
	if (n > 0)
		c->out_off += (size_t)n;
	if (n <= 0 || c->out_off == c->out_len)
		mconn_close(c);
}

/* Send the answer; false when its rest waits in c for the socket to drain (on_write). */
static bool reply(struct mconn *c, const char *status, const char *body, size_t len)
{
	int n = snprintf(answer, sizeof(answer) - METRICS_BODY_MAX,
			 "HTTP/1.1 %s\r\ncontent-type: text/plain; version=0.0.4; charset=utf-8\r\n"
			 "content-length: %zu\r\nconnection: close\r\n\r\n", status, len);
	size_t total = (size_t)n + len;
	ssize_t sent;

	memmove(answer + n, body, len);
	sent = send(c->fd, answer, total, MSG_NOSIGNAL | MSG_DONTWAIT);
	if (sent < 0 && errno != EAGAIN && errno != EINTR)
		return true;
	if (sent < 0)
		sent = 0;
	if ((size_t)sent == total || !(c->out = malloc(total - (size_t)sent)))
		return true;
	memcpy(c->out, answer + sent, total - (size_t)sent);
	c->out_len = total - (size_t)sent;
	ev_io_stop(m.loop, &c->io);
	ev_io_init(&c->io, on_write, c->fd, EV_WRITE);
	c->io.data = c;
	ev_io_start(m.loop, &c->io);
	ev_timer_stop(m.loop, &c->deadline);
	ev_timer_set(&c->deadline, (double)relay.cfg.header_timeout_s, 0.);
	ev_timer_start(m.loop, &c->deadline);
	return false;
}

static bool answer_request(struct mconn *c)
{
	char *body = answer + sizeof(answer) - METRICS_BODY_MAX;

	if (!strncmp(c->req, "GET /metrics ", 13) || !strncmp(c->req, "GET /metrics?", 13))
		return reply(c, "200 OK", body, http_render_metrics(body, METRICS_BODY_MAX));
	if (!strncmp(c->req, "GET /healthz ", 13))
		return reply(c, "200 OK", "ok\n", 3);
	if (!strncmp(c->req, "GET ", 4))
		return reply(c, "404 Not Found", "not found\n", 10);
	return reply(c, "405 Method Not Allowed", "GET only\n", 9);
}

static void on_read(struct ev_loop *loop, ev_io *w, int revents)
{
	struct mconn *c = w->data;
	ssize_t n = recv(c->fd, c->req + c->len, METRICS_REQ_MAX - c->len, 0);

	if (n < 0 && (errno == EAGAIN || errno == EINTR))
		return;
	if (n <= 0) {
		mconn_close(c);
		return;
	}
	c->len += (size_t)n;
	c->req[c->len] = '\0';
	if (strstr(c->req, "\r\n\r\n") || strstr(c->req, "\n\n")) {
		if (!answer_request(c))
			return; /* the rest goes as the socket drains */
	} else if (c->len < METRICS_REQ_MAX) {
		return;
	} else if (!reply(c, "431 Request Header Fields Too Large", "too large\n", 10)) {
		return;
	}
	mconn_close(c);
}

static void on_deadline(struct ev_loop *loop, ev_timer *w, int revents)
{
	mconn_close(w->data);
}

static void on_accept(struct ev_loop *loop, ev_io *w, int revents)
{
	for (int k = 0; k < METRICS_CONNS_MAX; k++) {
		struct mconn *c;
		int fd = listener_accept(&m.listener, NULL, NULL);

		if (fd < 0)
			return;
		if (m.conns >= METRICS_CONNS_MAX || !(c = calloc(1, sizeof(*c)))) {
			relay.st.metrics_refused++;
			close(fd);
			continue;
		}
		c->fd = fd;
		ev_io_init(&c->io, on_read, fd, EV_READ);
		c->io.data = c;
		ev_timer_init(&c->deadline, on_deadline, (double)relay.cfg.header_timeout_s, 0.);
		c->deadline.data = c;
		ev_io_start(loop, &c->io);
		ev_timer_start(loop, &c->deadline);
		for (unsigned i = 0; i < METRICS_CONNS_MAX; i++)
			if (!m.slots[i]) {
				m.slots[i] = c;
				break;
			}
		m.conns++;
	}
}

void metrics_start(struct ev_loop *loop, int fd)
{
	m.loop = loop;
	listener_start(&m.listener, loop, fd, "--metrics", on_accept);
}

void metrics_stop(void)
{
	if (m.listener.fd < 0)
		return;
	for (unsigned i = 0; i < METRICS_CONNS_MAX; i++)
		if (m.slots[i])
			mconn_close(m.slots[i]);
	listener_stop(&m.listener);
}

unsigned metrics_conns(void)
{
	return m.conns;
}
