#!/bin/sh
# SPDX-License-Identifier: MIT
# Makes a self-signed certificate and key for a wgws relay (EC P-256, openssl CLI) and prints
# the SPKI pin the shim accepts with --pin (base64 of SHA-256 of the DER SubjectPublicKeyInfo,
# the format of curl --pinnedpubkey). Writes DIR/HOST.crt and DIR/HOST.key (mode 0600).
set -eu

usage() {
	cat <<EOF
usage: ${0##*/} HOST [IP...] [-o DIR] [--days N] [--force]

Makes a self-signed EC P-256 certificate for HOST (CN and DNS SAN) plus optional IP SANs,
writes DIR/HOST.crt and DIR/HOST.key (key mode 0600) and prints the SPKI pin for the shim:
  wgws-shim --relay wss://HOST/wg --pin sha256//BASE64 ...

options:
  -o, --out DIR   output directory (default: the current directory)
  -d, --days N    validity in days (default: 825)
  -f, --force     overwrite existing HOST.crt / HOST.key
  -r, --reuse-key renew: a new HOST.crt for the existing HOST.key, so the pin stays the
                  same and pinned clients keep working (then SIGHUP the relay)
  -h, --help      this text

example: ${0##*/} gw.example.com 192.0.2.10 -o /etc/wgws
EOF
}

die() {
	echo "${0##*/}: $*" >&2
	exit 1
}

host="" ips="" dir=. days=825 force=0 reuse=0
while [ $# -gt 0 ]; do
	case "$1" in
	-h | --help) usage; exit 0 ;;
	-o | --out) [ $# -ge 2 ] || die "$1 needs a directory"; dir=$2; shift ;;
	-d | --days) [ $# -ge 2 ] || die "$1 needs a number"; days=$2; shift ;;
	-f | --force) force=1 ;;
	-r | --reuse-key) reuse=1 ;;
	-*) usage >&2; exit 2 ;;
	*)
		if [ -z "$host" ]; then
			host=$1
		else
			ips="$ips $1"
		fi
		;;
	esac
	shift
done

[ -n "$host" ] || { usage >&2; exit 2; }
case "$days" in '' | *[!0-9]*) die "--days: not a number: $days" ;; esac
[ "$days" -gt 0 ] || die "--days must be positive"
# Host names only: letters, digits, dots, hyphens (this also keeps the file names sane).
case "$host" in *[!A-Za-z0-9.-]* | .* | -*) die "not a host name: $host" ;; esac
command -v openssl >/dev/null || die "openssl not found (apt-get install openssl)"

san="DNS:$host"
for ip in $ips; do
	case "$ip" in
	*[!0-9A-Fa-f.:]* | '') die "not an IP address: $ip" ;;
	esac
	san="$san,IP:$ip"
done

mkdir -p "$dir"
crt=$dir/$host.crt
key=$dir/$host.key
if [ "$reuse" = 1 ]; then
	[ -r "$key" ] || die "--reuse-key: no readable $key to reuse"
elif [ "$force" = 0 ]; then
	for f in "$crt" "$key"; do
		[ ! -e "$f" ] || die "$f exists (use --force to overwrite, --reuse-key to renew)"
	done
fi

umask 077
tmpkey=$(mktemp "$dir/.$host.key.XXXXXX")
errs=$(mktemp) || die "cannot make a temporary file"
trap 'rm -f "$tmpkey" "$errs"' EXIT

# openssl_failed WHAT: our line, then openssl's own (the reason: its success says nothing
# worth showing, its failure says which value it refused), and exit 1.
openssl_failed() {
	echo "${0##*/}: openssl $1 failed:" >&2
	sed 's/^/  /' "$errs" >&2
	exit 1
}

if [ "$reuse" = 1 ]; then
	# the same key, and the same owner and mode as before (the relay's user may read it)
	cp -p "$key" "$tmpkey" || die "cannot copy $key"
else
	openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$tmpkey" \
		2>"$errs" || openssl_failed genpkey
	chmod 600 "$tmpkey"
fi
openssl req -new -x509 -key "$tmpkey" -out "$crt.tmp" -days "$days" -sha256 \
	-subj "/CN=$host" -addext "subjectAltName=$san" \
	-addext "basicConstraints=critical,CA:FALSE" \
	-addext "keyUsage=critical,digitalSignature" \
	-addext "extendedKeyUsage=serverAuth" 2>"$errs" || {
	rm -f "$crt.tmp"
	openssl_failed req
}
chmod 644 "$crt.tmp"
if [ "$reuse" = 1 ]; then
	rm -f "$tmpkey"
else
	mv -f "$tmpkey" "$key"
fi
mv -f "$crt.tmp" "$crt"
rm -f "$errs"
trap - EXIT

pin=$(openssl x509 -in "$crt" -noout -pubkey | openssl pkey -pubin -outform DER |
	openssl dgst -sha256 -binary | openssl base64 -A)

echo "certificate: $crt ($san, $days days)"
echo "key:         $key ($([ "$reuse" = 1 ] && echo "reused, unchanged" || echo "mode 0600"))"
echo "pin:         sha256//$pin"
echo "shim flag:   --pin sha256//$pin"
