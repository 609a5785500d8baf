// SPDX-License-Identifier: GPL-2.0
/*
 * The R->W->R chain through writeback: fsA (ext4 or xfs) sits on a loop
 * device whose image is a file on a FUSE filesystem, and the FUSE daemon,
 * to serve each WRITE, appends a line to a log on fsA (as a daemon that
 * records what it stored would).  Freezing fsA syncs it; the sync writes
 * through the loop device to the daemon; the daemon's log write waits for
 * the freeze:
 *
 *   freezer:  levels 1, 2 of fsA held; sync_filesystem(fsA) waits for ...
 *   loop:     ... a WRITE to the FUSE file, which waits for ...
 *   daemon:   ... write(fsA log), which waits for level 1.
 *
 * The stock FIFREEZE sleeps there for good (XFAIL; rescued by aborting the
 * FUSE connection, which fails the loop device's writes: data is lost).  The
 * timed freeze gives up at its deadline, releases the levels so the daemon's
 * log write gets through, and reports the writeback wait; every write of
 * the daemon dirties fsA again, so no attempt can finish (ETIMEDOUT), but
 * nothing is held afterwards, and once the daemon stops logging fsA syncs,
 * every byte is there and it checks clean.
 *
 * The daemon's log write must need nothing of fsA but the freeze level, or
 * this stack deadlocks by itself: a write that updates fsA's metadata needs
 * a journal buffer, a journal commit may be writing that very buffer, and
 * the commit's write goes through the loop device to the daemon (seen:
 * daemon in jbd2_journal_get_write_access(), jbd2 in __wait_on_buffer(),
 * with no freeze anywhere).  So the log is written ahead of time and then
 * overwritten in place (no allocation), and fsA is mounted lazytime (no
 * timestamp update in the journal).
 */
#define FUSE_USE_VERSION 31
#include <fuse.h>
#include <sys/sysmacros.h>

#include "kselftest_harness.h"
#include "tf_util.h"
#include "wedge.h"

#define DISK_SIZE	(320ULL << 20)
#define DIRTY_SIZE	(4 << 20)
#define TIMEOUT_MS	1000ULL
#define RETRIES		1
#define SLACK_MS	1500ULL
#define WATCHDOG_MS	3000
#define LOG_SIZE	(1024 * 1024)

/* --- the daemon (a forked child): one file, "disk", in its memory --- */

static char *disk;
static char log_flag[128];	/* exists: log each WRITE to log_path */
static char log_path[128];
static int log_fd = -1;
static off_t log_off;

static int d_getattr(const char *path, struct stat *st, struct fuse_file_info *fi)
{
	memset(st, 0, sizeof(*st));
	if (!strcmp(path, "/")) {
		st->st_mode = S_IFDIR | 0755;
		st->st_nlink = 2;
		return 0;
	}
	if (!strcmp(path, "/disk")) {
		st->st_mode = S_IFREG | 0644;
		st->st_nlink = 1;
		st->st_size = DISK_SIZE;
		return 0;
	}
	return -ENOENT;
}

static int d_open(const char *path, struct fuse_file_info *fi)
{
	return strcmp(path, "/disk") ? -ENOENT : 0;
}

static int d_read(const char *path, char *buf, size_t size, off_t off,
		  struct fuse_file_info *fi)
{
	if (off >= (off_t)DISK_SIZE)
		return 0;
	if (off + size > DISK_SIZE)
		size = DISK_SIZE - off;
	memcpy(buf, disk + off, size);
	return size;
}

static int d_write(const char *path, const char *buf, size_t size, off_t off,
		   struct fuse_file_info *fi)
{
	char line[64];
	off_t at;
	int n;

	if (off + size > DISK_SIZE)
		return -ENOSPC;
	memcpy(disk + off, buf, size);
	/* The daemon records what it stored, on fsA: this is the chain. */
	if (!access(log_flag, F_OK)) {
		if (log_fd < 0)
			log_fd = open(log_path, O_WRONLY);
		n = snprintf(line, sizeof(line), "stored %zu at %lld\n", size, (long long)off);
		/* In place, in the log written ahead of time: see above. */
		at = __atomic_fetch_add(&log_off, 64, __ATOMIC_RELAXED) % (LOG_SIZE - 64);
		if (log_fd < 0 || pwrite(log_fd, line, n, at) != n)
			return -EIO;
	} else if (log_fd >= 0) {
		/* Logging off: let go of fsA, so that it can be unmounted. */
		int fd = __atomic_exchange_n(&log_fd, -1, __ATOMIC_RELAXED);

		if (fd >= 0)
			close(fd);
	}
	return size;
}

static int d_fsync(const char *path, int datasync, struct fuse_file_info *fi)
{
	return 0;
}

static const struct fuse_operations d_ops = {
	.getattr = d_getattr,
	.open = d_open,
	.read = d_read,
	.write = d_write,
	.fsync = d_fsync,
};

