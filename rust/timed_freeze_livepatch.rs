// SPDX-License-Identifier: GPL-2.0

//! timed-freeze, system-wide: every caller of `freeze_super()` gets the deadline.
//!
//! A live patch (kernel/livepatch, `klp_enable_patch()`; the patch itself is in
//! `rust/livepatch.c`) replaces `freeze_super()` (fs/super.c) with [`tf_klp_freeze_super`],
//! which freezes with [`freeze::timed_freeze_super`], the same timed freeze as the device's
//! ioctl: each attempt bounded by the parameter `timeout_ms`, undone completely when its
//! deadline passes, tried again `retries` times. `FIFREEZE` (`fsfreeze -f`, `xfs_freeze`,
//! qemu-guest-agent) and `bdev_freeze()` (device-mapper suspends, LVM snapshots) then return
//! `ETIMEDOUT` where they would wait forever, with nothing left frozen. The design, what a
//! timeout means for each caller and how to turn the mode on and off are in
//! `Documentation/timed-freeze.rst`.
//!
//! It is a module of its own, built from the device module's sources: a live patch taints the
//! kernel (`K`) and cannot be unloaded before it is disabled, which the device module, that
//! replaces nothing, should not inherit.
//!
//! Which freezes get the deadline (the rest run the same freeze without one,
//! [`freeze_untimed`], in `freeze_super()`'s own order, as a livepatch cannot call the
//! function it replaces):
//!
//! - none while `timeout_ms` is 0, the default;
//! - by holder, the parameter `holders`: `fifreeze` (`FREEZE_HOLDER_USERSPACE`, from
//!   `ioctl_fsfreeze()` only), `bdev` (`FREEZE_HOLDER_USERSPACE | FREEZE_MAY_NEST`, from
//!   `fs_super_freeze()` only) and `kernel` (`FREEZE_HOLDER_KERNEL`: xfs scrub and media
//!   failure, f2fs resize, btrfs); the default is the first two;
//! - never an exclusive kernel freeze (`FREEZE_EXCL`: suspend's `filesystems_freeze()`),
//!   whose holder thaws exclusively whatever its freeze returned;
//! - never on a filesystem with its own `->freeze_super` (gfs2, whose cluster freeze calls
//!   `freeze_super()` from its own code with a userspace holder);
//! - never a shutdown: the `bdev_freeze()` of an `FS_IOC_SHUTDOWN` ioctl (ext4, xfs's
//!   `XFS_IOC_GOINGDOWN`, f2fs, exfat, ntfs3, ntfs), told from the system call the task is in, not
//!   from the functions on its stack ([`in_shutdown`]);
//! - never a `bdev_freeze()` of a device that is not claimed by the superblock alone: when
//!   several superblocks share a device, `fs_bdev_freeze()` swallows one's failure and reports
//!   the device frozen, so a deadline there would turn into a snapshot of a live filesystem
//!   ([`sole_on_device`]).
//!
//! At load, the module checks that every freeze it covers reaches the functions it replaces
//! (`freeze_super()`, and `bdev_freeze()`, replaced to tell which device a `bdev_freeze()`
//! freezes) and refuses to load, naming the function, where a compiler's copy or inlined body
//! would bypass them (`tf_klp_check_entries()` in `rust/livepatch.c`).
//!
//! Differences from `freeze_super()` are those of [`freeze`] (the module docs there): a timed
//! freeze's are the timed attempt's; an untimed one keeps the original's order, and its waits
//! are killable.

#[macro_use]
mod warn;

// The device module's sources. What only its ioctls and KUnit suites use is dead code here;
// the device module's build checks it.
mod fault;
#[allow(dead_code)]
mod freeze;
#[allow(dead_code)]
mod helpers;
#[allow(dead_code)]
mod percpu_rwsem;
#[allow(dead_code)]
mod rcu_sync;
mod retry;
#[allow(dead_code)]
mod uapi;
mod worker;

