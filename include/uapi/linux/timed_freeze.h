/* SPDX-License-Identifier: GPL-2.0 WITH Linux-syscall-note */
/*
 * timed-freeze: freeze_super() with a deadline, a retry and a complete undo.
 *
 * ioctls on /dev/timed-freeze (mode 0600).  The argument structs are
 * extensible in the clone3()/openat2() way: userspace sets @size to the
 * size of the struct it was built with; the kernel accepts any size from
 * the first published one (TIMED_FREEZE_*_SIZE_VER0) up, fails with E2BIG
 * when a larger struct has non-zero bytes it does not know, and writes
 * back at most @size bytes.  The ioctl numbers are matched on type and
 * number only, so a larger struct changes nothing else.
 */
#ifndef _UAPI_LINUX_TIMED_FREEZE_H
#define _UAPI_LINUX_TIMED_FREEZE_H

#include <linux/ioctl.h>
#include <linux/types.h>

#define TIMED_FREEZE_DEVICE "/dev/timed-freeze"

/*
 * Flags of timed_freeze_args.flags and timed_thaw_args.flags.
 *
 * TIMED_FREEZE_OWNED: the freeze belongs to the open file of the device
 * that made it (a kernel freeze with an exclusive owner): FITHAW cannot
 * thaw it, the THAW ioctl with this flag on the same file can, and
 * closing that file thaws it.  Without it the freeze is an ordinary
 * userspace freeze, as FIFREEZE makes.
 *
 * TIMED_FREEZE_EXPEDITED (freeze only): switch each level's readers to
 * their slow path with an expedited RCU grace period.
 */
#define TIMED_FREEZE_OWNED		(1ULL << 0)
#define TIMED_FREEZE_EXPEDITED		(1ULL << 1)
#define TIMED_FREEZE_FREEZE_FLAGS	(TIMED_FREEZE_OWNED | TIMED_FREEZE_EXPEDITED)
#define TIMED_FREEZE_THAW_FLAGS		(TIMED_FREEZE_OWNED)

/* Largest timeout_ns accepted (60 s); larger gives EINVAL. */
#define TIMED_FREEZE_TIMEOUT_MAX_NS	(60ULL * 1000 * 1000 * 1000)
/* Largest retries accepted; larger gives EINVAL. */
#define TIMED_FREEZE_RETRIES_MAX	16
/* The shortest pause between two attempts of one freeze. */
#define TIMED_FREEZE_BACKOFF_NS		(10ULL * 1000 * 1000)
/*
 * Largest deadline_ns accepted, the default deadline of the largest
 * timeout_ns and retries (a little over 17 minutes); larger gives EINVAL.
 */
#define TIMED_FREEZE_DEADLINE_MAX_NS					\
	((TIMED_FREEZE_RETRIES_MAX + 1) * TIMED_FREEZE_TIMEOUT_MAX_NS +	\
	 TIMED_FREEZE_RETRIES_MAX * TIMED_FREEZE_BACKOFF_NS)

/*
 * The wait that a deadline (or a fatal signal) ended: timed_freeze_args.gave_up.
 * 1..3 are the freeze levels (SB_FREEZE_WRITE, _PAGEFAULT, _FS): writers
 * still inside; UMOUNT: the superblock's s_umount, held by somebody else;
 * PARTIAL: another freezer's freeze in progress; WRITEBACK: the sync of
 * dirty data before the levels are committed; JOURNAL: the filesystem's
 * own ->sync_fs() (journal or log commit) in that sync; COMMIT: the
 * commit, that is the sync at SB_FREEZE_PAGEFAULT, the wait for the
 * filesystem's internal writers and its own ->freeze_fs(), which a thread
 * of the module runs.  After COMMIT the freeze is undone by that thread
 * when the filesystem lets go: until then (the storage has stopped taking
 * writes) the filesystem's writers wait for it.  Values may be added:
 * treat an unknown one as "some other wait" (COMMIT came after version 2).
 */
