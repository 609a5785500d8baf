// SPDX-License-Identifier: GPL-2.0

//! timed-freeze: `freeze_super()` with a deadline, a retry and a complete undo.
//!
//! Through the misc device `/dev/timed-freeze`, a filesystem freeze whose waits have a
//! deadline: when it passes, the partial freeze is undone, so that the writers it blocked go
//! on (breaking an R->W->R chain through a userspace daemon), and the freeze is tried again.
//! The UAPI is `include/uapi/linux/timed_freeze.h`; the problem, the design and the UAPI's
//! rules are told once, in `Documentation/timed-freeze.rst`.
//!
//! The ioctls mirror `ioctl_fsfreeze()` and `ioctl_fsthaw()` (fs/ioctl.c): the same
//! permission and support checks, in their order. The differences:
//!
//! - the ioctl's own arguments (size, flags, timeout, retries, deadline, fd) are checked first, so
//!   that a malformed call gets `EINVAL` (or `EBADF`) before `EPERM`;
//! - a filesystem with its own `->freeze_super` is refused (`EOPNOTSUPP`) instead of being
//!   handed the freeze (the module cannot time waits it does not make);
//! - an OWNED freeze is held as `FREEZE_HOLDER_KERNEL | FREEZE_EXCL` with the device file
//!   as its owner, where `ioctl_fsfreeze()` freezes as `FREEZE_HOLDER_USERSPACE`;
//! - the result is written back after the freeze, with page faults disabled; when it cannot
//!   be written, the freeze is thawed again and the ioctl returns `EFAULT`.
//!
//! - [`percpu_rwsem`]: the timed write lock on the kernel's percpu rw-semaphores;
//! - [`rcu_sync`]: the mirror of the unexported parts of `kernel/rcu/sync.c` it needs;
//! - [`freeze`]: the mirror of `freeze_super()` built on it;
//! - [`worker`]: an attempt's thread, which syncs and commits the freeze, each with a deadline;
//! - [`retry`]: when a freeze whose attempt gave up tries again;
//! - [`fault`]: test-only fault points;
//! - [`helpers`]: the C helpers (`rust/helpers.c`) for static inlines and macros;
//! - this file: the device, its ioctls, OWNED freezes and the debugfs files.

use core::fmt;
use kernel::{
    bindings, debugfs,
    fs::{File, LocalFile},
    list::{impl_list_arc_safe, impl_list_item, List, ListArc, ListLinks},
    miscdevice::{MiscDevice, MiscDeviceOptions, MiscDeviceRegistration},
    prelude::*,
    sync::{
        aref::ARef,
        atomic::{Atomic, Relaxed},
        global_lock,
    },
    time::{Delta, Instant, Monotonic},
    transmute::AsBytes,
    uaccess::UserSlice,
};

#[macro_use]
mod warn;

mod fault;
mod freeze;
mod helpers;
mod percpu_rwsem;
mod rcu_sync;
mod retry;
mod uapi;
mod worker;

use freeze::{FreezeParams, FreezeReport, Holder, SuperBlock};
use rcu_sync::GracePeriod;

module! {
    type: TimedFreezeModule,
    name: "timed_freeze",
    authors: ["timed-freeze developers"],
    description: "freeze_super() with a deadline, a retry and a complete undo",
    license: "GPL",
}

/// Counters shown in `/sys/kernel/debug/timed_freeze/stats`.
struct Stats {
    freezes: Atomic<u64>,
    timeouts: Atomic<u64>,
    undone: Atomic<u64>,
    thaws: Atomic<u64>,
    force_thaws: Atomic<u64>,
    last_errno: Atomic<i32>,
    last_attempts: Atomic<u64>,
    last_level: Atomic<u64>,
    last_gave_up: Atomic<u64>,
    last_writers: Atomic<u64>,
    last_elapsed_ns: Atomic<u64>,
    /// Attempts that gave up, by the wait that gave up (`TIMED_FREEZE_WAIT_*`).
    gave_up: [Atomic<u64>; uapi::WAIT_NAMES.len()],
}

