// SPDX-License-Identifier: GPL-2.0

//! Percpu read-write semaphores with a timed, killable write lock.
//!
//! C header: [`include/linux/percpu-rwsem.h`](srctree/include/linux/percpu-rwsem.h)
//!
//! [`PercpuRwSem`] wraps the kernel's own `struct percpu_rw_semaphore`, typically one that
//! somebody else embeds (the freeze levels `sb->s_writers.rw_sem[]` of a superblock), so
//! that its writer side can be taken with a deadline: [`PercpuRwSem::down_write_timeout`]
//! takes the steps of `percpu_down_write()` (kernel/locking/percpu-rwsem.c, Linux 7.3) in
//! their order, and undoes them when a wait ends early. What it is for and how it is used is
//! in `Documentation/timed-freeze.rst`; the differences from the original:
//!
//! - the wait for `sem->block` ([`PercpuRwSem::down_write_timeout`]'s step 3) mirrors the
//!   static `percpu_rwsem_wait()` and its wake function (`rust/helpers.c`) with
//!   `TASK_KILLABLE`, `schedule_timeout()` and an exit that takes the wait entry off the
//!   queue when nobody handed the lock over; the wait for the readers (step 4) is the
//!   `rcuwait_wait_event()` with `TASK_KILLABLE` and `schedule_timeout()`;
//! - when that sleep's jiffies run out before the monotonic deadline, the wait for
//!   `sem->block` is queued again at the tail: a writer whose jiffies were rounded short
//!   loses its place among other waiting writers (at most once a jiffy of the deadline);
//! - the lockless `__percpu_down_write_trylock()` before taking the wait queue's lock is
//!   dropped: the trylock is always made under it, as `percpu_rwsem_wait()` makes it anyway;
//! - the contention tracepoints (`trace_contention_begin()`/`_end()`) are not emitted;
//! - lockdep sees an address in this module (`ip()`) as the call site, not the caller's
//!   `_RET_IP_`;
//! - the reader switch is [`RcuSync::enter`], our mirror of `rcu_sync_enter()`, which may use
//!   an expedited grace period;
//! - the reader switch can be made ahead of the lock, for several semaphores with one grace
//!   period ([`PercpuRwSem::switch_readers_of`], then [`ReaderSwitch::down_write`]);
//!   lockdep then sees the write side acquired after the switch, not before it.

use crate::helpers;
use crate::rcu_sync::{GracePeriod, RcuSync};
use core::{marker::PhantomData, mem::ManuallyDrop, ptr::addr_of_mut};
use kernel::{
    bindings,
    prelude::*,
    sync::{
        barrier::{smp_mb, Full},
        LockClassKey,
    },
    time::{Delta, Instant, Monotonic},
    types::Opaque,
};

/// Why a timed write lock was not taken: the deadline passed (`ETIMEDOUT`) or a fatal
/// signal came (`EINTR`), with the readers that were inside at that moment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct WaitError {
    /// `ETIMEDOUT` or `EINTR`.
    pub(crate) err: Error,
    /// Readers inside when the wait ended, counted before anything was undone: the undo
    /// hands the lock to the readers it had blocked, which then count too.
    pub(crate) readers: u32,
    /// How long `block` was ours before the wait ended: the time new readers were kept out.
    pub(crate) blocked: Delta,
}

/// A point in time after which a timed wait gives up.
#[derive(Clone, Copy)]
pub(crate) struct Deadline {
    end: Instant<Monotonic>,
    /// [`Deadline::never`]'s.
    never: bool,
}

impl Deadline {
    /// A deadline `timeout` from now.
    pub(crate) fn after(timeout: Delta) -> Self {
        Self {
            end: Instant::now() + timeout,
            never: false,
        }
    }

    /// A deadline that does not pass (in a hundred years): for waits that are not timed.
    pub(crate) fn never() -> Self {
        Self {
            never: true,
            ..Self::after(Delta::from_secs(100 * 365 * 24 * 3600))
        }
    }

    /// Whether this is [`Deadline::never`]: the waits are not timed.
    pub(crate) fn is_never(&self) -> bool {
        self.never
    }

    /// Whether the deadline has passed.
    pub(crate) fn passed(&self) -> bool {
        self.remaining().is_zero()
    }

    /// The time left, zero once passed.
    pub(crate) fn remaining(&self) -> Delta {
        let left = self.end - Instant::now();
        if left.is_negative() {
            Delta::ZERO
        } else {
            left
        }
    }

    /// The time left in jiffies, rounded up so that a sleep of this length never ends
    /// before the deadline by more than the jiffy the scheduler may cut off.
    pub(crate) fn remaining_jiffies(&self) -> c_long {
        let left = self.remaining();
        if left.is_zero() {
            return 0;
        }
        let ms = u32::try_from(left.as_millis_ceil()).unwrap_or(u32::MAX);
        let j = kernel::time::msecs_to_jiffies(ms).saturating_add(1);
        c_long::try_from(j).unwrap_or(c_long::MAX)
    }
}

