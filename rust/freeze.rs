// SPDX-License-Identifier: GPL-2.0

//! `freeze_super()` with a deadline, retries and a complete undo.
//!
//! [`timed_freeze_super`] runs attempts of [`freeze_attempt`], a step-by-step mirror of
//! `freeze_super()` (fs/super.c, Linux 7.3) and of the static functions it calls. The design
//! (the attempt's steps, the commit point, the sync before it, the undo) is in
//! `Documentation/timed-freeze.rst`; `rust/mirrors.txt` fingerprints the originals. The
//! differences from them (marked `[timed-freeze]` inside [`freeze_attempt`]; the mirrored
//! helpers that differ say how in their own docs):
//!
//! - the attempts, their deadline, the back-off between them and the report are new;
//! - `super_lock_excl()` and `__super_lock_excl()` take `s_umount` by polling
//!   `down_write_trylock()` with a killable sleep, up to the deadline, and wait for
//!   `SB_BORN` killably with the deadline; `wait_for_partially_frozen()` waits with the
//!   deadline and retakes `s_umount` so too;
//! - the three `sb_wait_write()` before the sync are timed and killable
//!   ([`ReaderSwitch::down_write`]); the level-3 one is a drain made before the sync
//!   and released at once, and the level-3 wait after the sync is the kernel's own, untimed;
//! - the readers of the three levels are switched to their slow path before the first
//!   `sb_wait_write()`, all with one grace period ([`switch_levels`]), where each
//!   `percpu_down_write()` waits for one of its own; the switch blocks no reader, only
//!   `block`, taken level by level in the original order, does;
//! - each attempt starts a thread of ours ([`crate::worker`]) before it takes anything;
//!   between level 2 and the sync, that thread syncs the filesystem with `s_umount` for read
//!   and the attempt waits for it with the deadline, without `s_umount`; `frozen` is set to
//!   `SB_FREEZE_PAGEFAULT` only at the commit point, not before the level-2 wait;
//! - the commit point and all after it ([`commit`]: the sync, level 3, `->freeze_fs()`, the
//!   freeze made complete) run in that thread, which takes `s_umount` itself; the attempt
//!   hands levels 1 and 2 on to it and waits with the deadline. When the deadline passes
//!   during the commit, the attempt returns and the thread, when the filesystem lets go,
//!   takes the freeze back with `->unfreeze_fs()` ([`unfreeze`]);
//! - `sync_filesystem()` is mirrored ([`sync_steps`]) to tell an error before
//!   `->sync_fs(sb, 1)` succeeded from one after it; after it, the commit goes on to
//!   `->freeze_fs()` and then takes the freeze back with `->unfreeze_fs()`, never showing it
//!   complete, where the original undoes the levels only;
//! - when `s_umount` cannot be had in time, the levels are released without it and our
//!   thread resets `frozen` under it ([`undo_unlocked`]);
//! - `WARN_ONCE(1, "Dying superblock while freezing!")` warns without its message, and
//!   the `WARN_ON_ONCE(freeze_inc() == 1)` case returns `EINVAL` where the original returns 1;
//!   `WARN_ON_ONCE()` is `warn_on_once!` (once per call site) and `WARN_ON()` is
//!   [`kernel::warn_on!`];
//! - every attempt first waits, with its deadline, for the thread of an earlier attempt that
//!   gave up on it ([`worker::wait_in_flight`]);
//! - a fatal signal in the wait for a partial freeze gives `EINTR`, where the original's
//!   `wait_var_event_killable()` gives `-ERESTARTSYS` (the ioctl returns `EINTR` either way
//!   to a task that is being killed);
//! - the assertions `lockdep_assert_not_held(&sb->s_umount)` of `super_lock()` and
//!   `WARN_ON(!rwsem_is_locked(&sb->s_umount))` of `sync_filesystem()` are left out (the
//!   types hold the lock: [`UmountGuard`]);
//! - `lockdep_sb_freeze_release()` passes 0 as the call site, not `_THIS_IP_`;
//! - the fault points ([`crate::fault`]: a level wait, the sync before and after
//!   `->sync_fs()`) are ours, off unless armed;
//! - the bench's stage marks ([`stage::mark`]) are ours, recording nothing unless armed.
//!
//! A freeze without a deadline ([`freeze_untimed`], the system-wide mode's freezes that are not
//! timed) keeps the original's order instead: no thread of ours, each level's readers switched
//! by its own wait, `frozen` at `SB_FREEZE_PAGEFAULT` before the level-2 wait, level 3 waited
//! for after the sync only, `s_umount` taken with `down_write_killable()`. So does a timeout of
//! 0, but for the one grace period and the drain of level 3 before the commit point. What remains of the
//! list above for it: its waits are killable, the sync and the error paths are mirrored as
//! said, and the `WARN`s, assertions and marks.

use crate::fault;
use crate::helpers::stage;
use crate::percpu_rwsem::{Deadline, PercpuRwSem, PercpuWriteGuard, ReaderSwitch};
use crate::rcu_sync::GracePeriod;
use crate::worker::{self, CommitError, WorkerError, WorkerHandle};
use crate::{helpers, retry, uapi};
use core::{cell::Cell, ffi::c_void, ptr::addr_of_mut};
use kernel::{
    bindings,
    fs::File,
    prelude::*,
    sync::atomic::{Acquire, Atomic, Full, Relaxed},
    time::{Delta, Instant, Monotonic},
    types::{Opaque, ScopeGuard},
};

// fs/super.c: `sb->s_writers.frozen` values (enum in include/linux/fs/super_types.h).
const SB_UNFROZEN: u16 = bindings::SB_UNFROZEN as u16;
const SB_FREEZE_WRITE: u16 = bindings::SB_FREEZE_WRITE as u16;
const SB_FREEZE_PAGEFAULT: u16 = bindings::SB_FREEZE_PAGEFAULT as u16;
const SB_FREEZE_FS: u16 = bindings::SB_FREEZE_FS as u16;
const SB_FREEZE_COMPLETE: u16 = bindings::SB_FREEZE_COMPLETE as u16;

/// The longest sleep between two tries for `s_umount` (`lock_excl_active()`).
const UMOUNT_POLL_MAX_MS: u32 = 16;

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
    /// Whatever a caller of `freeze_super()` passed (the system-wide mode, which replaces
    /// it): `enum freeze_holder` bits and owner as given.
    #[cfg_attr(not(tf_livepatch), allow(dead_code))]
    Caller(u32, *const c_void),
}

impl Holder {
    /// The `enum freeze_holder` bits and owner pointer for `freeze_super()`/`thaw_super()`.
    pub(crate) fn who(self) -> (u32, *const c_void) {
        match self {
            Holder::Userspace => (FREEZE_HOLDER_USERSPACE, core::ptr::null()),
            Holder::Owned(owner) => (FREEZE_HOLDER_KERNEL | FREEZE_EXCL, owner),
            Holder::Caller(who, owner) => (who, owner),
        }
    }
}

