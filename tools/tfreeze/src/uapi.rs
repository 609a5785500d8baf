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
    pub gave_up: u32,
    pub reserved: u32,
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

/// `struct timed_freeze_owned`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct Owned {
    pub id: u64,
    pub dev: u64,
    pub age_ns: u64,
    pub pid: i32,
    pub flags: u32,
    pub comm: [u8; 16],
}

/// `struct timed_freeze_list_args`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct ListArgs {
    pub size: u64,
    pub entries: u64,
    pub entry_size: u32,
    pub count: u32,
    pub total: u32,
    pub reserved: u32,
}

/// `struct timed_freeze_force_thaw_args`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct ForceThawArgs {
    pub size: u64,
    pub id: u64,
    pub flags: u64,
}

pub const OWNED_EXITED: u32 = 1 << 0;

/// `TIMED_FREEZE_ARGS_SIZE_VER1`, `TIMED_THAW_ARGS_SIZE_VER0` and the others.
const _: () = assert!(size_of::<FreezeArgs>() == 64);
const _: () = assert!(size_of::<ThawArgs>() == 24);
const _: () = assert!(size_of::<Owned>() == 48);
const _: () = assert!(size_of::<ListArgs>() == 32);
const _: () = assert!(size_of::<ForceThawArgs>() == 24);

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
/// `TIMED_FREEZE_IOC_LIST`: `_IOWR(0xF7, 3, struct timed_freeze_list_args)`.
pub const IOC_LIST: u64 = ioc(IOC_READ | IOC_WRITE, 3, size_of::<ListArgs>());
/// `TIMED_FREEZE_IOC_FORCE_THAW`: `_IOW(0xF7, 4, struct timed_freeze_force_thaw_args)`.
pub const IOC_FORCE_THAW: u64 = ioc(IOC_WRITE, 4, size_of::<ForceThawArgs>());
/// `FITHAW`: `_IOWR('X', 120, int)`.
pub const FITHAW: u64 = 0xC004_5878;

/// What each `TIMED_FREEZE_WAIT_*` of `gave_up` waited for.
pub fn wait_name(wait: u32) -> &'static str {
    match wait {
        1 => "SB_FREEZE_WRITE (writers still inside)",
        2 => "SB_FREEZE_PAGEFAULT (page faults still inside)",
        3 => "SB_FREEZE_FS (filesystem-internal writers still inside)",
        4 => "s_umount (held by somebody else: a mount, a sync or another freeze)",
        5 => "another freeze of this filesystem in progress",
        6 => "the writeback of dirty data (the storage does not take writes)",
        7 => "the filesystem's journal or log commit (the storage does not take writes)",
        _ => "none",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ioctl_numbers_match_the_c_header() {
        // Values the C header's macros give on x86_64.
        assert_eq!(IOC_FREEZE, 0xC040_F701);
        assert_eq!(IOC_THAW, 0x4018_F702);
        assert_eq!(IOC_LIST, 0xC020_F703);
        assert_eq!(IOC_FORCE_THAW, 0x4018_F704);
    }
}
