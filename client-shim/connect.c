/* SPDX-License-Identifier: MIT */
/* A session's way to OPEN (session.h has the whole picture): the relay's (or the proxy's)
 * name resolved with getaddrinfo_a(), TCP to each address in turn, the proxy's CONNECT, the
 * TLS handshake with the relay (verified or pinned), the WebSocket upgrade; each step with
 * the session's one set-up deadline, each failure reported in words by session_fail(). */
#include <arpa/inet.h>
#include <errno.h>
#include <ifaddrs.h>
#include <net/if.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/x509.h>

#include "log.h"
#include "session.h"

static void on_open(struct session *s, size_t leftover)
{
	const struct shim_conf *c = s->sh->conf;
	char q[32], via[ADDR_HOST_MAX + 32];

	s->state = S_OPEN;
	if (c->token[0] && s->out_off == s->out_len) {
		/* the upgrade request held the token: not a byte of it stays */
		OPENSSL_cleanse(s->out, SHIM_OUT_CAP);
		s->out_off = s->out_len = 0;
	}
	s->sh->relay_cur = s->relay; /* new connections go first where this one went */
	s->relays_failed = 0;
	s->open_at = s->last_rx = s->sh->now;
	s->next_ping = s->sh->now + (uint64_t)c->keepalive_s * 1000;
	deadline_hint(s);
	if (s->check) {
		if (check_opened(s) < 0)
			return;
		if (leftover)
			(void)ws_input(s, s->in, leftover);
		return;
	}
	log_info("%s: connected to relay %s (%s, %s)", s->name, c->relay_strs[s->relay],
		 session_via(s, via, sizeof(via)), SSL_get_version(s->ssl));
	if (s->q_len) {
		snprintf(q, sizeof(q), "%u", s->q_pkts);
		if (ws_send(s, WS_OP_BINARY, s->q, s->q_len) == 0) {
			s->tx_pkts += s->q_pkts;
			log_debug("%s: sent %s queued datagrams", s->name, q);
		}
		s->q_len = 0;
		s->q_pkts = 0;
	}
	if (leftover && ws_input(s, s->in, leftover) < 0)
		return;
	if (s->state == S_OPEN && session_flush(s) < 0)
		return;
	if (s->state == S_OPEN)
		(void)session_read(s);
}

int upgrade_io(struct session *s)
{
	char buf[SHIM_ERR_LEN], why[WS_WHY_LEN];
	size_t end;
	int ret;

	if (s->out_off < s->out_len) {
		if (session_flush(s) < 0)
			return -1;
		if (s->out_off < s->out_len)
			return 0;
	}
	for (;;) {
		int n, err;

		ERR_clear_error();
		n = SSL_read(s->ssl, s->in + s->in_len, (int)(SHIM_IN_CAP - s->in_len));
		if (n <= 0) {
			err = SSL_get_error(s->ssl, n);
			if (err == SSL_ERROR_WANT_READ)
				return 0;
			if (err == SSL_ERROR_WANT_WRITE) {
				set_events(s, EPOLLIN | EPOLLOUT);
				return 0;
			}
			return session_fail(s, "upgrade failed: %s",
					    ssl_err_str(s->ssl, n, err, buf, sizeof(buf)));
		}
		s->in_len += (size_t)n;
		end = ws_header_end(s->in, s->in_len > WS_HTTP_HDR_MAX ? WS_HTTP_HDR_MAX : s->in_len);
		if (end)
			break;
		if (s->in_len >= WS_HTTP_HDR_MAX)
			return session_fail(s, "upgrade response header over %u bytes",
					    WS_HTTP_HDR_MAX);
	}
	ret = ws_check_upgrade((const char *)s->in, end, s->key, why);
	if (ret == -EACCES && strncmp(why, "404", 3) == 0)
		return session_fail(s, "the relay has no WebSocket endpoint at path %s (%s): check "
				    "the path of --relay (the relay's default is /wg)",
				    session_relay(s)->path, why);
	if (ret == -EACCES && strncmp(why, "401", 3) == 0)
		return session_fail(s, "the relay %s (%s)", s->sh->conf->token[0] ?
				    "refused the token of --token-file" :
				    "wants a token: give it with --token-file", why);
	if (ret == -EACCES)
		return session_fail(s, "relay refused upgrade: %s", why);
	if (ret < 0)
		return session_fail(s, "bad upgrade response: %s", why);
	memmove(s->in, s->in + end, s->in_len - end);
	on_open(s, s->in_len - end);
	return 0;
}

