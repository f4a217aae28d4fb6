#!/bin/bash
# SPDX-License-Identifier: MIT
# bench/prov.sh: make bench step 5, the provisioner (issue 5), each figure against its baseline
# in the same run:
#   a. API create latency at 0, 100,000 and 1,000,000 stored peers, through the HTTP API of a
#      running wgws-provisioner: one curl process sends N POST /v1/peers '{}' (the daemon makes
#      the key pair, stores the peer, answers with a wg-quick config) alternating with N
#      GET /healthz on the same socket, each timed by curl's own %{time_total}, so process
#      start-up is not in it and the ratio is what the create costs above the HTTP round trip.
#      Also store_create alone (bench/store_bench -f, no daemon and no HTTP) on a copy of the
#      same store, the same number of creates, right after.
#      The daemon runs with --jit: a create only stores the peer (it goes into the device at its
#      first handshake). This is the mode made for many stored peers: without --jit every
#      stored peer is in the device, and the daemon's start-up puts back all of them (a million
#      wireguard-go peers would not fit this machine). One more block, with 0 stored, runs the
#      daemon without --jit, where a create also installs the peer into wireguard-go.
#      With peers stored, the daemon walks the whole store once after it starts (gc.c,
#      reconcile, 64 peers every 2 ms); one block of creates runs during that walk, the
#      measured blocks after it; the walk's duration is reported.
#   b. JIT initiation -> peer live: jit_bench -C e (bench/jit_bench.c, case (e)), each
#      decision alternating with a plain wgdev_install of another stored peer (its baseline).
# Stored peers come from jit_bench's cache, $WGWS_BENCH_CACHE (default
# $WGWS_BUILD/bench-cache/bench-peers-N.db, made once by jit_bench -l: ~75 s for 1M); the
# daemon and store_bench work on copies, the cache itself is not written by (a). (b) uses the
# cached file as jit_bench always does (it adds its bench keys once and clears its marks).
#
# Full: 3 blocks of 2,000 pairs per size (the figures are the medians over the blocks), 3
# store_bench runs, 3 jit_bench runs of 2,000 pairs with 1,000,000 stored: ~75 s once the cache
# exists (half of it is the daemon's start-up walk of 1M peers), ~80 s more to make it.
#   WGWS_BUILD=build WGWS_BENCH_OUT=/tmp/out QUICK=0|1 bench/prov.sh
# QUICK=1: 0 and 100,000 stored, one block of 300 pairs, (b) once with 100,000 stored and 300
# pairs: under 10 s (+ ~5 s to make the 100k cache).
# Root only (a namespace, wireguard-go). Writes step5.md, goals-5.md, prov-create.dat (the
# plot's data), prov-create-blocks.dat (each block), prov-jit.txt (jit_bench's tables) and
# prov-create.png into $WGWS_BENCH_OUT. Every process is stopped by its pid and the namespace
# removed on exit, also on failure or Ctrl-C (tests/e2e/lib.sh).
set -eu

if [ "$(id -u)" != 0 ] || [ "${WGWS_BENCH_USERNS:-0}" = 1 ]; then
	echo "skipped: needs root"
	exit 77
fi
. "$(dirname "$0")/../tests/e2e/lib.sh"
need_cmd wireguard-go wg ip curl awk
need_bins wgws-provisioner jit_bench store_bench

OUT=${WGWS_BENCH_OUT:-$WGWS_TOP/bench/results}
QUICK=${QUICK:-0}
[ "$QUICK" = 1 ] || QUICK=0
T0=${WGWS_BENCH_T0:-$(date +%s)}
START=$(date +%s)
CACHE=${WGWS_BENCH_CACHE:-$WGWS_BUILD/bench-cache}
PROV=$WGWS_BUILD/wgws-provisioner
JB=$WGWS_BUILD/jit_bench
SB=$WGWS_BUILD/store_bench
if [ $QUICK = 1 ]; then
	SIZES="0 100000"
	SAMPLES=300 # creates (and as many GET /healthz) per block
	REPS=1      # blocks per size; the figures are the medians over the blocks
	JIT_N=100000
	JIT_E=300   # (e) pairs per jit_bench run
	JIT_REPS=1
else
	SIZES="0 100000 1000000"
	SAMPLES=2000
	REPS=3
	JIT_N=1000000
	JIT_E=2000
	JIT_REPS=3