/// A `struct percpu_rw_semaphore`.
///
/// # Invariants
///
/// The wrapped semaphore is initialised (`percpu_init_rwsem()`) and stays so for as long as
/// the [`PercpuRwSem`] can be reached.
#[repr(transparent)]
pub(crate) struct PercpuRwSem {
    inner: Opaque<bindings::percpu_rw_semaphore>,
}

// SAFETY: The C semaphore is meant to be used from any thread; all access goes through
// its own synchronisation.
unsafe impl Send for PercpuRwSem {}
// SAFETY: As above, shared references only reach the C functions, which synchronise.
unsafe impl Sync for PercpuRwSem {}

impl PercpuRwSem {
    /// Borrows a semaphore that somebody else owns.
    ///
    /// # Safety
    ///
    /// `ptr` points to an initialised `struct percpu_rw_semaphore` that stays initialised and
    /// in place for `'a`.
    pub(crate) unsafe fn from_raw<'a>(ptr: *mut bindings::percpu_rw_semaphore) -> &'a Self {
        // INVARIANT: the caller promises the semaphore is initialised for `'a`.
        // SAFETY: `PercpuRwSem` is `repr(transparent)` over `Opaque<percpu_rw_semaphore>`,
        // itself transparent over the C struct; validity for `'a` is the caller's promise.
        unsafe { &*ptr.cast::<Self>() }
    }

    fn as_raw(&self) -> *mut bindings::percpu_rw_semaphore {
        self.inner.get()
    }

    /// The semaphore's `rcu_sync`.
    fn rss(&self) -> &RcuSync {
        // SAFETY: `rss` of an initialised semaphore is an initialised `rcu_sync` that lives as
        // long as the semaphore, whose owner frees it with `percpu_free_rwsem()`, which waits
        // for its callbacks (`rcu_sync_dtor()`).
        unsafe { RcuSync::from_raw(addr_of_mut!((*self.as_raw()).rss)) }
    }

    /// How many readers are inside right now (the sum of the per-CPU counters).
    ///
    /// Racy by nature: a diagnostic, not a synchronisation primitive.
    pub(crate) fn readers(&self) -> u32 {
        // SAFETY: The semaphore is initialised (type invariant).
        unsafe { helpers::tf_percpu_rwsem_readers(self.as_raw()) }
    }

    /// Whether readers take the fast path right now (`rcu_sync_is_idle()`).
    pub(crate) fn readers_fast(&self) -> bool {
        self.rss().is_idle()
    }

