// SPDX-License-Identifier: GPL-2.0

//! `freeze_super()` with a deadline, retries and a complete undo.
//!
//! [`timed_freeze_super`] runs attempts of [`freeze_attempt`], a step-by-step mirror of
//! `freeze_super()` (fs/super.c, Linux 7.3) whose three waits for writers
//! (`sb_wait_write()`) are [`PercpuRwSem::down_write_timeout`] against one deadline per
//! attempt, and whose wait for another freezer (`wait_for_partially_frozen()`) is timed
//! against the same deadline. When an attempt times out, it undoes itself completely before
//! returning, in the order of `freeze_super()`'s own error paths: `s_writers.frozen` back to
//! `SB_UNFROZEN`, the levels it holds released in reverse order (`sb_freeze_unlock()`),
//! waiters on `s_writers.frozen` woken, and the active reference dropped with `s_umount`
//! held (`deactivate_locked_super()`). The writers the attempt had blocked then run, which
//! is what breaks an R->W->R chain through a userspace daemon; after a short back-off the
//! next attempt starts.

use crate::ffi;
use crate::percpu_rwsem::{Deadline, GracePeriod, PercpuRwSem, PercpuWriteGuard};
use core::{ffi::c_void, ptr::addr_of_mut};
use kernel::{
    bindings,
    prelude::*,
    time::{Delta, Instant, Monotonic},
    types::Opaque,
};

// fs/super.c: `sb->s_writers.frozen` values (enum in include/linux/fs/super_types.h).
const SB_UNFROZEN: u16 = bindings::SB_UNFROZEN as u16;
const SB_FREEZE_WRITE: u16 = bindings::SB_FREEZE_WRITE as u16;
const SB_FREEZE_PAGEFAULT: u16 = bindings::SB_FREEZE_PAGEFAULT as u16;
const SB_FREEZE_FS: u16 = bindings::SB_FREEZE_FS as u16;
const SB_FREEZE_COMPLETE: u16 = bindings::SB_FREEZE_COMPLETE as u16;

/// `SB_FREEZE_LEVELS` (include/linux/fs/super_types.h).
const SB_FREEZE_LEVELS: usize = SB_FREEZE_COMPLETE as usize - 1;

// `s_flags` bits that are `BIT(n)` macros, which bindgen does not translate
// (include/linux/fs/super_types.h); rust/helpers.c asserts these values at build time.
const SB_RDONLY: usize = 1 << 0;
const SB_BORN: usize = 1 << 29;
const SB_DYING: usize = 1 << 24;

const FREEZE_HOLDER_KERNEL: u32 = bindings::freeze_holder_FREEZE_HOLDER_KERNEL;
const FREEZE_HOLDER_USERSPACE: u32 = bindings::freeze_holder_FREEZE_HOLDER_USERSPACE;
const FREEZE_MAY_NEST: u32 = bindings::freeze_holder_FREEZE_MAY_NEST;
const FREEZE_EXCL: u32 = bindings::freeze_holder_FREEZE_EXCL;
const FREEZE_HOLDERS: u32 = FREEZE_HOLDER_KERNEL | FREEZE_HOLDER_USERSPACE;
const FREEZE_FLAGS: u32 = FREEZE_HOLDERS | FREEZE_MAY_NEST | FREEZE_EXCL;

/// Who holds a freeze.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Holder {
    /// An ordinary userspace freeze, as `FIFREEZE` makes: `FITHAW` thaws it.
    Userspace,
    /// A kernel freeze owned exclusively by `owner` (`FREEZE_EXCL`): only that owner thaws it.
    Owned(*const c_void),
}

impl Holder {
    /// The `enum freeze_holder` bits and owner pointer for `freeze_super()`/`thaw_super()`.
    pub(crate) fn who(self) -> (u32, *const c_void) {
        match self {
            Holder::Userspace => (FREEZE_HOLDER_USERSPACE, core::ptr::null()),
            Holder::Owned(owner) => (FREEZE_HOLDER_KERNEL | FREEZE_EXCL, owner),
        }
    }
}

