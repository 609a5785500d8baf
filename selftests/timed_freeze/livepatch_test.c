// SPDX-License-Identifier: GPL-2.0
/*
 * The system-wide mode (timed_freeze_livepatch.ko): its live patch gives
 * every caller of freeze_super() the deadline, so the deadlock vectors of
 * vector_test.c (FUSE, NBD, EROFS under a fanotify HSM daemon) are tried
 * against the tools people run, with no change to them:
 *
 *   plain FIFREEZE and fsfreeze -f: the chain breaks and the retry
 *   freezes; with the daemon holding its answer, ETIMEDOUT ("Connection
 *   timed out") in bounded time, nothing frozen, nothing lost;
 *   dmsetup suspend of a dm-linear device under fsA: an error in bounded
 *   time instead of a hang, the device not left suspended;
 *   disabling the patch while a freeze waits in it: the transition ends
 *   once that freeze returned, and the module unloads;
 *   the mode off (timeout_ms=0) or the patch gone: today's behaviour,
 *   FIFREEZE and the dm suspend wedge (XFAIL, then rescued).
 *
 * The module is used when loaded, else loaded from $TF_KLP_MODULE (the
 * .ko's path); without either, or without CONFIG_LIVEPATCH, it skips.  A
 * case may disable and unload it; the next case loads it again.  It
 * changes what every freeze on the machine does while it runs: not for
 * the run_tests list (selftests/run runs it last).
 */
#include <sys/wait.h>

#include "vector_test.h"

#define KLP_NAME	"timed_freeze_livepatch"
#define KLP_SYSFS	"/sys/kernel/livepatch/" KLP_NAME
#define KLP_PARAMS	"/sys/module/" KLP_NAME "/parameters"
#define KLP_STATS	"/sys/kernel/debug/" KLP_NAME "/stats"

/* How long a disabled patch may take to go (its transition, then sysfs). */
#define KLP_SETTLE_MS	15000

/* Wait up to @ms for the patch's transition to end; 0 or -1. */
static int klp_settled(int ms)
{
	char buf[8];

	for (int i = 0; i <= ms / 20; i++) {
		if (!tf_read_str(KLP_SYSFS "/transition", buf, sizeof(buf)) &&
		    !strcmp(buf, "0"))
			return 0;
		usleep(20 * 1000);
	}
	return -1;
}

/* Wait up to @ms for the disabled patch's directory to go; 0 or -1. */
static int klp_gone(int ms)
{
	for (int i = 0; i <= ms / 20; i++) {
		if (access(KLP_SYSFS, F_OK))
			return 0;
		usleep(20 * 1000);
	}
	return -1;
}

/* Disable the patch, wait until it is gone, unload the module; 0 or -1. */
static int klp_unload(void)
{
	if (!access(KLP_SYSFS, F_OK) &&
	    (tf_write_str(KLP_SYSFS "/enabled", "0\n") || klp_gone(KLP_SETTLE_MS)))
		return -1;
	/* The patch lets go of its module reference after its sysfs entry. */
	for (int i = 0; i < 100; i++) {
		if (access("/sys/module/" KLP_NAME, F_OK) ||
		    !tf_run("rmmod " KLP_NAME " 2>/dev/null"))
			return 0;
		usleep(50 * 1000);
	}
	return -1;
}

/* Why the mode cannot be tried here, or NULL once it is loaded and settled. */
static const char *klp_missing(struct __test_metadata *_metadata)
{
	const char *ko = getenv("TF_KLP_MODULE");

	if (!access(KLP_SYSFS, F_OK))
		return klp_settled(KLP_SETTLE_MS) ? "the live patch's transition does not end" :
						    NULL;
	if (access("/sys/kernel/livepatch", F_OK))
		return "no live patching in this kernel (CONFIG_LIVEPATCH)";
	if (!ko)
		return KLP_NAME " not loaded (TF_KLP_MODULE: its .ko, to load it)";
	/* Loaded with its patch disabled (by a case before): load it again. */
	EXPECT_EQ(0, klp_unload());
	EXPECT_EQ(0, tf_run("insmod %s", ko)) TH_LOG("insmod %s failed", ko);
	EXPECT_EQ(0, klp_settled(KLP_SETTLE_MS));
	return NULL;
}

