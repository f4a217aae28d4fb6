/* SPDX-License-Identifier: MIT */
/* TLS handshakes on a thread of their own (contract in relay.h).
 *
 * Why: each handshake step (a ClientHello answered with a key exchange and a signature, a
 * client's Finished) costs ~0.5-1 ms of CPU. On the loop, lws ran every ready step between
 * two polls, so a burst of 200 new clients held every open tunnel's datagrams behind them
 * (tests/e2e/test_churn.sh). Here the loop only accepts and hands over; this thread does the
 * steps under SCHED_IDLE, so a datagram for an open tunnel wakes the loop at once, on a
 * machine with one core as on many: a SCHED_IDLE thread is preempted as soon as any normal
 * one wakes on its CPU. At nice +10 (before) it was not: the kernel (EEVDF) let it finish
 * its slice, and the loop waited 10-20 ms behind it, runnable, during the churn test's
 * bursts when both were on one core (p99 1.6-7.6x the baseline's in four runs; 0.8-2.1x
 * under SCHED_IDLE). The price: on a machine whose every core is busy with other work, new
 * handshakes get almost no CPU, and those not done within --header-timeout are closed
 * (evicted_total{reason="slow"}): open tunnels come first. Where SCHED_IDLE is refused,
 * nice +HS_NICE. Not covered: the loop and this thread share the queues' mutexes and glibc's
 * one arena (M_ARENA_MAX 1, below); if the thread is preempted while it holds one, the loop
 * waits for it, which on a machine whose CPUs never idle can be long (not measured here).
 *
 * How: a job is a descriptor that has sent its first bytes. The thread makes its SSL from
 * an SSL_CTX of its own (the same certificate and key as lws's vhost) and drives SSL_accept
 * from an epoll set of its own. A finished job (or a failed one, ssl NULL) goes back to the
 * loop through a queue and an eventfd; the loop then adopts the descriptor into lws, whose
 * SSL_new comes here first (SSL_new below, interposed like wsmask.c's SSL_read) and gets the
 * finished session, so lws's SSL_accept returns at once and lws goes on with HTTP.
 *
 * The thread starts before the sandbox, which reaches it through TSYNC: handshake_start
 * returns once the thread runs (its start-up makes calls the sandbox forbids).
 *
 * Ownership: only the loop closes descriptors (no number can be reused under the thread);
 * the thread owns a job's SSL until the job is back. A cancel (eviction, deadline) marks the
 * job and shuts its socket down, which wakes the thread; the loop closes the descriptor when
 * the job comes back. */
#include <dlfcn.h>
#include <errno.h>
#include <malloc.h>
#include <openssl/err.h>
#include <openssl/x509.h>
#include <pthread.h>
#include <sched.h>
#include <semaphore.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/resource.h>
#include <unistd.h>

#include "relay.h"

enum {
	HS_NICE = 19,      /* the thread's nice value where SCHED_IDLE is refused */
	HS_EVENTS = 64,    /* epoll events per wait */
	HS_FREE_MAX = 1024, /* sessions the loop may leave to free later (SSL_free below) */
	HS_FREE_MIN = 4,    /* freed at the end of every pass */
	HS_FREE_BUDGET_US = 500, /* more while the pass has used less than this */
};

struct handshake {
	struct handshake *next;        /* the queue it is on */
	struct lws_dll2 active;        /* on the thread's list while it works on it */
	int fd;
	SSL *ssl;
	void *owner;                   /* the loop's; NULL once cancelled */
	atomic_bool cancelled;
};

struct queue {
	pthread_mutex_t lock;
	struct handshake *head, **tail;
	int efd; /* eventfd: non-zero while the queue may hold jobs */
};