    /// Step 2 of [`Self::down_write_timeout`] alone: switches this semaphore's readers to their
    /// slow path ([`RcuSync::enter`]), for [`ReaderSwitch::down_write`] to take the lock later.
    pub(crate) fn switch_readers(&self, gp: GracePeriod) -> ReaderSwitch<'_> {
        self.rss().enter(gp);
        // INVARIANT: entered above.
        ReaderSwitch { sem: self }
    }

    /// [`Self::switch_readers`] for several semaphores, with one grace period for all
    /// ([`RcuSync::enter_all`]) where one each would be waited for in turn.
    pub(crate) fn switch_readers_of<'a, const N: usize>(
        sems: [&'a PercpuRwSem; N],
        gp: GracePeriod,
    ) -> [ReaderSwitch<'a>; N] {
        RcuSync::enter_all(sems.map(|s| s.rss()), gp);
        // INVARIANT: each entered above.
        sems.map(|sem| ReaderSwitch { sem })
    }

    /// Takes the write lock, giving up at `deadline` or on a fatal signal.
    ///
    /// The steps of `percpu_down_write()`, in their order:
    ///
    /// 1. lockdep: acquire the write side;
    /// 2. switch readers to the slow path ([`RcuSync::enter`]);
    /// 3. take `sem->block`, which makes new readers block and excludes other writers;
    /// 4. wait for the readers inside to drain.
    ///
    /// On `ETIMEDOUT` or `EINTR` nothing is held and every step taken has been undone:
    /// readers that blocked behind this writer are woken and proceed, and the reader fast
    /// path comes back after a grace period. After step 4 that undo is exactly
    /// `percpu_up_write()`; after step 3 it is the lockdep release and [`RcuSync::exit`].
    ///
    /// A deadline that has already passed still makes one attempt: it succeeds when no
    /// reader is inside (the reader switch waits for one RCU grace period).
    pub(crate) fn down_write_timeout(
        &self,
        deadline: &Deadline,
        gp: GracePeriod,
    ) -> Result<PercpuWriteGuard<'_>, WaitError> {
        kernel::task::might_sleep();
        // SAFETY: The semaphore is initialised (type invariant).
        unsafe { helpers::tf_percpu_rwsem_lockdep_acquire(self.as_raw(), ip()) };

        // Notify readers to take the slow path.
        let switch = self.switch_readers(gp);
        // SAFETY: Acquired above, in this task; the switch is of this semaphore.
        unsafe { self.down_write_locked(switch, deadline) }
    }

    /// Steps 3 and 4 of [`Self::down_write_timeout`].
    ///
    /// # Safety
    ///
    /// Lockdep acquired the write side of this semaphore in this task (step 1), and `switch`
    /// is a switch of this semaphore's readers (step 2).
    unsafe fn down_write_locked(
        &self,
        switch: ReaderSwitch<'_>,
        deadline: &Deadline,
    ) -> Result<PercpuWriteGuard<'_>, WaitError> {
        // Try set sem->block; this provides writer-writer exclusion. Having sem->block set
        // makes new readers block.
        if let Err(err) = self.wait_block(deadline) {
            let readers = self.readers();
            // Undo what percpu_up_write() would not: we never owned `block`.
            // SAFETY: Acquired in this task (the function's safety requirement).
            unsafe { helpers::tf_percpu_rwsem_lockdep_release(self.as_raw(), ip()) };
            // Dropping the switch is [`RcuSync::exit`].
            drop(switch);
            return Err(WaitError {
                err,
                readers,
                blocked: Delta::ZERO,
            });
        }

        // The switch is the guard's now: percpu_up_write() ends it.
        core::mem::forget(switch);
        // INVARIANT: from here on `block` is ours, so the guard may release it.
        let guard = PercpuWriteGuard {
            sem: self,
            since: Instant::now(),
            _not_send: PhantomData,
        };

        // smp_mb() implied by __percpu_down_write_trylock() on success -- D matches A
        // ([timed-freeze]: the trylock in tf_percpu_rwsem_wait_block(), ours or the waker's,
        // as in percpu_rwsem_wait()).

        // If they don't see our store of sem->block, then we are guaranteed to see their
        // sem->read_count increment, and therefore will wait for them.

        // Wait for all active readers to complete. On failure, dropping the guard is
        // percpu_up_write(): the complete undo.
        self.wait_readers(deadline).map_err(|e| WaitError {
            blocked: guard.blocked_for(),
            ..e
        })?;
        Ok(guard)
    }

    /// The kernel's own `percpu_down_write()`: uninterruptible, without a deadline.
    pub(crate) fn down_write(&self) -> PercpuWriteGuard<'_> {
        // SAFETY: The semaphore is initialised (type invariant).
        unsafe { bindings::percpu_down_write(self.as_raw()) };
        // INVARIANT: taken above.
        PercpuWriteGuard {
            sem: self,
            since: Instant::now(),
            _not_send: PhantomData,
        }
    }

    /// Step 3: owns `sem->block` on success.
    fn wait_block(&self, deadline: &Deadline) -> Result {
        loop {
            let left = deadline.remaining_jiffies();
            // SAFETY: The semaphore is initialised (type invariant).
            let ret = unsafe { helpers::tf_percpu_rwsem_wait_block(self.as_raw(), left) };
            match ret {
                0 => return Ok(()),
                // The jiffies ran out but the clock may not have: wait the rest.
                r if r == -(bindings::ETIMEDOUT as i32) && !deadline.passed() => continue,
                r => return Err(Error::from_errno(r)),
            }
        }
    }

    /// Step 4: the `rcuwait_wait_event(&sem->writer, readers_active_check(sem), ...)` of
    /// `percpu_down_write()`, killable and with a deadline.
    fn wait_readers(&self, deadline: &Deadline) -> Result<(), WaitError> {
        // SAFETY: A field of the initialised semaphore; no reference is made.
        let writer = unsafe { addr_of_mut!((*self.as_raw()).writer) };
        // SAFETY: `writer` of an initialised semaphore is an initialised `rcuwait`; this task
        // is the only writer (it owns `block`), so it may publish itself there.
        unsafe { helpers::tf_prepare_to_rcuwait(writer) };
        let ret = loop {
            // ___rcuwait_wait_event(): "Implicit barrier (A) pairs with (B) in
            // rcuwait_wake_up()": set_current_state() is a full barrier between publishing our
            // state and reading the readers' count below.
            // SAFETY: Sets the state of the current task only.
            unsafe { helpers::tf_set_current_state_killable() };
            // readers_active_check(): the sum, then "if we observed the decrement; ensure we
            // see the entire critical section" (C matches B).
            let readers = self.readers();
            if readers == 0 {
                smp_mb(Full);
                break Ok(());
            }
            // SAFETY: Reads the current task's signals only.
            if unsafe { helpers::tf_fatal_signal_pending() } {
                break Err(WaitError {
                    err: EINTR,
                    readers,
                    blocked: Delta::ZERO,
                });
            }
            let left = deadline.remaining_jiffies();
            if left == 0 {
                break Err(WaitError {
                    err: ETIMEDOUT,
                    readers,
                    blocked: Delta::ZERO,
                });
            }
            // SAFETY: Sleeping is allowed here (`might_sleep()` above, no spinlock held);
            // readers leaving wake us through `rcuwait_wake_up(&sem->writer)`.
            unsafe { bindings::schedule_timeout(left) };
        };
        // SAFETY: Pairs with `tf_prepare_to_rcuwait()` above; sets TASK_RUNNING.
        unsafe { bindings::finish_rcuwait(writer) };
        ret
    }
}

