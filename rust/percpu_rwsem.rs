// SPDX-License-Identifier: GPL-2.0

//! Percpu read-write semaphores with a timed, killable write lock.
//!
//! C header: [`include/linux/percpu-rwsem.h`](srctree/include/linux/percpu-rwsem.h)
//!
//! [`PercpuRwSem`] wraps the kernel's own `struct percpu_rw_semaphore`, typically one that
//! somebody else embeds (the freeze levels `sb->s_writers.rw_sem[]` of a superblock), so
//! that its writer side can be taken with a deadline:
//! [`PercpuRwSem::down_write_timeout`] takes the same steps as `percpu_down_write()`
//! (kernel/locking/percpu-rwsem.c), in the same order:
//!
//! 1. lockdep: acquire the write side;
//! 2. switch readers to the slow path ([`rcu_sync_enter`], a mirror of the unexported
//!    `rcu_sync_enter()`);
//! 3. take `sem->block`, which makes new readers block and excludes other writers;
//! 4. wait for the readers inside to drain.
//!
//! Steps 3 and 4 wait with a deadline and end on a fatal signal. When either ends early,
//! everything done so far is undone before returning: after step 4 that undo is exactly
//! `percpu_up_write()` (lockdep release, `block` cleared, blocked readers and writers
//! woken, `rcu_sync_exit()`); after step 3 it is the lockdep release and [`rcu_sync_exit`].
//!
//! [`PercpuRwSem::readers`] is a diagnostic: how many readers are inside right now.

use crate::ffi;
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

/// How the reader switch (`rcu_sync_enter()`) waits for its grace period.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum GracePeriod {
    /// `synchronize_rcu()`, as `percpu_down_write()` does.
    Normal,
    /// `synchronize_rcu_expedited()`: a faster switch for an IPI to every CPU.
    Expedited,
}

/// Why a timed write lock was not taken: the deadline passed (`ETIMEDOUT`) or a fatal
/// signal came (`EINTR`), with the readers that were inside at that moment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct WaitError {
    /// `ETIMEDOUT` or `EINTR`.
    pub(crate) err: Error,
    /// Readers inside when the wait ended, counted before anything was undone: the undo
    /// hands the lock to the readers it had blocked, which then count too.
    pub(crate) readers: u32,
}

/// A point in time after which a timed wait gives up.
#[derive(Clone, Copy)]
pub(crate) struct Deadline {
    end: Instant<Monotonic>,
}

impl Deadline {
    /// A deadline `timeout` from now.
    pub(crate) fn after(timeout: Delta) -> Self {
        Self {
            end: Instant::now() + timeout,
        }
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
        // SAFETY: `PercpuRwSem` is `repr(transparent)` over `Opaque<percpu_rw_semaphore>`,
        // itself transparent over the C struct; validity for `'a` is the caller's promise.
        // INVARIANT: the caller promises the semaphore is initialised for `'a`.
        unsafe { &*ptr.cast::<Self>() }
    }

    fn as_raw(&self) -> *mut bindings::percpu_rw_semaphore {
        self.inner.get()
    }

    /// The semaphore's `rcu_sync`.
    fn rss_raw(&self) -> *mut bindings::rcu_sync {
        // SAFETY: A field of the initialised semaphore (type invariant); no reference is made.
        unsafe { addr_of_mut!((*self.as_raw()).rss) }
    }

    /// How many readers are inside right now (the sum of the per-CPU counters).
    ///
    /// Racy by nature: a diagnostic, not a synchronisation primitive.
    pub(crate) fn readers(&self) -> u32 {
        // SAFETY: The semaphore is initialised (type invariant).
        unsafe { ffi::tf_percpu_rwsem_readers(self.as_raw()) }
    }

