# SPDX-License-Identifier: MIT
# wgws — one non-recursive GNU Makefile. `make help` lists the targets.
#   make [V=1] [WERROR=1] [SANITIZE=1]   build the three programs, man pages and units
#   make test                            unit tests, then namespace tests when root
#   make unit                            the unit tests alone
#   make deps                            install missing Debian packages (root)
#   make demo                            the tunnel through a proxy, shown and torn down (root)
#   make install [DESTDIR= PREFIX=]      programs, units, sysusers, man pages, examples
#   make uninstall                       what install laid out (docs/INSTALL.md)
#   make deb                             Debian packages wgws and wgws-shim (build/deb/)
#   make jit-bench [JIT_BENCH_ARGS=-q]   JIT decision benchmark on wireguard-go (root; bench/)
#   make bench [QUICK=1]                 tunnel vs direct UDP: throughput, CPU, latency (bench/)
#   make fuzz [FUZZ_SECONDS=60]          each libFuzzer harness over its corpus (clang; tests/fuzz/)
CC ?= cc
PKG_CONFIG ?= pkg-config
PREFIX ?= /usr/local
CFLAGS ?= -O2 -g
B := build

WARN := -std=gnu11 -Wall -Wextra -Wshadow -Wformat=2 -Wvla -Wmissing-prototypes \
	-Wstrict-prototypes -Wno-unused-parameter
ifeq ($(WERROR),1)
WARN += -Werror
endif
ifeq ($(SANITIZE),1)
SAN := -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
endif

RELAY_PKGS := libwebsockets openssl libseccomp libsystemd
SHIM_PKGS := openssl libcurl libsystemd
PROV_PKGS := libwebsockets openssl libmnl sqlite3 libsodium jansson libseccomp libsystemd libpq
TEST_PKGS := cmocka

pkg_cflags = $(shell $(PKG_CONFIG) --cflags $(1) 2>/dev/null)
pkg_libs = $(shell $(PKG_CONFIG) --libs $(1) 2>/dev/null)

# Hardening, as Debian's dpkg-buildflags and beyond: PIE, full RELRO (BIND_NOW), a
# non-executable stack, stack protector and clash protection, CET where the CPU has it,
# FORTIFY (the _chk variants; not with the sanitizers, which intercept the same calls, and
# not over a _FORTIFY_SOURCE the caller's CPPFLAGS chose). The caller's CPPFLAGS, CFLAGS
# and LDFLAGS come after ours and win.
HARDEN_CFLAGS := -fPIE -fstack-protector-strong -fstack-clash-protection -fcf-protection
HARDEN_LDFLAGS := -pie -Wl,-z,relro -Wl,-z,now -Wl,-z,noexecstack
ifneq ($(SANITIZE),1)
ifeq ($(findstring _FORTIFY_SOURCE,$(CPPFLAGS)),)
HARDEN_CPPFLAGS := -D_FORTIFY_SOURCE=2
endif
endif
ALL_CFLAGS := $(WARN) $(HARDEN_CPPFLAGS) $(CPPFLAGS) $(HARDEN_CFLAGS) $(CFLAGS) $(SAN) \
	-D_GNU_SOURCE -Icommon -MMD -MP
ALL_LDFLAGS := $(HARDEN_LDFLAGS) $(LDFLAGS) $(SAN)

ifneq ($(V),1)
Q := @
msg = @printf '  %-6s %s\n' $(1) $(2);
endif