/// The readers of a [`PercpuRwSem`] switched to their slow path by a writer that has not
/// taken the lock (yet): the step 2 of [`PercpuRwSem::down_write_timeout`], made ahead.
///
/// Dropping it is [`RcuSync::exit`]: the readers go back to their fast path after a grace
/// period. [`ReaderSwitch::down_write`] consumes it.
///
/// # Invariants
///
/// `sem`'s `rcu_sync` was entered for this switch and has not been exited for it.
#[must_use = "dropping the switch ends it at once"]
pub(crate) struct ReaderSwitch<'a> {
    sem: &'a PercpuRwSem,
}

impl<'a> ReaderSwitch<'a> {
    /// [`PercpuRwSem::down_write_timeout`] after its step 2, made earlier by this switch:
    /// steps 1, 3 and 4, with the same undo, which ends the switch too.
    ///
    /// Step 1 comes after step 2 here, where `percpu_down_write()` makes it first: lockdep
    /// sees the write side taken from the wait for `sem->block` on, which is where it can
    /// first wait for a reader. The switch takes no lock of the semaphore's class.
    pub(crate) fn down_write(self, deadline: &Deadline) -> Result<PercpuWriteGuard<'a>, WaitError> {
        let sem = self.sem;
        kernel::task::might_sleep();
        // SAFETY: The semaphore is initialised (its type invariant).
        unsafe { helpers::tf_percpu_rwsem_lockdep_acquire(sem.as_raw(), ip()) };
        // SAFETY: Acquired above, in this task; the switch is of `sem`.
        unsafe { sem.down_write_locked(self, deadline) }
    }
}

impl Drop for ReaderSwitch<'_> {
    fn drop(&mut self) {
        // SAFETY: Entered for this switch and not exited (type invariant); the switch is
        // gone after this.
        unsafe { self.sem.rss().exit() };
    }
}

/// The write side of a [`PercpuRwSem`], held.
///
/// Dropping it is `percpu_up_write()`.
///
/// # Invariants
///
/// This task holds the write side of `sem` (readers switched to the slow path, `block`
/// owned, lockdep acquired for this task): it took it, or adopted it from the task that took
/// it ([`PercpuWriteGuard::adopt`]), and has not released it nor handed it on.
pub(crate) struct PercpuWriteGuard<'a> {
    sem: &'a PercpuRwSem,
    /// When `block` became ours.
    since: Instant<Monotonic>,
    /// The write side is released by the task that took it (lockdep tracks it per task).
    _not_send: PhantomData<*mut ()>,
}

impl<'a> PercpuWriteGuard<'a> {
    /// Keeps the write side held past the guard, for a lock that a later, separate call
    /// releases with `percpu_up_write()` (a frozen superblock is thawed by `thaw_super()`).
    pub(crate) fn keep_held(self) {
        let _ = ManuallyDrop::new(self);
    }

    /// How long `block` has been ours: the time new readers have been kept out.
    pub(crate) fn blocked_for(&self) -> Delta {
        Instant::<Monotonic>::now() - self.since
    }

    /// Hands the write side on to another task, which takes it with [`Self::adopt`]: lockdep,
    /// which tracks it per task, forgets it here. The semaphore stays held: until somebody
    /// adopts it and releases it, every reader and writer waits.
    pub(crate) fn hand_over(self) -> &'a PercpuRwSem {
        let g = ManuallyDrop::new(self);
        // SAFETY: By the type invariant this task holds the write side; lockdep forgets it
        // here, and the guard that would release it is forgotten.
        unsafe { helpers::tf_percpu_rwsem_lockdep_release(g.sem.as_raw(), ip()) };
        g.sem
    }

    /// Takes over the write side of `sem` that another task handed on with
    /// [`Self::hand_over`]: lockdep records it for this task as a trylock (no dependency),
    /// as `thaw_super()` does for the levels a freeze left held.
    ///
    /// # Safety
    ///
    /// The write side of `sem` is held, was handed on by the task that took it, and nobody
    /// else has taken it over.
    pub(crate) unsafe fn adopt(sem: &'a PercpuRwSem) -> Self {
        // SAFETY: `sem` is initialised (its type invariant); lockdep only records the lock.
        unsafe { helpers::tf_percpu_rwsem_lockdep_adopt(sem.as_raw(), ip()) };
        // INVARIANT: held per the caller, and recorded for this task above.
        PercpuWriteGuard {
            sem,
            since: Instant::now(),
            _not_send: PhantomData,
        }
    }
}

impl Drop for PercpuWriteGuard<'_> {
    fn drop(&mut self) {
        // SAFETY: By the type invariant this task holds the write side.
        unsafe { bindings::percpu_up_write(self.sem.as_raw()) };
    }
}

