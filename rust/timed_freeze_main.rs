// SPDX-License-Identifier: GPL-2.0

//! timed-freeze: `freeze_super()` with a deadline, a retry and a complete undo.
//!
//! Freezing a filesystem waits for every writer inside it to leave. When one of those
//! writers waits in turn for a userspace daemon (FUSE, NBD, fanotify HSM, file-backed EROFS)
//! and the daemon writes to the filesystem being frozen, the freezer waits forever: the
//! reader holds the freeze lock, the freezer blocks new readers, the daemon is a new reader.
//!
//! This module exposes, through the misc device `/dev/timed-freeze`, a freeze whose waits
//! for writers have a deadline. When the deadline passes, the partial freeze is undone so
//! the blocked writers proceed, and the freeze is tried again. The UAPI is
//! `include/uapi/linux/timed_freeze.h`; the design is in `Documentation/`.
//!
//! - [`percpu_rwsem`]: the timed write lock on the kernel's percpu rw-semaphores;
//! - [`freeze`]: the mirror of `freeze_super()` built on it;
//! - this file: the device, its ioctls, owned freezes and the debugfs counters.

use core::{
    fmt,
    sync::atomic::{AtomicI32, AtomicU64, Ordering},
};
use kernel::{
    bindings, debugfs,
    fs::{File, LocalFile},
    miscdevice::{MiscDevice, MiscDeviceOptions, MiscDeviceRegistration},
    new_mutex,
    prelude::*,
    sync::{aref::ARef, Mutex},
    time::Delta,
};

mod ffi;
mod freeze;
mod percpu_rwsem;
mod uapi;

use freeze::{FreezeParams, FreezeReport, Holder, SuperBlock};
use percpu_rwsem::GracePeriod;

module! {
    type: TimedFreezeModule,
    name: "timed_freeze",
    authors: ["timed-freeze developers"],
    description: "freeze_super() with a deadline, a retry and a complete undo",
    license: "GPL",
}

/// Wait between two attempts of one freeze: long enough for the writers the failed
/// attempt had blocked to get the CPU.
const BACKOFF: Delta = Delta::from_millis(10);

/// Counters shown in `/sys/kernel/debug/timed_freeze/stats`.
struct Stats {
    freezes: AtomicU64,
    timeouts: AtomicU64,
    undone: AtomicU64,
    thaws: AtomicU64,
    last_errno: AtomicI32,
    last_attempts: AtomicU64,
    last_level: AtomicU64,
    last_writers: AtomicU64,
    last_elapsed_ns: AtomicU64,
}

static STATS: Stats = Stats {
    freezes: AtomicU64::new(0),
    timeouts: AtomicU64::new(0),
    undone: AtomicU64::new(0),
    thaws: AtomicU64::new(0),
    last_errno: AtomicI32::new(0),
    last_attempts: AtomicU64::new(0),
    last_level: AtomicU64::new(0),
    last_writers: AtomicU64::new(0),
    last_elapsed_ns: AtomicU64::new(0),
};

impl Stats {
    fn record(&self, ret: &Result, r: &FreezeReport) {
        // Every attempt but a successful last one timed out and was undone.
        let undone = r.attempts - u32::from(ret.is_ok());
        self.undone.fetch_add(u64::from(undone), Ordering::Relaxed);
        match ret {
            Ok(()) => {
                self.freezes.fetch_add(1, Ordering::Relaxed);
                return;
            }
            Err(e) if *e == ETIMEDOUT => {
                self.timeouts.fetch_add(1, Ordering::Relaxed);
            }
            Err(_) => {}
        }
        let errno = ret.err().map_or(0, |e| e.to_errno());
        self.last_errno.store(errno, Ordering::Relaxed);
        self.last_attempts
            .store(u64::from(r.attempts), Ordering::Relaxed);
        self.last_level
            .store(u64::from(r.timed_out_level), Ordering::Relaxed);
        self.last_writers
            .store(u64::from(r.writers_inside), Ordering::Relaxed);
        self.last_elapsed_ns.store(r.elapsed_ns, Ordering::Relaxed);
    }
}

/// What the debugfs file prints: the counters of [`STATS`], one `key: value` a line.
struct StatsView;

impl fmt::Debug for StatsView {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = &STATS;
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        writeln!(f, "freezes: {}", get(&s.freezes))?;
        writeln!(f, "timeouts: {}", get(&s.timeouts))?;
        writeln!(f, "undone_attempts: {}", get(&s.undone))?;
        writeln!(f, "thaws: {}", get(&s.thaws))?;
        writeln!(
            f,
            "last_failure_errno: {}",
            s.last_errno.load(Ordering::Relaxed)
        )?;
        writeln!(f, "last_failure_attempts: {}", get(&s.last_attempts))?;
        writeln!(f, "last_failure_level: {}", get(&s.last_level))?;
        writeln!(f, "last_failure_writers: {}", get(&s.last_writers))?;
        write!(f, "last_failure_elapsed_ns: {}", get(&s.last_elapsed_ns))
    }
}