COMMON_SRC := $(wildcard common/*.c)
RELAY_SRC := $(wildcard relay/*.c)
SHIM_SRC := $(wildcard client-shim/*.c)
PROV_SRC := $(wildcard provisioner/*.c)
UNIT_SRC := $(wildcard tests/unit/test_*.c)

COMMON_OBJ := $(COMMON_SRC:%.c=$(B)/%.o)
RELAY_OBJ := $(RELAY_SRC:%.c=$(B)/%.o)
SHIM_OBJ := $(SHIM_SRC:%.c=$(B)/%.o)
PROV_OBJ := $(PROV_SRC:%.c=$(B)/%.o)
UNIT_BIN := $(UNIT_SRC:tests/unit/%.c=$(B)/tests/%)

PROGS := $(B)/wgws-relay $(B)/wgws-shim
ifneq ($(wildcard provisioner/main.c),)
PROGS += $(B)/wgws-provisioner
endif
# Test drivers built from tests/tools/*.c (each links the provisioner's modules).
TOOLS := $(patsubst tests/tools/%.c,$(B)/%,$(wildcard tests/tools/*.c))

# bench/udpload.c: the UDP load tool (libc only); in all because make test smoke-tests it.
BENCH_TOOLS := $(B)/udpload

.PHONY: all test unit e2e deps demo bench fuzz install uninstall units man deb clean help check-deps
all: $(PROGS) $(TOOLS) $(BENCH_TOOLS)

# Objects are rebuilt whenever the flags change (plain vs SANITIZE=1, WERROR, CFLAGS).
FLAGS_STAMP := $(B)/.flags
$(shell mkdir -p $(B); echo '$(CC) $(ALL_CFLAGS) $(ALL_LDFLAGS)' | cmp -s - $(FLAGS_STAMP) || \
	echo '$(CC) $(ALL_CFLAGS) $(ALL_LDFLAGS)' > $(FLAGS_STAMP))

$(B)/common/%.o: common/%.c $(FLAGS_STAMP)
	@mkdir -p $(@D)
	$(call msg,CC,$<)$(CC) $(ALL_CFLAGS) $(call pkg_cflags,openssl libseccomp) -c -o $@ $<
$(B)/relay/%.o: relay/%.c $(FLAGS_STAMP)
	@mkdir -p $(@D)
	$(call msg,CC,$<)$(CC) $(ALL_CFLAGS) $(call pkg_cflags,$(RELAY_PKGS)) -c -o $@ $<
$(B)/client-shim/%.o: client-shim/%.c $(FLAGS_STAMP)
	@mkdir -p $(@D)
	$(call msg,CC,$<)$(CC) $(ALL_CFLAGS) $(call pkg_cflags,$(SHIM_PKGS)) -c -o $@ $<
$(B)/provisioner/%.o: provisioner/%.c $(FLAGS_STAMP)
	@mkdir -p $(@D)
	$(call msg,CC,$<)$(CC) $(ALL_CFLAGS) $(call pkg_cflags,$(PROV_PKGS)) -c -o $@ $<
$(B)/tests/%.o: tests/unit/%.c $(FLAGS_STAMP)
	@mkdir -p $(@D)
	$(call msg,CC,$<)$(CC) $(ALL_CFLAGS) -Iclient-shim -Iprovisioner $(call pkg_cflags,$(TEST_PKGS) $(PROV_PKGS)) -c -o $@ $<
$(B)/tools/%.o: tests/tools/%.c $(FLAGS_STAMP)
	@mkdir -p $(@D)
	$(call msg,CC,$<)$(CC) $(ALL_CFLAGS) -Iprovisioner $(call pkg_cflags,$(PROV_PKGS)) -c -o $@ $<

$(B)/libcommon.a: $(COMMON_OBJ)
	$(call msg,AR,$@)$(AR) rcs $@ $^

$(B)/wgws-relay: $(RELAY_OBJ) $(B)/libcommon.a
	$(call msg,LD,$@)$(CC) $(ALL_LDFLAGS) -o $@ $^ $(call pkg_libs,$(RELAY_PKGS)) -lev
$(B)/wgws-shim: $(SHIM_OBJ) $(B)/libcommon.a
	$(call msg,LD,$@)$(CC) $(ALL_LDFLAGS) -o $@ $^ $(call pkg_libs,$(SHIM_PKGS))
# An archive, so a test or tool links only the modules it uses.
$(B)/libprov.a: $(filter-out $(B)/provisioner/main.o,$(PROV_OBJ))
	$(call msg,AR,$@)rm -f $@; $(AR) rcs $@ $^
$(B)/wgws-provisioner: $(PROV_OBJ) $(B)/libcommon.a
	$(call msg,LD,$@)$(CC) $(ALL_LDFLAGS) -o $@ $^ $(call pkg_libs,$(PROV_PKGS))
$(B)/%: $(B)/tools/%.o $(B)/libprov.a $(B)/libcommon.a
	$(call msg,LD,$@)$(CC) $(ALL_LDFLAGS) -o $@ $^ $(call pkg_libs,$(PROV_PKGS))

# A unit test links common/, plus its program's modules (everything but main.o):
# test_shim_* the shim's, test_prov_* the provisioner's.
SHIM_LIB_OBJ := $(filter-out $(B)/client-shim/main.o,$(SHIM_OBJ))
$(B)/tests/test_shim_%: $(B)/tests/test_shim_%.o $(SHIM_LIB_OBJ) $(B)/libcommon.a
	$(call msg,LD,$@)$(CC) $(ALL_LDFLAGS) -o $@ $^ $(call pkg_libs,$(TEST_PKGS) $(SHIM_PKGS))
$(B)/tests/test_prov_%: $(B)/tests/test_prov_%.o $(B)/libprov.a $(B)/libcommon.a
	$(call msg,LD,$@)$(CC) $(ALL_LDFLAGS) -o $@ $^ $(call pkg_libs,$(TEST_PKGS) $(PROV_PKGS))
$(B)/tests/test_sandbox: $(B)/tests/test_sandbox.o $(B)/libcommon.a
	$(call msg,LD,$@)$(CC) $(ALL_LDFLAGS) -o $@ $^ $(call pkg_libs,$(TEST_PKGS) libseccomp)
$(B)/tests/test_%: $(B)/tests/test_%.o $(B)/libcommon.a
	$(call msg,LD,$@)$(CC) $(ALL_LDFLAGS) -o $@ $^ $(call pkg_libs,$(TEST_PKGS))

# --- tests ----------------------------------------------------------------------------
test: check-deps $(PROGS) $(TOOLS) $(BENCH_TOOLS) $(UNIT_BIN)
	$(Q)WGWS_BUILD=$(abspath $(B)) tests/run.sh $(UNIT_BIN)

unit: $(UNIT_BIN)
	$(Q)WGWS_BUILD=$(abspath $(B)) tests/run.sh --unit-only $(UNIT_BIN)

e2e: check-deps $(PROGS) $(TOOLS) $(BENCH_TOOLS)
	$(Q)WGWS_BUILD=$(abspath $(B)) tests/run.sh --e2e-only


# --- benchmarks (not in test; only udpload, smoke-tested, is in all; bench/README.md) -----
# bench: bench/run.sh, the tunnel against direct loopback UDP, then bench/wg.sh, scale.sh and
# prov.sh (root: private namespaces; otherwise unshare -Urn and steps 3-5 skip); writes
# bench/results/. QUICK=1: under 2 minutes.
QUICK ?= 0
bench: check-deps $(PROGS) $(BENCH_TOOLS) $(B)/jit_bench $(B)/store_bench
	$(Q)QUICK=$(QUICK) WGWS_BUILD=$(abspath $(B)) bench/run.sh
# jit-bench: jit_decide against a wireguard-go device in its own namespace, 1M stored peers
# (the database is kept in $(B)/bench-cache/). JIT_BENCH_ARGS go to jit_bench (-q: quick).
JIT_BENCH_ARGS ?=
$(B)/bench/%.o: bench/%.c $(FLAGS_STAMP)
	@mkdir -p $(@D)
	$(call msg,CC,$<)$(CC) $(ALL_CFLAGS) -Iprovisioner $(call pkg_cflags,$(PROV_PKGS)) -c -o $@ $<
$(B)/jit_bench: $(B)/bench/jit_bench.o $(B)/libprov.a $(B)/libcommon.a
	$(call msg,LD,$@)$(CC) $(ALL_LDFLAGS) -o $@ $^ $(call pkg_libs,$(PROV_PKGS))
.PHONY: jit-bench
jit-bench: $(B)/jit_bench
	$(Q)WGWS_BUILD=$(abspath $(B)) bench/jit.sh $(JIT_BENCH_ARGS)
-include $(B)/bench/jit_bench.d
# store_bench: store_create alone (bench/prov.sh's baseline for API creates). It includes
# provisioner/store.c itself (to EXPLAIN the store's own statements): libprov.a's store.o is
# not pulled in, only what store.c needs from the rest.
$(B)/store_bench: $(B)/bench/store_bench.o $(B)/libprov.a $(B)/libcommon.a
	$(call msg,LD,$@)$(CC) $(ALL_LDFLAGS) -o $@ $^ $(call pkg_libs,$(PROV_PKGS))
-include $(B)/bench/store_bench.d
$(B)/udpload: $(B)/bench/udpload.o
	$(call msg,LD,$@)$(CC) $(ALL_LDFLAGS) -o $@ $^
-include $(B)/bench/udpload.d

# --- fuzzing (clang + libFuzzer): make fuzz-build, make fuzz [FUZZ_SECONDS=60] -----------
# One harness per parser that sees outside bytes, tests/fuzz/fuzz_NAME.c, with its seed corpus
# in tests/fuzz/corpus/NAME/ (tests/fuzz/README). common/, the shim's and the provisioner's
# modules are compiled again with clang and the sanitizers into $(B)/fuzz/ and archived; each
# harness pulls only what it uses. fuzz runs each harness over its corpus for FUZZ_SECONDS
# (new inputs go to $(B)/fuzz/corpus/, crashes to $(B)/fuzz/artifacts/) and fails on a finding.
FUZZ_CC ?= clang
FUZZ_SECONDS ?= 60
FB := $(B)/fuzz
FUZZ_SAN := -fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer
FUZZ_PKGS := openssl libsodium jansson libmnl sqlite3 libwebsockets libseccomp libcurl libsystemd libpq
FUZZ_CFLAGS := $(WARN) -g -O1 $(FUZZ_SAN) -fsanitize=fuzzer-no-link -D_GNU_SOURCE -Icommon \
	-Iclient-shim -Iprovisioner -MMD -MP
FUZZ_SRC := $(wildcard tests/fuzz/fuzz_*.c)
FUZZ_BIN := $(FUZZ_SRC:tests/fuzz/%.c=$(FB)/%)
FUZZ_COMMON_OBJ := $(COMMON_SRC:%.c=$(FB)/%.o)
FUZZ_SHIM_OBJ := $(filter-out $(FB)/client-shim/main.o,$(SHIM_SRC:%.c=$(FB)/%.o))
FUZZ_PROV_OBJ := $(filter-out $(FB)/provisioner/main.o,$(PROV_SRC:%.c=$(FB)/%.o))
FUZZ_STAMP := $(FB)/.flags

.PHONY: fuzz-build
fuzz-build: $(FUZZ_BIN)
fuzz: $(FUZZ_BIN)
	$(Q)WGWS_BUILD=$(abspath $(B)) tests/fuzz/run.sh $(FUZZ_SECONDS) $(FUZZ_BIN)

$(shell mkdir -p $(FB); echo '$(FUZZ_CC) $(FUZZ_CFLAGS)' | cmp -s - $(FUZZ_STAMP) || \
	echo '$(FUZZ_CC) $(FUZZ_CFLAGS)' > $(FUZZ_STAMP))

$(FB)/%.o: %.c $(FUZZ_STAMP)
	@mkdir -p $(@D)
	$(call msg,FUZZCC,$<)$(FUZZ_CC) $(FUZZ_CFLAGS) $(call pkg_cflags,$(FUZZ_PKGS)) -c -o $@ $<
$(FB)/libcommon.a: $(FUZZ_COMMON_OBJ)
	$(call msg,AR,$@)rm -f $@; $(AR) rcs $@ $^
$(FB)/libshim.a: $(FUZZ_SHIM_OBJ)
	$(call msg,AR,$@)rm -f $@; $(AR) rcs $@ $^
$(FB)/libprov.a: $(FUZZ_PROV_OBJ)
	$(call msg,AR,$@)rm -f $@; $(AR) rcs $@ $^
$(FB)/fuzz_%: $(FB)/tests/fuzz/fuzz_%.o $(FB)/libshim.a $(FB)/libprov.a $(FB)/libcommon.a
	$(call msg,LD,$@)$(FUZZ_CC) $(FUZZ_SAN) -fsanitize=fuzzer -o $@ $^ \
		$(call pkg_libs,$(FUZZ_PKGS))
-include $(wildcard $(FB)/*/*.d $(FB)/*/*/*.d)

