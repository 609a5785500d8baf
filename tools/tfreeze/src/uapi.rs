// SPDX-License-Identifier: GPL-2.0
//! `include/uapi/linux/timed_freeze.h`, for userspace Rust: the structs and constants are
//! generated from the C header (`build.rs`, bindgen), the ioctls are nix's macros over them.

#[allow(
    dead_code,
    non_camel_case_types,
    non_upper_case_globals,
    clippy::all,
    clippy::pedantic
)]
mod c {
    include!(concat!(env!("OUT_DIR"), "/uapi.rs"));
}

pub use c::{
    timed_freeze_args as FreezeArgs, timed_freeze_force_thaw_args as ForceThawArgs,
    timed_freeze_list_args as ListArgs, timed_freeze_owned as Owned, timed_thaw_args as ThawArgs,
};

/// `TIMED_FREEZE_DEVICE`.
pub const DEVICE: &str = "/dev/timed-freeze";
const _: () = assert!(c::TIMED_FREEZE_DEVICE.len() == DEVICE.len() + 1);

pub const OWNED: u64 = c::TIMED_FREEZE_OWNED as u64;
pub const EXPEDITED: u64 = c::TIMED_FREEZE_EXPEDITED as u64;
pub const TIMEOUT_MAX_NS: u64 = c::TIMED_FREEZE_TIMEOUT_MAX_NS;
pub const RETRIES_MAX: u32 = c::TIMED_FREEZE_RETRIES_MAX;
pub const DEADLINE_MAX_NS: u64 = c::TIMED_FREEZE_DEADLINE_MAX_NS;
pub const OWNED_EXITED: u32 = c::TIMED_FREEZE_OWNED_EXITED;
/// `gave_up` of a commit that gave up: the module's thread still holds the freeze.
pub const WAIT_COMMIT: u32 = c::TIMED_FREEZE_WAIT_COMMIT;
const MAGIC: u8 = c::TIMED_FREEZE_IOC_MAGIC as u8;

nix::ioctl_readwrite!(ioc_freeze, MAGIC, 1, FreezeArgs);
nix::ioctl_write_ptr!(ioc_thaw, MAGIC, 2, ThawArgs);
nix::ioctl_readwrite!(ioc_list, MAGIC, 3, ListArgs);
nix::ioctl_write_ptr!(ioc_force_thaw, MAGIC, 4, ForceThawArgs);
// FITHAW: `_IOWR('X', 120, int)` (include/uapi/linux/fs.h).
nix::ioctl_readwrite!(fithaw, b'X', 120, libc::c_int);

/// The `size` field of an extensible struct: its size as this program knows it.
pub fn size_of<T>() -> u64 {
    std::mem::size_of::<T>() as u64
}

/// What each `TIMED_FREEZE_WAIT_*` of `gave_up` waited for.
pub fn wait_name(wait: u32) -> &'static str {
    match wait {
        c::TIMED_FREEZE_WAIT_LEVEL_WRITE => "SB_FREEZE_WRITE (writers still inside)",
        c::TIMED_FREEZE_WAIT_LEVEL_PAGEFAULT => "SB_FREEZE_PAGEFAULT (page faults still inside)",
        c::TIMED_FREEZE_WAIT_LEVEL_FS => "SB_FREEZE_FS (filesystem-internal writers still inside)",
        c::TIMED_FREEZE_WAIT_UMOUNT => {
            "s_umount (held by somebody else: a mount, a sync or another freeze)"
        }
        c::TIMED_FREEZE_WAIT_PARTIAL => "another freeze of this filesystem in progress",
        c::TIMED_FREEZE_WAIT_WRITEBACK => {
            "the writeback of dirty data (the storage does not take writes)"
        }
        c::TIMED_FREEZE_WAIT_JOURNAL => {
            "the filesystem's journal or log commit (the storage does not take writes)"
        }
        c::TIMED_FREEZE_WAIT_COMMIT => {
            "the filesystem's own freeze (->freeze_fs(): the storage does not take writes; \
             undone when it does)"
        }
        _ => "none",
    }
}

/// Whether `gave_up` names one of the freeze levels (it then has writers inside).
pub fn is_level(wait: u32) -> bool {
    (c::TIMED_FREEZE_WAIT_LEVEL_WRITE..=c::TIMED_FREEZE_WAIT_LEVEL_FS).contains(&wait)
}

#[cfg(test)]
mod tests {
    use super::*;
    use nix::{request_code_readwrite, request_code_write};
    use std::mem::size_of;

    #[test]
    #[cfg(target_arch = "x86_64")]
    fn ioctl_numbers_match_the_c_header() {
        // Values the C header's macros give on x86_64.
        assert_eq!(
            request_code_readwrite!(MAGIC, 1, size_of::<FreezeArgs>()),
            0xC050_F701
        );
        assert_eq!(
            request_code_write!(MAGIC, 2, size_of::<ThawArgs>()),
            0x4018_F702
        );
        assert_eq!(
            request_code_readwrite!(MAGIC, 3, size_of::<ListArgs>()),
            0xC020_F703
        );
        assert_eq!(
            request_code_write!(MAGIC, 4, size_of::<ForceThawArgs>()),
            0x4018_F704
        );
        assert_eq!(
            request_code_readwrite!(b'X', 120, size_of::<libc::c_int>()),
            0xC004_5878
        );
    }

    #[test]
    fn sizes_are_the_published_versions() {
        assert_eq!(
            size_of::<FreezeArgs>(),
            c::TIMED_FREEZE_ARGS_SIZE_VER2 as usize
        );
        assert_eq!(size_of::<ThawArgs>(), c::TIMED_THAW_ARGS_SIZE_VER0 as usize);
        assert_eq!(size_of::<Owned>(), c::TIMED_FREEZE_OWNED_SIZE_VER0 as usize);
    }
}