static int klp_param_set(const char *name, const char *val)
{
	char path[128];

	snprintf(path, sizeof(path), KLP_PARAMS "/%s", name);
	return tf_write_str(path, val);
}

static void klp_param_get(const char *name, char *buf, size_t n)
{
	char path[128];

	snprintf(path, sizeof(path), KLP_PARAMS "/%s", name);
	if (tf_read_str(path, buf, n))
		buf[0] = '\0';
}

/* The deadline and retries of every FIFREEZE and bdev_freeze(). */
static void klp_set(struct __test_metadata *_metadata, unsigned int ms,
		    unsigned int retries)
{
	char v[32], got[32];

	snprintf(v, sizeof(v), "%u\n", ms);
	ASSERT_EQ(0, klp_param_set("timeout_ms", v));
	snprintf(v, sizeof(v), "%u\n", retries);
	ASSERT_EQ(0, klp_param_set("retries", v));
	ASSERT_EQ(0, klp_param_set("holders", "fifreeze,bdev\n"));
	klp_param_get("timeout_ms", got, sizeof(got));
	ASSERT_EQ(ms, strtoul(got, NULL, 10));
}

static long long klp_stat(const char *key)
{
	return tf_stat_in(KLP_STATS, key);
}

/* The vector, fsA on a dm-linear device when @dm names one, and the mode. */
struct klp_env {
	struct vec_env e;
	char saved[3][32];	/* timeout_ms, retries, holders; empty: not loaded */
};

static const char *const klp_params[] = { "timeout_ms", "retries", "holders" };

/*
 * The vector of @type and @kind (on the dm device @dm when not NULL), and,
 * with @load, the module loaded (again, when a case before unloaded it).
 */
static void klp_env_setup(struct __test_metadata *_metadata, struct klp_env *k,
			  const char *type, enum vec_kind kind, const char *dm, bool load)
{
	const char *why = vector_missing(type, kind);
	int ret;

	k->e.v.dev = -1;
	if (why)
		SKIP(return, "%s", why);
	if (dm && tf_run("command -v dmsetup >/dev/null"))
		SKIP(return, "no dmsetup");
	if (access("/sys/kernel/livepatch", F_OK))
		SKIP(return, "no live patching in this kernel (CONFIG_LIVEPATCH)");
	if (load) {
		why = klp_missing(_metadata);
		if (why)
			SKIP(return, "%s", why);
		ASSERT_EQ(0, access(KLP_SYSFS, F_OK));
		for (int i = 0; i < 3; i++)
			klp_param_get(klp_params[i], k->saved[i], sizeof(k->saved[i]));
	}
	k->e.fs.dm = dm;
	ret = vector_setup(&k->e, type, kind);
	if (ret && k->e.why)
		SKIP(return, "%s", k->e.why);
	ASSERT_EQ(0, ret);
	/* The vector is against the kernel's FIFREEZE, not the device's ioctl. */
	if (k->e.v.dev >= 0)
		close(k->e.v.dev);
	k->e.v.dev = -1;
}

static void klp_env_teardown(struct __test_metadata *_metadata, struct klp_env *k)
{
	/* The teardown thaws: a deadline must not be left to end its freeze. */
	vector_teardown(&k->e);
	if (!access(KLP_PARAMS, F_OK))
		for (int i = 0; i < 3; i++)
			if (k->saved[i][0])
				klp_param_set(klp_params[i], k->saved[i]);
	tf_end_wedged(_metadata);
}

/* Start @argv with its stderr into a pipe, *@errfd; its pid, or -1. */
static pid_t spawn(const char *const argv[], int *errfd)
{
	int pfd[2];
	pid_t pid;

	if (pipe(pfd))
		return -1;
	pid = fork();
	if (pid == 0) {
		dup2(pfd[1], 2);
		close(pfd[0]);
		close(pfd[1]);
		execvp(argv[0], (char *const *)argv);
		_exit(127);
	}
	close(pfd[1]);
	*errfd = pfd[0];
	return pid;
}

