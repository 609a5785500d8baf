// SPDX-License-Identifier: GPL-2.0

//! Test-only fault points.
//!
//! Off unless armed through debugfs, the way the kernel's own fault injection works
//! (`Documentation/fault-injection/fault-injection.rst`): each point is a `struct fault_attr`
//! with its directory `/sys/kernel/debug/timed_freeze/fail_<point>/` (`probability`,
//! `interval`, `times`, `space`, `verbose`, `task-filter`), created by `rust/helpers.c`. On a
//! kernel without `CONFIG_FAULT_INJECTION_DEBUG_FS` no point ever fails.
//!
//! The selftests arm them to reach paths that only an unlikely timing reaches otherwise.

use crate::helpers;

/// A fault point; the discriminant indexes `tf_fault_attrs[]` in `rust/helpers.c`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u32)]
pub(crate) enum Point {
    /// `fail_level_wait`: a timed wait for a level's writers ends as if its deadline passed,
    /// after it took `block` (so its undo is the full `percpu_up_write()`). Its `level` file
    /// narrows it to one `SB_FREEZE_*` level (0: any).
    LevelWait = 0,
    /// `fail_sync_fs`: the sync under the levels returns `-ETIMEDOUT` without running, as a
    /// filesystem whose storage timed out would.
    SyncFs = 1,
    /// `fail_sync_bdev`: the sync under the levels runs, then its last step (the block
    /// device's) returns `-EIO`: a failure after `->sync_fs()` had its side effects.
    SyncBdev = 2,
    /// `fail_spawn`: the start of an attempt's thread ([`crate::worker`]) fails with `-ENOMEM`,
    /// as `kthread_run()` may; it is started before any level is taken.
    Spawn = 3,
}

/// Creates the `fail_*` directories; call once the `timed_freeze` debugfs directory exists.
pub(crate) fn init() {
    // SAFETY: Looks up our debugfs directory and creates files in it; no preconditions.
    unsafe { helpers::tf_fault_init() }
}

/// Whether `point` fails now (for `Point::LevelWait`, at level `level`).
pub(crate) fn should_fail(point: Point, level: u16) -> bool {
    // SAFETY: Reads and updates the fault attribute's counters only.
    unsafe { helpers::tf_should_fail(point as u32, u32::from(level)) }
}