#define TIMED_FREEZE_WAIT_NONE		0U
#define TIMED_FREEZE_WAIT_LEVEL_WRITE	1U
#define TIMED_FREEZE_WAIT_LEVEL_PAGEFAULT 2U
#define TIMED_FREEZE_WAIT_LEVEL_FS	3U
#define TIMED_FREEZE_WAIT_UMOUNT	4U
#define TIMED_FREEZE_WAIT_PARTIAL	5U
#define TIMED_FREEZE_WAIT_WRITEBACK	6U
#define TIMED_FREEZE_WAIT_JOURNAL	7U
#define TIMED_FREEZE_WAIT_COMMIT	8U

/**
 * struct timed_freeze_args - argument of TIMED_FREEZE_IOC_FREEZE
 * @size:	in: sizeof(struct timed_freeze_args) as userspace knows it
 * @flags:	in: TIMED_FREEZE_OWNED, TIMED_FREEZE_EXPEDITED
 * @timeout_ns:	in: deadline of each attempt, the longest it blocks writers;
 *		0 makes exactly one attempt that does not wait for writers
 *		(@retries and @deadline_ns must then be 0)
 * @fd:		in: an open file on the filesystem to freeze
 * @retries:	in: attempts after the first, at most, when an attempt gave up
 *		at its deadline
 * @attempts:	out: attempts made
 * @timed_out_level: out: the SB_FREEZE_* level (1 write, 2 page faults,
 *		3 fs-internal) whose wait last timed out, 0 if none did
 * @elapsed_ns:	out: time from the start of the first attempt to the return
 * @writers_inside: out: writers inside @timed_out_level when it timed out
 * @gave_up:	out (version 1): TIMED_FREEZE_WAIT_* of the wait the last
 *		deadline ended; 0 when no deadline ended one (an error the
 *		filesystem returned, ETIMEDOUT included, leaves it 0)
 * @__reserved:	must be zero
 * @deadline_ns: in (version 2): the whole call's deadline, from its start;
 *		0 for (@retries + 1) x @timeout_ns + @retries x
 *		TIMED_FREEZE_BACKOFF_NS, the time the attempts alone can take.
 *		Otherwise at least @timeout_ns, at most
 *		TIMED_FREEZE_DEADLINE_MAX_NS.
 * @blocked_ns:	out (version 2): how long the attempts kept new writers out
 *		(the write level's block held), summed over the attempts, up to
 *		the undo of each that gave up and to the freeze of the one that
 *		succeeded
 *
 * Retries: after an attempt that gave up at a freeze level with writers
 * still inside, the next one waits, blocking nobody, until fewer writers
 * than it left inside are seen on two samples in a row (they have left),
 * for at least TIMED_FREEZE_BACKOFF_NS and at most until @deadline_ns -
 * @timeout_ns; on a level busier than the stuck writers alone it starts
 * once that busy time reaches the timeout, doubled with each such pause.
 * After one that gave up elsewhere the next follows after
 * TIMED_FREEZE_BACKOFF_NS.  No attempt starts after @deadline_ns, and an
 * attempt's deadline is cut to it.  A freeze that gives up has made at
 * most @retries + 1 attempts, fewer when its writers never left.  A fatal
 * signal during a pause ends the call with EINTR; the out fields then
 * describe the attempt before the pause.
 *
 * The out fields are written whenever the freeze was tried (any result but
 * the argument errors EFAULT, EINVAL, E2BIG, EBADF, EPERM, EOPNOTSUPP);
 * after a failure, without a page fault: for a struct in a shared mapping
 * of a file whose page is not writable at that moment they may be left as
 * they were (the freeze's own thread or stopped storage could make a fault
 * wait).
 * When they cannot be written after a successful freeze, the freeze is
 * undone and the ioctl fails with EFAULT: nothing is left frozen.
 */
struct timed_freeze_args {
	__u64 size;
	__u64 flags;
	__u64 timeout_ns;
	__s32 fd;
	__u32 retries;
	__u32 attempts;
	__u32 timed_out_level;
	__u64 elapsed_ns;
	__u64 writers_inside;
	__u32 gave_up;
	__u32 __reserved;
	__u64 deadline_ns;
	__u64 blocked_ns;
};

