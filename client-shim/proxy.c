/* SPDX-License-Identifier: MIT */
/* The proxy leg of a session, by libcurl (session.h says how it fits): one multi handle
 * for the shim, one easy handle per session in PROXY, driven by the shim's epoll loop
 * through curl's socket and timer callbacks. Nothing here writes an authentication scheme
 * by hand: curl answers the proxy's 407 with the best scheme it offers (CURLAUTH_ANY:
 * Negotiate, Digest, NTLM, Basic) and speaks SOCKS5. What we add is the words when it
 * fails: which proxy, what it answered, which schemes it wanted. */
#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <unistd.h>

#include <openssl/bio.h>
#include <openssl/crypto.h>

#include "log.h"
#include "session.h"

/* curl's socket callback: keep epoll in step with what curl waits for on fd. socketp is
 * non-NULL while fd is on epoll for curl. */
static int on_curl_socket(CURL *e, curl_socket_t fd, int what, void *userp, void *socketp)
{
	struct shim *sh = userp;
	struct epoll_event ev = { .data.u64 = (uint64_t)(uint32_t)fd << 32 | TAG_CURL };

	(void)e;
	if (what == CURL_POLL_REMOVE) {
		if (socketp) {
			(void)epoll_ctl(sh->epfd, EPOLL_CTL_DEL, fd, NULL);
			curl_multi_assign(sh->curlm, fd, NULL);
		}
		return 0;
	}
	ev.events = (what & CURL_POLL_IN ? EPOLLIN : 0) | (what & CURL_POLL_OUT ? EPOLLOUT : 0);
	if (epoll_ctl(sh->epfd, socketp ? EPOLL_CTL_MOD : EPOLL_CTL_ADD, fd, &ev) < 0) {
		log_warn("epoll_ctl (proxy socket %d)", (int)fd);
		return -1;
	}
	curl_multi_assign(sh->curlm, fd, sh);
	return 0;
}

static int on_curl_timer(CURLM *m, long timeout_ms, void *userp)
{
	struct shim *sh = userp;

	(void)m;
	sh->curl_due = timeout_ms < 0 ? 0 : sh->now + (uint64_t)timeout_ms;
	if (sh->curl_due && sh->curl_due < sh->next_due)
		sh->next_due = sh->curl_due;
	return 0;
}

/* Our socket, with our options (--fwmark above all: the proxy must be reached outside a
 * full tunnel) and the warning when its route goes into WireGuard. */
static curl_socket_t on_open_socket(void *clientp, curlsocktype purpose,
				    struct curl_sockaddr *a)
{
	struct session *s = clientp;
	int fd;

	if (purpose != CURLSOCKTYPE_IPCXN || a->socktype != SOCK_STREAM)
		return CURL_SOCKET_BAD;
	fd = conn_socket(s, &a->addr, a->addrlen, true);
	return fd < 0 ? CURL_SOCKET_BAD : fd;
}

/* curl's sockets are closed by curl, except the one the session took (http://, SOCKS). */
static int on_close_socket(void *clientp, curl_socket_t fd)
{
	struct session *s = clientp;

	if (fd == s->fd && !s->curl_owns_fd)
		return 0;
	return close(fd);
}

/* The CONNECT reply's header lines: keep the status line for the messages, parsed by the
 * same code as the relay's 101 (ws.c: unit-tested and fuzzed), printable only. */
static size_t on_header(char *p, size_t size, size_t n, void *userdata)
{
	struct session *s = userdata;
	size_t len = size * n;
	char why[WS_WHY_LEN];
	int code;

	if (len >= 5 && strncmp(p, "HTTP/", 5) == 0) {
		if (ws_parse_status(p, len, &code, why) == 0)
			snprintf(s->proxy_status, sizeof(s->proxy_status), "%s", why);
		else
			snprintf(s->proxy_status, sizeof(s->proxy_status), "a malformed status "
				 "line '%.100s'", why);
	}
	return len;
}

static const char *auth_names(long mask, char *buf, size_t len)
{
	static const struct {
		long bit;
		const char *name;
	} schemes[] = {
		{ CURLAUTH_BASIC, "Basic" }, { CURLAUTH_DIGEST, "Digest" },
		{ CURLAUTH_NTLM, "NTLM" }, { CURLAUTH_NEGOTIATE, "Negotiate" },
	};
	size_t o = 0;

	buf[0] = '\0';
	for (size_t i = 0; i < sizeof(schemes) / sizeof(schemes[0]); i++)
		if (mask & schemes[i].bit)
			o += (size_t)snprintf(buf + o, o < len ? len - o : 0, "%s%s", o ? ", " : "",
					      schemes[i].name);
	if (!buf[0])
		snprintf(buf, len, "no scheme curl knows");
	return buf;
}

