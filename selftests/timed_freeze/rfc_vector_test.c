// SPDX-License-Identifier: GPL-2.0
/*
 * The deadlock vectors of vector_test.c (FUSE, NBD, EROFS under a fanotify
 * HSM daemon) against plain FIFREEZE on the RFC kernel (patches/rfc), whose
 * sysctls fs.freeze_timeout_ms and fs.freeze_retries give every userspace
 * freeze a deadline, without the module:
 *
 *   set:    the attempt times out, undoes itself so the daemon's write gets
 *           through, and the retry freezes; or, with the daemon holding its
 *           answer, FIFREEZE fails with ETIMEDOUT and nothing stays frozen;
 *   unset:  today's behaviour, FIFREEZE wedges (XFAIL, then rescued).
 *
 * Built for make check-rfc; it skips on a kernel without the sysctls.
 */
#include "vector_test.h"

/* The sysctl at @path as a number, or -1. */
static long long sysctl_get(const char *path)
{
	char buf[32];

	return tf_read_str(path, buf, sizeof(buf)) ? -1 : strtoll(buf, NULL, 10);
}

static int sysctl_set(const char *path, long long v)
{
	char buf[32];

	snprintf(buf, sizeof(buf), "%lld\n", v);
	return tf_write_str(path, buf);
}

FIXTURE(rfc) {
	struct vec_env e;
	long long saved_timeout, saved_retries;
};

FIXTURE_VARIANT(rfc) {
	const char *type;	/* fsA */
	enum vec_kind kind;	/* fsB */
};

FIXTURE_VARIANT_ADD(rfc, ext4) {
	.type = "ext4",
};

FIXTURE_VARIANT_ADD(rfc, xfs) {
	.type = "xfs",
};

FIXTURE_VARIANT_ADD(rfc, ext4_nbd) {
	.type = "ext4",
	.kind = VEC_NBD,
};

FIXTURE_VARIANT_ADD(rfc, xfs_nbd) {
	.type = "xfs",
	.kind = VEC_NBD,
};

FIXTURE_VARIANT_ADD(rfc, ext4_erofs) {
	.type = "ext4",
	.kind = VEC_EROFS,
};

FIXTURE_VARIANT_ADD(rfc, xfs_erofs) {
	.type = "xfs",
	.kind = VEC_EROFS,
};

FIXTURE_SETUP(rfc)
{
	const char *why = vector_missing(variant->type, variant->kind);
	int ret;

	self->saved_timeout = -1;
	self->e.v.dev = -1;
	if (why)
		SKIP(return, "%s", why);
	if (access(TF_SYSCTL_TIMEOUT, F_OK) || access(TF_SYSCTL_RETRIES, F_OK))
		SKIP(return, "no fs.freeze_timeout_ms: not the RFC kernel (patches/rfc)");
	self->saved_timeout = sysctl_get(TF_SYSCTL_TIMEOUT);
	self->saved_retries = sysctl_get(TF_SYSCTL_RETRIES);
	ASSERT_LE(0, self->saved_timeout);
	ASSERT_LE(0, self->saved_retries);
	ret = vector_setup(&self->e, variant->type, variant->kind);
	if (ret && self->e.why)
		SKIP(return, "%s", self->e.why);
	ASSERT_EQ(0, ret);
	/* The vector is against the kernel's FIFREEZE, not the module's. */
	if (self->e.v.dev >= 0)
		close(self->e.v.dev);
	self->e.v.dev = -1;
}

FIXTURE_TEARDOWN(rfc)
{
	/* The teardown thaws: a deadline must not be left to end its freeze. */
	vector_teardown(&self->e);
	tf_end_wedged(_metadata);
	if (self->saved_timeout >= 0) {
		sysctl_set(TF_SYSCTL_TIMEOUT, self->saved_timeout);
		sysctl_set(TF_SYSCTL_RETRIES, self->saved_retries);
	}
}

static void set_deadline(struct __test_metadata *_metadata,
			 unsigned long long ms, unsigned int retries)
{
	ASSERT_EQ(0, sysctl_set(TF_SYSCTL_TIMEOUT, ms));
	ASSERT_EQ(0, sysctl_set(TF_SYSCTL_RETRIES, retries));
	ASSERT_EQ((long long)ms, sysctl_get(TF_SYSCTL_TIMEOUT));
	ASSERT_EQ((long long)retries, sysctl_get(TF_SYSCTL_RETRIES));
}