static STATS: Stats = Stats {
    freezes: Atomic::new(0),
    timeouts: Atomic::new(0),
    undone: Atomic::new(0),
    thaws: Atomic::new(0),
    force_thaws: Atomic::new(0),
    last_errno: Atomic::new(0),
    last_attempts: Atomic::new(0),
    last_level: Atomic::new(0),
    last_gave_up: Atomic::new(0),
    last_writers: Atomic::new(0),
    last_elapsed_ns: Atomic::new(0),
    gave_up: [const { Atomic::new(0) }; uapi::WAIT_NAMES.len()],
};

impl Stats {
    fn record(&self, ret: &Result, r: &FreezeReport) {
        self.undone.add(u64::from(r.undone), Relaxed);
        for (i, n) in r.gave_up_by_wait.iter().enumerate() {
            self.gave_up[i].add(u64::from(*n), Relaxed);
        }
        match ret {
            Ok(()) => {
                self.freezes.add(1, Relaxed);
                return;
            }
            Err(e) if *e == ETIMEDOUT && r.gave_up != uapi::WAIT_NONE => {
                self.timeouts.add(1, Relaxed);
            }
            Err(_) => {}
        }
        let errno = ret.err().map_or(0, |e| e.to_errno());
        self.last_errno.store(errno, Relaxed);
        self.last_attempts.store(u64::from(r.attempts), Relaxed);
        self.last_level.store(u64::from(r.timed_out_level), Relaxed);
        self.last_gave_up.store(u64::from(r.gave_up), Relaxed);
        self.last_writers
            .store(u64::from(r.writers_inside), Relaxed);
        self.last_elapsed_ns.store(r.elapsed_ns, Relaxed);
    }
}

/// What the debugfs file `stats` prints: the counters of [`STATS`], one `key: value` a line.
struct StatsView;

impl fmt::Debug for StatsView {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = &STATS;
        let get = |a: &Atomic<u64>| a.load(Relaxed);
        writeln!(f, "freezes: {}", get(&s.freezes))?;
        writeln!(f, "timeouts: {}", get(&s.timeouts))?;
        writeln!(f, "undone_attempts: {}", get(&s.undone))?;
        writeln!(f, "thaws: {}", get(&s.thaws))?;
        writeln!(f, "force_thaws: {}", get(&s.force_thaws))?;
        writeln!(f, "last_failure_errno: {}", s.last_errno.load(Relaxed))?;
        writeln!(f, "last_failure_attempts: {}", get(&s.last_attempts))?;
        writeln!(f, "last_failure_level: {}", get(&s.last_level))?;
        writeln!(f, "last_failure_gave_up: {}", get(&s.last_gave_up))?;
        writeln!(f, "last_failure_writers: {}", get(&s.last_writers))?;
        writeln!(f, "last_failure_elapsed_ns: {}", get(&s.last_elapsed_ns))?;
        for (name, n) in uapi::WAIT_NAMES.iter().zip(s.gave_up.iter()) {
            writeln!(f, "gave_up_{}: {}", name, get(n))?;
        }
        Ok(())
    }
}

/// A reference on a `struct pid`.
///
/// # Invariants
///
/// `ptr` is a `struct pid` on which this holds a reference (`get_task_pid()`).
struct PidRef {
    ptr: *mut bindings::pid,
}

// SAFETY: A `struct pid` reference may be used and dropped from any thread.
unsafe impl Send for PidRef {}
// SAFETY: Shared references only read it through functions that synchronise.
unsafe impl Sync for PidRef {}

impl PidRef {
    /// The thread group of the current task.
    fn current_tgid() -> Self {
        // SAFETY: `current` is a valid task; `get_task_pid()` takes a reference.
        let ptr = unsafe {
            bindings::get_task_pid(
                kernel::task::Task::current_raw(),
                bindings::pid_type_PIDTYPE_TGID,
            )
        };
        // INVARIANT: a reference taken above.
        Self { ptr }
    }