/* The failed transfer of s in plain words, then session_fail(). */
static int proxy_failed(struct session *s, CURLcode rc, const char *errbuf)
{
	const struct shim_proxy *p = &s->sh->conf->proxy;
	const struct shim_url *r = session_relay(s);
	char at[ADDR_HOST_MAX + 64], hp[ADDR_HOST_MAX + 16], target[ADDR_HOST_MAX + 16];
	char schemes[64];
	const char *ip = NULL;
	long code = 0, avail = 0, oserr = 0;

	(void)curl_easy_getinfo(s->curl, CURLINFO_HTTP_CONNECTCODE, &code);
	(void)curl_easy_getinfo(s->curl, CURLINFO_PRIMARY_IP, &ip);
	(void)curl_easy_getinfo(s->curl, CURLINFO_PROXYAUTH_AVAIL, &avail);
	(void)curl_easy_getinfo(s->curl, CURLINFO_OS_ERRNO, &oserr);
	url_format_hostport(p->host, p->host_is_v6, p->port, hp, sizeof(hp));
	if (ip && *ip && strcmp(ip, p->host) != 0)
		snprintf(at, sizeof(at), "%s (%s%s%s)", hp, strchr(ip, ':') ? "[" : "", ip,
			 strchr(ip, ':') ? "]" : "");
	else
		snprintf(at, sizeof(at), "%s", hp);
	url_format_hostport(r->host, r->host_is_v6, r->port, target, sizeof(target));
	switch (rc) {
	case CURLE_COULDNT_RESOLVE_PROXY:
		return session_fail(s, "cannot resolve the proxy's name %s", p->host);
	case CURLE_COULDNT_CONNECT:
		return session_fail(s, "cannot connect to the proxy at %s: %s", at,
				    oserr ? strerror((int)oserr) : errbuf);
	case CURLE_OPERATION_TIMEDOUT:
		return session_fail(s, "the proxy at %s did not answer in time (%s)", at, errbuf);
	default:
		break;
	}
	if (code == 407) {
		if (p->user[0])
			return session_fail(s, "the proxy at %s refused the credentials of user "
					    "'%s' (%s; it offers %s)", at, p->user,
					    s->proxy_status[0] ? s->proxy_status : "407",
					    auth_names(avail, schemes, sizeof(schemes)));
		if (avail & CURLAUTH_NEGOTIATE)
			return session_fail(s, "the proxy at %s wants authentication (%s; it "
					    "offers %s) and none worked: no Kerberos ticket "
					    "(kinit), and no user given (--proxy http://USER@%s "
					    "with --proxy-password-file)", at, s->proxy_status[0] ?
					    s->proxy_status : "407",
					    auth_names(avail, schemes, sizeof(schemes)), hp);
		return session_fail(s, "the proxy at %s wants authentication (%s; it offers %s) "
				    "and none is configured: give --proxy http://USER@%s with "
				    "--proxy-password-file", at, s->proxy_status[0] ?
				    s->proxy_status : "407",
				    auth_names(avail, schemes, sizeof(schemes)), hp);
	}
	if (code == 502 || code == 503 || code == 504)
		return session_fail(s, "the proxy at %s could not reach the relay %s: %s (is the "
				    "relay down, or its name unknown there?)", at, target,
				    s->proxy_status[0] ? s->proxy_status : "no reason given");
	if (code && code / 100 != 2)
		return session_fail(s, "the proxy at %s refused CONNECT to %s: %s", at, target,
				    s->proxy_status[0] ? s->proxy_status : "no reason given");
	if (rc == CURLE_PEER_FAILED_VERIFICATION)
		return session_fail(s, "the proxy at %s is not trusted: %s (give its CA with "
				    "--proxy-ca)", at, errbuf[0] ? errbuf : curl_easy_strerror(rc));
	if (rc == CURLE_PROXY || rc == CURLE_SSL_CONNECT_ERROR ||
	    rc == CURLE_RECV_ERROR ||
	    rc == CURLE_SEND_ERROR || rc == CURLE_GOT_NOTHING || rc == CURLE_WEIRD_SERVER_REPLY)
		return session_fail(s, "the proxy at %s (%s): %s", at,
				    url_proxy_scheme(p->scheme), errbuf[0] ? errbuf :
				    curl_easy_strerror(rc));
	return session_fail(s, "proxy at %s: %s", at, errbuf[0] ? errbuf : curl_easy_strerror(rc));
}