use core::fmt;
use freeze::{freeze_untimed, FreezeParams, FreezeReport, Holder, SuperBlock};
use kernel::{
    bindings, debugfs,
    prelude::*,
    sync::atomic::{Atomic, Relaxed},
    time::Delta,
};
use rcu_sync::GracePeriod;

module! {
    type: TimedFreezeLivepatch,
    name: "timed_freeze_livepatch",
    authors: ["timed-freeze developers"],
    description: "freeze_super() with a deadline for every caller, as a live patch",
    license: "GPL",
}

// The C side, `rust/livepatch.c` (see there why it is C). None has preconditions beyond its
// pointer arguments being valid for what it says it does with them. The bindgen type of
// `super_block` contains empty structs, which the lint cannot tell apart from unsized ones
// (as in `rust/helpers.rs`).
#[allow(improper_ctypes)]
extern "C" {
    /// `klp_enable_patch()` of the static patch; from module init only.
    fn tf_klp_enable() -> c_int;
    /// Whether every freeze the module covers reaches the patched functions; logs why not.
    fn tf_klp_check_entries() -> c_int;
    /// Stores the three parameters, each read once.
    fn tf_klp_params(timeout_ms: *mut c_uint, retries: *mut c_uint, holders: *mut c_uint);
    /// Whether the current task is in an `FS_IOC_SHUTDOWN` ioctl.
    fn tf_klp_in_shutdown_ioctl() -> bool;
    /// Whether the device the current task's `bdev_freeze()` freezes is claimed by `sb`.
    fn tf_klp_bdev_freeze_is_sole(sb: *const bindings::super_block) -> bool;
    /// `get_task_comm()` of the current task into `buf` (`TASK_COMM_LEN` bytes).
    fn tf_klp_current_comm(buf: *mut c_char);
}

// `enum freeze_holder` (include/linux/fs/super_types.h).
const FREEZE_HOLDER_KERNEL: u32 = bindings::freeze_holder_FREEZE_HOLDER_KERNEL;
const FREEZE_MAY_NEST: u32 = bindings::freeze_holder_FREEZE_MAY_NEST;
const FREEZE_EXCL: u32 = bindings::freeze_holder_FREEZE_EXCL;

/// Who freezes, told by the `enum freeze_holder` bits `freeze_super()` is given.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Caller {
    /// `ioctl_fsfreeze()`: `FREEZE_HOLDER_USERSPACE`.
    Fifreeze = 0,
    /// `fs_super_freeze()`, under `bdev_freeze()`: `FREEZE_HOLDER_USERSPACE | FREEZE_MAY_NEST`.
    Bdev = 1,
    /// A kernel freezer: `FREEZE_HOLDER_KERNEL`, with or without `FREEZE_EXCL`.
    Kernel = 2,
}

impl Caller {
    fn of(who: u32) -> Self {
        if who & FREEZE_HOLDER_KERNEL != 0 {
            Caller::Kernel
        } else if who & FREEZE_MAY_NEST != 0 {
            Caller::Bdev
        } else {
            Caller::Fifreeze
        }
    }

    /// Its bit in the parameter `holders` (`TF_KLP_*` in `rust/livepatch.c`).
    fn bit(self) -> u32 {
        1 << self as u32
    }

    /// Every caller, in the order of the discriminants.
    const ALL: [Caller; 3] = [Caller::Fifreeze, Caller::Bdev, Caller::Kernel];

    /// Its name in the parameter `holders` and in the counters.
    fn key(self) -> &'static str {
        match self {
            Caller::Fifreeze => "fifreeze",
            Caller::Bdev => "bdev",
            Caller::Kernel => "kernel",
        }
    }

    /// Its name in log lines.
    fn name(self) -> &'static str {
        match self {
            Caller::Fifreeze => "FIFREEZE",
            Caller::Bdev => "bdev_freeze",
            Caller::Kernel => "kernel",
        }
    }
}

/// The module's parameters, read once per freeze.
#[derive(Clone, Copy, Debug, Default)]
struct Config {
    timeout_ms: u32,
    retries: u32,
    holders: u32,
}

