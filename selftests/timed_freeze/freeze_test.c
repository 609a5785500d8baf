// SPDX-License-Identifier: GPL-2.0
/*
 * The freeze and thaw ioctls of /dev/timed-freeze against loop-mounted
 * ext4 and xfs: a real freeze (writers block until thaw), the holders
 * (FITHAW thaws a default freeze, an OWNED one only by its file or on
 * close), a writer held inside the write path (the freeze times out
 * within its bound and leaves the filesystem unfrozen and writable), a
 * fatal signal, and every error code of the UAPI.
 *
 * The held writer is a thread in splice() from an empty pipe into a file
 * (tf_util.h): do_splice() takes SB_FREEZE_WRITE (file_start_write()) and
 * then waits for the pipe, as a write() from a FUSE-backed mmap waits for
 * its daemon.
 */
#include <pthread.h>
#include <sys/mman.h>
#include <sys/syscall.h>

#include "kselftest_harness.h"
#include "tf_util.h"

/* How much later than timeout x attempts a timed-out freeze may return. */
#define SLACK_MS 1500ULL

FIXTURE(fs) {
	struct tf_fs fs;
	int dev;
};

FIXTURE_VARIANT(fs) {
	const char *type;
};

FIXTURE_VARIANT_ADD(fs, ext4) {
	.type = "ext4",
};

FIXTURE_VARIANT_ADD(fs, xfs) {
	.type = "xfs",
};

FIXTURE_SETUP(fs)
{
	const char *why = tf_missing();

	self->fs.mfd = -1;
	self->dev = -1;
	if (why)
		SKIP(return, "%s", why);
	if (tf_fs_missing(variant->type))
		SKIP(return, "no %s here (kernel or mkfs)", variant->type);
	ASSERT_EQ(0, tf_fs_setup(&self->fs, variant->type));
	self->dev = tf_open_dev();
	ASSERT_LE(0, self->dev);
}

FIXTURE_TEARDOWN(fs)
{
	if (self->dev >= 0)
		close(self->dev);
	if (self->fs.mfd >= 0)
		tf_fs_teardown(&self->fs);
}

/* Is it writable within @ms?  A blocked writer is left to finish later. */
static int fs_writable_quick(int dirfd)
{
	pid_t pid = tf_write_child(dirfd, "probe", "probe\n");

	return tf_wait_child(pid, 500) == 0;
}

TEST_F(fs, freeze_blocks_writers_until_fithaw)
{
	struct timed_freeze_args a;
	long long freezes = tf_stat("freezes");
	pid_t pid;

	ASSERT_EQ(0, tf_freeze(self->dev, self->fs.mfd, 2000 * NSEC_PER_MSEC, 0, 0, &a));
	EXPECT_EQ(1U, a.attempts);
	EXPECT_EQ(0U, a.timed_out_level);
	EXPECT_EQ(freezes + 1, tf_stat("freezes"));

	/* Really frozen: a writer blocks ... */
	pid = tf_write_child(self->fs.mfd, "data", "written after thaw\n");
	EXPECT_EQ(-1, tf_wait_child(pid, 500));
	/* ... until an ordinary FITHAW, since this is a userspace freeze. */
	ASSERT_EQ(0, ioctl(self->fs.mfd, FITHAW, 0));
	EXPECT_EQ(0, tf_wait_child(pid, 5000));
	EXPECT_TRUE(tf_file_is(self->fs.mfd, "data", "written after thaw\n"));
}

TEST_F(fs, frozen_twice_is_ebusy)
{
	struct timed_freeze_args a;
	long long undone;

	ASSERT_EQ(0, tf_freeze(self->dev, self->fs.mfd, 2000 * NSEC_PER_MSEC, 0, 0, &a));
	undone = tf_stat("undone_attempts");
	EXPECT_EQ(-EBUSY, tf_freeze(self->dev, self->fs.mfd, 2000 * NSEC_PER_MSEC, 0, 0, &a));
	/* Refused, not undone: nothing was taken. */
	EXPECT_EQ(undone, tf_stat("undone_attempts"));
	EXPECT_EQ(-1, ioctl(self->fs.mfd, FIFREEZE, 0));
	EXPECT_EQ(EBUSY, errno);
	/* The THAW ioctl without OWNED is FITHAW. */
	EXPECT_EQ(0, tf_thaw(self->dev, self->fs.mfd, 0));
	EXPECT_EQ(-EINVAL, tf_thaw(self->dev, self->fs.mfd, 0));
	EXPECT_TRUE(tf_fs_writable(self->fs.mfd));
}

TEST_F(fs, owned_freeze_thawed_by_close)
{
	struct timed_freeze_args a;
	int dev2 = tf_open_dev();
	pid_t pid;

	ASSERT_LE(0, dev2);
	ASSERT_EQ(0, tf_freeze(dev2, self->fs.mfd, 2000 * NSEC_PER_MSEC, 0,
			       TIMED_FREEZE_OWNED, &a));
	/* Nobody else can thaw it. */
	EXPECT_EQ(-1, ioctl(self->fs.mfd, FITHAW, 0));
	EXPECT_EQ(EINVAL, errno);
	EXPECT_EQ(-EINVAL, tf_thaw(self->dev, self->fs.mfd, TIMED_FREEZE_OWNED));
	EXPECT_EQ(-EINVAL, tf_thaw(self->dev, self->fs.mfd, 0));

	pid = tf_write_child(self->fs.mfd, "data", "after close\n");
	EXPECT_EQ(-1, tf_wait_child(pid, 500));
	/* Closing the owning file thaws it, as the death of its process would. */
	close(dev2);
	EXPECT_EQ(0, tf_wait_child(pid, 5000));
	EXPECT_TRUE(tf_file_is(self->fs.mfd, "data", "after close\n"));
}

TEST_F(fs, owned_freeze_thawed_by_its_file)
{
	struct timed_freeze_args a;

	ASSERT_EQ(0, tf_freeze(self->dev, self->fs.mfd, 2000 * NSEC_PER_MSEC, 0,
			       TIMED_FREEZE_OWNED, &a));
	EXPECT_EQ(0, tf_thaw(self->dev, self->fs.mfd, TIMED_FREEZE_OWNED));
	EXPECT_EQ(-EINVAL, tf_thaw(self->dev, self->fs.mfd, TIMED_FREEZE_OWNED));
	EXPECT_TRUE(tf_fs_writable(self->fs.mfd));
}

