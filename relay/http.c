/* SPDX-License-Identifier: MIT */
/* Everything on the relay that is plain HTTP: /healthz, 404 for any other path, 426 for the
 * tunnel path without an upgrade, the end of each connection (for admit.c), and the
 * Prometheus text (served by metrics.c). Upgrades that ask for no subprotocol of ours
 * land here (lws binds them to the first protocol): flyctl's client (no subprotocol, path /)
 * becomes a tunnel (conn.c), the rest are refused: the tunnel vhost has only "http" and
 * "wgws", the internal protocols live on a vhost no client reaches. */
#include <stdio.h>
#include <string.h>

#include "log.h"
#include "procmetrics.h"
#include "relay.h"

static const char *const drop_names[DROP_MAX] = {
	[DROP_OVERSIZE] = "oversize",   [DROP_MALFORMED] = "malformed",
	[DROP_TRUNCATED] = "truncated", [DROP_QUEUE_FULL] = "queue_full",
	[DROP_UDP_ERROR] = "udp_error",   [DROP_FOREIGN] = "foreign_source",
	[DROP_JIT_UNKNOWN] = "jit_unknown", [DROP_JIT_REFUSED] = "jit_refused",
	[DROP_JIT_SUPERSEDED] = "jit_superseded",
};

static const char *const reject_names[REJECT_MAX] = {
	[REJECT_LIMIT] = "limit",
	[REJECT_IP_LIMIT] = "ip_limit",
	[REJECT_UPGRADE] = "bad_upgrade",
	[REJECT_PENDING] = "pending",
	[REJECT_SHUTDOWN] = "shutdown",
	[REJECT_IP_RATE] = "ip_rate",
	[REJECT_TOKEN] = "token",
	[REJECT_TOKEN_LIMIT] = "token_limit",
	[REJECT_PROXY_PROTOCOL] = "proxy_protocol",
	[REJECT_FORWARDED] = "forwarded",
};

static const char *const evict_names[EVICT_MAX] = {
	[EVICT_PER_IP] = "per_ip",
	[EVICT_FULL] = "full",
	[EVICT_SILENT] = "silent",
	[EVICT_SLOW] = "slow",
};

/* The answers here are a line of text: /healthz, 404, 426. Single service thread: one
 * buffer serves every request. */
enum { HTTP_BODY_MAX = 128 };
static uint8_t http_buf[LWS_PRE + HTTP_BODY_MAX];
static uint8_t http_hdr[LWS_PRE + 1024];

/* A literal body, checked to fit when it is compiled. */
#define http_reply_str(wsi, status, s)                                        \
	((void)sizeof(char[sizeof(s) - 1 <= HTTP_BODY_MAX ? 1 : -1]),        \
	 http_reply(wsi, status, s, sizeof(s) - 1))

static int http_reply(struct lws *wsi, unsigned status, const char *body, size_t len)
{
	uint8_t *start = http_hdr + LWS_PRE, *p = start, *end = http_hdr + sizeof(http_hdr);

	memcpy(http_buf + LWS_PRE, body, len);
	if (lws_add_http_common_headers(wsi, status, "text/plain; charset=utf-8", len, &p, end) ||
	    lws_add_http_header_by_name(wsi, (const unsigned char *)"connection:",
					(const unsigned char *)"close", 5, &p, end) ||
	    lws_finalize_write_http_header(wsi, start, &p, end))
		return -1;
	if (len && lws_write(wsi, http_buf + LWS_PRE, len, LWS_WRITE_HTTP_FINAL) != (int)len)
		return -1;
	/* One request per connection. lws 4.1.6 spins its loop at 100% on pipelined requests
	 * left in a kept-alive connection's buffer (lws_service_do_ripe_rxflow): one client
	 * could stall every tunnel. Closing discards them. */
	return -1;
}

#define PUT(...)                                                                   \
	do {                                                                       \
		int n_ = snprintf(buf + len, size - len, __VA_ARGS__);             \
		if (n_ < 0 || (size_t)n_ >= size - len)                            \
			goto full;                                                 \
		len += (size_t)n_;                                                 \
	} while (0)

/* A histogram: HELP, TYPE, the cumulative buckets (le[i] as text, counts[i] per bucket), the
 * sum (microseconds, printed in seconds) and the count. */
#define PUT_HIST(name, help, le, counts, n, sum_us, count)                            \
	do {                                                                        \
		uint64_t cum_ = 0;                                                  \
		PUT("# HELP " name " " help "\n# TYPE " name " histogram\n");       \
		for (int i_ = 0; i_ < (n); i_++) {                                  \
			cum_ += (counts)[i_];                                       \
			PUT(name "_bucket{le=\"%s\"} %llu\n", (le)[i_],              \
			    (unsigned long long)cum_);                              \
		}                                                                   \
		PUT(name "_sum %.6f\n" name "_count %llu\n", (sum_us) / 1e6,        \
		    (unsigned long long)(count));                                   \
	} while (0)