/* s's transfer ended: the tunnel is up (its socket is s's now) or it failed. */
static void proxy_done(struct session *s, CURLcode rc)
{
	struct shim *sh = s->sh;
	curl_socket_t fd = CURL_SOCKET_BAD;

	if (rc != CURLE_OK) {
		char buf[CURL_ERROR_SIZE]; /* session_fail() ends the transfer, and its buffer */

		snprintf(buf, sizeof(buf), "%s", s->proxy_err);
		(void)proxy_failed(s, rc, buf);
		return;
	}
	if (curl_easy_getinfo(s->curl, CURLINFO_ACTIVESOCKET, &fd) != CURLE_OK ||
	    fd == CURL_SOCKET_BAD) {
		(void)session_fail(s, "proxy: the tunnel is up but curl has no socket for it");
		return;
	}
	log_debug("%s: proxy tunnel to %s: %s", s->name, sh->conf->relay_strs[s->relay],
		  s->proxy_status[0] ? s->proxy_status : "SOCKS5 granted");
	if (s->check) {
		const char *ip = NULL;
		long port = 0;

		(void)curl_easy_getinfo(s->curl, CURLINFO_PRIMARY_IP, &ip);
		(void)curl_easy_getinfo(s->curl, CURLINFO_PRIMARY_PORT, &port);
		check_step(s, "the proxy (%s) at %s port %ld opened a tunnel to %s: %s",
			   url_proxy_scheme(sh->conf->proxy.scheme), ip ? ip : "?", port,
			   sh->conf->relay_strs[s->relay], s->proxy_status[0] ? s->proxy_status :
			   "SOCKS5 request granted");
	}
	s->proxy_status[0] = '\0';
	/* Off curl's epoll registration; the session registers it under its own tag. */
	(void)epoll_ctl(sh->epfd, EPOLL_CTL_DEL, fd, NULL);
	curl_multi_assign(sh->curlm, fd, NULL);
	s->fd = fd;
	s->ev_mask = 0;
	if (sh->conf->proxy.scheme == PROXY_HTTPS) {
		s->curl_owns_fd = true; /* curl's TLS carries ours: the transfer stays */
	} else {
		CURL *e = s->curl;

		s->curl = NULL; /* curl closes everything but s->fd (on_close_socket) */
		curl_multi_remove_handle(sh->curlm, e);
		curl_easy_cleanup(e);
	}
	set_events(s, EPOLLIN);
	(void)tls_start(s);
}

static void check_done(struct shim *sh)
{
	CURLMsg *m;
	int left;

	while ((m = curl_multi_info_read(sh->curlm, &left))) {
		struct session *s = NULL;

		if (m->msg != CURLMSG_DONE)
			continue;
		(void)curl_easy_getinfo(m->easy_handle, CURLINFO_PRIVATE, (char **)&s);
		if (s && s->curl == m->easy_handle && s->state == S_PROXY)
			proxy_done(s, m->data.result);
	}
}

void proxy_on_event(struct shim *sh, int fd, uint32_t events)
{
	int flags = 0, running;

	if (!sh->curlm)
		return;
	if (events & EPOLLIN)
		flags |= CURL_CSELECT_IN;
	if (events & EPOLLOUT)
		flags |= CURL_CSELECT_OUT;
	if (events & (EPOLLERR | EPOLLHUP))
		flags |= CURL_CSELECT_ERR;
	(void)curl_multi_socket_action(sh->curlm, fd, flags, &running);
	check_done(sh);
}

void proxy_on_timer(struct shim *sh)
{
	int running;

	sh->curl_due = 0;
	if (!sh->curlm)
		return;
	(void)curl_multi_socket_action(sh->curlm, CURL_SOCKET_TIMEOUT, 0, &running);
	check_done(sh);
}

/* Set a proxy user name or password. libcurl before 8.8.0 percent-decodes them (curl
 * issue 13265): give it an escaped copy there, so "50%41off" stays itself. */
static int set_cred(CURL *e, CURLoption opt, const char *v)
{
	static int decodes = -1;
	char *esc;
	int ret;

	if (decodes < 0)
		decodes = curl_version_info(CURLVERSION_NOW)->version_num < 0x080800;
	if (!decodes || !*v)
		return curl_easy_setopt(e, opt, v) == CURLE_OK ? 0 : -EINVAL;
	if (!(esc = curl_easy_escape(e, v, 0)))
		return -ENOMEM;
	ret = curl_easy_setopt(e, opt, esc) == CURLE_OK ? 0 : -EINVAL;
	OPENSSL_cleanse(esc, strlen(esc));
	curl_free(esc);
	return ret;
}