fi
# The pool jit_bench's and store_bench's stores were made with (main.c: .1 is the gateway's).
POOL=(--pool4 10.0.0.0/8 --pool6 fd00:6a:1700::/64)
SOCK=$T/api.sock
WALK_MAX=300 # seconds the start-up walk may take (1M: ~35 s here)
LC_NUMERIC=C
mkdir -p "$OUT" "$CACHE"

progress() { printf 'bench [%3ss] %s\n' "$(($(date +%s) - T0))" "step 5/6: $*" >&2; }
PROV_LOG="" PROV_PID=""
dump_logs() {
	[ -z "$PROV_LOG" ] || logtail "$PROV_LOG" 10
	logtail "$T/wg.log" 5
	[ ! -s "$T/jit_bench.err" ] || logtail "$T/jit_bench.err" 10
}
declare -A R # R[N.MODE.FIELD]: the figures of one stored size and mode
fmt() { sed ':a; s/\B[0-9]\{3\}\>/,&/; ta' <<<"$1"; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "-" }'; }
us() { awk -v v="$1" 'BEGIN { if (v == "-") print "-"; else printf(v < 100 ? "%.1f" : "%.0f", v) }'; }
# median X...: the median of the arguments (the lower one of the middle two).
median() { printf '%s\n' "$@" | sort -g | awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }'; }
# range X...: "min-max" of the arguments.
range() { printf '%s\n' "$@" | sort -g | awk 'NR == 1 { lo = $1 } { hi = $1 } END { printf "%s-%s", lo, hi }'; }
# pct TAG P FILE: the P-th percentile (0-100) in µs of curl's time_total over the lines
# "TAG CODE SECONDS" (sorted; index n*P/100, as jit_bench does).
pct() {
	awk -v t="$1" '$1 == t { print $3 * 1e6 }' "$3" | sort -g |
		awk -v p="$2" '{ a[NR - 1] = $1 } END { i = int(NR * p / 100); if (i >= NR) i = NR - 1; printf "%.1f", a[i] }'
}
# metric NAME: one sample of the daemon's /metrics (0 when absent).
metric() {
	curl -s -m 5 --unix-socket "$SOCK" http://prov/metrics |
		awk -v n="$1" '$1 == n { v = $2 } END { print (v == "" ? 0 : v) }'
}
healthy() { [ "$(curl -s -m 2 -o /dev/null -w '%{http_code}' --unix-socket "$SOCK" http://prov/healthz)" = 200 ]; }
# walked: the daemon's start-up walk is over (its log line); fails the run if the daemon died.
walked() {
	grep -q 'info: reconcile:' "$PROV_LOG" && return 0
	alive "$PROV_PID" || fail "wgws-provisioner exited during its start-up walk"
	return 1
}

# --- the device: wireguard-go with a fresh key in a namespace of our own ---------------------
netns_add "$NS_G"
spawn_ns "$NS_G" "$T/wg.log" wireguard-go -f "$WG_G"
WGG_PID=$SPAWNED
wait_for 10 test -S "/var/run/wireguard/$WG_G.sock" || fail "wireguard-go did not start"
(umask 077 && wg genkey >"$T/keys/gw.key")
in_g wg set "$WG_G" private-key "$T/keys/gw.key" listen-port 51820
in_g ip link set "$WG_G" up

# --- the stored peers: jit_bench's cache ---------------------------------------------------
# Stores of an older jit_bench (another address pool, which the daemon could not open).
for f in "$CACHE"/jit-bench-*.db; do
	[ -e "$f" ] || continue
	progress "removing $f (an older format)"
	rm -f "$f" "$f-wal" "$f-shm"
done
FIRST_RUN=""
for n in $(printf '%s\n' $SIZES "$JIT_N" | sort -un); do
	[ "$n" -gt 0 ] || continue
	[ -s "$CACHE/bench-peers-$n.db" ] ||
		progress "making the cache $CACHE/bench-peers-$n.db ($(fmt "$n") peers through store_create; 1M takes ~75 s, once)"
	# jit_bench's progress lines (one per 100,000 loaded) become ours.
	set +e
	"$JB" -l -d "$CACHE" -n "$n" 2>&1 >"$T/load.out" | tee "$T/jit_bench.err" |
		while read -r l; do progress "  ${l#jit_bench: }"; done
	rc=${PIPESTATUS[0]}
	set -e
	[ "$rc" = 0 ] || fail "jit_bench -l -n $n: $(tail -n 3 "$T/jit_bench.err")"
	if grep -q loaded "$T/load.out"; then
		FIRST_RUN="$FIRST_RUN${FIRST_RUN:+,} $(fmt "$n") peers in $(sed -n 's/.* loaded in \(.*\) s$/\1/p' "$T/load.out") s"
	fi