impl Config {
    fn get() -> Self {
        let mut c = Config::default();
        // SAFETY: Three valid pointers to integers; the function only stores to them.
        unsafe { tf_klp_params(&mut c.timeout_ms, &mut c.retries, &mut c.holders) };
        c
    }
}

/// Why a freeze runs without a deadline.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Untimed {
    /// `timeout_ms` is 0.
    Off,
    /// Its holder is not in `holders`.
    Holder,
    /// An exclusive kernel freeze (`FREEZE_EXCL`: suspend's `filesystems_freeze()`).
    Exclusive,
    /// The filesystem has its own `->freeze_super`.
    OwnFreezeSuper,
    /// A shutdown's `bdev_freeze()`.
    Shutdown,
    /// A `bdev_freeze()` of a device other superblocks may share, or of an unknown device.
    SharedDevice,
}

/// The deadline of each attempt of a freeze by `who`, or why it has none; `bdev` (why the
/// device being frozen allows none, if it does not) is asked last, and only of a
/// `bdev_freeze()` that would otherwise get one.
///
/// An exclusive kernel freeze never gets one: its holder thaws with `thaw_super(FREEZE_EXCL)`
/// whatever its freeze returned (suspend's `filesystems_thaw()`), which warns on a
/// filesystem it did not freeze, and nests into a userspace freeze only by waiting for it.
fn plan(
    cfg: &Config,
    who: u32,
    own_freeze_super: bool,
    bdev: impl FnOnce() -> Result<(), Untimed>,
) -> Result<Delta, Untimed> {
    let caller = Caller::of(who);
    if cfg.timeout_ms == 0 {
        return Err(Untimed::Off);
    }
    if cfg.holders & caller.bit() == 0 {
        return Err(Untimed::Holder);
    }
    if who & FREEZE_EXCL != 0 {
        return Err(Untimed::Exclusive);
    }
    if own_freeze_super {
        return Err(Untimed::OwnFreezeSuper);
    }
    if caller == Caller::Bdev {
        bdev()?;
    }
    Ok(Delta::from_millis(i64::from(cfg.timeout_ms)))
}

/// Whether the current task is in a shutdown ioctl (`FS_IOC_SHUTDOWN`, whatever the
/// filesystem calls it): its `bdev_freeze()` must happen, deadline or not.
fn in_shutdown() -> bool {
    // SAFETY: No arguments; the function reads the current task's saved registers.
    unsafe { tf_klp_in_shutdown_ioctl() }
}

/// Whether the device the current task's `bdev_freeze()` freezes is claimed by `sb` alone.
fn sole_on_device(sb: &SuperBlock) -> bool {
    // SAFETY: `sb` is alive; the function compares its address with the device's holder.
    unsafe { tf_klp_bdev_freeze_is_sole(sb.as_raw()) }
}

/// Why the current task's `bdev_freeze()` of `sb` gets no deadline: a shutdown, or a device
/// other superblocks may share (or one not known); `Ok` when it may get one.
fn bdev_freeze_of(sb: &SuperBlock) -> Result<(), Untimed> {
    if in_shutdown() {
        Err(Untimed::Shutdown)
    } else if sole_on_device(sb) {
        Ok(())
    } else {
        Err(Untimed::SharedDevice)
    }
}

/// The counters of `/sys/kernel/debug/timed_freeze_livepatch/stats`.
struct Stats {
    calls: Atomic<u64>,
    untimed: Atomic<u64>,
    untimed_shutdown: Atomic<u64>,
    untimed_shared_device: Atomic<u64>,
    timed: Atomic<u64>,
    frozen: Atomic<u64>,
    frozen_after_undo: Atomic<u64>,
    undone_attempts: Atomic<u64>,
    interrupted: Atomic<u64>,
    failed: Atomic<u64>,
    /// Timed freezes that gave up (`ETIMEDOUT` after their last attempt), by [`Caller`].
    timeouts: [Atomic<u64>; Caller::ALL.len()],
}

