/* SPDX-License-Identifier: GPL-2.0 */
/*
 * The checks of the deadlock-vector tests (vector_test.c against the
 * module, rfc_vector_test.c against plain FIFREEZE on the RFC kernel):
 * kselftest_harness.h assertions, so harness programs only.
 */
#ifndef TF_VECTOR_TEST_H
#define TF_VECTOR_TEST_H

#include "kselftest_harness.h"
#include "vector.h"

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
			    "xfs_repair -n %s >/dev/null 2>&1", self->fs.img));
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
 * The stock path: FIFREEZE on the same vector does not return.  The
 * expectation "returns within the watchdog" fails (reported as XFAIL), then
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
	EXPECT_LE(0, returned);

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

#endif /* TF_VECTOR_TEST_H */