TEST_F(fs, held_writer_times_out_and_nothing_stays_frozen)
{
	const unsigned long long timeout_ms = 300;
	const unsigned int retries = 1;
	long long timeouts = tf_stat("timeouts"), undone = tf_stat("undone_attempts");
	struct timed_freeze_args a;
	struct tf_held_writer hw;
	unsigned long long t0, took_ms;

	ASSERT_EQ(0, tf_held_writer_start(&hw, self->fs.mfd, "held"));
	t0 = tf_now_ns();
	EXPECT_EQ(-ETIMEDOUT, tf_freeze(self->dev, self->fs.mfd,
					timeout_ms * NSEC_PER_MSEC, retries, 0, &a));
	took_ms = (tf_now_ns() - t0) / NSEC_PER_MSEC;
	TH_LOG("ETIMEDOUT after %llu ms (kernel %llu), %u x %llu ms, level %u, %llu writer(s)",
	       took_ms, a.elapsed_ns / NSEC_PER_MSEC, a.attempts, timeout_ms,
	       a.timed_out_level, (unsigned long long)a.writers_inside);
	EXPECT_EQ(retries + 1, a.attempts);
	EXPECT_EQ(1U, a.timed_out_level);	/* SB_FREEZE_WRITE */
	EXPECT_EQ(1ULL, a.writers_inside);
	EXPECT_GE(a.elapsed_ns / NSEC_PER_MSEC, timeout_ms * a.attempts);
	EXPECT_GE(took_ms, timeout_ms * a.attempts);
	EXPECT_LE(took_ms, timeout_ms * a.attempts + SLACK_MS);
	EXPECT_EQ(timeouts + 1, tf_stat("timeouts"));
	EXPECT_EQ(undone + 2, tf_stat("undone_attempts"));

	/* Nothing stays frozen: others write, and a stock freeze could start. */
	EXPECT_TRUE(tf_fs_writable(self->fs.mfd));

	/* The held writer was never disturbed: it completes with its data. */
	EXPECT_EQ(16, tf_held_writer_finish(&hw, "held writer ok.\n"));
	EXPECT_TRUE(tf_file_is(self->fs.mfd, "held", "held writer ok.\n"));

	/* And once it is gone, the freeze succeeds. */
	EXPECT_EQ(0, tf_freeze(self->dev, self->fs.mfd, 2000 * NSEC_PER_MSEC, 0, 0, &a));
	EXPECT_EQ(0, ioctl(self->fs.mfd, FITHAW, 0));
}

/*
 * Kernel log records read from @fd (/dev/kmsg, non-blocking) up to its end
 * that contain @what; those that contain @also in *@n_also; -1 on error.
 */
static int kmsg_count(int fd, const char *what, const char *also, int *n_also)
{
	char rec[2048];
	int n = 0;

	*n_also = 0;
	for (;;) {
		ssize_t r = read(fd, rec, sizeof(rec) - 1);

		if (r < 0 && errno == EPIPE)	/* overwritten records: go on */
			continue;
		if (r < 0)
			return errno == EAGAIN ? n : -1;
		rec[r] = 0;
		n += !!strstr(rec, what);
		*n_also += !!strstr(rec, also);
	}
}

TEST_F(fs, timeout_log_is_rate_limited)
{
	const char *held_back = "tf_timeout_log_ratelimit: ";
	const int freezes = 30;
	long long timeouts = tf_stat("timeouts");
	struct timed_freeze_args a;
	struct tf_held_writer hw;
	int kmsg, i, n, n_held_back;
	char line[64];

	kmsg = open("/dev/kmsg", O_RDONLY | O_NONBLOCK);
	if (kmsg < 0)
		SKIP(return, "no /dev/kmsg: %s", strerror(errno));
	ASSERT_LE(0, lseek(kmsg, 0, SEEK_END));
	snprintf(line, sizeof(line), "freeze of %s timed out", variant->type);

	/* A caller retrying in a loop, each attempt timing out at once. */
	ASSERT_EQ(0, tf_held_writer_start(&hw, self->fs.mfd, "held"));
	for (i = 0; i < freezes; i++)
		ASSERT_EQ(-ETIMEDOUT, tf_freeze(self->dev, self->fs.mfd, 0, 0, 0, &a));
	EXPECT_EQ(timeouts + freezes, tf_stat("timeouts"));
	n = kmsg_count(kmsg, line, held_back, &n_held_back);
	TH_LOG("%d timeouts: %d log lines", freezes, n);
	ASSERT_LE(0, n);
	EXPECT_GE(10, n);	/* DEFAULT_RATELIMIT_BURST */

	/* Past the interval the next one is logged, with a count of the rest. */
	usleep(5500 * 1000);	/* DEFAULT_RATELIMIT_INTERVAL: 5 s */
	ASSERT_EQ(-ETIMEDOUT, tf_freeze(self->dev, self->fs.mfd, 0, 0, 0, &a));
	n = kmsg_count(kmsg, line, held_back, &n_held_back);
	EXPECT_EQ(1, n);
	EXPECT_EQ(1, n_held_back);
	EXPECT_EQ(3, tf_held_writer_finish(&hw, "ok\n"));
	close(kmsg);
}

TEST_F(fs, timeout_zero_is_one_attempt)
{
	struct timed_freeze_args a;
	struct tf_held_writer hw;
	unsigned long long t0;

	/* Idle: succeeds at once. */
	ASSERT_EQ(0, tf_freeze(self->dev, self->fs.mfd, 0, 0, 0, &a));
	EXPECT_EQ(1U, a.attempts);
	ASSERT_EQ(0, ioctl(self->fs.mfd, FITHAW, 0));

	/* Busy: fails without waiting for the writer. */
	ASSERT_EQ(0, tf_held_writer_start(&hw, self->fs.mfd, "held"));
	t0 = tf_now_ns();
	EXPECT_EQ(-ETIMEDOUT, tf_freeze(self->dev, self->fs.mfd, 0, 0, 0, &a));
	EXPECT_LE((tf_now_ns() - t0) / NSEC_PER_MSEC, SLACK_MS);
	EXPECT_EQ(1U, a.attempts);
	EXPECT_TRUE(tf_fs_writable(self->fs.mfd));
	EXPECT_EQ(3, tf_held_writer_finish(&hw, "ok\n"));
}

TEST_F(fs, fatal_signal_ends_the_wait)
{
	struct tf_held_writer hw;
	unsigned long long t0;
	pid_t pid;

	ASSERT_EQ(0, tf_held_writer_start(&hw, self->fs.mfd, "held"));
	pid = fork();
	if (pid == 0) {
		struct timed_freeze_args a;

		tf_freeze(self->dev, self->fs.mfd, 30000 * NSEC_PER_MSEC, 0, 0, &a);
		_exit(0);
	}
	usleep(300 * 1000);
	t0 = tf_now_ns();
	kill(pid, SIGKILL);
	EXPECT_EQ(128 + SIGKILL, tf_wait_child(pid, 5000));
	EXPECT_LE((tf_now_ns() - t0) / NSEC_PER_MSEC, SLACK_MS);
	EXPECT_TRUE(tf_fs_writable(self->fs.mfd));
	EXPECT_EQ(3, tf_held_writer_finish(&hw, "ok\n"));
}

static int cmp_ull(const void *a, const void *b)
{
	unsigned long long x = *(const unsigned long long *)a;
	unsigned long long y = *(const unsigned long long *)b;

	return x < y ? -1 : x > y;
}

/*
 * Freeze+thaw cycles with the normal and the expedited reader switch,
 * interleaved; logs the medians (the measurement behind the option).
 */
TEST_F(fs, expedited_freeze)
{
	enum { N = 7 };
	unsigned long long t[2][N];
	struct timed_freeze_args a;

	for (int i = 0; i < N; i++) {
		for (int e = 0; e < 2; e++) {
			ASSERT_EQ(0, tf_freeze(self->dev, self->fs.mfd, 2000 * NSEC_PER_MSEC, 0,
					       e ? TIMED_FREEZE_EXPEDITED : 0, &a));
			t[e][i] = a.elapsed_ns / 1000;
			ASSERT_EQ(0, ioctl(self->fs.mfd, FITHAW, 0));
		}
	}
	qsort(t[0], N, sizeof(t[0][0]), cmp_ull);
	qsort(t[1], N, sizeof(t[1][0]), cmp_ull);
	TH_LOG("freeze median: normal %llu us, expedited %llu us (%d runs each)",
	       t[0][N / 2], t[1][N / 2], N);
	EXPECT_TRUE(tf_fs_writable(self->fs.mfd));
}