/// How to freeze.
#[derive(Clone, Copy, Debug)]
pub(crate) struct FreezeParams {
    /// Deadline of each attempt, from its start.
    pub(crate) timeout: Delta,
    /// Attempts after the first.
    pub(crate) retries: u32,
    /// Wait between attempts.
    pub(crate) backoff: Delta,
    /// How readers are switched to the slow path.
    pub(crate) gp: GracePeriod,
    /// Who will hold the freeze.
    pub(crate) holder: Holder,
}

/// What a freeze did, successful or not.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct FreezeReport {
    /// Attempts made.
    pub(crate) attempts: u32,
    /// Time from the start of the first attempt to the return.
    pub(crate) elapsed_ns: u64,
    /// The `SB_FREEZE_*` level whose wait last timed out; 0 when none did.
    pub(crate) timed_out_level: u32,
    /// Writers inside that level when its wait timed out.
    pub(crate) writers_inside: u32,
}

/// A `struct super_block`.
///
/// # Invariants
///
/// The superblock is alive (its `s_active` or a mount pins it) while this can be reached.
#[repr(transparent)]
pub(crate) struct SuperBlock(Opaque<bindings::super_block>);

impl SuperBlock {
    /// # Safety
    ///
    /// `ptr` is a live superblock that stays so for `'a` (e.g. the caller holds an open
    /// file on it).
    pub(crate) unsafe fn from_raw<'a>(ptr: *mut bindings::super_block) -> &'a Self {
        // SAFETY: `repr(transparent)`; live for `'a` per the caller.
        // INVARIANT: per the caller.
        unsafe { &*ptr.cast::<Self>() }
    }

    pub(crate) fn as_raw(&self) -> *mut bindings::super_block {
        self.0.get()
    }

    /// The freeze level `level` (1-based, `SB_FREEZE_WRITE` ..= `SB_FREEZE_FS`).
    fn level(&self, level: u16) -> &PercpuRwSem {
        let idx = usize::from(level) - 1;
        // SAFETY: `s_writers.rw_sem[]` of a live superblock are initialised semaphores
        // (alloc_super()) that live as long as the superblock; `idx` < SB_FREEZE_LEVELS.
        unsafe { PercpuRwSem::from_raw(addr_of_mut!((*self.as_raw()).s_writers.rw_sem[idx])) }
    }

    /// The filesystem's `super_operations`.
    fn ops(&self) -> &bindings::super_operations {
        // SAFETY: `s_op` of a live superblock points to a static table.
        unsafe { &*(*self.as_raw()).s_op }
    }

    /// Whether the filesystem supports the generic freeze (`->freeze_fs`).
    pub(crate) fn has_freeze_fs(&self) -> bool {
        self.ops().freeze_fs.is_some()
    }

    /// Whether the filesystem freezes itself (`->freeze_super`), bypassing the levels.
    pub(crate) fn has_own_freeze_super(&self) -> bool {
        self.ops().freeze_super.is_some()
    }

    /// The filesystem type's name, for log lines.
    pub(crate) fn fs_name(&self) -> &CStr {
        // SAFETY: `s_type->name` of a live superblock is a static NUL-terminated string.
        unsafe { CStr::from_char_ptr((*(*self.as_raw()).s_type).name) }
    }

    /// `ns_capable(sb->s_user_ns, CAP_SYS_ADMIN)`, the permission check of `FIFREEZE`.
    pub(crate) fn capable_admin(&self) -> bool {
        // SAFETY: `s_user_ns` of a live superblock is a valid user namespace.
        unsafe { bindings::ns_capable((*self.as_raw()).s_user_ns, bindings::CAP_SYS_ADMIN as i32) }
    }