    /// Whether readers take the fast path right now (`rcu_sync_is_idle()`).
    pub(crate) fn readers_fast(&self) -> bool {
        // SAFETY: The semaphore is initialised (type invariant); `gp_state` is read once,
        // as `READ_ONCE()` in `rcu_sync_is_idle()`.
        let state = unsafe { addr_of_mut!((*self.as_raw()).rss.gp_state).read_volatile() };
        state == rcu_sync::GP_IDLE
    }

    /// Takes the write lock, giving up at `deadline` or on a fatal signal.
    ///
    /// On `ETIMEDOUT` or `EINTR` nothing is held and every step taken has been undone:
    /// readers that blocked behind this writer are woken and proceed, and the reader fast
    /// path comes back after a grace period, exactly as after `percpu_up_write()`.
    ///
    /// A deadline that has already passed still makes one attempt: it succeeds when no
    /// reader is inside (the reader switch waits for one RCU grace period).
    pub(crate) fn down_write_timeout(
        &self,
        deadline: &Deadline,
        gp: GracePeriod,
    ) -> Result<PercpuWriteGuard<'_>, WaitError> {
        let sem = self.as_raw();
        kernel::task::might_sleep();
        // SAFETY: The semaphore is initialised (type invariant).
        unsafe { ffi::tf_percpu_rwsem_lockdep_acquire(sem, ip()) };

        // Notify readers to take the slow path.
        // SAFETY: `rss` of an initialised semaphore is an initialised `rcu_sync`.
        unsafe { rcu_sync::enter(self.rss_raw(), gp) };

        // Try set sem->block; this provides writer-writer exclusion. Having sem->block set
        // makes new readers block.
        if let Err(err) = self.wait_block(deadline) {
            let readers = self.readers();
            // Undo what percpu_up_write() would not: we never owned `block`.
            // SAFETY: Acquired above, in this task.
            unsafe { ffi::tf_percpu_rwsem_lockdep_release(sem, ip()) };
            // SAFETY: Entered above.
            unsafe { rcu_sync::exit(self.rss_raw()) };
            return Err(WaitError { err, readers });
        }

        // INVARIANT: from here on `block` is ours, so the guard may release it.
        let guard = PercpuWriteGuard {
            sem: self,
            _not_send: PhantomData,
        };

        // Wait for all active readers to complete. On failure, dropping the guard is
        // percpu_up_write(): the complete undo.
        self.wait_readers(deadline)?;
        Ok(guard)
    }

    /// The kernel's own `percpu_down_write()`: uninterruptible, without a deadline.
    pub(crate) fn down_write(&self) -> PercpuWriteGuard<'_> {
        // SAFETY: The semaphore is initialised (type invariant).
        unsafe { bindings::percpu_down_write(self.as_raw()) };
        // INVARIANT: taken above.
        PercpuWriteGuard {
            sem: self,
            _not_send: PhantomData,
        }
    }

    /// Step 3: owns `sem->block` on success.
    fn wait_block(&self, deadline: &Deadline) -> Result {
        loop {
            let left = deadline.remaining_jiffies();
            // SAFETY: The semaphore is initialised (type invariant).
            let ret = unsafe { ffi::tf_percpu_rwsem_wait_block(self.as_raw(), left) };
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
        let sem = self.as_raw();
        // SAFETY: `writer` of an initialised semaphore is an initialised `rcuwait`; this task
        // is the only writer (it owns `block`), so it may publish itself there.
        unsafe { ffi::tf_prepare_to_rcuwait(addr_of_mut!((*sem).writer)) };
        let ret = loop {
            // SAFETY: Sets the state of the current task only.
            unsafe { ffi::tf_set_current_state_killable() };
            let readers = self.readers();
            if readers == 0 {
                // If we observed the decrement; ensure we see the entire critical section.
                // (readers_active_check(): C matches B.)
                smp_mb(Full);
                break Ok(());
            }
            // SAFETY: Reads the current task's signals only.
            if unsafe { ffi::tf_fatal_signal_pending() } {
                break Err(WaitError {
                    err: EINTR,
                    readers,
                });
            }
            let left = deadline.remaining_jiffies();
            if left == 0 {
                break Err(WaitError {
                    err: ETIMEDOUT,
                    readers,
                });
            }
            // SAFETY: Sleeping is allowed here (`might_sleep()` above, no spinlock held);
            // readers leaving wake us through `rcuwait_wake_up(&sem->writer)`.
            unsafe { bindings::schedule_timeout(left) };
        };
        // SAFETY: Pairs with `tf_prepare_to_rcuwait()` above; sets TASK_RUNNING.
        unsafe { bindings::finish_rcuwait(addr_of_mut!((*sem).writer)) };
        ret
    }
}

