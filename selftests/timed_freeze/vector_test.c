// SPDX-License-Identifier: GPL-2.0
/*
 * The deadlock vector of the linux-fsdevel thread, for real, with FUSE
 * and with NBD:
 *
 *   thread A:  write(fsA_fd, mmap(fsB_file))   holds fsA SB_FREEZE_WRITE,
 *                                              faults on fsB -> FUSE READ
 *   freezer:   freeze fsA                      waits for A, blocks writers
 *   daemon:    READ handler: write(fsA_fd2)    blocks behind the freezer
 *
 * fsA is ext4 or xfs on a loop device.  fsB is a FUSE filesystem served
 * by a daemon forked here (libfuse3), or ext4 on /dev/nbd0 served over a
 * socketpair by a server forked here; the daemon's first read (after the
 * test arms it, for NBD) is the daemon's part of vector.h.  The stock
 * FIFREEZE wedges on this (shown with FUSE); the timed freeze times out,
 * undoes itself so the daemon's write gets through, and succeeds on its
 * retry.
 */
#define FUSE_USE_VERSION 31
#include <fuse.h>
#include <stdarg.h>
#include <sys/sysmacros.h>

#include "kselftest_harness.h"
#include "nbd.h"
#include "tf_util.h"
#include "vector.h"

/* How long the stock FIFREEZE gets before we call it wedged. */
#define WATCHDOG_MS	3000

/* --- the daemon (a forked child) --- */

static struct daemon_ctl *dctl;

static int d_getattr(const char *path, struct stat *st, struct fuse_file_info *fi)
{
	memset(st, 0, sizeof(*st));
	if (!strcmp(path, "/")) {
		st->st_mode = S_IFDIR | 0755;
		st->st_nlink = 2;
		return 0;
	}
	if (!strcmp(path, "/data")) {
		st->st_mode = S_IFREG | 0444;
		st->st_nlink = 1;
		st->st_size = FILE_SIZE;
		return 0;
	}
	return -ENOENT;
}

static int d_open(const char *path, struct fuse_file_info *fi)
{
	if (strcmp(path, "/data"))
		return -ENOENT;
	return (fi->flags & O_ACCMODE) == O_RDONLY ? 0 : -EACCES;
}

static int d_read(const char *path, char *buf, size_t size, off_t off,
		  struct fuse_file_info *fi)
{
	static int first = 1;

	/* Only the first READ takes part in the vector; the rest answer. */
	if (__atomic_exchange_n(&first, 0, __ATOMIC_SEQ_CST) && vector_daemon_step(dctl))
		return -EIO;
	if (off >= FILE_SIZE)
		return 0;
	if (off + size > FILE_SIZE)
		size = FILE_SIZE - off;
	fill_pattern(buf, off, size);
	return size;
}

static const struct fuse_operations d_ops = {
	.getattr = d_getattr,
	.open = d_open,
	.read = d_read,
};

static void daemon_main(const char *mnt)
{
	struct fuse_args args = FUSE_ARGS_INIT(0, NULL);
	struct fuse *f;

	if (fuse_opt_add_arg(&args, "tf-fused"))
		_exit(2);
	f = fuse_new(&args, &d_ops, sizeof(d_ops), NULL);
	if (!f || fuse_mount(f, mnt))
		_exit(2);
	/*
	 * Multi-threaded, as real daemons are: other requests (FLUSH from a
	 * forked child closing its copy of a FUSE file) are answered while
	 * the first READ waits.
	 */
	fuse_loop_mt(f, 0);
	fuse_unmount(f);
	fuse_destroy(f);
	_exit(0);
}

FIXTURE(vec) {
	struct tf_fs fs;
	struct daemon_ctl ctl;
	struct vec v;
	pid_t daemon;
	pthread_t a;
	int a_started;
	unsigned int fuse_conn;	/* /sys/fs/fuse/connections/N */
	struct nbd_srv nbd;	/* fsB on NBD: its server */
};