/* The URL curl "connects" to: only its host and port matter (CONNECT host:port, or SOCKS5's
 * destination); http:// so that curl does no TLS of its own with the relay. */
static int relay_url(const struct shim_url *r, char *buf, size_t len)
{
	int n = snprintf(buf, len, r->host_is_v6 ? "http://[%s]:%u/" : "http://%s:%u/", r->host,
			 (unsigned)r->port);

	return n < 0 || (size_t)n >= len ? -ENAMETOOLONG : 0;
}

int proxy_start(struct session *s)
{
	const struct shim_conf *c = s->sh->conf;
	const struct shim_proxy *p = &c->proxy;
	char url[ADDR_HOST_MAX + 32], purl[ADDR_HOST_MAX + 32], hp[ADDR_HOST_MAX + 16];
	uint64_t left = s->phase_deadline > s->sh->now ? s->phase_deadline - s->sh->now : 1;
	CURL *e;
	bool ok = true;

	s->state = S_PROXY;
	s->proxy_status[0] = s->proxy_err[0] = '\0';
	s->curl_owns_fd = false;
	if (relay_url(session_relay(s), url, sizeof(url)) < 0)
		return session_fail(s, "relay name too long");
	snprintf(purl, sizeof(purl), "%s://%s", url_proxy_scheme(p->scheme),
		 url_format_hostport(p->host, p->host_is_v6, p->port, hp, sizeof(hp)));
	if (!(e = curl_easy_init()))
		return session_fail(s, "proxy: cannot create a libcurl handle");
#define SET(opt, val) (ok = ok && curl_easy_setopt(e, opt, val) == CURLE_OK)
	SET(CURLOPT_PRIVATE, s);
	SET(CURLOPT_URL, url);
	SET(CURLOPT_PROXY, purl);
	SET(CURLOPT_NOPROXY, ""); /* main.c decided; never the environment's no_proxy again */
	SET(CURLOPT_CONNECT_ONLY, 1L);
	SET(CURLOPT_HTTPPROXYTUNNEL, 1L);
	SET(CURLOPT_PROXYAUTH, (long)CURLAUTH_ANY);
	SET(CURLOPT_FRESH_CONNECT, 1L);
	SET(CURLOPT_NOSIGNAL, 1L);
	SET(CURLOPT_ERRORBUFFER, s->proxy_err);
	SET(CURLOPT_HEADERFUNCTION, on_header);
	SET(CURLOPT_HEADERDATA, s);
	SET(CURLOPT_OPENSOCKETFUNCTION, on_open_socket);
	SET(CURLOPT_OPENSOCKETDATA, s);
	SET(CURLOPT_CLOSESOCKETFUNCTION, on_close_socket);
	SET(CURLOPT_CLOSESOCKETDATA, s);
	SET(CURLOPT_CONNECTTIMEOUT_MS, (long)left);
	SET(CURLOPT_HAPPY_EYEBALLS_TIMEOUT_MS, (long)SHIM_HE_DELAY_MS);
	SET(CURLOPT_DNS_CACHE_TIMEOUT, 0L); /* after a network change, ask again */
	SET(CURLOPT_IPRESOLVE, c->family == AF_INET ? CURL_IPRESOLVE_V4 :
			       c->family == AF_INET6 ? CURL_IPRESOLVE_V6 : CURL_IPRESOLVE_WHATEVER);
	SET(CURLOPT_USERAGENT, "wgws-shim/" WGWS_VERSION);
	/* An empty user still lets curl answer a 407 (Negotiate needs no name: the Kerberos
	 * ticket cache has it); to a SOCKS5 proxy it would offer empty credentials, so none
	 * there. The password is given apart, never in a URL. */
	if (p->user[0] || p->scheme == PROXY_HTTP || p->scheme == PROXY_HTTPS)
		ok = ok && set_cred(e, CURLOPT_PROXYUSERNAME, p->user) == 0;
	if (p->user[0])
		ok = ok && set_cred(e, CURLOPT_PROXYPASSWORD, p->cred + strlen(p->user) + 1) == 0;
	/* Ending a transfer that still resolves must not wait for the lookup (curl >= 7.87
	 * then leaves its thread to finish alone): an unreachable DNS would stop the loop. */
	SET(CURLOPT_QUICK_EXIT, 1L);
	if (p->scheme == PROXY_HTTPS && c->proxy_ca[0])
		SET(CURLOPT_PROXY_CAINFO, c->proxy_ca);
#undef SET
	if (!ok) {
		curl_easy_cleanup(e);
		return session_fail(s, "proxy: libcurl refused an option (is it older than 7.88?)");
	}
	s->curl = e;
	if (curl_multi_add_handle(s->sh->curlm, e) != CURLM_OK) {
		s->curl = NULL;
		curl_easy_cleanup(e);
		return session_fail(s, "proxy: cannot start a libcurl transfer");
	}
	log_debug("%s: via %s to %s", s->name, hp, url);
	return 0;
}