static STATS: Stats = Stats {
    calls: Atomic::new(0),
    untimed: Atomic::new(0),
    untimed_shutdown: Atomic::new(0),
    untimed_shared_device: Atomic::new(0),
    timed: Atomic::new(0),
    frozen: Atomic::new(0),
    frozen_after_undo: Atomic::new(0),
    undone_attempts: Atomic::new(0),
    interrupted: Atomic::new(0),
    failed: Atomic::new(0),
    timeouts: [const { Atomic::new(0) }; Caller::ALL.len()],
};

impl Stats {
    fn record(&self, caller: Caller, ret: &Result, r: &FreezeReport) {
        self.undone_attempts.add(u64::from(r.undone), Relaxed);
        let counter = match ret {
            Ok(()) if r.undone > 0 => {
                self.frozen_after_undo.add(1, Relaxed);
                &self.frozen
            }
            Ok(()) => &self.frozen,
            Err(e) if *e == ETIMEDOUT && r.gave_up != uapi::WAIT_NONE => {
                &self.timeouts[caller as usize]
            }
            Err(e) if *e == EINTR && r.gave_up != uapi::WAIT_NONE => &self.interrupted,
            Err(_) => &self.failed,
        };
        counter.add(1, Relaxed);
    }
}

/// What the debugfs file `stats` prints: one `key: value` a line.
struct StatsView;

impl fmt::Debug for StatsView {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = &STATS;
        let get = |a: &Atomic<u64>| a.load(Relaxed);
        writeln!(f, "calls: {}", get(&s.calls))?;
        writeln!(f, "untimed: {}", get(&s.untimed))?;
        writeln!(f, "untimed_shutdown: {}", get(&s.untimed_shutdown))?;
        writeln!(
            f,
            "untimed_shared_device: {}",
            get(&s.untimed_shared_device)
        )?;
        writeln!(f, "timed: {}", get(&s.timed))?;
        writeln!(f, "frozen: {}", get(&s.frozen))?;
        writeln!(f, "frozen_after_undo: {}", get(&s.frozen_after_undo))?;
        writeln!(f, "undone_attempts: {}", get(&s.undone_attempts))?;
        writeln!(f, "interrupted: {}", get(&s.interrupted))?;
        writeln!(f, "failed: {}", get(&s.failed))?;
        for c in Caller::ALL {
            writeln!(f, "timeouts_{}: {}", c.key(), get(&s.timeouts[c as usize]))?;
        }
        Ok(())
    }
}

/// The replacement of `freeze_super()` (fs/super.c) for every caller, while the live patch
/// is enabled: see the module docs for which freezes it gives a deadline.
///
/// # Safety
///
/// The contract of `freeze_super()`: `sb` is a superblock the caller keeps alive for the
/// call (by a mount, an open file, or `bdev_freeze()`'s reference), `who` and `freeze_owner`
/// as `freeze_super()` takes them.
#[no_mangle]
unsafe extern "C" fn tf_klp_freeze_super(
    sb: *mut bindings::super_block,
    who: bindings::freeze_holder,
    freeze_owner: *const c_void,
) -> c_int {
    // SAFETY: Alive for the call, per the function's safety requirements.
    let sb = unsafe { SuperBlock::from_raw(sb) };
    let holder = Holder::Caller(who, freeze_owner);
    let caller = Caller::of(who);
    let cfg = Config::get();
    STATS.calls.add(1, Relaxed);

    let timeout = match plan(&cfg, who, sb.has_own_freeze_super(), || bdev_freeze_of(sb)) {
        Ok(t) => t,
        Err(why) => {
            STATS.untimed.add(1, Relaxed);
            match why {
                Untimed::Shutdown => STATS.untimed_shutdown.add(1, Relaxed),
                Untimed::SharedDevice => STATS.untimed_shared_device.add(1, Relaxed),
                _ => (),
            }
            return to_errno(freeze_untimed(sb, holder));
        }
    };

    STATS.timed.add(1, Relaxed);
    let p = FreezeParams {
        timeout,
        retries: cfg.retries,
        deadline: Delta::ZERO,
        gp: GracePeriod::Normal,
        holder,
    };
    let mut report = FreezeReport::default();
    let ret = freeze::timed_freeze_super(sb, &p, &mut report);
    STATS.record(caller, &ret, &report);
    if matches!(ret, Err(e) if e == ETIMEDOUT) && report.gave_up != uapi::WAIT_NONE {
        log_timeout(sb, caller, &report);
    }
    to_errno(ret)
}

