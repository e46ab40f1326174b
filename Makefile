# lightjail for Linux: build, test, demo, install, bench.
# Every target that needs Debian packages installs the missing ones first (as root).

PREFIX      ?= /usr/local
BWRAP       ?= no
DESTDIR     ?=
LJ_TEST_DIR ?= /tmp/lj-test
LJ_DEBIAN_WORLD ?= /var/tmp/lj-debian-world
LJ_DEBIAN_SYSTEMD_WORLD ?= /var/tmp/lj-debian-systemd-world
LJ_DEBIAN_PODMAN_WORLD ?= /var/tmp/lj-debian-podman-world
LJ_DEBIAN_MACHINED_WORLD ?= /var/tmp/lj-debian-machined-world
CARGO       ?= cargo
TRIPLE      := $(shell rustc -vV 2>/dev/null | sed -n 's/^host: //p')
# ljspawn is linked statically against musl: no dynamic loader, and none of glibc's start-up
# work (its cache-size probing runs dozens of CPUID instructions, each a VM exit on a virtual
# machine: about 0.1 ms of every spawn there).
MUSL        := $(subst -gnu,-musl,$(TRIPLE))
BIN         := target/release
# The recipes use ./target (tests/prepare.sh is told so); a CARGO_TARGET_DIR would hide it.
unexport CARGO_TARGET_DIR

# What the builds, tests, demo and benchmarks use from Debian.
APT_PACKAGES := busybox-static uidmap bubblewrap hyperfine iproute2 debootstrap buildah \
                libseccomp-dev pkg-config util-linux procps python3 ca-certificates \
                docker-registry skopeo umoci apache2-utils systemd-container flatpak \
                qemu-system-x86 cpio e2fsprogs btrfs-progs xfsprogs passt openssl podman runc

# CI=true: a test that cannot run fails instead of skipping.
ifeq ($(CI),true)
export LJ_MUST_WORK := 1
endif

.PHONY: all deps build test test-vm demo install install-setuid bench clean clean-test-host

# The default: the release binaries.
all: build

# Install the Debian packages that are missing (nothing when all are there).
deps:
	@missing=""; for p in $(APT_PACKAGES); do \
	    dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q 'ok installed' || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	    if [ "$$(id -u)" != 0 ]; then echo "make: missing Debian packages; as root: apt-get install$$missing"; exit 1; fi; \
	    echo "make: installing$$missing"; \
	    export DEBIAN_FRONTEND=noninteractive; \
	    apt-get update -qq && apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	fi
	@command -v cargo-nextest >/dev/null 2>&1 || $(CARGO) install --locked cargo-nextest
	@$(CARGO) fmt --version >/dev/null 2>&1 && $(CARGO) clippy --version >/dev/null 2>&1 || \
	    rustup component add rustfmt clippy
	@rustup target list --installed 2>/dev/null | grep -qx '$(MUSL)' || timeout 600 rustup target add $(MUSL) || \
	    echo "make: warning: cannot add the Rust target $(MUSL); ljspawn is linked statically against glibc instead"

# Release binaries in target/release. ljspawn is linked statically (a static PIE, against
# musl): no dynamic loader runs at every spawn (about 0.3 ms of a 3 ms jail), nor glibc's
# start-up (see MUSL above).
build: deps
	$(CARGO) build --release --workspace --locked
	@if rustup target list --installed 2>/dev/null | grep -qx '$(MUSL)'; then \
	    echo "$(CARGO) build --release --locked -p ljspawn --target $(MUSL)"; \
	    $(CARGO) build --release --locked -p ljspawn --target $(MUSL) && \
	    install -m 0755 target/$(MUSL)/release/ljspawn $(BIN)/ljspawn; \
	else \
	    echo "make: warning: no Rust target $(MUSL) (rustup target add $(MUSL)): ljspawn is linked statically against glibc, whose start-up is slower"; \
	    RUSTFLAGS="-C target-feature=+crt-static" $(CARGO) build --release --locked -p ljspawn --target $(TRIPLE) && \
	    install -m 0755 target/$(TRIPLE)/release/ljspawn $(BIN)/ljspawn; \
	fi
	@# ljail's supervisor, one process per running jail, static too (its own build: it shares
	@# no features with ljspawn): 0.6 MiB resident against musl, 1.3 MiB against glibc, over
	@# 2 MiB dynamically linked (most of that is the dynamic libc's pages).
	@if rustup target list --installed 2>/dev/null | grep -qx '$(MUSL)'; then \
	    echo "$(CARGO) build --release --locked -p ljail-supervisor --target $(MUSL)"; \
	    $(CARGO) build --release --locked -p ljail-supervisor --target $(MUSL) && \
	    install -m 0755 target/$(MUSL)/release/ljail-supervisor $(BIN)/ljail-supervisor; \
	else \
	    RUSTFLAGS="-C target-feature=+crt-static" $(CARGO) build --release --locked -p ljail-supervisor --target $(TRIPLE) && \
	    install -m 0755 target/$(TRIPLE)/release/ljail-supervisor $(BIN)/ljail-supervisor; \
	fi
	@# ljail itself, static too (against glibc: its C dependencies want a C compiler for the
	@# target, and it calls nothing of glibc's that loads libraries: no NSS, no dlopen): no
	@# dynamic loader at every command, 0.6 ms of CPU for `ljail status` instead of 1.3, on the
	@# path of every `ljail start`.
	RUSTFLAGS="-C target-feature=+crt-static" $(CARGO) build --release --locked -p ljail --target $(TRIPLE)
	install -m 0755 target/$(TRIPLE)/release/ljail $(BIN)/ljail