/*
 * Several freezers at once on one fs: timed, stock FIFREEZE and OWNED,
 * racing with writers, thaws and a lazy unmount.  Every call must return
 * one of its documented results, nothing may hang, and once everything is
 * closed the superblock must go away: the loop device (autoclear) detaches
 * only when no active reference is left.
 */
struct race {
	struct tf_fs *fs;
	int stop;
	int bad;		/* unexpected results */
	char what[128];		/* the first of them */
	int counts[5][4];	/* [role][0: ok, 1: EBUSY, 2: ETIMEDOUT, 3: EINVAL] */
};

enum { R_TIMED, R_STOCK, R_OWNED, R_THAW, R_WRITE };

static void race_note(struct race *r, int role, int err, const int *allowed, int n)
{
	static const int slot[] = { 0, EBUSY, ETIMEDOUT, EINVAL };

	for (int i = 0; i < n; i++) {
		if (err != allowed[i])
			continue;
		for (int k = 0; k < 4; k++)
			if (slot[k] == err)
				__atomic_add_fetch(&r->counts[role][k], 1, __ATOMIC_RELAXED);
		return;
	}
	if (!__atomic_fetch_add(&r->bad, 1, __ATOMIC_SEQ_CST))
		snprintf(r->what, sizeof(r->what), "role %d: unexpected %s", role, strerror(err));
}

static void *race_timed(void *arg)
{
	static const int ok[] = { 0, EBUSY, ETIMEDOUT };
	static const int thaw_ok[] = { 0, EINVAL };
	struct race *r = arg;
	struct timed_freeze_args a;
	int dev = tf_open_dev();

	while (!__atomic_load_n(&r->stop, __ATOMIC_RELAXED)) {
		int ret = -tf_freeze(dev, r->fs->mfd, 200 * NSEC_PER_MSEC, 1, 0, &a);

		race_note(r, R_TIMED, ret, ok, 3);
		if (!ret) {
			usleep(20000);
			race_note(r, R_THAW, ioctl(r->fs->mfd, FITHAW, 0) ? errno : 0, thaw_ok, 2);
		}
	}
	close(dev);
	return NULL;
}

static void *race_stock(void *arg)
{
	static const int ok[] = { 0, EBUSY };
	static const int thaw_ok[] = { 0, EINVAL };
	struct race *r = arg;

	while (!__atomic_load_n(&r->stop, __ATOMIC_RELAXED)) {
		int ret = ioctl(r->fs->mfd, FIFREEZE, 0) ? errno : 0;

		race_note(r, R_STOCK, ret, ok, 2);
		usleep(15000);
		race_note(r, R_THAW, ioctl(r->fs->mfd, FITHAW, 0) ? errno : 0, thaw_ok, 2);
	}
	return NULL;
}

static void *race_owned(void *arg)
{
	static const int ok[] = { 0, EBUSY, ETIMEDOUT };
	static const int thaw_ok[] = { 0 };
	struct race *r = arg;
	struct timed_freeze_args a;
	int dev = tf_open_dev(), n = 0;

	while (!__atomic_load_n(&r->stop, __ATOMIC_RELAXED)) {
		int ret = -tf_freeze(dev, r->fs->mfd, 200 * NSEC_PER_MSEC, 1,
				     TIMED_FREEZE_OWNED, &a);

		race_note(r, R_OWNED, ret, ok, 3);
		if (ret)
			continue;
		usleep(10000);
		/* Ours to thaw: every other time by ioctl, else by close. */
		if (n++ % 2) {
			race_note(r, R_THAW, -tf_thaw(dev, r->fs->mfd, TIMED_FREEZE_OWNED),
				  thaw_ok, 1);
		} else {
			close(dev);
			dev = tf_open_dev();
		}
	}
	close(dev);
	return NULL;
}

static void *race_writer(void *arg)
{
	static const int ok[] = { 0 };
	struct race *r = arg;
	char name[32];

	snprintf(name, sizeof(name), "w%lx", (unsigned long)pthread_self() % 1000);
	while (!__atomic_load_n(&r->stop, __ATOMIC_RELAXED)) {
		int fd = openat(r->fs->mfd, name, O_WRONLY | O_CREAT | O_TRUNC, 0644);
		int err = 0;

		if (fd < 0 || write(fd, "racing\n", 7) != 7 || fsync(fd))
			err = errno;
		if (fd >= 0)
			close(fd);
		race_note(r, R_WRITE, err, ok, 1);
	}
	return NULL;
}

/* The loop device behind @mnt ("loopN"), from /proc/self/mountinfo. */
static int loop_of(const char *mnt, char *loop, size_t len)
{
	char line[1024], m[512], src[256];
	FILE *f = fopen("/proc/self/mountinfo", "r");
	int ret = -1;

	while (f && fgets(line, sizeof(line), f)) {
		char *dash = strstr(line, " - ");

		if (sscanf(line, "%*s %*s %*s %*s %511s", m) == 1 && !strcmp(m, mnt) && dash &&
		    sscanf(dash, " - %*s %255s", src) == 1 && !strncmp(src, "/dev/", 5)) {
			snprintf(loop, len, "%s", src + 5);
			ret = 0;
		}
	}
	if (f)
		fclose(f);
	return ret;
}

TEST_F_TIMEOUT(fs, concurrent_freezers_thaws_writers_unmount, 180)
{
	void *(*fn[])(void *) = { race_timed, race_stock, race_owned,
				  race_writer, race_writer };
	pthread_t t[ARRAY_SIZE(fn)];
	struct race r = { .fs = &self->fs };
	char loop[256], path[320];
	struct stat st;
	int i;

	ASSERT_EQ(0, loop_of(self->fs.mnt, loop, sizeof(loop)));
	for (i = 0; i < (int)ARRAY_SIZE(fn); i++)
		ASSERT_EQ(0, pthread_create(&t[i], NULL, fn[i], &r));
	sleep(2);
	/* Unmount in the middle of it: busy, so detach it lazily. */
	EXPECT_EQ(-1, umount2(self->fs.mnt, 0));
	EXPECT_EQ(EBUSY, errno);
	EXPECT_EQ(0, umount2(self->fs.mnt, MNT_DETACH));
	sleep(2);
	__atomic_store_n(&r.stop, 1, __ATOMIC_RELAXED);
	for (i = 0; i < (int)ARRAY_SIZE(fn); i++)
		pthread_join(t[i], NULL);

	TH_LOG("timed %d ok/%d busy/%d timeout, stock %d ok/%d busy, owned %d/%d/%d",
	       r.counts[R_TIMED][0], r.counts[R_TIMED][1], r.counts[R_TIMED][2],
	       r.counts[R_STOCK][0], r.counts[R_STOCK][1],
	       r.counts[R_OWNED][0], r.counts[R_OWNED][1], r.counts[R_OWNED][2]);
	TH_LOG("thaws %d ok/%d einval, writes %d", r.counts[R_THAW][0], r.counts[R_THAW][3],
	       r.counts[R_WRITE][0]);
	EXPECT_EQ(0, r.bad) TH_LOG("%s", r.what);
	EXPECT_LT(0, r.counts[R_TIMED][0] + r.counts[R_STOCK][0] + r.counts[R_OWNED][0]);
	EXPECT_LT(0, r.counts[R_WRITE][0]);

	/* Whatever is left frozen by userspace: thaw it (EINVAL: nothing was). */
	ioctl(self->fs.mfd, FITHAW, 0);
	EXPECT_TRUE(tf_fs_writable(self->fs.mfd));
	close(self->fs.mfd);
	self->fs.mfd = -1;
	/* No reference left: the superblock goes, and the loop device with it. */
	snprintf(path, sizeof(path), "/sys/block/%s/loop/backing_file", loop);
	for (i = 0; i < 200 && !stat(path, &st); i++)
		usleep(10000);
	EXPECT_NE(0, stat(path, &st)) TH_LOG("%s still attached: a leaked reference", loop);
}

