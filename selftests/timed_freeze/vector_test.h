/* SPDX-License-Identifier: GPL-2.0 */
/*
 * The checks of the deadlock-vector tests (vector_test.c against the
 * module, rfc_vector_test.c against plain FIFREEZE on the RFC kernel):
 * kselftest_harness.h assertions, so harness programs only.
 */
#ifndef TF_VECTOR_TEST_H
#define TF_VECTOR_TEST_H

#include <signal.h>

#include "kselftest_harness.h"
#include "vector.h"
#include "wedge.h"

/* How long the stock FIFREEZE gets before we call it wedged. */
#define WATCHDOG_MS	3000

/* Why the vector @kind with fsA @type cannot run here, or NULL. */
static inline const char *vector_missing(const char *type, enum vec_kind kind)
{
	static char why[64];

	if (geteuid())
		return "needs root";
	if (kind == VEC_FUSE && access("/dev/fuse", F_OK))
		return "no /dev/fuse (CONFIG_FUSE_FS)";
	if (kind == VEC_NBD && access(NBD_DEV, F_OK))
		return "no " NBD_DEV " (CONFIG_BLK_DEV_NBD)";
	if (kind == VEC_EROFS && tf_fs_missing("erofs"))
		return "no erofs here (CONFIG_EROFS_FS or mkfs.erofs)";
	if (tf_fs_missing(type)) {
		snprintf(why, sizeof(why), "no %s here (kernel or mkfs)", type);
		return why;
	}
	return NULL;
}

/* After a case: A's data is exact, the fs checks clean, nobody is in D. */
static inline void check_integrity(struct __test_metadata *_metadata,
				   struct vec_env *self, const char *type, int data)
{
	const char *d;

	if (data) {
		EXPECT_EQ(FILE_SIZE, self->v.a_ret);
		EXPECT_TRUE(dest_is_right(self->fs.mfd));
	}
	EXPECT_TRUE(tf_file_is(self->fs.mfd, "daemon", "daemon wrote\n"));
	close(self->fs.mfd);
	self->fs.mfd = -1;
	umount2(self->v.src_mnt, MNT_DETACH);
	ASSERT_EQ(0, umount2(self->fs.mnt, 0));
	EXPECT_EQ(0, tf_run(strcmp(type, "xfs") ? "e2fsck -fn %s >/dev/null 2>&1" :
			    "xfs_repair -n %s >/dev/null 2>&1", self->fs.dev));
	d = task_in_d_state();
	EXPECT_EQ(NULL, d) TH_LOG("task in D state: %s", d);
}

/* The daemon answered: thread A finishes, with its data; then the checks. */
static inline void finish_thread_a(struct __test_metadata *_metadata,
				   struct vec_env *self, const char *type)
{
	pthread_join(self->a, NULL);
	self->a_started = 0;
	check_integrity(_metadata, self, type, 1);
}

/*
 * The stock path: FIFREEZE on the same vector does not return.  That is
 * the case's expected failure (tf_wedged(): XFAIL when all else passes), then
 * the system is rescued by failing the daemon's held request
 * (vector_rescue(): the FUSE connection aborted, or the HSM daemon's
 * FAN_DENY_ERRNO(EIO)): A's write fails cleanly, and the freeze completes.
 */
static inline void stock_fifreeze(struct __test_metadata *_metadata,
				  struct vec_env *self, const char *type,
				  enum vec_kind kind)
{
	const char *d;
	pid_t freezer;
	int returned;

	ASSERT_EQ(0, send_byte(self->ctl.ans[1]));
	ASSERT_EQ(0, start_thread_a(self));
	freezer = fork();
	ASSERT_LE(0, freezer);
	if (freezer == 0)
		_exit(ioctl(self->fs.mfd, FIFREEZE, 0) ? 1 : 0);
	usleep(150 * 1000);
	ASSERT_EQ(0, send_byte(self->ctl.go[1]));