# Everything CI checks, the test runner's summary last: format, lints, then every test
# (unit, property, end-to-end as root, rootless and setuid; see tests/prepare.sh), and the
# kernel VM tier (Debian 12's kernel under qemu; see tests/vm/run.sh), whose checks are the
# vm:: tests.
test: build
	$(CARGO) fmt --all --check
	$(CARGO) clippy --workspace --all-targets --locked -- -D warnings
	LJ_TEST_DIR=$(LJ_TEST_DIR) LJ_DEBIAN_WORLD=$(LJ_DEBIAN_WORLD) LJ_DEBIAN_SYSTEMD_WORLD=$(LJ_DEBIAN_SYSTEMD_WORLD) LJ_DEBIAN_PODMAN_WORLD=$(LJ_DEBIAN_PODMAN_WORLD) LJ_DEBIAN_MACHINED_WORLD=$(LJ_DEBIAN_MACHINED_WORLD) LJ_BIN_SRC=$(CURDIR)/$(BIN) sh tests/prepare.sh
	LJ_TEST_DIR=$(LJ_TEST_DIR) LJ_BIN_SRC=$(CURDIR)/$(BIN) sh tests/vm/run.sh
	LJ_TEST_DIR=$(LJ_TEST_DIR) LJ_DEBIAN_WORLD=$(LJ_DEBIAN_WORLD) LJ_DEBIAN_SYSTEMD_WORLD=$(LJ_DEBIAN_SYSTEMD_WORLD) LJ_DEBIAN_PODMAN_WORLD=$(LJ_DEBIAN_PODMAN_WORLD) LJ_DEBIAN_MACHINED_WORLD=$(LJ_DEBIAN_MACHINED_WORLD) $(CARGO) nextest run --workspace --locked --no-fail-fast

# Only the kernel VM tier: boot Debian 12's kernel, run its checks, report them as tests.
test-vm: build
	LJ_TEST_DIR=$(LJ_TEST_DIR) LJ_BIN_SRC=$(CURDIR)/$(BIN) sh tests/vm/run.sh
	LJ_TEST_DIR=$(LJ_TEST_DIR) $(CARGO) nextest run -p lj-tests --locked --no-fail-fast -E 'binary(vm)'

# Build, make a busybox world in a temporary root, build a sample Jailfile on it, and spawn
# commands in jails. Leaves nothing behind.
demo: build
	@set -e; tmp=$$(mktemp -d /tmp/lj-demo.XXXXXX); trap 'rm -rf --one-file-system "$$tmp"' EXIT; \
	export LIGHTJAIL_ROOT=$$tmp/root; \
	run() { printf '+'; for a in "$$@"; do case $$a in \
	    *[!A-Za-z0-9_./:=@%+-]*) printf " '%s'" "$$a";; *) printf ' %s' "$$a";; esac; done; echo; "$$@"; }; \
	run worlds/busybox/make-world.sh $$tmp/busybox; \
	run $(BIN)/ljspawn --root $$tmp/busybox --hostname demo -- /bin/sh -c 'echo "hello from $$(hostname): $$(id)"; ls /'; \
	run $(BIN)/ljspawn --layer $$tmp/busybox -- /bin/sh -c 'echo scratch > /etc/motd && cat /etc/motd'; \
	run $(BIN)/ljspawn -d $$tmp/busybox -n old-style -0 -p 'echo "$$(id -un) on $$(hostname)"'; \
	run $(BIN)/ljspawn --root $$tmp/busybox -- /bin/sh -c 'exit 3' || echo "exit status $$?"; \
	run $(BIN)/ljbuild world import busybox $$tmp/busybox; \
	mkdir -p $$tmp/hello; \
	printf '%s\n' 'name demo/hello' 'version 1.0' '---' 'echo "built on $$(date)" > /hello' > $$tmp/hello/Jailfile; \
	run cat $$tmp/hello/Jailfile; \
	run $(BIN)/ljbuild $$tmp/hello/Jailfile; \
	run $(BIN)/ljbuild $$tmp/hello/Jailfile; \
	run $(BIN)/ljbuild list; \
	run $(BIN)/ljbuild run demo/hello -- /bin/cat /hello