    /// Mirror of `super_lock_excl()` (fs/super.c, static): waits until the superblock is
    /// born or dying, then takes `s_umount` exclusively unless it is dying.
    fn lock_excl(&self) -> Option<UmountGuard<'_>> {
        let sb = self.as_raw();
        // SAFETY: A live superblock; this task does not hold `s_umount`.
        unsafe {
            // wait until the superblock is ready or dying
            ffi::tf_wait_sb_born_or_dying(sb);
            // Don't pointlessly acquire s_umount.
            if self.flags_acquire() & SB_DYING != 0 {
                return None;
            }
            bindings::down_write(addr_of_mut!((*sb).s_umount));
            // Has gone through generic_shutdown_super() in the meantime.
            if (*sb).s_flags & SB_DYING != 0 {
                bindings::up_write(addr_of_mut!((*sb).s_umount));
                return None;
            }
            kernel::warn_on!((*sb).s_flags & SB_BORN == 0);
        }
        // INVARIANT: `s_umount` taken exclusively above.
        Some(UmountGuard { sb: self })
    }

    /// `__super_lock_excl()`: `down_write(&sb->s_umount)`, no born/dying checks (the
    /// caller holds an active reference).
    fn lock_excl_active(&self) -> UmountGuard<'_> {
        // SAFETY: A live superblock; this task does not hold `s_umount`.
        unsafe { bindings::down_write(addr_of_mut!((*self.as_raw()).s_umount)) };
        // INVARIANT: taken above.
        UmountGuard { sb: self }
    }

    /// `super_flags()`: `smp_load_acquire(&sb->s_flags)`.
    fn flags_acquire(&self) -> usize {
        // SAFETY: A live superblock.
        let flags = unsafe {
            &*addr_of_mut!((*self.as_raw()).s_flags).cast::<core::sync::atomic::AtomicUsize>()
        };
        flags.load(core::sync::atomic::Ordering::Acquire)
    }
}

/// `s_umount` of a superblock, held exclusively by this task.
///
/// # Invariants
///
/// This task holds `sb->s_umount` for write.
struct UmountGuard<'a> {
    sb: &'a SuperBlock,
}

impl<'a> UmountGuard<'a> {
    fn raw(&self) -> *mut bindings::super_block {
        self.sb.as_raw()
    }

    fn frozen(&self) -> u16 {
        // SAFETY: `s_writers.frozen` is protected by `s_umount`, which we hold.
        unsafe { (*self.raw()).s_writers.frozen }
    }

    fn set_frozen(&mut self, v: u16) {
        // SAFETY: As above.
        unsafe { (*self.raw()).s_writers.frozen = v };
    }

    /// `wake_up_var(&sb->s_writers.frozen)`.
    fn wake_frozen(&self) {
        // SAFETY: The address is only used as a key.
        unsafe { bindings::wake_up_var(addr_of_mut!((*self.raw()).s_writers.frozen).cast()) };
    }

    fn rdonly(&self) -> bool {
        // SAFETY: `s_flags` of a live superblock; `sb_rdonly()`.
        unsafe { (*self.raw()).s_flags & SB_RDONLY != 0 }
    }

    /// `atomic_inc(&sb->s_active)`.
    fn get_active(&self) {
        // SAFETY: A live superblock whose `s_umount` we hold; freeze_super() does the same.
        unsafe { bindings::atomic_inc(addr_of_mut!((*self.raw()).s_active)) };
    }