    /// Its number in the current task's pid namespace, 0 when not visible there.
    fn nr(&self) -> i32 {
        // SAFETY: A referenced `struct pid` (type invariant).
        unsafe { bindings::pid_vnr(self.ptr) }
    }

    /// Whether the thread group has exited.
    fn exited(&self) -> bool {
        let _rcu = kernel::sync::rcu::read_lock();
        // SAFETY: A referenced `struct pid` (type invariant); `pid_task()` needs the RCU read
        // lock, held above.
        unsafe { bindings::pid_task(self.ptr, bindings::pid_type_PIDTYPE_TGID) }.is_null()
    }
}

impl Drop for PidRef {
    fn drop(&mut self) {
        // SAFETY: Drops the reference of the type invariant.
        unsafe { bindings::put_pid(self.ptr) };
    }
}

/// An OWNED freeze ([`uapi::OWNED`]): a kernel freeze with an exclusive owner, the open file
/// of the device that made it.
#[pin_data]
struct OwnedFreeze {
    /// Its number, for the administrator's `FORCE_THAW`.
    id: u64,
    /// The owner passed to `freeze_super()`/`thaw_super()`: the address of the device file's
    /// [`TimedFreezeFile`], stable while it is open (kept as an integer: only compared).
    owner: usize,
    /// A file on the frozen filesystem: it keeps the superblock alive.
    file: ARef<File>,
    /// The process that made the freeze.
    pid: PidRef,
    /// Its command name then.
    comm: [u8; 16],
    /// When.
    start: Instant<Monotonic>,
    #[pin]
    links: ListLinks,
}

impl_list_arc_safe! {
    impl ListArcSafe<0> for OwnedFreeze { untracked; }
}
impl_list_item! {
    impl ListItem<0> for OwnedFreeze { using ListLinks { self.links }; }
}

impl OwnedFreeze {
    fn sb(&self) -> &SuperBlock {
        SuperBlock::from_file(&self.file)
    }

    fn holder(&self) -> Holder {
        Holder::Owned(self.owner as *const c_void)
    }

    /// What `TIMED_FREEZE_IOC_LIST` shows of it.
    fn to_uapi(&self) -> uapi::Owned {
        // SAFETY: `s_dev` of a live superblock (our file pins it) is set at mount.
        let dev = unsafe { (*self.sb().as_raw()).s_dev };
        uapi::Owned {
            id: self.id,
            dev: new_encode_dev(dev),
            age_ns: u64::try_from(self.start.elapsed().as_nanos()).unwrap_or(0),
            pid: self.pid.nr(),
            flags: if self.pid.exited() {
                uapi::OWNED_EXITED
            } else {
                0
            },
            comm: self.comm,
        }
    }
}

/// `new_encode_dev()` (include/linux/kdev_t.h, static inline): `dev_t` as `stat(2)` shows it.
fn new_encode_dev(dev: u32) -> u64 {
    let (major, minor) = (dev >> 20, dev & 0xfffff);
    u64::from((minor & 0xff) | (major << 8) | ((minor & !0xff) << 12))
}

/// The OWNED freezes of every open file, and the next id.
struct Registry {
    list: List<OwnedFreeze>,
    next_id: u64,
}

global_lock! {
    // SAFETY: Initialised in module init, before the device exists.
    unsafe(uninit) static OWNED: SpinLock<Registry> = Registry { list: List::new(), next_id: 1 };
}

/// Takes out of the registry the first freeze for which `pred` holds.
fn take_owned(pred: impl Fn(&OwnedFreeze) -> bool) -> Option<ListArc<OwnedFreeze>> {
    let mut reg = OWNED.lock();
    let mut cur = reg.list.cursor_front();
    while let Some(next) = cur.peek_next() {
        if pred(&next) {
            return Some(next.remove());
        }
        cur.move_next();
    }
    None
}

/// What the debugfs file `owned` prints: one line an OWNED freeze.
struct OwnedView;