/// The caller's address, for lockdep reports (`_RET_IP_`).
///
/// Rust has no stable `__builtin_return_address()`; lockdep only prints the address, and the
/// address of this module's code names the call site well enough.
fn ip() -> c_ulong {
    let this: fn() -> c_ulong = ip;
    this as usize as c_ulong
}

/// A [`PercpuRwSem`] owned by Rust code (used by the KUnit tests).
///
/// # Invariants
///
/// `sem` was initialised by `__percpu_init_rwsem()` and is freed on drop.
#[pin_data(PinnedDrop)]
pub(crate) struct OwnedPercpuRwSem {
    #[pin]
    sem: PercpuRwSem,
}

impl OwnedPercpuRwSem {
    /// A new, unlocked semaphore of lock class `key`.
    pub(crate) fn new(
        name: &'static CStr,
        key: Pin<&'static LockClassKey>,
    ) -> impl PinInit<Self, Error> {
        try_pin_init!(Self {
            sem <- PercpuRwSem::init(name, key),
        })
    }

    /// Read side, for tests: `percpu_down_read()`.
    pub(crate) fn down_read(&self) -> PercpuReadGuard<'_> {
        // SAFETY: Initialised (type invariant).
        unsafe { helpers::tf_percpu_down_read(self.sem.as_raw()) };
        // INVARIANT: taken above.
        PercpuReadGuard {
            sem: &self.sem,
            _not_send: PhantomData,
        }
    }

    /// Read side, for tests: `percpu_down_read_trylock()`.
    pub(crate) fn try_down_read(&self) -> Option<PercpuReadGuard<'_>> {
        // SAFETY: Initialised (type invariant).
        if !unsafe { helpers::tf_percpu_down_read_trylock(self.sem.as_raw()) } {
            return None;
        }
        // INVARIANT: taken above.
        Some(PercpuReadGuard {
            sem: &self.sem,
            _not_send: PhantomData,
        })
    }
}

impl core::ops::Deref for OwnedPercpuRwSem {
    type Target = PercpuRwSem;

    fn deref(&self) -> &PercpuRwSem {
        &self.sem
    }
}

/// The read side of a [`PercpuRwSem`], held; dropping it is `percpu_up_read()`.
///
/// # Invariants
///
/// This task took the read side of `sem` and has not released it.
pub(crate) struct PercpuReadGuard<'a> {
    sem: &'a PercpuRwSem,
    /// Released by the task that took it (lockdep).
    _not_send: PhantomData<*mut ()>,
}

impl Drop for PercpuReadGuard<'_> {
    fn drop(&mut self) {
        // SAFETY: By the type invariant this task holds the read side.
        unsafe { helpers::tf_percpu_up_read(self.sem.as_raw()) };
    }
}

impl PercpuRwSem {
    fn init(name: &'static CStr, key: Pin<&'static LockClassKey>) -> impl PinInit<Self, Error> {
        // SAFETY: `__percpu_init_rwsem` initialises the semaphore in place (it is not moved:
        // the slot is pinned) or returns an error having allocated nothing.
        unsafe {
            pin_init::pin_init_from_closure(move |slot: *mut Self| {
                kernel::error::to_result(bindings::__percpu_init_rwsem(
                    Opaque::cast_into(addr_of_mut!((*slot).inner)),
                    name.as_char_ptr(),
                    key.as_ptr(),
                ))
            })
        }
    }
}

#[pinned_drop]
impl PinnedDrop for OwnedPercpuRwSem {
    fn drop(self: Pin<&mut Self>) {
        // SAFETY: Initialised by `__percpu_init_rwsem()` (type invariant) and unused from now
        // on; `percpu_free_rwsem()` waits for a pending `rcu_sync` callback (`rcu_barrier()`).
        unsafe { bindings::percpu_free_rwsem(self.sem.as_raw()) };
    }
}

// The device module's suite; the system-wide module, built from the same file, leaves it out
// (one suite of this name; Kbuild sets the cfg for that module's crate).
#[cfg(not(tf_livepatch))]
#[kunit_tests(timed_freeze_percpu_rwsem)]
mod tests {
    use super::*;
    use crate::rcu_sync;
    use kernel::{
        sync::{
            atomic::{Acquire, Atomic, Relaxed, Release},
            Arc,
        },
        time::delay::fsleep,
        workqueue,
    };

    /// The timeout of the timed write locks below.
    const TIMEOUT_MS: i64 = 200;
    /// How late a timed-out write lock may return (TCG, KASAN and lockdep are slow).
    const SLACK_MS: i64 = 500;
    /// Result not yet known.
    const PENDING: i32 = i32::MIN;

    /// What the test and its work items share.
    #[pin_data]
    struct Shared {
        #[pin]
        sem: OwnedPercpuRwSem,
        /// Reader A is inside.
        a_in: Atomic<bool>,
        /// Reader A may leave.
        a_release: Atomic<bool>,
        /// Reader B got in (and left again).
        b_done: Atomic<bool>,
        /// Reader B's wait, in ns.
        b_waited_ns: Atomic<i64>,
        /// The writer's result: 0, a negative errno, or PENDING.
        w_result: Atomic<i32>,
        w_elapsed_ns: Atomic<i64>,
        running: Atomic<i32>,
    }

