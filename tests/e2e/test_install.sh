#!/bin/bash
# SPDX-License-Identifier: MIT
# What a distribution does with the tree: a plain build (no sanitizers) with a caller's
# CPPFLAGS/CFLAGS/LDFLAGS, each binary hardened (PIE, full RELRO and BIND_NOW, NX stack,
# stack protector, FORTIFY's _chk calls); `make install DESTDIR=… PREFIX=/usr` lays out
# exactly the files docs/INSTALL.md lists, and `make uninstall` removes them all; the man
# pages render with `man -l` without a warning and name every option --help names; the
# installed units pass `systemd-analyze verify`, and `systemd-analyze security --offline`
# scores them (the relay under 2.0); `make help` names only targets make knows. Needs no root (the user wgws only for the unit checks).
set -eu
. "$(dirname "$0")/lib.sh"
need_cmd readelf make cc scdoc man
P=$T/b
mk() { (cd "$WGWS_TOP" && env -u MAKEFLAGS -u MFLAGS -u MAKELEVEL make -s B="$P" SANITIZE=0 \
	CPPFLAGS="-DWGWS_CALLER_CPPFLAGS=1" CFLAGS="-O2 -g -DWGWS_CALLER_CFLAGS=1" \
	LDFLAGS="-Wl,--build-id=sha1" "$@"); }

say "a plain build with the caller's flags, hardened"
mk "$P/wgws-relay" "$P/wgws-shim" "$P/wgws-provisioner" >"$T/build.log" 2>&1 ||
	fail "build: $(tail -5 "$T/build.log")"
grep -q -- "-DWGWS_CALLER_CPPFLAGS=1" "$P/.flags" || fail "CPPFLAGS ignored: $(cat "$P/.flags")"
grep -q -- "-DWGWS_CALLER_CFLAGS=1" "$P/.flags" || fail "CFLAGS ignored"
grep -q -- "--build-id=sha1" "$P/.flags" || fail "LDFLAGS ignored"
ok "CPPFLAGS, CFLAGS and LDFLAGS reach the compiler and the linker"
for prog in wgws-relay wgws-shim wgws-provisioner; do
	f=$P/$prog
	hdr=$(readelf -h "$f") dyn=$(readelf -d "$f") seg=$(readelf -lW "$f")
	syms=$(readelf --dyn-syms -W "$f")
	grep -q "Type:.*DYN" <<<"$hdr" || fail "$prog: not PIE"
	grep -q "GNU_RELRO" <<<"$seg" || fail "$prog: no RELRO"
	grep -qE "BIND_NOW|FLAGS.*NOW" <<<"$dyn" || fail "$prog: no BIND_NOW (partial RELRO only)"
	grep "GNU_STACK" <<<"$seg" | grep -q " RW  " || fail "$prog: the stack is executable"
	chk=$(grep -oE '__[a-z_]+_chk' <<<"$syms" | sort -u | tr '\n' ' ')
	[ -n "$chk" ] || fail "$prog: no FORTIFY _chk function in use"
	grep -q "__stack_chk_fail" <<<"$syms" || fail "$prog: no stack protector"
	ok "$prog: PIE, full RELRO (BIND_NOW), NX stack, stack protector, FORTIFY: $chk"
done

say "make help names only targets that exist"
targets=$(cd "$WGWS_TOP" && make -s help | awk '{ print $3 }' | grep -v '^\[' | sort -u)
[ -n "$targets" ] || fail "make help lists nothing"
for t in $targets; do
	(cd "$WGWS_TOP" && env -u MAKEFLAGS -u MFLAGS -u MAKELEVEL make -n B="$P" "$t") \
		>/dev/null 2>&1 || fail "make help names '$t', which make does not know"
done
ok "$(wc -w <<<"$targets") targets, each known to make: $(tr '\n' ' ' <<<"$targets")"

say "make install DESTDIR=… PREFIX=/usr: the files docs/INSTALL.md lists, no more"
D=$T/stage
mk install DESTDIR="$D" PREFIX=/usr >"$T/install.log" 2>&1 ||
	fail "make install: $(tail -5 "$T/install.log")"
want=$(sed -n '/<!-- the layout/,/<!-- end of the layout/p' "$WGWS_TOP/docs/INSTALL.md" |
	grep -vE '^(<!--|```)' | sed 's|^|usr/|' | sort)