# Binaries, man pages and shell completions under $(DESTDIR)$(PREFIX). BWRAP=yes also links
# bin/bwrap to ljspawn, which then takes bubblewrap's command line (README: "bwrap form").
install: build
	$(CARGO) run --release --locked -q -p ljbuild --features gen-docs --bin lj-gen-docs -- target/docs
	$(CARGO) run --release --locked -q -p ljail --features gen-docs --bin ljail-gen-docs -- target/docs
	install -d $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(PREFIX)/share/man/man1 \
	    $(DESTDIR)$(PREFIX)/share/bash-completion/completions \
	    $(DESTDIR)$(PREFIX)/share/zsh/site-functions $(DESTDIR)$(PREFIX)/share/fish/vendor_completions.d
	install -m 0755 $(BIN)/ljspawn $(BIN)/ljbuild $(BIN)/ljail $(BIN)/ljail-supervisor $(DESTDIR)$(PREFIX)/bin/
	install -m 0644 target/docs/man/man1/*.1 $(DESTDIR)$(PREFIX)/share/man/man1/
	install -m 0644 target/docs/completions/bash/ljspawn.bash $(DESTDIR)$(PREFIX)/share/bash-completion/completions/ljspawn
	install -m 0644 target/docs/completions/bash/ljbuild.bash $(DESTDIR)$(PREFIX)/share/bash-completion/completions/ljbuild
	install -m 0644 target/docs/completions/bash/ljail.bash $(DESTDIR)$(PREFIX)/share/bash-completion/completions/ljail
	install -m 0644 target/docs/completions/zsh/_ljspawn target/docs/completions/zsh/_ljbuild target/docs/completions/zsh/_ljail $(DESTDIR)$(PREFIX)/share/zsh/site-functions/
	install -m 0644 target/docs/completions/fish/*.fish $(DESTDIR)$(PREFIX)/share/fish/vendor_completions.d/
	@if [ "$(BWRAP)" = yes ]; then ln -sf ljspawn $(DESTDIR)$(PREFIX)/bin/bwrap; \
	    echo "make: $(DESTDIR)$(PREFIX)/bin/bwrap -> ljspawn (bubblewrap's command line)"; fi

# As install, with ljspawn setuid root (for hosts that forbid unprivileged user namespaces,
# and for what /etc/lightjail.conf grants). Must run as root.
install-setuid: install
	chown root:root $(DESTDIR)$(PREFIX)/bin/ljspawn
	chmod 4755 $(DESTDIR)$(PREFIX)/bin/ljspawn

# Side-by-side benchmarks, root and rootless, printing ratios against the targets: spawning
# (ljspawn, bwrap, a namespaces+exec floor) and building (ljbuild, buildah). See bench/README.md.
bench: build
	sh bench/spawn.sh
	sh bench/build.sh
	sh bench/chain.sh
	sh bench/limits.sh
	sh bench/ljail.sh
	sh bench/oci.sh
	sh bench/idmap.sh
	sh bench/parallel.sh

# Remove the build products (target/, benchmark results included).
clean:
	$(CARGO) clean

# Remove what `make test` leaves on the host (see README, "What the tests leave behind"): the
# test user and its subordinate ids, the test directory with its setuid copy, the cached
# Debian world and kernel package, and stale test stores. The Debian packages stay.
clean-test-host:
	-pkill -KILL -u ljtest 2>/dev/null; true
	-id -u ljtest >/dev/null 2>&1 && userdel -r ljtest 2>/dev/null; true
	sed -i '/^ljtest:/d' /etc/subuid /etc/subgid
	rm -rf --one-file-system $(LJ_TEST_DIR) $(LJ_DEBIAN_WORLD) $(LJ_DEBIAN_SYSTEMD_WORLD) $(LJ_DEBIAN_PODMAN_WORLD) $(LJ_DEBIAN_MACHINED_WORLD) $(LJ_DEBIAN_MACHINED_WORLD).new /var/tmp/lj-vm-cache
	rm -rf --one-file-system /var/lib/lj-test-store-* /var/lib/lj-test-shared-* /var/tmp/ljspawn-upper.* \
	    /tmp/lj-tests-etc-lightjail-conf.lock