/* The first line of what spawn()'s child wrote to stderr, in @err; closes @errfd. */
static void spawn_stderr(int errfd, char *err, size_t n)
{
	ssize_t len = read(errfd, err, n - 1);

	err[len > 0 ? len : 0] = '\0';
	err[strcspn(err, "\n")] = '\0';
	close(errfd);
}

/*
 * Wait up to @ms for @pid of spawn(); its exit status, or -1 when it is
 * still running.  Its stderr's first line in @err once it ended.
 */
static int spawn_wait(pid_t pid, int errfd, int ms, char *err, size_t n)
{
	int st = tf_wait_child(pid, ms);

	err[0] = '\0';
	if (st >= 0)
		spawn_stderr(errfd, err, n);
	else
		close(errfd);
	return st;
}

FIXTURE(klp) {
	struct klp_env k;
};

FIXTURE_VARIANT(klp) {
	const char *type;	/* fsA */
	enum vec_kind kind;	/* fsB */
};

FIXTURE_VARIANT_ADD(klp, ext4) {
	.type = "ext4",
};

FIXTURE_VARIANT_ADD(klp, xfs) {
	.type = "xfs",
};

FIXTURE_VARIANT_ADD(klp, ext4_nbd) {
	.type = "ext4",
	.kind = VEC_NBD,
};

FIXTURE_VARIANT_ADD(klp, xfs_nbd) {
	.type = "xfs",
	.kind = VEC_NBD,
};

FIXTURE_VARIANT_ADD(klp, ext4_erofs) {
	.type = "ext4",
	.kind = VEC_EROFS,
};

FIXTURE_VARIANT_ADD(klp, xfs_erofs) {
	.type = "xfs",
	.kind = VEC_EROFS,
};

FIXTURE_SETUP(klp)
{
	klp_env_setup(_metadata, &self->k, variant->type, variant->kind, NULL, true);
}

FIXTURE_TEARDOWN(klp)
{
	klp_env_teardown(_metadata, &self->k);
}

/* The chain breaks: plain FIFREEZE returns 0 after about one timeout. */
TEST_F_TIMEOUT(klp, fifreeze_breaks_the_chain, 120)
{
	long long frozen = klp_stat("frozen_after_undo");

	klp_set(_metadata, 1000, 2);
	plain_breaks_the_chain(_metadata, &self->k.e, variant->type, variant->kind, 1000);
	EXPECT_EQ(frozen + 1, klp_stat("frozen_after_undo"));
}

/*
 * The daemon holds its answer: FIFREEZE fails with ETIMEDOUT at its
 * deadline (3 x 300 ms + 2 x 10 ms) after two attempts (the retry policy
 * waited for thread A in between), nothing frozen; the counter and the log
 * line say who gave up.
 */
TEST_F_TIMEOUT(klp, fifreeze_held_daemon_times_out_unfrozen, 120)
{
	long long timeouts = klp_stat("timeouts_fifreeze");
	char line[128];

	klp_set(_metadata, 300, 2);
	plain_held_daemon_times_out(_metadata, &self->k.e, variant->type, variant->kind,
				    300, 3);
	EXPECT_EQ(timeouts + 1, klp_stat("timeouts_fifreeze"));
	/* The freezer was a thread of this program. */
	snprintf(line, sizeof(line), "FIFREEZE freeze of %s (.*) by livepatch_test.%d. gave up: 2 ",
		 variant->type, getpid());
	EXPECT_EQ(0, tf_run("dmesg | tail -n 200 | grep -q '%s'", line)) TH_LOG("no line %s", line);
}

/* A fatal signal ends the wait in the patched freeze_super() at once. */
TEST_F_TIMEOUT(klp, fifreeze_killed_while_waiting, 120)
{
	klp_set(_metadata, 60000, 0);
	plain_killed_while_waiting(_metadata, &self->k.e, variant->type, variant->kind);
}

/*
 * fsfreeze -f on the vector: the freezer is util-linux's, waiting until it
 * blocks fsA's writers; then the daemon writes and, with @answer, answers.
 * Its exit status, *@ms and its stderr in @err; *@probe is the hung probe.
 */