/// `0` or the negative errno `freeze_super()` returns.
fn to_errno(ret: Result) -> c_int {
    ret.map_or_else(|e| e.to_errno(), |()| 0)
}

/// The line of a timed freeze that gave up: who asked, on what, after how long.
fn log_timeout(sb: &SuperBlock, caller: Caller, r: &FreezeReport) {
    // SAFETY: `tf_timeout_log_ratelimit()` takes no arguments and only updates its own static
    // state, under that state's lock.
    if !unsafe { helpers::tf_timeout_log_ratelimit() } {
        return;
    }
    let mut comm = [0u8; bindings::TASK_COMM_LEN as usize];
    // SAFETY: `comm` has the `TASK_COMM_LEN` bytes the function writes.
    unsafe { tf_klp_current_comm(comm.as_mut_ptr().cast()) };
    // SAFETY: `get_task_comm()` NUL-terminates within the buffer.
    let comm = unsafe { CStr::from_char_ptr(comm.as_ptr().cast()) };
    // SAFETY: `s_id` of a live superblock is a NUL-terminated name set at mount.
    let id = unsafe { CStr::from_char_ptr((*sb.as_raw()).s_id.as_ptr()) };
    pr_warn!(
        "{} freeze of {} ({}) by {}[{}] gave up: {} attempt(s) in {} ms, the last at {} with {} writer(s) inside; {}\n",
        caller.name(),
        sb.fs_name(),
        id,
        comm,
        kernel::current!().tgid(),
        r.attempts,
        r.elapsed_ns / 1_000_000,
        r.gave_up
            .checked_sub(1)
            .and_then(|i| uapi::WAIT_NAMES.get(i as usize))
            .unwrap_or(&"?"),
        r.writers_inside,
        r.aftermath()
    );
}

/// The module: the live patch, enabled at load, and the debugfs directory.
#[pin_data(PinnedDrop)]
struct TimedFreezeLivepatch {
    #[pin]
    _stats: debugfs::File<StatsView>,
    _debugfs: debugfs::Dir,
}

impl kernel::InPlaceModule for TimedFreezeLivepatch {
    fn init(_module: &'static ThisModule) -> impl PinInit<Self, Error> {
        // SAFETY: Called once, before any freeze.
        unsafe { worker::init() };
        let dir = debugfs::Dir::new(c"timed_freeze_livepatch");
        fault::init();
        // SAFETY: Called once, after the debugfs directory exists.
        unsafe { helpers::tf_stages_init() };
        try_pin_init!(Self {
            _stats <- dir.read_only_file(c"stats", StatsView),
            _debugfs: dir,
        })
        .pin_chain(|_| {
            // SAFETY: From module init, before the patch is enabled; takes no arguments.
            kernel::error::to_result(unsafe { tf_klp_check_entries() })?;
            // SAFETY: From module init, as klp_enable_patch() requires; the patch and its
            // tables are static.
            kernel::error::to_result(unsafe { tf_klp_enable() })?;
            let cfg = Config::get();
            pr_info!(
                "freeze_super() replaced: timeout_ms={} retries={}\n",
                cfg.timeout_ms,
                cfg.retries
            );
            Ok(())
        })
    }
}

#[pinned_drop]
impl PinnedDrop for TimedFreezeLivepatch {
    fn drop(self: Pin<&mut Self>) {
        // SAFETY: Called once, at exit.
        unsafe { helpers::tf_stages_exit() };
        // As in the device module: RCU callbacks of our rcu_sync mirror run this module's code.
        rcu_sync::wait_for_callbacks();
    }
}

#[kunit_tests(timed_freeze_livepatch)]
mod tests {
    use super::*;
    use core::cell::Cell;