done
[ -z "$FIRST_RUN" ] || progress "cache made:$FIRST_RUN"

# copy_store N DEST: DEST becomes a copy of the cached store of N peers (N = 0: no file, the
# daemon or store_bench makes an empty one).
copy_store() {
	rm -f "$2" "$2-wal" "$2-shm"
	[ "$1" -gt 0 ] || return 0
	cp --reflink=auto "$CACHE/bench-peers-$1.db" "$2"
	[ ! -s "$CACHE/bench-peers-$1.db-wal" ] || cp "$CACHE/bench-peers-$1.db-wal" "$2-wal"
}

# --- (b) JIT initiation -> live: jit_bench case (e) ------------------------------------------
JB_CMD="jit_bench -i IF -d CACHE -n $JIT_N -C e -e $JIT_E"
# jrow FILE LABEL: "samples p50 p99 max" of a jit_bench table row.
jrow() {
	awk -v l="$2" 'index($0, "  " l " ") == 1 { s = substr($0, length(l) + 3); split(s, f, " ");
		print f[1], f[2], f[3], f[4]; exit }' "$1"
}
E50=() E99=() I50=() I99=() ER50=() ED50=() ER99=() ED99=()
: >"$OUT/prov-jit.txt"
for ((r = 1; r <= JIT_REPS; r++)); do
	progress "JIT initiation -> live ($r/$JIT_REPS): $JB_CMD, alternating with installs alone"
	f=$T/jit_bench-$r.out
	in_g "$JB" -i "$WG_G" -d "$CACHE" -n "$JIT_N" -C e -e "$JIT_E" >"$f" 2>"$T/jit_bench.err" ||
		fail "jit_bench failed: $(tail -n 3 "$T/jit_bench.err")"
	read -r e_n e50 e99 _ <<<"$(jrow "$f" "(e) initiation -> peer live")"
	read -r i_n i50 i99 _ <<<"$(jrow "$f" "install only (wgdev_install)")"
	read -r _ er50 er99 _ <<<"$(jrow "$f" "  (e), the rest (crypto, store)")"
	read -r _ ed50 ed99 _ <<<"$(jrow "$f" "  (e), its wgdev_install")"
	E_STORED=$(sed -n 's/^store .*: \([0-9]*\) peers .*/\1/p' "$f")
	[ "${e_n:-0}" = "$JIT_E" ] && [ "${i_n:-0}" = "$JIT_E" ] && [ -n "$E_STORED" ] ||
		fail "jit_bench printed no (e) rows: $(head -c 600 "$f")"
	E50+=("$e50") E99+=("$e99") I50+=("$i50") I99+=("$i99") ER50+=("$er50") ED50+=("$ed50")
	ER99+=("$er99") ED99+=("$ed99")
	{ echo "# run $r of $JIT_REPS: $JB_CMD"; cat "$f"; echo; } >>"$OUT/prov-jit.txt"
	progress "  (e) initiation -> live p50 $e50 µs, p99 $e99 µs; install alone p50 $i50 µs, p99 $i99 µs ($(fmt "$E_STORED") stored)"
done
E_P50=$(median "${E50[@]}") E_P99=$(median "${E99[@]}") I_P50=$(median "${I50[@]}")
I_P99=$(median "${I99[@]}") ER_P50=$(median "${ER50[@]}") ED_P50=$(median "${ED50[@]}")
ER_P99=$(median "${ER99[@]}") ED_P99=$(median "${ED99[@]}")
E_P99_RANGE=$(range "${E99[@]}")