impl fmt::Debug for OwnedView {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "id pid exited comm dev age_ms")?;
        let reg = OWNED.lock();
        for o in reg.list.iter() {
            let u = o.to_uapi();
            let len = u.comm.iter().position(|&c| c == 0).unwrap_or(u.comm.len());
            let comm = core::str::from_utf8(&u.comm[..len]).unwrap_or("?");
            writeln!(
                f,
                "{} {} {} {} {}:{} {}",
                u.id,
                u.pid,
                u.flags & uapi::OWNED_EXITED != 0,
                comm,
                (u.dev >> 8) & 0xfff,
                (u.dev & 0xff) | ((u.dev >> 12) & !0xff),
                u.age_ns / 1_000_000
            )?;
        }
        Ok(())
    }
}

/// The module: owns the registration of `/dev/timed-freeze` and the debugfs directory.
#[pin_data(PinnedDrop)]
struct TimedFreezeModule {
    #[pin]
    _miscdev: MiscDeviceRegistration<TimedFreezeFile>,
    #[pin]
    _stats: debugfs::File<StatsView>,
    #[pin]
    _owned: debugfs::File<OwnedView>,
    _debugfs: debugfs::Dir,
}

impl kernel::InPlaceModule for TimedFreezeModule {
    fn init(_module: &'static ThisModule) -> impl PinInit<Self, Error> {
        // SAFETY: Called once, before anything can use the registry.
        unsafe { OWNED.init() };
        // SAFETY: Called once, before any freeze.
        unsafe { worker::init() };
        let dir = debugfs::Dir::new(c"timed_freeze");
        fault::init();
        // SAFETY: Called once, after the debugfs directory exists.
        unsafe { helpers::tf_stages_init() };
        pr_info!("loaded, /dev/timed-freeze ready\n");
        try_pin_init!(Self {
            _miscdev <- MiscDeviceRegistration::register(MiscDeviceOptions {
                name: c"timed-freeze",
            }),
            _stats <- dir.read_only_file(c"stats", StatsView),
            _owned <- dir.read_only_file(c"owned", OwnedView),
            _debugfs: dir,
        })
    }
}

#[pinned_drop]
impl PinnedDrop for TimedFreezeModule {
    fn drop(self: Pin<&mut Self>) {
        // The bench's probes, if it left them registered: they call this module's code.
        // SAFETY: Called once, at exit.
        unsafe { helpers::tf_stages_exit() };
        // Our mirror of rcu_sync_exit() may have queued RCU callbacks that run this module's
        // code; wait for them before the code goes away.
        rcu_sync::wait_for_callbacks();
    }
}

/// State of one open file of `/dev/timed-freeze`.
///
/// Its address is the owner of the OWNED freezes it makes; they are in the registry, and
/// thawed when it is released.
#[pin_data(PinnedDrop)]
struct TimedFreezeFile {
    /// When it was opened (and what makes it not zero-sized: its address must be unique).
    _opened: Instant<Monotonic>,
}

#[vtable]
impl MiscDevice for TimedFreezeFile {
    type Ptr = Pin<KBox<Self>>;

    fn open(_file: &File, _misc: &MiscDeviceRegistration<Self>) -> Result<Pin<KBox<Self>>> {
        KBox::try_pin_init(
            try_pin_init!(TimedFreezeFile {
                _opened: Instant::now(),
            }),
            GFP_KERNEL,
        )
    }

    fn ioctl(me: Pin<&TimedFreezeFile>, _file: &File, cmd: u32, arg: usize) -> Result<isize> {
        if uapi::is_cmd(cmd, uapi::IOC_FREEZE) {
            me.ioctl_freeze(arg)
        } else if uapi::is_cmd(cmd, uapi::IOC_THAW) {
            me.ioctl_thaw(arg)
        } else if uapi::is_cmd(cmd, uapi::IOC_LIST) {
            ioctl_list(arg)
        } else if uapi::is_cmd(cmd, uapi::IOC_FORCE_THAW) {
            ioctl_force_thaw(arg)
        } else {
            Err(ENOTTY)
        }
    }
}

