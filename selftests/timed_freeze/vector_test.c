// SPDX-License-Identifier: GPL-2.0
/*
 * The deadlock vector of the linux-fsdevel thread, for real, with FUSE,
 * NBD and EROFS file-backed mounts under a fanotify HSM daemon:
 *
 *   thread A:  write(fsA_fd, mmap(fsB_file))   holds fsA SB_FREEZE_WRITE,
 *                                              faults on fsB -> the daemon
 *   freezer:   freeze fsA                      waits for A, blocks writers
 *   daemon:    handling A's read: write(fsA)   blocks behind the freezer
 *
 * fsA is ext4 or xfs on a loop device; fsB and the daemon are vector.h's
 * (FUSE; ext4 on NBD; EROFS whose image an HSM daemon fills).  The stock
 * FIFREEZE wedges on this (shown with FUSE and EROFS); the timed freeze
 * times out, undoes itself so the daemon's write gets through, and
 * succeeds on its retry.  vector_demo.c tells the same story to a person.
 */
#include "vector_test.h"

FIXTURE(vec) {
	struct vec_env e;
};

FIXTURE_VARIANT(vec) {
	const char *type;	/* fsA */
	enum vec_kind kind;	/* fsB */
};

FIXTURE_VARIANT_ADD(vec, ext4) {
	.type = "ext4",
};

FIXTURE_VARIANT_ADD(vec, xfs) {
	.type = "xfs",
};

FIXTURE_VARIANT_ADD(vec, ext4_nbd) {
	.type = "ext4",
	.kind = VEC_NBD,
};

FIXTURE_VARIANT_ADD(vec, xfs_nbd) {
	.type = "xfs",
	.kind = VEC_NBD,
};

FIXTURE_VARIANT_ADD(vec, ext4_erofs) {
	.type = "ext4",
	.kind = VEC_EROFS,
};

FIXTURE_VARIANT_ADD(vec, xfs_erofs) {
	.type = "xfs",
	.kind = VEC_EROFS,
};

FIXTURE_SETUP(vec)
{
	const char *why = vector_missing(variant->type, variant->kind);
	int ret;

	if (why)
		SKIP(return, "%s", why);
	self->e.v.dev = tf_open_dev();
	if (self->e.v.dev < 0)
		SKIP(return, "no %s: the module is not loaded", TIMED_FREEZE_DEVICE);
	close(self->e.v.dev);
	ret = vector_setup(&self->e, variant->type, variant->kind);
	if (ret && self->e.why)
		SKIP(return, "%s", self->e.why);
	ASSERT_EQ(0, ret);
}

FIXTURE_TEARDOWN(vec)
{
	vector_teardown(&self->e);
	tf_end_wedged(_metadata);
}

TEST_F(vec, timed_freeze_breaks_the_chain)
{
	const unsigned long long timeout_ms = 1000;
	pid_t pid;

	ASSERT_EQ(0, timed_vector(&self->e, timeout_ms, 2, 1));
	TH_LOG("%s: freeze: %d after %u attempts, %llu ms (timed out at level %u, %llu writer(s))",
	       vec_kind_name[variant->kind], self->e.v.freeze_ret, self->e.v.args.attempts,
	       self->e.v.args.elapsed_ns / NSEC_PER_MSEC, self->e.v.args.timed_out_level,
	       (unsigned long long)self->e.v.args.writers_inside);
	ASSERT_EQ(0, self->e.v.freeze_ret);
	/* The first attempt timed out on the vector; the retry succeeded. */
	EXPECT_EQ(2U, self->e.v.args.attempts);
	EXPECT_EQ(1U, self->e.v.args.timed_out_level);
	/*
	 * Thread A, counted while the level was still blocked: the undo then
	 * hands the level to the blocked daemon, which would count too.
	 */
	EXPECT_EQ(1ULL, self->e.v.args.writers_inside);
	EXPECT_GE(self->e.v.args.elapsed_ns / NSEC_PER_MSEC, timeout_ms);
	EXPECT_LE(self->e.v.args.elapsed_ns / NSEC_PER_MSEC, timeout_ms + SLACK_MS);
	EXPECT_TRUE(wait_event(self->e.ctl.evt[0], 'w', 1000));

	/* fsA is really frozen now ... */
	pid = tf_write_child(self->e.fs.mfd, "probe", "probe\n");
	EXPECT_EQ(-1, tf_wait_child(pid, 300));
	ASSERT_EQ(0, ioctl(self->e.fs.mfd, FITHAW, 0));
	EXPECT_EQ(0, tf_wait_child(pid, 5000));

	finish_thread_a(_metadata, &self->e, variant->type);
}

TEST_F(vec, held_daemon_times_out_unfrozen)
{
	const unsigned long long timeout_ms = 300;
	pid_t pid;

	/* The daemon holds its answer until told. */
	ASSERT_EQ(0, timed_vector(&self->e, timeout_ms, 2, 0));
	TH_LOG("%s: freeze: %d after %u attempts, %llu ms (bound [%llu, %llu])",
	       vec_kind_name[variant->kind], self->e.v.freeze_ret, self->e.v.args.attempts,
	       self->e.v.args.elapsed_ns / NSEC_PER_MSEC, 3 * timeout_ms,
	       3 * timeout_ms + SLACK_MS);
	EXPECT_EQ(-ETIMEDOUT, self->e.v.freeze_ret);
	EXPECT_EQ(3U, self->e.v.args.attempts);
	EXPECT_EQ(TIMED_FREEZE_WAIT_LEVEL_WRITE, self->e.v.args.gave_up);
	EXPECT_EQ(1ULL, self->e.v.args.writers_inside);
	EXPECT_GE(self->e.v.args.elapsed_ns / NSEC_PER_MSEC, 3 * timeout_ms);
	EXPECT_LE(self->e.v.args.elapsed_ns / NSEC_PER_MSEC, 3 * timeout_ms + SLACK_MS);
	/* The undo let the daemon's write through ... */
	EXPECT_TRUE(wait_event(self->e.ctl.evt[0], 'w', 1000));
	/* ... and left fsA unfrozen and writable. */
	pid = tf_write_child(self->e.fs.mfd, "probe", "probe\n");
	EXPECT_EQ(0, tf_wait_child(pid, 5000));

	/* Released, the daemon answers and everything completes. */
	ASSERT_EQ(0, send_byte(self->e.ctl.ans[1]));
	finish_thread_a(_metadata, &self->e, variant->type);
}

/* The stock path: FIFREEZE on the same vector does not return (XFAIL). */
TEST_F_TIMEOUT(vec, stock_fifreeze, 120)
{
	if (variant->kind == VEC_NBD)
		SKIP(return, "the stock path is shown with FUSE and EROFS");
	stock_fifreeze(_metadata, &self->e, variant->type, variant->kind);
}

XFAIL_ADD(vec, ext4, stock_fifreeze);
XFAIL_ADD(vec, xfs, stock_fifreeze);
XFAIL_ADD(vec, ext4_erofs, stock_fifreeze);
XFAIL_ADD(vec, xfs_erofs, stock_fifreeze);

TEST_HARNESS_MAIN