    fn shared() -> Result<Arc<Shared>> {
        Arc::pin_init(
            try_pin_init!(Shared {
                sem <- OwnedPercpuRwSem::new(c"tf_test_sem", kernel::sync::static_lock_class!()),
                a_in: Atomic::new(false),
                a_release: Atomic::new(false),
                b_done: Atomic::new(false),
                b_waited_ns: Atomic::new(0),
                w_result: Atomic::new(PENDING),
                w_elapsed_ns: Atomic::new(0),
                running: Atomic::new(0),
            }? Error),
            GFP_KERNEL,
        )
    }

    fn sleep_ms(ms: i64) {
        fsleep(Delta::from_millis(ms));
    }

    /// Polls `cond` every few ms for up to `ms`; true when it held.
    fn wait_until(ms: i64, cond: impl Fn() -> bool) -> bool {
        let deadline = Deadline::after(Delta::from_millis(ms));
        while !cond() {
            if deadline.passed() {
                return false;
            }
            sleep_ms(5);
        }
        true
    }

    /// Runs `f(shared)` on the workqueue for long work items (they block for up to seconds),
    /// with its own reference on `shared`.
    ///
    /// The flags below are stored with `Release` after what they announce and loaded with
    /// `Acquire` before what they guard is read, as a C test would with
    /// `smp_store_release()` / `smp_load_acquire()`.
    fn spawn(s: &Arc<Shared>, f: fn(&Shared)) -> Result {
        let s2 = s.clone();
        s.running.add(1, Relaxed);
        let ret = workqueue::system_long().try_spawn(GFP_KERNEL, move || {
            f(&s2);
            s2.running.fetch_sub(1, Release);
        });
        if ret.is_err() {
            s.running.add(-1, Relaxed);
            return Err(ENOMEM);
        }
        Ok(())
    }

    /// Reader A: in, then waits to be told to leave (the FUSE request in the real vector).
    fn reader_a(s: &Shared) {
        let _r = s.sem.down_read();
        s.a_in.store(true, Release);
        while !s.a_release.load(Relaxed) {
            sleep_ms(5);
        }
    }

    /// The timed writer.
    fn writer(s: &Shared) {
        let start = Instant::<Monotonic>::now();
        let r = s.sem.down_write_timeout(
            &Deadline::after(Delta::from_millis(TIMEOUT_MS)),
            GracePeriod::Normal,
        );
        s.w_elapsed_ns.store(start.elapsed().as_nanos(), Relaxed);
        s.w_result
            .store(r.err().map_or(0, |e| e.err.to_errno()), Release);
    }

    /// Reader B: arrives while the writer is pending (the daemon in the real vector).
    fn reader_b(s: &Shared) {
        let start = Instant::<Monotonic>::now();
        drop(s.sem.down_read());
        s.b_waited_ns.store(start.elapsed().as_nanos(), Relaxed);
        s.b_done.store(true, Release);
    }

    /// Releases reader A and waits for every work item when the test case ends, however it
    /// ends: a KUnit deferred action, which also runs when a failed assertion aborts the case.
    /// That ends the case's thread without unwinding, so a guard's drop would not run, and a
    /// reader A left waiting would outlive the module (its code runs on after `rmmod`).
    fn cleanup(s: &Arc<Shared>) -> Result {
        /// The action.
        ///
        /// # Safety
        ///
        /// `data` is a reference on a `Shared` made raw by `cleanup()`, passed here once.
        unsafe extern "C" fn release(data: *mut c_void) {
            // SAFETY: The reference `cleanup()` made raw, handed to this action once.
            let s = unsafe { Arc::from_raw(data.cast::<Shared>()) };
            s.a_release.store(true, Relaxed);
            while s.running.load(Acquire) != 0 {
                sleep_ms(5);
            }
        }
        // SAFETY: Called from a KUnit test case, whose `struct kunit` this returns.
        let test = unsafe { bindings::kunit_get_current_test() };
        let data = Arc::into_raw(s.clone()).cast_mut().cast::<c_void>();
        // SAFETY: `test` is the running case; when the action cannot be added,
        // `kunit_add_action_or_reset()` runs it at once, which takes the reference back.
        kernel::error::to_result(unsafe {
            bindings::kunit_add_action_or_reset(test, Some(release), data)
        })
    }

    /// Whether a new reader would block right now.
    fn readers_blocked(sem: &OwnedPercpuRwSem) -> bool {
        sem.try_down_read().is_none()
    }

    /// Whether readers get their fast path back once the queued `rcu_sync` callbacks ran.
    ///
    /// An exit that finds the callback of an earlier exit still pending (GP_EXIT ->
    /// GP_REPLAY) makes that callback queue itself once more, so it may take two barriers.
    fn fast_path_returns(sem: &PercpuRwSem) -> bool {
        for _ in 0..2 {
            kernel::sync::rcu::rcu_barrier();
        }
        sem.readers_fast()
    }

