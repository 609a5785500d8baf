// SPDX-License-Identifier: GPL-2.0

//! The parts of `kernel/rcu/sync.c` that are not exported, mirrored.
//!
//! C header: [`include/linux/rcu_sync.h`](srctree/include/linux/rcu_sync.h)
//!
//! An `rcu_sync` switches the readers of a percpu rw-semaphore between their fast path (a
//! per-CPU counter) and their slow path (which a writer can block). `rcu_sync_enter()` and
//! `rcu_sync_exit()` are not exported to modules, so [`RcuSync::enter`], [`RcuSync::exit`]
//! and their RCU callback mirror them step by step (Linux 7.3), with the same private state
//! machine, so that the kernel's own `rcu_sync_exit()` (inside `percpu_up_write()`) and ours
//! can be mixed on one `rcu_sync`. `rust/mirrors.txt` fingerprints the originals.
//!
//! Differences from the originals:
//!
//! - [`RcuSync::enter`] may wait for an expedited grace period ([`GracePeriod::Expedited`],
//!   `TIMED_FREEZE_EXPEDITED`) instead of `synchronize_rcu()`.
//! - [`RcuSync::enter_all`] is new: the entry of several `rcu_sync`s with one grace period.
//! - Our RCU callback counts itself in flight ([`wait_for_callbacks`]): it runs this module's
//!   code, and it can queue itself again from inside the callback (`GP_REPLAY`), after an
//!   `rcu_barrier()` already under way, so module exit waits until none is left. The
//!   callbacks the kernel's own `rcu_sync_exit()` queues are the kernel's and run its code.
//! - [`RcuSync::is_idle`] (`rcu_sync_is_idle()`, include/linux/rcu_sync.h) leaves out its
//!   `RCU_LOCKDEP_WARN(!rcu_read_lock_any_held())`: we call it for diagnostics and tests
//!   only, outside a read-side critical section, where a stale answer is fine.
//! - `WARN_ON_ONCE()` is `warn_on_once!`: once per call site, as in C.

use crate::helpers;
use kernel::{
    bindings,
    sync::atomic::{Acquire, Atomic, Relaxed},
    types::Opaque,
};

/// How the reader switch waits for its grace period.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum GracePeriod {
    /// `synchronize_rcu()`, as `rcu_sync_enter()` does.
    Normal,
    /// `synchronize_rcu_expedited()`: a faster switch for an IPI to every CPU.
    Expedited,
}

// The private `enum { GP_IDLE = 0, GP_ENTER, GP_PASSED, GP_EXIT, GP_REPLAY }` of
// kernel/rcu/sync.c.
const GP_IDLE: i32 = 0;
const GP_ENTER: i32 = 1;
const GP_PASSED: i32 = 2;
const GP_EXIT: i32 = 3;
const GP_REPLAY: i32 = 4;

/// Callbacks of ours queued and not yet finished; see [`wait_for_callbacks`].
static IN_FLIGHT: Atomic<i32> = Atomic::new(0);

/// A `struct rcu_sync`.
///
/// # Invariants
///
/// The `rcu_sync` is initialised (`rcu_sync_init()`) and stays in place and initialised for
/// as long as the [`RcuSync`] can be reached, and until every callback queued on it has run
/// (its owner's `rcu_sync_dtor()` waits for them, and so does module exit).
#[repr(transparent)]
pub(crate) struct RcuSync(Opaque<bindings::rcu_sync>);

impl RcuSync {
    /// Borrows an `rcu_sync` that somebody else owns.
    ///
    /// # Safety
    ///
    /// `ptr` points to an initialised `struct rcu_sync` that stays initialised and in place for
    /// `'a`, and until every callback queued on it has run.
    pub(crate) unsafe fn from_raw<'a>(ptr: *mut bindings::rcu_sync) -> &'a Self {
        // INVARIANT: per the caller.
        // SAFETY: `repr(transparent)` over `Opaque<rcu_sync>`, itself transparent over the C
        // struct; valid for `'a` per the caller.
        unsafe { &*ptr.cast::<Self>() }
    }

    fn as_raw(&self) -> *mut bindings::rcu_sync {
        self.0.get()
    }

    /// `rsp->gp_state`, for `READ_ONCE()` and `WRITE_ONCE()`.
    fn gp_state_atomic(&self) -> &Atomic<i32> {
        // SAFETY: A field of an initialised `rcu_sync` (type invariant); no reference is made.
        let ptr = unsafe { core::ptr::addr_of_mut!((*self.as_raw()).gp_state) };
        // SAFETY: `ptr` is valid for as long as `self` (type invariant). Every write of
        // `gp_state`, ours and the kernel's, is a `WRITE_ONCE()` under `rss_lock`, and its
        // plain reads are under that lock too: no data race with a marked access.
        unsafe { Atomic::from_ptr(ptr) }
    }