# --- packages -------------------------------------------------------------------------
# Build: compiler, pkg-config and -dev packages. Tests and demo: the real components (squid
# built with OpenSSL, for https_port and ssl-bump; dante for SOCKS5; an MIT Kerberos KDC;
# haproxy and nginx as front ends).
DEB_BUILD := gcc make pkg-config libwebsockets-dev libev-dev libssl-dev libcmocka-dev libmnl-dev \
	libsqlite3-dev libsodium-dev libjansson-dev libseccomp-dev libcurl4-openssl-dev libsystemd-dev \
	libpq-dev \
	scdoc
DEB_TEST := wireguard-go wireguard-tools iproute2 nftables squid-openssl iperf3 curl openssl \
	python3 iputils-ping procps systemd \
	dante-server krb5-kdc krb5-admin-server krb5-user python3-prometheus-client haproxy \
	nginx-light postgresql
# Real kernel WireGuard in a QEMU (TCG) guest: see tests/kernel/.
DEB_KERNEL := qemu-system-x86 busybox-static cpio kmod xz-utils zstd
# make bench: gnuplot for the PNG plots (gnuplot-nox: no X; it has the pngcairo terminal).
DEB_BENCH := gnuplot-nox
# make fuzz and tests/e2e/test_fuzz.sh: clang, and libFuzzer with the sanitizer runtimes
# (libclang-rt-14-dev is only a recommendation of clang-14, which deps.sh does not install).
DEB_FUZZ := clang libclang-rt-14-dev
# make deb and tests/e2e/test_deb.sh: Debian's packaging tools and lintian.
DEB_PKG := debhelper dpkg-dev fakeroot lintian
DEBS := $(DEB_BUILD) $(DEB_TEST) $(DEB_KERNEL) $(DEB_BENCH) $(DEB_FUZZ) $(DEB_PKG)

