#!/bin/sh
# SPDX-License-Identifier: MIT
# Install the Debian packages named on the command line that are not installed yet.
# Needs root for apt-get; prints what it does, does nothing when everything is present.
set -eu
missing=""
for p in "$@"; do
	st=$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)
	case "$st" in *" installed") ;; *) missing="$missing $p" ;; esac
done
# The daemons' unprivileged user (wgws-relay --user, wgws-provisioner --jit-user): a system
# user of its own, as make install creates it.
if [ "$(id -u)" = 0 ] && ! getent passwd wgws >/dev/null; then
	echo "deps: creating the system user wgws"
	useradd --system --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin \
		--user-group wgws
fi
[ -z "$missing" ] && exit 0
if [ "$(id -u)" != 0 ]; then
	echo "deps: missing packages:$missing (run 'make deps' as root)" >&2
	exit 1
fi
echo "deps: installing$missing"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
# Package scripts must not start system services (squid, krb5-kdc, danted) on a test machine:
# a policy-rc.d that refuses every start, for the install only, unless the machine has one.
policy=""
if [ ! -e /usr/sbin/policy-rc.d ]; then
	policy=/usr/sbin/policy-rc.d
	printf '#!/bin/sh\nexit 101\n' >"$policy"
	chmod 755 "$policy"
	trap 'rm -f "$policy"' EXIT
fi
apt-get install -y -qq --no-install-recommends $missing
