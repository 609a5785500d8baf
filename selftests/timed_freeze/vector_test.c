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

/* The set-up of both fixtures: the vector, skipped without the module. */
static void module_vector_setup(struct __test_metadata *_metadata, struct vec_env *e,
				const char *type, enum vec_kind kind)
{
	const char *why = vector_missing(type, kind);
	int ret;

	if (why)
		SKIP(return, "%s", why);
	e->v.dev = tf_open_dev();
	if (e->v.dev < 0)
		SKIP(return, "no %s: the module is not loaded", TIMED_FREEZE_DEVICE);
	close(e->v.dev);
	ret = vector_setup(e, type, kind);
	if (ret && e->why)
		SKIP(return, "%s", e->why);
	ASSERT_EQ(0, ret);
}

FIXTURE_SETUP(vec)
{
	module_vector_setup(_metadata, &self->e, variant->type, variant->kind);
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
	const unsigned long long deadline_ms =
		tf_default_deadline_ns(timeout_ms * NSEC_PER_MSEC, 2) / NSEC_PER_MSEC;
	pid_t pid;

	/* The daemon holds its answer until told. */
	ASSERT_EQ(0, timed_vector(&self->e, timeout_ms, 2, 0));
	TH_LOG("%s: freeze: %d after %u attempts, %llu ms (bound [%llu, %llu]), blocked %llu ms",
	       vec_kind_name[variant->kind], self->e.v.freeze_ret, self->e.v.args.attempts,
	       self->e.v.args.elapsed_ns / NSEC_PER_MSEC, deadline_ms, deadline_ms + SLACK_MS,
	       self->e.v.args.blocked_ns / NSEC_PER_MSEC);
	EXPECT_EQ(-ETIMEDOUT, self->e.v.freeze_ret);
	/*
	 * A never left: after the first attempt the policy waited for it,
	 * then made one more attempt that could end by the deadline.
	 */
	EXPECT_EQ(2U, self->e.v.args.attempts);
	EXPECT_EQ(TIMED_FREEZE_WAIT_LEVEL_WRITE, self->e.v.args.gave_up);
	EXPECT_EQ(1ULL, self->e.v.args.writers_inside);
	EXPECT_GE(self->e.v.args.elapsed_ns / NSEC_PER_MSEC, deadline_ms);
	EXPECT_LE(self->e.v.args.elapsed_ns / NSEC_PER_MSEC, deadline_ms + SLACK_MS);
	/* Two timeouts, and what each undo takes (the fixed back-off: three). */
	EXPECT_LE(self->e.v.args.blocked_ns / NSEC_PER_MSEC, 2 * timeout_ms + 200);
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

/*
 * A slow daemon: every fetch it makes for thread A takes SLOW_MS and is
 * noted in its journal on fsA, so that A's write needs N round trips, each
 * of which a freeze's attempt can block (the FUSE daemon, without
 * readahead, a page a READ; the HSM daemon the missing blocks of each
 * event's range, of an EROFS file of SLOW_EROFS_SIZE, as readahead asks).  The
 * freeze must not race the daemon: it succeeds within 3/2 of the writer's
 * own time (N x SLOW_MS) plus one timeout (plus SLACK_MS), and its
 * attempts block writers for little more than that timeout in all.  Under
 * the fixed back-off of before (debugfs retry_fixed_backoff) each attempt
 * blocked the journal for its whole timeout and let one round trip through
 * between two of them.
 */
#define SLOW_MS		50
#define SLOW_EROFS_SIZE	(1024 * 1024)

FIXTURE(slow) {
	struct vec_env e;
};

FIXTURE_VARIANT(slow) {
	const char *type;	/* fsA */
	enum vec_kind kind;	/* fsB */
};

FIXTURE_VARIANT_ADD(slow, ext4) {
	.type = "ext4",
};

FIXTURE_VARIANT_ADD(slow, xfs) {
	.type = "xfs",
};

FIXTURE_VARIANT_ADD(slow, ext4_erofs) {
	.type = "ext4",
	.kind = VEC_EROFS,
};

FIXTURE_VARIANT_ADD(slow, xfs_erofs) {
	.type = "xfs",
	.kind = VEC_EROFS,
};

FIXTURE_SETUP(slow)
{
	self->e.ctl.slow_ms = SLOW_MS;
	if (variant->kind == VEC_EROFS)
		vec_file_size = SLOW_EROFS_SIZE;
	self->e.v.len = vec_file_size;
	module_vector_setup(_metadata, &self->e, variant->type, variant->kind);
}

FIXTURE_TEARDOWN(slow)
{
	vector_teardown(&self->e);
}

TEST_F(slow, freeze_waits_for_the_writer_not_the_daemon)
{
	const unsigned long long timeout_ms = 300;
	unsigned long long t0, took_ms, own_ms, blocked_ms;
	struct timed_freeze_args a;
	long before, trips = 0;
	pid_t pid;
	int ret;

	before = journal_trips(&self->e.ctl);
	ASSERT_LE(0, before);
	ASSERT_EQ(0, pthread_create(&self->e.a, NULL, thread_a, &self->e.v));
	self->e.a_started = 1;
	/* A is in its round trips once the first is in the journal. */
	for (int i = 0; i < 1000 && trips <= before; i++) {
		usleep(10 * 1000);
		trips = journal_trips(&self->e.ctl);
	}
	ASSERT_LT(before, trips);

	t0 = tf_now_ns();
	ret = tf_freeze(self->e.v.dev, self->e.v.mfd, timeout_ms * NSEC_PER_MSEC, 16, 0, &a);
	took_ms = (tf_now_ns() - t0) / NSEC_PER_MSEC;
	trips = journal_trips(&self->e.ctl) - before;
	own_ms = trips * SLOW_MS;
	blocked_ms = a.blocked_ns / NSEC_PER_MSEC;
	TH_LOG("%s: %ld round trips of %d ms (%llu ms): freeze %d after %llu ms (bound %llu)",
	       vec_kind_name[variant->kind], trips, SLOW_MS, own_ms, ret, took_ms,
	       own_ms * 3 / 2 + timeout_ms + SLACK_MS);
	TH_LOG("%u attempt(s), writers blocked %llu ms (bound %llu)", a.attempts, blocked_ms,
	       2 * timeout_ms + SLACK_MS);
	ASSERT_EQ(0, ret);
	/* The first attempt gave up on A, the one that froze came after A left. */
	EXPECT_LE(2U, a.attempts);
	EXPECT_LE(took_ms, own_ms * 3 / 2 + timeout_ms + SLACK_MS);
	EXPECT_LE(blocked_ms, 2 * timeout_ms + SLACK_MS);
	EXPECT_LE(blocked_ms, a.elapsed_ns / NSEC_PER_MSEC);

	/* Frozen: a writer waits; thawed, it and A's data are there. */
	pid = tf_write_child(self->e.fs.mfd, "probe", "probe\n");
	EXPECT_EQ(-1, tf_wait_child(pid, 300));
	ASSERT_EQ(0, ioctl(self->e.fs.mfd, FITHAW, 0));
	EXPECT_EQ(0, tf_wait_child(pid, 5000));
	/* A's write was done before the freeze (its close may wait for the thaw). */
	ASSERT_EQ(0, pthread_join(self->e.a, NULL));
	self->e.a_started = 0;
	EXPECT_EQ((ssize_t)self->e.v.len, self->e.v.a_ret);
	EXPECT_TRUE(dest_is(self->e.fs.mfd, self->e.v.len));
	EXPECT_EQ(trips, journal_trips(&self->e.ctl) - before);
}

TEST_HARNESS_MAIN