static int upgrade_start(struct session *s)
{
	int n;

	if (ws_new_key(s->key) < 0)
		return session_fail(s, "no randomness for Sec-WebSocket-Key");
	n = ws_build_upgrade((char *)s->out, SHIM_OUT_CAP, session_relay(s), s->key,
			     s->sh->conf->token[0] ? s->sh->conf->token : NULL);
	if (n < 0)
		return session_fail(s, "upgrade request too long");
	s->out_off = 0;
	s->out_len = (size_t)n;
	s->in_len = 0;
	s->state = S_UPGRADE;
	return upgrade_io(s);
}

/* What a certificate that failed its check says about who sent it: through a proxy, one that
 * the relay did not issue itself points at a TLS-inspecting proxy. */
static const char *cert_story(struct session *s, const struct tls_peer *p, char *buf,
			      size_t len)
{
	if (!p->subject[0])
		return "";
	if (session_proxied(s) && !p->self_issued)
		snprintf(buf, len, "; the certificate ('%.100s') was issued by '%.100s', not by the "
			 "relay: a TLS-inspecting proxy is in the way (it must let %.100s through "
			 "untouched)",
			 p->subject, p->issuer, session_relay(s)->host);
	else
		snprintf(buf, len, "; the certificate is '%.100s', issued by '%.100s'", p->subject,
			 p->issuer);
	return buf;
}

int tls_handshake(struct session *s)
{
	const struct shim_conf *c = s->sh->conf;
	char buf[SHIM_ERR_LEN], story[SHIM_ERR_LEN];
	struct tls_peer peer;
	int n, err;
	long vr;

	ERR_clear_error();
	n = SSL_connect(s->ssl);
	if (n == 1) {
		if (tls_peer_describe(s->ssl, &peer) < 0)
			return session_fail(s, "relay sent no certificate");
		if (c->npins) {
			uint8_t md[SHIM_PIN_LEN];
			bool match = false;

			if (tls_spki_sha256(SSL_get0_peer_certificate(s->ssl), md) == 0)
				for (unsigned i = 0; i < c->npins && !match; i++)
					match = CRYPTO_memcmp(md, c->pins[i], SHIM_PIN_LEN) == 0;
			if (!match)
				return session_fail(s, "relay certificate pin mismatch (server has "
						    "sha256//%s)%s", peer.pin,
						    cert_story(s, &peer, story, sizeof(story)));
		}
		check_step(s, "TLS (%s) with %s: certificate '%s' issued by '%s', pin sha256//%s, "
			   "%s", SSL_get_version(s->ssl), session_relay(s)->host, peer.subject,
			   peer.issuer, peer.pin, c->npins ? "trusted by its pin" : c->insecure ?
			   "NOT verified (--insecure)" : "verified against the CAs");
		return upgrade_start(s);
	}
	err = SSL_get_error(s->ssl, n);
	if (err == SSL_ERROR_WANT_READ) {
		set_events(s, EPOLLIN);
		return 0;
	}
	if (err == SSL_ERROR_WANT_WRITE) {
		set_events(s, EPOLLIN | EPOLLOUT);
		return 0;
	}
	vr = SSL_get_verify_result(s->ssl);
	if (s->sh->verify && vr != X509_V_OK) {
		ERR_clear_error();
		if (tls_peer_describe(s->ssl, &peer) < 0)
			peer.subject[0] = '\0';
		return session_fail(s, "relay certificate verify failed: %s%s",
				    X509_verify_cert_error_string(vr),
				    cert_story(s, &peer, story, sizeof(story)));
	}
	return session_fail(s, "TLS handshake failed: %s", ssl_err_str(s->ssl, n, err, buf,
									sizeof(buf)));
}

