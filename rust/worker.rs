// SPDX-License-Identifier: GPL-2.0

//! An attempt's thread: the sync before the commit point and the commit, each with the
//! attempt's deadline.
//!
//! `sync_filesystem()` waits for writeback and for the filesystem's journal or log commit, and
//! `->freeze_fs()` writes to the storage (ext4 flushes its journal and writes its superblock,
//! xfs quiesces its log), uninterruptibly and without limit. When the storage has stopped
//! taking writes (an NBD server that hangs, a loop device whose backing file sits on a FUSE
//! filesystem whose daemon waits for the very filesystem being frozen), the freezer would sleep
//! there for good, holding the levels. The sync proves nothing about the commit: on an idle
//! filesystem it sends no bio at all, and `->freeze_fs()` still writes.
//!
//! So each timed attempt starts a kernel thread of ours ([`WorkerHandle::start`]) before it
//! takes anything (starting a thread and allocating may wait for memory: no writer is blocked
//! then), and gives it two orders, waiting for each with its deadline, killably:
//!
//! - [`WorkerHandle::sync`], once the attempt holds levels 1 and 2: the thread does what a
//!   `syncfs(2)` does (`s_umount` for read, the mirror of `sync_filesystem()`), publishing
//!   the wait it is in. When the deadline comes first, the attempt releases its levels and
//!   returns; the thread goes on until the storage takes the writes, then resets `frozen`
//!   under `s_umount` for write and drops the attempt's active reference.
//! - [`WorkerHandle::commit`], once level 3 has drained: the attempt hands levels 1 and 2 on
//!   (lockdep follows them), and the thread takes `s_umount` for write and runs
//!   `freeze_super()` from its commit point on ([`freeze::commit_handed`]): the sync at
//!   `SB_FREEZE_PAGEFAULT`, level 3, `->freeze_fs()`, and the freeze made complete. When the
//!   deadline comes first and the thread has not yet taken `s_umount`, the attempt takes its
//!   levels back and releases them; once it has, the freeze is the thread's to finish: the
//!   attempt returns `ETIMEDOUT` (`TIMED_FREEZE_WAIT_COMMIT`), and the thread, when the
//!   filesystem lets go, undoes it with `->unfreeze_fs()` without ever showing it complete.
//!   Until then the writers of the filesystem wait, as they wait for a stock freeze stuck in
//!   the same place, and `s_umount` is held for write.
//!
//! Whatever the thread is left with, it ends by itself. A later attempt on the same filesystem
//! first waits for such a thread, with its own deadline ([`wait_in_flight`]), so that threads
//! do not pile up on storage that hangs. The thread holds a reference on the module
//! (`rust/helpers.c: tf_spawn()`): `rmmod` says `EBUSY` until it exits.
//!
//! Who may write `frozen`: only a holder of `s_umount` for write, as everywhere in the kernel:
//! the attempt while it holds `s_umount` (or takes it again for its undo), the thread once it
//! has taken it.

use crate::fault;
use crate::freeze::{self, Holder, SuperBlock};
use crate::percpu_rwsem::Deadline;
use crate::{helpers, uapi};
use kernel::{
    bindings,
    list::{impl_list_arc_safe, impl_list_item, List, ListArc, ListLinks},
    prelude::*,
    sync::{
        atomic::{Acquire, Atomic, Full, Relaxed},
        global_lock, Arc,
    },
};

/// Where the thread and its attempt are: `Worker::state`. The attempt gives the orders (from
/// `IDLE` and `SYNCED`) and gives up (from `SYNC`, `COMMIT` and `COMMITTING`); the thread
/// reports (from `SYNC` and `COMMITTING`) and takes the commit on (from `COMMIT`). Every move is
/// a compare-and-exchange, so that when both move at once exactly one wins.
mod state {
    /// Started; waits for an order.
    pub(super) const IDLE: i32 = 0;
    /// Ordered to sync (the attempt holds levels 1 and 2).
    pub(super) const SYNC: i32 = 1;
    /// The sync returned, with `result`; waits for the next order.
    pub(super) const SYNCED: i32 = 2;
    /// Ordered to commit; levels 1 and 2 handed on. The thread waits for `s_umount`.
    pub(super) const COMMIT: i32 = 3;
    /// The thread holds `s_umount` and the levels: the commit is its to finish.
    pub(super) const COMMITTING: i32 = 4;
    /// The commit ended with `result`: frozen (0), or undone with that error.
    pub(super) const DONE: i32 = 5;
    /// Nothing to do: the attempt ended before it set `frozen`, or undid itself.
    pub(super) const QUIT: i32 = 6;
    /// The attempt gave up and released its levels but could not take `s_umount`: the thread
    /// takes it, resets `frozen` and drops the attempt's active reference.
    pub(super) const UNDO: i32 = 7;
    /// The attempt gave up during the commit: the thread undoes the freeze when it can.
    pub(super) const ABANDONED: i32 = 8;
}

