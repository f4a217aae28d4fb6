/* SPDX-License-Identifier: MIT */
/* udpload: a UDP load generator, sink/echo and echo client for wgws's benchmarks (issue 5).
 * One binary, no library beyond libc; IPv4 and IPv6 (numeric addresses, "[::1]:PORT").
 *
 *   udpload send --to ADDR:PORT [--size B] [--rate PPS | --open] [--count N | --duration S]
 *                [--batch K] [--run-id ID] [--buf BYTES] [-q]
 *   udpload sink --listen ADDR:PORT [--echo] [--duration S] [--idle S] [--batch K]
 *                [--buf BYTES] [-q]
 *   udpload ping --to ADDR:PORT [--size B] [--window W | --rate PPS] [--count N | --duration S]
 *                [--timeout MS] [--batch K] [--run-id ID] [--buf BYTES] [-q]
 *
 * Every datagram starts with a 24-byte header, big-endian: magic "UDL1" (u32), run id (u32,
 * random unless --run-id), sequence number (u64, from 0 per run), send time (u64, ns of the
 * sender's CLOCK_MONOTONIC); the rest up to --size bytes (24..65507, default 64) is zeros.
 * --wg-shape (all three modes) makes the magic 04 00 00 00 instead: with a size WireGuard
 * data can have (>= 32 and a multiple of 16, or >= 100) the datagrams look like WireGuard
 * data messages, which is all wgws-relay forwards. Sender and sink must agree on it.
 * ping --hist FILE writes the RTT distribution as a CDF (see hist_write) for plotting.
 * ping --trace FILE writes one line per packet once it is settled, in order of settling:
 * "SENT_NS RTT_NS" for an echo, "SENT_NS lost" for a loss (SENT_NS: this process's
 * CLOCK_MONOTONIC, as Python's time.monotonic_ns()), so a test can split one run into
 * periods (tests/e2e/test_churn.sh: with and without bursts of new tunnels).
 * --from ADDR:PORT (send, ping) sends from that address: several runs through a wgws-shim then
 * share one local source, so one tunnel (the shim opens one per source).
 *
 * send: sendmmsg in batches of K (--batch, 1..256, default 32) on a connected socket. --rate
 *   paces against CLOCK_MONOTONIC: packet i is due at start + i/rate; a sender that fell
 *   behind catches up, but never more than K packets per sendmmsg. --open sends K after K as
 *   fast as the socket takes them. Stops after --count packets or --duration seconds
 *   (default: 10 s). The default is --open.
 * sink: recvmmsg in batches of K (default 32) into 64 KiB buffers (nothing is ever truncated).
 *   A datagram shorter than the header or with another magic is "foreign": counted, never
 *   parsed further, never echoed. Valid ones are counted per run id (up to 16 runs; packets of
 *   further runs count as foreign), and with --echo sent back to their source (sendmmsg,
 *   batched). Stops after --duration seconds, after --idle seconds without any datagram
 *   (counted from the start or the last datagram), or on SIGINT/SIGTERM; by default it runs
 *   until a signal.
 * ping: sends on a connected socket and matches the echoes by run id and sequence. --window W
 *   keeps W packets in flight (closed loop; default --window 1); --rate sends at a fixed rate
 *   whatever comes back. A packet without its echo within --timeout ms (default 1000) is lost;
 *   after the last send it waits at most that long for the stragglers (on SIGINT/SIGTERM it
 *   stops at once: packets still in flight count as lost). Default --count 1000.
 *
 * Output: progress and errors on stderr (a progress line per second, -q for none); on stdout a
 * human line and one machine line "result mode=… key=value …". Exit 0 on a completed run (also
 * when ended by SIGINT/SIGTERM), 2 on a usage error, 1 on a socket or memory error
 * (or a --hist file that cannot be written). The numbers:
 *
 *   sent, bytes        datagrams (and their UDP payload bytes) the kernel accepted from us
 *   received           send: -; sink: valid datagrams (duplicates included); ping: echoes
 *                      matched to a packet in flight, i.e. the number of RTT samples
 *   lost               sink: per run, highest sequence + 1 - distinct sequences seen (a lost
 *                      tail after the last packet received is invisible to a sink: compare
 *                      with the sender's sent); ping: packets without an echo within --timeout
 *   reordered          sink: datagrams with a lower sequence than one already seen in their run
 *   dup                sink: a sequence seen before (checked within the last 2^20 sequences of
 *                      a run; older ones count as reordered and late); ping: a second echo
 *   late               sink: older than the duplicate window; ping: echo after its timeout
 *   foreign            too short, wrong magic, wrong run id (ping), impossible sequence
 *   send_errors        send: ENOBUFS/EAGAIN refusals (retried); refused: ECONNREFUSED (an
 *                      ICMP port unreachable from an earlier packet; nobody listens)
 *   echoed, echo_errors  sink --echo: datagrams sent back, and those the kernel refused
 *   elapsed_s          send/ping: from the first send to the last (ping: to the last echo or
 *                      timeout); sink: from the first valid datagram to the last
 *   pps, mbps          send: sent / elapsed; sink: (received - 1) / elapsed; ping: received /
 *                      elapsed. Mbit/s counts UDP payload bits only (no IP/UDP headers)
 *   min_us p50_us p99_us p999_us max_us mean_us   ping: round-trip times in µs, measured in
 *                      user space (clock read just before sendmmsg and just after recvmmsg)
 *   cpu_user_s, cpu_sys_s   getrusage(RUSAGE_SELF) of this process for the whole run
 *   rcvbuf, sndbuf     the socket buffer sizes the kernel granted (--buf asks, default 4 MiB;
 *                      SO_*BUFFORCE when allowed, else capped by net.core.[rw]mem_max)
 *
 * RTTs go into a log-linear histogram (128 sub-buckets per power of two of nanoseconds: every
 * value within 0.8 % of the truth, 7424 counters, 58 KiB, whatever the number of samples);
 * min, max and mean are exact. Memory is bounded: ping's in-flight table holds at most 2^20
 * packets (a packet still unanswered when its slot is needed again is counted lost), the sink
 * 128 KiB of duplicate bitmap per run and K receive buffers of 64 KiB. */
#include <arpa/inet.h>
#include <endian.h>
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/random.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

enum {
	UL_MAGIC = 0x55444c31,    /* "UDL1" */
	UL_MAGIC_WG = 0x04000000, /* --wg-shape: 04 00 00 00, a WireGuard data message */
	UL_HDR_LEN = 24,
	UL_MAX_SIZE = 65507, /* the largest IPv4 UDP payload; IPv6 is held to it too */
	UL_RECV_BUF = 65536,
	UL_MAX_BATCH = 256,
	UL_MAX_RUNS = 16,
	UL_SEEN_BITS = 1 << 20,     /* sink: duplicate window per run (128 KiB) */
	UL_RING_MIN = 1 << 12,      /* ping: in-flight table, entries */
	UL_RING_MAX = 1 << 20,
	UL_MAX_WINDOW = 1 << 16,
	UL_TICK_NS = 100000000,     /* longest wait between two looks at the clock and flags */
	UL_PROGRESS_NS = 1000000000,
	UL_DEFAULT_BUF = 4 << 20,
};

enum { EXIT_SOCKET = 1, EXIT_USAGE = 2 };

#define NS_PER_S 1000000000ULL
#define UL_MAX_SEQ (1ULL << 48) /* a larger sequence number is a lie */
#define UL_MAX_RATE 100000000ULL

enum mode { MODE_SEND, MODE_SINK, MODE_PING };

