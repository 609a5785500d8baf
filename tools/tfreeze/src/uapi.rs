// SPDX-License-Identifier: GPL-2.0
//! `include/uapi/linux/timed_freeze.h`, for userspace Rust.

use std::mem::size_of;

pub const DEVICE: &str = "/dev/timed-freeze";
pub const OWNED: u64 = 1 << 0;
pub const EXPEDITED: u64 = 1 << 1;
pub const TIMEOUT_MAX_NS: u64 = 60 * 1_000_000_000;
pub const RETRIES_MAX: u32 = 16;

/// `struct timed_freeze_args`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct FreezeArgs {
    pub size: u64,
    pub flags: u64,
    pub timeout_ns: u64,
    pub fd: i32,
    pub retries: u32,
    pub attempts: u32,
    pub timed_out_level: u32,
    pub elapsed_ns: u64,
    pub writers_inside: u64,
}

/// `struct timed_thaw_args`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct ThawArgs {
    pub size: u64,
    pub flags: u64,
    pub fd: i32,
    pub reserved: u32,
}

/// `TIMED_FREEZE_ARGS_SIZE_VER0` and `TIMED_THAW_ARGS_SIZE_VER0`.
const _: () = assert!(size_of::<FreezeArgs>() == 56);
const _: () = assert!(size_of::<ThawArgs>() == 24);

const IOC_WRITE: u64 = 1;
const IOC_READ: u64 = 2;
const MAGIC: u64 = 0xF7;

const fn ioc(dir: u64, nr: u64, size: usize) -> u64 {
    (dir << 30) | ((size as u64) << 16) | (MAGIC << 8) | nr
}

/// `TIMED_FREEZE_IOC_FREEZE`: `_IOWR(0xF7, 1, struct timed_freeze_args)`.
pub const IOC_FREEZE: u64 = ioc(IOC_READ | IOC_WRITE, 1, size_of::<FreezeArgs>());
/// `TIMED_FREEZE_IOC_THAW`: `_IOW(0xF7, 2, struct timed_thaw_args)`.
pub const IOC_THAW: u64 = ioc(IOC_WRITE, 2, size_of::<ThawArgs>());
/// `FITHAW`: `_IOWR('X', 120, int)`.
pub const FITHAW: u64 = 0xC004_5878;

/// The freeze level names of `timed_out_level`.
pub fn level_name(level: u32) -> &'static str {
    match level {
        1 => "SB_FREEZE_WRITE (writes)",
        2 => "SB_FREEZE_PAGEFAULT (page faults)",
        3 => "SB_FREEZE_FS (filesystem-internal writers)",
        _ => "none",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ioctl_numbers_match_the_c_header() {
        // Values the C header's macros give on x86_64.
        assert_eq!(IOC_FREEZE, 0xC038_F701);
        assert_eq!(IOC_THAW, 0x4018_F702);
    }
}
