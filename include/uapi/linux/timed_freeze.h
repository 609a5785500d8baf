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

/**
 * struct timed_freeze_args - argument of TIMED_FREEZE_IOC_FREEZE
 * @size:	in: sizeof(struct timed_freeze_args) as userspace knows it
 * @flags:	in: TIMED_FREEZE_OWNED, TIMED_FREEZE_EXPEDITED
 * @timeout_ns:	in: deadline of each attempt; 0 makes one attempt that does
 *		not wait for writers
 * @fd:		in: an open file on the filesystem to freeze
 * @retries:	in: attempts after the first, when an attempt times out
 * @attempts:	out: attempts made
 * @timed_out_level: out: the SB_FREEZE_* level (1 write, 2 page faults,
 *		3 fs-internal) whose wait last timed out, 0 if none did
 * @elapsed_ns:	out: time from the start of the first attempt to the return
 * @writers_inside: out: writers inside @timed_out_level when it timed out
 *
 * The out fields are written on success and on ETIMEDOUT.
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
};

#define TIMED_FREEZE_ARGS_SIZE_VER0	56

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

#define TIMED_FREEZE_IOC_MAGIC		0xF7
#define TIMED_FREEZE_IOC_FREEZE	_IOWR(TIMED_FREEZE_IOC_MAGIC, 1, struct timed_freeze_args)
#define TIMED_FREEZE_IOC_THAW		_IOW(TIMED_FREEZE_IOC_MAGIC, 2, struct timed_thaw_args)

#endif /* _UAPI_LINUX_TIMED_FREEZE_H */