deps:
	$(Q)tests/deps.sh $(DEBS)

# As root, make test and make demo first install what is missing (fast when nothing is).
check-deps:
	$(Q)if [ "$$(id -u)" = 0 ]; then tests/deps.sh $(DEBS); fi

demo: check-deps $(PROGS)
	$(Q)tests/e2e/demo.sh

# --- install ----------------------------------------------------------------------------
# GNU-style directories, each overridable (make install PREFIX=/usr sysconfdir=/etc ...):
# the shim and wgws-mkcert in bindir, the daemons in sbindir, systemd units, sysusers.d,
# man pages and example configurations (docs/INSTALL.md lists every file). DESTDIR for
# staging (packages). A root install without DESTDIR also creates the user wgws
# (systemd-sysusers, else useradd).
prefix ?= $(PREFIX)
exec_prefix ?= $(prefix)
bindir ?= $(exec_prefix)/bin
sbindir ?= $(exec_prefix)/sbin
libdir ?= $(exec_prefix)/lib
datarootdir ?= $(prefix)/share
mandir ?= $(datarootdir)/man
docdir ?= $(datarootdir)/doc/wgws
sysconfdir ?= /etc
systemdunitdir ?= $(libdir)/systemd/system
sysusersdir ?= $(libdir)/sysusers.d
INSTALL ?= install