static struct {
	SSL_CTX *ctx;                  /* the thread's (and before it starts, init's) */
	_Atomic(SSL_CTX *) next_ctx;   /* a reload's, for the thread to take at its next job */
	pthread_t thread;
	bool running;
	atomic_bool stop;
	sem_t started;
	struct queue in, out;          /* loop -> thread, thread -> loop */
	struct lws_dll2_owner active;  /* the thread's */
	int epfd;
	struct ev_loop *loop;
	ev_io out_io;
	handshake_done_fn *done;
	unsigned cancelled;            /* the loop's: cancelled, not yet back */
	SSL *(*real_ssl_new)(SSL_CTX *);
} hs = { .in.efd = -1, .out.efd = -1, .epfd = -1 };

static __thread SSL *adopt_next;

SSL *SSL_new(SSL_CTX *ctx)
{
	SSL *s = adopt_next;

	if (s) {
		adopt_next = NULL;
		/* From here on lws reads it: whatever the socket holds in one read(2), the
		 * records decrypted from OpenSSL's buffer (wsmask.c's drain). Not during the
		 * handshake: the request must stay in the socket to wake lws's poll. */
		SSL_set_read_ahead(s, 1);
		return s;
	}
	if (!hs.real_ssl_new)
		hs.real_ssl_new = (SSL * (*)(SSL_CTX *)) dlsym(RTLD_NEXT, "SSL_new");
	return hs.real_ssl_new ? hs.real_ssl_new(ctx) : NULL;
}

/* SSL_free: lws frees a tunnel's session as it closes the tunnel, ~15 us of CPU each
 * (ciphers, digests, the record buffers). A client that drops 200 tunnels at once (a shim's
 * LRU, a NAT box that died) made that ~3 ms of one pass of the loop; on the loop thread the
 * free waits in a list instead, and handshake_free_some() does it a few at a time at the end
 * of passes, between which open tunnels are served. Other threads free at once; so does the
 * loop when the list is full. Interposed like SSL_new above. Safe with the descriptor long
 * closed and its number reused: every session's BIO comes from SSL_set_fd (here and in
 * lws), which never closes it. */
static __thread bool free_later; /* set on the loop thread by handshake_start */
static struct {
	SSL *ssl[HS_FREE_MAX];
	unsigned n;
	void (*real)(SSL *);
	ev_idle busy; /* active while the list holds some: the loop polls without blocking */
} fl;

void SSL_free(SSL *ssl)
{
	if (!fl.real)
		fl.real = (void (*)(SSL *))dlsym(RTLD_NEXT, "SSL_free");
	if (!ssl || !fl.real)
		return;
	if (!free_later || fl.n == HS_FREE_MAX) {
		fl.real(ssl);
		return;
	}
	fl.ssl[fl.n++] = ssl;
	if (hs.loop)
		ev_idle_start(hs.loop, &fl.busy);
}

void handshake_free_some(bool all)
{
	unsigned done = 0;

	while (fl.n && (all || done < HS_FREE_MIN || relay_pass_elapsed_us() < HS_FREE_BUDGET_US)) {
		fl.real(fl.ssl[--fl.n]);
		done++;
	}
	if (!fl.n && hs.loop)
		ev_idle_stop(hs.loop, &fl.busy);
}

static void on_free_busy(struct ev_loop *loop, ev_idle *w, int revents)
{
}

void handshake_adopt_next(SSL *ssl)
{
	adopt_next = ssl;
}

void handshake_adopt_done(void)
{
	if (adopt_next) {
		SSL_free(adopt_next);
		adopt_next = NULL;
	}
}

static void queue_init(struct queue *q)
{
	pthread_mutex_init(&q->lock, NULL);
	q->head = NULL;
	q->tail = &q->head;
}

/* Wake whoever waits on efd. A write fails only when the counter is already at its
 * maximum: then the waiter wakes anyway. */
static void efd_kick(int efd)
{
	if (write(efd, &(uint64_t){ 1 }, sizeof(uint64_t)) < 0) {
		/* EAGAIN: already signalled */
	}
}

static void queue_push(struct queue *q, struct handshake *h)
{
	h->next = NULL;
	pthread_mutex_lock(&q->lock);
	*q->tail = h;
	q->tail = &h->next;
	pthread_mutex_unlock(&q->lock);
	efd_kick(q->efd);
}