/*
 * Write @mib MiB to @name and fsync it; 0 or -1.
 */
static int write_big_file(int dirfd, const char *name, int mib)
{
	static char buf[1 << 20];
	int fd = openat(dirfd, name, O_WRONLY | O_CREAT | O_TRUNC, 0644);

	if (fd < 0)
		return -1;
	memset(buf, 0x5a, sizeof(buf));
	for (int i = 0; i < mib; i++)
		if (write(fd, buf, sizeof(buf)) != sizeof(buf))
			return -1;
	if (fsync(fd))
		return -1;
	return close(fd);
}

/*
 * Delete @name (@mib MiB); whether its space comes back within @ms: the
 * filesystem's background work that reclaims it must be running.
 */
static int space_comes_back(int dirfd, const char *name, int mib, int ms)
{
	long long before = tf_free_bytes(dirfd);

	if (before < 0 || unlinkat(dirfd, name, 0))
		return 0;
	for (int i = 0; i <= ms / 100; i++) {
		syncfs(dirfd);
		if (tf_free_bytes(dirfd) >= before + (long long)(mib - 8) * (1 << 20))
			return 1;
		usleep(100 * 1000);
	}
	return 0;
}

/*
 * An attempt that fails after sync_filesystem() must leave the filesystem
 * as it expects: xfs's ->sync_fs() stops its background garbage collection
 * when it sees SB_FREEZE_PAGEFAULT, and only ->freeze_fs()'s error path or
 * a thaw starts it again.  The level-3 wait is forced to fail (the wait
 * freeze_super() makes after the sync); afterwards the space of a deleted
 * file must come back.
 */
TEST_F(fs, failed_level3_wait_leaves_fs_as_it_was)
{
	struct timed_freeze_args a;

	if (!tf_fault_available())
		SKIP(return, "no fault injection (CONFIG_FAULT_INJECTION_DEBUG_FS)");
	ASSERT_EQ(0, write_big_file(self->fs.mfd, "big", 64));
	ASSERT_EQ(0, tf_fault_arm("level_wait", 3, 1));
	memset(&a, 0, sizeof(a));
	EXPECT_EQ(-ETIMEDOUT, tf_freeze(self->dev, self->fs.mfd, 2000 * NSEC_PER_MSEC, 0, 0, &a));
	tf_fault_disarm("level_wait");
	EXPECT_EQ(1U, a.attempts);
	EXPECT_EQ(3U, a.timed_out_level);
	EXPECT_EQ(TIMED_FREEZE_WAIT_LEVEL_FS, a.gave_up);
	EXPECT_TRUE(tf_fs_writable(self->fs.mfd));
	EXPECT_TRUE(space_comes_back(self->fs.mfd, "big", 64, 10000))
		TH_LOG("the space of a deleted file did not come back: background GC stopped");
}

/*
 * The same after a failure inside the sync, past the filesystem's own
 * ->sync_fs(): the block device's flush, the last step of
 * sync_filesystem(), fails.  freeze_super() has the same exit; the timed
 * freeze must not leave xfs with its GC stopped either, and reports the
 * error with nothing frozen.
 */
TEST_F(fs, failed_sync_after_sync_fs_leaves_fs_as_it_was)
{
	struct timed_freeze_args a;

	if (!tf_fault_available())
		SKIP(return, "no fault injection (CONFIG_FAULT_INJECTION_DEBUG_FS)");
	ASSERT_EQ(0, write_big_file(self->fs.mfd, "big", 64));
	ASSERT_EQ(0, tf_fault_arm("sync_bdev", 0, 1));
	memset(&a, 0, sizeof(a));
	EXPECT_EQ(-EIO, tf_freeze(self->dev, self->fs.mfd, 2000 * NSEC_PER_MSEC, 2, 0, &a));
	tf_fault_disarm("sync_bdev");
	EXPECT_EQ(1U, a.attempts);
	EXPECT_EQ(TIMED_FREEZE_WAIT_NONE, a.gave_up);
	EXPECT_TRUE(tf_fs_writable(self->fs.mfd));
	EXPECT_EQ(-1, ioctl(self->fs.mfd, FITHAW, 0));
	EXPECT_EQ(EINVAL, errno);
	EXPECT_TRUE(space_comes_back(self->fs.mfd, "big", 64, 10000))
		TH_LOG("the space of a deleted file did not come back: background GC stopped");
}

/* A FITHAW loop on the filesystem until stop is set; thawed counts its successes. */
struct fithaw_loop {
	int mfd;
	int stop;
	int thawed;
};

static void *fithaw_loop_fn(void *arg)
{
	struct fithaw_loop *l = arg;

	while (!__atomic_load_n(&l->stop, __ATOMIC_RELAXED)) {
		if (!ioctl(l->mfd, FITHAW, 0))
			l->thawed++;
		/* Leave s_umount free now and then for the freeze's own trylock. */
		usleep(200);
	}
	return NULL;
}

/*
 * A sync that fails after ->sync_fs() is taken back under the freeze's own
 * s_umount, with ->unfreeze_fs(): the freeze is never visible as complete.
 * A FITHAW that waits for s_umount meanwhile (one is nearly always queued
 * behind the commit, from the loop) must find nothing to thaw, and the
 * failed freeze must not depend on being the one that thaws.
 */
TEST_F(fs, failed_sync_is_never_seen_frozen)
{
	struct fithaw_loop l = { .mfd = self->fs.mfd };
	struct timed_freeze_args a;
	pthread_t t;
	int i, ret;

	if (!tf_fault_available())
		SKIP(return, "no fault injection (CONFIG_FAULT_INJECTION_DEBUG_FS)");
	ASSERT_EQ(0, pthread_create(&t, NULL, fithaw_loop_fn, &l));
	for (i = 0; i < 20; i++) {
		ASSERT_EQ(0, write_big_file(self->fs.mfd, "big", 4));
		ASSERT_EQ(0, tf_fault_arm("sync_bdev", 0, 1));
		ret = tf_freeze(self->dev, self->fs.mfd, 2000 * NSEC_PER_MSEC, 0, 0, &a);
		tf_fault_disarm("sync_bdev");
		EXPECT_EQ(-EIO, ret);
		if (ret != -EIO)
			break;
	}
	__atomic_store_n(&l.stop, 1, __ATOMIC_RELAXED);
	pthread_join(t, NULL);
	EXPECT_EQ(0, l.thawed)
		TH_LOG("FITHAW thawed a freeze that failed, %d time(s) in %d", l.thawed, i);
	EXPECT_TRUE(tf_fs_writable(self->fs.mfd));
	EXPECT_EQ(-1, ioctl(self->fs.mfd, FITHAW, 0));
	EXPECT_EQ(EINVAL, errno);
}