#[pinned_drop]
impl PinnedDrop for TimedFreezeFile {
    fn drop(self: Pin<&mut Self>) {
        // Closing the file (also when its process dies) thaws what it owns.
        let owner = self.owner();
        while let Some(f) = take_owned(|f| f.owner == owner) {
            if let Err(e) = thaw_counted(f.sb(), f.holder()) {
                pr_warn!("release: thaw of an owned freeze failed: {:?}\n", e);
            }
        }
    }
}

/// A thaw of ours, counted.
fn thaw_counted(sb: &SuperBlock, holder: Holder) -> Result {
    sb.thaw(holder)?;
    STATS.thaws.add(1, Relaxed);
    Ok(())
}

/// `capable(CAP_SYS_ADMIN)`: in the initial user namespace, as for the administrator's view.
fn capable_admin() -> bool {
    // SAFETY: Checks the current task's credentials only.
    unsafe { bindings::capable(bindings::CAP_SYS_ADMIN as i32) }
}

impl TimedFreezeFile {
    /// The owner of this file's owned freezes: its own address, stable while it is open.
    fn owner(&self) -> usize {
        core::ptr::from_ref(self) as usize
    }

    fn ioctl_freeze(&self, arg: usize) -> Result<isize> {
        let (mut a, usize_) = uapi::read_ext::<uapi::FreezeArgs>(arg)?;
        if a.flags & !uapi::FREEZE_FLAGS != 0 || a.reserved != 0 {
            return Err(EINVAL);
        }
        if a.timeout_ns > uapi::TIMEOUT_MAX_NS || a.retries > uapi::RETRIES_MAX {
            return Err(EINVAL);
        }
        // A timeout of 0 is exactly one attempt.
        if a.timeout_ns == 0 && (a.retries != 0 || a.deadline_ns != 0) {
            return Err(EINVAL);
        }
        // A deadline has room for one attempt.
        if a.deadline_ns != 0
            && (a.deadline_ns < a.timeout_ns || a.deadline_ns > uapi::DEADLINE_MAX_NS)
        {
            return Err(EINVAL);
        }
        let file = get_file(a.fd)?;
        let sb = SuperBlock::from_file(&file);
        check_freezable(sb)?;
        // The result is written back with page faults disabled (see below); writing the
        // struct once now makes a bad address fail before anything is frozen, and the pin
        // keeps a good one writable until then (a fork() by another thread meanwhile).
        uapi::write_ext(arg, usize_, &a)?;
        let _pin = uapi::ResultPin::new::<uapi::FreezeArgs>(arg, usize_);

        let owned = a.flags & uapi::OWNED != 0;
        let holder = if owned {
            Holder::Owned(self.owner() as *const c_void)
        } else {
            Holder::Userspace
        };
        let params = FreezeParams {
            timeout: Delta::from_nanos(i64::try_from(a.timeout_ns).map_err(|_| EINVAL)?),
            retries: a.retries,
            deadline: Delta::from_nanos(i64::try_from(a.deadline_ns).map_err(|_| EINVAL)?),
            gp: if a.flags & uapi::EXPEDITED != 0 {
                GracePeriod::Expedited
            } else {
                GracePeriod::Normal
            },
            holder,
        };
        // The registry entry of an owned freeze, made first: after a successful freeze
        // nothing may fail.
        let entry = if owned {
            // SAFETY: `current->comm` of the current task, copied as `get_task_comm()` does
            // (the task may rename itself concurrently; a torn name is accepted there too).
            let comm = unsafe { (*kernel::task::Task::current_raw()).comm };
            let id = {
                let mut reg = OWNED.lock();
                reg.next_id += 1;
                reg.next_id - 1
            };
            let file = file.clone();
            Some(ListArc::pin_init(
                try_pin_init!(OwnedFreeze {
                    id,
                    owner: self.owner(),
                    file,
                    pid: PidRef::current_tgid(),
                    comm,
                    start: Instant::now(),
                    links <- ListLinks::new(),
                }),
                GFP_KERNEL,
            )?)
        } else {
            None
        };

        let mut report = FreezeReport::default();
        let ret = freeze::timed_freeze_super(sb, &params, &mut report);
        STATS.record(&ret, &report);
        a.attempts = report.attempts;
        a.timed_out_level = report.timed_out_level;
        a.elapsed_ns = report.elapsed_ns;
        a.writers_inside = u64::from(report.writers_inside);
        a.gave_up = report.gave_up;
        a.blocked_ns = report.blocked_ns;

        if let Err(e) = ret {
            // At most ten of these lines in five seconds: a caller may retry in a loop.
            if e == ETIMEDOUT && report.gave_up != uapi::WAIT_NONE && timeout_log_ratelimit() {
                pr_info!(
                    "freeze of {} timed out: {} attempt(s), last gave up at wait {} with {} writer(s) inside, {} ns; {}\n",
                    sb.fs_name(),
                    report.attempts,
                    report.gave_up,
                    report.writers_inside,
                    report.elapsed_ns,
                    report.aftermath()
                );
            }
            // Without faulting: after a commit that gave up its thread still holds the
            // levels, and the storage that stopped may hold a page of a mapping the struct
            // sits in (a fault would wait for either). A pinned struct is written anyway.
            let _ = uapi::write_ext_nofault(arg, usize_, &a);
            return Err(e);
        }

        // Frozen. The struct may sit in a shared mapping of a file on this very filesystem,
        // where a fault would wait for the freeze: write without faulting, and when that
        // fails, undo the freeze rather than leave it with nobody told.
        if uapi::write_ext_nofault(arg, usize_, &a).is_err() {
            if let Err(t) = sb.thaw(holder) {
                pr_err!(
                    "freeze of {}: result not writable, and the thaw failed ({:?})\n",
                    sb.fs_name(),
                    t
                );
            }
            return Err(EFAULT);
        }
        if let Some(entry) = entry {
            OWNED.lock().list.push_back(entry);
        }
        Ok(0)
    }