# --- (a) API creates --------------------------------------------------------------------------
echo "# mode nominal_stored stored block create_p50 create_p99 create_max healthz_p50 healthz_p99 healthz_max (µs)" >"$OUT/prov-create-blocks.dat"
# start_prov DB ARGS...: the daemon on DB in the namespace, API on $SOCK; waits for /healthz.
PROV_N=0
start_prov() {
	local db=$1
	shift
	PROV_N=$((PROV_N + 1))
	PROV_LOG=$T/prov-$PROV_N.log
	PROV_T0=$(date +%s%N)
	spawn_ns "$NS_G" "$PROV_LOG" "$PROV" serve --interface "$WG_G" --db "$db" \
		--api "unix:$SOCK" "${POOL[@]}" "$@"
	PROV_PID=$SPAWNED
	wait_for 20 healthy || {
		alive "$PROV_PID" || fail "wgws-provisioner exited at start-up"
		fail "wgws-provisioner: /healthz did not answer within 20 s"
	}
}
stop_prov() {
	stop_pid "$PROV_PID" TERM 10
	[ "$STOP_RC" = 0 ] || fail "wgws-provisioner exited with status $STOP_RC"
	PROV_PID=""
}
# curl_cfg N FILE: a curl config of N pairs, POST /v1/peers '{}' and GET /healthz, the order
# swapped every other pair; each writes "c|h HTTP_CODE TIME_TOTAL".
curl_cfg() {
	local i c h
	c=$(printf 'unix-socket = "%s"\nurl = "http://prov/v1/peers"\ndata = "{}"\nheader = "Content-Type: application/json"\noutput = "/dev/null"\nwrite-out = "c %%{http_code} %%{time_total}\\n"' "$SOCK")
	h=$(printf 'unix-socket = "%s"\nurl = "http://prov/healthz"\noutput = "/dev/null"\nwrite-out = "h %%{http_code} %%{time_total}\\n"' "$SOCK")
	for ((i = 0; i < $1; i++)); do
		[ $i = 0 ] || echo next
		if [ $((i % 2)) = 0 ]; then
			printf '%s\nnext\n%s\n' "$c" "$h"
		else
			printf '%s\nnext\n%s\n' "$h" "$c"
		fi
	done >"$2"
}
CFG=$T/pairs.cfg
curl_cfg "$SAMPLES" "$CFG"
CURL_CMD="curl -s -K FILE: $SAMPLES x { --unix-socket API -d '{}' -H 'Content-Type: application/json' http://prov/v1/peers -w '%{time_total}' } alternating with $SAMPLES x { GET http://prov/healthz }"

# block FILE: the pairs once; every create must be a 201, every healthz a 200.
block() {
	curl -s -K "$CFG" >"$1" || true
	local c h
	c=$(awk '$1 == "c" && $2 == 201' "$1" | wc -l)
	h=$(awk '$1 == "h" && $2 == 200' "$1" | wc -l)
	[ "$c" = "$SAMPLES" ] && [ "$h" = "$SAMPLES" ] ||
		fail "$c of $SAMPLES creates answered 201, $h of $SAMPLES healthz 200: $(grep -v -e '^c 201' -e '^h 200' "$1" | sort | uniq -c | head -3 | tr '\n' ' ')"
}