/* Option bits, to refuse options that mean nothing for a subcommand. */
enum {
	OPT_TO = 1 << 0, OPT_LISTEN = 1 << 1, OPT_SIZE = 1 << 2, OPT_RATE = 1 << 3,
	OPT_OPEN = 1 << 4, OPT_COUNT = 1 << 5, OPT_DURATION = 1 << 6, OPT_BATCH = 1 << 7,
	OPT_ECHO = 1 << 8, OPT_IDLE = 1 << 9, OPT_WINDOW = 1 << 10, OPT_TIMEOUT = 1 << 11,
	OPT_RUNID = 1 << 12, OPT_BUF = 1 << 13, OPT_QUIET = 1 << 14, OPT_WGSHAPE = 1 << 15,
	OPT_HIST = 1 << 16, OPT_FROM = 1 << 17, OPT_TRACE = 1 << 18,
};

struct opts {
	enum mode mode;
	unsigned seen;
	struct sockaddr_storage addr, from;
	socklen_t addr_len, from_len;
	char addr_str[INET6_ADDRSTRLEN + 8];
	uint64_t size, rate, count, batch, window, timeout_ns, duration_ns, idle_ns, buf;
	uint32_t run_id;
	bool echo, quiet;
	const char *hist_path;
	const char *trace_path;
};

/* The magic every datagram starts with and every valid one must have: UL_MAGIC, or
 * UL_MAGIC_WG with --wg-shape. */
static uint32_t ul_magic = UL_MAGIC;

struct hdr {
	uint32_t magic, run;
	uint64_t seq, ts_ns;
};

/* Log-linear histogram of nanoseconds: values below 2^(SUB_BITS+1) exactly, then SUB buckets
 * per power of two. */
enum {
	HIST_SUB_BITS = 7,
	HIST_SUB = 1 << HIST_SUB_BITS,
	HIST_BUCKETS = (64 - HIST_SUB_BITS + 1) * HIST_SUB,
};

struct hist {
	uint64_t n, min, max;
	long double sum;
	uint64_t bucket[HIST_BUCKETS];
};

static volatile sig_atomic_t stop_signal;
static const char *prog = "udpload";

static void on_signal(int sig)
{
	stop_signal = sig;
}

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * NS_PER_S + (uint64_t)ts.tv_nsec;
}

static void usage(FILE *f)
{
	fprintf(f,
		"usage: udpload send --to ADDR:PORT [--size B] [--rate PPS | --open]\n"
		"                    [--count N | --duration S] [--batch K] [--run-id ID] [--buf BYTES]\n"
		"                    [--wg-shape] [--from ADDR:PORT] [-q]\n"
		"       udpload sink --listen ADDR:PORT [--echo] [--duration S] [--idle S] [--batch K]\n"
		"                    [--buf BYTES] [--wg-shape] [-q]\n"
		"       udpload ping --to ADDR:PORT [--size B] [--window W | --rate PPS]\n"
		"                    [--count N | --duration S] [--timeout MS] [--batch K] [--run-id ID]\n"
		"                    [--wg-shape] [--from ADDR:PORT]\n"
		"                    [--buf BYTES] [--hist FILE] [--trace FILE] [-q]\n"
		"ADDR is numeric IPv4 or [IPv6]; --size %d..%d bytes (default 64); --batch 1..%d;\n"
		"a line 'result mode=... key=value ...' on stdout sums up the run (see bench/udpload.c).\n",
		UL_HDR_LEN, UL_MAX_SIZE, UL_MAX_BATCH);
}

static void __attribute__((format(printf, 1, 2), noreturn)) usage_error(const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "%s: ", prog);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputs(" (udpload --help for usage)\n", stderr);
	exit(EXIT_USAGE);
}

/* sock_fail: a socket or memory error: message with strerror(errno), exit 1. */
static void __attribute__((noreturn)) sock_fail(const char *what)
{
	fprintf(stderr, "%s: %s: %s\n", prog, what, strerror(errno));
	exit(EXIT_SOCKET);
}

/* --- parsing ----------------------------------------------------------------------------- */

static bool parse_u64(const char *s, uint64_t min, uint64_t max, uint64_t *out)
{
	char *end;
	unsigned long long v;

	if (*s < '0' || *s > '9')
		return false;
	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno || *end || v < min || v > max)
		return false;
	*out = v;
	return true;
}

/* parse_seconds: a decimal number of seconds in (0, max_s], as nanoseconds. */
static bool parse_seconds(const char *s, double max_s, uint64_t *ns)
{
	char *end;
	double v;

	if ((*s < '0' || *s > '9') && *s != '.')
		return false;
	errno = 0;
	v = strtod(s, &end);
	if (errno || *end || !isfinite(v) || v <= 0 || v > max_s)
		return false;
	*ns = (uint64_t)(v * 1e9);
	return *ns > 0;
}

/* parse_addr: "A.B.C.D:PORT" or "[IPV6]:PORT", numeric only; port 1..65535 (0 allowed when
 * listening: the kernel picks one). */
static bool parse_addr(const char *s, bool listening, struct opts *o)
{
	char host[INET6_ADDRSTRLEN];
	const char *port, *colon;
	size_t hlen;
	uint64_t p;
	struct sockaddr_in *sin = (struct sockaddr_in *)&o->addr;
	struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&o->addr;

	if (s[0] == '[') {
		const char *close = strchr(s, ']');

		if (!close || close[1] != ':')
			return false;
		hlen = (size_t)(close - s - 1);
		s++;
		port = close + 2;
	} else {
		colon = strrchr(s, ':');
		if (!colon || memchr(s, ':', (size_t)(colon - s)))
			return false; /* no port, or IPv6 without brackets */
		hlen = (size_t)(colon - s);
		port = colon + 1;
	}
	if (hlen == 0 || hlen >= sizeof(host))
		return false;
	memcpy(host, s, hlen);
	host[hlen] = '\0';
	if (!parse_u64(port, listening ? 0 : 1, 65535, &p))
		return false;
	memset(&o->addr, 0, sizeof(o->addr));
	if (inet_pton(AF_INET, host, &sin->sin_addr) == 1) {
		sin->sin_family = AF_INET;
		sin->sin_port = htons((uint16_t)p);
		o->addr_len = sizeof(*sin);
	} else if (inet_pton(AF_INET6, host, &sin6->sin6_addr) == 1) {
		sin6->sin6_family = AF_INET6;
		sin6->sin6_port = htons((uint16_t)p);
		o->addr_len = sizeof(*sin6);
	} else {
		return false;
	}
	return true;
}

static void format_addr(const struct sockaddr_storage *ss, char *buf, size_t len)
{
	char host[INET6_ADDRSTRLEN] = "?";
	unsigned port = 0;

	if (ss->ss_family == AF_INET) {
		const struct sockaddr_in *sin = (const struct sockaddr_in *)ss;

		inet_ntop(AF_INET, &sin->sin_addr, host, sizeof(host));
		port = ntohs(sin->sin_port);
		snprintf(buf, len, "%s:%u", host, port);
	} else {
		const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)ss;

		inet_ntop(AF_INET6, &sin6->sin6_addr, host, sizeof(host));
		port = ntohs(sin6->sin6_port);
		snprintf(buf, len, "[%s]:%u", host, port);
	}
}