static int fsfreeze_vector(struct vec_env *e, int answer, unsigned long long *ms,
			   char *err, size_t n, pid_t *probe)
{
	const char *const argv[] = { "fsfreeze", "-f", e->fs.mnt, NULL };
	unsigned long long t0;
	int errfd, st = -2;
	pid_t pid;

	if (start_thread_a(e))
		return -2;
	t0 = tf_now_ns();
	pid = spawn(argv, &errfd);
	if (pid < 0)
		return -2;
	*probe = wait_writers_blocked(e);
	if (*probe >= 0 && !send_byte(e->ctl.go[1]) && (!answer || !send_byte(e->ctl.ans[1])))
		st = tf_wait_child(pid, 30000);
	*ms = (tf_now_ns() - t0) / NSEC_PER_MSEC;
	if (st < 0) {
		kill(pid, SIGKILL);
		waitpid(pid, NULL, 0);
	}
	spawn_stderr(errfd, err, n);
	return st;
}

/* fsfreeze -f: the chain breaks, fsfreeze succeeds, fsA is frozen. */
TEST_F_TIMEOUT(klp, fsfreeze_breaks_the_chain, 120)
{
	unsigned long long ms;
	pid_t pid, probe;
	char err[256];
	int st;

	klp_set(_metadata, 1000, 1);
	st = fsfreeze_vector(&self->k.e, 1, &ms, err, sizeof(err), &probe);
	TH_LOG("%s: fsfreeze -f: exit %d after %llu ms %s", vec_kind_name[variant->kind], st,
	       ms, err);
	ASSERT_EQ(0, st);
	EXPECT_LE(ms, 1000 + SLACK_MS);
	EXPECT_TRUE(wait_event(self->k.e.ctl.evt[0], 'w', 1000));
	pid = tf_write_child(self->k.e.fs.mfd, "probe", "probe\n");
	EXPECT_EQ(-1, tf_wait_child(pid, 300));
	EXPECT_EQ(0, tf_run("fsfreeze -u %s", self->k.e.fs.mnt));
	EXPECT_EQ(0, tf_wait_child(pid, 5000));
	EXPECT_EQ(0, tf_wait_child(probe, 5000));
	finish_thread_a(_metadata, &self->k.e, variant->type);
}

/*
 * fsfreeze -f with the daemon holding its answer: "Connection timed out"
 * after two attempts of 1000 ms, nothing frozen, nothing lost.
 */
TEST_F_TIMEOUT(klp, fsfreeze_held_daemon_times_out, 120)
{
	unsigned long long ms;
	pid_t probe;
	char err[256];
	int st;

	klp_set(_metadata, 1000, 1);
	st = fsfreeze_vector(&self->k.e, 0, &ms, err, sizeof(err), &probe);
	TH_LOG("%s: fsfreeze -f: exit %d after %llu ms: %s (bound [2000, %llu])",
	       vec_kind_name[variant->kind], st, ms, err, 2000 + SLACK_MS);
	EXPECT_EQ(1, st);
	EXPECT_NE(NULL, strstr(err, "Connection timed out"));
	EXPECT_GE(ms, 2000ULL);
	EXPECT_LE(ms, 2000 + SLACK_MS);
	unfrozen_then_finish(_metadata, &self->k.e, variant->type, probe);
}

/* timeout_ms 0, the default: the patched freeze_super() waits as today's. */
TEST_F_TIMEOUT(klp, fifreeze_mode_off_wedges, 120)
{
	if (variant->kind == VEC_NBD)
		SKIP(return, "the stock path is shown with FUSE and EROFS");
	klp_set(_metadata, 0, 0);
	stock_fifreeze(_metadata, &self->k.e, variant->type, variant->kind);
}

XFAIL_ADD(klp, ext4, fifreeze_mode_off_wedges);
XFAIL_ADD(klp, xfs, fifreeze_mode_off_wedges);
XFAIL_ADD(klp, ext4_erofs, fifreeze_mode_off_wedges);
XFAIL_ADD(klp, xfs_erofs, fifreeze_mode_off_wedges);

/* fsA on a dm-linear device over its loop device: dmsetup suspend freezes it. */
FIXTURE(klp_dm) {
	struct klp_env k;
	char dm[32];
};

FIXTURE_VARIANT(klp_dm) {
	const char *type;
};

FIXTURE_VARIANT_ADD(klp_dm, ext4) {
	.type = "ext4",
};

