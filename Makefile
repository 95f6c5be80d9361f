# muserd: one daemon serving many vfio-user PCI devices from dlopen()ed plugins.
#
#   make            release build (-O2 -g) into build/
#   make check      install missing build deps, build, run every test under ASan+UBSan
#   make run        install missing build deps, build, run muserd with demo devices
#   make install    PREFIX=/usr/local DESTDIR=
#   make bench      latency, throughput and scale measurements against a floor
#   make lint       clang-format --dry-run and cppcheck
#   make fuzz       libFuzzer on the message decoders, the migration stream and nvme commands
#                   (FUZZ_SECONDS=60 each)

PREFIX ?= /usr/local
BINDIR ?= $(PREFIX)/bin
SBINDIR ?= $(PREFIX)/sbin
LIBDIR ?= $(PREFIX)/lib
INCLUDEDIR ?= $(PREFIX)/include
MANDIR ?= $(PREFIX)/share/man
PLUGINDIR ?= $(LIBDIR)/muserd/plugins
SYSTEMDUNITDIR ?= $(LIBDIR)/systemd/system
SYSUSERSDIR ?= $(LIBDIR)/sysusers.d
TMPFILESDIR ?= $(LIBDIR)/tmpfiles.d
DATADIR ?= $(PREFIX)/share
DBUSDIR ?= /usr/share/dbus-1
RUNTIMEDIR ?= /run/muserd
VERSION := 0.1.0

BUILD ?= build
CC ?= cc
CFLAGS ?= -O2 -g
PKGS := libsystemd json-c libcap-ng

SAN ?=
ifeq ($(SAN),1)
SANFLAGS := -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
endif
# libFuzzer's coverage with ASan+UBSan, for the core the fuzz targets link (make fuzz).
ifeq ($(SAN),fuzz)
SANFLAGS := -fsanitize=fuzzer-no-link,address,undefined -fno-omit-frame-pointer
endif
# ThreadSanitizer, for the suites whose code runs on several threads.
ifeq ($(SAN),thread)
SANFLAGS := -fsanitize=thread -fno-omit-frame-pointer
endif

WARNFLAGS := -Wall -Wextra -Werror -Wno-unused-parameter -Wshadow -Wstrict-prototypes \
             -Wmissing-prototypes -Wformat=2 -Wvla
BASEFLAGS := -std=gnu11 -D_GNU_SOURCE -fPIC $(WARNFLAGS) $(SANFLAGS)
PKG_CFLAGS = $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS = $(shell pkg-config --libs $(PKGS) 2>/dev/null)
ALL_CFLAGS = $(BASEFLAGS) -Iinclude -Isrc $(PKG_CFLAGS) $(CFLAGS)
LDFLAGS_ALL = $(SANFLAGS) $(LDFLAGS)