/// How to freeze.
#[derive(Clone, Copy, Debug)]
pub(crate) struct FreezeParams {
    /// Deadline of each attempt, from its start.
    pub(crate) timeout: Delta,
    /// Attempts after the first, at most.
    pub(crate) retries: u32,
    /// The whole call's deadline, from its start; zero for the default
    /// ([`retry::Policy::default_deadline`]).
    pub(crate) deadline: Delta,
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
    /// Attempts a deadline or a fatal signal ended, each undone.
    pub(crate) undone: u32,
    /// Time from the start of the first attempt to the return.
    pub(crate) elapsed_ns: u64,
    /// The `SB_FREEZE_*` level whose wait last timed out; 0 when none did.
    pub(crate) timed_out_level: u32,
    /// Writers inside that level when its wait timed out.
    pub(crate) writers_inside: u32,
    /// `TIMED_FREEZE_WAIT_*`: the wait a deadline or a fatal signal last ended; 0 when none.
    pub(crate) gave_up: u32,
    /// How many attempts gave up at each wait (index: `TIMED_FREEZE_WAIT_*` - 1).
    pub(crate) gave_up_by_wait: [u32; uapi::WAIT_NAMES.len()],
    /// How long the attempts kept writers out, in total ([`BlockClock`]).
    pub(crate) blocked_ns: u64,
}

impl FreezeReport {
    /// What a freeze that failed left behind, for log lines: nothing, but after a commit that
    /// gave up, whose thread holds the freeze until the filesystem lets go.
    pub(crate) fn aftermath(&self) -> &'static str {
        if self.gave_up == uapi::WAIT_COMMIT {
            "the freeze is taken back when the filesystem's own freeze returns"
        } else {
            "nothing left frozen"
        }
    }
}

/// How long a freeze's attempts kept new writers out: the time `block` of `SB_FREEZE_WRITE`
/// was theirs, summed over the attempts, up to the undo or to the freeze. (The levels above
/// it are only taken while it is held.)
#[derive(Default)]
struct BlockClock(Cell<u64>);

impl BlockClock {
    fn add(&self, d: Delta) {
        self.0.set(self.0.get().saturating_add(nanos(d)));
    }
}