    /// `READ_ONCE(rsp->gp_state)`.
    fn state(&self) -> i32 {
        self.gp_state_atomic().load(Relaxed)
    }

    /// `rcu_sync_is_idle()`: whether readers take their fast path.
    pub(crate) fn is_idle(&self) -> bool {
        self.state() == GP_IDLE
    }

    /// `spin_lock_irq(&rsp->rss_lock)`.
    fn lock_irq(&self) -> RssGuard<'_> {
        // SAFETY: `rss_lock` (`gp_wait.lock`) of an initialised `rcu_sync` (type invariant);
        // released by the guard's drop.
        unsafe { helpers::tf_spin_lock_irq(self.rss_lock()) };
        // INVARIANT: taken above, with interrupts disabled.
        RssGuard {
            rss: self,
            flags: None,
        }
    }

    /// `spin_lock_irqsave(&rsp->rss_lock, flags)`.
    fn lock_irqsave(&self) -> RssGuard<'_> {
        // SAFETY: As in `lock_irq()`.
        let flags = unsafe { helpers::tf_spin_lock_irqsave(self.rss_lock()) };
        // INVARIANT: taken above; `flags` restores the interrupt state.
        RssGuard {
            rss: self,
            flags: Some(flags),
        }
    }

    /// `#define rss_lock gp_wait.lock`.
    fn rss_lock(&self) -> *mut bindings::spinlock_t {
        // SAFETY: A field of an initialised `rcu_sync` (type invariant); no reference is made.
        unsafe { core::ptr::addr_of_mut!((*self.as_raw()).gp_wait.lock) }
    }

    /// Mirror of `rcu_sync_call()` (kernel/rcu/sync.c, static).
    ///
    /// `_g` is the proof that `rss_lock` is held: `cb_head` is queued exactly while the state
    /// is `GP_EXIT` or `GP_REPLAY`, and the callers move the state into `GP_EXIT` under that
    /// lock from a state (`GP_PASSED`; `GP_REPLAY` from inside the callback itself, whose
    /// `cb_head` is off the list while it runs; `GP_IDLE` in the test) where it is not queued.
    fn call(&self, _g: &mut RssGuard<'_>) {
        IN_FLIGHT.add(1, Relaxed);
        // SAFETY: `cb_head` of an initialised `rcu_sync` that stays valid until the callback
        // ran (type invariant), not queued now (see above); `callback` expects exactly that.
        unsafe {
            helpers::tf_call_rcu_hurry(
                core::ptr::addr_of_mut!((*self.as_raw()).cb_head),
                Some(callback),
            )
        };
    }

    /// Mirror of `rcu_sync_func()` (kernel/rcu/sync.c, static): moves the state on once a
    /// grace period has passed (see the original for the whole story).
    fn func(&self) {
        warn_on_once!(self.state() == GP_IDLE);
        warn_on_once!(self.state() == GP_PASSED);

        let mut g = self.lock_irqsave();
        if g.count() != 0 {
            // We're at least a GP after the GP_IDLE->GP_ENTER transition.
            g.set_state(GP_PASSED);
            g.wake_up_locked();
        } else if g.gp_state() == GP_REPLAY {
            // A new rcu_sync_exit() has happened; requeue the callback to catch a later GP.
            g.set_state(GP_EXIT);
            self.call(&mut g);
        } else {
            // We're at least a GP after the last rcu_sync_exit(); everybody will now have
            // observed the write side critical section. Let 'em rip!
            g.set_state(GP_IDLE);
        }
    }

    /// Mirror of `rcu_sync_enter()` (kernel/rcu/sync.c): forces readers onto the slow path.
    ///
    /// Sleeps (it waits for a grace period): the caller must be allowed to.
    pub(crate) fn enter(&self, gp: GracePeriod) {
        let gp_state;
        {
            let mut g = self.lock_irq();
            gp_state = g.gp_state();
            if gp_state == GP_IDLE {
                g.set_state(GP_ENTER);
                warn_on_once!(g.count() != 0);
                // Note that we could simply do rcu_sync_call(rsp) here and avoid the
                // "if (gp_state == GP_IDLE)" block below.
                //
                // However, synchronize_rcu() can be faster if rcu_expedited or
                // rcu_blocking_is_gp() is true.
                //
                // Another reason is that we can't wait for rcu callback if we are called at
                // early boot time but this shouldn't happen.
            }
            g.set_count(g.count() + 1);
        }

        if gp_state == GP_IDLE {
            // See the comment above, this simply does the "synchronous" call_rcu(
            // rcu_sync_func) which does GP_ENTER -> GP_PASSED.
            Self::synchronize(gp);
            self.func();
            // Not really needed, wait_event() would see GP_PASSED.
            return;
        }

        self.wait_passed();
    }

    /// [`Self::enter`] for several `rcu_sync`s, with one grace period for all.
    ///
    /// Not in the original. Each `rcu_sync` takes the steps of `rcu_sync_enter()` in turn up
    /// to its wait; then those that were idle (now `GP_ENTER`) share one grace period, which
    /// began after every one of them had left `GP_IDLE`, so that every reader that could still
    /// see one of them idle has finished; each of those then passes `GP_ENTER` -> `GP_PASSED`
    /// as after its own wait. The others wait for `GP_PASSED` as [`Self::enter`] does.
    ///
    /// Sleeps (it waits for a grace period): the caller must be allowed to.
    pub(crate) fn enter_all<const N: usize>(syncs: [&RcuSync; N], gp: GracePeriod) {
        let mut was_idle = [false; N];
        for (rsp, idle) in syncs.iter().zip(was_idle.iter_mut()) {
            let mut g = rsp.lock_irq();
            *idle = g.gp_state() == GP_IDLE;
            if *idle {
                g.set_state(GP_ENTER);
                warn_on_once!(g.count() != 0);
            }
            g.set_count(g.count() + 1);
        }

        if was_idle.contains(&true) {
            Self::synchronize(gp);
        }
        // Ours first, then the waits for the others' grace periods: a caller waiting for an
        // `rcu_sync` that we took out of idle must not wait for us to finish waiting for one
        // it took out of idle.
        for (rsp, _) in syncs.iter().zip(was_idle).filter(|(_, idle)| *idle) {
            rsp.func();
        }
        for (rsp, _) in syncs.iter().zip(was_idle).filter(|(_, idle)| !*idle) {
            rsp.wait_passed();
        }
    }

    /// The grace period of [`Self::enter`].
    fn synchronize(gp: GracePeriod) {
        match gp {
            GracePeriod::Normal => kernel::sync::rcu::synchronize_rcu(),
            // SAFETY: May sleep, which the caller may; no other requirement.
            GracePeriod::Expedited => unsafe { bindings::synchronize_rcu_expedited() },
        }
    }

    /// The `wait_event(rsp->gp_wait, READ_ONCE(rsp->gp_state) >= GP_PASSED)` of
    /// `rcu_sync_enter()`.
    fn wait_passed(&self) {
        // SAFETY: `gp_wait` and `gp_state` of an initialised `rcu_sync` (type invariant);
        // `wait_event()` may sleep, which the caller may.
        unsafe {
            helpers::tf_wait_state_at_least(
                core::ptr::addr_of_mut!((*self.as_raw()).gp_wait),
                core::ptr::addr_of_mut!((*self.as_raw()).gp_state),
                GP_PASSED,
            )
        };
    }

    /// Mirror of `rcu_sync_exit()` (kernel/rcu/sync.c): allows readers back onto their fast
    /// path after a grace period.
    ///
    /// # Safety
    ///
    /// The caller did [`Self::enter`] (or the kernel's `rcu_sync_enter()`) on this `rcu_sync`
    /// and has not exited since.
    pub(crate) unsafe fn exit(&self) {
        warn_on_once!(self.state() == GP_IDLE);

        let mut g = self.lock_irq();
        warn_on_once!(g.count() == 0);
        g.set_count(g.count() - 1);
        if g.count() == 0 {
            if g.gp_state() == GP_PASSED {
                g.set_state(GP_EXIT);
                self.call(&mut g);
            } else if g.gp_state() == GP_EXIT {
                g.set_state(GP_REPLAY);
            }
        }
    }

    /// For tests: the state an [`Self::exit`] leaves when it finds the callback of an earlier
    /// exit still queued (`GP_REPLAY`, a callback of ours queued), made in one critical
    /// section of `rss_lock`, so that the callback, which takes that lock, cannot see it half
    /// made. Only from idle (nothing queued, nobody inside): `false`, and nothing done,
    /// otherwise.
    #[cfg(CONFIG_KUNIT)]
    pub(crate) fn test_queue_replay(&self) -> bool {
        let mut g = self.lock_irq();
        if g.gp_state() != GP_IDLE || g.count() != 0 {
            return false;
        }
        g.set_state(GP_REPLAY);
        self.call(&mut g);
        true
    }

    /// For tests: the state's name and the count of entries not exited, read under
    /// `rss_lock`.
    #[cfg(CONFIG_KUNIT)]
    pub(crate) fn test_state(&self) -> (&'static str, i32) {
        let g = self.lock_irq();
        let name = match g.gp_state() {
            GP_IDLE => "idle",
            GP_ENTER => "enter",
            GP_PASSED => "passed",
            GP_EXIT => "exit",
            GP_REPLAY => "replay",
            _ => "?",
        };
        (name, g.count())
    }

    /// For tests: whether the state is `GP_REPLAY`.
    #[cfg(CONFIG_KUNIT)]
    pub(crate) fn test_is_replay(&self) -> bool {
        self.state() == GP_REPLAY
    }
}

