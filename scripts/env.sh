# SPDX-License-Identifier: GPL-2.0
# shellcheck shell=bash
#
# Shared settings for the timed-freeze scripts: where caches live and how
# the kernel toolchain is invoked.  Sourced, never executed.
#
# Everything heavy (tools, kernel sources, kernel builds) lives outside the
# checkout so that a fresh clone reuses it.  Override with TF_CACHE.

TF_CACHE=${TF_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/timed-freeze}
TF_TOOLS=$TF_CACHE/tools
TF_SRC=$TF_CACHE/src
TF_BUILDS=$TF_CACHE/builds
TF_VENV=$TF_TOOLS/venv

# Kernel series we target, and the Debian suite that ships its source.
TF_KSERIES=${TF_KSERIES:-7.3}
TF_KSUITE=${TF_KSUITE:-trixie-backports}

TF_BINDGEN_VERSION=0.71.1
# Pinned: its kernel options are part of the kernel cache key, and the VM
# runner depends on its command line.
TF_VNG_VERSION=1.42
TF_LLVM_VERSION=19
TF_LLVM=/usr/lib/llvm-$TF_LLVM_VERSION/bin/

# Debian's rustc-web ships rust-src beside it (the rustup toolchain does
# not), and rust-web-clippy / rustfmt-web match it.
TF_RUSTC=/usr/bin/rustc
TF_RUSTDOC=/usr/bin/rustdoc
TF_RUST_LIB_SRC=/usr/lib/rustlib/src/rust/library
TF_CLIPPY_DRIVER=/usr/bin/clippy-driver
TF_RUSTFMT=/usr/bin/rustfmt

export LIBCLANG_PATH=/usr/lib/llvm-$TF_LLVM_VERSION/lib
export PATH=$TF_TOOLS/bin:$TF_VENV/bin:$PATH

# The variables every kernel make invocation needs.
tf_kmake_vars() {
	printf '%s\n' \
		"LLVM=$TF_LLVM" \
		"RUSTC=$TF_RUSTC" \
		"RUSTDOC=$TF_RUSTDOC" \
		"RUST_LIB_SRC=$TF_RUST_LIB_SRC" \
		"CLIPPY_DRIVER=$TF_CLIPPY_DRIVER" \
		"RUSTFMT=$TF_RUSTFMT" \
		"BINDGEN=$TF_TOOLS/bin/bindgen"
}

tf_log() { printf '[timed-freeze] %s\n' "$*" >&2; }
tf_die() { printf '[timed-freeze] error: %s\n' "$*" >&2; exit 1; }