FIXTURE_VARIANT(vec) {
	const char *type;	/* fsA */
	int nbd;		/* fsB: 0 FUSE, 1 ext4 on NBD */
};

FIXTURE_VARIANT_ADD(vec, ext4) {
	.type = "ext4",
};

FIXTURE_VARIANT_ADD(vec, xfs) {
	.type = "xfs",
};

FIXTURE_VARIANT_ADD(vec, ext4_nbd) {
	.type = "ext4",
	.nbd = 1,
};

FIXTURE_VARIANT_ADD(vec, xfs_nbd) {
	.type = "xfs",
	.nbd = 1,
};

/* --- NBD: fsB is ext4 on /dev/nbd0, served by nbd.h's server --- */

#define NBD_DEV		"/dev/nbd0"
#define NBD_IMG_SIZE	(16 << 20)

/* The server's READ hook, once armed: the daemon's part of the vector. */
static int nbd_vector_step(void *arg)
{
	return vector_daemon_step(arg);
}

/* The image (with the pattern file), the server, /dev/nbd0 mounted. */
static int nbd_setup(struct _test_data_vec *self)
{
	char src[160], img[160], path[192];
	int fd, ret = -1;
	char *buf;

	snprintf(src, sizeof(src), "%s/src", self->fs.dir);
	snprintf(img, sizeof(img), "%s/fsb.img", self->fs.dir);
	snprintf(path, sizeof(path), "%s/data", src);
	buf = malloc(FILE_SIZE);
	if (!buf || mkdir(src, 0755))
		return -1;
	fill_pattern(buf, 0, FILE_SIZE);
	fd = open(path, O_WRONLY | O_CREAT, 0444);
	if (fd < 0 || write(fd, buf, FILE_SIZE) != FILE_SIZE)
		return -1;
	close(fd);
	free(buf);
	if (tf_run("truncate -s %d %s && mkfs.ext4 -q -F -b %d -d %s %s >/dev/null 2>&1",
		   NBD_IMG_SIZE, img, NBD_BLKSIZE, src, img))
		return -1;

	{
		const int keep[] = { self->ctl.evt[1], self->ctl.go[0], self->ctl.ans[0], -1 };

		self->nbd.dev = NBD_DEV;
		self->nbd.on_read = nbd_vector_step;
		self->nbd.on_read_arg = &self->ctl;
		if (nbd_start(&self->nbd, NBD_IMG_SIZE, img, keep))
			return -1;
	}
	for (int i = 0; i < 500 && ret; i++) {
		ret = mount(NBD_DEV, self->v.src_mnt, "ext4", MS_RDONLY, "noload");
		if (ret)
			usleep(10000);
	}
	return ret;
}

/* fsA of @type, the daemon and fsB (FUSE, or ext4 on NBD); 0 or -1. */
static int vector_setup(struct _test_data_vec *self, const char *type, int nbd)
{
	struct stat st = {};

	if (tf_fs_setup(&self->fs, type))
		return -1;
	self->v.dev = tf_open_dev();
	if (self->v.dev < 0)
		return -1;
	self->v.mfd = self->fs.mfd;
	snprintf(self->v.src_mnt, sizeof(self->v.src_mnt), "%s/fsb", self->fs.dir);
	snprintf(self->ctl.fsa_file, sizeof(self->ctl.fsa_file), "%s/daemon", self->fs.mnt);
	if (mkdir(self->v.src_mnt, 0755) || pipe2(self->ctl.evt, O_NONBLOCK) ||
	    pipe(self->ctl.go) || pipe(self->ctl.ans))
		return -1;
	if (nbd)
		return nbd_setup(self);

	self->daemon = fork();
	if (self->daemon < 0)
		return -1;
	if (self->daemon == 0) {
		/* Hold nothing of the test's open: fsA must unmount later. */
		for (int fd = 3; fd < 1024; fd++)
			if (fd != self->ctl.evt[1] && fd != self->ctl.go[0] &&
			    fd != self->ctl.ans[0])
				close(fd);
		dctl = &self->ctl;
		daemon_main(self->v.src_mnt);
	}
	for (int i = 0; i < 500; i++) {
		char path[160];

		snprintf(path, sizeof(path), "%s/data", self->v.src_mnt);
		if (!stat(path, &st) && st.st_size == FILE_SIZE)
			break;
		usleep(10000);
	}
	/* Now: once the vector is set up, a stat() of the mount may wedge. */
	if (st.st_size != FILE_SIZE || stat(self->v.src_mnt, &st))
		return -1;
	self->fuse_conn = minor(st.st_dev);
	return 0;
}