/// `rss_lock` of an [`RcuSync`], held, with interrupts disabled.
///
/// # Invariants
///
/// This task holds `rss.rss_lock`, taken with `spin_lock_irqsave()` (`flags` is `Some`) or
/// `spin_lock_irq()` (`None`).
struct RssGuard<'a> {
    rss: &'a RcuSync,
    flags: Option<usize>,
}

impl RssGuard<'_> {
    fn raw(&self) -> *mut bindings::rcu_sync {
        self.rss.as_raw()
    }

    /// `rsp->gp_state`, under the lock.
    fn gp_state(&self) -> i32 {
        // SAFETY: Protected by `rss_lock`, which we hold (type invariant).
        unsafe { (*self.raw()).gp_state }
    }

    /// `WRITE_ONCE(rsp->gp_state, v)`: written under the lock, read without it too.
    fn set_state(&mut self, v: i32) {
        self.rss.gp_state_atomic().store(v, Relaxed);
    }

    /// `rsp->gp_count`.
    fn count(&self) -> i32 {
        // SAFETY: Protected by `rss_lock`, which we hold (type invariant).
        unsafe { (*self.raw()).gp_count }
    }

    fn set_count(&mut self, v: i32) {
        // SAFETY: Protected by `rss_lock`, which we hold (type invariant).
        unsafe { (*self.raw()).gp_count = v };
    }

    /// `wake_up_locked(&rsp->gp_wait)`: `gp_wait.lock` is `rss_lock`, which we hold.
    fn wake_up_locked(&mut self) {
        // SAFETY: `gp_wait` of an initialised `rcu_sync`, whose lock we hold (type invariant).
        unsafe { helpers::tf_wake_up_locked(core::ptr::addr_of_mut!((*self.raw()).gp_wait)) };
    }
}