/// The module: owns the registration of `/dev/timed-freeze` and the debugfs directory.
#[pin_data(PinnedDrop)]
struct TimedFreezeModule {
    #[pin]
    _miscdev: MiscDeviceRegistration<TimedFreezeFile>,
    #[pin]
    _stats: debugfs::File<StatsView>,
    _debugfs: debugfs::Dir,
}

impl kernel::InPlaceModule for TimedFreezeModule {
    fn init(_module: &'static ThisModule) -> impl PinInit<Self, Error> {
        let dir = debugfs::Dir::new(c"timed_freeze");
        pr_info!("loaded, /dev/timed-freeze ready\n");
        try_pin_init!(Self {
            _miscdev <- MiscDeviceRegistration::register(MiscDeviceOptions {
                name: c"timed-freeze",
            }),
            _stats <- dir.read_only_file(c"stats", StatsView),
            _debugfs: dir,
        })
    }
}

#[pinned_drop]
impl PinnedDrop for TimedFreezeModule {
    fn drop(self: Pin<&mut Self>) {
        // Our mirror of rcu_sync_exit() may have queued RCU callbacks that run this module's
        // code; wait for them before the code goes away.
        // SAFETY: `rcu_barrier()` may sleep, which module exit may.
        unsafe { bindings::rcu_barrier() };
    }
}

/// A freeze held by an open file of the device ([`uapi::OWNED`]).
struct OwnedFreeze {
    /// A file on the frozen filesystem: it keeps the superblock alive.
    file: ARef<File>,
}

impl OwnedFreeze {
    fn sb(&self) -> &SuperBlock {
        // SAFETY: The file is open (we hold a reference), so its superblock is alive.
        unsafe { SuperBlock::from_raw(sb_of(&self.file)) }
    }
}

/// State of one open file of `/dev/timed-freeze`.
#[pin_data(PinnedDrop)]
struct TimedFreezeFile {
    /// The freezes this file owns; thawed when it is released.
    #[pin]
    owned: Mutex<KVec<OwnedFreeze>>,
}

#[vtable]
impl MiscDevice for TimedFreezeFile {
    type Ptr = Pin<KBox<Self>>;

    fn open(_file: &File, _misc: &MiscDeviceRegistration<Self>) -> Result<Pin<KBox<Self>>> {
        KBox::try_pin_init(
            try_pin_init!(TimedFreezeFile {
                owned <- new_mutex!(KVec::new()),
            }),
            GFP_KERNEL,
        )
    }

    fn ioctl(me: Pin<&TimedFreezeFile>, _file: &File, cmd: u32, arg: usize) -> Result<isize> {
        dispatch(&me, cmd, arg)
    }
}

#[pinned_drop]
impl PinnedDrop for TimedFreezeFile {
    fn drop(self: Pin<&mut Self>) {
        // Closing the file (also when its process dies) thaws what it owns.
        let owner = self.owner();
        let mut owned = self.owned.lock();
        while let Some(f) = owned.pop() {
            let ret = thaw(f.sb(), Holder::Owned(owner));
            if let Err(e) = ret {
                pr_warn!("release: thaw of an owned freeze failed: {:?}\n", e);
            }
        }
    }
}

/// `file_inode(file)->i_sb`.
fn sb_of(file: &File) -> *mut bindings::super_block {
    // SAFETY: An open file has a valid inode with a valid superblock.
    unsafe { (*(*file.as_ptr()).f_inode).i_sb }
}

/// The thaw of `FITHAW` (`ioctl_fsthaw()`), for our holders.
fn thaw(sb: &SuperBlock, holder: Holder) -> Result {
    let (who, owner) = holder.who();
    // SAFETY: A live superblock; `thaw_super()` takes `s_umount` itself.
    kernel::error::to_result(unsafe { bindings::thaw_super(sb.as_raw(), who, owner) })?;
    STATS.thaws.fetch_add(1, Ordering::Relaxed);
    Ok(())
}

impl TimedFreezeFile {
    /// The owner of this file's owned freezes: its own address, stable while it is open.
    fn owner(&self) -> *const c_void {
        core::ptr::from_ref(self).cast()
    }