# measure N MODE: one stored size, MODE jit (--jit: creates only store) or eager (creates
# also install into wireguard-go); fills R[N.MODE.*].
measure() {
	local n=$1 mode=$2 db=$T/api.db sdb=$T/store.db args=() k=$1.$2 r f c0 s0 c1 s1
	local c50=() c99=() h50=() h99=() s50=() s99=()
	copy_store "$n" "$db"
	[ "$mode" = jit ] && args=(--jit --jit-socket "$T/jit.sock")
	progress "API create, $(fmt "$n") stored, $mode mode: starting the daemon on a copy of the store"
	start_prov "$db" "${args[@]}"
	R[$k.walk]=- R[$k.d50]=- R[$k.d99]=- R[$k.dh50]=- R[$k.dh99]=- R[$k.s50]=- R[$k.s99]=-
	if [ "$n" -gt 0 ]; then
		# One block while the start-up walk runs; it counts only if the walk outlasted it.
		f=$T/during-$n.txt
		block "$f"
		if walked; then
			progress "  the start-up walk ended before the block did: no 'during the walk' figure"
		else
			R[$k.d50]=$(pct c 50 "$f") R[$k.d99]=$(pct c 99 "$f")
			R[$k.dh50]=$(pct h 50 "$f") R[$k.dh99]=$(pct h 99 "$f")
			progress "  during the start-up walk: create p50 ${R[$k.d50]} µs, p99 ${R[$k.d99]} µs (healthz ${R[$k.dh50]} / ${R[$k.dh99]} µs)"
		fi
		wait_for "$WALK_MAX" walked || fail "the start-up walk of $n peers took over $WALK_MAX s"
		R[$k.walk]=$(awk -v a="$PROV_T0" -v b="$(date +%s%N)" 'BEGIN { printf "%.1f", (b - a) / 1e9 }')
		progress "  start-up walk of $(fmt "$n") stored peers: ${R[$k.walk]} s (daemon start to its reconcile: line)"
	fi
	R[$k.stored]=$(metric wgws_provisioner_peers_stored)
	c0=$(metric wgws_provisioner_create_seconds_count)
	s0=$(metric wgws_provisioner_create_seconds_sum)
	for ((r = 1; r <= REPS; r++)); do
		f=$T/pairs-$mode-$n-$r.txt
		block "$f"
		c50+=("$(pct c 50 "$f")") c99+=("$(pct c 99 "$f")")
		h50+=("$(pct h 50 "$f")") h99+=("$(pct h 99 "$f")")
		echo "$mode $n ${R[$k.stored]} $r ${c50[-1]} ${c99[-1]} $(pct c 100 "$f") ${h50[-1]} ${h99[-1]} $(pct h 100 "$f")" >>"$OUT/prov-create-blocks.dat"
		progress "  block $r/$REPS, $mode, $(fmt "${R[$k.stored]}") stored: create p50 ${c50[-1]} µs, p99 ${c99[-1]} µs; healthz p50 ${h50[-1]} µs, p99 ${h99[-1]} µs"
	done
	c1=$(metric wgws_provisioner_create_seconds_count)
	s1=$(metric wgws_provisioner_create_seconds_sum)
	[ $((c1 - c0)) = $((REPS * SAMPLES)) ] ||
		fail "the daemon counted $((c1 - c0)) creates, not $((REPS * SAMPLES))"
	R[$k.srv]=$(awk -v a="$s0" -v b="$s1" -v n=$((REPS * SAMPLES)) 'BEGIN { printf "%.1f", (b - a) / n * 1e6 }')
	stop_prov
	rm -f "$db" "$db-wal" "$db-shm"
	R[$k.c50]=$(median "${c50[@]}") R[$k.c99]=$(median "${c99[@]}")
	R[$k.h50]=$(median "${h50[@]}") R[$k.h99]=$(median "${h99[@]}")
	R[$k.c50r]=$(range "${c50[@]}") R[$k.c99r]=$(range "${c99[@]}")
	[ "$mode" = jit ] || return 0
	# The baseline without daemon and HTTP: store_create alone, REPS runs on one copy.
	copy_store "$n" "$sdb"
	for ((r = 1; r <= REPS; r++)); do
		"$SB" -f "$sdb" -n "$SAMPLES" >"$T/store.out" 2>&1 ||
			fail "store_bench -f: $(tail -n 3 "$T/store.out")"
		s50+=("$(sed -n 's/.* p50_us=\([^ ]*\).*/\1/p' "$T/store.out")")
		s99+=("$(sed -n 's/.* p99_us=\([^ ]*\).*/\1/p' "$T/store.out")")
		[ $r -gt 1 ] || R[$k.s_stored]=$(sed -n 's/^result stored=\([0-9]*\).*/\1/p' "$T/store.out")
	done
	rm -f "$sdb" "$sdb-wal" "$sdb-shm"
	R[$k.s50]=$(median "${s50[@]}") R[$k.s99]=$(median "${s99[@]}")
	progress "  store_create alone, $(fmt "${R[$k.s_stored]}") stored: p50 ${R[$k.s50]} µs, p99 ${R[$k.s99]} µs (median of $REPS x $SAMPLES)"
}
for n in $SIZES; do
	measure "$n" jit
done
measure 0 eager

# --- results ------------------------------------------------------------------------------
# g N FIELD: R[N.jit.FIELD].
g() { echo "${R[$1.jit.$2]}"; }
{
	echo "# x stored create_p50 create_p99 healthz_p50 healthz_p99 store_create_p50 store_create_p99 server_mean (µs, medians of $REPS blocks; x: where it is drawn, 0 stored at 1000)"
	for n in $SIZES; do
		x=$n
		[ "$n" -gt 0 ] || x=1000
		echo "$x $(g "$n" stored) $(g "$n" c50) $(g "$n" c99) $(g "$n" h50) $(g "$n" h99) $(g "$n" s50) $(g "$n" s99) $(g "$n" srv)"
	done
	echo
	echo
	echo "# without --jit (creates also install into wireguard-go), 0 stored"
	echo "1000 ${R[0.eager.stored]} ${R[0.eager.c50]} ${R[0.eager.c99]} ${R[0.eager.h50]} ${R[0.eager.h99]} - - ${R[0.eager.srv]}"
} >"$OUT/prov-create.dat"