int tls_start(struct session *s)
{
	if (s->sh->conf->insecure)
		log_warnx("%s: --insecure: NOT verifying the relay's certificate", s->name);
	s->ssl = tls_new(s->sh->ctx, s->fd, session_relay(s), s->sh->verify);
	if (s->ssl && s->curl) { /* through an https:// proxy: its TLS carries ours */
		BIO *b = proxy_bio(s);

		if (b)
			SSL_set_bio(s->ssl, b, b);
		else {
			SSL_free(s->ssl);
			s->ssl = NULL;
		}
	}
	if (!s->ssl)
		return session_fail(s, "cannot create a TLS session");
	s->state = S_TLS;
	return tls_handshake(s);
}


/* Whether a WireGuard interface carries the route to addr (with mark, as the connection
 * would be sent): then the connection would travel inside the tunnel it carries, the usual
 * story of a full tunnel (AllowedIPs = 0.0.0.0/0) without --fwmark. The kernel's route
 * lookup is asked by connecting a UDP socket, which sends nothing; the interface is the one
 * holding the source address it chose, and it is WireGuard's when the kernel says so
 * (DEVTYPE=wireguard) or a userspace WireGuard (wireguard-go, boringtun) has its UAPI socket
 * for it. Fills ifname and returns true when it is. */
static bool route_via_wireguard(const struct sockaddr_storage *addr, socklen_t len,
				uint32_t mark, char ifname[static IF_NAMESIZE])
{
	struct sockaddr_storage src;
	socklen_t slen = sizeof(src);
	struct ifaddrs *ifa0;
	const char *name;
	bool found = false;
	char path[128], line[128];
	FILE *f;
	int fd = socket(addr->ss_family, SOCK_DGRAM | SOCK_CLOEXEC, 0);

	if (fd < 0)
		return false;
	if ((mark && setsockopt(fd, SOL_SOCKET, SO_MARK, &mark, sizeof(mark)) < 0) ||
	    connect(fd, (const struct sockaddr *)addr, len) < 0 ||
	    getsockname(fd, (struct sockaddr *)&src, &slen) < 0 || getifaddrs(&ifa0) < 0) {
		close(fd);
		return false;
	}
	close(fd);
	if ((name = ifaddr_find(ifa0, &src)) && !strchr(name, '/')) {
		snprintf(ifname, IF_NAMESIZE, "%s", name);
		found = true;
	}
	freeifaddrs(ifa0);
	if (!found)
		return false;
	snprintf(path, sizeof(path), "/var/run/wireguard/%s.sock", ifname);
	if (access(path, F_OK) == 0)
		return true;
	snprintf(path, sizeof(path), "/sys/class/net/%s/uevent", ifname);
	if (!(f = fopen(path, "re")))
		return false;
	found = false;
	while (!found && fgets(line, sizeof(line), f))
		found = !strcmp(line, "DEVTYPE=wireguard\n");
	fclose(f);
	return found;
}

int conn_socket(struct session *s, const struct sockaddr *a, socklen_t len, bool proxy)
{
	static const int one = 1, user_timeout = SHIM_TCP_USER_TIMEOUT_MS;
	static struct log_ratelimit rl_mark = LOG_RATELIMIT_DEFAULT;
	static struct log_ratelimit rl_route = LOG_RATELIMIT_DEFAULT;
	const uint32_t mark = s->sh->conf->fwmark;
	char ifname[IF_NAMESIZE], as[ADDR_STR_LEN];
	int fd = socket(a->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);

	if (fd < 0)
		return -errno;
	(void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	(void)setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof(one));
	(void)setsockopt(fd, IPPROTO_TCP, TCP_USER_TIMEOUT, &user_timeout, sizeof(user_timeout));
	/* main.c checked at start that SO_MARK is allowed. */
	if (mark && setsockopt(fd, SOL_SOCKET, SO_MARK, &mark, sizeof(mark)) < 0)
		log_rl(&rl_mark, LOG_LEVEL_WARN, true, "%s: --fwmark", s->name);
	if (route_via_wireguard((const struct sockaddr_storage *)a, len, mark, ifname))
		log_rl(&rl_route, LOG_LEVEL_WARN, false,
		       "%s: the route to %s%s goes out through %s, a WireGuard interface: this "
		       "connection would travel inside the tunnel it carries (a full tunnel?). "
		       "Give --fwmark the interface's FwMark (wg-quick's is 51820 unless the file "
		       "sets one)%s", s->name, proxy ? "the proxy at " : "the relay at ",
		       addr_format(a, as), ifname, mark ? ", not the mark it has now" : "");
	log_debug("%s: connecting to %s%s", s->name, proxy ? "the proxy at " : "",
		  addr_format(a, as));
	return fd;
}