/// One attempt's thread.
///
/// # Invariants
///
/// `sb` is a superblock that an active reference pins whenever the thread is given an order
/// other than `QUIT`: the attempt's, which the attempt holds while it waits for the order and
/// leaves to the thread when it gives up (`UNDO`, `ABANDONED`, or a failed commit, undone), or,
/// once the commit claimed its success, the frozen superblock's.
#[pin_data]
pub(crate) struct Worker {
    /// The superblock (a pointer, kept as an integer so that the struct is `Send`).
    sb: usize,
    /// Who the freeze is for: `enum freeze_holder` bits and owner (as an integer).
    who: u32,
    owner: usize,
    /// See [`state`].
    state: Atomic<i32>,
    /// The last order's result: 0 or a negative errno; valid once `state` says so.
    result: Atomic<i32>,
    /// The wait the thread is in: `TIMED_FREEZE_WAIT_UMOUNT` (for `s_umount`), `_WRITEBACK`,
    /// `_JOURNAL`, `_COMMIT`.
    stage: Atomic<u32>,
    /// Set when the thread is done with the superblock.
    exited: Atomic<i32>,
    #[pin]
    links: ListLinks,
}

impl_list_arc_safe! {
    impl ListArcSafe<0> for Worker { untracked; }
}
impl_list_item! {
    impl ListItem<0> for Worker { using ListLinks { self.links }; }
}

global_lock! {
    // SAFETY: Initialised in module init, before any freeze.
    unsafe(uninit) static IN_FLIGHT: SpinLock<List<Worker>> = List::new();
}

/// Initialises the list of threads in flight; call once, in module init.
///
/// # Safety
///
/// Called once, before any other function of this module.
pub(crate) unsafe fn init() {
    // SAFETY: Per the caller.
    unsafe { IN_FLIGHT.init() };
}

/// Why an order did not end as asked.
pub(crate) enum WorkerError {
    /// The deadline (`ETIMEDOUT`) or a fatal signal (`EINTR`) came first, while the thread
    /// waited for `stage` (`TIMED_FREEZE_WAIT_*`); the thread has what the attempt left.
    GaveUp(Error, u32),
    /// The order itself failed (the filesystem's error); for a commit, undone by the thread.
    Failed(Error),
}

/// How a commit ([`WorkerHandle::commit`]) did not freeze.
pub(crate) enum CommitError {
    /// It failed (the filesystem's error) and the thread undid it: levels released, the
    /// attempt's active reference dropped.
    Failed(Error),
    /// The deadline or a fatal signal came while the thread waited for `s_umount`: the levels
    /// are the attempt's again, to take back and release; `frozen` and the active reference
    /// are the thread's.
    GaveBack(Error),
    /// The deadline or a fatal signal came during the commit: everything is the thread's,
    /// which undoes the freeze when the filesystem lets go.
    Abandoned(Error),
}

impl Worker {
    fn state(&self) -> i32 {
        self.state.load(Acquire)
    }

    /// The last order's result, once `state` said it is there.
    fn result(&self) -> Result {
        // The acquire load reads the value the thread's `set()` published with `result` before
        // it (nobody moves `state` from `SYNCED` or `DONE` but this side), and orders `result`
        // after it; this side may have seen that value through a failed exchange, which
        // orders nothing.
        let _ = self.state();
        match self.result.load(Relaxed) {
            0 => Ok(()),
            e => Err(Error::from_errno(e)),
        }
    }

    /// Moves `state` from `from` to `to` and wakes the other side; whether it moved.
    fn set(&self, from: i32, to: i32) -> bool {
        if self.state.cmpxchg(from, to, Full).is_err() {
            return false;
        }
        // SAFETY: The address is only used as a key; the full barrier of the exchange above
        // orders the store before the waiter check, as `wake_up_var()` requires.
        unsafe { bindings::wake_up_var(self.state.as_ptr().cast()) };
        true
    }

    /// Waits until `state` is no longer `old`: killably up to `deadline` for the attempt, with
    /// no limit (`TASK_IDLE`) for the thread (`deadline` never). The state seen, or the error.
    fn wait_while(&self, old: i32, deadline: &Deadline) -> Result<i32> {
        wait_changed(&self.state, old, deadline)
    }