/*
 * The daemon answers once its write got through: the first attempt times
 * out on thread A, its undo lets the daemon write, A finishes, and the
 * retry freezes.  Plain FIFREEZE returns 0 after about one timeout.
 */
TEST_F_TIMEOUT(rfc, fifreeze_breaks_the_chain, 120)
{
	set_deadline(_metadata, 1000, 2);
	plain_breaks_the_chain(_metadata, &self->e, variant->type, variant->kind, 1000);
}

/*
 * The daemon holds its answer: every attempt times out, FIFREEZE fails with
 * ETIMEDOUT after timeout x attempts (plus the pauses), and fsA is left
 * unfrozen with the daemon's write through.
 */
TEST_F_TIMEOUT(rfc, fifreeze_held_daemon_times_out_unfrozen, 120)
{
	set_deadline(_metadata, 300, 2);
	plain_held_daemon_times_out(_metadata, &self->e, variant->type, variant->kind, 300, 3);
}

/*
 * A fatal signal ends the wait long before the deadline: the freezer dies
 * at once, and its attempt is undone as at a deadline.
 */
TEST_F_TIMEOUT(rfc, fifreeze_killed_while_waiting, 120)
{
	set_deadline(_metadata, 60000, 0);
	plain_killed_while_waiting(_metadata, &self->e, variant->type, variant->kind);
}

/* xfs's XFS_IOC_GOINGDOWN (include/uapi of xfsprogs: xfs_fs.h). */
#define TF_XFS_IOC_GOINGDOWN		_IOR('X', 125, __u32)
#define TF_XFS_GOING_FLAGS_DEFAULT	0	/* freeze, then shut down */

/*
 * A shutdown that freezes first (xfs's GOINGDOWN, default flags) on the
 * vector: its bdev_freeze() gives up at the deadline, and the ioctl says so
 * (ETIMEDOUT) instead of returning 0 with the filesystem still up (patch
 * 0005); fsA is then neither frozen nor shut down.
 */
TEST_F_TIMEOUT(rfc, xfs_goingdown_reports_the_failed_freeze, 120)
{
	__u32 flags = TF_XFS_GOING_FLAGS_DEFAULT;
	pid_t pid;
	int ret;

	if (strcmp(variant->type, "xfs") || variant->kind != VEC_FUSE)
		SKIP(return, "shown on xfs with the FUSE vector");
	set_deadline(_metadata, 300, 0);
	ASSERT_EQ(0, start_thread_a(&self->e));
	ret = ioctl(self->e.fs.mfd, TF_XFS_IOC_GOINGDOWN, &flags);
	TH_LOG("GOINGDOWN: %d (%s)", ret, ret ? strerror(errno) : "ok");
	EXPECT_EQ(-1, ret);
	EXPECT_EQ(ETIMEDOUT, errno);
	/* Not frozen, not shut down: a write gets through. */
	pid = tf_write_child(self->e.fs.mfd, "probe", "probe\n");
	EXPECT_EQ(0, tf_wait_child(pid, 5000));

	ASSERT_EQ(0, send_byte(self->e.ctl.go[1]));
	ASSERT_EQ(0, send_byte(self->e.ctl.ans[1]));
	finish_thread_a(_metadata, &self->e, variant->type);
}

/* fs.freeze_timeout_ms 0, the default: today's FIFREEZE, which wedges. */
TEST_F_TIMEOUT(rfc, fifreeze_unset_wedges, 120)
{
	if (variant->kind == VEC_NBD)
		SKIP(return, "the stock path is shown with FUSE and EROFS");
	set_deadline(_metadata, 0, 0);
	stock_fifreeze(_metadata, &self->e, variant->type, variant->kind);
}

XFAIL_ADD(rfc, ext4, fifreeze_unset_wedges);
XFAIL_ADD(rfc, xfs, fifreeze_unset_wedges);
XFAIL_ADD(rfc, ext4_erofs, fifreeze_unset_wedges);
XFAIL_ADD(rfc, xfs_erofs, fifreeze_unset_wedges);

TEST_HARNESS_MAIN