/* Everything on q, in order. */
static struct handshake *queue_take(struct queue *q)
{
	struct handshake *h;
	uint64_t n;

	if (read(q->efd, &n, sizeof(n)) < 0) {
		/* EAGAIN: nothing was signalled since; the queue is looked at all the same */
	}
	pthread_mutex_lock(&q->lock);
	h = q->head;
	q->head = NULL;
	q->tail = &q->head;
	pthread_mutex_unlock(&q->lock);
	return h;
}

/* ALPN, as lws's vhost would have answered (main.c's info.alpn): HTTP/1.1 when the client
 * offers it, no ALPN otherwise (wgws-shim offers none). */
static int alpn_select(SSL *ssl, const unsigned char **out, unsigned char *outlen,
		       const unsigned char *in, unsigned int inlen, void *arg)
{
	static const unsigned char ours[] = "\x08http/1.1";

	(void)ssl;
	(void)arg;
	if (SSL_select_next_proto((unsigned char **)out, outlen, ours, sizeof(ours) - 1, in,
				  inlen) != OPENSSL_NPN_NEGOTIATED)
		return SSL_TLSEXT_ERR_NOACK;
	return SSL_TLSEXT_ERR_OK;
}

SSL_CTX *handshake_ctx_new(const char *cert, const char *key, const char **what)
{
	SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());

	*what = "SSL_CTX_new";
	if (!ctx)
		return NULL;
	/* As lws's vhost: TLS 1.2 and 1.3. No tickets, no session cache: wgws-shim never
	 * resumes, and a ticket is CPU and bytes for nothing. A client that closes its TCP
	 * connection without close_notify (as wgws-shim does) ends its tunnel like one that
	 * sent it: without IGNORE_UNEXPECTED_EOF, OpenSSL answers the EOF with a decode_error
	 * alert written to a socket its peer has closed, and queues an error for lws to log; 200
	 * such closes at once (a client's LRU evicting its tunnels) held the loop 3-4 ms longer
	 * (perf on the churn test: ~15-19 us per close in SSL_read, mostly the write(2)).
	 * Nothing is truncated unnoticed: WebSocket frames carry their own lengths. */
	SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
	SSL_CTX_set_options(ctx, SSL_OP_NO_COMPRESSION | SSL_OP_CIPHER_SERVER_PREFERENCE |
				 SSL_OP_NO_RENEGOTIATION | SSL_OP_IGNORE_UNEXPECTED_EOF);
	SSL_CTX_set_num_tickets(ctx, 0);
	SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
	SSL_CTX_set_alpn_select_cb(ctx, alpn_select, NULL);
	if (SSL_CTX_use_certificate_chain_file(ctx, cert) != 1) {
		*what = "the certificate (--cert)";
		goto fail;
	}
	if (SSL_CTX_use_PrivateKey_file(ctx, key, SSL_FILETYPE_PEM) != 1) {
		/* OpenSSL 3 compares the key with the certificate already here */
		*what = ERR_GET_REASON(ERR_peek_last_error()) == X509_R_KEY_VALUES_MISMATCH ?
			"the key against the certificate: they do not match" : "the key (--key)";
		goto fail;
	}
	if (SSL_CTX_check_private_key(ctx) != 1) {
		*what = "the key against the certificate: they do not match";
		goto fail;
	}
	return ctx;
fail:
	SSL_CTX_free(ctx);
	return NULL;
}

int handshake_init(SSL_CTX *ctx, const char **what)
{
	/* lws's SSL_new calls must reach ours, or lws would start a second handshake. */
	hs.real_ssl_new = (SSL * (*)(SSL_CTX *)) dlsym(RTLD_NEXT, "SSL_new");
	if (!hs.real_ssl_new || dlsym(RTLD_DEFAULT, "SSL_new") != (void *)SSL_new) {
		*what = "the SSL_new interposer";
		SSL_CTX_free(ctx);
		return -ENOSYS;
	}
	fl.real = (void (*)(SSL *))dlsym(RTLD_NEXT, "SSL_free");
	if (!fl.real || dlsym(RTLD_DEFAULT, "SSL_free") != (void *)SSL_free) {
		*what = "the SSL_free interposer";
		SSL_CTX_free(ctx);
		return -ENOSYS;
	}
	hs.ctx = ctx;
	return 0;
}