    const FREEZE_HOLDER_USERSPACE: u32 = bindings::freeze_holder_FREEZE_HOLDER_USERSPACE;
    const FREEZE_EXCL: u32 = bindings::freeze_holder_FREEZE_EXCL;

    const FIFREEZE: u32 = FREEZE_HOLDER_USERSPACE;
    const BDEV: u32 = FREEZE_HOLDER_USERSPACE | FREEZE_MAY_NEST;
    const KERNEL: u32 = FREEZE_HOLDER_KERNEL;

    fn cfg(timeout_ms: u32, holders: u32) -> Config {
        Config {
            timeout_ms,
            retries: 0,
            holders,
        }
    }

    #[test]
    fn callers_by_their_holder_bits() {
        // ioctl_fsfreeze(), fs_super_freeze(), filesystems_freeze() and the others.
        assert_eq!(Caller::of(FREEZE_HOLDER_USERSPACE), Caller::Fifreeze);
        assert_eq!(
            Caller::of(FREEZE_HOLDER_USERSPACE | FREEZE_MAY_NEST),
            Caller::Bdev
        );
        assert_eq!(Caller::of(FREEZE_HOLDER_KERNEL), Caller::Kernel);
        assert_eq!(
            Caller::of(FREEZE_HOLDER_KERNEL | FREEZE_EXCL),
            Caller::Kernel
        );
    }

    #[test]
    fn holder_bits_match_the_parameter() {
        // TF_KLP_FIFREEZE, TF_KLP_BDEV, TF_KLP_KERNEL in rust/livepatch.c.
        assert_eq!(Caller::Fifreeze.bit(), 1);
        assert_eq!(Caller::Bdev.bit(), 2);
        assert_eq!(Caller::Kernel.bit(), 4);
    }

    #[test]
    fn which_freezes_get_the_deadline() {
        let all = 7;
        let asked = Cell::new(false);
        let bdev = |answer: Result<(), Untimed>| {
            let asked = &asked;
            move || {
                asked.set(true);
                answer
            }
        };
        let ms = |n| Ok(Delta::from_millis(n));
        let cases = [
            (cfg(0, all), FIFREEZE, false, Err(Untimed::Off)),
            (cfg(500, all), FIFREEZE, false, ms(500)),
            (cfg(500, all), KERNEL, false, ms(500)),
            (cfg(500, 3), KERNEL, false, Err(Untimed::Holder)),
            (cfg(500, 4), FIFREEZE, false, Err(Untimed::Holder)),
            (cfg(500, 0), BDEV, false, Err(Untimed::Holder)),
            (cfg(500, all), FIFREEZE, true, Err(Untimed::OwnFreezeSuper)),
            // filesystems_freeze(): never, whatever `holders` says.
            (
                cfg(500, all),
                KERNEL | FREEZE_EXCL,
                false,
                Err(Untimed::Exclusive),
            ),
        ];
        for (c, who, own, want) in cases {
            assert_eq!(plan(&c, who, own, bdev(Ok(()))), want);
            // The device is looked at only for a bdev_freeze() that would get a deadline.
            assert!(!asked.get());
        }
        assert_eq!(plan(&cfg(60000, all), BDEV, false, bdev(Ok(()))), ms(60000));
        assert!(asked.get());
    }

    #[test]
    fn shutdowns_and_shared_devices_never_get_one() {
        let bdev = |answer| move || answer;
        for holders in [2, 3, 7] {
            for ms in [1, 500, 60000] {
                let c = cfg(ms, holders);
                // A shutdown's freeze happens, whatever the parameters say.
                assert_eq!(
                    plan(&c, BDEV, false, bdev(Err(Untimed::Shutdown))),
                    Err(Untimed::Shutdown)
                );
                // fs_bdev_freeze() would swallow a timed-out superblock's failure.
                assert_eq!(
                    plan(&c, BDEV, false, bdev(Err(Untimed::SharedDevice))),
                    Err(Untimed::SharedDevice)
                );
                assert!(plan(&c, BDEV, false, bdev(Ok(()))).is_ok());
            }
        }
    }
}
