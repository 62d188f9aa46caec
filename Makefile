# omserver: one non-recursive Makefile.
#
#   make            build/bin/{om-master,om-worker,omctl}, build/lib/libomproto.a,
#                   build/plugins/*.so
#   make check      unit tests + fuzz smoke under ASan/UBSan, then integration tests
#                   against real PostgreSQL and sshd; ends with "N passed, N failed"
#   make fuzz       libFuzzer (clang) on every harness, FUZZ_SECONDS=60 each
#   make demo       a throwaway platform on loopback, runs a sample job, waits for Ctrl-C
#   make bench      omserver beside pssh, pdsh, clush and ansible on a loopback sshd
#                   fleet, and the dispatch latency (bench/run.sh; not part of check);
#                   writes bench/results/latest.{md,json}
#   make deps       installs the Debian packages needed to build, test and demo
#   make install    PREFIX=/usr/local DESTDIR=
#   make sdk-install the plugin SDK only (header, omserver-plugin.pc)
#   make format     clang-format every C file
#
# V=1 shows the full commands.

PKG_CONFIG ?= pkg-config
CC ?= cc
PREFIX ?= /usr/local
DESTDIR ?=
B := build

PKGS := msgpack libssh2 libpq libcrypto jansson libmicrohttpd
PKG_CFLAGS := $(shell $(PKG_CONFIG) --cflags $(PKGS) 2>/dev/null)
PKG_LIBS := $(shell $(PKG_CONFIG) --libs $(PKGS) 2>/dev/null)
# nng ships no .pc file on Debian 12
LIBS := -lnng $(PKG_LIBS) -lpthread -ldl

CFLAGS ?= -O2 -g
WARN := -std=c11 -Wall -Wextra -Werror -Wshadow -Wpointer-arith -Wstrict-prototypes \
	-Wno-missing-field-initializers
ALL_CFLAGS = $(WARN) -D_GNU_SOURCE -fvisibility=hidden -Iproto/include -Iplugins/include \
	-Imaster -Iworker -Icli $(PKG_CFLAGS) $(CFLAGS)
SAN := -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined

ifeq ($(V),1)
Q :=
else
Q := @
endif