if command -v gnuplot >/dev/null; then
	gnuplot <<EOF || fail "gnuplot failed"
set terminal pngcairo size 900,560 font ",10"
set termoption noenhanced
set output "$OUT/prov-create.png"
set title "wgws-provisioner: API create latency vs peers stored (medians of $REPS x $SAMPLES creates)"
set logscale x
set logscale y
set xrange [700:1500000]
set yrange [20:3000]
set xtics ("0" 1000, "10k" 10000, "100k" 100000, "1M" 1000000)
set xlabel "peers stored (log scale; 0 drawn where 1,000 would be)"
set ylabel "latency (µs)"
set key top right
set grid
plot "$OUT/prov-create.dat" index 0 using 1:3 with linespoints lw 2 pt 7 lc rgb "#c00000" title "API create p50 (--jit: store only)", \
     "" index 0 using 1:4 with linespoints lw 2 pt 5 dt 2 lc rgb "#c00000" title "API create p99", \
     "" index 0 using 1:5 with linespoints lw 1 pt 7 lc rgb "#0060c0" title "GET /healthz p50 (baseline: HTTP round trip)", \
     "" index 0 using 1:6 with linespoints lw 1 pt 5 dt 2 lc rgb "#0060c0" title "GET /healthz p99", \
     "" index 0 using 1:7 with linespoints lw 1 pt 7 lc rgb "#208020" title "store_create alone p50", \
     "" index 0 using 1:8 with linespoints lw 1 pt 5 dt 2 lc rgb "#208020" title "store_create alone p99", \
     "" index 1 using 1:3 with points pt 9 ps 1.5 lc rgb "#806000" title "API create p50 without --jit (+ wireguard-go install)", \
     "" index 1 using 1:4 with points pt 8 ps 1.5 lc rgb "#806000" title "API create p99 without --jit", \
     1000 with lines lw 1 dt 3 lc rgb "#808080" title "1 ms"
EOF
	PLOT="![create latency vs peers stored](prov-create.png)"
else
	progress "gnuplot missing (make deps): no plot"
	PLOT="(no plot: gnuplot missing)"
fi