static void vector_teardown(struct _test_data_vec *self)
{
	ioctl(self->fs.mfd, FITHAW, 0);
	send_byte(self->ctl.go[1]);
	send_byte(self->ctl.ans[1]);
	if (self->a_started)
		pthread_join(self->a, NULL);
	umount2(self->v.src_mnt, MNT_DETACH);
	nbd_stop(&self->nbd);
	/* The FUSE daemon (the NBD server is nbd_stop()'s); 0 would be our group. */
	if (self->daemon > 0) {
		kill(self->daemon, SIGKILL);
		waitpid(self->daemon, NULL, 0);
	}
	close(self->v.dev);
	tf_fs_teardown(&self->fs);
}

/* Abort the FUSE connection: every request in flight fails. */
static int abort_fuse(struct _test_data_vec *self)
{
	char path[96];
	int fd, ret;

	mount("fusectl", "/sys/fs/fuse/connections", "fusectl", 0, NULL);
	snprintf(path, sizeof(path), "/sys/fs/fuse/connections/%u/abort", self->fuse_conn);
	fd = open(path, O_WRONLY);
	if (fd < 0)
		return -1;
	ret = write(fd, "1", 1) == 1 ? 0 : -1;
	close(fd);
	return ret;
}

FIXTURE_SETUP(vec)
{
	ASSERT_EQ(0, vector_setup(self, variant->type, variant->nbd));
}

FIXTURE_TEARDOWN(vec)
{
	vector_teardown(self);
}

/* Thread A in the write, its fault in the daemon's READ handler. */
static int start_thread_a(struct _test_data_vec *self)
{
	char path[192];
	struct stat st;

	/* NBD: read the inode now; the next READ is then A's data. */
	snprintf(path, sizeof(path), "%s/data", self->v.src_mnt);
	if (stat(path, &st) || (self->nbd.pid > 0 && nbd_cmd(&self->nbd, 'v')))
		return -1;
	if (pthread_create(&self->a, NULL, thread_a, &self->v))
		return -1;
	self->a_started = 1;
	return wait_event(self->ctl.evt[0], 'r', 10000) ? 0 : -1;
}

/*
 * The vector against the timed freeze: A in its fault, the freezer
 * started, then the daemon told to write to fsA (and, with @answer, to
 * answer once its write got through).  Returns when the freeze returned.
 */
static int timed_vector(struct _test_data_vec *self, unsigned long long timeout_ms,
			unsigned int retries, int answer)
{
	pthread_t fr;

	if (start_thread_a(self))
		return -1;
	self->v.timeout_ms = timeout_ms;
	self->v.retries = retries;
	if (pthread_create(&fr, NULL, thread_freezer, &self->v))
		return -1;
	usleep(150 * 1000);	/* the freezer now waits for A */
	if (send_byte(self->ctl.go[1]) || (answer && send_byte(self->ctl.ans[1])))
		return -1;
	return pthread_join(fr, NULL);
}

#ifndef TF_DEMO

/* After a case: A's data is exact, the fs checks clean, nobody is in D. */
static void check_integrity(struct __test_metadata *_metadata,
			    struct _test_data_vec *self, const char *type, int data)
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

