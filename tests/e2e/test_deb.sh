#!/bin/bash
# SPDX-License-Identifier: MIT
# make deb: dpkg-buildpackage builds the two Debian packages from debian/ (in a copy of the
# tree), lintian finds no error in them (make deb fails otherwise), the packages hold what
# debian/*.install says plus the user's sysusers entry, their binaries carry Debian's
# hardening, and the units ship disabled. Needs the packaging tools (make deps); not root.
set -eu
. "$(dirname "$0")/lib.sh"
need_cmd dpkg-buildpackage lintian dh dpkg-deb readelf
B=$T/b
(cd "$WGWS_TOP" && env -u MAKEFLAGS -u MFLAGS -u MAKELEVEL make -s deb B="$B") \
	>"$T/deb.log" 2>&1 || fail "make deb: $(grep -E "^[EW]: |error" "$T/deb.log" | head -8 | tr '\n' ' ')"
debs=$(ls "$B"/deb/*.deb | grep -v dbgsym)
[ "$(wc -l <<<"$debs")" = 2 ] || fail "expected 2 packages: $(oneline "$debs")"
errs=$(grep -c "^E: " "$T/deb.log" || true)
warns=$(grep -c "^W: " "$T/deb.log" || true)
[ "$errs" = 0 ] || fail "lintian errors: $(grep "^E: " "$T/deb.log" | head -5 | tr '\n' ' ')"
ok "dpkg-buildpackage built $(for d in $debs; do basename "$d"; done | tr '\n' ' ')- lintian: $errs errors, $warns warnings"
X=$T/x
for d in $debs; do dpkg-deb -x "$d" "$X"; done
for f in usr/sbin/wgws-relay usr/sbin/wgws-provisioner usr/bin/wgws-shim usr/bin/wgws-mkcert \
	usr/lib/systemd/system/wgws-relay.socket usr/lib/systemd/system/wgws-relay.service \
	usr/lib/systemd/system/wgws-provisioner.service usr/lib/systemd/system/wgws-shim@.service \
	usr/lib/sysusers.d/wgws.conf usr/share/man/man8/wgws-relay.8.gz \
	usr/share/man/man1/wgws-shim.1.gz usr/share/man/man5/wgws.conf.5.gz; do
	[ -e "$X/$f" ] || fail "no $f in the packages"
done
grep -q "^ExecStart=/usr/sbin/wgws-relay -c /etc/wgws/relay.conf$" \
	"$X/usr/lib/systemd/system/wgws-relay.service" || fail "the packaged unit's ExecStart"
for p in wgws-relay wgws-provisioner; do
	readelf -d "$X/usr/sbin/$p" | grep -qE "BIND_NOW|FLAGS.*NOW" || fail "$p: no BIND_NOW"
	readelf --dyn-syms -W "$X/usr/sbin/$p" | grep -q "_chk" || fail "$p: no FORTIFY"
done
dpkg-deb -I "$(grep '/wgws_' <<<"$debs")" postinst 2>/dev/null | grep -q "systemd-sysusers" ||
	fail "the wgws package does not create its user (systemd-sysusers in postinst)"
! dpkg-deb -I "$(grep '/wgws_' <<<"$debs")" postinst 2>/dev/null | grep -q "deb-systemd-helper enable" ||
	fail "the wgws package enables a unit on install"
ok "binaries, units (disabled), sysusers entry (systemd-sysusers in postinst), man pages; BIND_NOW and FORTIFY"
echo "PASS test_deb"