# --- sources -------------------------------------------------------------------
PROTO_SRC := $(sort $(wildcard proto/*.c))
MASTER_LIB_SRC := $(filter-out master/main.c,$(sort $(wildcard master/*.c)))
WORKER_LIB_SRC := $(filter-out worker/main.c,$(sort $(wildcard worker/*.c)))
CLI_LIB_SRC := $(filter-out cli/omctl.c,$(sort $(wildcard cli/*.c)))
PLUGIN_DIRS := $(patsubst plugins/%/,%,$(sort $(dir $(wildcard plugins/*/plugin.c))))
UNIT_SRC := $(sort $(wildcard tests/unit/*_test.c))
FUZZ_SRC := $(sort $(wildcard tests/fuzz/fuzz_*.c))

# obj(variant, sources)
obj = $(patsubst %.c,$(B)/$(1)/%.o,$(2))

LIB_PROTO := $(B)/lib/libomproto.a
BINS := $(B)/bin/om-master $(B)/bin/om-worker $(B)/bin/omctl
PLUGINS := $(patsubst %,$(B)/plugins/%.so,$(PLUGIN_DIRS))

all: $(BINS) $(LIB_PROTO) $(PLUGINS)

# --- release variant -------------------------------------------------------------
$(B)/rel/%.o: %.c $(B)/flags.rel
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  CC      $<")
	$(Q)$(CC) $(ALL_CFLAGS) -MMD -MP -c -o $@ $<

$(LIB_PROTO): $(call obj,rel,$(PROTO_SRC))
	@mkdir -p $(dir $@)
	$(Q)rm -f $@ && ar rcs $@ $^

$(B)/lib/libommaster.a: $(call obj,rel,$(MASTER_LIB_SRC))
	@mkdir -p $(dir $@)
	$(Q)rm -f $@ && ar rcs $@ $^
$(B)/lib/libomworker.a: $(call obj,rel,$(WORKER_LIB_SRC))
	@mkdir -p $(dir $@)
	$(Q)rm -f $@ && ar rcs $@ $^
$(B)/lib/libomcli.a: $(call obj,rel,$(CLI_LIB_SRC))
	@mkdir -p $(dir $@)
	$(Q)rm -f $@ && ar rcs $@ $^

$(B)/bin/om-master: $(B)/rel/master/main.o $(B)/lib/libommaster.a $(LIB_PROTO)
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  LD      $@")
	$(Q)$(CC) $(CFLAGS) -o $@ $^ $(LIBS)
$(B)/bin/om-worker: $(B)/rel/worker/main.o $(B)/lib/libomworker.a $(LIB_PROTO)
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  LD      $@")
	$(Q)$(CC) $(CFLAGS) -rdynamic -o $@ $^ $(LIBS)
$(B)/bin/omctl: $(B)/rel/cli/omctl.o $(B)/lib/libomcli.a $(LIB_PROTO)
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  LD      $@")
	$(Q)$(CC) $(CFLAGS) -o $@ $^ $(LIBS)

# Built-in plugins are built exactly like third-party ones: the SDK header only.
$(B)/plugins/%.so: plugins/%/plugin.c plugins/include/omserver/plugin.h $(B)/flags.rel
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  PLUGIN  $@")
	$(Q)$(CC) $(WARN) -Iplugins/include -fPIC -shared -fvisibility=hidden $(CFLAGS) -o $@ $<
# Header-only helpers the built-in modules share (sha256, JSON text, quoting).
$(PLUGINS): $(wildcard plugins/common/*.h)

# Test plugins (tests/plugins/*.c): misfits the loader must refuse, plus good ones.
TEST_PLUGINS := $(patsubst tests/plugins/%.c,$(B)/tests/plugins/%.so,$(sort $(wildcard tests/plugins/*.c)))
$(B)/tests/plugins/%.so: tests/plugins/%.c plugins/include/omserver/plugin.h $(B)/flags.rel
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  PLUGIN  $@")
	$(Q)$(CC) $(WARN) -Iplugins/include -fPIC -shared -fvisibility=hidden $(CFLAGS) -o $@ $<

# --- sanitizer variant (unit tests and fuzz smoke) -------------------------------
$(B)/asan/%.o: %.c $(B)/flags.asan
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  CC/SAN  $<")
	$(Q)$(CC) $(ALL_CFLAGS) -Itests $(SAN) -MMD -MP -c -o $@ $<

ASAN_LIBS := $(B)/asan/libommaster.a $(B)/asan/libomworker.a $(B)/asan/libomcli.a \
	$(B)/asan/libomproto.a
$(B)/asan/libomproto.a: $(call obj,asan,$(PROTO_SRC))
	$(Q)rm -f $@ && ar rcs $@ $^
$(B)/asan/libommaster.a: $(call obj,asan,$(MASTER_LIB_SRC))
	$(Q)rm -f $@ && ar rcs $@ $^
$(B)/asan/libomworker.a: $(call obj,asan,$(WORKER_LIB_SRC))
	$(Q)rm -f $@ && ar rcs $@ $^
$(B)/asan/libomcli.a: $(call obj,asan,$(CLI_LIB_SRC))
	$(Q)rm -f $@ && ar rcs $@ $^

UNIT_BINS := $(patsubst tests/unit/%.c,$(B)/asan/tests/%,$(UNIT_SRC))
# The registry and module tests dlopen the built plugins.
$(B)/asan/tests/plugins_test $(B)/asan/tests/modules_test: | $(PLUGINS) $(TEST_PLUGINS)
$(B)/asan/tests/%: $(B)/asan/tests/unit/%.o $(ASAN_LIBS)
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  LD/SAN  $@")
	$(Q)$(CC) $(SAN) -o $@ $< $(ASAN_LIBS) $(LIBS) -lcmocka

FUZZ_BINS := $(patsubst tests/fuzz/%.c,$(B)/asan/fuzz/%,$(FUZZ_SRC))
$(B)/asan/fuzz/%: $(B)/asan/tests/fuzz/%.o $(B)/asan/tests/fuzz/driver.o $(ASAN_LIBS)
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  LD/SAN  $@")
	$(Q)$(CC) $(SAN) -o $@ $< $(B)/asan/tests/fuzz/driver.o $(ASAN_LIBS) $(LIBS)

# --- libFuzzer variant (clang; make fuzz) --------------------------------------------
# The same tests/fuzz/fuzz_*.c harnesses linked with clang's libFuzzer, ASan and
# UBSan: build/fuzz/bin/fuzz_<name>.  Project sources are built with coverage
# instrumentation (fuzzer-no-link) under build/fuzz/.  Warnings stay warnings
# here: the gcc builds are the -Werror gate.  Without clang (or its libFuzzer
# runtime, libclang-rt-14-dev), tests/run.sh runs the gcc driver above instead.
#
#   make fuzz FUZZ_SECONDS=N   every harness for N s (FUZZ_JOBS at once), after
#                              its regression inputs; fails on any crash
#   make fuzz-regress          tests/data/fuzz/regress/<name>/ only
#   make fuzz-build            the binaries only
# tests/fuzz/libfuzzer.sh does the running: flags, corpora, crash artifacts.
ifeq ($(origin FUZZ_CC),undefined)
FUZZ_CC := $(or $(firstword $(shell command -v clang clang-14 2>/dev/null)),clang)
endif
FUZZ_SECONDS ?= 60
FUZZ_JOBS ?= 2
FUZZ_SAN := -fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer
FUZZ_CFLAGS := $(filter-out -Werror,$(WARN)) -D_GNU_SOURCE -fvisibility=hidden -Iproto/include \
	-Iplugins/include -Imaster -Iworker -Icli -Itests $(PKG_CFLAGS) -g -O1 $(FUZZ_SAN)

$(B)/fuzz/%.o: %.c $(B)/flags.fuzz
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  CC/FUZZ $<")
	$(Q)$(FUZZ_CC) $(FUZZ_CFLAGS) -fsanitize=fuzzer-no-link -MMD -MP -c -o $@ $<

FUZZ_LIBS := $(B)/fuzz/libommaster.a $(B)/fuzz/libomworker.a $(B)/fuzz/libomcli.a \
	$(B)/fuzz/libomproto.a
$(B)/fuzz/libomproto.a: $(call obj,fuzz,$(PROTO_SRC))
	$(Q)rm -f $@ && ar rcs $@ $^
$(B)/fuzz/libommaster.a: $(call obj,fuzz,$(MASTER_LIB_SRC))
	$(Q)rm -f $@ && ar rcs $@ $^
$(B)/fuzz/libomworker.a: $(call obj,fuzz,$(WORKER_LIB_SRC))
	$(Q)rm -f $@ && ar rcs $@ $^
$(B)/fuzz/libomcli.a: $(call obj,fuzz,$(CLI_LIB_SRC))
	$(Q)rm -f $@ && ar rcs $@ $^

LIBFUZZER_BINS := $(patsubst tests/fuzz/%.c,$(B)/fuzz/bin/%,$(FUZZ_SRC))
$(B)/fuzz/bin/%: $(B)/fuzz/tests/fuzz/%.o $(FUZZ_LIBS)
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  LD/FUZZ $@")
	$(Q)$(FUZZ_CC) $(FUZZ_SAN) -fsanitize=fuzzer -o $@ $< $(FUZZ_LIBS) $(LIBS)

$(B)/flags.fuzz: FORCE
	@mkdir -p $(B)
	@echo '$(FUZZ_CC) $(FUZZ_CFLAGS)' | cmp -s - $@ || echo '$(FUZZ_CC) $(FUZZ_CFLAGS)' > $@

fuzz-build: $(LIBFUZZER_BINS)

fuzz: fuzz-build
	@tests/fuzz/libfuzzer.sh -r
	@tests/fuzz/libfuzzer.sh -t $(FUZZ_SECONDS) -j $(FUZZ_JOBS)

fuzz-regress: fuzz-build
	@tests/fuzz/libfuzzer.sh -r

# For check and unit: the libFuzzer binaries when clang can link them.
fuzz-build-if-clang:
	@if tests/fuzz/libfuzzer.sh --probe '$(FUZZ_CC)'; then \
		$(MAKE) --no-print-directory fuzz-build; \
	else \
		echo "  (no libFuzzer: '$(FUZZ_CC) -fsanitize=fuzzer' does not link; make deps)"; \
	fi

.PHONY: fuzz fuzz-build fuzz-regress fuzz-build-if-clang

# A flags stamp: changing CFLAGS or CC rebuilds everything (git's GIT-CFLAGS).
$(B)/flags.%: FORCE
	@mkdir -p $(B)
	@echo '$(CC) $(ALL_CFLAGS) $(SAN)' | cmp -s - $@ || echo '$(CC) $(ALL_CFLAGS) $(SAN)' > $@

# --- tests -------------------------------------------------------------------------
# Test tools (hostile peers and the like), not installed.
$(B)/tests/om-rawpeer: tests/tools/rawpeer.c
	@mkdir -p $(dir $@)
	$(Q)$(CC) $(WARN) -D_GNU_SOURCE $(CFLAGS) -o $@ $< -lnng -lpthread

$(B)/tests/om-probe: tests/tools/probe.c $(LIB_PROTO)
	@mkdir -p $(dir $@)
	$(Q)$(CC) $(ALL_CFLAGS) -o $@ $< $(LIB_PROTO) $(LIBS)

# Benchmark tools (bench/), not installed.
$(B)/bench/om-bench-dispatch: bench/dispatch.c $(LIB_PROTO)
	@mkdir -p $(dir $@)
	$(Q)$(CC) $(ALL_CFLAGS) -o $@ $< $(LIB_PROTO) $(LIBS)
$(B)/bench/om-bench-rusage: bench/rusage.c
	@mkdir -p $(dir $@)
	$(Q)$(CC) $(WARN) -D_GNU_SOURCE $(CFLAGS) -o $@ $<
BENCH_TOOLS := $(B)/bench/om-bench-dispatch $(B)/bench/om-bench-rusage

tests-build: all $(TEST_PLUGINS) $(UNIT_BINS) $(FUZZ_BINS) $(B)/tests/om-rawpeer $(B)/tests/om-probe fuzz-build-if-clang

# check and demo install missing packages first, then build in a fresh make
# (pkg-config flags are computed when make reads this file).
check:
	@tests/fixture/deps.sh
	@$(MAKE) --no-print-directory tests-build
	@tests/run.sh

unit: $(UNIT_BINS) $(FUZZ_BINS) fuzz-build-if-clang
	@OM_SKIP_INTEGRATION=1 tests/run.sh

demo:
	@tests/fixture/deps.sh
	@$(MAKE) --no-print-directory all
	@tests/fixture/demo.sh

deps:
	@tests/fixture/deps.sh

# Installs what is missing (the peers too: pssh, pdsh, clustershell,
# ansible-core), then runs the whole comparison; BENCH_ARGS go to bench/run.sh.
bench:
	@tests/fixture/deps.sh
	@$(MAKE) --no-print-directory all $(BENCH_TOOLS)
	@BENCH_ARGS='$(BENCH_ARGS)' bench/run.sh $(BENCH_ARGS)

format:
	clang-format -i $$(git ls-files '*.c' '*.h')

install: all sdk-install
	install -d $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(PREFIX)/lib/omserver/plugins
	install -m 755 $(BINS) $(DESTDIR)$(PREFIX)/bin/
	install -m 644 $(LIB_PROTO) $(DESTDIR)$(PREFIX)/lib/
	install -m 755 $(PLUGINS) $(DESTDIR)$(PREFIX)/lib/omserver/plugins/
	install -d $(DESTDIR)$(PREFIX)/share/omserver/web
	cp -R web/. $(DESTDIR)$(PREFIX)/share/omserver/web/

# The plugin SDK alone (header and pkg-config file): what an out-of-tree
# module needs, without building the daemons (tests/plugin_sdk.sh).
sdk-install:
	install -d $(DESTDIR)$(PREFIX)/include/omserver $(DESTDIR)$(PREFIX)/lib/pkgconfig
	install -m 644 plugins/include/omserver/plugin.h $(DESTDIR)$(PREFIX)/include/omserver/
	sed -e 's|@PREFIX@|$(PREFIX)|g' plugins/omserver-plugin.pc.in \
		> $(DESTDIR)$(PREFIX)/lib/pkgconfig/omserver-plugin.pc

clean:
	rm -rf $(B)

.PHONY: all check unit demo deps bench format install sdk-install clean tests-build FORCE
.SECONDARY:

-include $(shell find $(B) -name '*.d' 2>/dev/null)