TEST_F(vec, timed_freeze_breaks_the_chain)
{
	const unsigned long long timeout_ms = 1000;
	pid_t pid;

	ASSERT_EQ(0, timed_vector(self, timeout_ms, 2, 1));
	TH_LOG("freeze: %d after %u attempts, %llu ms (timed out at level %u, %llu writer(s))",
	       self->v.freeze_ret, self->v.args.attempts,
	       self->v.args.elapsed_ns / NSEC_PER_MSEC, self->v.args.timed_out_level,
	       (unsigned long long)self->v.args.writers_inside);
	ASSERT_EQ(0, self->v.freeze_ret);
	/* The first attempt timed out on the vector; the retry succeeded. */
	EXPECT_EQ(2U, self->v.args.attempts);
	EXPECT_EQ(1U, self->v.args.timed_out_level);
	/*
	 * Thread A, counted while the level was still blocked: the undo then
	 * hands the level to the blocked daemon, which would count too.
	 */
	EXPECT_EQ(1ULL, self->v.args.writers_inside);
	EXPECT_GE(self->v.args.elapsed_ns / NSEC_PER_MSEC, timeout_ms);
	EXPECT_LE(self->v.args.elapsed_ns / NSEC_PER_MSEC, timeout_ms + SLACK_MS);
	EXPECT_TRUE(wait_event(self->ctl.evt[0], 'w', 1000));

	/* fsA is really frozen now ... */
	pid = tf_write_child(self->fs.mfd, "probe", "probe\n");
	EXPECT_EQ(-1, tf_wait_child(pid, 300));
	ASSERT_EQ(0, ioctl(self->fs.mfd, FITHAW, 0));
	EXPECT_EQ(0, tf_wait_child(pid, 5000));

	pthread_join(self->a, NULL);
	self->a_started = 0;
	check_integrity(_metadata, self, variant->type, 1);
}

TEST_F(vec, held_daemon_times_out_unfrozen)
{
	const unsigned long long timeout_ms = 300;
	pid_t pid;

	/* The daemon holds its answer until told. */
	ASSERT_EQ(0, timed_vector(self, timeout_ms, 2, 0));
	TH_LOG("freeze: %d after %u attempts, %llu ms (bound [%llu, %llu])",
	       self->v.freeze_ret, self->v.args.attempts,
	       self->v.args.elapsed_ns / NSEC_PER_MSEC, 3 * timeout_ms,
	       3 * timeout_ms + SLACK_MS);
	EXPECT_EQ(-ETIMEDOUT, self->v.freeze_ret);
	EXPECT_EQ(3U, self->v.args.attempts);
	EXPECT_EQ(TIMED_FREEZE_WAIT_LEVEL_WRITE, self->v.args.gave_up);
	EXPECT_EQ(1ULL, self->v.args.writers_inside);
	EXPECT_GE(self->v.args.elapsed_ns / NSEC_PER_MSEC, 3 * timeout_ms);
	EXPECT_LE(self->v.args.elapsed_ns / NSEC_PER_MSEC, 3 * timeout_ms + SLACK_MS);
	/* The undo let the daemon's write through ... */
	EXPECT_TRUE(wait_event(self->ctl.evt[0], 'w', 1000));
	/* ... and left fsA unfrozen and writable. */
	pid = tf_write_child(self->fs.mfd, "probe", "probe\n");
	EXPECT_EQ(0, tf_wait_child(pid, 5000));

	/* Released, the daemon answers and everything completes. */
	ASSERT_EQ(0, send_byte(self->ctl.ans[1]));
	pthread_join(self->a, NULL);
	self->a_started = 0;
	check_integrity(_metadata, self, variant->type, 1);
}

/*
 * The stock path: FIFREEZE on the same vector does not return.  The
 * expectation "returns within the watchdog" fails (reported as XFAIL), then
 * the system is rescued by aborting the FUSE connection.
 */