ELAPSED=$(($(date +%s) - START))
MODE="full: $REPS blocks of $SAMPLES creates per size, $JIT_REPS jit_bench runs of $JIT_E pairs"
[ $QUICK = 1 ] && MODE="QUICK: 0 and 100,000 stored only, $REPS block of $SAMPLES creates per size, (e) with $(fmt "$JIT_N") stored, $JIT_REPS run of $JIT_E pairs"
BIG=${SIZES##* }
MED="the median over $REPS blocks (their range in brackets)"
[ "$REPS" -gt 1 ] || MED="one block"
JMED="the median of $JIT_REPS runs"
[ "$JIT_REPS" -gt 1 ] || JMED="one run"
# cell N P: the API create pP at N stored, with the range over the blocks.
cell() {
	local v
	v=$(us "$(g "$1" "c$2")")
	[ "$REPS" -le 1 ] || v="$v ($(g "$1" "c$2r" | awk -F- '{ printf "%.0f-%.0f", $1, $2 }'))"
	echo "$v"
}
{
	echo "## 5. Provisioner: API create latency vs peers stored; JIT initiation -> live"
	echo
	echo "| figure | measured | baseline | ratio | command |"
	echo "|---|---|---|---|---|"
	for n in $SIZES; do
		st=$(fmt "$(g "$n" stored)")
		echo "| API create p50, $st stored (µs) | $(cell "$n" 50) | $(us "$(g "$n" h50)") (GET /healthz, same curl, alternating) | $(ratio "$(g "$n" c50)" "$(g "$n" h50)") | \`$CURL_CMD\` |"
		echo "| API create p99, $st stored (µs) | $(cell "$n" 99) | $(us "$(g "$n" h99)") (GET /healthz) | $(ratio "$(g "$n" c99)" "$(g "$n" h99)") | same |"
		echo "| store_create alone p50 / p99, $(fmt "$(g "$n" s_stored)") stored (µs) | $(us "$(g "$n" s50)") / $(us "$(g "$n" s99)") | API create $(us "$(g "$n" c50)") / $(us "$(g "$n" c99)") | $(ratio "$(g "$n" s50)" "$(g "$n" c50)") / $(ratio "$(g "$n" s99)" "$(g "$n" c99)") of the create | \`store_bench -f COPY -n $SAMPLES\` |"
	done
	echo "| API create p50, $(fmt "$(g "$BIG" stored)") vs $(fmt "$(g 0 stored)") stored (µs) | $(us "$(g "$BIG" c50)") | $(us "$(g 0 c50)") | $(ratio "$(g "$BIG" c50)" "$(g 0 c50)") | the rows above |"
	echo "| API create p99, $(fmt "$(g "$BIG" stored)") vs $(fmt "$(g 0 stored)") stored (µs) | $(us "$(g "$BIG" c99)") | $(us "$(g 0 c99)") | $(ratio "$(g "$BIG" c99)" "$(g 0 c99)") | the rows above |"
	for n in $SIZES; do
		[ "$n" -gt 0 ] || continue
		echo "| start-up walk of $(fmt "$n") stored peers (s) | $(g "$n" walk) | | | daemon start to its \`reconcile:\` log line |"
		[ "$(g "$n" d50)" != - ] || continue
		echo "| API create p50 / p99 during that walk, $(fmt "$n") stored (µs) | $(us "$(g "$n" d50)") / $(us "$(g "$n" d99)") | after it: $(us "$(g "$n" c50)") / $(us "$(g "$n" c99)") | $(ratio "$(g "$n" d50)" "$(g "$n" c50)") / $(ratio "$(g "$n" d99)" "$(g "$n" c99)") | one block of the same pairs, once /healthz answers (GET /healthz in it: $(us "$(g "$n" dh50)") / $(us "$(g "$n" dh99)") µs) |"
	done
	echo "| API create p50 / p99 without --jit (store + wireguard-go install), 0 stored (µs) | $(us "${R[0.eager.c50]}") / $(us "${R[0.eager.c99]}") | with --jit (store only): $(us "$(g 0 c50)") / $(us "$(g 0 c99)") | $(ratio "${R[0.eager.c50]}" "$(g 0 c50)") / $(ratio "${R[0.eager.c99]}" "$(g 0 c99)") | same curl; GET /healthz in its blocks: $(us "${R[0.eager.h50]}") / $(us "${R[0.eager.h99]}") µs |"
	echo "| JIT initiation -> peer live p50, $(fmt "$E_STORED") stored (µs) | $(us "$E_P50") | $(us "$I_P50") (wgdev_install alone, alternating) | $(ratio "$E_P50" "$I_P50") | \`$JB_CMD\` in the device's namespace |"
	e99=$(us "$E_P99")
	[ "$JIT_REPS" -le 1 ] || e99="$e99 ($(awk -F- '{ printf "%.0f-%.0f", $1, $2 }' <<<"$E_P99_RANGE"))"
	echo "| JIT initiation -> peer live p99, $(fmt "$E_STORED") stored (µs) | $e99 | $(us "$I_P99") (wgdev_install alone) | $(ratio "$E_P99" "$I_P99") | same |"
	echo
	echo "How to read it. The daemon is \`wgws-provisioner serve --interface IF --db COPY --api unix:PATH"
	echo "--pool4 10.0.0.0/8 --pool6 fd00:6a:1700::/64 --jit --jit-socket PATH\` against wireguard-go in a"
	echo "network namespace, on a copy of a store of N random peers made through \`store_create\` (jit_bench"
	echo "-l, cached in \`\$WGWS_BUILD/bench-cache\`). With \`--jit\` a create is what the daemon does for a"
	echo "peer that is not live yet: make the key pair, one SQLite transaction (address allocated), the"
	echo "JSON and wg-quick config; the device gets the peer at its first handshake (the last two rows)."
	echo "This is the mode in which a million stored peers is a real deployment: without \`--jit\` every"
	echo "stored peer is in the device and the daemon puts all of them back at start, which wireguard-go"
	echo "cannot hold here, so that mode is measured with 0 stored only (a create then waits for the"
	echo "UAPI install too). Each API figure is curl's own \`%{time_total}\` per request, from one curl"
	echo "process (no process start-up), $SAMPLES creates alternating with $SAMPLES \`GET /healthz\` on the"
	echo "same unix socket, $MED: the ratio is the create over a bare HTTP round"
	echo "trip of the same server. The daemon answers every request with \`connection: close\` (api.c:"
	echo "lws 4.1.6 spins on pipelined requests in a kept-alive connection), so each request is a new"
	echo "unix-socket connection, for the create and its baseline alike. The daemon's own histogram"
	echo "(\`create_seconds\`, request read -> answer ready) gives a mean of $(us "$(g 0 srv)") µs at 0 and"
	echo "$(us "$(g "$BIG" srv)") µs at $(fmt "$BIG") stored; the rest of a create's time is HTTP and curl."
	echo "\`store_create alone\` is the store's part without daemon, HTTP, key pair or JSON"
	echo "(bench/store_bench.c -f, $SAMPLES creates, $REPS run(s), the median) on another copy of the same"
	echo "store, right after."
	echo "After it starts, the daemon walks its whole store once (gc.c reconcile, 64 peers every 2 ms,"
	echo "also with \`--jit\`, where it only corrects installed marks): the creates are measured after"
	echo "that walk, and one block during it. The JIT rows are jit_bench's case (e), \`jit_decide()\` on"
	echo "a real initiation of a stored, uninstalled peer until the peer is in wireguard-go, alternating"
	echo "with a plain \`wgdev_install\` of another stored peer, $JMED; of its p50,"
	echo "$(us "$ED_P50") µs is the install and $(us "$ER_P50") µs the rest (X25519, store, two commits); the"
	echo "tables are in prov-jit.txt, each block's figures in prov-create-blocks.dat (WGWS_KEEP=1 keeps"
	echo "every request's time in the temporary directory). Mode: $MODE;"
	echo "this step took $ELAPSED s${FIRST_RUN:+, of which making the cache:$FIRST_RUN}."
	echo
	echo "$PLOT"
	echo
} >"$OUT/step5.md"

# Goals: "creates peers in under a millisecond whatever their number" (the provisioner's
# issue; DESIGN.md: "about a millisecond, whatever the number of peers"), read strictly as
# the p99 at every size; and issue 4's initiation -> live p99 < 2 ms.
worst99=0 worst_n=0 list=""
for n in $SIZES; do
	list="$list$(fmt "$(g "$n" stored)"): $(us "$(g "$n" c50)") / $(us "$(g "$n" c99)"); "
	if awk -v a="$(g "$n" c99)" -v b="$worst99" 'BEGIN { exit !(a > b) }'; then
		worst99=$(g "$n" c99) worst_n=$n
	fi
done
list=${list%; }
if awk -v a="$worst99" 'BEGIN { exit !(a < 1000) }'; then
	v="met"
else
	v="missed by $(us "$(awk -v a="$worst99" 'BEGIN { print a - 1000 }')") µs at $(fmt "$worst_n") stored; there the bare HTTP round trip (GET /healthz) has p99 $(us "$(g "$worst_n" h99)") µs and store_create alone $(us "$(g "$worst_n" s99)") µs"
fi
if awk -v a="$E_P99" 'BEGIN { exit !(a < 2000) }'; then
	ve="met"
else
	ve="missed by $(us "$(awk -v a="$E_P99" 'BEGIN { print a - 2000 }')") µs: inside (e) the device install has p99 $(us "$ED_P99") µs and the rest (X25519, store, commits) $(us "$ER_P99") µs; the install alone (wireguard-go over UAPI) has p99 $(us "$I_P99") µs in the same runs"
fi
# QUICK's p99 is one block's 4th-largest sample: a noisy neighbour decides it.
if [ $QUICK = 1 ]; then
	[ "$v" = met ] || v="$v (QUICK: one block of $SAMPLES, its p99 is the 4th-largest sample; judge the full run)"
	[ "$ve" = met ] || ve="$ve (QUICK: one run of $JIT_E pairs; judge the full run)"
fi
{
	echo "| API create < 1 ms whatever the number stored (p99 at every size, --jit) | p50 / p99 µs by peers stored: $list | $v |"
	e99="$(us "$E_P99") µs"
	[ "$JIT_REPS" -le 1 ] || e99="$e99 (median of $JIT_REPS runs: $(awk -F- '{ printf "%.0f-%.0f", $1, $2 }' <<<"$E_P99_RANGE"))"
	echo "| JIT initiation -> live p99 < 2 ms (issue 4) | p99 $e99, p50 $(us "$E_P50") µs, $(fmt "$E_STORED") stored; install alone p99 $(us "$I_P99") µs | $ve |"
} >"$OUT/goals-5.md"

progress "done in $ELAPSED s: $OUT/step5.md"