static const char *const pass_le[RELAY_PASS_BUCKETS] = { "0.001", "0.005", "0.02", "0.1",
							 "0.5", "+Inf" };
static const char *const jit_le[RELAY_JIT_BUCKETS] = { "0.00025", "0.0005", "0.001", "0.002",
						       "0.005", "0.01", "0.05", "0.1", "1",
						       "+Inf" };

size_t http_render_metrics(char *buf, size_t size)
{
	const struct relay_stats *st = &relay.st;
	size_t len = 0;

	PUT("# HELP wgws_relay_connections_active Tunnels open now.\n"
	    "# TYPE wgws_relay_connections_active gauge\n"
	    "wgws_relay_connections_active %u\n", relay.conns_active);
	PUT("# HELP wgws_relay_connections_pending Connections in TLS or upgrade now.\n"
	    "# TYPE wgws_relay_connections_pending gauge\n"
	    "wgws_relay_connections_pending %u\n", relay.conns_pending);
	PUT("# HELP wgws_relay_connections_total Tunnels opened since start.\n"
	    "# TYPE wgws_relay_connections_total counter\n"
	    "wgws_relay_connections_total %llu\n", (unsigned long long)st->conns_total);
	PUT("# HELP wgws_relay_connections_flyctl_total Tunnels opened by flyctl clients (its framing) since start.\n"
	    "# TYPE wgws_relay_connections_flyctl_total counter\n"
	    "wgws_relay_connections_flyctl_total %llu\n", (unsigned long long)st->conns_fly_total);
	PUT("# HELP wgws_relay_connections_rejected_total Connections refused, by reason.\n"
	    "# TYPE wgws_relay_connections_rejected_total counter\n");
	for (int i = 0; i < REJECT_MAX; i++)
		PUT("wgws_relay_connections_rejected_total{reason=\"%s\"} %llu\n",
		    reject_names[i], (unsigned long long)st->rejects[i]);
	PUT("# HELP wgws_relay_connections_closed_total Tunnels closed by the relay, by reason.\n"
	    "# TYPE wgws_relay_connections_closed_total counter\n"
	    "wgws_relay_connections_closed_total{reason=\"idle\"} %llu\n"
	    "wgws_relay_connections_closed_total{reason=\"bad_input\"} %llu\n",
	    (unsigned long long)st->closes_idle, (unsigned long long)st->closes_bad);
	PUT("# HELP wgws_relay_connections_closed_protocol_total Tunnels closed for frames the protocol forbids (unmasked: 1002, text: 1003).\n"
	    "# TYPE wgws_relay_connections_closed_protocol_total counter\n"
	    "wgws_relay_connections_closed_protocol_total %llu\n",
	    (unsigned long long)st->closes_protocol);
	PUT("# HELP wgws_relay_connections_evicted_total Pending connections closed to make room or for silence, by reason.\n"
	    "# TYPE wgws_relay_connections_evicted_total counter\n");
	for (int i = 0; i < EVICT_MAX; i++)
		PUT("wgws_relay_connections_evicted_total{reason=\"%s\"} %llu\n", evict_names[i],
		    (unsigned long long)st->evicted[i]);
	PUT("# HELP wgws_relay_tls_handshake_failures_total TLS handshakes that failed (not TLS, no shared version or cipher, closed midway).\n"
	    "# TYPE wgws_relay_tls_handshake_failures_total counter\n"
	    "wgws_relay_tls_handshake_failures_total %llu\n", (unsigned long long)st->tls_failures);
	PUT("# HELP wgws_relay_token_revoked_total Tunnels closed (1008) because a reload took their token away.\n"
	    "# TYPE wgws_relay_token_revoked_total counter\n"
	    "wgws_relay_token_revoked_total %llu\n", (unsigned long long)st->token_revoked);
	PUT("# HELP wgws_relay_certificate_expiry_timestamp_seconds When the certificate new connections get expires (Unix time; 0 unknown).\n"
	    "# TYPE wgws_relay_certificate_expiry_timestamp_seconds gauge\n"
	    "wgws_relay_certificate_expiry_timestamp_seconds %lld\n",
	    (long long)relay.cert_not_after);
	PUT("# HELP wgws_relay_reloads_total SIGHUP reloads of the configuration, certificate and key, by result.\n"
	    "# TYPE wgws_relay_reloads_total counter\n"
	    "wgws_relay_reloads_total{result=\"ok\"} %llu\n"
	    "wgws_relay_reloads_total{result=\"failed\"} %llu\n",
	    (unsigned long long)st->reloads, (unsigned long long)st->reloads_failed);
	PUT("# HELP wgws_relay_accept_errors_total accept() failures (e.g. out of descriptors) and connections lws could not take.\n"
	    "# TYPE wgws_relay_accept_errors_total counter\n"
	    "wgws_relay_accept_errors_total %llu\n", (unsigned long long)st->accept_errors);
	PUT("# HELP wgws_relay_metrics_connections Connections to the metrics listener now.\n"
	    "# TYPE wgws_relay_metrics_connections gauge\n"
	    "wgws_relay_metrics_connections %u\n", metrics_conns());
	PUT("# HELP wgws_relay_metrics_refused_total Metrics connections closed at accept (more than %d at once).\n"
	    "# TYPE wgws_relay_metrics_refused_total counter\n"
	    "wgws_relay_metrics_refused_total %llu\n", METRICS_CONNS_MAX,
	    (unsigned long long)st->metrics_refused);
	PUT("# HELP wgws_relay_udp_kernel_drops_total Datagrams from WireGuard the kernel dropped on tunnels' full UDP sockets.\n"
	    "# TYPE wgws_relay_udp_kernel_drops_total counter\n"
	    "wgws_relay_udp_kernel_drops_total %llu\n", (unsigned long long)st->udp_kernel_drops);
	PUT("# HELP wgws_relay_wg_port_owner_uid Owner of WireGuard's UDP port (--wg), checked every 10 s: 0 root (kernel WireGuard, a root wireguard-go), -1 nothing bound, -2 unknown (sock_diag unavailable or failing).\n"
	    "# TYPE wgws_relay_wg_port_owner_uid gauge\n"
	    "wgws_relay_wg_port_owner_uid %ld\n", relay.wg_owner_uid);
	PUT_HIST("wgws_relay_loop_pass_seconds", "Work done in each pass of the event loop, between two polls: what a datagram for an open tunnel may wait.",
		 pass_le, st->pass_le, RELAY_PASS_BUCKETS, st->pass_sum_us, st->pass_count);
	PUT("# HELP wgws_relay_loop_pass_max_seconds The longest pass of the event loop since start.\n"
	    "# TYPE wgws_relay_loop_pass_max_seconds gauge\n"
	    "wgws_relay_loop_pass_max_seconds %.6f\n", st->pass_max_us / 1e6);
	PUT("# HELP wgws_relay_packets_total Datagrams relayed, by direction.\n"
	    "# TYPE wgws_relay_packets_total counter\n"
	    "wgws_relay_packets_total{dir=\"ws_to_udp\"} %llu\n"
	    "wgws_relay_packets_total{dir=\"udp_to_ws\"} %llu\n",
	    (unsigned long long)st->pkts_ws_to_udp, (unsigned long long)st->pkts_udp_to_ws);
	PUT("# HELP wgws_relay_bytes_total Datagram payload bytes relayed, by direction.\n"
	    "# TYPE wgws_relay_bytes_total counter\n"
	    "wgws_relay_bytes_total{dir=\"ws_to_udp\"} %llu\n"
	    "wgws_relay_bytes_total{dir=\"udp_to_ws\"} %llu\n",
	    (unsigned long long)st->bytes_ws_to_udp, (unsigned long long)st->bytes_udp_to_ws);
	PUT("# HELP wgws_relay_ws_messages_sent_total WebSocket messages sent (several records each when batched).\n"
	    "# TYPE wgws_relay_ws_messages_sent_total counter\n"
	    "wgws_relay_ws_messages_sent_total %llu\n", (unsigned long long)st->ws_messages_out);
	PUT("# HELP wgws_relay_packets_dropped_total Datagrams dropped, by reason.\n"
	    "# TYPE wgws_relay_packets_dropped_total counter\n");
	for (int i = 0; i < DROP_MAX; i++)
		PUT("wgws_relay_packets_dropped_total{reason=\"%s\"} %llu\n", drop_names[i],
		    (unsigned long long)st->drops[i]);
	PUT("# HELP wgws_relay_jit_connected 1 while the channel to the provisioner (--jit-socket) is up.\n"
	    "# TYPE wgws_relay_jit_connected gauge\n"
	    "wgws_relay_jit_connected %d\n", relay.jit_up);
	PUT("# HELP wgws_relay_jit_held Handshake initiations held for the provisioner's answer now.\n"
	    "# TYPE wgws_relay_jit_held gauge\n"
	    "wgws_relay_jit_held %u\n", relay.jit_held);
	PUT("# HELP wgws_relay_jit_requests_total Initiations the provisioner was asked about.\n"
	    "# TYPE wgws_relay_jit_requests_total counter\n"
	    "wgws_relay_jit_requests_total %llu\n", (unsigned long long)st->jit_requests);
	PUT("# HELP wgws_relay_jit_answers_total The provisioner's answers, by verdict.\n"
	    "# TYPE wgws_relay_jit_answers_total counter\n");
	for (int i = JIT_INSTALLED; i < JIT_VERDICT_MAX; i++)
		PUT("wgws_relay_jit_answers_total{verdict=\"%s\"} %llu\n", jit_verdict_name(i),
		    (unsigned long long)st->jit_answers[i]);
	PUT_HIST("wgws_relay_jit_answer_seconds", "The provisioner's time to answer, request sent to answer received (the lookup and the install included).",
		 jit_le, st->jit_answer_le, RELAY_JIT_BUCKETS, st->jit_answer_sum_us,
		 st->jit_answer_count);
	PUT("# HELP wgws_relay_jit_answers_stale_total Answers that came too late (time-out, closed tunnel).\n"
	    "# TYPE wgws_relay_jit_answers_stale_total counter\n"
	    "wgws_relay_jit_answers_stale_total %llu\n", (unsigned long long)st->jit_stale);
	PUT("# HELP wgws_relay_jit_timeouts_total Held initiations forwarded unanswered after 3 s.\n"
	    "# TYPE wgws_relay_jit_timeouts_total counter\n"
	    "wgws_relay_jit_timeouts_total %llu\n", (unsigned long long)st->jit_timeouts);
	PUT("# HELP wgws_relay_jit_not_asked_total Initiations forwarded unanswered: channel down or lost.\n"
	    "# TYPE wgws_relay_jit_not_asked_total counter\n"
	    "wgws_relay_jit_not_asked_total %llu\n", (unsigned long long)st->jit_not_asked);
	PUT("# HELP wgws_relay_jit_deferred_total Requests that waited for room in the channel's socket.\n"
	    "# TYPE wgws_relay_jit_deferred_total counter\n"
	    "wgws_relay_jit_deferred_total %llu\n", (unsigned long long)st->jit_deferred);
	{
		size_t n = metrics_build_process(buf + len, size - len, "wgws_relay",
						 RELAY_VERSION);

		if (!n)
			goto full;
		len += n;
	}
	/* Last: with thousands of tokens it is what a full buffer cuts, nothing else. */
	if (relay.tokens) {
		static unsigned active[TOKENS_MAX];

		conn_token_counts(active, TOKENS_MAX);
		PUT("# HELP wgws_relay_token_connections Tunnels open now, by token (--tokens).\n"
		    "# TYPE wgws_relay_token_connections gauge\n");
		for (unsigned i = 0; i < tokens_count(relay.tokens); i++)
			PUT("wgws_relay_token_connections{token=\"%s\"} %u\n",
			    tokens_at(relay.tokens, i)->name, active[i]);
	}
	return len;
full:
	while (len && buf[len - 1] != '\n')
		len--;
	return len;
}