void proxy_abort(struct session *s)
{
	CURL *e = s->curl;

	if (!e)
		return;
	s->curl = NULL;
	if (s->curl_owns_fd) { /* curl closes it: not on our epoll, not ours to close */
		if (s->fd >= 0)
			(void)epoll_ctl(s->sh->epfd, EPOLL_CTL_DEL, s->fd, NULL);
		s->fd = -1;
		s->curl_owns_fd = false;
	}
	curl_multi_remove_handle(s->sh->curlm, e);
	curl_easy_cleanup(e);
}

int proxy_open(struct shim *sh)
{
	if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
		return -ENOMEM;
	if (!(sh->curlm = curl_multi_init())) {
		curl_global_cleanup();
		return -ENOMEM;
	}
	if (curl_multi_setopt(sh->curlm, CURLMOPT_SOCKETFUNCTION, on_curl_socket) != CURLM_OK ||
	    curl_multi_setopt(sh->curlm, CURLMOPT_SOCKETDATA, sh) != CURLM_OK ||
	    curl_multi_setopt(sh->curlm, CURLMOPT_TIMERFUNCTION, on_curl_timer) != CURLM_OK ||
	    curl_multi_setopt(sh->curlm, CURLMOPT_TIMERDATA, sh) != CURLM_OK) {
		proxy_close(sh);
		return -EINVAL;
	}
	return 0;
}

void proxy_close(struct shim *sh)
{
	if (!sh->curlm)
		return;
	curl_multi_cleanup(sh->curlm);
	sh->curlm = NULL;
	curl_global_cleanup();
}

/* ---- the relay's TLS through an https:// proxy's: a BIO over curl_easy_send/recv ------ */

/* curl's TLS with the proxy failed: say so (OpenSSL only sees a failed read or write, which
 * ssl_err_str() words from errno). */
static void bio_error(struct session *s, CURLcode rc)
{
	log_warnx_ratelimited("%s: the TLS connection with the proxy failed: %s", s->name,
			      curl_easy_strerror(rc));
	errno = EPROTO;
}

static int bio_write(BIO *b, const char *buf, size_t len, size_t *written)
{
	struct session *s = BIO_get_data(b);
	CURLcode rc;

	BIO_clear_retry_flags(b);
	rc = curl_easy_send(s->curl, buf, len, written);
	if (rc == CURLE_AGAIN) {
		BIO_set_retry_write(b);
		return 0;
	}
	if (rc != CURLE_OK)
		bio_error(s, rc);
	return rc == CURLE_OK;
}

static int bio_read(BIO *b, char *buf, size_t len, size_t *got)
{
	struct session *s = BIO_get_data(b);
	CURLcode rc;

	BIO_clear_retry_flags(b);
	rc = curl_easy_recv(s->curl, buf, len, got);
	if (rc == CURLE_AGAIN) {
		BIO_set_retry_read(b);
		return 0;
	}
	if (rc != CURLE_OK)
		bio_error(s, rc);
	else if (*got == 0)
		errno = 0; /* the proxy closed the tunnel: "connection closed" */
	return rc == CURLE_OK && *got > 0;
}

static long bio_ctrl(BIO *b, int cmd, long num, void *ptr)
{
	(void)b;
	(void)num;
	(void)ptr;
	return cmd == BIO_CTRL_FLUSH ? 1 : 0;
}

static int bio_create(BIO *b)
{
	BIO_set_init(b, 1);
	return 1;
}

BIO *proxy_bio(struct session *s)
{
	static BIO_METHOD *meth;
	BIO *b;

	if (!meth) {
		meth = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK, "wgws-curl");
		if (!meth || !BIO_meth_set_write_ex(meth, bio_write) ||
		    !BIO_meth_set_read_ex(meth, bio_read) || !BIO_meth_set_ctrl(meth, bio_ctrl) ||
		    !BIO_meth_set_create(meth, bio_create)) {
			BIO_meth_free(meth);
			meth = NULL;
			return NULL;
		}
	}
	if (!(b = BIO_new(meth)))
		return NULL;
	BIO_set_data(b, s);
	return b;
}
