/* wgws-relay: private header, one section per file. */
#ifndef WGWS_RELAY_H
#define WGWS_RELAY_H

#include <libwebsockets.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>

#include "addr.h"
#include "frame.h"

#define RELAY_VERSION "0.1.0"
#define RELAY_SUBPROTOCOL "wgws"

enum {
	RELAY_PATH_MAX = 128,
	RELAY_UDP_BATCH = 32,        /* datagrams per recvmmsg/sendmmsg */
	RELAY_WS_CHUNK = 16384,      /* most bytes sent in one WS message (one TLS record) */
	RELAY_QUEUE_PKTS = 256,      /* most datagrams queued toward one client */
	RELAY_BAD_RECORDS_MAX = 16,  /* malformed records tolerated before closing */
	RELAY_SWEEP_MS = 1000,       /* idle sweep period */
};

/* ---- main.c: configuration ---- */

struct relay_cfg {
	struct sockaddr_storage listen;
	socklen_t listen_len;
	struct sockaddr_storage wg;
	socklen_t wg_len;
	struct sockaddr_storage metrics;
	socklen_t metrics_len;
	bool has_listen, has_metrics;
	char *cert, *key, *user;
	char path[RELAY_PATH_MAX];
	unsigned long max_conns;
	unsigned long max_conns_per_ip; /* 0 = no per-address limit */
	unsigned long max_pending;      /* connections not yet upgraded */
	unsigned long max_record;
	unsigned long queue_bytes;
	unsigned long idle_timeout_s;  /* no tunnel traffic for this long: close (0 = never) */
	unsigned long keepalive_s;     /* ping a client that has been silent this long */
	unsigned long header_timeout_s;
	int verbosity;
};

/* ---- metrics (counters live in struct relay) ---- */

enum relay_drop {
	DROP_OVERSIZE,   /* record longer than --max-record (connection closed, 1009) */
	DROP_MALFORMED,  /* record without a WireGuard shape */
	DROP_TRUNCATED,  /* stream ended in the middle of a record */
	DROP_QUEUE_FULL, /* send queue toward the client full */
	DROP_UDP_ERROR,  /* sending to WireGuard failed */
	DROP_FOREIGN,    /* a datagram from another address than --wg */
	DROP_MAX,
};

enum relay_reject {
	REJECT_LIMIT,    /* --max-conns reached */
	REJECT_IP_LIMIT, /* --max-conns-per-ip reached */
	REJECT_UPGRADE,  /* wrong path or subprotocol */
	REJECT_PENDING,  /* --max-pending connections still in TLS or upgrade */
	REJECT_SHUTDOWN,
	REJECT_MAX,
};

struct relay_stats {
	uint64_t conns_total;
	uint64_t pkts_ws_to_udp, bytes_ws_to_udp;
	uint64_t pkts_udp_to_ws, bytes_udp_to_ws;
	uint64_t ws_messages_out;
	uint64_t drops[DROP_MAX];
	uint64_t rejects[REJECT_MAX];
	uint64_t closes_idle, closes_bad;
};

struct conn;

struct relay {
	struct relay_cfg cfg;
	struct lws_context *ctx;
	struct lws_vhost *vhost;
	struct lws_vhost *metrics_vhost;
	struct conn *conns;        /* every established tunnel, for sweeps and shutdown */
	unsigned conns_active;
	unsigned conns_pending;    /* accepted TCP connections not yet upgraded or closed */
	bool shutting_down;
	/* Tunnels' UDP sockets are bound here (port 0), unconnected: a connected UDP socket
	 * turns an ICMP error into POLLERR, on which lws closes the descriptor. */
	struct sockaddr_storage udp_local;
	socklen_t udp_local_len;
	lws_sorted_usec_list_t sweep;
	struct relay_stats st;
	/* Scratch for recvmmsg: the service loop is single-threaded, so one set serves all. */
	uint8_t *udp_buf;          /* RELAY_UDP_BATCH * max_record */
};

extern struct relay relay;

/* ---- conn.c: one tunnel = one WS connection + one connected UDP socket ---- */

/* lws protocol callbacks for the WS tunnel and for the adopted UDP sockets. */
int conn_ws_callback(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in,
		     size_t len);
int conn_udp_callback(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in,
		      size_t len);
/* Size of the per-tunnel state lws allocates for each WS connection. */
size_t conn_user_size(void);
/* True once the connection with this per-tunnel state has upgraded (left conns_pending). */
bool conn_was_established(const void *user);
/* Close idle tunnels; called every RELAY_SWEEP_MS. */
void conn_sweep(uint64_t now_ms);
/* Ask every tunnel to close with 1001 (going away). */
void conn_close_all(void);
uint64_t relay_now_ms(void);

/* ---- http.c: /healthz, 404s, metrics, connection admission ---- */

int http_callback(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in,
		  size_t len);
int http_metrics_callback(struct lws *wsi, enum lws_callback_reasons reason, void *user,
			  void *in, size_t len);
/* Render the Prometheus text into buf; returns its length (truncated output is cut at
 * a line boundary). */
size_t http_render_metrics(char *buf, size_t size);

#endif