static void daemon_main(const char *mnt)
{
	struct fuse_args args = FUSE_ARGS_INIT(0, NULL);
	struct fuse *f;

	disk = calloc(1, DISK_SIZE);
	if (!disk || fuse_opt_add_arg(&args, "tf-diskd"))
		_exit(2);
	f = fuse_new(&args, &d_ops, sizeof(d_ops), NULL);
	if (!f || fuse_mount(f, mnt))
		_exit(2);
	fuse_loop_mt(f, 0);
	_exit(0);
}

FIXTURE(chain) {
	char dir[64];
	char fuse[96];
	char mnt[96];
	char loop[64];
	int mfd;
	int dev;
	pid_t daemon;
	unsigned int fuse_conn;
	int mounted;
};

FIXTURE_VARIANT(chain) {
	const char *type;
};

FIXTURE_VARIANT_ADD(chain, ext4) {
	.type = "ext4",
};

FIXTURE_VARIANT_ADD(chain, xfs) {
	.type = "xfs",
};

FIXTURE_SETUP(chain)
{
	const char *why = tf_missing();
	struct stat st = {};
	char path[160];
	FILE *p;

	self->mfd = -1;
	self->dev = -1;
	if (why)
		SKIP(return, "%s", why);
	if (access("/dev/fuse", F_OK))
		SKIP(return, "no /dev/fuse (CONFIG_FUSE_FS)");
	if (tf_fs_missing(variant->type))
		SKIP(return, "no %s here (kernel or mkfs)", variant->type);
	self->dev = tf_open_dev();
	ASSERT_LE(0, self->dev);
	snprintf(self->dir, sizeof(self->dir), "/tmp/tfch.XXXXXX");
	ASSERT_NE(NULL, mkdtemp(self->dir));
	ASSERT_EQ(0, mount("tf-tmp", self->dir, "tmpfs", 0, "size=16m"));
	snprintf(self->fuse, sizeof(self->fuse), "%s/fuse", self->dir);
	snprintf(self->mnt, sizeof(self->mnt), "%s/mnt", self->dir);
	ASSERT_EQ(0, mkdir(self->fuse, 0755));
	ASSERT_EQ(0, mkdir(self->mnt, 0755));
	snprintf(log_flag, sizeof(log_flag), "%s/log-on", self->dir);
	snprintf(log_path, sizeof(log_path), "%s/daemon.log", self->mnt);

	self->daemon = fork();
	ASSERT_LE(0, self->daemon);
	if (self->daemon == 0) {
		for (int fd = 3; fd < 1024; fd++)
			close(fd);
		daemon_main(self->fuse);
	}
	snprintf(path, sizeof(path), "%s/disk", self->fuse);
	for (int i = 0; i < 500 && stat(path, &st); i++)
		usleep(10000);
	ASSERT_EQ((off_t)DISK_SIZE, st.st_size);
	ASSERT_EQ(0, stat(self->fuse, &st));
	self->fuse_conn = minor(st.st_dev);

	snprintf(path, sizeof(path), "losetup -f --show %s/disk", self->fuse);
	p = popen(path, "r");
	ASSERT_NE(NULL, p);
	ASSERT_NE(NULL, fgets(self->loop, sizeof(self->loop), p));
	pclose(p);
	self->loop[strcspn(self->loop, "\n")] = 0;
	ASSERT_EQ(0, tf_run(strcmp(variant->type, "xfs") ? "mkfs.ext4 -q -F %s >/dev/null 2>&1" :
			    "mkfs.xfs -q -f %s >/dev/null 2>&1", self->loop));
	ASSERT_EQ(0, mount(self->loop, self->mnt, variant->type, MS_LAZYTIME, NULL));
	self->mounted = 1;
	self->mfd = open(self->mnt, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	ASSERT_LE(0, self->mfd);
	/* The daemon's log, written ahead of time and on the storage. */
	ASSERT_EQ(0, tf_run("dd if=/dev/zero of=%s bs=1M count=%d conv=fsync status=none",
			    log_path, LOG_SIZE >> 20));
	/* From now on the daemon logs each WRITE on fsA. */
	ASSERT_EQ(0, tf_run("touch %s", log_flag));
}

/* Abort the FUSE connection: every request in flight fails. */
static int abort_fuse(unsigned int conn)
{
	char path[96];
	int fd, ret;

	mount("fusectl", "/sys/fs/fuse/connections", "fusectl", 0, NULL);
	snprintf(path, sizeof(path), "/sys/fs/fuse/connections/%u/abort", conn);
	fd = open(path, O_WRONLY);
	if (fd < 0)
		return -1;
	ret = write(fd, "1", 1) == 1 ? 0 : -1;
	close(fd);
	return ret;
}

FIXTURE_TEARDOWN(chain)
{
	tf_end_wedged(_metadata);
	if (self->dev < 0)
		return;
	unlink(log_flag);
	if (self->mfd >= 0) {
		ioctl(self->mfd, FITHAW, 0);
		close(self->mfd);
	}
	if (self->mounted)
		umount2(self->mnt, MNT_DETACH);
	if (self->loop[0])
		tf_run("losetup -d %s 2>/dev/null", self->loop);
	umount2(self->fuse, MNT_DETACH);
	if (self->daemon > 0) {
		kill(self->daemon, SIGKILL);
		waitpid(self->daemon, NULL, 0);
	}
	umount2(self->dir, MNT_DETACH);
	rmdir(self->dir);
	if (self->dev >= 0)
		close(self->dev);
}

/* A writer that needs no storage; its status within @ms, -1 if blocked. */
static int quick_writer(int dirfd, int ms)
{
	pid_t pid = fork();

	if (pid == 0) {
		int fd = openat(dirfd, "quick", O_WRONLY | O_CREAT | O_TRUNC, 0644);

		_exit(fd < 0 || write(fd, "quick\n", 6) != 6);
	}
	return tf_wait_child(pid, ms);
}

TEST_F(chain, timed_freeze_gives_up_and_holds_nothing)
{
	const unsigned long long bound = TIMEOUT_MS * (RETRIES + 1);
	struct timed_freeze_args a;
	unsigned long long t0, ms;
	int ret;

	ASSERT_EQ(0, tf_write_pattern(self->mfd, "dirty", DIRTY_SIZE));
	t0 = tf_now_ns();
	ret = tf_freeze(self->dev, self->mfd, TIMEOUT_MS * NSEC_PER_MSEC, RETRIES, 0, &a);
	ms = (tf_now_ns() - t0) / NSEC_PER_MSEC;
	TH_LOG("timed freeze: %d after %u attempts, %llu ms, gave up at wait %u",
	       ret, a.attempts, ms, a.gave_up);
	EXPECT_EQ(-ETIMEDOUT, ret);
	EXPECT_TRUE(a.gave_up == TIMED_FREEZE_WAIT_WRITEBACK ||
		    a.gave_up == TIMED_FREEZE_WAIT_JOURNAL);
	EXPECT_GE(ms, bound);
	EXPECT_LE(ms, bound + SLACK_MS);
	EXPECT_EQ(0, quick_writer(self->mfd, 2000));

	/* The daemon stops logging: fsA syncs, everything is there, fsck clean. */
	ASSERT_EQ(0, unlink(log_flag));
	EXPECT_EQ(0, syncfs(self->mfd));
	/* One more write through the daemon: it closes its log. */
	EXPECT_EQ(0, tf_wait_child(tf_write_child(self->mfd, "last", "last\n"), 10000));
	EXPECT_EQ(0, tf_run("echo 3 > /proc/sys/vm/drop_caches"));
	EXPECT_TRUE(tf_pattern_is_there(self->mfd, "dirty", DIRTY_SIZE));
	close(self->mfd);
	self->mfd = -1;
	ASSERT_EQ(0, umount2(self->mnt, 0));
	self->mounted = 0;
	for (int i = 0; i < 100; i++) {
		int fd = open(self->loop, O_RDONLY | O_EXCL);

		if (fd >= 0) {
			close(fd);
			break;
		}
		usleep(50 * 1000);
	}
	EXPECT_EQ(0, tf_run(strcmp(variant->type, "xfs") ? "e2fsck -fn %s >/dev/null 2>&1" :
			    "xfs_repair -n %s >/dev/null 2>&1", self->loop));
}

TEST_F_TIMEOUT(chain, stock_fifreeze, 120)
{
	pid_t freezer;
	int returned;

	ASSERT_EQ(0, tf_write_pattern(self->mfd, "dirty", DIRTY_SIZE));
	freezer = fork();
	ASSERT_LE(0, freezer);
	if (freezer == 0)
		_exit(ioctl(self->mfd, FIFREEZE, 0) ? errno : 0);
	returned = tf_wait_child(freezer, WATCHDOG_MS);
	TH_LOG("stock FIFREEZE %s within %d ms; a new writer %s", returned < 0 ?
	       "did not return" : "returned", WATCHDOG_MS,
	       quick_writer(self->mfd, 500) < 0 ? "is blocked" : "got through");
	if (returned < 0)
		tf_wedged("stock FIFREEZE did not return within %d ms", WATCHDOG_MS);
	/* Rescue: abort FUSE; the loop device's writes fail, the sync ends. */
	if (returned < 0) {
		ASSERT_EQ(0, abort_fuse(self->fuse_conn));
		returned = tf_wait_child(freezer, 10000);
		TH_LOG("rescued: FIFREEZE returned %d (the fs lost writes)", returned);
		ASSERT_LE(0, returned);
		ioctl(self->mfd, FITHAW, 0);
	}
}

XFAIL_ADD(chain, ext4, stock_fifreeze);
XFAIL_ADD(chain, xfs, stock_fifreeze);

TEST_HARNESS_MAIN