/*
 * ETIMEDOUT from the filesystem (its storage timed out) is its error, not
 * our deadline: not retried, reported with gave_up 0.
 */
TEST_F(fs, filesystem_etimedout_is_not_a_deadline)
{
	long long timeouts = tf_stat("timeouts");
	struct timed_freeze_args a;

	if (!tf_fault_available())
		SKIP(return, "no fault injection (CONFIG_FAULT_INJECTION_DEBUG_FS)");
	ASSERT_EQ(0, tf_fault_arm("sync_fs", 0, 1));
	memset(&a, 0, sizeof(a));
	a.gave_up = 0xdead;
	EXPECT_EQ(-ETIMEDOUT, tf_freeze(self->dev, self->fs.mfd, 2000 * NSEC_PER_MSEC, 2, 0, &a));
	tf_fault_disarm("sync_fs");
	EXPECT_EQ(1U, a.attempts);
	EXPECT_EQ(0U, a.timed_out_level);
	EXPECT_EQ(TIMED_FREEZE_WAIT_NONE, a.gave_up);
	EXPECT_EQ(timeouts, tf_stat("timeouts"));
	EXPECT_TRUE(tf_fs_writable(self->fs.mfd));
}

/*
 * The attempt's thread cannot be started (fail_spawn: as if kthread_run()
 * failed with -ENOMEM).  That is found out before any freeze level is
 * taken: the freeze fails with ENOMEM after one attempt (not retried, not
 * a deadline), having blocked no writer, and leaves the filesystem as it
 * was: not frozen, writable, and FIFREEZE, FITHAW and the next timed
 * freeze work.
 */
TEST_F(fs, spawn_fails_before_levels)
{
	struct timed_freeze_args a;
	int ret;

	if (access(TF_DEBUGFS "/fail_spawn", F_OK))
		SKIP(return, "no fault point fail_spawn (CONFIG_FAULT_INJECTION_DEBUG_FS)");
	ASSERT_EQ(0, tf_fault_arm("spawn", 0, 1));
	ret = tf_freeze(self->dev, self->fs.mfd, 2000 * NSEC_PER_MSEC, 2, 0, &a);
	tf_fault_disarm("spawn");
	TH_LOG("timed freeze: %d after %u attempts, writers blocked %llu ns, gave up at wait %u",
	       ret, a.attempts, (unsigned long long)a.blocked_ns, a.gave_up);
	EXPECT_EQ(-ENOMEM, ret);
	EXPECT_EQ(1U, a.attempts);
	EXPECT_EQ(0ULL, a.blocked_ns);
	EXPECT_EQ(TIMED_FREEZE_WAIT_NONE, a.gave_up);
	EXPECT_TRUE(tf_fs_writable(self->fs.mfd));
	EXPECT_EQ(-1, ioctl(self->fs.mfd, FITHAW, 0));
	EXPECT_EQ(EINVAL, errno);
	EXPECT_EQ(0, ioctl(self->fs.mfd, FIFREEZE, 0)) TH_LOG("FIFREEZE: %s", strerror(errno));
	EXPECT_EQ(0, ioctl(self->fs.mfd, FITHAW, 0)) TH_LOG("FITHAW: %s", strerror(errno));
	EXPECT_EQ(0, tf_freeze(self->dev, self->fs.mfd, 2000 * NSEC_PER_MSEC, 0, 0, &a));
	EXPECT_EQ(0, ioctl(self->fs.mfd, FITHAW, 0));
	EXPECT_TRUE(tf_fs_writable(self->fs.mfd));
}

/*
 * The result is written back after the freeze.  With the argument struct
 * in a shared mapping of a file on the filesystem being frozen, that write
 * faults on the freeze itself (->page_mkwrite waits for SB_FREEZE_PAGEFAULT).
 * The ioctl must not hang: it reports EFAULT and leaves nothing frozen.
 */
static int freeze_into_mapping(struct __test_metadata *_metadata, int dev, int mfd,
			       unsigned long long flags)
{
	struct timed_freeze_args *a;
	int fd, ret;
	pid_t pid;

	fd = openat(mfd, "args", O_RDWR | O_CREAT | O_TRUNC, 0644);
	if (fd < 0 || ftruncate(fd, 4096))
		return -1;
	a = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	close(fd);
	if (a == MAP_FAILED)
		return -1;
	memset(a, 0, sizeof(*a));
	a->size = sizeof(*a);
	a->flags = flags;
	a->timeout_ns = 2000 * NSEC_PER_MSEC;
	a->fd = mfd;
	pid = fork();
	if (pid == 0)
		_exit(ioctl(dev, TIMED_FREEZE_IOC_FREEZE, a) ? errno : 0);
	ret = tf_wait_child(pid, 5000);
	if (ret < 0) {
		TH_LOG("the ioctl did not return: it faults on its own freeze");
		/* Rescue: a userspace freeze can be thawed from here. */
		ioctl(mfd, FITHAW, 0);
		ret = tf_wait_child(pid, 5000);
		ret = -1;
	}
	munmap(a, 4096);
	return ret;
}

TEST_F(fs, result_in_a_mapping_of_the_frozen_fs)
{
	ASSERT_EQ(EFAULT, freeze_into_mapping(_metadata, self->dev, self->fs.mfd, 0));
	EXPECT_TRUE(tf_fs_writable(self->fs.mfd));
	EXPECT_EQ(-1, ioctl(self->fs.mfd, FITHAW, 0));
	EXPECT_EQ(EINVAL, errno);
	/* The same for an owned freeze, which nobody else could thaw. */
	ASSERT_EQ(EFAULT, freeze_into_mapping(_metadata, self->dev, self->fs.mfd,
					      TIMED_FREEZE_OWNED));
	EXPECT_TRUE(tf_fs_writable(self->fs.mfd));
	EXPECT_EQ(-EINVAL, tf_thaw(self->dev, self->fs.mfd, TIMED_FREEZE_OWNED));
}

/*
 * One open file of the device, used by two processes: while one waits in
 * an OWNED freeze, the other's calls on the same file are served at once,
 * and a fatal signal ends them at once.
 */
