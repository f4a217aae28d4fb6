#!/bin/sh
# Install the Debian packages named on the command line that are not installed yet.
# Needs root for apt-get; prints what it does, does nothing when everything is present.
set -eu
missing=""
for p in "$@"; do
	st=$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)
	case "$st" in *" installed") ;; *) missing="$missing $p" ;; esac
done
[ -z "$missing" ] && exit 0
if [ "$(id -u)" != 0 ]; then
	echo "deps: missing packages:$missing (run 'make deps' as root)" >&2
	exit 1
fi
echo "deps: installing$missing"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
# Package scripts must not start system services (squid) on a test machine.
apt-get install -y -qq --no-install-recommends $missing