    /// `super_unlock_excl()`.
    fn unlock(self) -> &'a SuperBlock {
        let sb = self.sb;
        let _ = core::mem::ManuallyDrop::new(self);
        // SAFETY: Held per the type invariant; released once (the guard is forgotten).
        unsafe { bindings::up_write(addr_of_mut!((*sb.as_raw()).s_umount)) };
        sb
    }

    /// `deactivate_locked_super()`: drops an active reference and `s_umount`.
    fn deactivate(self) {
        let sb = self.sb;
        let _ = core::mem::ManuallyDrop::new(self);
        // SAFETY: `s_umount` held per the type invariant, and an active reference taken by
        // this freeze (get_active()); deactivate_locked_super() releases both.
        unsafe { bindings::deactivate_locked_super(sb.as_raw()) };
    }

    /// Mirror of `may_freeze()` (fs/super.c, static).
    fn may_freeze(&self, who: u32, owner: *const c_void) -> bool {
        let w = self.raw();
        kernel::warn_on!(who & !FREEZE_FLAGS != 0);
        kernel::warn_on!((who & FREEZE_HOLDERS).count_ones() > 1);
        // SAFETY: `s_writers` counters and owner are protected by `s_umount`, which we hold.
        unsafe {
            let sw = &mut (*w).s_writers;
            if who & FREEZE_EXCL != 0 {
                if kernel::warn_on!(who & FREEZE_HOLDER_KERNEL == 0) {
                    return false;
                }
                if kernel::warn_on!(who & !(FREEZE_EXCL | FREEZE_HOLDER_KERNEL) != 0) {
                    return false;
                }
                if kernel::warn_on!(owner.is_null()) {
                    return false;
                }
                // This freeze already has a specific owner.
                if !sw.freeze_owner.is_null() {
                    return false;
                }
                // This is already frozen multiple times so we're just going to take a
                // reference count and mark the freeze as being owned by the caller.
                if sw.freeze_kcount + sw.freeze_ucount != 0 {
                    sw.freeze_owner = owner;
                }
                return true;
            }
            if who & FREEZE_HOLDER_KERNEL != 0 {
                return who & FREEZE_MAY_NEST != 0 || sw.freeze_kcount == 0;
            }
            if who & FREEZE_HOLDER_USERSPACE != 0 {
                return who & FREEZE_MAY_NEST != 0 || sw.freeze_ucount == 0;
            }
        }
        false
    }

    /// Mirror of `freeze_inc()` (fs/super.c, static).
    fn freeze_inc(&mut self, who: u32) -> i32 {
        kernel::warn_on!(who & !FREEZE_FLAGS != 0);
        kernel::warn_on!((who & FREEZE_HOLDERS).count_ones() > 1);
        // SAFETY: Protected by `s_umount`, which we hold.
        unsafe {
            let sw = &mut (*self.raw()).s_writers;
            if who & FREEZE_HOLDER_KERNEL != 0 {
                sw.freeze_kcount += 1;
            }
            if who & FREEZE_HOLDER_USERSPACE != 0 {
                sw.freeze_ucount += 1;
            }
            sw.freeze_kcount + sw.freeze_ucount
        }
    }

    fn set_owner(&mut self, owner: *const c_void) {
        // SAFETY: Protected by `s_umount`, which we hold.
        unsafe { (*self.raw()).s_writers.freeze_owner = owner };
    }

    /// Timed mirror of `wait_for_partially_frozen()` (fs/super.c, static): drops
    /// `s_umount`, waits for `s_writers.frozen` to change until the deadline, retakes it.
    fn wait_for_partially_frozen(mut self, deadline: &Deadline) -> (Self, Result) {
        loop {
            let old = self.frozen();
            let sb = self.unlock();
            let ret = loop {
                // SAFETY: A live superblock (we hold an active reference).
                let r = unsafe {
                    ffi::tf_wait_frozen_change(sb.as_raw(), old, deadline.remaining_jiffies())
                };
                if r > 0 {
                    break Ok(());
                }
                if r < 0 {
                    break Err(EINTR);
                }
                if deadline.passed() {
                    break Err(ETIMEDOUT);
                }
            };
            self = sb.lock_excl_active();
            let frozen = self.frozen();
            if ret.is_err() || frozen == SB_UNFROZEN || frozen == SB_FREEZE_COMPLETE {
                return (self, ret);
            }
        }
    }

    /// `lockdep_sb_freeze_release()` (fs/super.c, static): the levels stay held across the
    /// return to userspace, so lockdep must forget them.
    fn lockdep_freeze_release(&self) {
        for level in (0..SB_FREEZE_LEVELS).rev() {
            // SAFETY: The levels of a live superblock, held by this task.
            unsafe {
                ffi::tf_percpu_rwsem_lockdep_release(
                    addr_of_mut!((*self.raw()).s_writers.rw_sem[level]),
                    0,
                )
            };
        }
    }
}

