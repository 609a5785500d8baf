// SPDX-License-Identifier: GPL-2.0

//! The retry policy: when a freeze whose attempt gave up tries again.
//!
//! An attempt that gives up at a level's wait (`ETIMEDOUT` with writers inside) has blocked
//! every new writer for its whole timeout, and the writers still inside are the ones it waited
//! for in vain. If one of them waits for a daemon that must itself write to the filesystem
//! (the R->W->R chain), trying again at once only blocks that daemon again: the stuck writer
//! gets one step further between two attempts and the retries slow down the very writer they
//! wait for. So between two attempts the policy waits, blocking nobody, for the stuck writers
//! to leave:
//!
//! - it samples the level's reader count ([`Watch::sample`]) every 2 ms (a jiffy at least);
//!   when fewer readers than the attempt left stuck are inside, on two samples in a row, at
//!   least one of them has left, and the next attempt starts;
//! - while the count is no higher than the stuck writers alone, they are taken to be still
//!   inside and the wait goes on, up to the latest start (below);
//! - while it is higher (other writers come and go: a busy filesystem, where the count cannot
//!   tell whether the stuck ones have left), that time is counted, and when it reaches the
//!   busy limit the next attempt starts anyway and finds out. The busy limit is the timeout,
//!   doubled with each consecutive pause of this kind ([`Policy::busy_limit`]).
//!
//! What bounds it: the call's deadline, `deadline_ns` of the ioctl, by default the time the
//! attempts alone can take ((`retries` + 1) x `timeout_ns` + `retries` x [`BACKOFF_NS`]). A pause
//! ends at the deadline minus one timeout at the latest, so that the attempt after it can end
//! by the deadline; no attempt starts after the deadline, and an attempt's own deadline is cut
//! to it ([`Policy::attempt_timeout`]). Every pause lasts at least [`BACKOFF_NS`]: the writers
//! the undo released get the CPU. `retries` still bounds the
//! attempts, each still waits at most `timeout_ns`; a freeze that gives up has made at most
//! `retries` + 1 of them, fewer when the writers never left.
//!
//! An attempt that gave up elsewhere (`s_umount`, another freeze in progress, the sync), or
//! at a level with no writer inside, has no count to watch: the next attempt follows after
//! [`BACKOFF_NS`], as before this policy. Errors other than `ETIMEDOUT` are not retried.
//!
//! The count is the sum of the per-CPU counters, read without blocking anybody: a reader that
//! enters on one CPU and leaves on another between two of its reads can hide one that stays,
//! which is why two low samples are needed. A wrong guess costs an attempt that gives up again,
//! never correctness: each attempt is a complete freeze or a complete undo.
//!
//! The policy is pure state ([`Policy`], [`Watch`]) so that KUnit can drive it with made-up
//! times; `rust/freeze.rs` sleeps and samples.
//!
//! The retry policy before this one (a fixed [`BACKOFF_NS`] between attempts, `retries` + 1
//! attempts whatever the time) is kept for the bench's comparison: debugfs
//! `timed_freeze/retry_fixed_backoff`.

/// The shortest pause between two attempts, and the whole pause after one that gave up where
/// no writer count can be watched.
pub(crate) const BACKOFF_NS: u64 = 10_000_000;

/// Low samples in a row that say the stuck writers have left.
const LOW_SAMPLES: u32 = 2;

/// How an attempt ended, as the policy sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Ended {
    /// Its error was `ETIMEDOUT` from one of its own waits (the only one retried).
    pub(crate) timed_out: bool,
    /// `TIMED_FREEZE_WAIT_*` of that wait.
    pub(crate) wait: u32,
    /// Writers inside the level when its wait gave up (level waits only).
    pub(crate) writers: u32,
}

/// What to do after an attempt that failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Next {
    /// Return its error.
    Stop,
    /// Pause, then attempt again.
    Pause(Pause),
}

/// A pause between two attempts. Times are nanoseconds since the call started.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Pause {
    /// The next attempt starts no earlier.
    pub(crate) not_before: u64,
    /// And no later.
    pub(crate) not_after: u64,
    /// What to watch in between: `None` to sleep until `not_after`.
    pub(crate) watch: Option<Watch>,
}

/// The watch of one level's readers during a pause.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Watch {
    /// `SB_FREEZE_*` level.
    pub(crate) level: u16,
    /// The writers the attempt left stuck inside.
    stuck: u32,
    /// Busy time after which the next attempt starts anyway.
    busy_limit: u64,
    /// Low samples in a row so far.
    low: u32,
    /// Time the level was seen busier than the stuck writers alone.
    busy: u64,
}

impl Watch {
    /// Takes a sample: `readers` inside now, `since_last` ns after the previous sample.
    /// `true`: start the next attempt now.
    pub(crate) fn sample(&mut self, readers: u32, since_last: u64) -> bool {
        if readers < self.stuck {
            self.low += 1;
            return self.low >= LOW_SAMPLES;
        }
        self.low = 0;
        if readers > self.stuck {
            self.busy = self.busy.saturating_add(since_last);
        }
        self.busy >= self.busy_limit
    }
}