void handshake_set_ctx(SSL_CTX *ctx)
{
	SSL_CTX *old = atomic_exchange(&hs.next_ctx, ctx);

	SSL_CTX_free(old); /* one the thread never took: a second reload came first */
}

int handshake_cert_expiry(SSL_CTX *ctx, time_t *not_after)
{
	X509 *cert = SSL_CTX_get0_certificate(ctx);
	struct tm tm;

	if (!cert || ASN1_TIME_to_tm(X509_get0_notAfter(cert), &tm) != 1)
		return -ENOENT;
	*not_after = timegm(&tm);
	return 0;
}

/* ---- the thread ---- */

static void finish(struct handshake *h, bool ok)
{
	(void)epoll_ctl(hs.epfd, EPOLL_CTL_DEL, h->fd, NULL);
	lws_dll2_remove(&h->active);
	if (!ok) {
		SSL_free(h->ssl);
		h->ssl = NULL;
		ERR_clear_error();
	}
	queue_push(&hs.out, h);
}

static void step(struct handshake *h)
{
	struct epoll_event ev = { .data.ptr = h };
	int n;

	if (atomic_load(&h->cancelled)) {
		finish(h, false);
		return;
	}
	n = SSL_accept(h->ssl);
	if (n == 1) {
		finish(h, true);
		return;
	}
	switch (SSL_get_error(h->ssl, n)) {
	case SSL_ERROR_WANT_READ:
		ev.events = EPOLLIN;
		break;
	case SSL_ERROR_WANT_WRITE:
		ev.events = EPOLLOUT;
		break;
	default:
		finish(h, false);
		return;
	}
	if (epoll_ctl(hs.epfd, EPOLL_CTL_MOD, h->fd, &ev) < 0)
		finish(h, false);
}

static void start(struct handshake *h)
{
	struct epoll_event ev = { .events = EPOLLIN, .data.ptr = h };

	if (atomic_load(&h->cancelled)) {
		queue_push(&hs.out, h); /* evicted while it waited: nothing to set up */
		return;
	}
	lws_dll2_add_head(&h->active, &hs.active);
	if (atomic_load(&hs.next_ctx)) {
		/* SIGHUP's certificate: every handshake from now on; the sessions made with the
		 * old one hold their own reference to it */
		SSL_CTX_free(hs.ctx);
		hs.ctx = atomic_exchange(&hs.next_ctx, NULL);
	}
	h->ssl = SSL_new(hs.ctx);
	if (!h->ssl || !SSL_set_fd(h->ssl, h->fd) ||
	    epoll_ctl(hs.epfd, EPOLL_CTL_ADD, h->fd, &ev) < 0) {
		finish(h, false);
		return;
	}
	step(h); /* its first bytes are there: that is why it came */
}

static void *thread_main(void *arg)
{
	struct epoll_event evs[HS_EVENTS];

	(void)arg;
	if (sched_setscheduler(0, SCHED_IDLE, &(struct sched_param){ 0 }) < 0)
		(void)setpriority(PRIO_PROCESS, (id_t)gettid(), HS_NICE);
	sem_post(&hs.started); /* glibc's thread start-up (rseq, set_robust_list) is behind us */
	while (!atomic_load(&hs.stop)) {
		int n = epoll_wait(hs.epfd, evs, HS_EVENTS, -1);

		for (int i = 0; i < n; i++) {
			if (!evs[i].data.ptr) {
				for (struct handshake *h = queue_take(&hs.in), *next; h; h = next) {
					next = h->next;
					start(h);
				}
				continue;
			}
			step(evs[i].data.ptr);
		}
	}
	while (hs.active.head)
		finish(lws_container_of(hs.active.head, struct handshake, active), false);
	for (struct handshake *h = queue_take(&hs.in), *next; h; h = next) {
		next = h->next;
		queue_push(&hs.out, h); /* not started: no ssl, a failure */
	}
	return NULL;
}