FIXTURE_VARIANT_ADD(klp_dm, xfs) {
	.type = "xfs",
};

FIXTURE_SETUP(klp_dm)
{
	snprintf(self->dm, sizeof(self->dm), "tf-klp-%d", getpid());
	klp_env_setup(_metadata, &self->k, variant->type, VEC_FUSE, self->dm, true);
}

FIXTURE_TEARDOWN(klp_dm)
{
	klp_env_teardown(_metadata, &self->k);
}

/* Whether the dm device is suspended now (dmsetup info's State line). */
static int dm_suspended(const char *dm)
{
	return !tf_run("dmsetup info %s | grep -q '^State: *SUSPENDED'", dm);
}

/*
 * An LVM snapshot's first step on the vector: the suspend's bdev_freeze()
 * gives up, dmsetup reports the error in bounded time, and the device is
 * active, not suspended: fsA takes writes, the daemon's included.
 */
TEST_F_TIMEOUT(klp_dm, dm_suspend_times_out, 120)
{
	const char *const argv[] = { "dmsetup", "suspend", self->dm, NULL };
	long long timeouts = klp_stat("timeouts_bdev");
	unsigned long long t0, ms;
	pid_t pid, probe;
	char err[256];
	int errfd, st;

	klp_set(_metadata, 1000, 1);
	ASSERT_EQ(0, start_thread_a(&self->k.e));
	t0 = tf_now_ns();
	pid = spawn(argv, &errfd);
	ASSERT_LE(0, pid);
	/* The daemon writes once the suspend blocks fsA's writers; no answer. */
	probe = wait_writers_blocked(&self->k.e);
	ASSERT_LE(0, probe);
	ASSERT_EQ(0, send_byte(self->k.e.ctl.go[1]));
	st = spawn_wait(pid, errfd, 30000, err, sizeof(err));
	ms = (tf_now_ns() - t0) / NSEC_PER_MSEC;
	TH_LOG("dmsetup suspend: exit %d after %llu ms: %s (bound [2000, %llu])", st, ms, err,
	       2000 + SLACK_MS);
	ASSERT_LE(0, st);
	EXPECT_NE(0, st);
	EXPECT_NE(NULL, strstr(err, "Connection timed out"));
	EXPECT_GE(ms, 2000ULL);
	EXPECT_LE(ms, 2000 + SLACK_MS);
	EXPECT_EQ(timeouts + 1, klp_stat("timeouts_bdev"));
	EXPECT_FALSE(dm_suspended(self->dm));
	/* The device resumes (it was never suspended): nothing to undo. */
	EXPECT_EQ(0, tf_run("dmsetup resume %s", self->dm));
	unfrozen_then_finish(_metadata, &self->k.e, variant->type, probe);
}

/*
 * The mode off: the suspend waits as today's does (XFAIL); rescued, it
 * completes, and the device resumes.
 */
TEST_F_TIMEOUT(klp_dm, dm_suspend_mode_off_wedges, 120)
{
	const char *const argv[] = { "dmsetup", "suspend", self->dm, NULL };
	pid_t pid, probe;
	char err[256];
	int errfd, st;

	klp_set(_metadata, 0, 0);
	ASSERT_EQ(0, send_byte(self->k.e.ctl.ans[1]));
	ASSERT_EQ(0, start_thread_a(&self->k.e));
	pid = spawn(argv, &errfd);
	ASSERT_LE(0, pid);
	probe = wait_writers_blocked(&self->k.e);
	ASSERT_LE(0, probe);
	ASSERT_EQ(0, send_byte(self->k.e.ctl.go[1]));
	st = tf_wait_child(pid, WATCHDOG_MS);
	TH_LOG("dmsetup suspend, mode off: %s within %d ms", st < 0 ? "did not return" :
	       "returned", WATCHDOG_MS);
	if (st < 0)
		tf_wedged("dmsetup suspend did not return within %d ms", WATCHDOG_MS);

	/* Rescue: the daemon's request fails, A leaves, the suspend ends. */
	ASSERT_EQ(0, vector_rescue(&self->k.e));
	pthread_join(self->k.e.a, NULL);
	self->k.e.a_started = 0;
	st = spawn_wait(pid, errfd, 10000, err, sizeof(err));
	ASSERT_EQ(0, st) TH_LOG("dmsetup suspend: %s", err);
	ASSERT_TRUE(dm_suspended(self->dm));
	ASSERT_EQ(0, tf_run("dmsetup resume %s", self->dm));
	EXPECT_EQ(0, tf_wait_child(probe, 5000));
	ASSERT_TRUE(wait_event(self->k.e.ctl.evt[0], 'w', 5000));
	check_integrity(_metadata, &self->k.e, variant->type, 0);
}

