// SPDX-License-Identifier: GPL-2.0
/*
 * Storage that stops taking writes, under the filesystem being frozen:
 * ext4 and xfs on /dev/nbd1, served by nbd.h's server, whose stall switch
 * holds every WRITE until resumed (an NBD or iSCSI server that hangs).
 *
 * The stock FIFREEZE sleeps uninterruptibly wherever the storage makes it
 * wait, holding what it took: in sync_filesystem() with levels 1 and 2
 * (every writer of the fs blocked with it), on s_umount behind a syncfs()
 * stuck in writeback, on level 2 behind a page fault waiting for its page
 * to leave writeback.  Each is shown as an expected failure (XFAIL) and
 * rescued by resuming the server.  The timed freeze returns ETIMEDOUT
 * within timeout x attempts plus SLACK_MS, says which wait gave up, holds
 * nothing afterwards (a new writer gets through while the storage still
 * hangs), and once the server resumes every byte written is there and the
 * filesystem checks clean.
 *
 * The filesystems are mounted lazytime, so that a writer's timestamp update
 * waits for nothing of the storage.  The device has stable writes on
 * (queue/stable_writes): a write fault on
 * a page under writeback then waits, in ->page_mkwrite with
 * SB_FREEZE_PAGEFAULT held, for that writeback: a real writer stuck inside
 * level 2.
 */
#include <sys/mman.h>

#include "kselftest_harness.h"
#include "nbd.h"
#include "tf_util.h"
#include "wedge.h"

#define NBD_DEV		"/dev/nbd1"
#define IMG_SIZE	(320ULL << 20)
#define DIRTY_SIZE	(8 << 20)
#define TIMEOUT_MS	1000ULL
#define RETRIES		1
/* How much later than timeout x attempts a timed-out freeze may return. */
#define SLACK_MS	1500ULL
/* How long the stock FIFREEZE gets before we call it wedged. */
#define WATCHDOG_MS	3000

/* A filesystem on a stallable NBD device: what the fixture holds. */
struct nbdfs_env {
	char dir[64];
	char mnt[96];
	int mfd;
	int dev;
	struct nbd_srv nbd;
	int mounted;
};

FIXTURE(nbdfs) {
	struct nbdfs_env e;
};

FIXTURE_VARIANT(nbdfs) {
	const char *type;
};

FIXTURE_VARIANT_ADD(nbdfs, ext4) {
	.type = "ext4",
};

FIXTURE_VARIANT_ADD(nbdfs, xfs) {
	.type = "xfs",
};