impl Drop for UmountGuard<'_> {
    fn drop(&mut self) {
        // SAFETY: Held per the type invariant.
        unsafe { bindings::up_write(addr_of_mut!((*self.raw()).s_umount)) };
    }
}

/// The levels one attempt holds, released in reverse order when dropped
/// (`sb_freeze_unlock()`).
struct HeldLevels<'a> {
    held: [Option<PercpuWriteGuard<'a>>; SB_FREEZE_LEVELS],
}

impl<'a> HeldLevels<'a> {
    fn new() -> Self {
        Self {
            held: [None, None, None],
        }
    }

    fn push(&mut self, level: u16, g: PercpuWriteGuard<'a>) {
        self.held[usize::from(level) - 1] = Some(g);
    }

    /// Mirror of `sb_freeze_unlock()` (fs/super.c, static): `percpu_up_write()` from the
    /// highest level taken down to `SB_FREEZE_WRITE`.
    fn unlock(mut self) {
        for g in self.held.iter_mut().rev() {
            drop(g.take());
        }
    }

    /// The freeze succeeded: the levels stay held until `thaw_super()`.
    fn keep(self) {
        for g in self.held.into_iter().flatten() {
            g.keep_held();
        }
    }
}

/// Why an attempt failed, with what the report needs.
struct AttemptError {
    err: Error,
    level: u32,
    writers: u32,
}

impl From<Error> for AttemptError {
    fn from(err: Error) -> Self {
        AttemptError {
            err,
            level: 0,
            writers: 0,
        }
    }
}

/// One attempt: a mirror of `freeze_super()` (fs/super.c), step by step, with timed waits.
fn freeze_attempt(
    sb: &SuperBlock,
    p: &FreezeParams,
    deadline: &Deadline,
) -> Result<(), AttemptError> {
    let (who, owner) = p.holder.who();

    let Some(mut s) = sb.lock_excl() else {
        kernel::warn_on!(true); // "Dying superblock while freezing!"
        return Err(EINVAL.into());
    };
    s.get_active();

    loop {
        // retry:
        if s.frozen() == SB_FREEZE_COMPLETE {
            let ret = if s.may_freeze(who, owner) {
                if kernel::warn_on!(s.freeze_inc(who) == 1) {
                    Err(EINVAL) // The original returns 1 here: a WARN'd impossible state.
                } else {
                    Ok(())
                }
            } else {
                Err(EBUSY)
            };
            // All freezers share a single active reference.
            s.deactivate();
            return ret.map_err(Into::into);
        }

        if s.frozen() != SB_UNFROZEN {
            let (guard, ret) = s.wait_for_partially_frozen(deadline);
            s = guard;
            if let Err(e) = ret {
                s.deactivate();
                return Err(e.into());
            }
            continue; // goto retry
        }
        break;
    }

    if s.rdonly() {
        // Nothing to do really...
        kernel::warn_on!(s.freeze_inc(who) > 1);
        s.set_owner(owner);
        s.set_frozen(SB_FREEZE_COMPLETE);
        s.wake_frozen();
        s.unlock();
        return Ok(());
    }

    let mut levels = HeldLevels::new();

    s.set_frozen(SB_FREEZE_WRITE);
    // Release s_umount to preserve sb_start_write -> s_umount ordering
    let sb = s.unlock();
    let w = sb.level(SB_FREEZE_WRITE).down_write_timeout(deadline, p.gp);
    let mut s = sb.lock_excl_active();
    match w {
        Ok(g) => levels.push(SB_FREEZE_WRITE, g),
        Err(e) => return Err(undo(s, levels, e, SB_FREEZE_WRITE)),
    }

    // Now we go and block page faults...
    s.set_frozen(SB_FREEZE_PAGEFAULT);
    match sb
        .level(SB_FREEZE_PAGEFAULT)
        .down_write_timeout(deadline, p.gp)
    {
        Ok(g) => levels.push(SB_FREEZE_PAGEFAULT, g),
        Err(e) => return Err(undo(s, levels, e, SB_FREEZE_PAGEFAULT)),
    }

    // All writers are done so after syncing there won't be dirty data
    // SAFETY: A live superblock with `s_umount` held, as freeze_super() calls it.
    let ret = unsafe { bindings::sync_filesystem(sb.as_raw()) };
    if ret != 0 {
        return Err(undo(s, levels, Error::from_errno(ret), 0));
    }

    // Now wait for internal filesystem counter
    s.set_frozen(SB_FREEZE_FS);
    match sb.level(SB_FREEZE_FS).down_write_timeout(deadline, p.gp) {
        Ok(g) => levels.push(SB_FREEZE_FS, g),
        Err(e) => return Err(undo(s, levels, e, SB_FREEZE_FS)),
    }

    if let Some(freeze_fs) = sb.ops().freeze_fs {
        // SAFETY: The filesystem's own callback, called as freeze_super() calls it.
        let ret = unsafe { freeze_fs(sb.as_raw()) };
        if ret != 0 {
            pr_err!("VFS:Filesystem freeze failed\n");
            return Err(undo(s, levels, Error::from_errno(ret), 0));
        }
    }

    // For debugging purposes so that fs can warn if it sees write activity when frozen is
    // set to SB_FREEZE_COMPLETE, and for thaw_super().
    kernel::warn_on!(s.freeze_inc(who) > 1);
    s.set_owner(owner);
    s.set_frozen(SB_FREEZE_COMPLETE);
    s.wake_frozen();
    levels.keep();
    s.lockdep_freeze_release();
    s.unlock();
    Ok(())
}