/* Start the attempt at the next address. Returns 1 when one is in flight (or connected
 * at once: then s->fd is set and no attempt is), 0 when no address is left to try. */
static int attempt_start(struct session *s)
{
	while (s->addr_idx < s->naddrs) {
		unsigned i = s->addr_idx++;
		struct epoll_event ev = { .events = EPOLLOUT };
		int fd = conn_socket(s, (struct sockaddr *)&s->addrs[i], s->addr_lens[i], false);

		if (fd < 0) {
			s->last_errno = -fd;
			continue;
		}
		if (connect(fd, (struct sockaddr *)&s->addrs[i], s->addr_lens[i]) == 0) {
			connect_abort(s);
			s->fd = fd;
			s->ev_mask = 0;
			return 1;
		}
		if (errno != EINPROGRESS) {
			s->last_errno = errno;
			close(fd);
			continue;
		}
		ev.data.u64 = (uint64_t)s->gen << 32 | (s->slot + TAG_SESSION);
		if (epoll_ctl(s->sh->epfd, EPOLL_CTL_ADD, fd, &ev) < 0)
			fatal("epoll_ctl");
		s->afd[i] = fd;
		s->nafd++;
		s->next_attempt = s->addr_idx < s->naddrs ? s->sh->now + SHIM_HE_DELAY_MS : 0;
		if (s->next_attempt)
			deadline_hint(s);
		return 1;
	}
	s->next_attempt = 0;
	return 0;
}

void connect_abort(struct session *s)
{
	for (unsigned i = 0; i < SHIM_MAX_ADDRS; i++) {
		if (s->afd[i] >= 0) {
			close(s->afd[i]);
			s->afd[i] = -1;
		}
	}
	s->nafd = 0;
	s->next_attempt = 0;
}

/* After an attempt ended or started: go on, or give up when none is left. Returns 0 or -1
 * after session_fail(). */
static int attempts_continue(struct session *s)
{
	const struct shim_url *r = session_relay(s);
	char hp[ADDR_HOST_MAX + 16];

	if (s->fd >= 0) {
		struct sockaddr_storage peer;
		socklen_t plen = sizeof(peer);
		char a[ADDR_STR_LEN];

		if (s->check && getpeername(s->fd, (struct sockaddr *)&peer, &plen) == 0)
			check_step(s, "TCP to %s", addr_format((struct sockaddr *)&peer, a));
		set_events(s, EPOLLIN);
		return tls_start(s);
	}
	if (s->nafd)
		return 0;
	/* RFC 8305 §5: an attempt that failed lets the next one start at once. */
	if (attempt_start(s))
		return attempts_continue(s);
	return session_fail(s, "cannot connect to the relay at %s: %s",
			    url_format_hostport(r->host, r->host_is_v6, r->port, hp, sizeof(hp)),
			    strerror(s->last_errno ? s->last_errno : EHOSTUNREACH));
}

/* Happy Eyeballs (RFC 8305): the addresses are tried in the resolver's order, families
 * interleaved, each SHIM_HE_DELAY_MS after the previous one started while that one still
 * waits; the first to connect is kept and the others are closed. An address that drops
 * packets silently (IPv6 on many hotel and office networks) costs 250 ms, not the set-up's
 * deadline. */
static int conn_start(struct session *s)
{
	s->state = S_CONNECTING;
	s->addr_idx = 0;
	s->last_errno = 0;
	connect_abort(s);
	(void)attempt_start(s);
	return attempts_continue(s);
}

void connect_tick(struct session *s)
{
	if (s->state != S_CONNECTING || !s->next_attempt || s->sh->now < s->next_attempt)
		return;
	(void)attempt_start(s);
	(void)attempts_continue(s);
}