    fn freeze(&self, arg: usize) -> Result<isize> {
        let (mut a, usize_) = uapi::read_ext::<uapi::FreezeArgs>(arg)?;
        if a.flags & !uapi::FREEZE_FLAGS != 0 {
            return Err(EINVAL);
        }
        if a.timeout_ns > uapi::TIMEOUT_MAX_NS || a.retries > uapi::RETRIES_MAX {
            return Err(EINVAL);
        }
        let file = get_file(a.fd)?;
        // SAFETY: We hold a reference on the open file, so its superblock is alive.
        let sb = unsafe { SuperBlock::from_raw(sb_of(&file)) };
        check_freezable(sb)?;

        let owned = a.flags & uapi::OWNED != 0;
        let params = FreezeParams {
            timeout: Delta::from_nanos(i64::try_from(a.timeout_ns).map_err(|_| EINVAL)?),
            retries: a.retries,
            backoff: BACKOFF,
            gp: if a.flags & uapi::EXPEDITED != 0 {
                GracePeriod::Expedited
            } else {
                GracePeriod::Normal
            },
            holder: if owned {
                Holder::Owned(self.owner())
            } else {
                Holder::Userspace
            },
        };

        // Room for the owned freeze first: after a successful freeze nothing may fail.
        let mut list = self.owned.lock();
        if owned {
            list.reserve(1, GFP_KERNEL)?;
        }
        let mut report = FreezeReport::default();
        let ret = freeze::timed_freeze_super(sb, &params, &mut report);
        STATS.record(&ret, &report);
        if ret.is_ok() && owned {
            list.push(OwnedFreeze { file }, GFP_KERNEL)?;
        }
        drop(list);

        if ret.is_ok() || ret == Err(ETIMEDOUT) {
            a.attempts = report.attempts;
            a.timed_out_level = report.timed_out_level;
            a.elapsed_ns = report.elapsed_ns;
            a.writers_inside = u64::from(report.writers_inside);
            uapi::write_ext(arg, usize_, &a)?;
        }
        if ret == Err(ETIMEDOUT) {
            pr_info!(
                "freeze of {} timed out: {} attempt(s), level {} with {} writer(s) inside, {} ns; nothing left frozen\n",
                sb.fs_name(),
                report.attempts,
                report.timed_out_level,
                report.writers_inside,
                report.elapsed_ns
            );
        }
        ret.map(|()| 0)
    }

    fn thaw(&self, arg: usize) -> Result<isize> {
        let (a, _) = uapi::read_ext::<uapi::ThawArgs>(arg)?;
        if a.flags & !uapi::THAW_FLAGS != 0 || a.reserved != 0 {
            return Err(EINVAL);
        }
        let file = get_file(a.fd)?;
        // SAFETY: We hold a reference on the open file, so its superblock is alive.
        let sb = unsafe { SuperBlock::from_raw(sb_of(&file)) };
        if !sb.capable_admin() {
            return Err(EPERM);
        }
        if a.flags & uapi::OWNED == 0 {
            return thaw(sb, Holder::Userspace).map(|()| 0);
        }
        let mut list = self.owned.lock();
        let idx = list
            .iter()
            .position(|f| f.sb().as_raw() == sb.as_raw())
            .ok_or(EINVAL)?;
        thaw(sb, Holder::Owned(self.owner()))?;
        list.remove(idx)?;
        Ok(0)
    }
}

/// `fget(fd)`, as a shareable file.
fn get_file(fd: i32) -> Result<ARef<File>> {
    let fd = u32::try_from(fd).map_err(|_| EBADF)?;
    let file = LocalFile::fget(fd).map_err(|_| EBADF)?;
    // SAFETY: We are in an ioctl, which does not call `fdget_pos()` on this thread.
    Ok(unsafe { LocalFile::assume_no_fdget_pos(file) })
}

/// The checks of `ioctl_fsfreeze()` (fs/ioctl.c), in its order.
fn check_freezable(sb: &SuperBlock) -> Result {
    if !sb.capable_admin() {
        return Err(EPERM);
    }
    // If filesystem doesn't support freeze feature, return.
    if !sb.has_freeze_fs() && !sb.has_own_freeze_super() {
        return Err(EOPNOTSUPP);
    }
    if sb.has_own_freeze_super() {
        pr_info!(
            "{} freezes itself (->freeze_super); a timed freeze cannot reach its levels\n",
            sb.fs_name()
        );
        return Err(EOPNOTSUPP);
    }
    Ok(())
}

/// Routes an ioctl command to its handler.
fn dispatch(me: &TimedFreezeFile, cmd: u32, arg: usize) -> Result<isize> {
    if uapi::is_cmd(cmd, uapi::IOC_FREEZE) {
        me.freeze(arg)
    } else if uapi::is_cmd(cmd, uapi::IOC_THAW) {
        me.thaw(arg)
    } else {
        Err(ENOTTY)
    }
}

#[kunit_tests(timed_freeze_ioctl)]
mod tests {
    use super::*;

    #[test]
    fn ioctl_numbers_match_by_type_and_nr() {
        assert!(uapi::is_cmd(uapi::IOC_FREEZE, uapi::IOC_FREEZE));
        // A newer, larger struct encodes another size: still the same command.
        let bigger = uapi::IOC_FREEZE + (8 << 16);
        assert!(uapi::is_cmd(bigger, uapi::IOC_FREEZE));
        assert!(!uapi::is_cmd(uapi::IOC_THAW, uapi::IOC_FREEZE));
        assert!(!uapi::is_cmd(0, uapi::IOC_FREEZE));
    }
}