XFAIL_ADD(klp_dm, ext4, dm_suspend_mode_off_wedges);
XFAIL_ADD(klp_dm, xfs, dm_suspend_mode_off_wedges);

/*
 * Once each, on xfs (its shutdown ioctl; the rest shows the same on ext4),
 * in this order: the freezes the patch leaves alone, then disabling it,
 * then the kernel without it.  The order keeps the live patch's
 * transitions to two (its load, its disable) in a run: each rewrites code
 * that every CPU runs (__schedule()), under emulation too.
 */
FIXTURE(klp_once) {
	struct klp_env k;
};

FIXTURE_VARIANT(klp_once) {
	const char *type;
};

FIXTURE_VARIANT_ADD(klp_once, xfs) {
	.type = "xfs",
};

FIXTURE_SETUP(klp_once)
{
	klp_env_setup(_metadata, &self->k, variant->type, VEC_FUSE, NULL, true);
}

FIXTURE_TEARDOWN(klp_once)
{
	klp_env_teardown(_metadata, &self->k);
}

/* xfs's XFS_IOC_GOINGDOWN (include/uapi of xfsprogs: xfs_fs.h). */
#define TF_XFS_IOC_GOINGDOWN		_IOR('X', 125, __u32)
#define TF_XFS_GOING_FLAGS_DEFAULT	0	/* freeze, then shut down */

/*
 * xfs's shutdown takes a failed bdev_freeze() for success and skips the
 * shutdown: the patch leaves its freeze without a deadline, so the
 * shutdown it was asked for happens (a write then fails with EIO).
 */
TEST_F_TIMEOUT(klp_once, xfs_goingdown_is_not_timed, 120)
{
	long long untimed = klp_stat("untimed_xfs_goingdown");
	__u32 flags = TF_XFS_GOING_FLAGS_DEFAULT;

	klp_set(_metadata, 300, 0);
	ASSERT_EQ(0, ioctl(self->k.e.fs.mfd, TF_XFS_IOC_GOINGDOWN, &flags));
	EXPECT_EQ(untimed + 1, klp_stat("untimed_xfs_goingdown"));
	EXPECT_EQ(-1, openat(self->k.e.fs.mfd, "after", O_WRONLY | O_CREAT, 0644));
	EXPECT_EQ(EIO, errno);
}

/*
 * The same on the vector: the shutdown's freeze waits as today's (a
 * deadline would make xfs return 0 with the filesystem still up); once
 * the daemon's request fails, the freeze completes and the filesystem is
 * shut down.
 */
TEST_F_TIMEOUT(klp_once, xfs_goingdown_on_the_vector_shuts_down, 120)
{
	__u32 flags = TF_XFS_GOING_FLAGS_DEFAULT;
	pid_t pid, probe;
	int st;

	klp_set(_metadata, 300, 0);
	ASSERT_EQ(0, send_byte(self->k.e.ctl.ans[1]));
	ASSERT_EQ(0, start_thread_a(&self->k.e));
	pid = fork();
	ASSERT_LE(0, pid);
	if (pid == 0)
		_exit(ioctl(self->k.e.fs.mfd, TF_XFS_IOC_GOINGDOWN, &flags) ? errno : 0);
	probe = wait_writers_blocked(&self->k.e);
	ASSERT_LE(0, probe);
	ASSERT_EQ(0, send_byte(self->k.e.ctl.go[1]));
	/* Ten deadlines later it still waits, as it would without the patch. */
	st = tf_wait_child(pid, 3000);
	TH_LOG("GOINGDOWN on the vector: %s within 3000 ms (status %d)",
	       st < 0 ? "did not return" : "returned", st);
	EXPECT_EQ(-1, st);

	ASSERT_EQ(0, vector_rescue(&self->k.e));
	pthread_join(self->k.e.a, NULL);
	self->k.e.a_started = 0;
	EXPECT_EQ(0, tf_wait_child(pid, 10000));
	/* Shut down: writes fail, the blocked ones too. */
	EXPECT_EQ(-1, openat(self->k.e.fs.mfd, "after", O_WRONLY | O_CREAT, 0644));
	EXPECT_EQ(EIO, errno);
	tf_wait_child(probe, 5000);
}