/// The error path of `freeze_super()`, for every level: `frozen = SB_UNFROZEN`,
/// `sb_freeze_unlock()` of the levels held, `wake_up_var()`, `deactivate_locked_super()`.
///
/// `level` is the level whose wait failed (0: not a wait), for the report.
fn undo(mut s: UmountGuard<'_>, levels: HeldLevels<'_>, err: Error, level: u16) -> AttemptError {
    let writers = if level != 0 {
        s.sb.level(level).readers()
    } else {
        0
    };
    s.set_frozen(SB_UNFROZEN);
    levels.unlock();
    s.wake_frozen();
    s.deactivate();
    AttemptError {
        err,
        level: u32::from(level),
        writers,
    }
}

/// Freezes `sb` as `freeze_super()` would, each attempt bounded by `p.timeout`, retrying
/// `p.retries` times after an attempt that timed out. Fills `report` in every case.
pub(crate) fn timed_freeze_super(
    sb: &SuperBlock,
    p: &FreezeParams,
    report: &mut FreezeReport,
) -> Result {
    let start = Instant::<Monotonic>::now();
    let mut ret;
    loop {
        report.attempts += 1;
        let deadline = Deadline::after(p.timeout);
        ret = freeze_attempt(sb, p, &deadline);
        match &ret {
            Err(e) if e.err == ETIMEDOUT => {
                report.timed_out_level = e.level;
                report.writers_inside = e.writers;
                if report.attempts > p.retries {
                    break;
                }
                // Let the writers the attempt blocked run before trying again.
                let ms = u32::try_from(p.backoff.as_millis_ceil()).unwrap_or(u32::MAX);
                // SAFETY: Sleeping is allowed here: no lock is held between attempts.
                unsafe { bindings::msleep(ms) };
            }
            _ => break,
        }
    }
    report.elapsed_ns =
        u64::try_from((Instant::<Monotonic>::now() - start).as_nanos()).unwrap_or(0);
    ret.map_err(|e| e.err)
}