/// The retry state of one freeze.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Policy {
    timeout: u64,
    retries: u32,
    /// The call's deadline, ns from its start.
    deadline: u64,
    /// The fixed back-off of the previous policy.
    fixed: bool,
    attempts: u32,
    /// Consecutive pauses with a watch.
    watched: u32,
}

impl Policy {
    /// The policy of a freeze of `retries` retries of `timeout_ns` each, that must be done by
    /// `deadline_ns` (0: the time the attempts alone can take); `fixed` for the previous
    /// policy.
    pub(crate) fn new(timeout_ns: u64, retries: u32, deadline_ns: u64, fixed: bool) -> Self {
        let deadline = if deadline_ns != 0 {
            deadline_ns
        } else {
            Self::default_deadline(timeout_ns, retries)
        };
        Self {
            timeout: timeout_ns,
            retries,
            deadline,
            fixed,
            attempts: 0,
            watched: 0,
        }
    }

    /// (`retries` + 1) x `timeout_ns` + `retries` x [`BACKOFF_NS`].
    pub(crate) fn default_deadline(timeout_ns: u64, retries: u32) -> u64 {
        let n = u64::from(retries);
        timeout_ns
            .saturating_mul(n + 1)
            .saturating_add(BACKOFF_NS.saturating_mul(n))
    }

    /// The call's deadline, ns from its start.
    #[cfg_attr(tf_livepatch, allow(dead_code))]
    pub(crate) fn deadline(&self) -> u64 {
        self.deadline
    }

    /// The busy limit of the `n`-th consecutive watched pause (1-based): the timeout, doubled
    /// each time.
    fn busy_limit(&self, n: u32) -> u64 {
        self.timeout.saturating_mul(1u64 << (n - 1).min(32))
    }

    /// An attempt is starting.
    pub(crate) fn attempt(&mut self) {
        self.attempts += 1;
    }

    /// Whether an attempt may start at `now`: not after the deadline (a pause may overrun its
    /// end by a jiffy or a late wake-up).
    pub(crate) fn may_start(&self, now: u64) -> bool {
        self.fixed || now < self.deadline
    }

    /// The timeout of an attempt starting at `now`: the timeout, cut to the call's deadline
    /// (not with the fixed back-off, which had no such deadline).
    pub(crate) fn attempt_timeout(&self, now: u64) -> u64 {
        if self.fixed {
            return self.timeout;
        }
        self.timeout.min(self.deadline.saturating_sub(now))
    }

    /// What to do after an attempt that ended as `e` at `now`.
    pub(crate) fn next(&mut self, now: u64, e: Ended) -> Next {
        if !e.timed_out || self.attempts > self.retries {
            return Next::Stop;
        }
        let not_before = now.saturating_add(BACKOFF_NS);
        if self.fixed {
            return Next::Pause(Pause {
                not_before,
                not_after: not_before,
                watch: None,
            });
        }
        // The next attempt would start after the deadline.
        if not_before >= self.deadline {
            return Next::Stop;
        }
        let level_wait = (1..=3).contains(&e.wait) && e.writers > 0;
        if !level_wait {
            self.watched = 0;
            return Next::Pause(Pause {
                not_before,
                not_after: not_before,
                watch: None,
            });
        }
        self.watched += 1;
        Next::Pause(Pause {
            not_before,
            // The attempt after the pause can end by the deadline.
            not_after: self.deadline.saturating_sub(self.timeout).max(not_before),
            watch: Some(Watch {
                level: e.wait as u16,
                stuck: e.writers,
                busy_limit: self.busy_limit(self.watched),
                low: 0,
                busy: 0,
            }),
        })
    }
}

#[cfg(not(tf_livepatch))]
#[kernel::prelude::kunit_tests(timed_freeze_retry)]
mod tests {
    use super::*;

    const MS: u64 = 1_000_000;

    fn level(writers: u32) -> Ended {
        Ended {
            timed_out: true,
            wait: 1,
            writers,
        }
    }

    fn elsewhere(wait: u32) -> Ended {
        Ended {
            timed_out: true,
            wait,
            writers: 0,
        }
    }

    fn pause(n: Next) -> Option<Pause> {
        match n {
            Next::Pause(p) => Some(p),
            Next::Stop => None,
        }
    }

    #[test]
    fn deadline_defaults_to_the_attempts_own_time() {
        let p = Policy::new(1000 * MS, 16, 0, false);
        assert_eq!(p.deadline(), 17 * 1000 * MS + 16 * 10 * MS);
        assert_eq!(Policy::new(300 * MS, 0, 0, false).deadline(), 300 * MS);
        assert_eq!(
            Policy::new(300 * MS, 2, 5000 * MS, false).deadline(),
            5000 * MS
        );
    }

