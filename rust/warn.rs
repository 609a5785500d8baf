// SPDX-License-Identifier: GPL-2.0

//! `WARN_ON_ONCE()`, which the kernel crate does not have; shared by the modules built from
//! these sources (`#[macro_use]` on this module, declared before the modules that use it).

/// `WARN_ON_ONCE(cond)`: warns the first time `cond` holds at this call site; returns `cond`.
macro_rules! warn_on_once {
    ($cond:expr) => {{
        static WARNED: ::kernel::sync::atomic::Atomic<bool> =
            ::kernel::sync::atomic::Atomic::new(false);
        let cond: bool = $cond;
        if cond && !WARNED.xchg(true, ::kernel::sync::atomic::Relaxed) {
            ::kernel::warn_on!(true);
        }
        cond
    }};
}