/// `d` in nanoseconds, 0 when negative.
fn nanos(d: Delta) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(0)
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
        // INVARIANT: per the caller.
        // SAFETY: `repr(transparent)`; live for `'a` per the caller.
        unsafe { &*ptr.cast::<Self>() }
    }

    /// The superblock of an open file: `file_inode(file)->i_sb`.
    pub(crate) fn from_file(file: &File) -> &Self {
        // SAFETY: An open file has a valid inode, whose superblock stays alive at least as long
        // as the file is open (the file pins its mount).
        unsafe { Self::from_raw((*(*file.as_ptr()).f_inode).i_sb) }
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
    pub(crate) fn ops(&self) -> &bindings::super_operations {
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

    /// `thaw_super(sb, who, owner)`: undoes a freeze of `holder`.
    pub(crate) fn thaw(&self, holder: Holder) -> Result {
        let (who, owner) = holder.who();
        // SAFETY: A live superblock; `thaw_super()` takes `s_umount` itself.
        kernel::error::to_result(unsafe { bindings::thaw_super(self.as_raw(), who, owner) })
    }

    /// Mirror of `super_lock_excl()` (fs/super.c, static), killable and with a deadline:
    /// waits until the superblock is born or dying, then takes `s_umount` exclusively unless
    /// it is dying. `Ok(None)` when it is dying.
    fn lock_excl(&self, deadline: &Deadline) -> Result<Option<UmountGuard<'_>>> {
        // wait until the superblock is ready or dying
        loop {
            // SAFETY: A live superblock.
            let r = unsafe {
                helpers::tf_wait_sb_born_or_dying(self.as_raw(), deadline.remaining_jiffies())
            };
            if r > 0 {
                break;
            }
            if r < 0 {
                return Err(EINTR);
            }
            if deadline.passed() {
                return Err(ETIMEDOUT);
            }
        }
        // Don't pointlessly acquire s_umount.
        if self.flags_acquire() & SB_DYING != 0 {
            return Ok(None);
        }
        let s = self.lock_excl_active(deadline)?;
        // Has gone through generic_shutdown_super() in the meantime.
        if s.flags() & SB_DYING != 0 {
            return Ok(None);
        }
        kernel::warn_on!(s.flags() & SB_BORN == 0);
        Ok(Some(s))
    }

    /// `__super_lock_excl()`: `down_write(&sb->s_umount)`, killable and with a deadline.
    ///
    /// There is no timed `down_write()`: this polls `down_write_trylock()`, with a killable
    /// sleep between tries that doubles from one jiffy up to [`UMOUNT_POLL_MAX_MS`]. A stream of
    /// readers that never leaves it free makes it give up at the deadline; so would a
    /// `down_write()`, only later.
    ///
    /// Without a deadline ([`Deadline::is_never`]) it is `down_write_killable()`: a writer
    /// queued as `down_write()` queues, which new readers do not pass.
    fn lock_excl_active(&self, deadline: &Deadline) -> Result<UmountGuard<'_>> {
        // SAFETY: A live superblock; no reference is made.
        let sem = unsafe { addr_of_mut!((*self.as_raw()).s_umount) };
        if deadline.is_never() {
            // SAFETY: A live superblock's `s_umount`, which this task does not hold; sleeping
            // is allowed (see below).
            kernel::error::to_result(unsafe { bindings::down_write_killable(sem) })
                .map_err(|_| EINTR)?;
            // INVARIANT: taken above.
            return Ok(UmountGuard { sb: self });
        }
        let max = kernel::time::msecs_to_jiffies(UMOUNT_POLL_MAX_MS) as c_long;
        let mut nap: c_long = 1;
        loop {
            // SAFETY: A live superblock's `s_umount`, which this task does not hold.
            if unsafe { bindings::down_write_trylock(sem) } != 0 {
                // INVARIANT: taken above.
                return Ok(UmountGuard { sb: self });
            }
            // SAFETY: Reads the current task's signals only.
            if unsafe { helpers::tf_fatal_signal_pending() } {
                return Err(EINTR);
            }
            let left = deadline.remaining_jiffies();
            if left == 0 {
                return Err(ETIMEDOUT);
            }
            // SAFETY: Sleeping is allowed: no spinlock is held (the caller may hold freeze
            // levels, which are sleeping locks).
            unsafe { bindings::schedule_timeout_killable(nap.min(left)) };
            nap = (nap * 2).min(max.max(1));
        }
    }

    /// `down_write_trylock(&sb->s_umount)`.
    pub(crate) fn try_lock_excl(&self) -> Option<UmountGuard<'_>> {
        // SAFETY: A live superblock's `s_umount`, which this task does not hold.
        if unsafe { bindings::down_write_trylock(addr_of_mut!((*self.as_raw()).s_umount)) } == 0 {
            return None;
        }
        // INVARIANT: taken above.
        Some(UmountGuard { sb: self })
    }

    /// `__super_lock_excl()`: `down_write(&sb->s_umount)`, uninterruptible and without a
    /// deadline; for our thread, whose waits are its own ([`crate::worker`]).
    pub(crate) fn lock_excl_uninterruptible(&self) -> UmountGuard<'_> {
        // SAFETY: A live superblock's `s_umount`, which this task does not hold.
        unsafe { bindings::down_write(addr_of_mut!((*self.as_raw()).s_umount)) };
        // INVARIANT: taken above.
        UmountGuard { sb: self }
    }

    /// What `syncfs(2)` does: [`sync_steps`] under `s_umount` held for read, reporting its
    /// stage to `stage`. The caller holds an active reference.
    pub(crate) fn sync_shared(&self, stage: &dyn Fn(u32)) -> Result {
        // SAFETY: A live superblock; no reference is made.
        let sem = unsafe { addr_of_mut!((*self.as_raw()).s_umount) };
        // SAFETY: A live superblock's `s_umount`, which this task does not hold.
        unsafe { bindings::down_read(sem) };
        let ret = sync_steps(self, stage, false).map_err(Error::from);
        // SAFETY: Taken above.
        unsafe { bindings::up_read(sem) };
        ret
    }

    /// Drops an active reference without waiting for `s_umount`: `deactivate_super()`,
    /// except that the last reference (the filesystem was unmounted meanwhile), whose
    /// `deactivate_locked_super()` needs `s_umount`, is dropped by a thread of ours.
    pub(crate) fn put_active_ref(&self) {
        // SAFETY: `s_active` of a live superblock is an aligned `atomic_t`, only ever
        // accessed atomically.
        let active = unsafe { Atomic::from_ptr(addr_of_mut!((*self.as_raw()).s_active.counter)) };
        // atomic_add_unless(&sb->s_active, -1, 1)
        let mut v = active.load(Relaxed);
        while v != 1 {
            match active.cmpxchg(v, v - 1, Full) {
                Ok(_) => return,
                Err(now) => v = now,
            }
        }
        let data = self.as_raw().cast::<c_void>();
        // SAFETY: `deactivate_main` takes over our active reference on the superblock.
        let ret = unsafe {
            helpers::tf_spawn(Some(deactivate_main), data, c"tf-deactivate".as_char_ptr())
        };
        if ret != 0 {
            pr_warn!(
                "no thread to drop the last reference of an unmounted {}: dropping it here\n",
                self.fs_name()
            );
            // SAFETY: Our active reference, as `deactivate_main` would drop it.
            unsafe { bindings::deactivate_super(self.as_raw()) };
        }
    }

    /// [`reset_frozen`] by a thread of ours, which waits for `s_umount` and takes over the
    /// caller's active reference: for an attempt without a thread of its own (a timeout of 0,
    /// or a fatal signal without a deadline) that gave up and released its levels while
    /// `s_umount` was taken. Here, when no thread can be started.
    fn reset_frozen_later(&self) {
        let data = self.as_raw().cast::<c_void>();
        // SAFETY: `reset_main` takes over our active reference on the superblock.
        let ret =
            unsafe { helpers::tf_spawn(Some(reset_main), data, c"tf-unfreeze".as_char_ptr()) };
        if ret != 0 {
            pr_warn!(
                "no thread to end a partial freeze of {}: waiting for s_umount here\n",
                self.fs_name()
            );
            reset_frozen(self.lock_excl_uninterruptible());
        }
    }

    /// `super_flags()`: `smp_load_acquire(&sb->s_flags)`.
    fn flags_acquire(&self) -> usize {
        // SAFETY: `s_flags` of a live superblock is an aligned `unsigned long`, valid while
        // `self` is. Its writers are `smp_store_release()` (super_wake()) and plain stores
        // under `s_umount`, which the caller need not hold: the same unmarked race with this
        // load that the original `super_flags()` has, on bits (`SB_BORN`, `SB_DYING`) that
        // are set once and never cleared while the superblock lives.
        let flags = unsafe { Atomic::from_ptr(addr_of_mut!((*self.as_raw()).s_flags)) };
        flags.load(Acquire)
    }
}

/// The thread of `SuperBlock::reset_frozen_later()`: resets `frozen` under `s_umount`.
///
/// # Safety
///
/// `data` is a superblock on which the caller's active reference passes to us.
unsafe extern "C" fn reset_main(data: *mut c_void) -> c_int {
    // SAFETY: Per the function's safety requirements, our active reference keeps it alive.
    let sb = unsafe { SuperBlock::from_raw(data.cast()) };
    reset_frozen(sb.lock_excl_uninterruptible());
    0
}

/// The thread of `SuperBlock::put_active_ref()`: drops the last active reference.
///
/// # Safety
///
/// `data` is a superblock on which the caller's active reference passes to us.
unsafe extern "C" fn deactivate_main(data: *mut c_void) -> c_int {
    // SAFETY: Per the function's safety requirements: the reference is ours to drop, and
    // waiting for `s_umount` here is the thread's, not a freezer's.
    unsafe { bindings::deactivate_super(data.cast()) };
    0
}

/// `s_umount` of a superblock, held exclusively by this task.
///
/// # Invariants
///
/// This task holds `sb->s_umount` for write.
pub(crate) struct UmountGuard<'a> {
    sb: &'a SuperBlock,
}

impl<'a> UmountGuard<'a> {
    fn raw(&self) -> *mut bindings::super_block {
        self.sb.as_raw()
    }