got=$(cd "$D" && find . -type f | sed 's|^\./||' | sort)
[ "$want" = "$got" ] || fail "the install differs from docs/INSTALL.md: $(diff <(echo "$want") <(echo "$got") | grep '^[<>]' | tr '\n' ' ')"
[ "$(stat -c %a "$D/usr/sbin/wgws-relay")" = 755 ] || fail "wgws-relay's mode"
grep -q "^ExecStart=/usr/sbin/wgws-relay -c /etc/wgws/relay.conf$" \
	"$D/usr/lib/systemd/system/wgws-relay.service" || fail "the relay unit's ExecStart"
grep -q "^ExecStart=/usr/bin/wgws-shim -c /etc/wgws/shim-%i.conf$" \
	"$D/usr/lib/systemd/system/wgws-shim@.service" || fail "the shim unit's ExecStart"
ok "$(wc -l <<<"$got") files, as listed; the units name /usr/sbin and /etc/wgws"
mk uninstall DESTDIR="$D" PREFIX=/usr >"$T/uninstall.log" 2>&1 ||
	fail "make uninstall: $(tail -5 "$T/uninstall.log")"
left=$(cd "$D" && find . -type f | sed 's|^\./||')
[ -z "$left" ] || fail "make uninstall left: $(oneline "$left")"
ok "make uninstall removes every file"

say "the man pages: rendered without warnings, every option of --help in them"
mk man >"$T/man.log" 2>&1 || fail "make man: $(tail -5 "$T/man.log")"
for page in wgws-relay.8 wgws-provisioner.8 wgws-shim.1 wgws.conf.5; do
	[ -s "$P/man/$page" ] || fail "no man page $page"
	warn=$(MANWIDTH=100 man --warnings -l "$P/man/$page" 2>&1 >/dev/null || true)
	[ -z "$warn" ] || fail "man -l $page warns: $(oneline "$warn")"
done
# help_opts PROG ARGS: the long options its --help names.
help_opts() { "$@" 2>&1 | grep -oE '(^|[ ,(])--[a-z0-9][a-z0-9-]+' | sed 's/^[ ,(]//' | sort -u; }
for pair in "wgws-relay.8:$P/wgws-relay --help" "wgws-shim.1:$P/wgws-shim --help" \
	"wgws-provisioner.8:$P/wgws-provisioner serve --help" \
	"wgws-provisioner.8:$P/wgws-provisioner peer --help"; do
	page=${pair%%:*} cmd=${pair#*:}
	# a hyphen at the end of a rendered line is where groff broke a word like --max-record
	text=$(MANWIDTH=200 man -l "$P/man/$page" 2>/dev/null | sed 's/‐/-/g' |
		sed -e ':a' -e '/-$/{N;s/-\n *-*/-/;ba' -e '}')
	missing=""
	n=0
	for o in $(help_opts $cmd); do
		n=$((n + 1))
		grep -qF -- "$o" <<<"$text" || missing="$missing $o"
	done
	[ -z "$missing" ] || fail "$page lacks what '$cmd' names:$missing"
	ok "$page names all $n options of '${cmd##*/}'"
done

say "the units, installed: systemd-analyze verify and security"
if ! command -v systemd-analyze >/dev/null || ! getent passwd wgws >/dev/null; then
	say "skipped: the unit checks need systemd-analyze and the user wgws (make deps, root)"
	echo "PASS test_install"
	exit 0
fi
I=$T/inst
mk install PREFIX="$I" sysconfdir="$I/etc" >"$T/install2.log" 2>&1 ||
	fail "make install PREFIX=$I: $(tail -5 "$T/install2.log")"
U=$I/lib/systemd/system
out=$(cd "$U" && SYSTEMD_LOG_LEVEL=warning systemd-analyze verify --man=no ./wgws-relay.socket \
	./wgws-relay.service ./wgws-provisioner.service ./wgws-shim@laptop.service 2>&1) ||
	fail "systemd-analyze verify: $(oneline "$out")"
[ -z "$out" ] || fail "systemd-analyze verify says: $(oneline "$out")"
ok "systemd-analyze verify: nothing to say about the four units"
scores=""
for unit in wgws-relay.service wgws-provisioner.service wgws-shim@laptop.service; do
	s=$(cd "$U" && systemd-analyze security --offline=yes "./$unit" 2>/dev/null |
		sed -n 's/.*Overall exposure level for [^:]*: \([0-9.]*\).*/\1/p')
	[ -n "$s" ] || fail "systemd-analyze security $unit: no score"
	scores="$scores $unit $s;"
	[ "$unit" != wgws-relay.service ] || awk -v s="$s" 'BEGIN { exit !(s < 2.0) }' ||
		fail "wgws-relay.service exposure $s, over 2.0"
done
ok "systemd-analyze security --offline=yes:$scores"
echo "PASS test_install"