TEST_F_TIMEOUT(vec, stock_fifreeze, 120)
{
	pid_t freezer;
	int returned;

	if (variant->nbd)
		SKIP(return, "the stock path is shown with FUSE");
	ASSERT_EQ(0, send_byte(self->ctl.ans[1]));
	ASSERT_EQ(0, start_thread_a(self));
	freezer = fork();
	ASSERT_LE(0, freezer);
	if (freezer == 0)
		_exit(ioctl(self->fs.mfd, FIFREEZE, 0) ? 1 : 0);
	usleep(150 * 1000);
	ASSERT_EQ(0, send_byte(self->ctl.go[1]));

	returned = tf_wait_child(freezer, WATCHDOG_MS);
	TH_LOG("stock FIFREEZE %s within %d ms; daemon's write %s",
	       returned < 0 ? "did not return" : "returned", WATCHDOG_MS,
	       wait_event(self->ctl.evt[0], 'w', 10) ? "done" : "blocked");
	EXPECT_LE(0, returned);

	/* Rescue: abort the FUSE connection; A's fault fails, A leaves. */
	ASSERT_EQ(0, abort_fuse(self));
	pthread_join(self->a, NULL);
	self->a_started = 0;
	TH_LOG("rescued: thread A's write returned %zd", self->v.a_ret);
	/* The freeze then completes; thawing lets the daemon finish. */
	if (returned < 0)
		ASSERT_EQ(0, tf_wait_child(freezer, 5000));
	ASSERT_EQ(0, ioctl(self->fs.mfd, FITHAW, 0));
	ASSERT_TRUE(wait_event(self->ctl.evt[0], 'w', 5000));
	/* A's data is lost (that is the rescue), but fsA is clean. */
	check_integrity(_metadata, self, variant->type, 0);
}

XFAIL_ADD(vec, ext4, stock_fifreeze);
XFAIL_ADD(vec, xfs, stock_fifreeze);

TEST_HARNESS_MAIN

#else /* TF_DEMO: `make demo` tells the same story to a person. */

static double ms_since(unsigned long long t0)
{
	return (tf_now_ns() - t0) / 1e6;
}

static void say(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	putchar('\n');
	fflush(stdout);
}

/* Thread A in its write, faulting on fsB; the daemon holds the fault. */
static int demo_start(struct _test_data_vec *self, const char *type)
{
	if (vector_setup(self, type, 0)) {
		say("  set-up failed: %s", strerror(errno));
		return -1;
	}
	say("  fsA: a fresh %s on a loop device, mounted at %s", type, self->fs.mnt);
	say("  fsB: a FUSE filesystem at %s, served by a daemon (pid %d)",
	    self->v.src_mnt, self->daemon);
	if (send_byte(self->ctl.ans[1]) || start_thread_a(self)) {
		say("  thread A did not reach the daemon");
		return -1;
	}
	say("  thread A: write(fsA file, mmap(fsB file)) - its page fault is now");
	say("            a READ request in the daemon, and A holds fsA's freeze lock");
	return 0;
}

static int demo_stock(void)
{
	FIXTURE_DATA(vec) self = {};
	unsigned long long t0;
	pid_t freezer;
	int ret = 1;

	say("\n== 1. The stock freeze (FIFREEZE, as fsfreeze -f does)\n");
	if (demo_start(&self, "ext4"))
		goto out;
	t0 = tf_now_ns();
	freezer = fork();
	if (freezer == 0)
		_exit(ioctl(self.fs.mfd, FIFREEZE, 0) ? 1 : 0);
	usleep(150 * 1000);
	say("  freezer:  FIFREEZE on fsA - waits for A to leave, and blocks new writers");
	send_byte(self.ctl.go[1]);
	say("  daemon:   to answer A's read, writes to fsA - and blocks behind the freezer");
	if (tf_wait_child(freezer, WATCHDOG_MS) >= 0) {
		say("  FIFREEZE returned: the vector did not form (unexpected)");
		goto out;
	}
	say("  after %.0f ms: FIFREEZE has not returned, the daemon's write %s,",
	    ms_since(t0), wait_event(self.ctl.evt[0], 'w', 10) ? "went through (?)" : "is stuck");
	say("  and A waits for the daemon: A -> daemon -> freezer -> A. Deadlock.");
	say("  Rescue: abort the FUSE connection (/sys/fs/fuse/connections/%u/abort).",
	    self.fuse_conn);
	if (abort_fuse(&self))
		goto out;
	pthread_join(self.a, NULL);
	self.a_started = 0;
	say("  thread A's write failed (%s): its data is lost.", strerror(-self.v.a_ret));
	if (tf_wait_child(freezer, 5000) != 0 || ioctl(self.fs.mfd, FITHAW, 0))
		goto out;
	say("  Only then could the freeze complete; thawed.");
	ret = 0;
out:
	vector_teardown(&self);
	return ret;
}

