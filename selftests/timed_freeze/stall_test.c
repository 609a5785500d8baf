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
 * Past the commit point, ->freeze_fs() writes too (ext4's journal and
 * superblocks, xfs's log quiesce), even on an idle filesystem whose sync
 * before it sent no write at all: storage that stops there, from the
 * start of ->freeze_fs() or in the middle of its writes (nbd.h's 'w'),
 * wedges the stock FIFREEZE as well (XFAIL).  The timed freeze runs that
 * tail in a kernel thread of its own ("tf-freeze") and gives up waiting
 * for it at its deadline: ETIMEDOUT, gave_up COMMIT, the caller free, no
 * task in D state but that thread and the filesystem's own.  The thread
 * holds the freeze meanwhile (the filesystem's writers wait for it, as
 * documented) and undoes it once the storage takes the writes: a timed
 * freeze then succeeds.
 *
 * The report names the wait the deadline ended, not what failed after it:
 * a freeze waiting for another's partial freeze that, at its deadline,
 * cannot retake s_umount (a syncfs() stuck in writeback holds it) says
 * PARTIAL, not UMOUNT.  And the caller's own result must not make it wait
 * for the storage: with the argument struct in a shared mapping of a file on
 * the stopped filesystem, a freeze that gave up still returns by its
 * deadline.
 *
 * The filesystems are mounted lazytime, so that a writer's timestamp update
 * waits for nothing of the storage, and ext4 noinit_itable: its background
 * zeroing of inode tables, for seconds after the mount, would otherwise
 * write (and wait for the stalled storage) holding s_umount and
 * SB_FREEZE_WRITE.  The device has stable writes on
 * (queue/stable_writes): a write fault on
 * a page under writeback then waits, in ->page_mkwrite with
 * SB_FREEZE_PAGEFAULT held, for that writeback: a real writer stuck inside
 * level 2.
 */
#include <dirent.h>
#include <sys/mman.h>
#include <sys/syscall.h>

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
/* How long the undo of a freeze that gave up in ->freeze_fs() may take after the resume. */
#define UNDO_MS		30000ULL

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
		ret = mount(NBD_DEV, self->e.mnt, variant->type, MS_LAZYTIME,
			    strcmp(variant->type, "ext4") ? NULL : "noinit_itable");
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

/* --- the storage stops under ->freeze_fs(), the commit point passed --- */

/* PF_KTHREAD of a task's flags (include/linux/sched.h): a kernel thread. */
#define TF_PF_KTHREAD	0x00200000U

/*
 * Task @tid's state, flags and command, from /proc/@tid/stat (a thread's
 * is there too, unlisted); 0 or -1.
 */
static int task_stat(int tid, char *state, unsigned int *flags, char *comm, size_t n)
{
	char path[64], line[1024], *l, *r;
	int ret = -1;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%d/stat", tid);
	f = fopen(path, "r");
	if (!f)
		return -1;
	if (fgets(line, sizeof(line), f)) {
		l = strchr(line, '(');
		r = strrchr(line, ')');
		if (l && r > l && sscanf(r + 1, " %c %*d %*d %*d %*d %*d %u", state, flags) == 2) {
			snprintf(comm, n, "%.*s", (int)(r - l - 1), l + 1);
			ret = 0;
		}
	}
	fclose(f);
	return ret;
}

/*
 * Whether a task may wait in D state for the stalled storage: our thread
 * "tf-freeze", the filesystem's and the block layer's kernel threads.
 */
static bool may_wait_for_storage(unsigned int flags, const char *comm)
{
	static const char *const threads[] = { "tf-freeze", "jbd2/", "xfs", "kworker/" };

	if (!(flags & TF_PF_KTHREAD))
		return false;
	for (size_t i = 0; i < ARRAY_SIZE(threads); i++)
		if (!strncmp(comm, threads[i], strlen(threads[i])))
			return true;
	return false;
}

/*
 * Tasks in D state other than those that may_wait_for_storage(): the test
 * process's threads and every other task of the system.  One counts only
 * if it is still in D state 300 ms later (not one passing through), and
 * is logged.  Their number; the threads "tf-freeze" in D state in *@ours.
 */
static int others_in_d_state(struct __test_metadata *_metadata, int *ours)
{
	int tids[256], n = 0, bad = 0;
	struct dirent *p, *t;
	unsigned int flags;
	char state, comm[64], path[320];
	DIR *procs, *tasks;

	*ours = 0;
	procs = opendir("/proc");
	if (!procs)
		return -1;
	while ((p = readdir(procs))) {
		if (atoi(p->d_name) <= 0)
			continue;
		snprintf(path, sizeof(path), "/proc/%s/task", p->d_name);
		tasks = opendir(path);
		while (tasks && (t = readdir(tasks))) {
			int tid = atoi(t->d_name);

			if (tid <= 0 || task_stat(tid, &state, &flags, comm, sizeof(comm)) ||
			    state != 'D')
				continue;
			if ((flags & TF_PF_KTHREAD) && !strcmp(comm, "tf-freeze"))
				(*ours)++;
			if (!may_wait_for_storage(flags, comm) && n < (int)ARRAY_SIZE(tids))
				tids[n++] = tid;
		}
		if (tasks)
			closedir(tasks);
	}
	closedir(procs);
	if (n)
		usleep(300 * 1000);
	for (int i = 0; i < n; i++) {
		if (task_stat(tids[i], &state, &flags, comm, sizeof(comm)) || state != 'D')
			continue;
		TH_LOG("task %d (%s) is in D state", tids[i], comm);
		bad++;
	}
	return bad;
}

/* The timed freeze of timed_freeze_returns(), in a thread of its own. */
struct bg_freeze {
	struct nbdfs_env *e;
	unsigned int retries;
	struct timed_freeze_args a;
	unsigned long long ms;
	int ret;
	int done;
};

static void *bg_freeze_fn(void *arg)
{
	struct bg_freeze *f = arg;

	f->ret = timed_freeze(f->e, &f->a, f->retries, &f->ms);
	__atomic_store_n(&f->done, 1, __ATOMIC_RELEASE);
	return NULL;
}

/*
 * The timed freeze, in a thread, given @ms to return; whether it did.  One
 * that did not (it sleeps, as the stock FIFREEZE does, where ->freeze_fs()
 * waits for the storage) is rescued: the server resumes, and it is joined.
 */
static bool timed_freeze_returns(struct __test_metadata *_metadata, struct nbdfs_env *self,
				 struct bg_freeze *f, unsigned long long ms)
{
	bool returned;
	pthread_t t;

	f->e = self;
	ASSERT_EQ(0, pthread_create(&t, NULL, bg_freeze_fn, f));
	for (unsigned long long i = 0; i < ms / 10 && !__atomic_load_n(&f->done, __ATOMIC_ACQUIRE);
	     i++)
		usleep(10000);
	returned = __atomic_load_n(&f->done, __ATOMIC_ACQUIRE);
	if (!returned) {
		TH_LOG("the timed freeze did not return within %llu ms: resuming the server", ms);
		nbd_cmd(&self->nbd, 'r');
	}
	pthread_join(t, NULL);
	return returned;
}

/* An idle filesystem: a file written and synced, nothing dirty; 0 or -1. */
static int idle_prepare(int dirfd)
{
	return tf_write_pattern(dirfd, "idle", DIRTY_SIZE) || syncfs(dirfd) ? -1 : 0;
}

/*
 * With the storage stopped under ->freeze_fs(): the timed freeze returns
 * ETIMEDOUT by its deadline (the default one, of RETRIES), having given
 * up waiting for the commit, and no task but the kernel threads that
 * may_wait_for_storage() waits in D state: not the caller, not the test's
 * other threads, nobody else.
 */
static void check_gave_up_in_commit(struct __test_metadata *_metadata, struct nbdfs_env *self)
{
	const unsigned long long deadline_ms =
		tf_default_deadline_ns(TIMEOUT_MS * NSEC_PER_MSEC, RETRIES) / NSEC_PER_MSEC;
	struct bg_freeze f = { .retries = RETRIES };
	int ours;

	ASSERT_TRUE(timed_freeze_returns(_metadata, self, &f, deadline_ms + SLACK_MS));
	TH_LOG("timed freeze: %d after %u attempts, %llu ms (kernel %llu), gave up at wait %u",
	       f.ret, f.a.attempts, f.ms, f.a.elapsed_ns / NSEC_PER_MSEC, f.a.gave_up);
	EXPECT_EQ(-ETIMEDOUT, f.ret);
	EXPECT_EQ(TIMED_FREEZE_WAIT_COMMIT, f.a.gave_up);
	/* A retry waits for the thread, and gives up there too. */
	EXPECT_EQ(RETRIES + 1U, f.a.attempts);
	EXPECT_GE(f.ms, TIMEOUT_MS * (RETRIES + 1));
	EXPECT_LE(f.ms, deadline_ms + SLACK_MS);
	EXPECT_EQ(0, others_in_d_state(_metadata, &ours));
	TH_LOG("%d thread(s) tf-freeze in D state", ours);
}

/*
 * Then the server resumes: the thread's ->freeze_fs() returns and the
 * thread undoes the freeze.  Within UNDO_MS a timed freeze succeeds (the
 * filesystem is neither frozen nor partially frozen any more), and its
 * thaw leaves nothing frozen.
 */
static void check_undone_after_resume(struct __test_metadata *_metadata,
				      struct nbdfs_env *self)
{
	unsigned long long t0 = tf_now_ns(), ms;
	struct timed_freeze_args a;
	int ret, tries = 0;

	ASSERT_EQ(0, nbd_cmd(&self->nbd, 'r'));
	for (;;) {
		tries++;
		ret = timed_freeze(self, &a, 0, &ms);
		if (!ret || (tf_now_ns() - t0) / NSEC_PER_MSEC >= UNDO_MS)
			break;
		usleep(100 * 1000);
	}
	TH_LOG("after the resume: timed freeze %d after %llu ms and %d tries (gave up at wait %u)",
	       ret, (tf_now_ns() - t0) / NSEC_PER_MSEC, tries, a.gave_up);
	ASSERT_EQ(0, ret);
	EXPECT_EQ(0, ioctl(self->mfd, FITHAW, 0));
	EXPECT_EQ(-1, ioctl(self->mfd, FITHAW, 0));
	EXPECT_EQ(EINVAL, errno);
	EXPECT_EQ(0, quick_writer(self->mfd, "quick", 2000));
}

/*
 * An idle filesystem whose storage stops (nbd.h's @stop: 's' at once, 'w'
 * after one more write) under the freeze: the timed one (@timed) gives up
 * in the commit and its thread undoes it after the resume; the stock one
 * wedges (XFAIL) and is rescued.  Either way the data is there after.
 */
static void idle_then_stop(struct __test_metadata *_metadata, struct nbdfs_env *self,
			   const char *type, char stop, bool timed)
{
	ASSERT_EQ(0, idle_prepare(self->mfd));
	ASSERT_EQ(0, nbd_cmd(&self->nbd, stop));
	if (timed) {
		check_gave_up_in_commit(_metadata, self);
		check_undone_after_resume(_metadata, self);
	} else {
		check_stock(_metadata, self, true);
	}
	check_after_resume(_metadata, self, type, "idle", DIRTY_SIZE);
}

/*
 * An idle filesystem: the sync before the commit point sends no write,
 * ->freeze_fs() does (ext4: the journal's superblock and its own; xfs:
 * the metadata logged since, the log cover), and the storage takes none.
 */
TEST_F_TIMEOUT(nbdfs, idle_timed, 120)
{
	idle_then_stop(_metadata, &self->e, variant->type, 's', true);
}

TEST_F_TIMEOUT(nbdfs, idle_stock, 120)
{
	idle_then_stop(_metadata, &self->e, variant->type, 's', false);
}

/*
 * The same, the storage stopping after one more write ('w'): the first
 * write of ->freeze_fs() gets through, a later one waits.  The sync of the
 * idle filesystem before writes nothing, and ->freeze_fs() writes in
 * sequence, waiting for each: ext4_freeze() the journal superblock
 * (jbd2_journal_flush(): the tail, then empty), then ext4_commit_super()
 * its own; xfs_log_quiesce() the metadata logged since the sync
 * (xfs_ail_push_all_sync()), then the superblock logged and written
 * twice to cover the log.  So one write in, both stop in the middle.
 */
TEST_F_TIMEOUT(nbdfs, freeze_fs_stalls_midway_timed, 120)
{
	idle_then_stop(_metadata, &self->e, variant->type, 'w', true);
}

TEST_F_TIMEOUT(nbdfs, freeze_fs_stalls_midway_stock, 120)
{
	idle_then_stop(_metadata, &self->e, variant->type, 'w', false);
}

/* --- the wait for a partial freeze ends, and s_umount is held --- */

/* A syncfs() in a thread, 300 ms after its start; the thread's id. */
struct late_syncfs {
	int fd;
	pid_t tid;
	pthread_t thread;
};

static void *late_syncfs_fn(void *arg)
{
	struct late_syncfs *s = arg;

	__atomic_store_n(&s->tid, (pid_t)syscall(SYS_gettid), __ATOMIC_RELEASE);
	usleep(300 * 1000);
	syncfs(s->fd);
	return NULL;
}

/*
 * A stock FIFREEZE waits for level 1 behind a writer in splice(), its
 * freeze partial (frozen = SB_FREEZE_WRITE), s_umount dropped.  The timed
 * freeze (one attempt) takes s_umount, sees the partial freeze and waits
 * for it; 300 ms later a syncfs() takes s_umount for read and sticks in
 * writeback of the dirty data on the stalled storage, so that at the
 * deadline s_umount cannot be retaken.  The deadline ended the wait for
 * the partial freeze: ETIMEDOUT, gave_up PARTIAL (UMOUNT is what failed
 * after it).  Rescue: resume; the splice writer leaves, the stock freeze
 * completes; FITHAW.
 */
TEST_F_TIMEOUT(nbdfs, partial_wait_then_umount_held_says_partial, 120)
{
	struct late_syncfs ls = { .fd = self->e.mfd };
	struct timed_freeze_args a;
	struct tf_held_writer hw;
	unsigned long long ms;
	pid_t freezer;
	int ret;

	ASSERT_EQ(0, tf_write_pattern(self->e.mfd, "dirty", DIRTY_SIZE));
	ASSERT_EQ(0, tf_held_writer_start(&hw, self->e.mfd, "held"));
	ASSERT_EQ(0, nbd_cmd(&self->e.nbd, 's'));
	freezer = stock_freezer(self->e.mfd);
	usleep(300 * 1000);
	ASSERT_TRUE(tf_in_d_state(freezer)) TH_LOG("the stock FIFREEZE did not wait for level 1");
	ASSERT_EQ(0, pthread_create(&ls.thread, NULL, late_syncfs_fn, &ls));
	ret = timed_freeze(&self->e, &a, 0, &ms);
	TH_LOG("timed freeze: %d after %u attempts, %llu ms (kernel %llu), gave up at wait %u",
	       ret, a.attempts, ms, a.elapsed_ns / NSEC_PER_MSEC, a.gave_up);
	EXPECT_TRUE(tf_in_d_state(__atomic_load_n(&ls.tid, __ATOMIC_ACQUIRE)))
		TH_LOG("the syncfs() did not wait for the storage: s_umount free at the deadline");
	EXPECT_EQ(-ETIMEDOUT, ret);
	EXPECT_EQ(TIMED_FREEZE_WAIT_PARTIAL, a.gave_up);
	EXPECT_EQ(1U, a.attempts);
	EXPECT_EQ(0U, a.timed_out_level);
	EXPECT_GE(ms, TIMEOUT_MS);
	EXPECT_LE(ms, TIMEOUT_MS + SLACK_MS);
	ASSERT_EQ(0, nbd_cmd(&self->e.nbd, 'r'));
	EXPECT_EQ(3, tf_held_writer_finish(&hw, "ok\n"));
	EXPECT_EQ(0, tf_wait_child(freezer, 10000));
	EXPECT_EQ(0, ioctl(self->e.mfd, FITHAW, 0));
	pthread_join(ls.thread, NULL);
	EXPECT_TRUE(tf_file_is(self->e.mfd, "held", "ok\n"));
	check_after_resume(_metadata, &self->e, variant->type, "dirty", DIRTY_SIZE);
}

XFAIL_ADD(nbdfs, ext4, dirty_data_stock);
XFAIL_ADD(nbdfs, xfs, dirty_data_stock);
XFAIL_ADD(nbdfs, ext4, writer_inside_stock);
XFAIL_ADD(nbdfs, xfs, writer_inside_stock);
XFAIL_ADD(nbdfs, ext4, syncfs_holds_s_umount_stock);
XFAIL_ADD(nbdfs, xfs, syncfs_holds_s_umount_stock);
XFAIL_ADD(nbdfs, ext4, page_fault_inside_level2_stock);
XFAIL_ADD(nbdfs, xfs, page_fault_inside_level2_stock);
XFAIL_ADD(nbdfs, ext4, idle_stock);
XFAIL_ADD(nbdfs, xfs, idle_stock);
XFAIL_ADD(nbdfs, ext4, freeze_fs_stalls_midway_stock);
XFAIL_ADD(nbdfs, xfs, freeze_fs_stalls_midway_stock);

/*
 * The result written back after a freeze that gave up, with the argument
 * struct in a shared mapping of a file on the filesystem whose storage
 * stopped: the attempt's sync started the writeback of the struct's page
 * (the module wrote the struct once before freezing, which dirtied it), and
 * a write fault on a page under writeback waits for it (stable writes).  The
 * ioctl must still return by its deadline: the result is written without a
 * fault, or left as it was.
 */
TEST_F_TIMEOUT(nbdfs, result_in_a_mapping_on_stopped_storage, 120)
{
	const unsigned long long deadline_ms =
		tf_default_deadline_ns(TIMEOUT_MS * NSEC_PER_MSEC, RETRIES) / NSEC_PER_MSEC;
	struct timed_freeze_args *a;
	char page[4096] = { 0 };
	int fd, ret;
	pid_t pid;

	fd = openat(self->e.mfd, "args", O_RDWR | O_CREAT | O_TRUNC, 0644);
	ASSERT_LE(0, fd);
	ASSERT_EQ((ssize_t)sizeof(page), pwrite(fd, page, sizeof(page), 0));
	ASSERT_EQ(0, fsync(fd));
	a = mmap(NULL, sizeof(page), PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	close(fd);
	ASSERT_NE(MAP_FAILED, a);
	a->size = sizeof(*a);
	a->timeout_ns = TIMEOUT_MS * NSEC_PER_MSEC;
	a->retries = RETRIES;
	a->fd = self->e.mfd;
	ASSERT_EQ(0, msync(a, sizeof(page), MS_SYNC));
	ASSERT_EQ(0, syncfs(self->e.mfd));
	ASSERT_EQ(0, nbd_cmd(&self->e.nbd, 's'));
	pid = fork();
	if (pid == 0)
		_exit(ioctl(self->e.dev, TIMED_FREEZE_IOC_FREEZE, a) ? errno : 0);
	ret = tf_wait_child(pid, deadline_ms + SLACK_MS);
	if (ret < 0) {
		TH_LOG("the ioctl did not return within %llu ms: resuming the server",
		       deadline_ms + SLACK_MS);
		nbd_cmd(&self->e.nbd, 'r');
		tf_wait_child(pid, 30000);
	}
	EXPECT_EQ(ETIMEDOUT, ret);
	munmap(a, sizeof(page));
	check_after_resume(_metadata, &self->e, variant->type, NULL, 0);
}

TEST_HARNESS_MAIN