	returned = tf_wait_child(freezer, WATCHDOG_MS);
	d = task_in_d_state();
	TH_LOG("%s: stock FIFREEZE %s within %d ms; daemon's write %s; in D state: %s",
	       vec_kind_name[kind], returned < 0 ? "did not return" : "returned",
	       WATCHDOG_MS, wait_event(self->ctl.evt[0], 'w', 10) ? "done" : "blocked",
	       d ? d : "none");
	if (returned < 0)
		tf_wedged("stock FIFREEZE did not return within %d ms", WATCHDOG_MS);

	/* Rescue: the daemon's request fails; so does A's fault, and A leaves. */
	ASSERT_EQ(0, vector_rescue(self));
	pthread_join(self->a, NULL);
	self->a_started = 0;
	TH_LOG("rescued: thread A's write returned %zd", self->v.a_ret);
	EXPECT_GT(0, self->v.a_ret);
	/* The freeze then completes; thawing lets the daemon finish. */
	if (returned < 0)
		ASSERT_EQ(0, tf_wait_child(freezer, 5000));
	ASSERT_EQ(0, ioctl(self->fs.mfd, FITHAW, 0));
	ASSERT_TRUE(wait_event(self->ctl.evt[0], 'w', 5000));
	/* A's data is lost (that is the rescue), but fsA is clean. */
	check_integrity(_metadata, self, type, 0);
}

/*
 * Wait until a freezer blocks fsA's writers (its rcu_sync_enter() can take
 * long under emulation): until a probe's write hangs.  Returns that probe,
 * to be reaped once fsA is thawed, or -1.
 */
static inline pid_t wait_writers_blocked(struct vec_env *e)
{
	pid_t probe = -1;

	for (int i = 0; i < 50; i++) {
		probe = tf_write_child(e->fs.mfd, "probe0", "probe\n");
		if (probe < 0 || tf_wait_child(probe, 200) < 0)
			break;
		probe = -1;
	}
	return probe;
}

/*
 * The vector against plain FIFREEZE (the RFC kernel's, or the one the
 * system-wide mode patched): thread A in its fault, the freezer
 * started and blocking writers, then the daemon told to write to fsA and,
 * with @answer, to answer once its write got through.  Returns when
 * FIFREEZE returned; *@probe is the hung probe.
 */
static inline int plain_vector(struct vec_env *e, int answer, pid_t *probe)
{
	pthread_t fr;

	if (start_thread_a(e) || pthread_create(&fr, NULL, thread_freezer, &e->v))
		return -1;
	*probe = wait_writers_blocked(e);
	if (*probe < 0 || send_byte(e->ctl.go[1]) || (answer && send_byte(e->ctl.ans[1]))) {
		pthread_join(fr, NULL);
		return -1;
	}
	return pthread_join(fr, NULL);
}

/*
 * After a freeze that gave up (a deadline, a signal): the undo let the
 * daemon's write through, @probe (a writer blocked behind the attempt)
 * finished, fsA takes a new write; then the daemon, released, answers and
 * thread A finishes, with its data.
 */
static inline void unfrozen_then_finish(struct __test_metadata *_metadata,
					struct vec_env *e, const char *type, pid_t probe)
{
	pid_t pid;

	EXPECT_TRUE(wait_event(e->ctl.evt[0], 'w', 1000));
	EXPECT_EQ(0, tf_wait_child(probe, 5000));
	pid = tf_write_child(e->fs.mfd, "probe", "probe\n");
	EXPECT_EQ(0, tf_wait_child(pid, 5000));

	ASSERT_EQ(0, send_byte(e->ctl.ans[1]));
	finish_thread_a(_metadata, e, type);
}

/*
 * The daemon answers once its write got through: the first attempt times
 * out on thread A, its undo lets the daemon write, A finishes, and the
 * retry freezes.  Plain FIFREEZE, with a deadline of @timeout_ms set and
 * a retry, returns 0 after about one timeout; fsA is frozen then.
 */
