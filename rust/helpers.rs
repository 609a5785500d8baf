// SPDX-License-Identifier: GPL-2.0

//! The C helpers of `rust/helpers.c`, declared for Rust.
//!
//! Each exists because of a static inline function, a macro or a static function of the
//! kernel that bindgen cannot turn into a callable function; see that file for what each one
//! is. All are `unsafe` to call: the pointers must be valid as the kernel functions they
//! call require.

use kernel::{bindings, prelude::*};

// The bindgen types of these pointers contain empty structs, which the lint cannot tell
// apart from unsized ones; the kernel's own `bindings` crate allows it for the same reason.
#[allow(improper_ctypes)]
extern "C" {
    pub(crate) fn tf_percpu_rwsem_lockdep_acquire(
        sem: *mut bindings::percpu_rw_semaphore,
        ip: c_ulong,
    );
    pub(crate) fn tf_percpu_rwsem_lockdep_adopt(
        sem: *mut bindings::percpu_rw_semaphore,
        ip: c_ulong,
    );
    pub(crate) fn tf_percpu_rwsem_lockdep_release(
        sem: *mut bindings::percpu_rw_semaphore,
        ip: c_ulong,
    );
    pub(crate) fn tf_percpu_rwsem_readers(sem: *mut bindings::percpu_rw_semaphore) -> c_uint;
    pub(crate) fn tf_percpu_down_read(sem: *mut bindings::percpu_rw_semaphore);
    pub(crate) fn tf_percpu_up_read(sem: *mut bindings::percpu_rw_semaphore);
    pub(crate) fn tf_percpu_down_read_trylock(sem: *mut bindings::percpu_rw_semaphore) -> bool;
    pub(crate) fn tf_percpu_rwsem_wait_block(
        sem: *mut bindings::percpu_rw_semaphore,
        timeout: c_long,
    ) -> c_int;
    pub(crate) fn tf_prepare_to_rcuwait(w: *mut bindings::rcuwait);
    pub(crate) fn tf_set_current_state_killable();
    pub(crate) fn tf_fatal_signal_pending() -> bool;
    pub(crate) fn tf_spin_lock_irq(lock: *mut bindings::spinlock_t);
    pub(crate) fn tf_spin_unlock_irq(lock: *mut bindings::spinlock_t);
    pub(crate) fn tf_spin_lock_irqsave(lock: *mut bindings::spinlock_t) -> c_ulong;
    pub(crate) fn tf_spin_unlock_irqrestore(lock: *mut bindings::spinlock_t, flags: c_ulong);
    pub(crate) fn tf_wake_up_locked(wq: *mut bindings::wait_queue_head);
    pub(crate) fn tf_wait_state_at_least(
        wq: *mut bindings::wait_queue_head,
        state: *mut c_int,
        passed: c_int,
    );
    pub(crate) fn tf_wait_frozen_change(
        sb: *mut bindings::super_block,
        old: u16,
        timeout: c_long,
    ) -> c_long;
    pub(crate) fn tf_wait_sb_born_or_dying(
        sb: *mut bindings::super_block,
        timeout: c_long,
    ) -> c_long;
    pub(crate) fn tf_spawn(
        func: Option<unsafe extern "C" fn(*mut c_void) -> c_int>,
        data: *mut c_void,
        name: *const c_char,
    ) -> c_int;
    pub(crate) fn tf_wait_var_changed(
        var: *mut c_int,
        old: c_int,
        timeout: c_long,
        killable: bool,
    ) -> c_long;
    pub(crate) fn tf_fault_init();
    pub(crate) fn tf_should_fail(point: c_uint, level: c_uint) -> bool;
    pub(crate) fn tf_timeout_log_ratelimit() -> bool;
    pub(crate) fn tf_call_rcu_hurry(
        head: *mut bindings::callback_head,
        func: bindings::rcu_callback_t,
    );
    // rust/stages.c
    fn tf_stage_mark(stage: c_uint);
    fn tf_switch_each_level() -> bool;
    fn tf_retry_fixed_backoff() -> bool;
    pub(crate) fn tf_stages_init();
    pub(crate) fn tf_stages_exit();
}

/// The bench's per-stage clock (`rust/stages.c`): marks that record nothing unless the bench
/// armed the clock for the current task.
pub(crate) mod stage {
    use kernel::prelude::*;

    /// An attempt starts.
    pub(crate) const BEGIN: u32 = 0;
    /// The sync starts (the one before the commit point, and the one at it).
    pub(crate) const SYNC: u32 = 10;
    /// The sync returned.
    pub(crate) const SYNCED: u32 = 11;
    /// The attempt returns.
    pub(crate) const END: u32 = 12;

    /// The reader switch of `level` (1..=3) starts.
    pub(crate) fn switch(level: u16) -> u32 {
        u32::from(level)
    }

    /// The reader switch of `level` is done (its grace period passed).
    pub(crate) fn switched(level: u16) -> u32 {
        3 + u32::from(level)
    }

    /// The writers of `level` have drained.
    pub(crate) fn drained(level: u16) -> u32 {
        6 + u32::from(level)
    }

    /// Marks `id` now.
    pub(crate) fn mark(id: u32) {
        // SAFETY: No preconditions; an unknown id is ignored.
        unsafe { super::tf_stage_mark(id as c_uint) }
    }

    /// For the bench: whether each level's readers are to be switched with a grace period of
    /// their own, as `freeze_super()` does, not all three with one (debugfs
    /// `switch_each_level`, off by default).
    pub(crate) fn switch_each_level() -> bool {
        // SAFETY: Reads a flag; no preconditions.
        unsafe { super::tf_switch_each_level() }
    }

    /// For the bench: whether a freeze retries with the policy before `crate::retry`'s, a
    /// fixed back-off between `retries` + 1 attempts (debugfs `retry_fixed_backoff`, off by
    /// default).
    pub(crate) fn retry_fixed_backoff() -> bool {
        // SAFETY: Reads a flag; no preconditions.
        unsafe { super::tf_retry_fixed_backoff() }
    }
}