    #[test]
    fn a_stuck_writer_is_waited_for_until_the_last_start() {
        let mut p = Policy::new(1000 * MS, 16, 0, false);
        p.attempt();
        let Some(x) = pause(p.next(1005 * MS, level(1))) else {
            assert!(false);
            return;
        };
        assert_eq!(x.not_before, 1015 * MS);
        assert_eq!(x.not_after, p.deadline() - 1000 * MS);
        let Some(mut w) = x.watch else {
            assert!(false);
            return;
        };
        assert_eq!(w.level, 1);
        // The stuck writer alone, and the daemon's own writes now and then: wait on.
        let mut started = false;
        for i in 0..10_000 {
            started |= w.sample(if i % 50 == 0 { 2 } else { 1 }, 4 * MS);
        }
        assert!(!started);
        // One low sample is not enough; two in a row are.
        assert!(!w.sample(0, 4 * MS));
        assert!(!w.sample(1, 4 * MS));
        assert!(!w.sample(0, 4 * MS));
        assert!(w.sample(0, 4 * MS));
    }

    #[test]
    fn a_busy_level_ends_the_pause_after_a_doubling_limit() {
        let mut p = Policy::new(200 * MS, 16, 0, false);
        for (n, limit) in [(1, 200 * MS), (2, 400 * MS), (3, 800 * MS)] {
            p.attempt();
            let Some(Pause {
                watch: Some(mut w), ..
            }) = pause(p.next(n * 100 * MS, level(1)))
            else {
                assert!(false);
                return;
            };
            let mut busy = 0;
            while !w.sample(5, 4 * MS) && busy <= limit {
                busy += 4 * MS;
            }
            assert_eq!(busy + 4 * MS, limit);
        }
        // A pause without a watch starts the count again.
        p.attempt();
        let x = pause(p.next(400 * MS, elsewhere(4)));
        assert!(matches!(x, Some(Pause { watch: None, .. })));
        p.attempt();
        let x = pause(p.next(500 * MS, level(1)));
        assert!(
            matches!(x, Some(Pause { watch: Some(Watch { busy_limit, .. }), .. })
            if busy_limit == 200 * MS)
        );
    }

    #[test]
    fn no_count_no_watch() {
        let mut p = Policy::new(1000 * MS, 3, 0, false);
        for e in [elsewhere(4), elsewhere(6), level(0)] {
            p.attempt();
            let x = pause(p.next(1000 * MS, e));
            assert_eq!(
                x,
                Some(Pause {
                    not_before: 1010 * MS,
                    not_after: 1010 * MS,
                    watch: None
                })
            );
        }
        // Retries used up.
        p.attempt();
        assert_eq!(p.next(1000 * MS, level(1)), Next::Stop);
    }

    #[test]
    fn only_a_level_with_writers_inside_is_watched() {
        let mut p = Policy::new(1000 * MS, 16, 0, false);
        for wait in [4, 5, 6, 7] {
            p.attempt();
            let x = pause(p.next(1000 * MS, Ended { wait, ..level(1) }));
            assert!(matches!(x, Some(Pause { watch: None, .. })));
        }
        for wait in [1, 2, 3] {
            p.attempt();
            let x = pause(p.next(1000 * MS, Ended { wait, ..level(1) }));
            assert!(
                matches!(x, Some(Pause { watch: Some(Watch { level, .. }), .. })
                if u32::from(level) == wait)
            );
        }
    }

    #[test]
    fn only_timeouts_within_the_deadline_are_retried() {
        let mut p = Policy::new(1000 * MS, 16, 3000 * MS, false);
        p.attempt();
        let e = Ended {
            timed_out: false,
            ..level(1)
        };
        assert_eq!(p.next(1000 * MS, e), Next::Stop);
        // The next attempt would start at or after the deadline.
        assert_eq!(p.next(2990 * MS, level(1)), Next::Stop);
        assert!(p.next(2989 * MS, level(1)) != Next::Stop);
        // A pause that overran the deadline: no attempt.
        assert!(p.may_start(2999 * MS));
        assert!(!p.may_start(3000 * MS));
        let x = pause(p.next(1000 * MS, level(1)));
        assert!(matches!(x, Some(Pause { not_after, .. }) if not_after == 2000 * MS));
        assert_eq!(p.attempt_timeout(2000 * MS), 1000 * MS);
        // Late: the pause still lasts the back-off, and the attempt ends by the deadline.
        let x = pause(p.next(2500 * MS, level(1)));
        assert!(matches!(x, Some(Pause { not_before, not_after, .. })
            if not_before == 2510 * MS && not_after == 2510 * MS));
        assert_eq!(p.attempt_timeout(2510 * MS), 490 * MS);
    }

    #[test]
    fn the_fixed_back_off_ignores_the_deadline() {
        let mut p = Policy::new(1000 * MS, 2, 1000 * MS, true);
        for _ in 0..2 {
            p.attempt();
            let x = pause(p.next(9000 * MS, level(1)));
            assert_eq!(
                x,
                Some(Pause {
                    not_before: 9010 * MS,
                    not_after: 9010 * MS,
                    watch: None
                })
            );
        }
        p.attempt();
        assert_eq!(p.next(9000 * MS, level(1)), Next::Stop);
        assert_eq!(p.attempt_timeout(9000 * MS), 1000 * MS);
    }
}