#define TIMED_FREEZE_ARGS_SIZE_VER0	56
#define TIMED_FREEZE_ARGS_SIZE_VER1	64
#define TIMED_FREEZE_ARGS_SIZE_VER2	80

/**
 * struct timed_thaw_args - argument of TIMED_FREEZE_IOC_THAW
 * @size:	in: sizeof(struct timed_thaw_args) as userspace knows it
 * @flags:	in: TIMED_FREEZE_OWNED to thaw this file's owned freeze
 * @fd:		in: an open file on the filesystem to thaw
 * @__reserved:	must be zero
 */
struct timed_thaw_args {
	__u64 size;
	__u64 flags;
	__s32 fd;
	__u32 __reserved;
};

#define TIMED_THAW_ARGS_SIZE_VER0	24

/*
 * The administrator's view of OWNED freezes (CAP_SYS_ADMIN in the initial
 * user namespace): every OWNED freeze, whichever open file holds it, and a
 * way to thaw one whose holder cannot (it is stuck writing to the frozen
 * filesystem, say, or a child inherited the device file).
 */

/**
 * struct timed_freeze_owned - one OWNED freeze, as TIMED_FREEZE_IOC_LIST shows it
 * @id:		its number, for TIMED_FREEZE_IOC_FORCE_THAW
 * @dev:	st_dev of the frozen filesystem
 * @age_ns:	time since the freeze
 * @pid:	the process that made the freeze (its thread group id in the
 *		caller's pid namespace; 0 when not visible there)
 * @flags:	TIMED_FREEZE_OWNED_EXITED: that process has exited (a file
 *		descriptor it passed on still holds the freeze)
 * @comm:	its command name when it froze
 */
struct timed_freeze_owned {
	__u64 id;
	__u64 dev;
	__u64 age_ns;
	__s32 pid;
	__u32 flags;
	char comm[16];
};

#define TIMED_FREEZE_OWNED_SIZE_VER0	48
#define TIMED_FREEZE_OWNED_EXITED	(1U << 0)

/**
 * struct timed_freeze_list_args - argument of TIMED_FREEZE_IOC_LIST
 * @size:	in: sizeof(struct timed_freeze_list_args) as userspace knows it
 * @entries:	in: user address of an array of @count entries
 * @entry_size:	in: sizeof(struct timed_freeze_owned) as userspace knows it;
 *		each entry is written with at most that many bytes
 * @count:	in: entries the array has room for
 * @total:	out: OWNED freezes there are; min(@count, @total) were written
 * @__reserved:	must be zero
 */
struct timed_freeze_list_args {
	__u64 size;
	__u64 entries;
	__u32 entry_size;
	__u32 count;
	__u32 total;
	__u32 __reserved;
};

#define TIMED_FREEZE_LIST_ARGS_SIZE_VER0	32

/**
 * struct timed_freeze_force_thaw_args - argument of TIMED_FREEZE_IOC_FORCE_THAW
 * @size:	in: sizeof(struct timed_freeze_force_thaw_args) as userspace knows it
 * @id:		in: the @id of the OWNED freeze to thaw
 * @flags:	in: must be zero
 *
 * ENOENT when there is no such freeze (any more).
 */
struct timed_freeze_force_thaw_args {
	__u64 size;
	__u64 id;
	__u64 flags;
};

#define TIMED_FREEZE_FORCE_THAW_ARGS_SIZE_VER0	24

#define TIMED_FREEZE_IOC_MAGIC		0xF7
#define TIMED_FREEZE_IOC_FREEZE	_IOWR(TIMED_FREEZE_IOC_MAGIC, 1, struct timed_freeze_args)
#define TIMED_FREEZE_IOC_THAW		_IOW(TIMED_FREEZE_IOC_MAGIC, 2, struct timed_thaw_args)
#define TIMED_FREEZE_IOC_LIST		_IOWR(TIMED_FREEZE_IOC_MAGIC, 3, \
					      struct timed_freeze_list_args)
#define TIMED_FREEZE_IOC_FORCE_THAW	_IOW(TIMED_FREEZE_IOC_MAGIC, 4, \
					     struct timed_freeze_force_thaw_args)

#endif /* _UAPI_LINUX_TIMED_FREEZE_H */