TEST_F(fs, other_users_of_the_file_do_not_wait_for_a_freeze)
{
	struct tf_held_writer hw;
	unsigned long long t0;
	pid_t freezer, other;

	ASSERT_EQ(0, tf_held_writer_start(&hw, self->fs.mfd, "held"));
	freezer = fork();
	if (freezer == 0) {
		struct timed_freeze_args a;

		_exit(-tf_freeze(self->dev, self->fs.mfd, 2000 * NSEC_PER_MSEC, 0,
				 TIMED_FREEZE_OWNED, &a));
	}
	usleep(300 * 1000);	/* the freezer waits for the held writer */
	t0 = tf_now_ns();
	EXPECT_EQ(-EINVAL, tf_thaw(self->dev, self->fs.mfd, TIMED_FREEZE_OWNED));
	EXPECT_LE((tf_now_ns() - t0) / NSEC_PER_MSEC, 500ULL);

	other = fork();
	if (other == 0)
		_exit(-tf_thaw(self->dev, self->fs.mfd, TIMED_FREEZE_OWNED));
	usleep(100 * 1000);
	t0 = tf_now_ns();
	kill(other, SIGKILL);
	tf_wait_child(other, 5000);
	EXPECT_LE((tf_now_ns() - t0) / NSEC_PER_MSEC, 500ULL);

	EXPECT_EQ(ETIMEDOUT, tf_wait_child(freezer, 5000));
	EXPECT_EQ(3, tf_held_writer_finish(&hw, "ok\n"));
}

/* The owned freeze of @dev on the fs of @fd, listed; its index in @e or -1. */
static int find_owned(struct timed_freeze_owned *e, unsigned int n, int fd)
{
	struct stat st;

	if (fstat(fd, &st))
		return -1;
	for (unsigned int i = 0; i < n; i++)
		if (e[i].dev == st.st_dev)
			return i;
	return -1;
}

/*
 * The holder of an OWNED freeze cannot thaw it: it writes to the frozen
 * filesystem and sleeps there uninterruptibly, so it cannot exit either.
 * The administrator sees the freeze, with the holder's pid and age, and
 * thaws it; the holder then goes on.
 */
TEST_F(fs, admin_thaws_the_owned_freeze_of_a_stuck_holder)
{
	struct timed_freeze_owned e[8];
	unsigned int total;
	int sync[2], i;
	pid_t holder;
	char c;

	ASSERT_EQ(0, pipe(sync));
	holder = fork();
	if (holder == 0) {
		struct timed_freeze_args a;
		int dev = tf_open_dev();

		if (dev < 0 || tf_freeze(dev, self->fs.mfd, 2000 * NSEC_PER_MSEC, 0,
					 TIMED_FREEZE_OWNED, &a))
			_exit(1);
		if (write(sync[1], "f", 1) != 1)
			_exit(2);
		/* Its own log, on the frozen fs: it sleeps here. */
		_exit(openat(self->fs.mfd, "log", O_WRONLY | O_CREAT, 0644) < 0 ? 3 : 0);
	}
	ASSERT_EQ(1, read(sync[0], &c, 1));
	usleep(300 * 1000);
	kill(holder, SIGKILL);
	EXPECT_EQ(-1, tf_wait_child(holder, 500)) TH_LOG("the holder was not stuck");
	EXPECT_TRUE(tf_in_d_state(holder));

	ASSERT_EQ(0, tf_list(self->dev, e, 8, &total));
	i = find_owned(e, total < 8 ? total : 8, self->fs.mfd);
	ASSERT_LE(0, i);
	EXPECT_EQ(holder, e[i].pid);
	EXPECT_EQ(0U, e[i].flags & TIMED_FREEZE_OWNED_EXITED);
	EXPECT_GE(e[i].age_ns / NSEC_PER_MSEC, 300ULL);
	EXPECT_STREQ("freeze_test", e[i].comm);

	EXPECT_EQ(0, tf_force_thaw(self->dev, e[i].id));
	EXPECT_EQ(-ENOENT, tf_force_thaw(self->dev, e[i].id));
	/* The holder's write gets through; its SIGKILL then ends it. */
	EXPECT_EQ(128 + SIGKILL, tf_wait_child(holder, 5000));
	EXPECT_TRUE(tf_fs_writable(self->fs.mfd));
	ASSERT_EQ(0, tf_list(self->dev, e, 8, &total));
	EXPECT_GT(0, find_owned(e, total < 8 ? total : 8, self->fs.mfd));
}

/*
 * A child inherits the device file and outlives the process that made the
 * OWNED freeze: the freeze is shown as the dead process's, and thawable.
 */
TEST_F(fs, admin_sees_a_freeze_held_by_an_inherited_file)
{
	struct timed_freeze_owned e[8];
	unsigned int total;
	pid_t maker, heir = 0;
	int pp[2], i;

	ASSERT_EQ(0, pipe(pp));
	maker = fork();
	if (maker == 0) {
		struct timed_freeze_args a;
		int dev = open(TIMED_FREEZE_DEVICE, O_RDWR);	/* inheritable */
		pid_t child;

		if (dev < 0 || tf_freeze(dev, self->fs.mfd, 2000 * NSEC_PER_MSEC, 0,
					 TIMED_FREEZE_OWNED, &a))
			_exit(1);
		child = fork();
		if (child == 0) {
			pause();
			_exit(0);
		}
		_exit(write(pp[1], &child, sizeof(child)) == sizeof(child) ? 0 : 2);
	}
	EXPECT_EQ(0, tf_wait_child(maker, 5000));
	ASSERT_EQ((ssize_t)sizeof(heir), read(pp[0], &heir, sizeof(heir)));

	ASSERT_EQ(0, tf_list(self->dev, e, 8, &total));
	i = find_owned(e, total < 8 ? total : 8, self->fs.mfd);
	ASSERT_LE(0, i);
	EXPECT_EQ(maker, e[i].pid);
	EXPECT_EQ(TIMED_FREEZE_OWNED_EXITED, e[i].flags & TIMED_FREEZE_OWNED_EXITED);
	EXPECT_FALSE(fs_writable_quick(self->fs.mfd));
	EXPECT_EQ(0, tf_force_thaw(self->dev, e[i].id));
	EXPECT_TRUE(tf_fs_writable(self->fs.mfd));
	/* The heir's file closes later with nothing left to thaw. */
	kill(heir, SIGKILL);
	waitpid(heir, NULL, 0);
}

/*
 * gfs2 freezes and thaws itself (->freeze_super, ->thaw_super): FIFREEZE
 * and FITHAW go there, and so must the THAW ioctl (it is FITHAW).  The
 * timed FREEZE refuses it: it cannot time waits gfs2 makes itself.
 */
FIXTURE(gfs2) {
	struct tf_fs fs;
	int dev;
};

FIXTURE_SETUP(gfs2)
{
	const char *why = tf_missing();

	self->fs.mfd = -1;
	self->dev = -1;
	if (why)
		SKIP(return, "%s", why);
	if (tf_fs_missing("gfs2"))
		SKIP(return, "no gfs2 here (CONFIG_GFS2_FS, gfs2-utils)");
	ASSERT_EQ(0, tf_fs_setup(&self->fs, "gfs2"));
	self->dev = tf_open_dev();
	ASSERT_LE(0, self->dev);
}

FIXTURE_TEARDOWN(gfs2)
{
	if (self->dev >= 0)
		close(self->dev);
	if (self->fs.mfd >= 0)
		tf_fs_teardown(&self->fs);
}