/// The write side of a [`PercpuRwSem`], held.
///
/// Dropping it is `percpu_up_write()`.
///
/// # Invariants
///
/// This task took the write side of `sem` (lockdep acquired, readers switched to the slow
/// path, `block` owned) and has not released it.
pub(crate) struct PercpuWriteGuard<'a> {
    sem: &'a PercpuRwSem,
    /// The write side is released by the task that took it (lockdep tracks it per task).
    _not_send: PhantomData<*mut ()>,
}

impl PercpuWriteGuard<'_> {
    /// Keeps the write side held past the guard, for a lock that a later, separate call
    /// releases with `percpu_up_write()` (a frozen superblock is thawed by `thaw_super()`).
    pub(crate) fn keep_held(self) {
        let _ = ManuallyDrop::new(self);
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
    pub(crate) fn down_read(&self) {
        // SAFETY: Initialised (type invariant).
        unsafe { ffi::tf_percpu_down_read(self.sem.as_raw()) }
    }

    /// Read side, for tests: `percpu_down_read_trylock()`; true when taken.
    pub(crate) fn try_down_read(&self) -> bool {
        // SAFETY: Initialised (type invariant).
        unsafe { ffi::tf_percpu_down_read_trylock(self.sem.as_raw()) }
    }

    /// Read side, for tests: `percpu_up_read()`.
    ///
    /// # Safety
    ///
    /// The caller holds a read side taken with [`Self::down_read`] in the same task.
    pub(crate) unsafe fn up_read(&self) {
        // SAFETY: Initialised (type invariant); the read side is held per the caller.
        unsafe { ffi::tf_percpu_up_read(self.sem.as_raw()) }
    }

    /// The ordinary, untimed write side: `percpu_down_write()`; release with
    /// [`Self::up_write`].
    pub(crate) fn down_write(&self) {
        // SAFETY: Initialised (type invariant).
        unsafe { bindings::percpu_down_write(self.sem.as_raw()) }
    }

    /// `percpu_up_write()`.
    ///
    /// # Safety
    ///
    /// The caller holds the write side in the same task.
    pub(crate) unsafe fn up_write(&self) {
        // SAFETY: Initialised (type invariant); held per the caller.
        unsafe { bindings::percpu_up_write(self.sem.as_raw()) }
    }
}

impl core::ops::Deref for OwnedPercpuRwSem {
    type Target = PercpuRwSem;