    /// The thread's work: the orders, in their order, and what the attempt left.
    fn run(&self) {
        let never = Deadline::never();
        let mut now = self.wait_while(state::IDLE, &never).unwrap_or(state::QUIT);
        if now == state::QUIT {
            self.exit();
            return;
        }
        // SAFETY: An order other than `QUIT`: an active reference pins the superblock for as
        // long as the thread uses it (type invariant).
        let sb = unsafe { SuperBlock::from_raw(self.sb as *mut bindings::super_block) };
        if now == state::SYNC {
            self.sync(sb);
            now = self
                .wait_while(state::SYNCED, &never)
                .unwrap_or(state::QUIT);
        }
        match now {
            state::COMMIT => self.commit(sb),
            state::UNDO => freeze::reset_frozen(sb.lock_excl_uninterruptible()),
            _ => {}
        }
        self.exit();
    }

    /// The sync, as `syncfs(2)` makes it.
    fn sync(&self, sb: &SuperBlock) {
        self.stage.store(uapi::WAIT_UMOUNT, Relaxed);
        let ret = sb.sync_shared(&|stage| self.stage.store(stage, Relaxed));
        self.result
            .store(ret.err().map_or(0, |e| e.to_errno()), Relaxed);
        // When the attempt gave up meanwhile (`UNDO`), `run()` does what it left.
        self.set(state::SYNC, state::SYNCED);
    }

    /// The commit, from `s_umount` on.
    fn commit(&self, sb: &SuperBlock) {
        self.stage.store(uapi::WAIT_UMOUNT, Relaxed);
        let s = sb.lock_excl_uninterruptible();
        if !self.set(state::COMMIT, state::COMMITTING) {
            // The attempt took its levels back and released them (`UNDO`).
            freeze::reset_frozen(s);
            return;
        }
        self.stage.store(uapi::WAIT_COMMIT, Relaxed);
        let who = (self.who, self.owner as *const c_void);
        let claim = || {
            self.result.store(0, Relaxed);
            self.set(state::COMMITTING, state::DONE)
        };
        // SAFETY: The attempt handed levels 1 and 2 on before ordering the commit, and gave up
        // taking them back when `COMMITTING` won above.
        let ret = unsafe { freeze::commit_handed(s, who, &claim) };
        if let Err(e) = ret {
            self.result.store(e.to_errno(), Relaxed);
            // Undone already; an attempt that gave up (`ABANDONED`) waits for nothing.
            self.set(state::COMMITTING, state::DONE);
        }
    }

    /// Leaves the list of threads in flight and says so.
    fn exit(&self) {
        {
            let mut list = IN_FLIGHT.lock();
            // SAFETY: The only list a `Worker` is ever on is `IN_FLIGHT`.
            let _ = unsafe { list.remove(self) };
        }
        let _ = self.exited.xchg(1, Full);
        // SAFETY: The address is only used as a key; the full barrier of the exchange above
        // orders the store before the waiter check, as `wake_up_var()` requires.
        unsafe { bindings::wake_up_var(self.exited.as_ptr().cast()) };
    }

    /// Whether the attempt left the thread with work of its own (it gave up).
    fn orphaned(&self) -> bool {
        matches!(self.state(), state::UNDO | state::ABANDONED)
    }
}

/// The thread: runs the orders of the attempt that started it.
///
/// # Safety
///
/// `data` is an `Arc<Worker>` made raw by [`WorkerHandle::start`], whose reference passes to us.
unsafe extern "C" fn thread_main(data: *mut c_void) -> c_int {
    // SAFETY: Per the function's safety requirements.
    let w = unsafe { Arc::from_raw(data.cast::<Worker>()) };
    w.run();
    0
}

/// An attempt's side of its thread. Dropped with no order given, the thread quits.
pub(crate) struct WorkerHandle(Arc<Worker>);

impl WorkerHandle {
    /// Starts the thread of an attempt on `sb` for `holder`, before the attempt takes anything.
    pub(crate) fn start(sb: &SuperBlock, holder: Holder) -> Result<Self> {
        if fault::should_fail(fault::Point::Spawn, 0) {
            return Err(ENOMEM);
        }
        let (who, owner) = holder.who();
        let new = ListArc::pin_init(
            // INVARIANT: `IDLE`; the attempt gives an order only while it holds an active
            // reference.
            try_pin_init!(Worker {
                sb: sb.as_raw() as usize,
                who,
                owner: owner as usize,
                state: Atomic::new(state::IDLE),
                result: Atomic::new(0),
                stage: Atomic::new(uapi::WAIT_UMOUNT),
                exited: Atomic::new(0),
                links <- ListLinks::new(),
            }),
            GFP_KERNEL,
        )?;
        let w = new.clone_arc();
        IN_FLIGHT.lock().push_back(new);
        let data = Arc::into_raw(w.clone()).cast_mut().cast::<c_void>();
        // SAFETY: `thread_main` takes over the reference in `data`; the name is static.
        let ret = unsafe { helpers::tf_spawn(Some(thread_main), data, c"tf-freeze".as_char_ptr()) };
        if ret != 0 {
            // SAFETY: The thread did not start, so the reference in `data` is still ours.
            drop(unsafe { Arc::from_raw(data.cast::<Worker>()) });
            w.exit();
            return Err(Error::from_errno(ret));
        }
        Ok(Self(w))
    }