UNITS := wgws-relay.service wgws-relay.socket wgws-provisioner.service wgws-shim@.service
UNIT_OUT := $(UNITS:%=$(B)/dist/%)
# Man pages: scdoc sources in man/, built into $(B)/man/.
MAN_SRC := $(wildcard man/*.scd)
MANS := $(MAN_SRC:man/%.scd=$(B)/man/%)
EXAMPLES := dist/examples/relay.conf dist/examples/provisioner.conf dist/examples/shim.conf

# The units name the installed paths: rebuilt whenever those change.
DIRS_STAMP := $(B)/.dirs
$(shell mkdir -p $(B); echo '$(bindir) $(sbindir) $(sysconfdir)' | cmp -s - $(DIRS_STAMP) || \
	echo '$(bindir) $(sbindir) $(sysconfdir)' > $(DIRS_STAMP))
$(B)/dist/%: dist/systemd/%.in $(DIRS_STAMP)
	@mkdir -p $(@D)
	$(call msg,GEN,$@)sed -e 's|@BINDIR@|$(bindir)|g' -e 's|@SBINDIR@|$(sbindir)|g' \
		-e 's|@SYSCONFDIR@|$(sysconfdir)|g' $< >$@
$(B)/dist/%: dist/systemd/%
	@mkdir -p $(@D)
	$(call msg,GEN,$@)cp $< $@
units: $(UNIT_OUT)

$(B)/man/%: man/%.scd
	@mkdir -p $(@D)
	$(call msg,SCDOC,$@)scdoc <$< >$@.tmp && mv $@.tmp $@
man: $(MANS)
all: $(UNIT_OUT) $(MANS)

install: $(PROGS) $(UNIT_OUT) $(MANS)
	$(INSTALL) -d $(DESTDIR)$(bindir) $(DESTDIR)$(sbindir) $(DESTDIR)$(systemdunitdir) \
		$(DESTDIR)$(sysusersdir) $(DESTDIR)$(mandir)/man1 $(DESTDIR)$(mandir)/man5 \
		$(DESTDIR)$(mandir)/man8 $(DESTDIR)$(docdir)/examples
	$(INSTALL) -m 755 $(B)/wgws-shim $(DESTDIR)$(bindir)/wgws-shim
	$(INSTALL) -m 755 certs/mkcert.sh $(DESTDIR)$(bindir)/wgws-mkcert
	$(INSTALL) -m 755 $(B)/wgws-relay $(B)/wgws-provisioner $(DESTDIR)$(sbindir)/
	$(INSTALL) -m 644 $(UNIT_OUT) $(DESTDIR)$(systemdunitdir)/
	$(INSTALL) -m 644 dist/sysusers.d/wgws.conf $(DESTDIR)$(sysusersdir)/wgws.conf
	$(INSTALL) -m 644 $(B)/man/wgws-shim.1 $(DESTDIR)$(mandir)/man1/
	$(INSTALL) -m 644 $(B)/man/wgws.conf.5 $(DESTDIR)$(mandir)/man5/
	$(INSTALL) -m 644 $(B)/man/wgws-relay.8 $(B)/man/wgws-provisioner.8 $(DESTDIR)$(mandir)/man8/
	$(INSTALL) -m 644 $(EXAMPLES) $(DESTDIR)$(docdir)/examples/
	$(INSTALL) -m 644 README.md LICENSE docs/PROTOCOL.md docs/THREAT.md docs/INSTALL.md \
		docs/DEPLOY.md $(DESTDIR)$(docdir)/
	$(Q)if [ -z "$(DESTDIR)" ] && [ "$$(id -u)" = 0 ] && ! getent passwd wgws >/dev/null; then \
		echo "install: creating the system user wgws"; \
		systemd-sysusers $(sysusersdir)/wgws.conf 2>/dev/null || \
		useradd --system --no-create-home --home-dir /nonexistent \
			--shell /usr/sbin/nologin --user-group wgws; fi

# Debian packages (debian/, dpkg-buildpackage): wgws (relay, provisioner) and wgws-shim,
# built in a copy of the tree under $(B)/deb/ (dpkg-buildpackage writes next to its source),
# then checked with lintian.
DEB_VERSION := $(shell sed -n '1s/.*(\(.*\)).*/\1/p' debian/changelog 2>/dev/null)
deb:
	rm -rf $(B)/deb && mkdir -p $(B)/deb/wgws-$(DEB_VERSION)
	tar --exclude=./build --exclude=./.git -cf - . | tar -C $(B)/deb/wgws-$(DEB_VERSION) -xf -
	cd $(B)/deb/wgws-$(DEB_VERSION) && env -u MAKEFLAGS -u MFLAGS -u MAKELEVEL \
		dpkg-buildpackage -us -uc -b
	lintian --fail-on error $(B)/deb/*.changes
	@ls $(B)/deb/*.deb

# Removes what install put there (not the user wgws, nor anything in sysconfdir).
uninstall:
	rm -f $(DESTDIR)$(bindir)/wgws-shim $(DESTDIR)$(bindir)/wgws-mkcert \
		$(DESTDIR)$(sbindir)/wgws-relay $(DESTDIR)$(sbindir)/wgws-provisioner \
		$(UNITS:%=$(DESTDIR)$(systemdunitdir)/%) $(DESTDIR)$(sysusersdir)/wgws.conf \
		$(DESTDIR)$(mandir)/man1/wgws-shim.1 $(DESTDIR)$(mandir)/man5/wgws.conf.5 \
		$(DESTDIR)$(mandir)/man8/wgws-relay.8 $(DESTDIR)$(mandir)/man8/wgws-provisioner.8 \
		$(EXAMPLES:dist/examples/%=$(DESTDIR)$(docdir)/examples/%) \
		$(DESTDIR)$(docdir)/README.md $(DESTDIR)$(docdir)/LICENSE \
		$(DESTDIR)$(docdir)/PROTOCOL.md $(DESTDIR)$(docdir)/THREAT.md \
		$(DESTDIR)$(docdir)/INSTALL.md $(DESTDIR)$(docdir)/DEPLOY.md
	-rmdir $(DESTDIR)$(docdir)/examples $(DESTDIR)$(docdir) 2>/dev/null

clean:
	rm -rf $(B)

help:
	@sed -n '/^#   make/p' Makefile

.SECONDARY:

-include $(COMMON_OBJ:.o=.d) $(RELAY_OBJ:.o=.d) $(SHIM_OBJ:.o=.d) $(PROV_OBJ:.o=.d) \
	$(UNIT_BIN:%=%.d) $(wildcard $(B)/tools/*.d)
