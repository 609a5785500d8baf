// SPDX-License-Identifier: GPL-2.0
//! Generates the UAPI of `/dev/timed-freeze` from its C header,
//! `include/uapi/linux/timed_freeze.h`, as the module's Kbuild does: one definition, in C.

use std::{env, path::PathBuf};

fn main() {
    let header =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../include/uapi/linux/timed_freeze.h");
    println!("cargo:rerun-if-changed={}", header.display());
    let out = PathBuf::from(env::var_os("OUT_DIR").expect("cargo sets OUT_DIR")).join("uapi.rs");
    bindgen::Builder::default()
        .header(header.to_str().expect("a UTF-8 path"))
        .allowlist_type("timed_(freeze|thaw)_.*")
        .allowlist_var("TIMED_(FREEZE|THAW)_.*")
        .derive_default(true)
        .layout_tests(false)
        .generate()
        .expect("bindgen on include/uapi/linux/timed_freeze.h (needs libclang: LIBCLANG_PATH)")
        .write_to_file(out)
        .expect("writing the generated UAPI");
}