TEST_F(gfs2, thaw_ioctl_goes_to_the_filesystem_as_fithaw)
{
	pid_t pid;

	ASSERT_EQ(0, ioctl(self->fs.mfd, FIFREEZE, 0));
	pid = tf_write_child(self->fs.mfd, "data", "after thaw\n");
	EXPECT_EQ(-1, tf_wait_child(pid, 500));
	EXPECT_EQ(0, tf_thaw(self->dev, self->fs.mfd, 0));
	EXPECT_EQ(0, tf_wait_child(pid, 5000));
	EXPECT_TRUE(tf_file_is(self->fs.mfd, "data", "after thaw\n"));
	/* Thawed through gfs2 itself: it can be frozen and thawed again. */
	EXPECT_EQ(0, ioctl(self->fs.mfd, FIFREEZE, 0)) TH_LOG("FIFREEZE: %s", strerror(errno));
	EXPECT_EQ(0, ioctl(self->fs.mfd, FITHAW, 0)) TH_LOG("FITHAW: %s", strerror(errno));
}

TEST_F(gfs2, timed_freeze_is_eopnotsupp)
{
	struct timed_freeze_args a;

	EXPECT_EQ(-EOPNOTSUPP, tf_freeze(self->dev, self->fs.mfd, 0, 0, 0, &a));
	EXPECT_TRUE(tf_fs_writable(self->fs.mfd));
}

/* Errors that need no filesystem of ours. */
FIXTURE(dev) {
	int dev;
	int tmpfd;	/* a file on a filesystem without freeze support */
};