impl Drop for RssGuard<'_> {
    fn drop(&mut self) {
        match self.flags {
            // SAFETY: Held per the type invariant, taken with `spin_lock_irqsave()`.
            Some(flags) => unsafe {
                helpers::tf_spin_unlock_irqrestore(self.rss.rss_lock(), flags)
            },
            // SAFETY: Held per the type invariant, taken with `spin_lock_irq()`.
            None => unsafe { helpers::tf_spin_unlock_irq(self.rss.rss_lock()) },
        }
    }
}

/// The RCU callback [`RcuSync::call`] queues: `rcu_sync_func()`, counted in [`IN_FLIGHT`].
/// (`enter()` calls `func()` itself, as `rcu_sync_enter()` calls `rcu_sync_func()`: that
/// one is not a callback, and not counted.)
///
/// # Safety
///
/// `rhp` is the `cb_head` of an `rcu_sync` whose [`RcuSync`] invariants hold, queued by
/// [`RcuSync::call`].
unsafe extern "C" fn callback(rhp: *mut bindings::callback_head) {
    // SAFETY: `rhp` is `&rsp->cb_head` per the caller (container_of()).
    let rsp = unsafe { kernel::container_of!(rhp, bindings::rcu_sync, cb_head) };
    // SAFETY: Per the caller, the `RcuSync` invariants hold for `rsp` until we return.
    let rss = unsafe { RcuSync::from_raw(rsp) };
    rss.func();
    // The last thing this callback does: see `wait_for_callbacks()`.
    let was = IN_FLIGHT.fetch_sub(1, Relaxed);
    warn_on_once!(was <= 0);
}

/// Waits until no callback of ours is queued, so that the module's code can go (the pattern
/// of Documentation/RCU/rcubarrier.rst for callbacks that requeue).
///
/// Each `rcu_barrier()` waits for every callback queued before it to finish; a callback that
/// requeued itself is counted again before it finishes, so a zero seen after a barrier means
/// none is left queued. The last one may still be returning from [`callback`] after its
/// decrement: callbacks run with bottom halves disabled, and the module loader's
/// `synchronize_rcu()` before it frees the module's text (`free_module()`,
/// kernel/module/main.c) waits for that.
///
/// The loop ends when nobody makes the state `GP_REPLAY` any more: each round needs another
/// thaw of that filesystem (the kernel's `rcu_sync_exit()`) within one grace period of our
/// callback, for as long as the module is being removed.
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