    fn deref(&self) -> &PercpuRwSem {
        &self.sem
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

/// A mirror of the parts of kernel/rcu/sync.c that are not exported.
///
/// `rcu_sync_enter()` and `rcu_sync_exit()` switch the readers of a percpu rw-semaphore
/// between their fast and slow paths; neither is exported to modules. These are their
/// step-by-step copies (Linux 7.3), with the same state machine, so that the kernel's own
/// `rcu_sync_exit()` (inside `percpu_up_write()`) and ours can be mixed on one `rcu_sync`.
/// One difference: [`enter`] may wait for an expedited grace period ([`GracePeriod`]).
pub(crate) mod rcu_sync {
    use super::GracePeriod;
    use crate::ffi;
    use core::ptr::addr_of_mut;
    use kernel::{
        bindings,
        sync::atomic::{Acquire, Atomic, Relaxed},
    };

    /// Callbacks of ours ([`func`]) queued and not yet finished. A callback that finds
    /// `GP_REPLAY` queues itself again from inside the RCU callback, after any
    /// `rcu_barrier()` already under way, so one barrier is not enough before our code goes
    /// away: [`wait_for_callbacks`] waits until this is zero.
    static IN_FLIGHT: Atomic<i32> = Atomic::new(0);

    // The private `enum { GP_IDLE = 0, GP_ENTER, GP_PASSED, GP_EXIT, GP_REPLAY }` of
    // kernel/rcu/sync.c.
    pub(crate) const GP_IDLE: i32 = 0;
    const GP_ENTER: i32 = 1;
    const GP_PASSED: i32 = 2;
    const GP_EXIT: i32 = 3;
    const GP_REPLAY: i32 = 4;

    /// `READ_ONCE(rsp->gp_state)`.
    ///
    /// # Safety
    ///
    /// `rsp` is a valid `rcu_sync`.
    unsafe fn state(rsp: *mut bindings::rcu_sync) -> i32 {
        // SAFETY: Valid per the caller; a volatile read is `READ_ONCE()`.
        unsafe { addr_of_mut!((*rsp).gp_state).read_volatile() }
    }

    /// `WRITE_ONCE(rsp->gp_state, v)`.
    ///
    /// # Safety
    ///
    /// `rsp` is a valid `rcu_sync` whose `rss_lock` the caller holds.
    unsafe fn set_state(rsp: *mut bindings::rcu_sync, v: i32) {
        // SAFETY: Valid per the caller; a volatile write is `WRITE_ONCE()`.
        unsafe { addr_of_mut!((*rsp).gp_state).write_volatile(v) }
    }

    /// `rsp->rss_lock`, i.e. `rsp->gp_wait.lock`.
    ///
    /// # Safety
    ///
    /// `rsp` is a valid `rcu_sync`.
    unsafe fn lock(rsp: *mut bindings::rcu_sync) -> *mut bindings::spinlock_t {
        // SAFETY: Valid per the caller.
        unsafe { addr_of_mut!((*rsp).gp_wait.lock) }
    }

    /// Mirror of `rcu_sync_func()` (kernel/rcu/sync.c, static): the RCU callback that
    /// moves the state on once a grace period has passed.
    ///
    /// # Safety
    ///
    /// `rhp` is the `cb_head` of a valid `rcu_sync`.
    unsafe fn func(rhp: *mut bindings::callback_head) {
        // SAFETY: `rhp` is `&rsp->cb_head` per the caller (container_of()).
        let rsp = unsafe { kernel::container_of!(rhp, bindings::rcu_sync, cb_head) };

        // SAFETY: `rsp` is valid; its lock is taken and released in pairs below.
        unsafe {
            let st = state(rsp);
            kernel::warn_on!(st == GP_IDLE);
            kernel::warn_on!(st == GP_PASSED);

            let flags = ffi::tf_spin_lock_irqsave(lock(rsp));
            if (*rsp).gp_count != 0 {
                // We're at least a GP after the GP_IDLE->GP_ENTER transition.
                set_state(rsp, GP_PASSED);
                ffi::tf_wake_up_locked(addr_of_mut!((*rsp).gp_wait));
            } else if (*rsp).gp_state == GP_REPLAY {
                // A new rcu_sync_exit() has happened; requeue the callback to catch a later
                // GP.
                set_state(rsp, GP_EXIT);
                call(rsp);
            } else {
                // We're at least a GP after the last rcu_sync_exit(); everybody will now
                // have observed the write side critical section. Let 'em rip!
                set_state(rsp, GP_IDLE);
            }
            ffi::tf_spin_unlock_irqrestore(lock(rsp), flags);
        }
    }

    /// The RCU callback [`call`] queues: [`func`], counted in [`IN_FLIGHT`]. (`enter()` calls
    /// `func()` itself, as `rcu_sync_enter()` calls `rcu_sync_func()`: not counted.)
    ///
    /// # Safety
    ///
    /// `rhp` is the `cb_head` of a valid `rcu_sync`, queued by [`call`].
    unsafe extern "C" fn callback(rhp: *mut bindings::callback_head) {
        // SAFETY: Per the caller.
        unsafe { func(rhp) };
        // The last thing this callback does: see `wait_for_callbacks()`.
        let was = IN_FLIGHT.fetch_sub(1, Relaxed);
        warn_on_once!(was <= 0);
    }

    /// Mirror of `rcu_sync_call()` (kernel/rcu/sync.c, static).
    ///
    /// # Safety
    ///
    /// `rsp` is a valid `rcu_sync` that stays valid until the callback ran (the owner's
    /// `rcu_sync_dtor()` waits for it with `rcu_barrier()`, and so does module unload).
    unsafe fn call(rsp: *mut bindings::rcu_sync) {
        IN_FLIGHT.fetch_add(1, Relaxed);
        // SAFETY: Per the caller.
        unsafe { ffi::tf_call_rcu_hurry(addr_of_mut!((*rsp).cb_head), Some(callback)) };
    }

    /// Mirror of `rcu_sync_enter()` (kernel/rcu/sync.c): force readers onto the slow path.
    ///
    /// # Safety
    ///
    /// `rsp` is a valid, initialised `rcu_sync`; the caller may sleep.
    pub(crate) unsafe fn enter(rsp: *mut bindings::rcu_sync, gp: GracePeriod) {
        // SAFETY: `rsp` is valid per the caller; the lock is taken and released in pairs.
        unsafe {
            ffi::tf_spin_lock_irq(lock(rsp));
            let gp_state = (*rsp).gp_state;
            if gp_state == GP_IDLE {
                set_state(rsp, GP_ENTER);
                kernel::warn_on!((*rsp).gp_count != 0);
                // Note that we could simply do rcu_sync_call(rsp) here and avoid the
                // "if (gp_state == GP_IDLE)" block below. (Comment of the original.)
            }
            (*rsp).gp_count += 1;
            ffi::tf_spin_unlock_irq(lock(rsp));

            if gp_state == GP_IDLE {
                // See the comment above, this simply does the "synchronous" call_rcu(
                // rcu_sync_func) which does GP_ENTER -> GP_PASSED.
                match gp {
                    GracePeriod::Normal => bindings::synchronize_rcu(),
                    GracePeriod::Expedited => bindings::synchronize_rcu_expedited(),
                }
                func(addr_of_mut!((*rsp).cb_head));
                // Not really needed, wait_event() would see GP_PASSED.
                return;
            }

            ffi::tf_wait_state_at_least(
                addr_of_mut!((*rsp).gp_wait),
                addr_of_mut!((*rsp).gp_state),
                GP_PASSED,
            );
        }
    }

    /// Mirror of `rcu_sync_exit()` (kernel/rcu/sync.c): allow readers back onto the fast
    /// path after a grace period.
    ///
    /// # Safety
    ///
    /// `rsp` is a valid `rcu_sync` on which this caller did [`enter`], and it stays valid
    /// until the callback queued here has run (see [`call`]).
    pub(crate) unsafe fn exit(rsp: *mut bindings::rcu_sync) {
        // SAFETY: `rsp` is valid per the caller; the lock is taken and released in pairs.
        unsafe {
            kernel::warn_on!(state(rsp) == GP_IDLE);

            ffi::tf_spin_lock_irq(lock(rsp));
            kernel::warn_on!((*rsp).gp_count == 0);
            (*rsp).gp_count -= 1;
            if (*rsp).gp_count == 0 {
                if (*rsp).gp_state == GP_PASSED {
                    set_state(rsp, GP_EXIT);
                    call(rsp);
                } else if (*rsp).gp_state == GP_EXIT {
                    set_state(rsp, GP_REPLAY);
                }
            }
            ffi::tf_spin_unlock_irq(lock(rsp));
        }
    }

    /// Waits until no callback of ours is queued or running, so that the module's code can
    /// go (the pattern of Documentation/RCU/rcubarrier.rst for callbacks that requeue).
    ///
    /// Each `rcu_barrier()` waits for every callback queued before it to finish; a callback
    /// that requeued itself is counted again before it finishes, so a zero seen after a
    /// barrier means none is left.
    pub(crate) fn wait_for_callbacks() {
        loop {
            kernel::sync::rcu::rcu_barrier();
            if IN_FLIGHT.load(Acquire) == 0 {
                break;
            }
        }
    }

    /// Callbacks of ours queued and not yet finished, for tests.
    #[cfg(CONFIG_KUNIT)]
    pub(crate) fn in_flight() -> i32 {
        IN_FLIGHT.load(Relaxed)
    }

    /// For tests: the state an [`exit`] leaves when it finds the callback of an earlier exit
    /// still queued (`GP_REPLAY`, a callback of ours queued), made in one critical section of
    /// `rss_lock` so that the callback, which takes that lock, cannot see it half made.
    ///
    /// # Safety
    ///
    /// `rsp` is a valid, idle `rcu_sync` that stays valid until the callbacks ran.
    #[cfg(CONFIG_KUNIT)]
    pub(crate) unsafe fn test_queue_replay(rsp: *mut bindings::rcu_sync) {
        // SAFETY: Valid per the caller; the lock is taken and released in pairs.
        unsafe {
            ffi::tf_spin_lock_irq(lock(rsp));
            set_state(rsp, GP_REPLAY);
            call(rsp);
            ffi::tf_spin_unlock_irq(lock(rsp));
        }
    }
}

#[kunit_tests(timed_freeze_percpu_rwsem)]
mod tests {
    use super::*;
    use core::sync::atomic::{AtomicBool, AtomicI32, AtomicI64, Ordering};
    use kernel::{sync::Arc, types::ScopeGuard};

    /// The timeout of the timed write locks below.
    const TIMEOUT_MS: i64 = 200;
    /// How late a timed-out write lock may return (TCG, KASAN and lockdep are slow).
    const SLACK_MS: i64 = 500;
    /// Result not yet known.
    const PENDING: i32 = i32::MIN;

    /// What the test and its kernel threads share.
    #[pin_data]
    struct Shared {
        #[pin]
        sem: OwnedPercpuRwSem,
        /// Reader A is inside.
        a_in: AtomicBool,
        /// Reader A may leave.
        a_release: AtomicBool,
        /// Reader B got in (and left again).
        b_done: AtomicBool,
        /// Reader B's wait, in ns.
        b_waited_ns: AtomicI64,
        /// The writer's result: 0, a negative errno, or PENDING.
        w_result: AtomicI32,
        w_elapsed_ns: AtomicI64,
        threads_running: AtomicI32,
    }

    fn shared() -> Result<Arc<Shared>> {
        Arc::pin_init(
            try_pin_init!(Shared {
                sem <- OwnedPercpuRwSem::new(c"tf_test_sem", kernel::sync::static_lock_class!()),
                a_in: AtomicBool::new(false),
                a_release: AtomicBool::new(false),
                b_done: AtomicBool::new(false),
                b_waited_ns: AtomicI64::new(0),
                w_result: AtomicI32::new(PENDING),
                w_elapsed_ns: AtomicI64::new(0),
                threads_running: AtomicI32::new(0),
            }? Error),
            GFP_KERNEL,
        )
    }

    fn msleep(ms: u32) {
        // SAFETY: Tests run in process context and may sleep.
        unsafe { bindings::msleep(ms) };
    }

    /// Polls `cond` every few ms for up to `ms`; true when it held.
    fn wait_until(ms: i64, cond: impl Fn() -> bool) -> bool {
        let deadline = Deadline::after(Delta::from_millis(ms));
        while !cond() {
            if deadline.passed() {
                return false;
            }
            msleep(5);
        }
        true
    }

    /// Runs `f(shared)` in a new kernel thread that holds its own reference on `shared`.
    fn spawn(s: &Arc<Shared>, name: &'static CStr, f: fn(&Shared)) -> Result {
        struct Job {
            s: Arc<Shared>,
            f: fn(&Shared),
        }
        /// The thread function.
        ///
        /// # Safety
        ///
        /// `data` is a `KBox<Job>` leaked with `KBox::into_raw()`, whose ownership passes here.
        unsafe extern "C" fn run(data: *mut c_void) -> c_int {
            // SAFETY: `data` is the `KBox<Job>` leaked by `spawn()`, handed over to us.
            let job = unsafe { KBox::from_raw(data.cast::<Job>()) };
            (job.f)(&job.s);
            job.s.threads_running.fetch_sub(1, Ordering::SeqCst);
            0
        }
        let job = KBox::new(Job { s: s.clone(), f }, GFP_KERNEL)?;
        s.threads_running.fetch_add(1, Ordering::SeqCst);
        let data = KBox::into_raw(job).cast::<c_void>();
        // SAFETY: `run` takes ownership of `data`; `name` is a static string.
        let task = unsafe { ffi::tf_kthread_run(Some(run), data, name.as_char_ptr()) };
        if kernel::error::from_err_ptr(task).is_err() {
            s.threads_running.fetch_sub(1, Ordering::SeqCst);
            // SAFETY: The thread was not created, so `data` is still ours.
            drop(unsafe { KBox::from_raw(data.cast::<Job>()) });
            return Err(ENOMEM);
        }
        Ok(())
    }

    /// Reader A: in, then waits to be told to leave (the FUSE request in the real vector).
    fn reader_a(s: &Shared) {
        s.sem.down_read();
        s.a_in.store(true, Ordering::SeqCst);
        while !s.a_release.load(Ordering::SeqCst) {
            msleep(5);
        }
        // SAFETY: Taken above in this thread.
        unsafe { s.sem.up_read() };
    }

    /// The timed writer.
    fn writer(s: &Shared) {
        let start = Instant::<Monotonic>::now();
        let r = s.sem.down_write_timeout(
            &Deadline::after(Delta::from_millis(TIMEOUT_MS)),
            GracePeriod::Normal,
        );
        s.w_elapsed_ns
            .store(start.elapsed().as_nanos(), Ordering::SeqCst);
        s.w_result
            .store(r.err().map_or(0, |e| e.err.to_errno()), Ordering::SeqCst);
    }

    /// Reader B: arrives while the writer is pending (the daemon in the real vector).
    fn reader_b(s: &Shared) {
        let start = Instant::<Monotonic>::now();
        s.sem.down_read();
        s.b_waited_ns
            .store(start.elapsed().as_nanos(), Ordering::SeqCst);
        // SAFETY: Taken above in this thread.
        unsafe { s.sem.up_read() };
        s.b_done.store(true, Ordering::SeqCst);
    }

    /// Releases reader A and waits for every thread, however the test ends.
    fn cleanup(s: &Arc<Shared>) -> ScopeGuard<Arc<Shared>, impl FnOnce(Arc<Shared>)> {
        ScopeGuard::new_with_data(s.clone(), |s: Arc<Shared>| {
            s.a_release.store(true, Ordering::SeqCst);
            while s.threads_running.load(Ordering::SeqCst) != 0 {
                msleep(5);
            }
        })
    }

    /// Whether a new reader would block right now.
    fn readers_blocked(sem: &OwnedPercpuRwSem) -> bool {
        if sem.try_down_read() {
            // SAFETY: Taken just above.
            unsafe { sem.up_read() };
            false
        } else {
            true
        }
    }

    /// Whether readers get their fast path back once the queued `rcu_sync` callbacks ran.
    ///
    /// An exit that finds the callback of an earlier exit still pending (GP_EXIT ->
    /// GP_REPLAY) makes that callback queue itself once more, so it may take two barriers.
    fn fast_path_returns(sem: &PercpuRwSem) -> bool {
        for _ in 0..2 {
            // SAFETY: `rcu_barrier()` may sleep; nothing else is required.
            unsafe { bindings::rcu_barrier() };
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
        assert!(!s.sem.try_down_read());
        drop(g);
        assert!(s.sem.try_down_read());
        // SAFETY: Taken just above.
        unsafe { s.sem.up_read() };
        Ok(())
    }

    #[test]
    fn reader_held_times_out() -> Result {
        let s = shared()?;
        let _cleanup = cleanup(&s);
        spawn(&s, c"tf-reader-a", reader_a)?;
        assert!(wait_until(5000, || s.a_in.load(Ordering::SeqCst)));
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
        assert!(s.sem.try_down_read());
        // SAFETY: Taken just above.
        unsafe { s.sem.up_read() };
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
        let _cleanup = cleanup(&s);
        spawn(&s, c"tf-reader-a", reader_a)?;
        assert!(wait_until(5000, || s.a_in.load(Ordering::SeqCst)));
        spawn(&s, c"tf-writer", writer)?;
        // Wait until the writer owns `block` (readers now block).
        assert!(wait_until(5000, || readers_blocked(&s.sem)));
        spawn(&s, c"tf-reader-b", reader_b)?;

        assert!(wait_until(TIMEOUT_MS + SLACK_MS + 5000, || {
            s.w_result.load(Ordering::SeqCst) != PENDING
        }));
        assert_eq!(s.w_result.load(Ordering::SeqCst), ETIMEDOUT.to_errno());
        let took = ms(s.w_elapsed_ns.load(Ordering::SeqCst));
        assert!(took >= TIMEOUT_MS);
        assert!(took <= TIMEOUT_MS + SLACK_MS);

        // B gets through while A is still inside.
        assert!(wait_until(SLACK_MS, || s.b_done.load(Ordering::SeqCst)));
        assert!(!s.a_release.load(Ordering::SeqCst));
        assert_eq!(s.sem.readers(), 1);
        pr_info!(
            "R->W->R: writer gave up after {} ms, blocked reader got in after {} ms\n",
            took,
            ms(s.b_waited_ns.load(Ordering::SeqCst))
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
        assert!(!s.sem.try_down_read());
        // SAFETY: Held (kept) just above, in this task.
        unsafe { s.sem.up_write() };
        assert!(s.sem.try_down_read());
        // SAFETY: Taken just above.
        unsafe { s.sem.up_read() };
        // And the ordinary write side works as before on the same semaphore.
        s.sem.down_write();
        // SAFETY: Taken just above.
        unsafe { s.sem.up_write() };
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
        // SAFETY: The initialised `rcu_sync` of a live semaphore, which stays valid until the
        // callbacks ran (`wait_for_callbacks()` below, then `percpu_free_rwsem()`).
        unsafe { rcu_sync::test_queue_replay(s.sem.rss_raw()) };
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

    #[test]
    fn passed_deadline_makes_one_attempt() -> Result {
        let s = shared()?;
        let _cleanup = cleanup(&s);
        // Free: an already-passed deadline still takes the lock.
        drop(
            s.sem
                .down_write_timeout(&Deadline::after(Delta::ZERO), GracePeriod::Normal)
                .map_err(|e| e.err)?,
        );
        spawn(&s, c"tf-reader-a", reader_a)?;
        assert!(wait_until(5000, || s.a_in.load(Ordering::SeqCst)));
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