FIXTURE_SETUP(dev)
{
	const char *why = tf_missing();

	self->dev = -1;
	self->tmpfd = -1;
	if (why)
		SKIP(return, "%s", why);
	self->dev = tf_open_dev();
	ASSERT_LE(0, self->dev);
	self->tmpfd = open("/dev/shm", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (self->tmpfd < 0)
		self->tmpfd = open("/dev", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	ASSERT_LE(0, self->tmpfd);
}

FIXTURE_TEARDOWN(dev)
{
	if (self->tmpfd >= 0)
		close(self->tmpfd);
	if (self->dev >= 0)
		close(self->dev);
}

TEST_F(dev, bad_fd_is_ebadf)
{
	struct timed_freeze_args a;

	EXPECT_EQ(-EBADF, tf_freeze(self->dev, -1, 0, 0, 0, &a));
	EXPECT_EQ(-EBADF, tf_freeze(self->dev, 1000, 0, 0, 0, &a));
	EXPECT_EQ(-EBADF, tf_thaw(self->dev, -1, 0));
}

TEST_F(dev, no_freeze_support_is_eopnotsupp)
{
	struct timed_freeze_args a;

	EXPECT_EQ(-EOPNOTSUPP, tf_freeze(self->dev, self->tmpfd, 0, 0, 0, &a));
}

/* The freeze of retry_policy_* below, in a thread of its own. */
struct bg_freeze {
	int dev, fd;
	unsigned long long timeout_ns, deadline_ns;
	unsigned int retries;
	struct timed_freeze_args a;
	int ret;
	pthread_t thread;
};

static void *bg_freeze_fn(void *arg)
{
	struct bg_freeze *f = arg;

	f->ret = tf_freeze_deadline(f->dev, f->fd, f->timeout_ns, f->retries, f->deadline_ns,
				    0, &f->a);
	return NULL;
}

/*
 * The retry policy: after an attempt gave up on the held writer, the next
 * waits for that writer to leave, blocking nobody, instead of blocking
 * writers again every 10 ms.  Released 1.5 s in, the writer is out, and
 * the freeze follows at once: two attempts, writers blocked about one
 * timeout in all (the fixed back-off of before: about eight attempts, and
 * writers blocked for all but 10 ms of every 210).
 */
TEST_F(fs, retry_policy_waits_for_the_stuck_writer)
{
	const unsigned long long timeout_ms = 200, release_ms = 1500;
	struct bg_freeze f = {
		.dev = self->dev, .fd = self->fs.mfd,
		.timeout_ns = timeout_ms * NSEC_PER_MSEC, .retries = 16,
	};
	unsigned long long t0, took_ms;
	struct tf_held_writer hw;
	pid_t pid;

	ASSERT_EQ(0, tf_held_writer_start(&hw, self->fs.mfd, "held"));
	t0 = tf_now_ns();
	ASSERT_EQ(0, pthread_create(&f.thread, NULL, bg_freeze_fn, &f));
	usleep(release_ms * 1000);
	/* Between attempts, others write: nothing of the freeze is in place. */
	pid = tf_write_child(self->fs.mfd, "between", "between\n");
	EXPECT_EQ(0, tf_wait_child(pid, 150));
	EXPECT_EQ(16, tf_held_writer_finish(&hw, "held writer ok.\n"));
	pthread_join(f.thread, NULL);
	took_ms = (tf_now_ns() - t0) / NSEC_PER_MSEC;
	TH_LOG("freeze %d after %llu ms, %u attempts, writers blocked %llu ms",
	       f.ret, took_ms, f.a.attempts, f.a.blocked_ns / NSEC_PER_MSEC);
	ASSERT_EQ(0, f.ret);
	EXPECT_EQ(2U, f.a.attempts);
	EXPECT_EQ(1U, f.a.timed_out_level);
	EXPECT_GE(took_ms, release_ms);
	EXPECT_LE(took_ms, release_ms + SLACK_MS);
	EXPECT_LE(f.a.blocked_ns / NSEC_PER_MSEC, 2 * timeout_ms + 300);
	pid = tf_write_child(self->fs.mfd, "probe", "probe\n");
	EXPECT_EQ(-1, tf_wait_child(pid, 300));
	EXPECT_EQ(0, ioctl(self->fs.mfd, FITHAW, 0));
	EXPECT_EQ(0, tf_wait_child(pid, 5000));
	EXPECT_TRUE(tf_file_is(self->fs.mfd, "held", "held writer ok.\n"));
}

/*
 * A writer that never leaves: the pause lasts until one more attempt can
 * end by the deadline, and the freeze gives up at the deadline, the
 * default one or a given one; writers were blocked for two timeouts.
 */
TEST_F(fs, retry_policy_gives_up_at_the_deadline)
{
	const unsigned long long timeout_ms = 200;
	const unsigned long long deadlines_ms[] = {
		tf_default_deadline_ns(timeout_ms * NSEC_PER_MSEC, 16) / NSEC_PER_MSEC, 1000,
	};
	struct tf_held_writer hw;

	ASSERT_EQ(0, tf_held_writer_start(&hw, self->fs.mfd, "held"));
	for (int i = 0; i < 2; i++) {
		struct timed_freeze_args a;
		unsigned long long t0 = tf_now_ns(), took_ms;
		int ret = tf_freeze_deadline(self->dev, self->fs.mfd, timeout_ms * NSEC_PER_MSEC,
					     16, i ? deadlines_ms[i] * NSEC_PER_MSEC : 0, 0, &a);

		took_ms = (tf_now_ns() - t0) / NSEC_PER_MSEC;
		TH_LOG("deadline %llu ms: %d after %llu ms, %u attempts, writers blocked %llu ms",
		       deadlines_ms[i], ret, took_ms, a.attempts, a.blocked_ns / NSEC_PER_MSEC);
		EXPECT_EQ(-ETIMEDOUT, ret);
		EXPECT_EQ(2U, a.attempts);
		EXPECT_EQ(1ULL, a.writers_inside);
		EXPECT_GE(took_ms, deadlines_ms[i]);
		EXPECT_LE(took_ms, deadlines_ms[i] + SLACK_MS);
		/* Two timeouts and what each undo takes (the fixed back-off: 17 and 4). */
		EXPECT_LE(a.blocked_ns / NSEC_PER_MSEC, 2 * timeout_ms + 200);
		EXPECT_GE(a.blocked_ns / NSEC_PER_MSEC, timeout_ms);
		EXPECT_TRUE(tf_fs_writable(self->fs.mfd));
	}
	EXPECT_EQ(16, tf_held_writer_finish(&hw, "held writer ok.\n"));
}

TEST_F(dev, bad_arguments_are_einval)
{
	struct timed_freeze_args a;
	struct timed_thaw_args t = { .size = sizeof(t), .fd = self->tmpfd };

	EXPECT_EQ(-EINVAL, tf_freeze(self->dev, self->tmpfd, 0, 0, 1ULL << 40, &a));
	EXPECT_EQ(-EINVAL, tf_freeze(self->dev, self->tmpfd,
				     TIMED_FREEZE_TIMEOUT_MAX_NS + 1, 0, 0, &a));
	EXPECT_EQ(-EINVAL, tf_freeze(self->dev, self->tmpfd, 0,
				     TIMED_FREEZE_RETRIES_MAX + 1, 0, &a));
	/* timeout_ns 0 is exactly one attempt: retries make no sense with it. */
	EXPECT_EQ(-EINVAL, tf_freeze(self->dev, self->tmpfd, 0, 1, 0, &a));
	/* Nor a deadline; and a deadline has room for one attempt. */
	EXPECT_EQ(-EINVAL, tf_freeze_deadline(self->dev, self->tmpfd, 0, 0, 1000, 0, &a));
	EXPECT_EQ(-EINVAL, tf_freeze_deadline(self->dev, self->tmpfd, 1000, 1, 999, 0, &a));
	EXPECT_EQ(-EINVAL, tf_freeze_deadline(self->dev, self->tmpfd, 1000, 1,
					      TIMED_FREEZE_DEADLINE_MAX_NS + 1, 0, &a));
	EXPECT_EQ(-EOPNOTSUPP, tf_freeze_deadline(self->dev, self->tmpfd, 1000, 1, 1000, 0, &a));
	EXPECT_EQ(-EOPNOTSUPP, tf_freeze_deadline(self->dev, self->tmpfd, 1000, 1,
						  TIMED_FREEZE_DEADLINE_MAX_NS, 0, &a));
	/* The limits themselves are fine (and then the fs says no). */
	EXPECT_EQ(-EOPNOTSUPP, tf_freeze(self->dev, self->tmpfd, TIMED_FREEZE_TIMEOUT_MAX_NS,
					 TIMED_FREEZE_RETRIES_MAX, 0, &a));
	/* A reserved field that is not zero. */
	memset(&a, 0, sizeof(a));
	a.size = sizeof(a);
	a.fd = self->tmpfd;
	a.__reserved = 1;
	EXPECT_EQ(-1, ioctl(self->dev, TIMED_FREEZE_IOC_FREEZE, &a));
	EXPECT_EQ(EINVAL, errno);

	/* Smaller than the first version. */
	memset(&a, 0, sizeof(a));
	a.size = TIMED_FREEZE_ARGS_SIZE_VER0 - 8;
	a.fd = self->tmpfd;
	EXPECT_EQ(-1, ioctl(self->dev, TIMED_FREEZE_IOC_FREEZE, &a));
	EXPECT_EQ(EINVAL, errno);

	t.__reserved = 1;
	EXPECT_EQ(-1, ioctl(self->dev, TIMED_FREEZE_IOC_THAW, &t));
	EXPECT_EQ(EINVAL, errno);
	t.__reserved = 0;
	t.flags = 1ULL << 5;
	EXPECT_EQ(-1, ioctl(self->dev, TIMED_FREEZE_IOC_THAW, &t));
	EXPECT_EQ(EINVAL, errno);
	/* Thawing what is not frozen: as FITHAW. */
	t.flags = 0;
	EXPECT_EQ(-1, ioctl(self->dev, TIMED_FREEZE_IOC_THAW, &t));
	EXPECT_EQ(EINVAL, errno);
}

TEST_F(dev, larger_struct_from_newer_userspace)
{
	struct {
		struct timed_freeze_args a;
		__u64 future[2];
	} big;

	memset(&big, 0, sizeof(big));
	big.a.size = sizeof(big);
	big.a.fd = self->tmpfd;
	/* Unknown trailing bytes that are zero are fine ... */
	EXPECT_EQ(-1, ioctl(self->dev, TIMED_FREEZE_IOC_FREEZE, &big));
	EXPECT_EQ(EOPNOTSUPP, errno);
	/* ... non-zero ones are E2BIG. */
	big.future[1] = 1;
	EXPECT_EQ(-1, ioctl(self->dev, TIMED_FREEZE_IOC_FREEZE, &big));
	EXPECT_EQ(E2BIG, errno);
}

TEST_F(dev, unprivileged_is_eperm)
{
	pid_t pid = fork();

	if (pid == 0) {
		struct timed_freeze_owned e[1];
		struct timed_freeze_args a;
		unsigned int total;

		/* Leaving uid 0 drops every capability; the fd stays open. */
		if (setresgid(65534, 65534, 65534) || setresuid(65534, 65534, 65534))
			_exit(2);
		_exit(tf_freeze(self->dev, self->tmpfd, 0, 0, 0, &a) == -EPERM &&
		      tf_thaw(self->dev, self->tmpfd, 0) == -EPERM &&
		      tf_list(self->dev, e, 1, &total) == -EPERM &&
		      tf_force_thaw(self->dev, 1) == -EPERM ? 0 : 1);
	}
	EXPECT_EQ(0, tf_wait_child(pid, 5000));
}

TEST_F(dev, admin_interface_arguments)
{
	struct timed_freeze_force_thaw_args t = { .size = sizeof(t), .id = ~0ULL };
	struct timed_freeze_list_args l = { .size = sizeof(l) };
	struct timed_freeze_owned e[2];
	unsigned int total;

	EXPECT_EQ(0, tf_list(self->dev, e, 0, &total));
	EXPECT_EQ(-ENOENT, tf_force_thaw(self->dev, ~0ULL));
	t.flags = 1;
	EXPECT_EQ(-1, ioctl(self->dev, TIMED_FREEZE_IOC_FORCE_THAW, &t));
	EXPECT_EQ(EINVAL, errno);
	/* Entries smaller than the first version; a bad address. */
	l.entries = (unsigned long)e;
	l.count = 2;
	l.entry_size = TIMED_FREEZE_OWNED_SIZE_VER0 - 8;
	EXPECT_EQ(-1, ioctl(self->dev, TIMED_FREEZE_IOC_LIST, &l));
	EXPECT_EQ(EINVAL, errno);
	l.entry_size = sizeof(e[0]);
	l.__reserved = 1;
	EXPECT_EQ(-1, ioctl(self->dev, TIMED_FREEZE_IOC_LIST, &l));
	EXPECT_EQ(EINVAL, errno);
	l.__reserved = 0;
	EXPECT_EQ(-1, ioctl(self->dev, TIMED_FREEZE_IOC_LIST, (void *)8));
	EXPECT_EQ(EFAULT, errno);
}

TEST_HARNESS_MAIN