    /// Has the thread sync the filesystem, and waits for it until `deadline`. The attempt holds
    /// levels 1 and 2 and an active reference, and not `s_umount`.
    ///
    /// On [`WorkerError::GaveUp`] the attempt releases its levels and leaves `frozen` and its
    /// active reference to the thread. On [`WorkerError::Failed`] the thread waits for the
    /// next order ([`Self::undo`] or [`Self::quit`]).
    pub(crate) fn sync(&self, deadline: &Deadline) -> Result<(), WorkerError> {
        let w = &self.0;
        w.set(state::IDLE, state::SYNC);
        if let Err(e) = w.wait_while(state::SYNC, deadline) {
            if w.set(state::SYNC, state::UNDO) {
                return Err(WorkerError::GaveUp(e, w.stage.load(Relaxed)));
            }
            // It synced just in time.
        }
        w.result().map_err(WorkerError::Failed)
    }

    /// Has the thread commit the freeze, and waits for it until `deadline`. The attempt has
    /// handed levels 1 and 2 on and holds an active reference, and not `s_umount`.
    ///
    /// `Ok`: frozen, the active reference the freeze's. Otherwise see [`CommitError`].
    pub(crate) fn commit(&self, deadline: &Deadline) -> Result<(), CommitError> {
        let w = &self.0;
        w.set(state::SYNCED, state::COMMIT);
        let mut now = state::COMMIT;
        let gave_up = loop {
            match w.wait_while(now, deadline) {
                Ok(state::DONE) => break None,
                Ok(s) => now = s,
                Err(e) => break Some(e),
            }
        };
        if let Some(e) = gave_up {
            if w.set(state::COMMIT, state::UNDO) {
                return Err(CommitError::GaveBack(e));
            }
            if w.set(state::COMMITTING, state::ABANDONED) {
                return Err(CommitError::Abandoned(e));
            }
            // It ended just in time (`DONE`).
        }
        w.result().map_err(CommitError::Failed)
    }

    /// The attempt gave up and released its levels, and cannot take `s_umount`: the thread
    /// resets `frozen` under it and drops the attempt's active reference.
    pub(crate) fn undo(self) {
        let w = &self.0;
        if !w.set(state::IDLE, state::UNDO) {
            w.set(state::SYNCED, state::UNDO);
        }
    }
}

impl Drop for WorkerHandle {
    fn drop(&mut self) {
        let w = &self.0;
        // Whichever applies; a thread with another order goes on with it.
        if !w.set(state::IDLE, state::QUIT) {
            w.set(state::SYNCED, state::QUIT);
        }
    }
}

/// Waits until `deadline` for the threads of earlier attempts on `sb` that were left with work
/// (their attempt gave up), before an attempt takes anything: they hold or wait for `s_umount`,
/// or hold the levels, and the attempt would wait for that next, with a less telling report.
pub(crate) fn wait_in_flight(sb: &SuperBlock, deadline: &Deadline) -> Result<(), WorkerError> {
    loop {
        let found = {
            let mut list = IN_FLIGHT.lock();
            let mut cur = list.cursor_front();
            let mut found = None;
            while let Some(next) = cur.peek_next() {
                if next.sb == sb.as_raw() as usize && next.orphaned() {
                    found = Some(Arc::<Worker>::from(next.arc()));
                    break;
                }
                cur.move_next();
            }
            found
        };
        let Some(w) = found else {
            return Ok(());
        };
        if let Err(e) = wait_changed(&w.exited, 0, deadline) {
            return Err(WorkerError::GaveUp(e, w.stage.load(Relaxed)));
        }
    }
}

/// Waits until `var` is no longer `old`: killably up to `deadline`, or with no limit and
/// `TASK_IDLE` when `deadline` is never (the thread waiting for an order is not stuck). The
/// value seen (read with acquire ordering, so that what was stored before it is seen), or
/// `ETIMEDOUT` / `EINTR`.
fn wait_changed(var: &Atomic<i32>, old: i32, deadline: &Deadline) -> Result<i32> {
    let killable = !deadline.is_never();
    loop {
        let now = var.load(Acquire);
        if now != old {
            return Ok(now);
        }
        // SAFETY: `var` is a live `int`, changed with a full barrier before `wake_up_var()`
        // (`Worker::set()`, `Worker::exit()`).
        let r = unsafe {
            helpers::tf_wait_var_changed(var.as_ptr(), old, deadline.remaining_jiffies(), killable)
        };
        if r < 0 {
            return Err(EINTR);
        }
        if r == 0 && deadline.passed() {
            return Err(ETIMEDOUT);
        }
    }
}
