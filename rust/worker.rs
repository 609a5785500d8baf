// SPDX-License-Identifier: GPL-2.0

//! The sync before the commit point, with a deadline.
//!
//! `sync_filesystem()` waits for writeback and for the filesystem's journal or log commit,
//! uninterruptibly and without limit. When the storage has stopped taking writes (an NBD
//! server that hangs, a loop device whose backing file sits on a FUSE filesystem whose
//! daemon waits for the very filesystem being frozen), the freezer would sleep there forever
//! while holding the levels, and every writer with it.
//!
//! So an attempt, once it holds levels 1 and 2, has the filesystem synced by a kernel thread
//! of ours ([`presync`]) and waits for that thread with its deadline and killably. The thread
//! is what a `syncfs(2)` is: it holds an active reference and `s_umount` for read, and
//! `sync_filesystem()` runs there. When the deadline passes first, the attempt undoes itself
//! and returns; the thread goes on until the storage takes the writes, then lets go of the
//! superblock and exits, as a `syncfs()` stuck there would. Only then may a later attempt on
//! the same filesystem start another: it waits for the one in flight (with its own
//! deadline), so threads do not pile up on storage that hangs.
//!
//! While the thread runs, `frozen` reads `SB_FREEZE_WRITE` (or `SB_UNFROZEN`, once the
//! attempt gave up), never `SB_FREEZE_PAGEFAULT`: the filesystem's `->sync_fs()` acts on no
//! freeze (xfs keeps its GC). Nobody can move `frozen` to `SB_FREEZE_PAGEFAULT` before the
//! thread lets go of `s_umount`: that needs `s_umount` for write.
//!
//! The thread holds a reference on the module (`rust/helpers.c: tf_spawn()`): `rmmod` says
//! `EBUSY` until it exits.

use crate::freeze::{self, SuperBlock};
use crate::percpu_rwsem::Deadline;
use crate::{helpers, uapi};
use core::ptr::addr_of_mut;
use kernel::{
    bindings,
    list::{impl_list_arc_safe, impl_list_item, List, ListArc, ListLinks},
    prelude::*,
    sync::{
        atomic::{Acquire, Atomic, Relaxed},
        global_lock, Arc,
    },
};

/// One sync of a superblock by a thread of ours.
#[pin_data]
pub(crate) struct PreSync {
    /// The superblock; the thread holds an active reference on it until it finishes.
    sb: usize,
    /// Set (`tf_set_flag()`) when the sync returned.
    done: Atomic<i32>,
    /// Its result, valid once `done`: 0 or a negative errno.
    result: Atomic<i32>,
    /// What it waits for now: `TIMED_FREEZE_WAIT_UMOUNT` (for `s_umount`, behind a writer
    /// queued for it), then `_WRITEBACK`, then `_JOURNAL`.
    stage: Atomic<u32>,
    #[pin]
    links: ListLinks,
}

impl_list_arc_safe! {
    impl ListArcSafe<0> for PreSync { untracked; }
}
impl_list_item! {
    impl ListItem<0> for PreSync { using ListLinks { self.links }; }
}

global_lock! {
    // SAFETY: Initialised in module init, before any freeze.
    unsafe(uninit) static IN_FLIGHT: SpinLock<List<PreSync>> = List::new();
}

/// Initialises the list of syncs in flight; call once, in module init.
///
/// # Safety
///
/// Called once, before any other function of this module.
pub(crate) unsafe fn init() {
    // SAFETY: Per the caller.
    unsafe { IN_FLIGHT.init() };
}

impl PreSync {
    /// The superblock.
    fn sb(&self) -> &SuperBlock {
        // SAFETY: The thread holds an active reference until it is done, and whoever reaches
        // the `PreSync` either is that thread or holds an active reference of its own.
        unsafe { SuperBlock::from_raw(self.sb as *mut bindings::super_block) }
    }

    /// The thread's work.
    fn run(&self) {
        let sb = self.sb();
        // SAFETY: A live superblock (our active reference). s_umount for read, as syncfs(2)
        // takes it: nobody can change the freeze state or remount while we sync. Waiting for
        // it without a deadline is the thread's to do, not the freezer's.
        unsafe { bindings::down_read(addr_of_mut!((*sb.as_raw()).s_umount)) };
        let ret = freeze::sync_steps(sb, &|stage| self.stage.store(stage, Relaxed), false)
            .map_err(Error::from);
        // SAFETY: Taken above.
        unsafe { bindings::up_read(addr_of_mut!((*sb.as_raw()).s_umount)) };

        self.result
            .store(ret.err().map_or(0, |e| e.to_errno()), Relaxed);
        {
            let mut list = IN_FLIGHT.lock();
            // SAFETY: The only list a `PreSync` is ever on is `IN_FLIGHT`.
            let _ = unsafe { list.remove(self) };
        }
        // SAFETY: `done` is a live `int`; waiters see `result` through the release.
        unsafe { helpers::tf_set_flag(self.done.as_ptr()) };
        // SAFETY: The active reference `start()` took for this thread; it may be the last
        // (the filesystem was unmounted meanwhile), then this takes `s_umount` and shuts the
        // superblock down, here, in our thread.
        unsafe { bindings::deactivate_super(sb.as_raw()) };
    }