static void parse_args(int argc, char **argv, struct opts *o)
{
	static const struct option longopts[] = {
		{ "to", required_argument, NULL, 't' },
		{ "listen", required_argument, NULL, 'l' },
		{ "size", required_argument, NULL, 's' },
		{ "rate", required_argument, NULL, 'r' },
		{ "open", no_argument, NULL, 'o' },
		{ "count", required_argument, NULL, 'n' },
		{ "duration", required_argument, NULL, 'd' },
		{ "batch", required_argument, NULL, 'b' },
		{ "echo", no_argument, NULL, 'e' },
		{ "idle", required_argument, NULL, 'i' },
		{ "window", required_argument, NULL, 'w' },
		{ "timeout", required_argument, NULL, 'T' },
		{ "run-id", required_argument, NULL, 'R' },
		{ "buf", required_argument, NULL, 'B' },
		{ "quiet", no_argument, NULL, 'q' },
		{ "wg-shape", no_argument, NULL, 'W' },
		{ "hist", required_argument, NULL, 'H' },
		{ "from", required_argument, NULL, 'F' },
		{ "trace", required_argument, NULL, 'P' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	static const unsigned allowed[] = {
		[MODE_SEND] = OPT_TO | OPT_SIZE | OPT_RATE | OPT_OPEN | OPT_COUNT | OPT_DURATION |
			      OPT_BATCH | OPT_RUNID | OPT_BUF | OPT_QUIET | OPT_WGSHAPE | OPT_FROM,
		[MODE_SINK] = OPT_LISTEN | OPT_ECHO | OPT_DURATION | OPT_IDLE | OPT_BATCH | OPT_BUF |
			      OPT_QUIET | OPT_WGSHAPE,
		[MODE_PING] = OPT_TO | OPT_SIZE | OPT_WINDOW | OPT_RATE | OPT_COUNT | OPT_DURATION |
			      OPT_TIMEOUT | OPT_BATCH | OPT_RUNID | OPT_BUF | OPT_QUIET | OPT_WGSHAPE |
			      OPT_HIST | OPT_FROM | OPT_TRACE,
	};
	const char *cmd;
	uint64_t v;
	int c;

	if (argc < 2)
		usage_error("a subcommand is needed: send, sink or ping");
	cmd = argv[1];
	if (!strcmp(cmd, "-h") || !strcmp(cmd, "--help")) {
		usage(stdout);
		exit(0);
	}
	if (!strcmp(cmd, "send"))
		o->mode = MODE_SEND;
	else if (!strcmp(cmd, "sink"))
		o->mode = MODE_SINK;
	else if (!strcmp(cmd, "ping"))
		o->mode = MODE_PING;
	else
		usage_error("unknown subcommand '%s'", cmd);

	o->size = 64;
	o->batch = o->mode == MODE_PING ? 8 : 32;
	o->timeout_ns = NS_PER_S;
	o->buf = UL_DEFAULT_BUF;
	if (getrandom(&o->run_id, sizeof(o->run_id), 0) != sizeof(o->run_id))
		o->run_id = (uint32_t)(now_ns() ^ (uint64_t)getpid());

	optind = 1;
	opterr = 0;
	while ((c = getopt_long(argc - 1, argv + 1, ":q", longopts, NULL)) != -1) {
		const char *name = argv[optind]; /* unknown or missing value: the word itself */
		unsigned bit;
		int li;

		for (li = 0; longopts[li].name; li++)
			if (longopts[li].val == c)
				name = longopts[li].name;

		switch (c) {
		case 't':
			bit = OPT_TO;
			if (!parse_addr(optarg, false, o))
				usage_error("--to '%s': expected A.B.C.D:PORT or [IPv6]:PORT, "
					    "port 1..65535", optarg);
			break;
		case 'F': {
			/* parse_addr fills the destination: parse into a copy, keep its address */
			struct opts tmp = *o;

			bit = OPT_FROM;
			if (!parse_addr(optarg, true, &tmp))
				usage_error("--from '%s': expected A.B.C.D:PORT or [IPv6]:PORT, "
					    "port 0..65535", optarg);
			o->from = tmp.addr;
			o->from_len = tmp.addr_len;
			break;
		}
		case 'l':
			bit = OPT_LISTEN;
			if (!parse_addr(optarg, true, o))
				usage_error("--listen '%s': expected A.B.C.D:PORT or [IPv6]:PORT, "
					    "port 0..65535", optarg);
			break;
		case 's':
			bit = OPT_SIZE;
			if (!parse_u64(optarg, UL_HDR_LEN, UL_MAX_SIZE, &o->size))
				usage_error("--size '%s': expected %d..%d bytes", optarg, UL_HDR_LEN,
					    UL_MAX_SIZE);
			break;
		case 'r':
			bit = OPT_RATE;
			if (!parse_u64(optarg, 1, UL_MAX_RATE, &o->rate))
				usage_error("--rate '%s': expected 1..%llu packets/s", optarg,
					    UL_MAX_RATE);
			break;
		case 'o':
			bit = OPT_OPEN;
			break;
		case 'n':
			bit = OPT_COUNT;
			if (!parse_u64(optarg, 1, UL_MAX_SEQ, &o->count))
				usage_error("--count '%s': expected 1..2^48", optarg);
			break;
		case 'd':
			bit = OPT_DURATION;
			if (!parse_seconds(optarg, 86400, &o->duration_ns))
				usage_error("--duration '%s': expected seconds in (0, 86400]", optarg);
			break;
		case 'b':
			bit = OPT_BATCH;
			if (!parse_u64(optarg, 1, UL_MAX_BATCH, &o->batch))
				usage_error("--batch '%s': expected 1..%d", optarg, UL_MAX_BATCH);
			break;
		case 'e':
			bit = OPT_ECHO;
			o->echo = true;
			break;
		case 'i':
			bit = OPT_IDLE;
			if (!parse_seconds(optarg, 86400, &o->idle_ns))
				usage_error("--idle '%s': expected seconds in (0, 86400]", optarg);
			break;
		case 'w':
			bit = OPT_WINDOW;
			if (!parse_u64(optarg, 1, UL_MAX_WINDOW, &o->window))
				usage_error("--window '%s': expected 1..%d packets", optarg,
					    UL_MAX_WINDOW);
			break;
		case 'T':
			bit = OPT_TIMEOUT;
			if (!parse_u64(optarg, 1, 60000, &v))
				usage_error("--timeout '%s': expected 1..60000 ms", optarg);
			o->timeout_ns = v * 1000000;
			break;
		case 'R':
			bit = OPT_RUNID;
			if (!parse_u64(optarg, 0, UINT32_MAX, &v))
				usage_error("--run-id '%s': expected 0..%u", optarg, UINT32_MAX);
			o->run_id = (uint32_t)v;
			break;
		case 'B':
			bit = OPT_BUF;
			if (!parse_u64(optarg, 4096, 1 << 30, &o->buf))
				usage_error("--buf '%s': expected 4096..%d bytes", optarg, 1 << 30);
			break;
		case 'q':
			bit = OPT_QUIET;
			o->quiet = true;
			break;
		case 'W':
			bit = OPT_WGSHAPE;
			ul_magic = UL_MAGIC_WG;
			break;
		case 'H':
			bit = OPT_HIST;
			if (!optarg[0])
				usage_error("--hist needs a file name");
			o->hist_path = optarg;
			break;
		case 'P':
			bit = OPT_TRACE;
			if (!optarg[0])
				usage_error("--trace needs a file name");
			o->trace_path = optarg;
			break;
		case 'h':
			usage(stdout);
			exit(0);
		case ':':
			usage_error("option %s needs a value", name);
		default:
			usage_error("unknown option %s", name);
		}
		if (!(allowed[o->mode] & bit))
			usage_error("option --%s means nothing for '%s'", name, cmd);
		if (o->seen & bit)
			usage_error("option --%s given twice", name);
		o->seen |= bit;
	}
	if (optind < argc - 1)
		usage_error("unexpected argument '%s'", argv[optind + 1]);

	if (o->mode == MODE_SINK) {
		if (!(o->seen & OPT_LISTEN))
			usage_error("sink needs --listen ADDR:PORT");
	} else {
		if (!(o->seen & OPT_TO))
			usage_error("%s needs --to ADDR:PORT", cmd);
		if ((o->seen & OPT_COUNT) && (o->seen & OPT_DURATION))
			usage_error("--count and --duration exclude each other");
	}
	/* WireGuard data: 16 bytes of header and 16 of tag around a plaintext padded to 16,
	 * or a full-MTU packet (common/wgmsg.h): the relay forwards nothing else. */
	if ((o->seen & OPT_WGSHAPE) && o->mode != MODE_SINK &&
	    (o->size < 32 || (o->size % 16 && o->size < 100)))
		usage_error("--wg-shape needs --size >= 32 and a multiple of 16, or >= 100 "
			    "(a WireGuard data message), not %" PRIu64, o->size);
	if ((o->seen & OPT_RATE) && (o->seen & (OPT_OPEN | OPT_WINDOW)))
		usage_error("--rate excludes %s", o->mode == MODE_PING ? "--window" : "--open");
	if (o->mode == MODE_SEND && !(o->seen & (OPT_COUNT | OPT_DURATION)))
		o->duration_ns = 10 * NS_PER_S;
	if (o->mode == MODE_PING) {
		if (!(o->seen & (OPT_COUNT | OPT_DURATION)))
			o->count = 1000;
		if (!(o->seen & (OPT_RATE | OPT_WINDOW)))
			o->window = 1;
	}
	format_addr(&o->addr, o->addr_str, sizeof(o->addr_str));
}

/* --- header and histogram ---------------------------------------------------------------- */

static void hdr_put(uint8_t *p, uint32_t run, uint64_t seq, uint64_t ts_ns)
{
	uint32_t m = htobe32(ul_magic), r = htobe32(run);
	uint64_t s = htobe64(seq), t = htobe64(ts_ns);

	memcpy(p, &m, 4);
	memcpy(p + 4, &r, 4);
	memcpy(p + 8, &s, 8);
	memcpy(p + 16, &t, 8);
}

/* hdr_get: true when p[0..len) holds a header with our magic and a believable sequence. */
static bool hdr_get(const uint8_t *p, size_t len, struct hdr *h)
{
	uint32_t m, r;
	uint64_t s, t;

	if (len < UL_HDR_LEN)
		return false;
	memcpy(&m, p, 4);
	memcpy(&r, p + 4, 4);
	memcpy(&s, p + 8, 8);
	memcpy(&t, p + 16, 8);
	h->magic = be32toh(m);
	h->run = be32toh(r);
	h->seq = be64toh(s);
	h->ts_ns = be64toh(t);
	return h->magic == ul_magic && h->seq < UL_MAX_SEQ;
}

static unsigned hist_index(uint64_t v)
{
	unsigned h, shift;

	if (v < 2 * HIST_SUB)
		return (unsigned)v;
	h = 63 - (unsigned)__builtin_clzll(v);
	shift = h - HIST_SUB_BITS;
	return HIST_SUB * (shift + 1) + (unsigned)((v >> shift) - HIST_SUB);
}

static void hist_add(struct hist *hg, uint64_t v)
{
	if (hg->n == 0 || v < hg->min)
		hg->min = v;
	if (v > hg->max)
		hg->max = v;
	hg->n++;
	hg->sum += v;
	hg->bucket[hist_index(v)]++;
}

/* hist_quantile: the value at quantile q (0..1]: the middle of its bucket, within [min, max]. */
static uint64_t hist_quantile(const struct hist *hg, double q)
{
	uint64_t rank, cum = 0, lo, width, v;
	unsigned i;

	if (hg->n == 0)
		return 0;
	rank = (uint64_t)(q * (double)hg->n);
	if ((double)rank < q * (double)hg->n)
		rank++; /* ceil, without libm */
	if (rank < 1)
		rank = 1;
	if (rank >= hg->n)
		return hg->max;
	for (i = 0; i < HIST_BUCKETS; i++) {
		cum += hg->bucket[i];
		if (cum >= rank)
			break;
	}
	if (i < 2 * HIST_SUB) {
		lo = i;
		width = 1;
	} else {
		unsigned shift = i / HIST_SUB - 1;

		lo = (uint64_t)(HIST_SUB + i % HIST_SUB) << shift;
		width = 1ULL << shift;
	}
	v = lo + (width - 1) / 2;
	if (v < hg->min)
		v = hg->min;
	if (v > hg->max)
		v = hg->max;
	return v;
}

/* hist_write: the distribution as a CDF, one line per non-empty bucket: "UPPER_US FRACTION
 * COUNT", UPPER_US the bucket's upper bound (the largest value in it, capped at the maximum)
 * and FRACTION the share of samples up to it; the first line is the minimum at 0. Returns 0,
 * or -1 with errno. */
static int hist_write(const struct hist *hg, const char *path)
{
	FILE *f = fopen(path, "we");
	uint64_t cum = 0;

	if (!f)
		return -1;
	fprintf(f, "# rtt_us fraction_le count (udpload ping; %" PRIu64 " samples)\n", hg->n);
	if (hg->n)
		fprintf(f, "%.3f 0 0\n", (double)hg->min / 1e3);
	for (unsigned i = 0; i < HIST_BUCKETS && hg->n; i++) {
		uint64_t lo, width, hi;

		if (!hg->bucket[i])
			continue;
		if (i < 2 * HIST_SUB) {
			lo = i;
			width = 1;
		} else {
			unsigned shift = i / HIST_SUB - 1;

			lo = (uint64_t)(HIST_SUB + i % HIST_SUB) << shift;
			width = 1ULL << shift;
		}
		hi = lo + width - 1;
		if (hi > hg->max)
			hi = hg->max;
		cum += hg->bucket[i];
		fprintf(f, "%.3f %.9f %" PRIu64 "\n", (double)hi / 1e3, (double)cum / (double)hg->n,
			hg->bucket[i]);
	}
	if (fflush(f) != 0 || ferror(f)) {
		int e = errno;

		fclose(f);
		errno = e;
		return -1;
	}
	return fclose(f);
}

/* --- sockets and common output ----------------------------------------------------------- */

static void set_buf(int fd, int force_opt, int opt, uint64_t want)
{
	int v = (int)want;

	if (setsockopt(fd, SOL_SOCKET, force_opt, &v, sizeof(v)) < 0)
		(void)setsockopt(fd, SOL_SOCKET, opt, &v, sizeof(v)); /* capped, never fatal */
}

static int get_buf(int fd, int opt)
{
	int v = 0;
	socklen_t len = sizeof(v);

	if (getsockopt(fd, SOL_SOCKET, opt, &v, &len) < 0)
		return -1;
	return v;
}

/* open_socket: a UDP socket for o->addr, bound (sink) or connected (send, ping). */
static int open_socket(struct opts *o)
{
	int fd = socket(o->addr.ss_family, SOCK_DGRAM | SOCK_CLOEXEC, 0);

	if (fd < 0)
		sock_fail("socket");
	set_buf(fd, SO_RCVBUFFORCE, SO_RCVBUF, o->buf);
	set_buf(fd, SO_SNDBUFFORCE, SO_SNDBUF, o->buf);
	if (o->mode == MODE_SINK) {
		struct sockaddr_storage ss;
		socklen_t len = sizeof(ss);

		if (bind(fd, (struct sockaddr *)&o->addr, o->addr_len) < 0) {
			fprintf(stderr, "%s: bind %s: %s\n", prog, o->addr_str, strerror(errno));
			exit(EXIT_SOCKET);
		}
		if (getsockname(fd, (struct sockaddr *)&ss, &len) < 0)
			sock_fail("getsockname");
		format_addr(&ss, o->addr_str, sizeof(o->addr_str));
	} else if (o->from_len && (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &(int){ 1 },
					      sizeof(int)) < 0 ||
				   bind(fd, (struct sockaddr *)&o->from, o->from_len) < 0)) {
		fprintf(stderr, "%s: bind --from: %s\n", prog, strerror(errno));
		exit(EXIT_SOCKET);
	} else if (connect(fd, (struct sockaddr *)&o->addr, o->addr_len) < 0) {
		fprintf(stderr, "%s: connect %s: %s\n", prog, o->addr_str, strerror(errno));
		exit(EXIT_SOCKET);
	}
	return fd;
}

static void *xcalloc(size_t n, size_t size)
{
	void *p = calloc(n, size);

	if (!p)
		sock_fail("calloc");
	return p;
}

static void cpu_seconds(double *user, double *sys)
{
	struct rusage ru;

	getrusage(RUSAGE_SELF, &ru);
	*user = (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6;
	*sys = (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
}

/* wait_ns: sleep at most ns (< 1 s) or until fd is readable (fd -1: just sleep); true when
 * readable. A signal ends the wait early. */
static bool wait_ns(int fd, uint64_t ns)
{
	struct pollfd pfd = { .fd = fd, .events = POLLIN };
	struct timespec ts = { .tv_sec = (time_t)(ns / NS_PER_S), .tv_nsec = (long)(ns % NS_PER_S) };
	int n = ppoll(&pfd, fd >= 0 ? 1 : 0, &ts, NULL);

	if (n < 0 && errno != EINTR)
		sock_fail("ppoll");
	return n > 0 && (pfd.revents & (POLLIN | POLLERR));
}

/* due_by: how many packets of a run at rate pps are due by elapsed ns (packet i at i/rate). */
static uint64_t due_by(uint64_t elapsed, uint64_t rate)
{
	return (uint64_t)((unsigned __int128)elapsed * rate / NS_PER_S) + 1;
}

/* due_at: elapsed ns at which packet seq is due. */
static uint64_t due_at(uint64_t seq, uint64_t rate)
{
	return (uint64_t)(((unsigned __int128)seq * NS_PER_S + rate - 1) / rate);
}

static uint64_t min_u64(uint64_t a, uint64_t b)
{
	return a < b ? a : b;
}

/* --- send -------------------------------------------------------------------------------- */

static int run_send(struct opts *o)
{
	int fd = open_socket(o);
	unsigned k = (unsigned)o->batch, i;
	uint8_t *hdrs = xcalloc(k, UL_HDR_LEN);
	uint8_t *pad = xcalloc(1, o->size - UL_HDR_LEN + 1);
	struct iovec *iov = xcalloc(2 * (size_t)k, sizeof(*iov));
	struct mmsghdr *msgs = xcalloc(k, sizeof(*msgs));
	uint64_t sent = 0, errs = 0, refused = 0, start, end, deadline = 0, next_progress, now;
	double user, sys, elapsed, pps;

	for (i = 0; i < k; i++) {
		iov[2 * i].iov_base = hdrs + (size_t)i * UL_HDR_LEN;
		iov[2 * i].iov_len = UL_HDR_LEN;
		iov[2 * i + 1].iov_base = pad;
		iov[2 * i + 1].iov_len = o->size - UL_HDR_LEN;
		msgs[i].msg_hdr.msg_iov = &iov[2 * i];
		msgs[i].msg_hdr.msg_iovlen = 2;
	}
	if (!o->quiet)
		fprintf(stderr, "send: %" PRIu64 " B to %s, %s, batch %u, run id %u\n", o->size,
			o->addr_str, o->rate ? "fixed rate" : "open loop", k, o->run_id);
	start = end = now_ns();
	next_progress = start + UL_PROGRESS_NS;
	if (o->duration_ns)
		deadline = start + o->duration_ns;
	while (!stop_signal) {
		uint64_t n = k;
		int r;

		now = now_ns();
		if ((o->count && sent >= o->count) || (deadline && now >= deadline))
			break;
		if (o->count)
			n = min_u64(n, o->count - sent);
		if (o->rate) {
			uint64_t due = due_by(now - start, o->rate) - sent;

			if (due == 0 || due > (uint64_t)1 << 62) {
				uint64_t at = start + due_at(sent, o->rate);

				if (deadline)
					at = min_u64(at, deadline);
				if (at > now)
					wait_ns(-1, min_u64(at - now, UL_TICK_NS));
				continue;
			}
			n = min_u64(n, due);
		}
		now = now_ns();
		for (i = 0; i < n; i++)
			hdr_put(hdrs + (size_t)i * UL_HDR_LEN, o->run_id, sent + i, now);
		r = sendmmsg(fd, msgs, (unsigned)n, 0);
		if (r < 0) {
			if (errno == EINTR)
				continue;
			if (errno == ECONNREFUSED) {
				refused++;
				continue;
			}
			if (errno == ENOBUFS || errno == EAGAIN) {
				errs++;
				continue;
			}
			sock_fail("sendmmsg");
		}
		sent += (uint64_t)r;
		end = now_ns();
		if (!o->quiet && end >= next_progress) {
			fprintf(stderr, "send: %" PRIu64 " sent, %.0f pps\n", sent,
				(double)sent * 1e9 / (double)(end - start));
			next_progress += UL_PROGRESS_NS;
		}
	}
	cpu_seconds(&user, &sys);
	elapsed = (double)(end - start) / 1e9;
	pps = elapsed > 0 ? (double)sent / elapsed : 0;
	printf("send: %" PRIu64 " packets of %" PRIu64 " B to %s in %.3f s: %.0f pps, %.2f Mbit/s "
	       "(%s); cpu %.3f s user, %.3f s sys\n",
	       sent, o->size, o->addr_str, elapsed, pps, pps * (double)o->size * 8 / 1e6,
	       o->rate ? "fixed rate" : "open loop", user, sys);
	printf("result mode=send run_id=%u size=%" PRIu64 " offered_pps=%" PRIu64 " sent=%" PRIu64
	       " bytes=%" PRIu64 " send_errors=%" PRIu64 " refused=%" PRIu64
	       " elapsed_s=%.6f pps=%.0f mbps=%.3f cpu_user_s=%.3f cpu_sys_s=%.3f sndbuf=%d\n",
	       o->run_id, o->size, o->rate, sent, sent * o->size, errs, refused, elapsed, pps,
	       pps * (double)o->size * 8 / 1e6, user, sys, get_buf(fd, SO_SNDBUF));
	free(msgs);
	free(iov);
	free(pad);
	free(hdrs);
	close(fd);
	return 0;
}

/* --- sink -------------------------------------------------------------------------------- */

struct run {
	uint32_t id;
	bool any;
	uint64_t hi, unique, received, dup, reordered, late;
	uint64_t *seen; /* UL_SEEN_BITS bits: bit s % UL_SEEN_BITS set when s was seen */
};

struct sink {
	struct run runs[UL_MAX_RUNS];
	unsigned nruns;
	bool runs_full_said;
	uint64_t received, bytes, foreign, foreign_bytes, echoed, echo_errors;
	uint64_t first_ns, last_ns;
	/* o->batch of each: receive buffers (UL_RECV_BUF bytes), vectors, sources, echoes */
	uint8_t *bufs;
	struct iovec *iov, *eiov;
	struct sockaddr_storage *from;
	struct mmsghdr *msgs, *emsgs;
};

static bool seen_test_set(uint64_t *bits, uint64_t s)
{
	uint64_t i = s % UL_SEEN_BITS, mask = 1ULL << (i % 64);
	bool was = bits[i / 64] & mask;

	bits[i / 64] |= mask;
	return was;
}

static void seen_clear(uint64_t *bits, uint64_t s)
{
	uint64_t i = s % UL_SEEN_BITS;

	bits[i / 64] &= ~(1ULL << (i % 64));
}

static struct run *sink_run(struct sink *sk, uint32_t id)
{
	struct run *r;
	unsigned i;

	for (i = 0; i < sk->nruns; i++)
		if (sk->runs[i].id == id)
			return &sk->runs[i];
	if (sk->nruns == UL_MAX_RUNS) {
		if (!sk->runs_full_said)
			fprintf(stderr, "sink: more than %d run ids; datagrams of further ones are "
					"counted as foreign\n", UL_MAX_RUNS);
		sk->runs_full_said = true;
		return NULL;
	}
	r = &sk->runs[sk->nruns++];
	r->id = id;
	r->seen = xcalloc(UL_SEEN_BITS / 64, sizeof(uint64_t));
	return r;
}

/* sink_count: account one valid datagram of run r with sequence s. */
static void sink_count(struct run *r, uint64_t s)
{
	r->received++;
	if (!r->any || s > r->hi) {
		uint64_t x;

		if (r->any && s - r->hi < UL_SEEN_BITS) {
			for (x = r->hi + 1; x < s; x++)
				seen_clear(r->seen, x);
		} else if (r->any) {
			memset(r->seen, 0, UL_SEEN_BITS / 8);
		}
		seen_clear(r->seen, s);
		r->any = true;
		r->hi = s;
		seen_test_set(r->seen, s);
		r->unique++;
	} else if (r->hi - s >= UL_SEEN_BITS) {
		r->late++; /* too old to tell a duplicate from a straggler: assume a straggler */
		r->reordered++;
		r->unique++;
	} else if (seen_test_set(r->seen, s)) {
		r->dup++;
	} else {
		r->reordered++;
		r->unique++;
	}
}

/* run_lost: sequences below the highest never seen (stragglers older than the duplicate
 * window count as new, so distinct can overshoot: never below 0). */
static uint64_t run_lost(const struct run *r)
{
	return r->hi + 1 > r->unique ? r->hi + 1 - r->unique : 0;
}

static void sink_totals(const struct sink *sk, uint64_t *lost, uint64_t *reord, uint64_t *dup,
			uint64_t *late)
{
	unsigned i;

	*lost = *reord = *dup = *late = 0;
	for (i = 0; i < sk->nruns; i++) {
		const struct run *r = &sk->runs[i];

		*lost += run_lost(r);
		*reord += r->reordered;
		*dup += r->dup;
		*late += r->late;
	}
}

/* echo_back: send msgs[0..n) back to their sources, skipping a datagram the kernel refuses. */
static void echo_back(int fd, struct mmsghdr *msgs, unsigned n, struct sink *sk)
{
	unsigned off = 0;

	while (off < n) {
		int r = sendmmsg(fd, msgs + off, n - off, 0);

		if (r < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EBADF || errno == EFAULT || errno == ENOTSOCK)
				sock_fail("sendmmsg (echo)");
			sk->echo_errors++;
			off++;
			continue;
		}
		sk->echoed += (uint64_t)r;
		off += (unsigned)r;
	}
}

/* sink_drain: read what is queued (64 batches at most, so the caller looks at the clock
 * even under a flood), count it, echo it with --echo; true when anything arrived. */
static bool sink_drain(int fd, const struct opts *o, struct sink *sk)
{
	unsigned k = (unsigned)o->batch, i, j, nvalid;
	bool any = false;
	int rounds;

	for (rounds = 0; rounds < 64; rounds++) {
		uint64_t now;
		int n;

		for (i = 0; i < k; i++) {
			memset(&sk->msgs[i].msg_hdr, 0, sizeof(sk->msgs[i].msg_hdr));
			sk->msgs[i].msg_hdr.msg_name = &sk->from[i];
			sk->msgs[i].msg_hdr.msg_namelen = sizeof(sk->from[i]);
			sk->msgs[i].msg_hdr.msg_iov = &sk->iov[i];
			sk->msgs[i].msg_hdr.msg_iovlen = 1;
		}
		n = recvmmsg(fd, sk->msgs, k, MSG_DONTWAIT, NULL);
		if (n < 0) {
			if (errno == EAGAIN || errno == EWOULDBLOCK)
				break;
			if (errno == EINTR || errno == ECONNREFUSED)
				continue;
			sock_fail("recvmmsg");
		}
		now = now_ns();
		any = true;
		for (i = 0, nvalid = 0; i < (unsigned)n; i++) {
			const struct msghdr *mh = &sk->msgs[i].msg_hdr;
			size_t len = sk->msgs[i].msg_len;
			struct hdr h;
			struct run *r;

			if ((mh->msg_flags & MSG_TRUNC) || !hdr_get(sk->iov[i].iov_base, len, &h) ||
			    !(r = sink_run(sk, h.run))) {
				sk->foreign++;
				sk->foreign_bytes += len;
				continue;
			}
			if (!sk->received)
				sk->first_ns = now;
			sk->last_ns = now;
			sk->received++;
			sk->bytes += len;
			sink_count(r, h.seq);
			if (!o->echo)
				continue;
			j = nvalid++;
			sk->eiov[j].iov_base = sk->iov[i].iov_base;
			sk->eiov[j].iov_len = len;
			memset(&sk->emsgs[j], 0, sizeof(sk->emsgs[j]));
			sk->emsgs[j].msg_hdr.msg_name = &sk->from[i];
			sk->emsgs[j].msg_hdr.msg_namelen = mh->msg_namelen;
			sk->emsgs[j].msg_hdr.msg_iov = &sk->eiov[j];
			sk->emsgs[j].msg_hdr.msg_iovlen = 1;
		}
		if (nvalid)
			echo_back(fd, sk->emsgs, nvalid, sk);
		if ((unsigned)n < k)
			break;
	}
	return any;
}

static int run_sink(struct opts *o)
{
	int fd = open_socket(o);
	unsigned k = (unsigned)o->batch, i;
	struct sink *sk = xcalloc(1, sizeof(*sk));
	uint64_t start, last_activity, now, next_progress, lost, reord, dup, late;
	double user, sys, elapsed, pps, mbps;

	sk->bufs = xcalloc(k, UL_RECV_BUF);
	sk->iov = xcalloc(k, sizeof(*sk->iov));
	sk->eiov = xcalloc(k, sizeof(*sk->eiov));
	sk->from = xcalloc(k, sizeof(*sk->from));
	sk->msgs = xcalloc(k, sizeof(*sk->msgs));
	sk->emsgs = xcalloc(k, sizeof(*sk->emsgs));
	for (i = 0; i < k; i++) {
		sk->iov[i].iov_base = sk->bufs + (size_t)i * UL_RECV_BUF;
		sk->iov[i].iov_len = UL_RECV_BUF;
	}
	/* Always said, even with -q: scripts wait for this line to learn the port. */
	fprintf(stderr, "sink: listening on %s%s\n", o->addr_str, o->echo ? " (echo)" : "");
	start = last_activity = now_ns();
	next_progress = start + UL_PROGRESS_NS;
	while (!stop_signal) {
		uint64_t wait = UL_TICK_NS;

		now = now_ns();
		if (o->duration_ns) {
			if (now - start >= o->duration_ns)
				break;
			wait = min_u64(wait, start + o->duration_ns - now);
		}
		if (o->idle_ns) {
			if (now - last_activity >= o->idle_ns)
				break;
			wait = min_u64(wait, last_activity + o->idle_ns - now);
		}
		if (!o->quiet && now >= next_progress) {
			sink_totals(sk, &lost, &reord, &dup, &late);
			fprintf(stderr, "sink: %" PRIu64 " received, %" PRIu64 " lost, %" PRIu64
					" reordered, %" PRIu64 " dup, %" PRIu64 " foreign\n",
				sk->received, lost, reord, dup, sk->foreign);
			next_progress = now + UL_PROGRESS_NS;
		}
		if (wait_ns(fd, wait) && sink_drain(fd, o, sk))
			last_activity = now_ns();
	}
	if (stop_signal)
		sink_drain(fd, o, sk); /* what was queued before the signal still counts */
	cpu_seconds(&user, &sys);
	sink_totals(sk, &lost, &reord, &dup, &late);
	elapsed = (double)(sk->last_ns - sk->first_ns) / 1e9;
	pps = elapsed > 0 ? (double)(sk->received - 1) / elapsed : 0;
	mbps = elapsed > 0 ? (double)sk->bytes * 8 / elapsed / 1e6 : 0;
	printf("sink: %" PRIu64 " packets (%" PRIu64 " B) from %u run(s) in %.3f s: %.0f pps, "
	       "%.2f Mbit/s; %" PRIu64 " lost, %" PRIu64 " reordered, %" PRIu64 " dup, %" PRIu64
	       " foreign%s; cpu %.3f s user, %.3f s sys\n",
	       sk->received, sk->bytes, sk->nruns, elapsed, pps, mbps, lost, reord, dup,
	       sk->foreign, o->echo ? ", echoed" : "", user, sys);
	for (i = 0; sk->nruns > 1 && i < sk->nruns; i++) {
		const struct run *r = &sk->runs[i];

		printf("sink: run %u: %" PRIu64 " received, highest sequence %" PRIu64 ", %" PRIu64
		       " lost, %" PRIu64 " reordered, %" PRIu64 " dup\n",
		       r->id, r->received, r->hi, run_lost(r), r->reordered, r->dup);
	}
	printf("result mode=sink received=%" PRIu64 " bytes=%" PRIu64 " lost=%" PRIu64
	       " reordered=%" PRIu64 " dup=%" PRIu64 " late=%" PRIu64 " foreign=%" PRIu64
	       " foreign_bytes=%" PRIu64 " runs=%u echoed=%" PRIu64 " echo_errors=%" PRIu64
	       " elapsed_s=%.6f pps=%.0f mbps=%.3f cpu_user_s=%.3f cpu_sys_s=%.3f rcvbuf=%d\n",
	       sk->received, sk->bytes, lost, reord, dup, late, sk->foreign, sk->foreign_bytes,
	       sk->nruns, sk->echoed, sk->echo_errors, elapsed, pps, mbps, user, sys,
	       get_buf(fd, SO_RCVBUF));
	for (i = 0; i < sk->nruns; i++)
		free(sk->runs[i].seen);
	free(sk->emsgs);
	free(sk->msgs);
	free(sk->from);
	free(sk->eiov);
	free(sk->iov);
	free(sk->bufs);
	free(sk);
	close(fd);
	return 0;
}

/* --- ping -------------------------------------------------------------------------------- */

enum slot_state { SLOT_FREE, SLOT_PENDING, SLOT_ANSWERED, SLOT_LOST };

struct slot {
	uint64_t seq, sent_ns;
	uint8_t state;
};

struct ping {
	struct slot *ring;
	uint64_t mask;
	uint64_t next_seq, oldest, inflight;
	uint64_t received, lost, late, dup, foreign, refused, send_errors;
	uint64_t first_ns, last_ns;
	struct hist rtt;
	FILE *trace; /* --trace */
};

/* ping_expire: settle the oldest packets: answered ones leave, those pending past the timeout
 * (or whose slot is needed for sequence upto) are lost. */
static void ping_expire(struct ping *pg, uint64_t now, uint64_t timeout_ns, uint64_t upto)
{
	while (pg->oldest < pg->next_seq) {
		struct slot *sl = &pg->ring[pg->oldest & pg->mask];
		bool overrun = upto - pg->oldest > pg->mask;

		if (sl->state == SLOT_PENDING) {
			if (!overrun && now - sl->sent_ns < timeout_ns)
				break;
			sl->state = SLOT_LOST;
			if (pg->trace)
				fprintf(pg->trace, "%" PRIu64 " lost\n", sl->sent_ns);
			pg->lost++;
			pg->inflight--;
			pg->last_ns = now;
		}
		pg->oldest++;
	}
}

static void ping_recv(int fd, struct ping *pg, uint32_t run_id, struct mmsghdr *msgs,
		      struct iovec *iov, unsigned k)
{
	int rounds;

	for (rounds = 0; rounds < 64; rounds++) {
		uint64_t now;
		unsigned i;
		int n;

		for (i = 0; i < k; i++) {
			memset(&msgs[i].msg_hdr, 0, sizeof(msgs[i].msg_hdr));
			msgs[i].msg_hdr.msg_iov = &iov[i];
			msgs[i].msg_hdr.msg_iovlen = 1;
		}
		n = recvmmsg(fd, msgs, k, MSG_DONTWAIT, NULL);
		now = now_ns();
		if (n < 0) {
			if (errno == EAGAIN || errno == EWOULDBLOCK)
				return;
			if (errno == EINTR)
				continue;
			if (errno == ECONNREFUSED) {
				pg->refused++;
				continue;
			}
			sock_fail("recvmmsg");
		}
		for (i = 0; i < (unsigned)n; i++) {
			struct hdr h;
			struct slot *sl;

			if ((msgs[i].msg_hdr.msg_flags & MSG_TRUNC) ||
			    !hdr_get(iov[i].iov_base, msgs[i].msg_len, &h) || h.run != run_id ||
			    h.seq >= pg->next_seq) {
				pg->foreign++;
				continue;
			}
			sl = &pg->ring[h.seq & pg->mask];
			if (sl->seq != h.seq || sl->state == SLOT_FREE) {
				pg->late++; /* its slot was reused long ago */
				continue;
			}
			switch (sl->state) {
			case SLOT_PENDING:
				hist_add(&pg->rtt, now - sl->sent_ns);
				if (pg->trace)
					fprintf(pg->trace, "%" PRIu64 " %" PRIu64 "\n", sl->sent_ns,
						now - sl->sent_ns);
				sl->state = SLOT_ANSWERED;
				pg->received++;
				pg->inflight--;
				pg->last_ns = now;
				break;
			case SLOT_ANSWERED:
				pg->dup++;
				break;
			default:
				pg->late++;
				break;
			}
		}
		if ((unsigned)n < k)
			return;
	}
}

static int run_ping(struct opts *o)
{
	int fd = open_socket(o);
	unsigned k = (unsigned)o->batch, i;
	uint8_t *hdrs = xcalloc(k, UL_HDR_LEN);
	uint8_t *pad = xcalloc(1, o->size - UL_HDR_LEN + 1);
	uint8_t *rbufs = xcalloc(k, UL_RECV_BUF);
	struct iovec *iov = xcalloc(2 * (size_t)k, sizeof(*iov));
	struct iovec *riov = xcalloc(k, sizeof(*riov));
	struct mmsghdr *msgs = xcalloc(k, sizeof(*msgs));
	struct mmsghdr *rmsgs = xcalloc(k, sizeof(*rmsgs));
	struct ping *pg = xcalloc(1, sizeof(*pg));
	uint64_t ring = UL_RING_MIN, want, start, now, deadline = 0, next_progress;
	bool sending = true;
	double user, sys, elapsed, pps;

	/* Room for everything that can be in flight: the window, or a timeout's worth at the
	 * rate (with a margin); beyond UL_RING_MAX a packet still pending is declared lost. */
	want = o->rate ? (uint64_t)((double)o->rate * (double)o->timeout_ns / 1e9 * 1.5) + k
		       : 2 * o->window + k;
	while (ring < want && ring < UL_RING_MAX)
		ring <<= 1;
	pg->ring = xcalloc(ring, sizeof(*pg->ring));
	pg->mask = ring - 1;
	if (o->trace_path && !(pg->trace = fopen(o->trace_path, "w"))) {
		fprintf(stderr, "%s: --trace %s: %s\n", prog, o->trace_path, strerror(errno));
		exit(EXIT_SOCKET);
	}
	for (i = 0; i < k; i++) {
		iov[2 * i].iov_base = hdrs + (size_t)i * UL_HDR_LEN;
		iov[2 * i].iov_len = UL_HDR_LEN;
		iov[2 * i + 1].iov_base = pad;
		iov[2 * i + 1].iov_len = o->size - UL_HDR_LEN;
		msgs[i].msg_hdr.msg_iov = &iov[2 * i];
		msgs[i].msg_hdr.msg_iovlen = 2;
		riov[i].iov_base = rbufs + (size_t)i * UL_RECV_BUF;
		riov[i].iov_len = UL_RECV_BUF;
	}
	if (!o->quiet) {
		if (o->rate)
			fprintf(stderr, "ping: %" PRIu64 " B to %s at %" PRIu64 " pps, run id %u\n",
				o->size, o->addr_str, o->rate, o->run_id);
		else
			fprintf(stderr, "ping: %" PRIu64 " B to %s, window %" PRIu64 ", run id %u\n",
				o->size, o->addr_str, o->window, o->run_id);
	}
	start = now_ns();
	pg->first_ns = pg->last_ns = start;
	next_progress = start + UL_PROGRESS_NS;
	if (o->duration_ns)
		deadline = start + o->duration_ns;
	for (;;) {
		uint64_t wait = UL_TICK_NS, n = 0;

		now = now_ns();
		if (sending && ((o->count && pg->next_seq >= o->count) || (deadline && now >= deadline) ||
				stop_signal))
			sending = false;
		ping_expire(pg, now, o->timeout_ns, pg->next_seq);
		if (!sending && stop_signal) {
			/* interrupted: no echo, whatever the timeout */
			for (uint64_t q = pg->oldest; pg->trace && q < pg->next_seq; q++)
				if (pg->ring[q & pg->mask].state == SLOT_PENDING)
					fprintf(pg->trace, "%" PRIu64 " lost\n",
						pg->ring[q & pg->mask].sent_ns);
			pg->lost += pg->inflight;
			pg->inflight = 0;
			break;
		}
		if (!sending && pg->oldest == pg->next_seq)
			break;
		if (sending) {
			n = k;
			if (o->count)
				n = min_u64(n, o->count - pg->next_seq);
			if (o->rate) {
				uint64_t due = due_by(now - start, o->rate) - pg->next_seq;

				n = due > (uint64_t)1 << 62 ? 0 : min_u64(n, due);
			} else {
				n = min_u64(n, o->window - pg->inflight);
			}
		}
		if (n) {
			int r;

			/* Slots about to be reused must be settled first. */
			ping_expire(pg, now, o->timeout_ns, pg->next_seq + n - 1);
			now = now_ns();
			for (i = 0; i < n; i++)
				hdr_put(hdrs + (size_t)i * UL_HDR_LEN, o->run_id, pg->next_seq + i, now);
			r = sendmmsg(fd, msgs, (unsigned)n, 0);
			if (r < 0) {
				if (errno == ECONNREFUSED)
					pg->refused++;
				else if (errno == ENOBUFS || errno == EAGAIN)
					pg->send_errors++;
				else if (errno != EINTR)
					sock_fail("sendmmsg");
				r = 0;
			}
			for (i = 0; i < (unsigned)r; i++) {
				struct slot *sl = &pg->ring[(pg->next_seq + i) & pg->mask];

				sl->seq = pg->next_seq + i;
				sl->sent_ns = now;
				sl->state = SLOT_PENDING;
			}
			pg->next_seq += (uint64_t)r;
			pg->inflight += (uint64_t)r;
			if ((uint64_t)r == n && n == k)
				wait = 0; /* a full batch: there may be more to send at once */
		}
		now = now_ns();
		if (sending && o->rate) {
			uint64_t at = start + due_at(pg->next_seq, o->rate);

			wait = min_u64(wait, at > now ? at - now : 0);
		}
		if (sending && deadline)
			wait = min_u64(wait, deadline > now ? deadline - now : 0);
		if (pg->oldest < pg->next_seq) {
			uint64_t exp = pg->ring[pg->oldest & pg->mask].sent_ns + o->timeout_ns;

			wait = min_u64(wait, exp > now ? exp - now : 0);
		}
		if (wait_ns(fd, wait))
			ping_recv(fd, pg, o->run_id, rmsgs, riov, k);
		if (!o->quiet && now >= next_progress) {
			fprintf(stderr, "ping: %" PRIu64 " sent, %" PRIu64 " echoes, %" PRIu64
					" lost, p50 %.1f us\n",
				pg->next_seq, pg->received, pg->lost,
				(double)hist_quantile(&pg->rtt, 0.5) / 1e3);
			next_progress += UL_PROGRESS_NS;
		}
	}
	cpu_seconds(&user, &sys);
	elapsed = (double)(pg->last_ns - pg->first_ns) / 1e9;
	pps = elapsed > 0 ? (double)pg->received / elapsed : 0;
	printf("ping: %" PRIu64 " sent, %" PRIu64 " echoed, %" PRIu64 " lost in %.3f s (%.0f pps, "
	       "%.2f Mbit/s each way); rtt us min %.1f p50 %.1f p99 %.1f p99.9 %.1f max %.1f; "
	       "cpu %.3f s user, %.3f s sys\n",
	       pg->next_seq, pg->received, pg->lost, elapsed, pps, pps * (double)o->size * 8 / 1e6,
	       (double)pg->rtt.min / 1e3, (double)hist_quantile(&pg->rtt, 0.5) / 1e3,
	       (double)hist_quantile(&pg->rtt, 0.99) / 1e3,
	       (double)hist_quantile(&pg->rtt, 0.999) / 1e3, (double)pg->rtt.max / 1e3, user,
	       sys);
	printf("result mode=ping run_id=%u size=%" PRIu64 " window=%" PRIu64 " offered_pps=%" PRIu64
	       " sent=%" PRIu64 " received=%" PRIu64 " lost=%" PRIu64 " late=%" PRIu64
	       " dup=%" PRIu64 " foreign=%" PRIu64 " refused=%" PRIu64 " send_errors=%" PRIu64
	       " elapsed_s=%.6f pps=%.0f mbps=%.3f min_us=%.1f p50_us=%.1f p99_us=%.1f"
	       " p999_us=%.1f max_us=%.1f mean_us=%.1f cpu_user_s=%.3f cpu_sys_s=%.3f\n",
	       o->run_id, o->size, o->rate ? 0 : o->window, o->rate, pg->next_seq, pg->received,
	       pg->lost, pg->late, pg->dup, pg->foreign, pg->refused, pg->send_errors, elapsed, pps,
	       pps * (double)o->size * 8 / 1e6, (double)pg->rtt.min / 1e3,
	       (double)hist_quantile(&pg->rtt, 0.5) / 1e3,
	       (double)hist_quantile(&pg->rtt, 0.99) / 1e3,
	       (double)hist_quantile(&pg->rtt, 0.999) / 1e3, (double)pg->rtt.max / 1e3,
	       pg->rtt.n ? (double)(pg->rtt.sum / pg->rtt.n) / 1e3 : 0.0, user, sys);
	int rc = 0;

	if (o->hist_path && hist_write(&pg->rtt, o->hist_path) < 0) {
		fprintf(stderr, "%s: --hist %s: %s\n", prog, o->hist_path, strerror(errno));
		rc = EXIT_SOCKET;
	}
	if (pg->trace && fclose(pg->trace) != 0) {
		fprintf(stderr, "%s: --trace %s: %s\n", prog, o->trace_path, strerror(errno));
		rc = EXIT_SOCKET;
	}
	free(pg->ring);
	free(pg);
	free(rmsgs);
	free(msgs);
	free(riov);
	free(iov);
	free(rbufs);
	free(pad);
	free(hdrs);
	close(fd);
	return rc;
}

int main(int argc, char **argv)
{
	struct opts o;
	struct sigaction sa;

	memset(&o, 0, sizeof(o));
	parse_args(argc, argv, &o);

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_signal; /* no SA_RESTART: a blocked call returns EINTR */
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);
	/* Pacing at 10,000+ packets/s needs sleeps far shorter than the default 50 µs slack. */
	prctl(PR_SET_TIMERSLACK, 1UL, 0UL, 0UL, 0UL);
	setvbuf(stdout, NULL, _IOLBF, 0);

	switch (o.mode) {
	case MODE_SEND:
		return run_send(&o);
	case MODE_SINK:
		return run_sink(&o);
	case MODE_PING:
		return run_ping(&o);
	}
	return EXIT_USAGE;
}