    fn ioctl_thaw(&self, arg: usize) -> Result<isize> {
        let (a, _) = uapi::read_ext::<uapi::ThawArgs>(arg)?;
        if a.flags & !uapi::THAW_FLAGS != 0 || a.reserved != 0 {
            return Err(EINVAL);
        }
        let file = get_file(a.fd)?;
        let sb = SuperBlock::from_file(&file);
        if !sb.capable_admin() {
            return Err(EPERM);
        }
        if a.flags & uapi::OWNED == 0 {
            return ioctl_fsthaw(sb).map(|()| 0);
        }
        let owner = self.owner();
        let f = take_owned(|f| f.owner == owner && f.sb().as_raw() == sb.as_raw()).ok_or(EINVAL)?;
        if let Err(e) = thaw_counted(f.sb(), f.holder()) {
            // Still ours and still frozen: keep it listed.
            OWNED.lock().list.push_back(f);
            return Err(e);
        }
        Ok(0)
    }
}

/// Mirror of `ioctl_fsthaw()` (fs/ioctl.c), after its permission check: the filesystem's
/// own `->thaw_super` when it has one (gfs2), else `thaw_super()`.
fn ioctl_fsthaw(sb: &SuperBlock) -> Result {
    // Thaw
    if let Some(thaw_super) = sb.ops().thaw_super {
        // SAFETY: The filesystem's own callback, called as ioctl_fsthaw() calls it, on a live
        // superblock.
        let ret = unsafe {
            thaw_super(
                sb.as_raw(),
                bindings::freeze_holder_FREEZE_HOLDER_USERSPACE,
                core::ptr::null(),
            )
        };
        kernel::error::to_result(ret)?;
        STATS.thaws.add(1, Relaxed);
        return Ok(());
    }
    thaw_counted(sb, Holder::Userspace)
}