static inline void plain_breaks_the_chain(struct __test_metadata *_metadata,
					  struct vec_env *e, const char *type,
					  enum vec_kind kind,
					  unsigned long long timeout_ms)
{
	unsigned long long ms;
	pid_t pid, probe;

	ASSERT_EQ(0, plain_vector(e, 1, &probe));
	ms = e->v.args.elapsed_ns / NSEC_PER_MSEC;
	TH_LOG("%s: FIFREEZE: %d after %llu ms (bound [%llu, %llu])",
	       vec_kind_name[kind], e->v.freeze_ret, ms, timeout_ms,
	       timeout_ms + SLACK_MS);
	ASSERT_EQ(0, e->v.freeze_ret);
	EXPECT_GE(ms, timeout_ms);
	EXPECT_LE(ms, timeout_ms + SLACK_MS);
	EXPECT_TRUE(wait_event(e->ctl.evt[0], 'w', 1000));

	/* fsA is really frozen now ... */
	pid = tf_write_child(e->fs.mfd, "probe", "probe\n");
	EXPECT_EQ(-1, tf_wait_child(pid, 300));
	ASSERT_EQ(0, ioctl(e->fs.mfd, FITHAW, 0));
	EXPECT_EQ(0, tf_wait_child(pid, 5000));
	EXPECT_EQ(0, tf_wait_child(probe, 5000));

	finish_thread_a(_metadata, e, type);
}

/*
 * The daemon holds its answer: each of the @attempts attempts of
 * @timeout_ms times out, FIFREEZE fails with ETIMEDOUT after about their
 * sum, and fsA is left unfrozen with the daemon's write through.
 */
static inline void plain_held_daemon_times_out(struct __test_metadata *_metadata,
					       struct vec_env *e, const char *type,
					       enum vec_kind kind,
					       unsigned long long timeout_ms,
					       unsigned int attempts)
{
	unsigned long long ms, bound = attempts * timeout_ms;
	pid_t probe;

	ASSERT_EQ(0, plain_vector(e, 0, &probe));
	ms = e->v.args.elapsed_ns / NSEC_PER_MSEC;
	TH_LOG("%s: FIFREEZE: %d after %llu ms (bound [%llu, %llu])",
	       vec_kind_name[kind], e->v.freeze_ret, ms, bound, bound + SLACK_MS);
	EXPECT_EQ(-ETIMEDOUT, e->v.freeze_ret);
	EXPECT_GE(ms, bound);
	EXPECT_LE(ms, bound + SLACK_MS);
	unfrozen_then_finish(_metadata, e, type, probe);
}

/*
 * A fatal signal ends the wait long before the deadline (set long): the
 * freezer dies at once, and its attempt is undone as at a deadline.
 */
static inline void plain_killed_while_waiting(struct __test_metadata *_metadata,
					      struct vec_env *e, const char *type,
					      enum vec_kind kind)
{
	unsigned long long t0, ms;
	pid_t freezer, probe;
	int status;

	ASSERT_EQ(0, start_thread_a(e));
	freezer = fork();
	ASSERT_LE(0, freezer);
	if (freezer == 0)
		_exit(ioctl(e->fs.mfd, FIFREEZE, 0) ? 1 : 0);
	probe = wait_writers_blocked(e);
	ASSERT_LE(0, probe);
	ASSERT_EQ(0, send_byte(e->ctl.go[1]));
	/* The daemon's write is blocked behind the freezer ... */
	EXPECT_FALSE(wait_event(e->ctl.evt[0], 'w', 500));
	t0 = tf_now_ns();
	ASSERT_EQ(0, kill(freezer, SIGKILL));
	ASSERT_EQ(freezer, waitpid(freezer, &status, 0));
	ms = (tf_now_ns() - t0) / NSEC_PER_MSEC;
	TH_LOG("%s: the killed freezer was gone after %llu ms", vec_kind_name[kind], ms);
	EXPECT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
	EXPECT_LE(ms, 2000ULL);
	/* ... and goes through once it is gone; fsA is not frozen. */
	unfrozen_then_finish(_metadata, e, type, probe);
}

#endif /* TF_VECTOR_TEST_H */