    fn ms(ns: i64) -> i64 {
        ns / 1_000_000
    }

    #[test]
    fn no_readers_succeeds() -> Result {
        let s = shared()?;
        let start = Instant::<Monotonic>::now();
        let g = s
            .sem
            .down_write_timeout(
                &Deadline::after(Delta::from_millis(TIMEOUT_MS)),
                GracePeriod::Normal,
            )
            .map_err(|e| e.err)?;
        assert!(start.elapsed().as_millis() < TIMEOUT_MS);
        // Held: readers are switched to the slow path and blocked.
        assert!(!s.sem.readers_fast());
        assert!(readers_blocked(&s.sem));
        drop(g);
        assert!(!readers_blocked(&s.sem));
        Ok(())
    }

    #[test]
    fn reader_held_times_out() -> Result {
        let s = shared()?;
        cleanup(&s)?;
        spawn(&s, reader_a)?;
        assert!(wait_until(5000, || s.a_in.load(Acquire)));
        assert_eq!(s.sem.readers(), 1);

        let start = Instant::<Monotonic>::now();
        let r = s.sem.down_write_timeout(
            &Deadline::after(Delta::from_millis(TIMEOUT_MS)),
            GracePeriod::Normal,
        );
        let took = ms(start.elapsed().as_nanos());
        pr_info!(
            "reader held: ETIMEDOUT after {} ms (timeout {} ms)\n",
            took,
            TIMEOUT_MS
        );
        assert_eq!(r.err().map(|e| e.err), Some(ETIMEDOUT));
        assert!(took >= TIMEOUT_MS);
        assert!(took <= TIMEOUT_MS + SLACK_MS);
        // The reader is still inside, untouched.
        assert_eq!(s.sem.readers(), 1);

        // After the failure a new reader gets in at once (slow path until a grace
        // period has passed, but not blocked) ...
        assert!(!readers_blocked(&s.sem));
        // ... and once the rcu_sync callback has run, readers take the fast path again.
        assert!(fast_path_returns(&s.sem));
        Ok(())
    }

    #[test]
    fn blocked_reader_released_by_timeout() -> Result {
        // R->W->R in miniature: A holds the read side, the writer waits for A and blocks
        // new readers, B arrives and blocks behind the writer. The writer's timeout must
        // release B while A is still inside.
        let s = shared()?;
        cleanup(&s)?;
        spawn(&s, reader_a)?;
        assert!(wait_until(5000, || s.a_in.load(Acquire)));
        spawn(&s, writer)?;
        // Wait until the writer owns `block` (readers now block).
        assert!(wait_until(5000, || readers_blocked(&s.sem)));
        spawn(&s, reader_b)?;

        assert!(wait_until(TIMEOUT_MS + SLACK_MS + 5000, || {
            s.w_result.load(Acquire) != PENDING
        }));
        assert_eq!(s.w_result.load(Relaxed), ETIMEDOUT.to_errno());
        let took = ms(s.w_elapsed_ns.load(Relaxed));
        assert!(took >= TIMEOUT_MS);
        assert!(took <= TIMEOUT_MS + SLACK_MS);

        // B gets through while A is still inside.
        assert!(wait_until(SLACK_MS, || s.b_done.load(Acquire)));
        assert!(!s.a_release.load(Relaxed));
        assert_eq!(s.sem.readers(), 1);
        pr_info!(
            "R->W->R: writer gave up after {} ms, blocked reader got in after {} ms\n",
            took,
            ms(s.b_waited_ns.load(Relaxed))
        );
        Ok(())
    }

    #[test]
    fn timed_lock_released_by_percpu_up_write() -> Result {
        let s = shared()?;
        s.sem
            .down_write_timeout(
                &Deadline::after(Delta::from_millis(TIMEOUT_MS)),
                GracePeriod::Expedited,
            )
            .map_err(|e| e.err)?
            .keep_held();
        assert!(readers_blocked(&s.sem));
        // SAFETY: Held (kept) just above, in this task: the kernel's own release.
        unsafe { bindings::percpu_up_write(s.sem.as_raw()) };
        assert!(!readers_blocked(&s.sem));
        // And the ordinary write side works as before on the same semaphore.
        drop(s.sem.down_write());
        assert!(fast_path_returns(&s.sem));
        Ok(())
    }

