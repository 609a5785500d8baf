# SPDX-License-Identifier: GPL-2.0
#
# timed-freeze top-level Makefile.
#
#   make              build the module against the cached test kernel
#   make KDIR=DIR     build the module against another (built) kernel tree
#   make install      install the modules for the kernel of KDIR (modules_install)
#   make check        set-up, test kernel, module, tests in a VM
#   make demo         the deadlock vector, broken, in a VM (VECTOR=fuse|erofs)
#   make bench        timed freeze vs stock FIFREEZE, side by side, and the RFC
#                     kernel's FIFREEZE with its deadline vs without (results/bench/;
#                     TF_RFC_KDIR=DIR: that RFC kernel instead of make rfc-kernel's)
#   make stress       freezes under load in a VM, then the ioctl fuzzer
#                     (DURATION=30m, 90s, 2h; results/stress/)
#   make kernel       set-up and the cached test kernel only
#   make rfc-kernel   set-up and the upstream RFC series' kernel (patches/rfc/)
#   make check-rfc    the RFC series' KUnit suite and selftests on its kernel
#                     in a VM (results/check-rfc/)
#   make tools        the userspace tools (tools/tfreeze)
#   make man          tools/tfreeze/tfreeze.1
#   make rust-analyzer  rust-project.json for editors
#   make CLIPPY=1     build with clippy
#   make fmt          rustfmt the module's sources
#
# Kbuild reads ./Kbuild; this file is only for people.

SHELL := /bin/bash
SCRIPTS := $(CURDIR)/scripts
ENV := . $(SCRIPTS)/env.sh

# Toolchain variables the kernel build needs (see scripts/env.sh); a user
# building against their own tree can override any of them.
KMAKE_VARS = $(shell $(ENV) && tf_kmake_vars)

ifeq ($(KDIR),)
# Our own test kernel: set it up and build it first when needed.
KDIR_DEP := kernel
KDIR = $(shell $(SCRIPTS)/kernel --dir)
endif

KMAKE = $(MAKE) -C $(KDIR) M=$(CURDIR) $(KMAKE_VARS) $(if $(CLIPPY),CLIPPY=1)

.PHONY: all module install setup kernel rfc-kernel check check-rfc demo bench stress selftests tools man rust-analyzer fmt clean

all: module

setup:
	$(SCRIPTS)/setup

kernel: setup
	$(SCRIPTS)/kernel >/dev/null

# The upstream RFC series (patches/rfc/) applied to the same source, with
# its own config fragment (scripts/kconfig/rfc.config), cached under its
# own key; its tests need neither the module nor the stock kernel.
rfc-kernel: setup
	$(SCRIPTS)/kernel --rfc >/dev/null

module: $(KDIR_DEP)
	$(KMAKE) modules

# Both modules into /lib/modules/<KDIR's release>/updates (Kbuild's
# modules_install for external modules, which runs depmod), for modprobe.
install: module
	$(KMAKE) modules_install

fmt: $(KDIR_DEP)
	$(ENV) && $$TF_RUSTFMT --edition 2021 --config-path $(KDIR)/source/.rustfmt.toml rust/*.rs

rust-analyzer: $(KDIR_DEP)
	$(KMAKE) rust-analyzer

selftests: $(KDIR_DEP)
	$(MAKE) -C selftests KDIR=$(KDIR)

# Userspace tools (Rust, crates from the registry).  env.sh gives bindgen
# the libclang it needs to generate tfreeze's UAPI from the C header.
tools:
	$(ENV) && cargo build --release --quiet --manifest-path tools/tfreeze/Cargo.toml

# tfreeze's man page, from the same definitions as its --help.
man: tools
	tools/tfreeze/target/release/tfreeze --man > tools/tfreeze/tfreeze.1

check: module selftests tools
	$(SCRIPTS)/check

check-rfc: rfc-kernel
	$(SCRIPTS)/check --rfc

bench: module selftests
	$(MAKE) -C tools/bench KDIR=$(KDIR)
	$(SCRIPTS)/bench

# make bench's second VM boots the RFC kernel: TF_RFC_KDIR, else ours
# (make rfc-kernel, on branch rfc-infra).
ifeq ($(TF_RFC_KDIR),)
bench: rfc-kernel
endif

demo: module selftests
	$(SCRIPTS)/demo $(VECTOR)

# DURATION: the stress test's time under load, split between ext4 and xfs.
stress: module selftests
	$(SCRIPTS)/stress $(DURATION)

clean:
	-[ -z "$(KDIR_DEP)" ] || [ ! -d "$(KDIR)" ] || $(KMAKE) clean
	$(MAKE) -C selftests clean
	$(MAKE) -C tools/bench clean
	rm -rf rust-project.json tools/tfreeze/target tools/tfreeze/tfreeze.1