FIXTURE_SETUP(nbdfs)
{
	const char *why = tf_missing();
	int fd, ret;

	self->e.mfd = -1;
	self->e.dev = -1;
	if (why)
		SKIP(return, "%s", why);
	if (access(NBD_DEV, F_OK))
		SKIP(return, "no %s (CONFIG_BLK_DEV_NBD)", NBD_DEV);
	if (tf_fs_missing(variant->type))
		SKIP(return, "no %s here (kernel or mkfs)", variant->type);
	self->e.dev = tf_open_dev();
	ASSERT_LE(0, self->e.dev);
	snprintf(self->e.dir, sizeof(self->e.dir), "/tmp/tfst.XXXXXX");
	ASSERT_NE(NULL, mkdtemp(self->e.dir));
	snprintf(self->e.mnt, sizeof(self->e.mnt), "%s/mnt", self->e.dir);
	ASSERT_EQ(0, mkdir(self->e.mnt, 0755));
	self->e.nbd.dev = NBD_DEV;
	ASSERT_EQ(0, nbd_start(&self->e.nbd, IMG_SIZE, NULL, NULL));
	/* Stable writes, before the mount: the superblock takes them from the device. */
	fd = open("/sys/block/nbd1/queue/stable_writes", O_WRONLY);
	ASSERT_LE(0, fd);
	ASSERT_EQ(1, write(fd, "1", 1));
	close(fd);
	ASSERT_EQ(0, tf_run(strcmp(variant->type, "xfs") ?
			    "mkfs.ext4 -q -F " NBD_DEV " >/dev/null 2>&1" :
			    "mkfs.xfs -q -f " NBD_DEV " >/dev/null 2>&1"));
	/* The device may be busy a moment after the connection (its partition scan). */
	ret = -1;
	for (int i = 0; i < 500 && ret; i++) {
		ret = mount(NBD_DEV, self->e.mnt, variant->type, MS_LAZYTIME, NULL);
		if (ret)
			usleep(10000);
	}
	ASSERT_EQ(0, ret) TH_LOG("mount %s: %s", NBD_DEV, strerror(errno));
	self->e.mounted = 1;
	self->e.mfd = open(self->e.mnt, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	ASSERT_LE(0, self->e.mfd);
	/* quick_writer()'s file, on the storage before anything stalls. */
	fd = openat(self->e.mfd, "quick", O_WRONLY | O_CREAT, 0644);
	ASSERT_LE(0, fd);
	ASSERT_EQ(6, write(fd, "setup\n", 6));
	ASSERT_EQ(0, fsync(fd));
	close(fd);
}

FIXTURE_TEARDOWN(nbdfs)
{
	tf_end_wedged(_metadata);
	if (self->e.nbd.pid <= 0)
		return;
	nbd_cmd(&self->e.nbd, 'r');
	if (self->e.mfd >= 0) {
		ioctl(self->e.mfd, FITHAW, 0);
		close(self->e.mfd);
	}
	if (self->e.mounted)
		umount2(self->e.mnt, MNT_DETACH);
	nbd_stop(&self->e.nbd);
	rmdir(self->e.mnt);
	rmdir(self->e.dir);
	if (self->e.dev >= 0)
		close(self->e.dev);
}

/*
 * A writer that needs nothing of the storage: a buffered overwrite of a
 * file written and synced at setup (no allocation; lazytime: no timestamp
 * in the journal), no sync.  It completes unless somebody holds the
 * filesystem's freeze levels.  Its exit status within @ms, or -1 if it is
 * still blocked (it is left to finish later).
 */
static int quick_writer(int dirfd, const char *name, int ms)
{
	pid_t pid = fork();

	if (pid == 0) {
		int fd = openat(dirfd, name, O_WRONLY);

		_exit(fd < 0 || pwrite(fd, "quick\n", 6, 0) != 6);
	}
	return tf_wait_child(pid, ms);
}

/* The timed freeze, timed; its result, and the time in *ms. */
static int timed_freeze(struct nbdfs_env *self, struct timed_freeze_args *a,
			unsigned int retries, unsigned long long *ms)
{
	unsigned long long t0 = tf_now_ns();
	int ret = tf_freeze(self->dev, self->mfd, TIMEOUT_MS * NSEC_PER_MSEC, retries, 0, a);

	*ms = (tf_now_ns() - t0) / NSEC_PER_MSEC;
	return ret;
}

/* After a timed freeze gave up: its bounds, and nothing held by it. */
static void check_gave_up(struct __test_metadata *_metadata, struct nbdfs_env *self,
			  int ret, struct timed_freeze_args *a, unsigned int retries,
			  unsigned long long ms)
{
	const unsigned long long bound = TIMEOUT_MS * (retries + 1);

	TH_LOG("timed freeze: %d after %u attempts, %llu ms (kernel %llu), gave up at wait %u",
	       ret, a->attempts, ms, a->elapsed_ns / NSEC_PER_MSEC, a->gave_up);
	EXPECT_EQ(-ETIMEDOUT, ret);
	EXPECT_EQ(retries + 1U, a->attempts);
	EXPECT_GE(ms, bound);
	EXPECT_LE(ms, bound + SLACK_MS);
	/* Writers are not held by us, while the storage still hangs. */
	EXPECT_EQ(0, quick_writer(self->mfd, "quick", 2000));
}

/* Resume, then: the pattern is on the storage (read back after a cache drop), fsck clean. */
static void check_after_resume(struct __test_metadata *_metadata, struct nbdfs_env *self,
			       const char *type, const char *name, size_t size)
{
	ASSERT_EQ(0, nbd_cmd(&self->nbd, 'r'));
	EXPECT_EQ(0, syncfs(self->mfd));
	EXPECT_EQ(0, tf_run("echo 3 > /proc/sys/vm/drop_caches"));
	if (name)
		EXPECT_TRUE(tf_pattern_is_there(self->mfd, name, size));
	close(self->mfd);
	self->mfd = -1;
	ASSERT_EQ(0, umount2(self->mnt, 0));
	self->mounted = 0;
	/* The superblock may go a little later (a sync thread drops the last reference). */
	for (int i = 0; i < 100; i++) {
		int fd = open(NBD_DEV, O_RDONLY | O_EXCL);

		if (fd >= 0) {
			close(fd);
			break;
		}
		usleep(50 * 1000);
	}
	EXPECT_EQ(0, tf_run(strcmp(type, "xfs") ? "e2fsck -fn " NBD_DEV " >/dev/null 2>&1" :
			    "xfs_repair -n " NBD_DEV " >/dev/null 2>&1"));
}

/* Stock FIFREEZE in a child; whether it returned within the watchdog. */
static pid_t stock_freezer(int mfd)
{
	pid_t pid = fork();

	if (pid == 0)
		_exit(ioctl(mfd, FIFREEZE, 0) ? errno : 0);
	return pid;
}

/* The rescue of a stuck stock freeze: resume; it completes; thaw. */
static void rescue_stock(struct __test_metadata *_metadata, struct nbdfs_env *self,
			 pid_t freezer)
{
	ASSERT_EQ(0, nbd_cmd(&self->nbd, 'r'));
	EXPECT_EQ(0, tf_wait_child(freezer, 10000));
	EXPECT_EQ(0, ioctl(self->mfd, FITHAW, 0));
}

/*
 * The stock case of each scene: a stock FIFREEZE is expected to return within
 * the watchdog (it does not: XFAIL); whether a new writer gets through
 * meanwhile is logged (@probe: not where the quick writer would itself queue
 * on s_umount's holder).  A stuck freezer is rescued: resume, thaw.
 */
static void check_stock(struct __test_metadata *_metadata, struct nbdfs_env *self,
			bool probe)
{
	pid_t freezer = stock_freezer(self->mfd);
	int returned = tf_wait_child(freezer, WATCHDOG_MS);

	TH_LOG("stock FIFREEZE %s within %d ms; a new writer %s",
	       returned < 0 ? "did not return" : "returned", WATCHDOG_MS,
	       !probe ? "was not tried" :
	       quick_writer(self->mfd, "quick", 500) < 0 ? "is blocked" : "got through");
	if (returned < 0)
		tf_wedged("stock FIFREEZE did not return within %d ms", WATCHDOG_MS);
	if (returned < 0)
		rescue_stock(_metadata, self, freezer);
}

/* --- dirty data, and the storage stops taking writes --- */

TEST_F_TIMEOUT(nbdfs, dirty_data_timed, 120)
{
	struct timed_freeze_args a;
	unsigned long long ms;
	int ret;

	ASSERT_EQ(0, tf_write_pattern(self->e.mfd, "dirty", DIRTY_SIZE));
	ASSERT_EQ(0, nbd_cmd(&self->e.nbd, 's'));
	ret = timed_freeze(&self->e, &a, RETRIES, &ms);
	check_gave_up(_metadata, &self->e, ret, &a, RETRIES, ms);
	EXPECT_TRUE(a.gave_up == TIMED_FREEZE_WAIT_WRITEBACK ||
		    a.gave_up == TIMED_FREEZE_WAIT_JOURNAL);
	check_after_resume(_metadata, &self->e, variant->type, "dirty", DIRTY_SIZE);
}

TEST_F_TIMEOUT(nbdfs, dirty_data_stock, 120)
{
	ASSERT_EQ(0, tf_write_pattern(self->e.mfd, "dirty", DIRTY_SIZE));
	ASSERT_EQ(0, nbd_cmd(&self->e.nbd, 's'));
	check_stock(_metadata, &self->e, true);
	check_after_resume(_metadata, &self->e, variant->type, "dirty", DIRTY_SIZE);
}

/* --- a writer inside the write path waits for the storage --- */

struct direct_writer {
	int fd;
	pthread_t thread;
	ssize_t ret;
	char *buf;
};

static void *direct_writer_fn(void *arg)
{
	struct direct_writer *w = arg;

	/* O_DIRECT: inside write(), under SB_FREEZE_WRITE, it waits for the storage. */
	w->ret = write(w->fd, w->buf, 1 << 16);
	return NULL;
}

/*
 * Starts a writer inside write(), under SB_FREEZE_WRITE, waiting for the
 * storage: an O_DIRECT overwrite of a file written and synced before (so
 * that nothing else of it, no allocation, no journal, waits for the storage).
 */
static int direct_writer_prepare(int dirfd)
{
	int fd = openat(dirfd, "direct", O_WRONLY | O_CREAT | O_TRUNC, 0644);
	char buf[4096] = {};

	for (int i = 0; i < 16; i++)
		if (fd < 0 || write(fd, buf, sizeof(buf)) != sizeof(buf))
			return -1;
	return fsync(fd) || close(fd) ? -1 : 0;
}

static int direct_writer_start(struct direct_writer *w, int dirfd)
{
	w->fd = openat(dirfd, "direct", O_WRONLY | O_DIRECT);
	if (w->fd < 0 || posix_memalign((void **)&w->buf, 4096, 1 << 16))
		return -1;
	for (size_t i = 0; i < 1 << 16; i++)
		w->buf[i] = tf_pattern_byte(i);
	if (pthread_create(&w->thread, NULL, direct_writer_fn, w))
		return -1;
	usleep(300 * 1000);
	return 0;
}

static ssize_t direct_writer_finish(struct direct_writer *w)
{
	pthread_join(w->thread, NULL);
	close(w->fd);
	free(w->buf);
	return w->ret;
}

TEST_F_TIMEOUT(nbdfs, writer_inside_timed, 120)
{
	struct timed_freeze_args a;
	struct direct_writer w;
	unsigned long long ms;
	int ret;

	ASSERT_EQ(0, direct_writer_prepare(self->e.mfd));
	ASSERT_EQ(0, nbd_cmd(&self->e.nbd, 's'));
	ASSERT_EQ(0, direct_writer_start(&w, self->e.mfd));
	/*
	 * One attempt: a retry starts by taking s_umount, which another task
	 * stuck on the stalled storage may hold by then (reclaim's
	 * super_cache_scan() evicting an inode, writeback), and would give up
	 * there, rightly but beside this test's point (the syncfs case tests
	 * that wait).  The level wait is the first attempt's.
	 */
	ret = timed_freeze(&self->e, &a, 0, &ms);
	check_gave_up(_metadata, &self->e, ret, &a, 0, ms);
	EXPECT_EQ(TIMED_FREEZE_WAIT_LEVEL_WRITE, a.gave_up);
	EXPECT_EQ(1ULL, a.writers_inside);
	ASSERT_EQ(0, nbd_cmd(&self->e.nbd, 'r'));
	EXPECT_EQ(1 << 16, direct_writer_finish(&w));
	check_after_resume(_metadata, &self->e, variant->type, "direct", 1 << 16);
}

TEST_F_TIMEOUT(nbdfs, writer_inside_stock, 120)
{
	struct direct_writer w;

	ASSERT_EQ(0, direct_writer_prepare(self->e.mfd));
	ASSERT_EQ(0, nbd_cmd(&self->e.nbd, 's'));
	ASSERT_EQ(0, direct_writer_start(&w, self->e.mfd));
	check_stock(_metadata, &self->e, true);
	EXPECT_EQ(1 << 16, direct_writer_finish(&w));
	check_after_resume(_metadata, &self->e, variant->type, "direct", 1 << 16);
}

/* --- s_umount held by a syncfs() stuck in writeback --- */

static void *syncfs_fn(void *arg)
{
	syncfs(*(int *)arg);
	return NULL;
}

/* A freeze with a long timeout, in a child, killed: it must die at once. */
static void killable(struct __test_metadata *_metadata, struct nbdfs_env *self)
{
	unsigned long long t0;
	pid_t pid = fork();

	if (pid == 0) {
		struct timed_freeze_args a;

		tf_freeze(self->dev, self->mfd, 30000 * NSEC_PER_MSEC, 0, 0, &a);
		_exit(0);
	}
	usleep(300 * 1000);
	t0 = tf_now_ns();
	kill(pid, SIGKILL);
	EXPECT_EQ(128 + SIGKILL, tf_wait_child(pid, 5000));
	EXPECT_LE((tf_now_ns() - t0) / NSEC_PER_MSEC, SLACK_MS);
}

TEST_F_TIMEOUT(nbdfs, syncfs_holds_s_umount_timed, 120)
{
	struct timed_freeze_args a;
	unsigned long long ms;
	pthread_t t;
	int ret;

	ASSERT_EQ(0, tf_write_pattern(self->e.mfd, "dirty", DIRTY_SIZE));
	ASSERT_EQ(0, nbd_cmd(&self->e.nbd, 's'));
	ASSERT_EQ(0, pthread_create(&t, NULL, syncfs_fn, &self->e.mfd));
	usleep(300 * 1000);
	ret = timed_freeze(&self->e, &a, RETRIES, &ms);
	check_gave_up(_metadata, &self->e, ret, &a, RETRIES, ms);
	EXPECT_EQ(TIMED_FREEZE_WAIT_UMOUNT, a.gave_up);
	killable(_metadata, &self->e);
	ASSERT_EQ(0, nbd_cmd(&self->e.nbd, 'r'));
	pthread_join(t, NULL);
	check_after_resume(_metadata, &self->e, variant->type, "dirty", DIRTY_SIZE);
}

TEST_F_TIMEOUT(nbdfs, syncfs_holds_s_umount_stock, 120)
{
	pthread_t t;

	ASSERT_EQ(0, tf_write_pattern(self->e.mfd, "dirty", DIRTY_SIZE));
	ASSERT_EQ(0, nbd_cmd(&self->e.nbd, 's'));
	ASSERT_EQ(0, pthread_create(&t, NULL, syncfs_fn, &self->e.mfd));
	usleep(300 * 1000);
	/* It waits for s_umount, uninterruptibly. */
	check_stock(_metadata, &self->e, false);
	pthread_join(t, NULL);
	check_after_resume(_metadata, &self->e, variant->type, "dirty", DIRTY_SIZE);
}

/* --- a page fault stuck inside level 2, and a stock FIFREEZE stuck behind it --- */

/* A shared mapping of a file written and synced, its pages dirtied again. */
struct mapped {
	int fd;
	char *p;
};

static int mapped_prepare(struct mapped *m, int dirfd)
{
	m->fd = openat(dirfd, "mapped", O_RDWR | O_CREAT | O_TRUNC, 0644);
	if (m->fd < 0 || ftruncate(m->fd, 1 << 16))
		return -1;
	m->p = mmap(NULL, 1 << 16, PROT_READ | PROT_WRITE, MAP_SHARED, m->fd, 0);
	if (m->p == MAP_FAILED)
		return -1;
	memset(m->p, 'a', 1 << 16);
	if (fsync(m->fd))
		return -1;
	memset(m->p, 'b', 1 << 16);
	return 0;
}

/*
 * With the storage stalled: writeback of the mapping starts (and stays), and
 * a child's write fault then waits in ->page_mkwrite, with
 * SB_FREEZE_PAGEFAULT held, for its page to leave writeback.  Its pid, or -1.
 */
static pid_t stuck_page_fault(struct mapped *m)
{
	pid_t pid;

	if (sync_file_range(m->fd, 0, 1 << 16, SYNC_FILE_RANGE_WRITE))
		return -1;
	pid = fork();
	if (pid == 0) {
		m->p[0] = 'c';	/* write-protected by the writeback: a fault */
		_exit(0);
	}
	for (int i = 0; i < 50 && !tf_in_d_state(pid); i++)
		usleep(20 * 1000);
	munmap(m->p, 1 << 16);
	close(m->fd);
	return tf_in_d_state(pid) ? pid : -1;
}

TEST_F_TIMEOUT(nbdfs, page_fault_inside_level2_timed, 120)
{
	struct timed_freeze_args a;
	unsigned long long ms;
	struct mapped m;
	pid_t faulter;
	int ret;

	ASSERT_EQ(0, mapped_prepare(&m, self->e.mfd));
	ASSERT_EQ(0, nbd_cmd(&self->e.nbd, 's'));
	faulter = stuck_page_fault(&m);
	ASSERT_LT(0, faulter) TH_LOG("the page fault did not wait for writeback");
	/* One attempt, as in writer_inside_timed. */
	ret = timed_freeze(&self->e, &a, 0, &ms);
	check_gave_up(_metadata, &self->e, ret, &a, 0, ms);
	EXPECT_EQ(TIMED_FREEZE_WAIT_LEVEL_PAGEFAULT, a.gave_up);
	EXPECT_EQ(1ULL, a.writers_inside);
	ASSERT_EQ(0, nbd_cmd(&self->e.nbd, 'r'));
	EXPECT_EQ(0, tf_wait_child(faulter, 10000));
	check_after_resume(_metadata, &self->e, variant->type, NULL, 0);
}

TEST_F_TIMEOUT(nbdfs, stock_freeze_on_level2_holds_s_umount_timed, 120)
{
	struct timed_freeze_args a;
	unsigned long long ms;
	pid_t faulter, freezer;
	struct mapped m;
	int ret;

	ASSERT_EQ(0, mapped_prepare(&m, self->e.mfd));
	ASSERT_EQ(0, nbd_cmd(&self->e.nbd, 's'));
	faulter = stuck_page_fault(&m);
	ASSERT_LT(0, faulter) TH_LOG("the page fault did not wait for writeback");
	/* The stock freezer takes level 1, then waits on level 2 holding s_umount. */
	freezer = stock_freezer(self->e.mfd);
	usleep(500 * 1000);
	ASSERT_TRUE(tf_in_d_state(freezer));
	ret = timed_freeze(&self->e, &a, RETRIES, &ms);
	TH_LOG("timed freeze: %d after %u attempts, %llu ms, gave up at wait %u",
	       ret, a.attempts, ms, a.gave_up);
	EXPECT_EQ(-ETIMEDOUT, ret);
	EXPECT_EQ(TIMED_FREEZE_WAIT_UMOUNT, a.gave_up);
	EXPECT_GE(ms, TIMEOUT_MS * (RETRIES + 1));
	EXPECT_LE(ms, TIMEOUT_MS * (RETRIES + 1) + SLACK_MS);
	killable(_metadata, &self->e);
	rescue_stock(_metadata, &self->e, freezer);
	EXPECT_EQ(0, tf_wait_child(faulter, 10000));
	check_after_resume(_metadata, &self->e, variant->type, NULL, 0);
}

TEST_F_TIMEOUT(nbdfs, page_fault_inside_level2_stock, 120)
{
	struct mapped m;
	pid_t faulter;

	ASSERT_EQ(0, mapped_prepare(&m, self->e.mfd));
	ASSERT_EQ(0, nbd_cmd(&self->e.nbd, 's'));
	faulter = stuck_page_fault(&m);
	ASSERT_LT(0, faulter) TH_LOG("the page fault did not wait for writeback");
	check_stock(_metadata, &self->e, true);
	EXPECT_EQ(0, tf_wait_child(faulter, 10000));
	check_after_resume(_metadata, &self->e, variant->type, NULL, 0);
}

XFAIL_ADD(nbdfs, ext4, dirty_data_stock);
XFAIL_ADD(nbdfs, xfs, dirty_data_stock);
XFAIL_ADD(nbdfs, ext4, writer_inside_stock);
XFAIL_ADD(nbdfs, xfs, writer_inside_stock);
XFAIL_ADD(nbdfs, ext4, syncfs_holds_s_umount_stock);
XFAIL_ADD(nbdfs, xfs, syncfs_holds_s_umount_stock);
XFAIL_ADD(nbdfs, ext4, page_fault_inside_level2_stock);
XFAIL_ADD(nbdfs, xfs, page_fault_inside_level2_stock);

TEST_HARNESS_MAIN