/*
 * Disabled while a freeze waits in it, with writers going: the freeze in
 * flight ends as the patched one does (ETIMEDOUT at its deadline, nothing
 * frozen).  The livepatch core switches a task back once nothing of the
 * patch is on its stack, and a task stopped in a page fault taken inside
 * the kernel (thread A, in its write) has a stack it cannot trust: the
 * transition ends once A is out, then the module unloads.
 */
TEST_F_TIMEOUT(klp_once, disable_while_a_freeze_waits, 120)
{
	unsigned long long t0, ms;
	pthread_t fr;
	pid_t probe;

	klp_set(_metadata, 1000, 2);
	ASSERT_EQ(0, start_thread_a(&self->k.e));
	ASSERT_EQ(0, pthread_create(&fr, NULL, thread_freezer, &self->k.e.v));
	probe = wait_writers_blocked(&self->k.e);
	ASSERT_LE(0, probe);
	ASSERT_EQ(0, send_byte(self->k.e.ctl.go[1]));
	ASSERT_EQ(0, tf_write_str(KLP_SYSFS "/enabled", "0\n"));
	pthread_join(fr, NULL);
	TH_LOG("the freeze in the patch while it was disabled: %d after %llu ms",
	       self->k.e.v.freeze_ret, self->k.e.v.args.elapsed_ns / NSEC_PER_MSEC);
	EXPECT_EQ(-ETIMEDOUT, self->k.e.v.freeze_ret);
	EXPECT_LE(self->k.e.v.args.elapsed_ns / NSEC_PER_MSEC, 3 * 1000 + SLACK_MS);
	/* Nothing frozen: the writers through. */
	EXPECT_EQ(0, tf_wait_child(probe, 5000));
	EXPECT_TRUE(tf_fs_writable(self->k.e.fs.mfd));

	/* A leaves its fault; then the patch goes, and the module. */
	ASSERT_EQ(0, send_byte(self->k.e.ctl.ans[1]));
	pthread_join(self->k.e.a, NULL);
	self->k.e.a_started = 0;
	t0 = tf_now_ns();
	EXPECT_EQ(0, klp_gone(KLP_SETTLE_MS));
	ms = (tf_now_ns() - t0) / NSEC_PER_MSEC;
	TH_LOG("the patch was gone %llu ms after thread A left", ms);
	EXPECT_EQ(0, klp_unload());
	EXPECT_NE(0, access("/sys/module/" KLP_NAME, F_OK));
	check_integrity(_metadata, &self->k.e, variant->type, 1);
}

/* The module gone (the case before unloaded it; this one makes sure). */
FIXTURE(klp_gone) {
	struct klp_env k;
};

FIXTURE_VARIANT(klp_gone) {
	const char *type;
};

FIXTURE_VARIANT_ADD(klp_gone, xfs) {
	.type = "xfs",
};

FIXTURE_SETUP(klp_gone)
{
	klp_env_setup(_metadata, &self->k, variant->type, VEC_FUSE, NULL, false);
}

FIXTURE_TEARDOWN(klp_gone)
{
	klp_env_teardown(_metadata, &self->k);
}

/* Disabled and unloaded: the kernel's own freeze_super(), which wedges. */
TEST_F_TIMEOUT(klp_gone, patch_gone_wedges, 120)
{
	ASSERT_EQ(0, klp_unload());
	ASSERT_NE(0, access("/sys/module/" KLP_NAME, F_OK));
	stock_fifreeze(_metadata, &self->k.e, variant->type, VEC_FUSE);
}

XFAIL_ADD(klp_gone, xfs, patch_gone_wedges);

TEST_HARNESS_MAIN