    /// An exit that finds the callback of an earlier exit still queued (GP_EXIT) only marks
    /// it (GP_REPLAY); that callback then queues itself once more, after any `rcu_barrier()`
    /// already under way. What module exit waits for must cover that second callback.
    #[test]
    fn module_exit_waits_for_requeued_callbacks() -> Result {
        // Start from none of ours in flight (earlier cases leave some queued).
        rcu_sync::wait_for_callbacks();
        let s = shared()?;
        {
            // The callback cannot run (and move the state on) before the check: its grace
            // period waits for this read-side critical section.
            let _rcu = kernel::sync::rcu::read_lock();
            assert!(s.sem.rss().test_queue_replay());
            assert!(s.sem.rss().test_is_replay());
        }
        kernel::sync::rcu::rcu_barrier();
        pr_info!(
            "after one rcu_barrier(): {} callback(s) of ours still queued\n",
            rcu_sync::in_flight()
        );
        rcu_sync::wait_for_callbacks();
        assert_eq!(rcu_sync::in_flight(), 0);
        // The requeued callback ran too: the state is back to GP_IDLE.
        assert!(s.sem.readers_fast());
        Ok(())
    }

    /// The state of `sem`'s `rcu_sync`.
    fn rss_state(sem: &PercpuRwSem) -> (&'static str, i32) {
        sem.rss().test_state()
    }

    /// The one-grace-period switch of several semaphores leaves each as its own
    /// `rcu_sync_enter()` would: readers on the slow path, `GP_PASSED`, one entry more; one
    /// already entered by somebody else gets one entry more and no second grace period. Ending
    /// the switches brings each back to idle after a grace period.
    #[test]
    fn one_grace_period_switch_states() -> Result {
        let (a, b, c) = (shared()?, shared()?, shared()?);
        let earlier = b.sem.switch_readers(GracePeriod::Normal);
        assert_eq!(rss_state(&b.sem), ("passed", 1));
        let switches =
            PercpuRwSem::switch_readers_of([&*a.sem, &*b.sem, &*c.sem], GracePeriod::Normal);
        assert_eq!(rss_state(&a.sem), ("passed", 1));
        assert_eq!(rss_state(&b.sem), ("passed", 2));
        assert_eq!(rss_state(&c.sem), ("passed", 1));
        for s in [&a, &b, &c] {
            assert!(!s.sem.readers_fast());
            // The switch blocks nobody: a reader still gets in at once.
            assert!(!readers_blocked(&s.sem));
        }
        drop(switches);
        assert_eq!(rss_state(&b.sem), ("passed", 1));
        for (s, count) in [(&a, 0), (&c, 0)] {
            let (state, n) = rss_state(&s.sem);
            assert_eq!(n, count);
            assert!(state == "exit" || state == "replay" || state == "idle");
        }
        drop(earlier);
        rcu_sync::wait_for_callbacks();
        for s in [&a, &b, &c] {
            assert_eq!(rss_state(&s.sem), ("idle", 0));
            assert!(s.sem.readers_fast());
        }
        Ok(())
    }

    /// A write lock taken on a switch made ahead times out like one that switched by itself,
    /// and its undo ends the switch: the readers it blocked get in, the switch count is back
    /// to zero, and the other semaphore's switch is still good for its own write lock.
    #[test]
    fn switched_write_lock_times_out_and_undoes() -> Result {
        let (s, t) = (shared()?, shared()?);
        cleanup(&s)?;
        spawn(&s, reader_a)?;
        assert!(wait_until(5000, || s.a_in.load(Acquire)));
        let [ws, wt] = PercpuRwSem::switch_readers_of([&*s.sem, &*t.sem], GracePeriod::Normal);
        let start = Instant::<Monotonic>::now();
        let r = ws.down_write(&Deadline::after(Delta::from_millis(TIMEOUT_MS)));
        assert_eq!(r.err().map(|e| e.err), Some(ETIMEDOUT));
        assert!(ms(start.elapsed().as_nanos()) <= TIMEOUT_MS + SLACK_MS);
        assert!(!readers_blocked(&s.sem));
        assert_eq!(rss_state(&s.sem).1, 0);
        drop(
            wt.down_write(&Deadline::after(Delta::from_millis(TIMEOUT_MS)))
                .map_err(|e| e.err)?,
        );
        assert_eq!(rss_state(&t.sem).1, 0);
        s.a_release.store(true, Release);
        rcu_sync::wait_for_callbacks();
        assert_eq!(rss_state(&s.sem), ("idle", 0));
        assert_eq!(rss_state(&t.sem), ("idle", 0));
        Ok(())
    }

    #[test]
    fn passed_deadline_makes_one_attempt() -> Result {
        let s = shared()?;
        cleanup(&s)?;
        // Free: an already-passed deadline still takes the lock.
        drop(
            s.sem
                .down_write_timeout(&Deadline::after(Delta::ZERO), GracePeriod::Normal)
                .map_err(|e| e.err)?,
        );
        spawn(&s, reader_a)?;
        assert!(wait_until(5000, || s.a_in.load(Acquire)));
        // Held by a reader: fails at once.
        let start = Instant::<Monotonic>::now();
        let r = s
            .sem
            .down_write_timeout(&Deadline::after(Delta::ZERO), GracePeriod::Normal);
        assert_eq!(r.err().map(|e| e.err), Some(ETIMEDOUT));
        assert!(start.elapsed().as_millis() <= SLACK_MS);
        Ok(())
    }
}