/* ---- the loop's side ---- */

static void deliver(struct handshake *h)
{
	if (h->owner) {
		hs.done(h->owner, h->ssl); /* NULL: it failed */
	} else { /* cancelled (the loop cleared owner) */
		hs.cancelled--;
		SSL_free(h->ssl);
		close(h->fd);
	}
	free(h);
}

static void on_out(struct ev_loop *loop, ev_io *w, int revents)
{
	for (struct handshake *h = queue_take(&hs.out), *next; h; h = next) {
		next = h->next;
		deliver(h);
	}
}

int handshake_start(struct ev_loop *loop, handshake_done_fn *done)
{
	struct epoll_event ev = { .events = EPOLLIN, .data.ptr = NULL };
	sigset_t all, old;
	int ret;

	queue_init(&hs.in);
	queue_init(&hs.out);
	hs.in.efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	hs.out.efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	hs.epfd = epoll_create1(EPOLL_CLOEXEC);
	if (hs.in.efd < 0 || hs.out.efd < 0 || hs.epfd < 0 ||
	    epoll_ctl(hs.epfd, EPOLL_CTL_ADD, hs.in.efd, &ev) < 0)
		return -errno;
	hs.loop = loop;
	hs.done = done;
	ev_idle_init(&fl.busy, on_free_busy);
	free_later = true;
	ev_io_init(&hs.out_io, on_out, hs.out.efd, EV_READ);
	ev_io_start(loop, &hs.out_io);
	/* Signals are the loop's (libev's watchers): the thread is born with all blocked. */
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	/* One heap for both threads: a second arena would keep a burst's handshakes' memory
	 * out of the loop's malloc_trim (RSS stayed 17-25 MiB up after the churn bursts). */
	mallopt(M_ARENA_MAX, 1);
	sem_init(&hs.started, 0, 0);
	ret = pthread_create(&hs.thread, NULL, thread_main, NULL);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (ret)
		return -ret;
	hs.running = true;
	/* The sandbox comes next and reaches the thread too: it must be running by then. */
	while (sem_wait(&hs.started) < 0 && errno == EINTR)
		;
	return 0;
}

struct handshake *handshake_submit(int fd, void *owner)
{
	struct handshake *h = calloc(1, sizeof(*h));

	if (!h)
		return NULL;
	h->fd = fd;
	h->owner = owner;
	atomic_init(&h->cancelled, false);
	queue_push(&hs.in, h);
	return h;
}

void handshake_cancel(struct handshake *h)
{
	h->owner = NULL;
	atomic_store(&h->cancelled, true);
	hs.cancelled++;
	(void)shutdown(h->fd, SHUT_RDWR); /* wakes the thread if it waits on this one */
}

unsigned handshake_cancelled(void)
{
	return hs.cancelled;
}

void handshake_stop(void)
{
	if (hs.running) {
		atomic_store(&hs.stop, true);
		efd_kick(hs.in.efd);
		pthread_join(hs.thread, NULL);
		hs.running = false;
		on_out(hs.loop, &hs.out_io, 0);
		ev_io_stop(hs.loop, &hs.out_io);
	}
	if (hs.in.efd >= 0)
		close(hs.in.efd);
	if (hs.out.efd >= 0)
		close(hs.out.efd);
	if (hs.epfd >= 0)
		close(hs.epfd);
	hs.in.efd = hs.out.efd = hs.epfd = -1;
	SSL_CTX_free(hs.ctx);
	hs.ctx = NULL;
	SSL_CTX_free(atomic_exchange(&hs.next_ctx, NULL));
}