static int demo_timed(void)
{
	FIXTURE_DATA(vec) self = {};
	unsigned long long t0;
	pthread_t fr;
	pid_t probe;
	int ret = 1;

	say("\n== 2. The timed freeze (/dev/timed-freeze, timeout 1 s, 2 retries)\n");
	if (demo_start(&self, "ext4"))
		goto out;
	self.v.timeout_ms = 1000;
	self.v.retries = 2;
	t0 = tf_now_ns();
	pthread_create(&fr, NULL, thread_freezer, &self.v);
	usleep(150 * 1000);
	say("  freezer:  TIMED_FREEZE_IOC_FREEZE on fsA - waits for A, blocks new writers");
	send_byte(self.ctl.go[1]);
	say("  daemon:   writes to fsA - blocked, for now");
	if (wait_event(self.ctl.evt[0], 'w', 5000))
		say("  after %.0f ms: attempt 1 timed out and undid itself;\n"
		    "            the daemon's write went through", ms_since(t0));
	pthread_join(fr, NULL);
	if (self.v.freeze_ret) {
		say("  freeze failed: %s", strerror(-self.v.freeze_ret));
		goto out;
	}
	say("  the daemon answered A, A left, and attempt %u froze fsA:",
	    self.v.args.attempts);
	say("  FREEZE returned 0 after %u attempts, %llu ms (attempt 1 timed out at level %u",
	    self.v.args.attempts, self.v.args.elapsed_ns / NSEC_PER_MSEC,
	    self.v.args.timed_out_level);
	say("  with %llu writer(s) inside).", (unsigned long long)self.v.args.writers_inside);
	probe = tf_write_child(self.fs.mfd, "probe", "probe\n");
	say("  fsA is really frozen: a new writer %s;",
	    tf_wait_child(probe, 300) < 0 ? "waits" : "got through (?)");
	if (ioctl(self.fs.mfd, FITHAW, 0) || tf_wait_child(probe, 5000) != 0)
		goto out;
	say("  FITHAW: it completes.");
	pthread_join(self.a, NULL);
	self.a_started = 0;
	say("  thread A's write: %zd bytes, %s the FUSE file.", self.v.a_ret,
	    self.v.a_ret == FILE_SIZE && dest_is_right(self.fs.mfd) ?
	    "identical to" : "NOT identical to");
	ret = !(self.v.a_ret == FILE_SIZE && dest_is_right(self.fs.mfd));
out:
	vector_teardown(&self);
	return ret;
}

int main(void)
{
	int stock, timed;

	say("The deadlock vector of the linux-fsdevel thread, for real:");
	say("a writer to fsA faults on a FUSE file (fsB) while the FUSE daemon");
	say("needs to write to fsA, and somebody freezes fsA in between.");
	stock = demo_stock();
	timed = demo_timed();
	say("\n== Summary: stock freeze %s; timed freeze %s.",
	    stock ? "could not be shown" : "wedged until rescued, data lost",
	    timed ? "FAILED" : "froze fsA on its retry, nothing lost");
	return stock || timed;
}

#endif /* TF_DEMO */