    /// Waits for the sync until `deadline`, killably.
    fn wait(&self, deadline: &Deadline) -> Result {
        loop {
            // SAFETY: `done` is a live `int`, set by `tf_set_flag()`.
            let r =
                unsafe { helpers::tf_wait_flag(self.done.as_ptr(), deadline.remaining_jiffies()) };
            if r > 0 {
                // Pairs with the release of `tf_set_flag()`: `result` is seen.
                let _ = self.done.load(Acquire);
                return Ok(());
            }
            if r < 0 {
                return Err(EINTR);
            }
            if deadline.passed() {
                return Err(ETIMEDOUT);
            }
        }
    }
}

/// The thread: runs the sync handed over by [`start`].
///
/// # Safety
///
/// `data` is an `Arc<PreSync>` made raw by [`start`], whose reference passes to us.
unsafe extern "C" fn thread_main(data: *mut c_void) -> c_int {
    // SAFETY: Per the function's safety requirements.
    let ps = unsafe { Arc::from_raw(data.cast::<PreSync>()) };
    ps.run();
    0
}

/// The sync of `sb` in flight, or a new one started; whether it is new.
fn start(sb: &SuperBlock) -> Result<(Arc<PreSync>, bool)> {
    let new = ListArc::pin_init(
        try_pin_init!(PreSync {
            sb: sb.as_raw() as usize,
            done: Atomic::new(0),
            result: Atomic::new(0),
            stage: Atomic::new(uapi::WAIT_UMOUNT),
            links <- ListLinks::new(),
        }),
        GFP_KERNEL,
    )?;
    let ps = new.clone_arc();
    {
        let mut list = IN_FLIGHT.lock();
        let mut cur = list.cursor_front();
        while let Some(next) = cur.peek_next() {
            if next.sb == sb.as_raw() as usize {
                return Ok((next.arc().into(), false));
            }
            cur.move_next();
        }
        list.push_back(new);
    }
    // The thread's own active reference; the caller holds one, so this cannot be the first.
    sb.get_active_ref();
    let data = Arc::into_raw(ps.clone()).cast_mut().cast::<c_void>();
    // SAFETY: `thread_main` takes over the reference in `data`; the name is static.
    let ret = unsafe { helpers::tf_spawn(Some(thread_main), data, c"tf-presync".as_char_ptr()) };
    if ret != 0 {
        // SAFETY: The thread did not start, so the reference in `data` is still ours.
        drop(unsafe { Arc::from_raw(data.cast::<PreSync>()) });
        {
            let mut list = IN_FLIGHT.lock();
            // SAFETY: `ps` was pushed onto `IN_FLIGHT` above, the only list it can be on.
            let _ = unsafe { list.remove(&ps) };
        }
        sb.put_active_ref();
        return Err(Error::from_errno(ret));
    }
    Ok((ps, true))
}

/// Waits until `deadline` for a sync of `sb` of ours still in flight (an earlier attempt
/// gave up on it), before an attempt takes anything: it holds `s_umount` for read, and the
/// attempt would wait for that next, with a less telling report.
pub(crate) fn wait_in_flight(sb: &SuperBlock, deadline: &Deadline) -> Result<(), PreSyncError> {
    let ps = {
        let mut list = IN_FLIGHT.lock();
        let mut cur = list.cursor_front();
        let mut found = None;
        while let Some(next) = cur.peek_next() {
            if next.sb == sb.as_raw() as usize {
                found = Some(Arc::from(next.arc()));
                break;
            }
            cur.move_next();
        }
        found
    };
    match ps {
        Some(ps) => ps
            .wait(deadline)
            .map_err(|e| PreSyncError::GaveUp(e, ps.stage.load(Relaxed))),
        None => Ok(()),
    }
}

/// Why [`presync`] failed.
pub(crate) enum PreSyncError {
    /// The deadline (`ETIMEDOUT`) or a fatal signal (`EINTR`) came first, while the sync
    /// waited for `stage` (`TIMED_FREEZE_WAIT_*`).
    GaveUp(Error, u32),
    /// The sync itself failed, or could not be started.
    Failed(Error),
}

/// Syncs `sb` in a thread of ours and waits for it until `deadline`.
///
/// The caller holds an active reference on `sb`, and not `s_umount` (the thread takes it).
pub(crate) fn presync(sb: &SuperBlock, deadline: &Deadline) -> Result<(), PreSyncError> {
    loop {
        let (ps, ours) = start(sb).map_err(PreSyncError::Failed)?;
        if let Err(e) = ps.wait(deadline) {
            return Err(PreSyncError::GaveUp(e, ps.stage.load(Relaxed)));
        }
        if !ours {
            // Somebody else's sync, from before our levels: ours must still run.
            continue;
        }
        return match ps.result.load(Relaxed) {
            0 => Ok(()),
            e => Err(PreSyncError::Failed(Error::from_errno(e))),
        };
    }
}