    /// `sb->s_flags`, stable against the changes `s_umount` protects.
    fn flags(&self) -> usize {
        // SAFETY: A live superblock; we hold `s_umount`.
        unsafe { (*self.raw()).s_flags }
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

    /// `sb_rdonly()`.
    fn rdonly(&self) -> bool {
        self.flags() & SB_RDONLY != 0
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
        let sw = self.writers();
        warn_on_once!(who & !FREEZE_FLAGS != 0);
        warn_on_once!((who & FREEZE_HOLDERS).count_ones() > 1);

        // SAFETY (this and every block below): `sw` is `&sb->s_writers` of a live
        // superblock; its counters and owner are protected by `s_umount`, which we hold. Each
        // field is read or written through the raw pointer, never through a reference to the
        // whole `struct sb_writers`, whose `rw_sem[]` other CPUs change.
        if who & FREEZE_EXCL != 0 {
            if warn_on_once!(who & FREEZE_HOLDER_KERNEL == 0) {
                return false;
            }
            if warn_on_once!(who & !(FREEZE_EXCL | FREEZE_HOLDER_KERNEL) != 0) {
                return false;
            }
            if warn_on_once!(owner.is_null()) {
                return false;
            }
            // This freeze already has a specific owner.
            // SAFETY: See above.
            if !unsafe { (*sw).freeze_owner }.is_null() {
                return false;
            }
            // This is already frozen multiple times so we're just going to take a reference
            // count and mark the freeze as being owned by the caller.
            // SAFETY: See above.
            if unsafe { (*sw).freeze_kcount + (*sw).freeze_ucount } != 0 {
                // SAFETY: See above.
                unsafe { (*sw).freeze_owner = owner };
            }
            return true;
        }

        if who & FREEZE_HOLDER_KERNEL != 0 {
            // SAFETY: See above.
            return who & FREEZE_MAY_NEST != 0 || unsafe { (*sw).freeze_kcount } == 0;
        }

        if who & FREEZE_HOLDER_USERSPACE != 0 {
            // SAFETY: See above.
            return who & FREEZE_MAY_NEST != 0 || unsafe { (*sw).freeze_ucount } == 0;
        }

        false
    }

    /// Mirror of `freeze_inc()` (fs/super.c, static).
    fn freeze_inc(&mut self, who: u32) -> i32 {
        let sw = self.writers();
        warn_on_once!(who & !FREEZE_FLAGS != 0);
        warn_on_once!((who & FREEZE_HOLDERS).count_ones() > 1);

        // SAFETY (each block): as in `may_freeze()`: protected by `s_umount`, field by field.
        if who & FREEZE_HOLDER_KERNEL != 0 {
            // SAFETY: See above.
            unsafe { (*sw).freeze_kcount += 1 };
        }
        if who & FREEZE_HOLDER_USERSPACE != 0 {
            // SAFETY: See above.
            unsafe { (*sw).freeze_ucount += 1 };
        }
        // SAFETY: See above.
        unsafe { (*sw).freeze_kcount + (*sw).freeze_ucount }
    }

    /// `&sb->s_writers`, as a raw pointer (see `may_freeze()`).
    fn writers(&self) -> *mut bindings::sb_writers {
        // SAFETY: A live superblock; no reference is made.
        unsafe { addr_of_mut!((*self.raw()).s_writers) }
    }

    fn set_owner(&mut self, owner: *const c_void) {
        // SAFETY: Protected by `s_umount`, which we hold.
        unsafe { (*self.writers()).freeze_owner = owner };
    }

    /// Timed mirror of `wait_for_partially_frozen()` (fs/super.c, static): drops
    /// `s_umount`, waits for `s_writers.frozen` to change until the deadline, retakes it
    /// (with the deadline too). `None` when `s_umount` could not be had in time. The error
    /// names the wait that gave up: the partial freeze's when it did, else `s_umount`'s.
    fn wait_for_partially_frozen(
        mut self,
        deadline: &Deadline,
    ) -> (Option<Self>, Result<(), AttemptError>) {
        loop {
            let old = self.frozen();
            let sb = self.unlock();
            let ret = loop {
                // SAFETY: A live superblock (we hold an active reference).
                let r = unsafe {
                    helpers::tf_wait_frozen_change(sb.as_raw(), old, deadline.remaining_jiffies())
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
            let ret = ret.map_err(|e| AttemptError::gave_up(e, uapi::WAIT_PARTIAL, 0));
            self = match sb.lock_excl_active(deadline) {
                Ok(s) => s,
                Err(e) => {
                    let umount = AttemptError::gave_up(e, uapi::WAIT_UMOUNT, 0);
                    return (None, Err(ret.err().unwrap_or(umount)));
                }
            };
            let frozen = self.frozen();
            if ret.is_err() || frozen == SB_UNFROZEN || frozen == SB_FREEZE_COMPLETE {
                return (Some(self), ret);
            }
        }
    }

    /// `lockdep_sb_freeze_release()` (fs/super.c, static): the levels stay held across the
    /// return to userspace, so lockdep must forget them.
    fn lockdep_freeze_release(&self) {
        for level in (0..SB_FREEZE_LEVELS).rev() {
            // SAFETY: The levels of a live superblock, held by this task.
            unsafe {
                helpers::tf_percpu_rwsem_lockdep_release(
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
    /// Where the time `SB_FREEZE_WRITE` was held goes when it is released or kept.
    clock: &'a BlockClock,
}

impl<'a> HeldLevels<'a> {
    fn new(clock: &'a BlockClock) -> Self {
        Self {
            held: [None, None, None],
            clock,
        }
    }

    /// Stops the clock of `SB_FREEZE_WRITE`'s `block`, if held.
    fn stop_clock(&self) {
        if let Some(g) = &self.held[usize::from(SB_FREEZE_WRITE) - 1] {
            self.clock.add(g.blocked_for());
        }
    }

    /// Records that level `level` is held.
    fn hold(&mut self, level: u16, g: PercpuWriteGuard<'a>) {
        self.held[usize::from(level) - 1] = Some(g);
    }

    /// Mirror of `sb_freeze_unlock()` (fs/super.c, static): `percpu_up_write()` from the
    /// highest level taken down to `SB_FREEZE_WRITE`.
    fn unlock(mut self) {
        self.stop_clock();
        for g in self.held.iter_mut().rev() {
            drop(g.take());
        }
    }

    /// The freeze succeeded: the levels stay held until `thaw_super()`.
    fn keep(self) {
        self.stop_clock();
        for g in self.held.into_iter().flatten() {
            g.keep_held();
        }
    }

    /// Hands levels 1 and 2 of `sb` on to our thread for the commit (lockdep forgets them
    /// here, highest first, as `lockdep_sb_freeze_release()` does); the clock goes on until the
    /// thread is done with them ([`Handed`]).
    fn hand_over(mut self, sb: &'a SuperBlock) -> Handed<'a> {
        self.stop_clock();
        let mut handed = 0;
        for g in self.held.iter_mut().rev().filter_map(Option::take) {
            g.hand_over();
            handed += 1;
        }
        warn_on_once!(handed != usize::from(SB_FREEZE_PAGEFAULT));
        Handed {
            sb,
            clock: self.clock,
            since: Instant::now(),
        }
    }

    /// Levels 1 and 2 of `sb`, handed on by the task that took them.
    ///
    /// # Safety
    ///
    /// They are held, were handed on ([`HeldLevels::hand_over`]), and nobody else takes them
    /// over.
    unsafe fn adopt(sb: &'a SuperBlock, clock: &'a BlockClock) -> Self {
        let mut levels = Self::new(clock);
        for level in [SB_FREEZE_WRITE, SB_FREEZE_PAGEFAULT] {
            // SAFETY: Per the caller.
            levels.hold(level, unsafe { PercpuWriteGuard::adopt(sb.level(level)) });
        }
        levels
    }
}

/// Levels 1 and 2 handed on to our thread for the commit ([`HeldLevels::hand_over`]).
#[must_use = "handed-on levels stay held until the thread or `take_back()` releases them"]
struct Handed<'a> {
    sb: &'a SuperBlock,
    clock: &'a BlockClock,
    /// Since when.
    since: Instant<Monotonic>,
}

impl<'a> Handed<'a> {
    /// Our thread keeps them (the freeze, its undo, or an attempt that gave up on it): the
    /// attempt's clock counts up to now.
    fn end(self) {
        self.clock.add(Instant::<Monotonic>::now() - self.since);
    }

    /// Takes them back, to release them.
    ///
    /// # Safety
    ///
    /// Our thread did not take them over and never will.
    unsafe fn take_back(self) -> HeldLevels<'a> {
        self.clock.add(Instant::<Monotonic>::now() - self.since);
        // SAFETY: Handed on by this attempt and not taken over, per the caller.
        unsafe { HeldLevels::adopt(self.sb, self.clock) }
    }
}

/// Why an attempt failed, with what the report needs.
struct AttemptError {
    err: Error,
    /// `TIMED_FREEZE_WAIT_*`: the wait a deadline or a fatal signal ended; 0 for any other
    /// error (the filesystem's own, `EBUSY`, ...), which is never retried.
    wait: u32,
    /// Writers inside that level when its wait ended (level waits only).
    writers: u32,
}

impl AttemptError {
    /// A wait that a deadline (`ETIMEDOUT`) or a fatal signal (`EINTR`) ended.
    fn gave_up(err: Error, wait: u32, writers: u32) -> Self {
        Self { err, wait, writers }
    }
}

impl From<Error> for AttemptError {
    fn from(err: Error) -> Self {
        Self {
            err,
            wait: uapi::WAIT_NONE,
            writers: 0,
        }
    }
}

/// The readers of the three levels switched to their slow path with one grace period, ahead of
/// the first level's wait; `None`s (each level switches its own) when the bench asks for the
/// stock order ([`stage::switch_each_level`]).
fn switch_levels(sb: &SuperBlock, gp: GracePeriod) -> [Option<ReaderSwitch<'_>>; 3] {
    if stage::switch_each_level() {
        return [None, None, None];
    }
    stage::mark(stage::switch(SB_FREEZE_WRITE));
    let switches = PercpuRwSem::switch_readers_of(
        [
            sb.level(SB_FREEZE_WRITE),
            sb.level(SB_FREEZE_PAGEFAULT),
            sb.level(SB_FREEZE_FS),
        ],
        gp,
    );
    stage::mark(stage::switched(SB_FREEZE_WRITE));
    switches.map(Some)
}

/// A timed wait for the writers of level `level`, with its fault point; its readers switched
/// by `switch` when given (by [`switch_levels`]), here otherwise.
fn level_down_write<'a>(
    sb: &'a SuperBlock,
    level: u16,
    deadline: &Deadline,
    gp: GracePeriod,
    switch: Option<ReaderSwitch<'a>>,
    clock: &BlockClock,
) -> Result<PercpuWriteGuard<'a>, AttemptError> {
    let sem = sb.level(level);
    let switch = switch.unwrap_or_else(|| {
        stage::mark(stage::switch(level));
        let switch = sem.switch_readers(gp);
        stage::mark(stage::switched(level));
        switch
    });
    let ret = switch.down_write(deadline);
    stage::mark(stage::drained(level));
    match ret {
        Ok(g) if fault::should_fail(fault::Point::LevelWait, level) => {
            let writers = sem.readers();
            if level == SB_FREEZE_WRITE {
                clock.add(g.blocked_for());
            }
            drop(g);
            Err(AttemptError::gave_up(ETIMEDOUT, level.into(), writers))
        }
        Ok(g) => Ok(g),
        Err(e) => {
            if level == SB_FREEZE_WRITE {
                clock.add(e.blocked);
            }
            Err(AttemptError::gave_up(e.err, level.into(), e.readers))
        }
    }
}

/// How a sync failed.
enum SyncError {
    /// Before the filesystem's `->sync_fs(sb, 1)` had an effect: undo as after any failure.
    Before(Error),
    /// After it: the filesystem may have acted on the freeze it saw coming.
    After(Error),
}

impl From<SyncError> for Error {
    fn from(e: SyncError) -> Self {
        match e {
            SyncError::Before(e) | SyncError::After(e) => e,
        }
    }
}

/// Mirror of `sync_filesystem()` (fs/sync.c), step by step, that tells whether it failed
/// before or after `->sync_fs(sb, 1)`, reports its stage (`TIMED_FREEZE_WAIT_WRITEBACK`
/// while it writes data back, `_JOURNAL` from the filesystem's own sync on) to `stage`, and
/// passes the fault points when `faults`.
///
/// The caller holds `s_umount` (for read or write), as `sync_filesystem()` requires.
///
/// An error `->sync_fs()` returns is the filesystem's: it undid what it did (xfs returns
/// before stopping its GC). Only the block device's flush that follows can fail after it.
fn sync_steps(sb: &SuperBlock, stage: &dyn Fn(u32), faults: bool) -> Result<(), SyncError> {
    let raw = sb.as_raw();
    let sync_fs = sb.ops().sync_fs;
    // Every `unsafe` block below makes a call of `sync_filesystem()` on a live superblock
    // whose `s_umount` the caller holds, as it requires; `s_bdev` may be NULL, which
    // sync_blockdev*() accept.
    // SAFETY: `s_bdev` and `s_flags` of a live superblock, stable under `s_umount`.
    let (bdev, flags) = unsafe { ((*raw).s_bdev, (*raw).s_flags) };

    // No point in syncing out anything if the filesystem is read-only.
    if flags & SB_RDONLY != 0 {
        return Ok(());
    }

    // Do the filesystem syncing work. For simple filesystems writeback_inodes_sb(sb) just
    // dirties buffers with inodes so we have to submit I/O for these buffers via
    // sync_blockdev(). This also speeds up the wait == 1 case since in that case
    // write_inode() methods call sync_dirty_buffer() and thus effectively write one block at
    // a time.
    stage(uapi::WAIT_WRITEBACK);
    // SAFETY: See above.
    unsafe { bindings::writeback_inodes_sb(raw, bindings::wb_reason_WB_REASON_SYNC) };
    if let Some(f) = sync_fs {
        // SAFETY: See above.
        let ret = unsafe { f(raw, 0) };
        if ret != 0 {
            return Err(SyncError::Before(Error::from_errno(ret)));
        }
    }
    // SAFETY: See above.
    let ret = unsafe { bindings::sync_blockdev_nowait(bdev) };
    if ret != 0 {
        return Err(SyncError::Before(Error::from_errno(ret)));
    }

    // SAFETY: See above.
    unsafe { bindings::sync_inodes_sb(raw) };
    stage(uapi::WAIT_JOURNAL);
    if faults && fault::should_fail(fault::Point::SyncFs, 0) {
        return Err(SyncError::Before(ETIMEDOUT));
    }
    if let Some(f) = sync_fs {
        // SAFETY: See above.
        let ret = unsafe { f(raw, 1) };
        if ret != 0 {
            return Err(SyncError::Before(Error::from_errno(ret)));
        }
    }
    // SAFETY: See above.
    let mut ret = unsafe { bindings::sync_blockdev(bdev) };
    if ret == 0 && faults && fault::should_fail(fault::Point::SyncBdev, 0) {
        ret = -(bindings::EIO as i32);
    }
    if ret != 0 {
        return Err(SyncError::After(Error::from_errno(ret)));
    }
    Ok(())
}

/// One attempt: a mirror of `freeze_super()` (fs/super.c), step by step, with timed waits; with
/// a deadline, the sync before the commit point and the commit itself are made by a thread of
/// ours ([`worker`]) that the attempt waits for with the deadline.
fn freeze_attempt(
    sb: &SuperBlock,
    p: &FreezeParams,
    deadline: &Deadline,
    clock: &BlockClock,
) -> Result<(), AttemptError> {
    let (who, owner) = p.holder.who();
    let umount = |e| AttemptError::gave_up(e, uapi::WAIT_UMOUNT, 0);
    stage::mark(stage::BEGIN);
    let _end = ScopeGuard::new(|| stage::mark(stage::END));

    // [timed-freeze] The thread of an earlier attempt, still waiting for the storage, holds or
    // waits for s_umount: wait for it first, and say so if it does not finish. Then start this
    // attempt's own, before anything is taken. A timeout of 0 (and a freeze without a
    // deadline) has none: the sync and the commit are the original's, here.
    let worker = if p.timeout.is_zero() {
        None
    } else {
        worker::wait_in_flight(sb, deadline)?;
        Some(WorkerHandle::start(sb, p.holder)?)
    };

    let Some(mut s) = sb.lock_excl(deadline).map_err(umount)? else {
        warn_on_once!(true); // "Dying superblock while freezing!"
        return Err(EINVAL.into());
    };
    s.get_active();

    loop {
        // retry:
        if s.frozen() == SB_FREEZE_COMPLETE {
            let ret = if s.may_freeze(who, owner) {
                if warn_on_once!(s.freeze_inc(who) == 1) {
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
            let Some(guard) = guard else {
                sb.put_active_ref();
                return ret;
            };
            s = guard;
            if let Err(e) = ret {
                s.deactivate();
                return Err(e);
            }
            continue; // goto retry
        }
        break;
    }

    if s.rdonly() {
        // Nothing to do really...
        warn_on_once!(s.freeze_inc(who) > 1);
        s.set_owner(owner);
        s.set_frozen(SB_FREEZE_COMPLETE);
        s.wake_frozen();
        s.unlock();
        return Ok(());
    }

    let mut levels = HeldLevels::new(clock);

    s.set_frozen(SB_FREEZE_WRITE);
    // Release s_umount to preserve sb_start_write -> s_umount ordering
    let sb = s.unlock();
    // [timed-freeze] The readers of all three levels switched with one grace period (a freeze
    // without a deadline: each level's by its own wait, as here).
    let untimed = deadline.is_never();
    let [write_switch, pagefault_switch, fs_switch] = if untimed {
        [None, None, None]
    } else {
        switch_levels(sb, p.gp)
    };
    let w = level_down_write(sb, SB_FREEZE_WRITE, deadline, p.gp, write_switch, clock);
    let mut s = match (w, sb.lock_excl_active(deadline)) {
        (Ok(g), Ok(s)) => {
            levels.hold(SB_FREEZE_WRITE, g);
            s
        }
        (Err(e), Ok(s)) => return Err(undo(s, levels, e)),
        (Ok(g), Err(e)) => {
            levels.hold(SB_FREEZE_WRITE, g);
            return Err(undo_unlocked(sb, levels, worker, umount(e)));
        }
        (Err(e), Err(_)) => return Err(undo_unlocked(sb, levels, worker, e)),
    };

    // Now we go and block page faults...
    // [timed-freeze] `frozen` stays SB_FREEZE_WRITE until the commit point: the bounded
    // sync below must not look like a freeze to the filesystem's ->sync_fs(). Without a
    // deadline there is no such sync, and the order is the original's.
    if untimed {
        s.set_frozen(SB_FREEZE_PAGEFAULT);
    }
    match level_down_write(
        sb,
        SB_FREEZE_PAGEFAULT,
        deadline,
        p.gp,
        pagefault_switch,
        clock,
    ) {
        Ok(g) => levels.hold(SB_FREEZE_PAGEFAULT, g),
        Err(e) => return Err(undo(s, levels, e)),
    }

    let Some(worker) = worker else {
        // [timed-freeze] A timeout of 0: the drain of level 3 below, then the original's
        // commit, here; without a deadline, the original's order.
        if !untimed {
            if let Err(e) = level_down_write(sb, SB_FREEZE_FS, deadline, p.gp, fs_switch, clock) {
                return Err(undo(s, levels, e));
            }
        }
        return commit(s, levels, (who, owner), &|| true).map_err(Into::into);
    };

    // [timed-freeze] The writeback and journal waits of the sync, with the deadline: our thread
    // syncs, with s_umount for read, and we wait for it.
    let sb = s.unlock();
    stage::mark(stage::SYNC);
    let ret = worker.sync(deadline);
    stage::mark(stage::SYNCED);
    match ret {
        Ok(()) => {}
        Err(WorkerError::GaveUp(e, wait)) => {
            // Our thread resets `frozen` and drops our reference when its sync returns.
            levels.unlock();
            return Err(AttemptError::gave_up(e, wait, 0));
        }
        Err(WorkerError::Failed(e)) => {
            return Err(undo_unlocked(sb, levels, Some(worker), e.into()));
        }
    }

    // [timed-freeze] Nothing of ours may fail after the commit point but the deadline of the
    // commit (see the module docs), so the wait for the fs-internal writers is made now: their
    // drain, with the deadline, released again for the sync, whose own writeback needs them.
    if let Err(e) = level_down_write(sb, SB_FREEZE_FS, deadline, p.gp, fs_switch, clock) {
        return Err(undo_unlocked(sb, levels, Some(worker), e));
    }

    // [timed-freeze] The commit point and all after it, in our thread, with the deadline.
    stage::mark(stage::SYNC);
    let handed = levels.hand_over(sb);
    let ret = worker.commit(deadline);
    stage::mark(stage::SYNCED);
    match ret {
        Ok(()) => {
            handed.end();
            Ok(())
        }
        Err(CommitError::Failed(e)) => {
            handed.end();
            Err(e.into())
        }
        Err(CommitError::GaveBack(e)) => {
            // SAFETY: Our thread gave the levels back (`GaveBack`) and never takes them now.
            unsafe { handed.take_back() }.unlock();
            Err(AttemptError::gave_up(e, uapi::WAIT_UMOUNT, 0))
        }
        Err(CommitError::Abandoned(e)) => {
            handed.end();
            Err(AttemptError::gave_up(e, uapi::WAIT_COMMIT, 0))
        }
    }
}

/// `freeze_super()` from its commit point on: the sync at `SB_FREEZE_PAGEFAULT`, level 3,
/// `->freeze_fs()`, and the freeze made complete for `who` (bits, owner); or undone, the active
/// reference dropped. `claim` is called once `->freeze_fs()` succeeded, to claim the success
/// for the caller: `false` (the caller gave up meanwhile) takes the freeze back with the
/// filesystem's `->unfreeze_fs()`, as a sync that failed after `->sync_fs()` acted does
/// ([`unfreeze`]). A claimed success may be seen by the caller before the freeze is made
/// complete here, under `s_umount`: whatever looks at it takes `s_umount` first.
fn commit<'a>(
    mut s: UmountGuard<'a>,
    mut levels: HeldLevels<'a>,
    who: (u32, *const c_void),
    claim: &dyn Fn() -> bool,
) -> Result {
    let sb = s.sb;
    // --- The commit point. ---
    s.set_frozen(SB_FREEZE_PAGEFAULT);

    // All writers are done so after syncing there won't be dirty data
    let sync_err = match sync_steps(sb, &|_| {}, true) {
        Ok(()) => None,
        Err(SyncError::Before(e)) => return Err(undo(s, levels, e)),
        Err(SyncError::After(e)) => Some(e),
    };

    // Now wait for internal filesystem counter
    s.set_frozen(SB_FREEZE_FS);
    levels.hold(SB_FREEZE_FS, sb.level(SB_FREEZE_FS).down_write());
    stage::mark(stage::drained(SB_FREEZE_FS));

    if let Some(freeze_fs) = sb.ops().freeze_fs {
        // SAFETY: The filesystem's own callback, called as freeze_super() calls it.
        let ret = unsafe { freeze_fs(sb.as_raw()) };
        if ret != 0 {
            pr_err!("VFS:Filesystem freeze failed\n");
            return Err(undo(s, levels, Error::from_errno(ret)));
        }
    }

    // [timed-freeze] The sync failed after ->sync_fs() acted on the freeze, or the caller gave
    // up meanwhile: the filesystem's own ->unfreeze_fs() puts it back as it was, before anybody
    // sees the freeze complete.
    if let Some(e) = sync_err {
        return Err(unfreeze(s, levels, e));
    }
    if !claim() {
        return Err(unfreeze(s, levels, ETIMEDOUT));
    }
    complete(s, levels, who);
    Ok(())
}

/// The end of `freeze_super()`: the freeze made complete for `who`, the levels left held.
fn complete(mut s: UmountGuard<'_>, levels: HeldLevels<'_>, (who, owner): (u32, *const c_void)) {
    // For debugging purposes so that fs can warn if it sees write activity when frozen is set
    // to SB_FREEZE_COMPLETE, and for thaw_super().
    warn_on_once!(s.freeze_inc(who) > 1);
    s.set_owner(owner);
    s.set_frozen(SB_FREEZE_COMPLETE);
    s.wake_frozen();
    levels.keep();
    s.lockdep_freeze_release();
    s.unlock();
}

/// Takes back a freeze that `->freeze_fs()` made, before it was ever complete: the steps of
/// `thaw_super_locked()` (fs/super.c) from `->unfreeze_fs()` on, under the same `s_umount`
/// and with the levels this task holds: `->unfreeze_fs()`, `frozen = SB_UNFROZEN`,
/// `wake_up_var()`, `sb_freeze_unlock()`, `deactivate_locked_super()`. When `->unfreeze_fs()`
/// fails, the freeze stays, as it does there: made complete as a userspace freeze (whoever it
/// was for has been told it failed, and `FITHAW` or emergency thaw must be able to end it),
/// and said.
fn unfreeze(mut s: UmountGuard<'_>, levels: HeldLevels<'_>, e: Error) -> Error {
    let sb = s.sb;
    if let Some(unfreeze_fs) = sb.ops().unfreeze_fs {
        // SAFETY: The filesystem's own callback, on the superblock its ->freeze_fs() froze,
        // with s_umount held, as thaw_super_locked() calls it.
        let ret = unsafe { unfreeze_fs(sb.as_raw()) };
        if ret != 0 {
            pr_err!("VFS: Filesystem thaw failed\n");
            pr_err!(
                "{}: a freeze that failed ({:?}) stays frozen: FITHAW, or emergency thaw (sysrq j)\n",
                sb.fs_name(),
                e
            );
            complete(s, levels, (FREEZE_HOLDER_USERSPACE, core::ptr::null()));
            return e;
        }
    }
    s.set_frozen(SB_UNFROZEN);
    s.wake_frozen();
    levels.unlock();
    s.deactivate();
    e
}

/// [`commit`] in our thread ([`worker`]), with the `s_umount` it took and levels 1 and 2 that
/// the attempt handed on ([`HeldLevels::hand_over`]).
///
/// # Safety
///
/// Levels 1 and 2 of the superblock of `s` are held, were handed on, and nobody else takes them
/// over.
pub(crate) unsafe fn commit_handed(
    s: UmountGuard<'_>,
    who: (u32, *const c_void),
    claim: &dyn Fn() -> bool,
) -> Result {
    let clock = BlockClock::default();
    // SAFETY: Per the caller.
    let levels = unsafe { HeldLevels::adopt(s.sb, &clock) };
    commit(s, levels, who, claim)
}

impl From<WorkerError> for AttemptError {
    fn from(e: WorkerError) -> Self {
        match e {
            WorkerError::GaveUp(err, wait) => AttemptError::gave_up(err, wait, 0),
            WorkerError::Failed(err) => err.into(),
        }
    }
}

/// The error path of `freeze_super()`, for every level: `frozen = SB_UNFROZEN`,
/// `sb_freeze_unlock()` of the levels held, `wake_up_var()`, `deactivate_locked_super()`.
fn undo<E>(mut s: UmountGuard<'_>, levels: HeldLevels<'_>, e: E) -> E {
    s.set_frozen(SB_UNFROZEN);
    levels.unlock();
    s.wake_frozen();
    s.deactivate();
    e
}

/// The same undo when the attempt does not hold `s_umount`: taken at once when it is free.
/// Otherwise (our thread still syncs with it, or a `syncfs()` stuck in writeback holds it) the
/// levels are released now, so that no writer waits for us, and `frozen = SB_UNFROZEN`, the
/// wakeup and the active reference are left to our thread, which takes `s_umount` for them
/// ([`WorkerHandle::undo`]; without one, a thread started for it): `frozen` only ever changes
/// under `s_umount`, which the original's readers of it rely on.
fn undo_unlocked<E>(
    sb: &SuperBlock,
    levels: HeldLevels<'_>,
    worker: Option<WorkerHandle>,
    e: E,
) -> E {
    if let Some(s) = sb.try_lock_excl() {
        return undo(s, levels, e);
    }
    levels.unlock();
    match worker {
        Some(w) => w.undo(),
        None => sb.reset_frozen_later(),
    }
    e
}

/// `frozen = SB_UNFROZEN`, `wake_up_var()`, `deactivate_locked_super()`: the end of the error
/// path of `freeze_super()`, for our thread ([`worker`]), once the attempt that gave up has
/// released its levels.
pub(crate) fn reset_frozen(mut s: UmountGuard<'_>) {
    warn_on_once!(s.frozen() != SB_FREEZE_WRITE);
    s.set_frozen(SB_UNFROZEN);
    s.wake_frozen();
    s.deactivate();
}

/// Freezes `sb` as `freeze_super()` would, with no deadline (the system-wide mode's freezes that
/// are not timed): one attempt in the original's order, each level's readers switched by its
/// own wait, `frozen` at `SB_FREEZE_PAGEFAULT` before the level-2 wait, no sync of ours and no
/// drain of level 3 before the sync at the commit point, `s_umount` taken with
/// `down_write_killable()`. Its waits end when what they wait for happens or on a fatal signal
/// (`EINTR`, the attempt undone): the original's are uninterruptible but for the wait for a
/// partial freeze.
#[cfg_attr(not(tf_livepatch), allow(dead_code))]
pub(crate) fn freeze_untimed(sb: &SuperBlock, holder: Holder) -> Result {
    let p = FreezeParams {
        timeout: Delta::ZERO,
        retries: 0,
        deadline: Delta::ZERO,
        gp: GracePeriod::Normal,
        holder,
    };
    freeze_attempt(sb, &p, &Deadline::never(), &BlockClock::default()).map_err(|e| e.err)
}

/// Freezes `sb` as `freeze_super()` would, each attempt bounded by `p.timeout`, retrying up to
/// `p.retries` times after an attempt that gave up at its deadline, as [`retry`] decides, all
/// within `p.deadline`. Fills `report` in every case.
pub(crate) fn timed_freeze_super(
    sb: &SuperBlock,
    p: &FreezeParams,
    report: &mut FreezeReport,
) -> Result {
    let start = Instant::<Monotonic>::now();
    let since_start = || nanos(Instant::<Monotonic>::now() - start);
    let mut policy = retry::Policy::new(
        nanos(p.timeout),
        p.retries,
        nanos(p.deadline),
        stage::retry_fixed_backoff(),
    );
    let clock = BlockClock::default();
    let mut ret;
    loop {
        report.attempts += 1;
        policy.attempt();
        let timeout = policy.attempt_timeout(since_start());
        let deadline = Deadline::after(Delta::from_nanos(
            i64::try_from(timeout).unwrap_or(i64::MAX),
        ));
        ret = freeze_attempt(sb, p, &deadline, &clock);
        let Err(e) = &ret else { break };
        if e.wait == uapi::WAIT_NONE {
            break;
        }
        report.undone += 1;
        report.gave_up = e.wait;
        if let Some(n) = report.gave_up_by_wait.get_mut(e.wait as usize - 1) {
            *n += 1;
        }
        report.timed_out_level = if e.wait <= SB_FREEZE_FS.into() {
            e.wait
        } else {
            0
        };
        report.writers_inside = e.writers;
        let ended = retry::Ended {
            timed_out: e.err == ETIMEDOUT,
            wait: e.wait,
            writers: e.writers,
        };
        let retry::Next::Pause(pause) = policy.next(since_start(), ended) else {
            break;
        };
        if let Err(err) = pause_between(sb, pause, &since_start) {
            ret = Err(AttemptError::from(err));
            break;
        }
        if !policy.may_start(since_start()) {
            break;
        }
    }
    report.blocked_ns = clock.0.get();
    report.elapsed_ns = since_start();
    ret.map_err(|e| e.err)
}

/// How often a pause samples the level's reader count.
const SAMPLE_MS: u32 = 2;

/// A pause between two attempts ([`retry::Pause`]): sleeps until `not_before`, then samples
/// the level's readers until the watch says go, or until `not_after`. It blocks nobody and
/// holds nothing; a fatal signal ends it with `EINTR`.
fn pause_between(sb: &SuperBlock, pause: retry::Pause, now: &dyn Fn() -> u64) -> Result {
    let sleep_until = |t: u64| -> Result {
        let left = t.saturating_sub(now());
        if left == 0 {
            return Ok(());
        }
        let ms = u32::try_from(left.div_ceil(1_000_000)).unwrap_or(u32::MAX);
        let j = c_long::try_from(kernel::time::msecs_to_jiffies(ms)).unwrap_or(c_long::MAX);
        // SAFETY: Sleeping is allowed: no spinlock is held (a caller may hold a sleeping lock:
        // `bdev_freeze()`'s `bd_fsfreeze_mutex`, in the system-wide mode).
        unsafe { bindings::schedule_timeout_killable(j.max(1)) };
        // SAFETY: Reads the current task's signals only.
        if unsafe { helpers::tf_fatal_signal_pending() } {
            return Err(EINTR);
        }
        Ok(())
    };
    while now() < pause.not_before {
        sleep_until(pause.not_before)?;
    }
    let Some(mut watch) = pause.watch else {
        while now() < pause.not_after {
            sleep_until(pause.not_after)?;
        }
        return Ok(());
    };
    let sem = sb.level(watch.level);
    let mut last = now();
    while last < pause.not_after {
        let t = now();
        if watch.sample(sem.readers(), t - last) {
            break;
        }
        last = t;
        sleep_until(
            t.saturating_add(u64::from(SAMPLE_MS) * 1_000_000)
                .min(pause.not_after),
        )?;
    }
    Ok(())
}