/// `TIMED_FREEZE_IOC_LIST`: every OWNED freeze, for the administrator.
fn ioctl_list(arg: usize) -> Result<isize> {
    if !capable_admin() {
        return Err(EPERM);
    }
    let (mut a, usize_) = uapi::read_ext::<uapi::ListArgs>(arg)?;
    let esize = usize::try_from(a.entry_size).map_err(|_| EINVAL)?;
    if a.reserved != 0 || !(uapi::OWNED_SIZE_VER0..=4096).contains(&esize) {
        return Err(EINVAL);
    }
    // A snapshot, taken without sleeping under the lock: room first, then the copy.
    let mut snap = KVec::<uapi::Owned>::new();
    let total = loop {
        let n = OWNED.lock().list.iter().count();
        snap.reserve(n, GFP_KERNEL)?;
        let reg = OWNED.lock();
        let total = reg.list.iter().count();
        if total <= snap.capacity() {
            for o in reg.list.iter() {
                snap.push(o.to_uapi(), GFP_ATOMIC)?;
            }
            break total;
        }
    };
    a.total = u32::try_from(total).unwrap_or(u32::MAX);
    let count = usize::try_from(a.count).map_err(|_| EINVAL)?.min(total);
    let base = usize::try_from(a.entries).map_err(|_| EFAULT)?;
    let mut w = UserSlice::new(UserPtr::from_addr(base), count * esize).writer();
    let zeros = [0u8; 64];
    for e in &snap[..count] {
        let bytes = e.as_bytes();
        let n = esize.min(bytes.len());
        w.write_slice(&bytes[..n])?;
        // A larger entry than we know: the rest reads as zero.
        let mut rest = esize - n;
        while rest > 0 {
            let k = rest.min(zeros.len());
            w.write_slice(&zeros[..k])?;
            rest -= k;
        }
    }
    uapi::write_ext(arg, usize_, &a)?;
    Ok(0)
}

/// `TIMED_FREEZE_IOC_FORCE_THAW`: the administrator thaws an OWNED freeze its holder cannot.
fn ioctl_force_thaw(arg: usize) -> Result<isize> {
    if !capable_admin() {
        return Err(EPERM);
    }
    let (a, _) = uapi::read_ext::<uapi::ForceThawArgs>(arg)?;
    if a.flags != 0 {
        return Err(EINVAL);
    }
    let f = take_owned(|f| f.id == a.id).ok_or(ENOENT)?;
    let u = f.to_uapi();
    if let Err(e) = thaw_counted(f.sb(), f.holder()) {
        OWNED.lock().list.push_back(f);
        return Err(e);
    }
    STATS.force_thaws.add(1, Relaxed);
    let len = u.comm.iter().position(|&c| c == 0).unwrap_or(u.comm.len());
    let comm = core::str::from_utf8(&u.comm[..len]).unwrap_or("?");
    let exited = if u.flags & uapi::OWNED_EXITED != 0 {
        ", exited"
    } else {
        ""
    };
    pr_info!(
        "owned freeze {} of {} thawed by the administrator: made by pid {} ({}){}, {} ms old\n",
        u.id,
        f.sb().fs_name(),
        u.pid,
        comm,
        exited,
        u.age_ns / 1_000_000
    );
    Ok(0)
}

/// Whether the line of a freeze that timed out may go to the log now (`printk_ratelimited()`'s
/// limit).
fn timeout_log_ratelimit() -> bool {
    // SAFETY: `tf_timeout_log_ratelimit()` takes no arguments and only updates its own static
    // state, under that state's lock.
    unsafe { helpers::tf_timeout_log_ratelimit() }
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
        assert!(!uapi::is_cmd(uapi::IOC_LIST, uapi::IOC_FORCE_THAW));
        assert!(!uapi::is_cmd(0, uapi::IOC_FREEZE));
    }

    #[test]
    fn dev_t_encoded_as_stat_shows_it() {
        // MKDEV(7, 3): loop3 is 7:3, st_dev 0x703.
        assert_eq!(new_encode_dev((7 << 20) | 3), 0x703);
        // MKDEV(259, 0x12345): the high minor bits go above the major.
        assert_eq!(
            new_encode_dev((259 << 20) | 0x12345),
            0x45 | (259 << 8) | (0x12300 << 12)
        );
    }
}