int tcp_check(struct session *s)
{
	char a[ADDR_STR_LEN];

	bool failed = false;

	for (unsigned i = 0; i < SHIM_MAX_ADDRS && s->fd < 0; i++) {
		struct pollfd p = { .fd = s->afd[i], .events = POLLOUT };
		int err = 0;
		socklen_t len = sizeof(err);

		if (p.fd < 0 || poll(&p, 1, 0) <= 0)
			continue;
		if (getsockopt(p.fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
			err = errno;
		if (err == 0 && !(p.revents & (POLLERR | POLLHUP))) {
			s->fd = p.fd;
			s->afd[i] = -1;
			s->nafd--;
			s->ev_mask = EPOLLOUT; /* as attempt_start registered it */
			connect_abort(s);
			log_debug("%s: connected to %s", s->name,
				  addr_format((struct sockaddr *)&s->addrs[i], a));
			break;
		}
		log_debug("%s: connect to %s: %s", s->name,
			  addr_format((struct sockaddr *)&s->addrs[i], a), strerror(err ? err : EIO));
		s->last_errno = err ? err : EIO;
		close(p.fd);
		s->afd[i] = -1;
		s->nafd--;
		failed = true;
	}
	/* RFC 8305 §5: a failed attempt lets the next address start at once, even while
	 * others still wait. */
	if (s->fd < 0 && failed && s->nafd)
		(void)attempt_start(s);
	return attempts_continue(s);
}

static void resolve_notify(union sigval v)
{
	uint64_t one = 1;

	/* runs on a glibc thread: only wake the loop */
	if (write(v.sival_int, &one, sizeof(one)) < 0)
		return;
}

static int resolve_start(struct session *s, const char *host, uint16_t port)
{
	struct shim *sh = s->sh;
	struct resolve *r = calloc(1, sizeof(*r));
	struct gaicb *list[1];
	struct sigevent sev;
	int ret;

	if (!r)
		return session_fail(s, "cannot resolve %s: out of memory", host);
	snprintf(r->host, sizeof(r->host), "%s", host);
	snprintf(r->port, sizeof(r->port), "%u", (unsigned)port);
	r->hints.ai_family = sh->conf->family;
	r->hints.ai_socktype = SOCK_STREAM;
	r->hints.ai_flags = AI_NUMERICSERV;
	r->cb.ar_name = r->host;
	r->cb.ar_service = r->port;
	r->cb.ar_request = &r->hints;
	memset(&sev, 0, sizeof(sev));
	sev.sigev_notify = SIGEV_THREAD;
	sev.sigev_notify_function = resolve_notify;
	sev.sigev_value.sival_int = sh->res_fd;
	list[0] = &r->cb;
	ret = getaddrinfo_a(GAI_NOWAIT, list, 1, &sev);
	if (ret != 0) {
		free(r);
		return session_fail(s, "cannot resolve %s: %s", host, gai_strerror(ret));
	}
	r->owner = s;
	r->next = sh->resolves;
	sh->resolves = r;
	s->res = r;
	return 0;
}

/* RFC 8305 §4: the resolver's order (RFC 6724), with the families alternating from the
 * first one's: a family whose every address fails silently delays the other by one
 * SHIM_HE_DELAY_MS at most. */
static void interleave(struct session *s)
{
	struct sockaddr_storage a[SHIM_MAX_ADDRS];
	socklen_t l[SHIM_MAX_ADDRS];
	unsigned n = 0, take[2] = { 0, 0 };
	int fam[2];

	if (!s->naddrs)
		return;
	fam[0] = s->addrs[0].ss_family;
	fam[1] = fam[0] == AF_INET ? AF_INET6 : AF_INET;
	while (n < s->naddrs) {
		unsigned before = n;

		for (int f = 0; f < 2; f++) {
			while (take[f] < s->naddrs && s->addrs[take[f]].ss_family != fam[f])
				take[f]++;
			if (take[f] < s->naddrs) {
				a[n] = s->addrs[take[f]];
				l[n++] = s->addr_lens[take[f]++];
			}
		}
		if (n == before) /* neither family: cannot happen with SOCK_STREAM over IP */
			return;
	}
	memcpy(s->addrs, a, sizeof(a[0]) * n);
	memcpy(s->addr_lens, l, sizeof(l[0]) * n);
}

static void on_resolved(struct session *s, struct resolve *r, int rc)
{
	if (rc != 0) {
		session_fail(s, "cannot resolve %s: %s", r->host, gai_strerror(rc));
		return;
	}
	s->naddrs = 0;
	for (struct addrinfo *ai = r->cb.ar_result; ai && s->naddrs < SHIM_MAX_ADDRS;
	     ai = ai->ai_next) {
		if (ai->ai_addrlen > sizeof(s->addrs[0]))
			continue;
		memcpy(&s->addrs[s->naddrs], ai->ai_addr, ai->ai_addrlen);
		s->addr_lens[s->naddrs++] = ai->ai_addrlen;
	}
	log_debug("%s: %s resolved to %u address(es)", s->name, r->host, s->naddrs);
	if (s->check) {
		char list[SHIM_MAX_ADDRS * ADDR_STR_LEN], a[ADDR_STR_LEN];
		size_t o = 0;

		list[0] = '\0';
		for (unsigned i = 0; i < s->naddrs; i++)
			o += (size_t)snprintf(list + o, sizeof(list) - o, "%s%s", i ? ", " : "",
					      addr_format((struct sockaddr *)&s->addrs[i], a));
		check_step(s, "resolved %s: %s", r->host, s->naddrs ? list : "no address");
	}
	interleave(s);
	(void)conn_start(s);
}

void shim_on_resolver(struct shim *sh)
{
	struct resolve **pp = &sh->resolves;
	uint64_t v;

	if (read(sh->res_fd, &v, sizeof(v)) < 0 && errno != EAGAIN)
		log_warn("resolver eventfd");
	while (*pp) {
		struct resolve *r = *pp;
		int rc = gai_error(&r->cb);

		if (rc == EAI_INPROGRESS) {
			pp = &r->next;
			continue;
		}
		*pp = r->next;
		if (r->owner) {
			r->owner->res = NULL;
			on_resolved(r->owner, r, rc);
		}
		if (r->cb.ar_result)
			freeaddrinfo(r->cb.ar_result);
		free(r);
	}
}

void session_connect(struct session *s)
{
	const struct shim_conf *c = s->sh->conf;
	const char *host;
	uint16_t port;
	bool is_ip;

	if (!s->relays_failed && !s->check) /* else session_fail() (or check.c) chose it */
		s->relay = s->sh->relay_cur;
	s->phase_deadline = s->sh->now + SHIM_CONNECT_TIMEOUT_MS;
	deadline_hint(s);
	if (session_proxied(s)) {
		(void)proxy_start(s);
		return;
	}
	host = c->relays[s->relay].host;
	port = c->relays[s->relay].port;
	is_ip = c->relays[s->relay].host_is_ip;
	s->state = S_RESOLVING;
	s->naddrs = 0;
	s->addr_idx = 0;
	s->last_errno = 0;
	if (is_ip) {
		struct sockaddr_in *v4 = (struct sockaddr_in *)&s->addrs[0];
		struct sockaddr_in6 *v6 = (struct sockaddr_in6 *)&s->addrs[0];

		memset(&s->addrs[0], 0, sizeof(s->addrs[0]));
		if (inet_pton(AF_INET, host, &v4->sin_addr) == 1) {
			v4->sin_family = AF_INET;
			v4->sin_port = htons(port);
			s->addr_lens[0] = sizeof(*v4);
		} else if (inet_pton(AF_INET6, host, &v6->sin6_addr) == 1) {
			v6->sin6_family = AF_INET6;
			v6->sin6_port = htons(port);
			s->addr_lens[0] = sizeof(*v6);
		}
		if (c->family && s->addrs[0].ss_family != c->family) {
			(void)session_fail(s, "%s: %s is not an %s address", c->family == AF_INET ?
					   "--ipv4" : "--ipv6", host, c->family == AF_INET ?
					   "IPv4" : "IPv6");
			return;
		}
		s->naddrs = 1;
		(void)conn_start(s);
		return;
	}
	(void)resolve_start(s, host, port);
}
