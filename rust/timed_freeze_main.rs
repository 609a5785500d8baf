// SPDX-License-Identifier: GPL-2.0

//! timed-freeze: `freeze_super()` with a deadline, a retry and a complete undo.
//!
//! Freezing a filesystem waits for every writer inside it to leave.  When one
//! of those writers waits in turn for a userspace daemon (FUSE, NBD, fanotify
//! HSM, file-backed EROFS) and the daemon writes to the filesystem being
//! frozen, the freezer waits forever: the reader holds the freeze lock, the
//! freezer blocks new readers, the daemon is a new reader.
//!
//! This module exposes, through the misc device `/dev/timed-freeze`, a freeze
//! whose waits for writers have a deadline.  When the deadline passes, the
//! partial freeze is undone so the blocked writers proceed, and the freeze
//! is tried again.  See `Documentation/` in the source tree.

use kernel::{
    fs::File,
    miscdevice::{MiscDevice, MiscDeviceOptions, MiscDeviceRegistration},
    prelude::*,
};

module! {
    type: TimedFreezeModule,
    name: "timed_freeze",
    authors: ["timed-freeze developers"],
    description: "freeze_super() with a deadline, a retry and a complete undo",
    license: "GPL",
}

/// The module: owns the registration of `/dev/timed-freeze`.
#[pin_data]
struct TimedFreezeModule {
    #[pin]
    _miscdev: MiscDeviceRegistration<TimedFreezeFile>,
}

impl kernel::InPlaceModule for TimedFreezeModule {
    fn init(_module: &'static ThisModule) -> impl PinInit<Self, Error> {
        pr_info!("loaded, /dev/timed-freeze ready\n");

        let options = MiscDeviceOptions {
            name: c"timed-freeze",
        };

        try_pin_init!(Self {
            _miscdev <- MiscDeviceRegistration::register(options),
        })
    }
}

/// State of one open file of `/dev/timed-freeze`.
struct TimedFreezeFile;

#[vtable]
impl MiscDevice for TimedFreezeFile {
    type Ptr = KBox<Self>;

    fn open(_file: &File, _misc: &MiscDeviceRegistration<Self>) -> Result<KBox<Self>> {
        Ok(KBox::new(TimedFreezeFile, GFP_KERNEL)?)
    }

    fn ioctl(_me: &TimedFreezeFile, _file: &File, cmd: u32, _arg: usize) -> Result<isize> {
        dispatch(cmd)
    }
}

/// Routes an ioctl command to its handler.
fn dispatch(_cmd: u32) -> Result<isize> {
    // No command is defined yet: every one is unknown to this driver.
    Err(ENOTTY)
}

#[kunit_tests(timed_freeze_ioctl)]
mod tests {
    use super::*;

    #[test]
    fn unknown_ioctl_is_enotty() {
        assert_eq!(dispatch(0), Err(ENOTTY));
        assert_eq!(dispatch(u32::MAX), Err(ENOTTY));
    }
}