# The daemon's core: everything in src/ but main, the client library and muserctl.
CORE_SRC := $(wildcard src/util/*.c src/vfu/*.c src/pci/*.c src/bus/*.c) \
            $(filter-out src/muserd.c,$(wildcard src/*.c))
CLIENT_SRC := $(wildcard src/client/*.c)
CTL_SRC := $(wildcard src/ctl/*.c)
PLUGINS := $(notdir $(wildcard plugins/*))
UNIT_TESTS := $(basename $(notdir $(wildcard tests/unit/test-*.c)))
INTEGRATION_TESTS := $(basename $(notdir $(wildcard tests/integration/test-*.c)))
TEST_PLUGINS := $(basename $(notdir $(wildcard tests/plugins/*.c)))
# ABI 1 plugins, built against the frozen ABI 1 header as an old plugin was.
TEST_PLUGINS_ABI1 := $(basename $(notdir $(wildcard tests/plugins/abi1/*.c)))
BENCHES := $(basename $(notdir $(wildcard tests/bench/bench-*.c)))
# Helpers that bring a library of their own are linked only into the suites
# that name them (INTEGRATION_HELPERS_<suite>, below).
OWN_LIB_HELPERS := tests/integration/helpers/stall-fs.c
TEST_HELPERS := $(filter-out $(OWN_LIB_HELPERS),$(wildcard tests/integration/helpers/*.c))
UNIT_HELPERS := $(wildcard tests/unit/helpers/*.c)

obj = $(patsubst %.c,$(BUILD)/obj/%.o,$(1))

# One short line per step; `make V=1` prints the full commands.
V ?= 0
ifeq ($(V),1)
Q :=
say :=
else
Q := @
say = @printf '  %-8s %s\n' '$(1)' '$(2)';
endif

CORE_LIB := $(BUILD)/libmuserd-core.a
CLIENT_LIB := $(BUILD)/libvfu-client.a
MUSERD := $(BUILD)/muserd
MUSERCTL := $(BUILD)/muserctl
PLUGIN_SOS := $(patsubst %,$(BUILD)/plugins/%.so,$(PLUGINS))
UNIT_BINS := $(patsubst %,$(BUILD)/tests/unit/%,$(UNIT_TESTS))
INTEGRATION_BINS := $(patsubst %,$(BUILD)/tests/integration/%,$(INTEGRATION_TESTS))
TEST_PLUGIN_SOS := $(patsubst %,$(BUILD)/test-plugins/%.so,$(TEST_PLUGINS) $(TEST_PLUGINS_ABI1))
BENCH_BINS := $(patsubst %,$(BUILD)/tests/%,$(BENCHES))

.SECONDEXPANSION:
.PHONY: all check run install uninstall install-manifest install-check bench lint clean deps \
        tests unit-check integration-check tsan-tests tsan-check fuzz guest

# Files made from systemd/*.in with the paths filled in (rule below).
GENERATED_SYSTEMD := $(BUILD)/systemd/muserd.service $(BUILD)/systemd/muserd-device@.socket \
                     $(BUILD)/systemd/tmpfiles.d/muserd.conf

all: $(MUSERD) $(MUSERCTL) $(PLUGIN_SOS) $(BUILD)/muserd-plugin.pc $(GENERATED_SYSTEMD)

# Before compiling anything, say what is missing rather than fail on a header.
# (make deps, make check and make run install it; plain make only says so.)
NEED_PKGS := $(PKGS) liburing $(if $(filter tests tsan-tests unit-check integration-check,$(MAKECMDGOALS)),check fuse3)
ifeq ($(filter deps clean lint check run bench fuzz uninstall install-manifest install-check tsan-check,$(MAKECMDGOALS)),)
MISSING_PKGS := $(shell for p in $(NEED_PKGS); do pkg-config --exists $$p 2>/dev/null || echo $$p; done)
ifneq ($(MISSING_PKGS),)
$(error muserd needs the development files of: $(MISSING_PKGS). Run 'make deps' as root, \
or: apt-get install gcc make pkg-config libsystemd-dev libjson-c-dev libcap-ng-dev liburing-dev check \
libfuse3-dev fuse3)
endif
endif

# ---- paths built in ------------------------------------------------------------
# The daemon's default plugin and runtime directories, the unit's ExecStart and
# the .pc come from the directory variables. BUILD/paths records the values
# they were built with and changes only when one does, so that
# `make && make install PREFIX=/usr` rebuilds what names a path instead of
# installing files that point at /usr/local.
PATH_VARS := PREFIX=$(PREFIX) BINDIR=$(BINDIR) SBINDIR=$(SBINDIR) LIBDIR=$(LIBDIR) \
             INCLUDEDIR=$(INCLUDEDIR) PLUGINDIR=$(PLUGINDIR) RUNTIMEDIR=$(RUNTIMEDIR) \
             VERSION=$(VERSION)
PATHS_STAMP := $(BUILD)/paths
ifneq ($(shell cat $(PATHS_STAMP) 2>/dev/null),$(PATH_VARS))
$(shell mkdir -p $(BUILD) && printf '%s\n' '$(PATH_VARS)' > $(PATHS_STAMP))
endif
PATH_DEFS := -DMUSERD_VERSION=\"$(VERSION)\" -DMUSERD_PLUGINDIR=\"$(PLUGINDIR)\" \
             -DMUSERD_RUNTIMEDIR=\"$(RUNTIMEDIR)\"
PATH_OBJS := $(call obj,src/muserd.c src/bus/manager-object.c src/ctl/muserctl.c)
$(PATH_OBJS): ALL_CFLAGS += $(PATH_DEFS)
$(PATH_OBJS): $(PATHS_STAMP)

$(BUILD)/systemd/%: systemd/%.in $(PATHS_STAMP)
	@mkdir -p $(dir $@)
	$(call say,GEN,$@)sed -e 's|@SBINDIR@|$(SBINDIR)|g' -e 's|@RUNTIMEDIR@|$(RUNTIMEDIR)|g' $< > $@

$(BUILD)/obj/%.o: %.c
	@mkdir -p $(dir $@)
	$(call say,CC,$@)$(CC) $(ALL_CFLAGS) -MMD -MP -c $< -o $@

$(CORE_LIB): $(call obj,$(CORE_SRC))
	@mkdir -p $(dir $@)
	$(call say,AR,$@)rm -f $@ && ar rcs $@ $^

$(CLIENT_LIB): $(call obj,$(CLIENT_SRC) src/util/log.c)
	@mkdir -p $(dir $@)
	$(call say,AR,$@)rm -f $@ && ar rcs $@ $^

$(MUSERD): $(call obj,src/muserd.c) $(CORE_LIB)
	$(call say,LD,$@)$(CC) $^ -o $@ $(LDFLAGS_ALL) $(PKG_LIBS) -ldl

$(MUSERCTL): $(call obj,$(CTL_SRC)) $(CLIENT_LIB)
	$(call say,LD,$@)$(CC) $^ -o $@ $(LDFLAGS_ALL) $(PKG_LIBS)

# Plugins see include/ alone: no src/ headers, no libsystemd, no json-c.
# What a plugin links of its own: PLUGIN_LIBS_<name>.
PLUGIN_LIBS_nvme := -luring -lpthread
$(BUILD)/plugins/%.so: $$(wildcard plugins/%/*.c) $$(wildcard plugins/%/*.h) $(wildcard include/muserd/*.h)
	@mkdir -p $(dir $@)
	$(call say,CC,$@)$(CC) -std=gnu11 -D_GNU_SOURCE -fPIC -shared -fvisibility=hidden $(WARNFLAGS) $(SANFLAGS) \
	    -Iinclude $(CFLAGS) $(filter %.c,$^) -o $@ $(LDFLAGS_ALL) $(PLUGIN_LIBS_$*)
# Deliberately broken or unusual plugins the integration tests load.
$(BUILD)/test-plugins/%.so: tests/plugins/%.c $(wildcard include/muserd/*.h)
	@mkdir -p $(dir $@)
	$(call say,CC,$@)$(CC) -std=gnu11 -D_GNU_SOURCE -fPIC -shared -fvisibility=hidden $(WARNFLAGS) $(SANFLAGS) \
	    -Iinclude $(CFLAGS) $< -o $@ $(LDFLAGS_ALL) -lpthread
$(BUILD)/test-plugins/%.so: tests/plugins/abi1/%.c $(wildcard tests/plugins/abi1/include/muserd/*.h)
	@mkdir -p $(dir $@)
	$(call say,CC,$@)$(CC) -std=gnu11 -D_GNU_SOURCE -fPIC -shared -fvisibility=hidden $(WARNFLAGS) $(SANFLAGS) \
	    -Itests/plugins/abi1/include $(CFLAGS) $< -o $@ $(LDFLAGS_ALL)

$(BUILD)/tests/unit/test-%: $(call obj,tests/unit/test-%.c $(UNIT_HELPERS)) $(CORE_LIB) $(CLIENT_LIB)
	@mkdir -p $(dir $@)
	$(call say,LD,$@)$(CC) $^ -o $@ $(LDFLAGS_ALL) $(PKG_LIBS) $(shell pkg-config --libs check 2>/dev/null) -ldl

# The nvme plugin's pure parsers, tested apart from the plugin.
NVME_PURE_SRC := plugins/nvme/nvme-dptr.c plugins/nvme/nvme-io-decode.c
$(BUILD)/tests/unit/test-nvme-dptr: $(call obj,$(NVME_PURE_SRC))

$(BUILD)/tests/bench-%: $(call obj,tests/bench/bench-%.c $(TEST_HELPERS)) $(CLIENT_LIB)
	@mkdir -p $(dir $@)
	$(call say,LD,$@)$(CC) $^ -o $@ $(LDFLAGS_ALL) $(PKG_LIBS) -lm

$(BUILD)/muserd-plugin.pc: Makefile $(PATHS_STAMP)
	@mkdir -p $(dir $@)
	$(call say,GEN,$@)printf 'prefix=%s\nincludedir=%s\nplugindir=%s\n\nName: muserd-plugin\nDescription: muserd device plugin ABI\nVersion: %s\nCflags: -I$${includedir}\n' \
	    '$(PREFIX)' '$(INCLUDEDIR)' '$(PLUGINDIR)' '$(VERSION)' > $@

# Integration tests link the client library and run the real muserd binary.
# A suite's own helpers and libraries: INTEGRATION_HELPERS_<suite> and
# INTEGRATION_LIBS_<suite>. Only the test links libfuse, never muserd.
INTEGRATION_HELPERS_test-nvme-stall := tests/integration/helpers/stall-fs.c
INTEGRATION_LIBS_test-nvme-stall = $(shell pkg-config --libs fuse3 2>/dev/null)
$(call obj,tests/integration/helpers/stall-fs.c): ALL_CFLAGS += $(shell pkg-config --cflags fuse3 2>/dev/null)
define integration_rule
$(BUILD)/tests/integration/$(1): $(call obj,tests/integration/$(1).c $(TEST_HELPERS) $(INTEGRATION_HELPERS_$(1))) $(CLIENT_LIB)
	@mkdir -p $$(dir $$@)
	$$(call say,LD,$$@)$$(CC) $$^ -o $$@ $$(LDFLAGS_ALL) $$(PKG_LIBS) $$(INTEGRATION_LIBS_$(1)) \
	    $$(shell pkg-config --libs check 2>/dev/null)
endef
$(foreach t,$(INTEGRATION_TESTS),$(eval $(call integration_rule,$(t))))

tests: all $(UNIT_BINS) $(INTEGRATION_BINS) $(BENCH_BINS) $(TEST_PLUGIN_SOS)

# ---- build dependencies -------------------------------------------------------
# Debian packages the build, the tests and `make run` need. Installed with
# apt-get when run as root; otherwise we say what to install. libxml2-utils
# brings xmllint, which the libvirt hook (and so its test) reads domains with;
# libfuse3-dev and fuse3 the FUSE file system test-nvme-stall hangs a backing
# file on.
DEB_PKGS := gcc make pkg-config libsystemd-dev libjson-c-dev libcap-ng-dev liburing-dev check \
            linux-libc-dev dbus-daemon systemd libxml2-utils libfuse3-dev fuse3
# The guest suite, when a QEMU is there: its runtime libraries, and what
# building the guest's kernel modules needs (kbuild calls gcc-12 by name; the
# kernel's prebuilt objtool links libelf).
QEMU_DEB_PKGS := libglib2.0-0 libfdt1 zlib1g libpcre2-8-0 gcc-12 libelf1
# What SPDK's initiator (../shared/spdk/bin) needs at run time.
SPDK_DEB_PKGS := libnuma1 libjson-c5 libuuid1 libssl3 libaio1
deps:
	@missing=""; for p in $(DEB_PKGS); do \
	    dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q 'install ok installed' || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	    if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	        echo "Installing build dependencies:$$missing"; \
	        { [ -n "$$(find /var/lib/apt/lists -maxdepth 1 -name '*Packages*' -print -quit 2>/dev/null)" ] || apt-get update -qq; } && \
	        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing >/dev/null || \
	        { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing >/dev/null; } || exit 1; \
	    else \
	        echo "Missing build dependencies:$$missing"; \
	        echo "Install them with: sudo apt-get install$$missing"; exit 1; \
	    fi; \
	fi

# ---- tests ------------------------------------------------------------------------
# The real QEMU the guest suite boots: $(QEMU), else the build beside the
# source tree (../shared/qemu, as CI has it), else qemu-system-x86_64 on PATH
# (test-guest checks it is 10.1 or later). None: test-guest says SKIP.
QEMU ?= $(firstword $(wildcard $(CURDIR)/../shared/qemu/bin/qemu-system-x86_64) \
                    $(shell command -v qemu-system-x86_64 2>/dev/null))
GUEST_DIR ?= $(CURDIR)/build/guest
# SPDK's initiator for test-spdk-nvme (and its nvmf_tgt for bench-nvme): $(SPDK), else
# ../shared/spdk. None: they say SKIP.
SPDK ?= $(firstword $(wildcard $(CURDIR)/../shared/spdk))

check: deps
	$(if $(QEMU),@$(MAKE) --no-print-directory deps DEB_PKGS="$(QEMU_DEB_PKGS)")
	$(if $(SPDK),@$(MAKE) --no-print-directory deps DEB_PKGS="$(SPDK_DEB_PKGS)")
	$(MAKE) all
	$(MAKE) BUILD=build/asan SAN=1 tests
	$(if $(QEMU),$(MAKE) guest,@echo "No QEMU >= 10.1 found: the guest suite will SKIP (set QEMU=...).")
	$(MAKE) BUILD=build/tsan SAN=thread tsan-tests
	$(MAKE) BUILD=build/asan unit-check integration-check install-check
	$(MAKE) BUILD=build/tsan tsan-check

# The Linux guest test-guest boots: a Debian kernel and busybox fetched with
# apt-get download (nothing installed), tests/guest/init and the guest drivers
# in tests/guest/drivers, built against the kernel's headers. Cached.
guest:
	tests/guest/build-guest.sh $(GUEST_DIR)

# Every suite runs even when one fails; the target fails if any did.
unit-check:
	@failed=""; for t in $(UNIT_BINS); do echo "== $$t"; \
	    CK_FORK=yes MUSERD_PLUGIN_DIR=$(BUILD)/plugins MUSERD_TEST_PLUGIN_DIR=$(BUILD)/test-plugins $$t || failed="$$failed $$(basename $$t)"; done; \
	if [ -n "$$failed" ]; then echo "FAILED unit suites:$$failed"; exit 1; fi

integration-check:
	@failed=""; for t in $(INTEGRATION_BINS); do echo "== $$t"; \
	    MUSERD_BIN=$(MUSERD) MUSERCTL_BIN=$(MUSERCTL) MUSERD_PLUGIN_DIR=$(BUILD)/plugins \
	    MUSERD_TEST_PLUGIN_DIR=$(BUILD)/test-plugins MUSERD_GUEST_DIR=$(GUEST_DIR) \
	    $(if $(QEMU),QEMU=$(QEMU)) $(if $(SPDK),SPDK_DIR=$(SPDK)) CK_DEFAULT_TIMEOUT=60 $$t \
	    || failed="$$failed $$(basename $$t)"; done; \
	if [ -n "$$failed" ]; then echo "FAILED integration suites:$$failed"; exit 1; fi

# The suites of code that runs on several threads, built with -fsanitize=thread:
# unit suites, and integration suites against a ThreadSanitizer muserd (whose
# devices run on I/O threads; a race makes it exit non-zero, failing the test).
TSAN_TESTS := test-iothreads test-dma-guard test-dma-refs
TSAN_INTEGRATION := test-threads test-races test-dbus test-lifecycle test-interrupts test-migration \
                    test-nvme-backing test-nvme-namespaces test-nvme-stall
TSAN_BINS = $(patsubst %,$(BUILD)/tests/unit/%,$(TSAN_TESTS)) \
            $(patsubst %,$(BUILD)/tests/integration/%,$(TSAN_INTEGRATION))
tsan-tests: all $(TSAN_BINS) $(TEST_PLUGIN_SOS)
tsan-check:
	@failed=""; for t in $(TSAN_BINS); do echo "== $$t (ThreadSanitizer)"; \
	    TSAN_OPTIONS="halt_on_error=1 exitcode=66" CK_FORK=yes CK_DEFAULT_TIMEOUT=120 \
	    MUSERD_BIN=$(MUSERD) MUSERCTL_BIN=$(MUSERCTL) MUSERD_PLUGIN_DIR=$(BUILD)/plugins \
	    MUSERD_TEST_PLUGIN_DIR=$(BUILD)/test-plugins $$t || failed="$$failed $$(basename $$t)"; \
	done; \
	if [ -n "$$failed" ]; then echo "FAILED ThreadSanitizer suites:$$failed"; exit 1; fi

# Install as a packager would (another PREFIX, a DESTDIR) and check the tree,
# the paths built in, an out-of-tree plugin, and uninstall: tests/install/.
install-check:
	@echo "== tests/install/test-install.sh"
	@tests/install/test-install.sh

# ---- run ----------------------------------------------------------------------------
RUN_DIR ?= $(CURDIR)/$(BUILD)/run
# Uses the system bus when one runs and muserd's bus policy is installed there;
# otherwise a private dbus-daemon in $(RUN_DIR)/bus that ends with muserd.
run: deps
	$(MAKE) all
	@mkdir -p $(RUN_DIR)
	@set -e; \
	if [ -S /run/dbus/system_bus_socket ] && \
	   { [ -e /usr/share/dbus-1/system.d/org.muserd1.conf ] || [ -e /etc/dbus-1/system.d/org.muserd1.conf ]; }; then \
	    bus_arg=""; busctl_arg="--system"; \
	else \
	    rm -f $(RUN_DIR)/bus; \
	    dbus-daemon --config-file=dbus/private-bus.conf --address=unix:path=$(RUN_DIR)/bus --nofork & \
	    bus_pid=$$!; trap 'kill $$bus_pid 2>/dev/null' EXIT INT TERM; \
	    for i in $$(seq 50); do [ -S $(RUN_DIR)/bus ] && break; sleep 0.1; done; \
	    [ -S $(RUN_DIR)/bus ] || { echo "Could not start a private dbus-daemon."; exit 1; }; \
	    bus_arg="--bus-address=unix:path=$(RUN_DIR)/bus"; busctl_arg="--address=unix:path=$(RUN_DIR)/bus"; \
	fi; \
	echo "Demo devices timer0 and ram0. Connect QEMU (10.1 or later) with:"; \
	echo "  $(or $(QEMU),qemu-system-x86_64) ... -device '{\"driver\":\"vfio-user-pci\",\"socket\":{\"type\":\"unix\",\"path\":\"$(RUN_DIR)/timer0.sock\"}}'"; \
	echo "  $(or $(QEMU),qemu-system-x86_64) ... -device '{\"driver\":\"vfio-user-pci\",\"socket\":{\"type\":\"unix\",\"path\":\"$(RUN_DIR)/ram0.sock\"}}'"; \
	echo "Inspect a device:  $(MUSERCTL) probe $(RUN_DIR)/timer0.sock"; \
	echo "Manage devices:    busctl $$busctl_arg call org.muserd1 /org/muserd1 org.muserd1.Manager ListDevices"; \
	echo "                   $(MUSERCTL) $$busctl_arg list"; \
	echo "Stop with Ctrl-C."; \
	$(MUSERD) --plugin-dir $(BUILD)/plugins --runtime-dir $(RUN_DIR) $$bus_arg \
	    --device timer:timer0 --device 'ram:ram0:{"size":1048576}'

# Device sockets live in /run/muserd, a tmpfs, in real use: the benchmarks put
# their runtime directories on a tmpfs too (bind() on ext4 costs ~10x more).
BENCH_TMPDIR ?= $(shell [ -d /dev/shm ] && [ -w /dev/shm ] && echo /dev/shm || echo /tmp)

bench: deps
	$(if $(SPDK),@$(MAKE) --no-print-directory deps DEB_PKGS="$(SPDK_DEB_PKGS)")
	$(MAKE) all $(BENCH_BINS)
	@echo "runtime directories in $(BENCH_TMPDIR) ($$(stat -f -c %T $(BENCH_TMPDIR)))"
	@set -e; for b in $(BENCH_BINS); do \
	    TMPDIR=$(BENCH_TMPDIR) MUSERD_BIN=$(MUSERD) MUSERD_PLUGIN_DIR=$(BUILD)/plugins \
	    $(if $(SPDK),SPDK_DIR=$(SPDK)) $$b; done

# ---- fuzzing ----------------------------------------------------------------------
FUZZ_SECONDS ?= 60
FUZZ_DIR := build/fuzz
# The gcc build holds the warnings; clang's own (GNU extensions we use,
# vasprintf wrappers) do not stop the instrumented one.
FUZZ_CLANG_NOWARN := -Wno-error
FUZZ_CC := clang -std=gnu11 -D_GNU_SOURCE -g -O1 -fsanitize=fuzzer,address,undefined -Iinclude -Isrc
# fuzz-codec: the message decoders alone. fuzz-stream: the migration stream's
# loader on in-process devices, so it links the whole core, built with clang
# and coverage into $(FUZZ_DIR)/core; the plugins it loads are make's own.
# fuzz-nvme-cmd: the nvme plugin's command checks and data pointer parser.
fuzz:
	@$(MAKE) --no-print-directory deps DEB_PKGS="clang libclang-rt-14-dev"
	@$(MAKE) --no-print-directory all
	@$(MAKE) --no-print-directory BUILD=$(FUZZ_DIR)/core CC=clang SAN=fuzz \
	    CFLAGS="-O1 -g $(FUZZ_CLANG_NOWARN)" $(FUZZ_DIR)/core/libmuserd-core.a
	@mkdir -p $(FUZZ_DIR)/corpus $(FUZZ_DIR)/stream-corpus $(FUZZ_DIR)/nvme-cmd-corpus
	$(FUZZ_CC) tests/fuzz/fuzz-codec.c src/vfu/codec.c -o $(FUZZ_DIR)/fuzz-codec
	$(FUZZ_CC) tests/fuzz/fuzz-nvme-cmd.c $(NVME_PURE_SRC) -o $(FUZZ_DIR)/fuzz-nvme-cmd
	$(FUZZ_CC) $(PKG_CFLAGS) tests/fuzz/fuzz-stream.c $(FUZZ_DIR)/core/libmuserd-core.a \
	    -o $(FUZZ_DIR)/fuzz-stream $(PKG_LIBS) -ldl
	$(FUZZ_DIR)/fuzz-codec -max_total_time=$(FUZZ_SECONDS) -artifact_prefix=$(FUZZ_DIR)/ $(FUZZ_DIR)/corpus
	$(FUZZ_DIR)/fuzz-nvme-cmd -max_total_time=$(FUZZ_SECONDS) -artifact_prefix=$(FUZZ_DIR)/ \
	    $(FUZZ_DIR)/nvme-cmd-corpus
	MUSERD_PLUGIN_DIR=$(BUILD)/plugins MUSERD_FUZZ_SEED_DIR=$(FUZZ_DIR)/stream-corpus \
	    $(FUZZ_DIR)/fuzz-stream -max_total_time=$(FUZZ_SECONDS) -artifact_prefix=$(FUZZ_DIR)/ \
	    $(FUZZ_DIR)/stream-corpus

# ---- install --------------------------------------------------------------------
# What `make install` puts where, as MODE:FILE:DESTINATION; `make uninstall`
# and the install test (tests/install/) read the same list.
# The system bus reads policy and activation files from /usr/share/dbus-1
# (and /etc/dbus-1) only, whatever PREFIX is: DBUSDIR stays there.
MANPAGES := $(wildcard man/*.[0-9])
INSTALL_FILES := \
    755:$(MUSERD):$(SBINDIR)/muserd \
    755:$(MUSERCTL):$(BINDIR)/muserctl \
    $(foreach p,$(PLUGIN_SOS),755:$(p):$(PLUGINDIR)/$(notdir $(p))) \
    $(foreach h,$(wildcard include/muserd/*.h),644:$(h):$(INCLUDEDIR)/muserd/$(notdir $(h))) \
    644:$(BUILD)/muserd-plugin.pc:$(LIBDIR)/pkgconfig/muserd-plugin.pc \
    644:$(BUILD)/systemd/muserd.service:$(SYSTEMDUNITDIR)/muserd.service \
    644:$(BUILD)/systemd/muserd-device@.socket:$(SYSTEMDUNITDIR)/muserd-device@.socket \
    644:systemd/sysusers.d/muserd.conf:$(SYSUSERSDIR)/muserd.conf \
    644:$(BUILD)/systemd/tmpfiles.d/muserd.conf:$(TMPFILESDIR)/muserd.conf \
    755:systemd/libvirt-qemu-hook:$(DATADIR)/muserd/libvirt-qemu-hook \
    644:systemd/libvirt-domain-example.xml:$(DATADIR)/muserd/libvirt-domain-example.xml \
    644:dbus/org.muserd1.conf:$(DBUSDIR)/system.d/org.muserd1.conf \
    644:dbus/org.muserd1.service:$(DBUSDIR)/system-services/org.muserd1.service \
    644:dbus/org.muserd1.Manager.xml:$(DBUSDIR)/interfaces/org.muserd1.Manager.xml \
    644:dbus/org.muserd1.Device.xml:$(DBUSDIR)/interfaces/org.muserd1.Device.xml \
    $(foreach m,$(MANPAGES),644:$(m):$(MANDIR)/man$(subst .,,$(suffix $(m)))/$(notdir $(m)))
install_field = $(word $(1),$(subst :, ,$(2)))
# Directories that are muserd's alone: uninstall removes them once empty.
OWN_DIRS := $(PLUGINDIR) $(LIBDIR)/muserd $(INCLUDEDIR)/muserd $(DATADIR)/muserd

install: all
	@set -e; $(foreach f,$(INSTALL_FILES),\
	    printf '  %-8s %s\n' INSTALL '$(DESTDIR)$(call install_field,3,$(f))'; \
	    install -Dm$(call install_field,1,$(f)) '$(call install_field,2,$(f))' \
	        '$(DESTDIR)$(call install_field,3,$(f))';)
	@install -d $(DESTDIR)$(PLUGINDIR)

uninstall:
	@$(foreach f,$(INSTALL_FILES),\
	    printf '  %-8s %s\n' RM '$(DESTDIR)$(call install_field,3,$(f))'; \
	    rm -f '$(DESTDIR)$(call install_field,3,$(f))';)
	@for d in $(OWN_DIRS); do rmdir "$(DESTDIR)$$d" 2>/dev/null || true; done

# MODE DESTINATION, one per line: what the install test checks.
install-manifest:
	@$(foreach f,$(INSTALL_FILES),echo '$(call install_field,1,$(f)) $(call install_field,3,$(f))';)

# cppcheck does not understand __attribute__((cleanup)), so its leak checks
# only produce false alarms here; LeakSanitizer in `make check` covers leaks.
# A control character in a man page (a form feed where a script took a
# troff font escape for a C one) prints as garbage.
lint:
	clang-format --dry-run --Werror $$(git ls-files '*.c' '*.h')
	cppcheck --quiet --error-exitcode=1 --enable=warning,portability --inline-suppr \
	    --suppress=memleak --suppress=resourceLeak --suppress=leakReturnValNotUsed \
	    -Iinclude -Isrc -D__GNUC__ src plugins
	@! grep -nP '[\x00-\x08\x0b-\x1f]' man/* || { echo "control characters in man pages (above)"; exit 1; }

clean:
	rm -rf build

-include $(shell find $(BUILD)/obj -name '*.d' 2>/dev/null)