int http_callback(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in,
		  size_t len)
{
	const char *uri = in;
	int ret;

	switch (reason) {
	case LWS_CALLBACK_ESTABLISHED:
	case LWS_CALLBACK_RECEIVE:
	case LWS_CALLBACK_SERVER_WRITEABLE:
	case LWS_CALLBACK_CLOSED:
		/* A flyctl tunnel is bound to this protocol (it named none): conn.c's from its
		 * upgrade on. Only these reasons: for some others (vhost-wide ones) user is not
		 * a connection's space. */
		if (conn_is_fly(user))
			return conn_ws_callback(wsi, reason, user, in, len);
		return lws_callback_http_dummy(wsi, reason, user, in, len);

	case LWS_CALLBACK_WSI_DESTROY:
		/* lws tells protocols[0] about every wsi of the vhost that goes away. */
		admit_release(wsi);
		return 0;

	case LWS_CALLBACK_FILTER_PROTOCOL_CONNECTION:
		/* A WebSocket upgrade without our subprotocol: flyctl's, or refused. */
		ret = conn_fly_filter(wsi, user);
		if (ret >= 0)
			return ret;
		relay.st.rejects[REJECT_UPGRADE]++;
		lws_return_http_status(wsi, HTTP_STATUS_BAD_REQUEST, NULL);
		return 1;

	case LWS_CALLBACK_HTTP:
		if (!strcmp(uri, "/healthz"))
			return http_reply_str(wsi, HTTP_STATUS_OK, "ok\n");
		if (!strcmp(uri, relay.cfg.path))
			return http_reply_str(wsi, 426, "WebSocket upgrade with subprotocol wgws required\n");
		return http_reply_str(wsi, HTTP_STATUS_NOT_FOUND, "not found\n");

	default:
		return lws_callback_http_dummy(wsi, reason, user, in, len);
	}
}
