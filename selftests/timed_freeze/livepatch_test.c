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
 *   lvcreate --snapshot of fsA's LV, classic and thin: a failure in bounded
 *   time, the origin active and writable, no snapshot LV left;
 *   the shutdown ioctl (ext4, xfs) is never timed: it waits as today's and
 *   the filesystem is shut down once the chain is broken; nor is the
 *   freeze of a device two superblocks share (EROFS's blob device);
 *   disabling the patch while a freeze waits in it: the transition ends
 *   once that freeze returned, and the module unloads;
 *   the mode off (timeout_ms=0) or the patch gone: today's behaviour,
 *   FIFREEZE, the dm suspend and lvcreate wedge (XFAIL, then rescued);
 *   the load-time check refuses an entry point that does not call the
 *   patched function, naming it.
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

/* The parameters as they are now, into @saved (timeout_ms, retries, holders). */
static void klp_params_save(char saved[3][32])
{
	for (int i = 0; i < 3; i++)
		klp_param_get(klp_params[i], saved[i], sizeof(saved[i]));
}

/* The parameters klp_params_save() saved, when it did (the module loaded). */
static void klp_params_restore(char saved[3][32])
{
	if (access(KLP_PARAMS, F_OK))
		return;
	for (int i = 0; i < 3; i++)
		if (saved[i][0])
			klp_param_set(klp_params[i], saved[i]);
}

/*
 * The vector of @type and @kind (on the dm device @dm when not NULL, on an
 * LVM LV when @k->e.fs.lvm says which), and, with @load, the module loaded
 * (again, when a case before unloaded it).
 */
static void klp_env_setup(struct __test_metadata *_metadata, struct klp_env *k,
			  const char *type, enum vec_kind kind, const char *dm, bool load)
{
	const char *why = vector_missing(type, kind);
	int ret;

	k->e.v.dev = -1;
	if (why)
		SKIP(return, "%s", why);
	if ((dm || k->e.fs.lvm) && tf_run("command -v dmsetup >/dev/null"))
		SKIP(return, "no dmsetup");
	if (k->e.fs.lvm && tf_run("command -v lvcreate >/dev/null"))
		SKIP(return, "no LVM (lvm2)");
	why = !k->e.fs.lvm ? NULL : strcmp(k->e.fs.lvm, "thin") ? "snapshot" : "thin-pool";
	if (why && tf_run("dmsetup targets | grep -qw %s", why))
		SKIP(return, "no dm %s target in this kernel", why);
	if (access("/sys/kernel/livepatch", F_OK))
		SKIP(return, "no live patching in this kernel (CONFIG_LIVEPATCH)");
	if (load) {
		why = klp_missing(_metadata);
		if (why)
			SKIP(return, "%s", why);
		ASSERT_EQ(0, access(KLP_SYSFS, F_OK));
		klp_params_save(k->saved);
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
	klp_params_restore(k->saved);
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

/*
 * What spawn()'s child wrote to stderr, in @err, its lines joined with '|';
 * closes @errfd.  Its warnings are left out (lvcreate's, for one): the VM
 * runner takes any "WARNING:" on the console for the kernel's.
 */
static void spawn_stderr(int errfd, char *err, size_t n)
{
	char buf[2048], *line, *pos;
	size_t len = 0;
	ssize_t r;

	while (len < sizeof(buf) - 1 && (r = read(errfd, buf + len, sizeof(buf) - 1 - len)) > 0)
		len += r;
	buf[len] = '\0';
	close(errfd);
	err[0] = '\0';
	for (pos = buf; (line = strsep(&pos, "\n"));) {
		if (!*line || strstr(line, "WARNING"))
			continue;
		snprintf(err + strlen(err), n - strlen(err), "%s%s", err[0] ? "|" : "", line);
	}
}

/*
 * Wait up to @ms for @pid of spawn(); its exit status, or -1 when it is
 * still running.  Its stderr in @err once it ended.
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
 * fsA on the LV "origin" of a volume group over its loop device: an LVM
 * snapshot of it, classic (dm-snapshot) or thin, suspends the origin with
 * its filesystem frozen (dm's lock_fs() -> bdev_freeze()).
 */
FIXTURE(klp_lvm) {
	struct klp_env k;
	char dm[48];		/* the origin's dm device */
};

FIXTURE_VARIANT(klp_lvm) {
	const char *type;
	const char *lvm;
};

FIXTURE_VARIANT_ADD(klp_lvm, ext4_classic) {
	.type = "ext4",
	.lvm = "classic",
};

FIXTURE_VARIANT_ADD(klp_lvm, xfs_classic) {
	.type = "xfs",
	.lvm = "classic",
};

FIXTURE_VARIANT_ADD(klp_lvm, ext4_thin) {
	.type = "ext4",
	.lvm = "thin",
};

FIXTURE_VARIANT_ADD(klp_lvm, xfs_thin) {
	.type = "xfs",
	.lvm = "thin",
};

FIXTURE_SETUP(klp_lvm)
{
	self->k.e.fs.lvm = variant->lvm;
	klp_env_setup(_metadata, &self->k, variant->type, VEC_FUSE, NULL, true);
	snprintf(self->dm, sizeof(self->dm), "%s-origin", self->k.e.fs.vg);
}

FIXTURE_TEARDOWN(klp_lvm)
{
	klp_env_teardown(_metadata, &self->k);
}

/* Start lvcreate --snapshot of the origin (classic: a 64 MiB store). */
static pid_t lvm_snapshot(struct klp_env *k, int *errfd)
{
	char origin[48];
	const char *const classic[] = { "lvcreate", "-qq", "-s", "-L", "64M", "-n", "snap",
					origin, NULL };
	const char *const thin[] = { "lvcreate", "-qq", "-s", "-n", "snap", origin, NULL };

	snprintf(origin, sizeof(origin), "%s/origin", k->e.fs.vg);
	return spawn(strcmp(k->e.fs.lvm, "thin") ? classic : thin, errfd);
}

/*
 * wait_writers_blocked() for up to a minute: lvcreate makes and clears the
 * snapshot's store before it suspends the origin, slowly under emulation.
 */
static pid_t lvm_writers_blocked(struct klp_env *k)
{
	pid_t probe = -1;

	for (int i = 0; i < 6 && probe < 0; i++)
		probe = wait_writers_blocked(&k->e);
	return probe;
}

/* Whether the group has an LV named snap. */
static int lvm_has_snapshot(const char *vg)
{
	return !tf_run("lvs --noheadings -o lv_name %s 2>/dev/null | grep -qw snap", vg);
}

/*
 * Whether any LV of the group is a snapshot or an origin of one: lv_attr's
 * volume type (s, S: snapshot; o, O: origin), or a thin LV with an origin.
 */
static int lvm_has_snapshot_of_origin(const char *vg)
{
	return !tf_run("lvs --noheadings -o lv_attr,origin %s 2>/dev/null | %s", vg,
		       "awk '$1 ~ /^[sSoO]/ || $2 != \"\" { f = 1 } END { exit !f }'");
}

/* Whether the origin LV is active (lvs' lv_active). */
static int lvm_origin_active(const char *vg)
{
	return !tf_run("lvs --noheadings -o lv_active %s/origin 2>/dev/null | grep -qw active",
		       vg);
}

/*
 * The snapshot on the vector, the daemon holding its answer: its freeze
 * gives up at its deadline (2 x 1000 ms), lvcreate fails with the
 * suspend's "Connection timed out", and no snapshot is left: no LV of the
 * group is a snapshot or has one, the origin is active, not suspended and
 * writable, the daemon's write included.  lvm2 (2.03) has no undo for a
 * classic snapshot whose origin fails to suspend, whatever the reason: it
 * keeps the exception store, made before the suspend, as a plain LV and
 * the origin's "-real" device, and says "Manual intervention required".
 * The intervention, lvremove of the store and lvchange --refresh of the
 * origin, leaves nothing of the attempt.
 */
TEST_F_TIMEOUT(klp_lvm, lvm_snapshot_times_out, 180)
{
	long long timeouts = klp_stat("timeouts_bdev");
	unsigned long long t0, t1, ms, frozen_ms;
	pid_t pid, probe;
	char err[1024];
	int errfd, st;

	klp_set(_metadata, 1000, 1);
	ASSERT_EQ(0, start_thread_a(&self->k.e));
	t0 = tf_now_ns();
	pid = lvm_snapshot(&self->k, &errfd);
	ASSERT_LE(0, pid);
	probe = lvm_writers_blocked(&self->k);
	ASSERT_LE(0, probe);
	t1 = tf_now_ns();
	ASSERT_EQ(0, send_byte(self->k.e.ctl.go[1]));
	st = tf_wait_child(pid, 60000);
	ms = (tf_now_ns() - t0) / NSEC_PER_MSEC;
	frozen_ms = (tf_now_ns() - t1) / NSEC_PER_MSEC;
	ASSERT_LE(0, st);
	spawn_stderr(errfd, err, sizeof(err));
	TH_LOG("lvcreate --snapshot (%s): exit %d after %llu ms, %llu ms after writers",
	       variant->lvm, st, ms, frozen_ms);
	TH_LOG("were blocked (bound %llu): %s", 2000 + SLACK_MS, err);
	EXPECT_NE(0, st);
	EXPECT_NE(NULL, strstr(err, "Connection timed out"));
	/* The freeze began before the writers were seen blocked. */
	EXPECT_LE(frozen_ms, 2000 + SLACK_MS);
	EXPECT_EQ(timeouts + 1, klp_stat("timeouts_bdev"));
	EXPECT_FALSE(lvm_has_snapshot_of_origin(self->k.e.fs.vg));
	EXPECT_TRUE(lvm_origin_active(self->k.e.fs.vg));
	EXPECT_FALSE(dm_suspended(self->dm));
	if (lvm_has_snapshot(self->k.e.fs.vg)) {
		TH_LOG("lvm2 left the exception store as a plain LV: lvremove %s/snap",
		       self->k.e.fs.vg);
		EXPECT_EQ(0, tf_run("lvremove -qq -y %s/snap >/dev/null && %s %s/origin",
				    self->k.e.fs.vg, "lvchange -qq --refresh", self->k.e.fs.vg));
	}
	EXPECT_FALSE(lvm_has_snapshot(self->k.e.fs.vg));
	/* Of the attempt, no device-mapper device is left either. */
	EXPECT_NE(0, tf_run("dmsetup ls | grep -q '^%s-\\(snap\\|origin-real\\)'",
			    self->k.e.fs.vg));
	unfrozen_then_finish(_metadata, &self->k.e, variant->type, probe);
}

/*
 * The snapshot on the vector, the daemon answering once its write got
 * through: the first attempt gives up at 1000 ms, its undo lets the daemon
 * write, thread A leaves, and the retry freezes: lvcreate makes the
 * snapshot, and the data is whole.
 */
TEST_F_TIMEOUT(klp_lvm, lvm_snapshot_breaks_the_chain, 180)
{
	long long after_undo = klp_stat("frozen_after_undo");
	unsigned long long t0, ms;
	pid_t pid, probe;
	char err[1024];
	int errfd, st;

	klp_set(_metadata, 1000, 2);
	ASSERT_EQ(0, start_thread_a(&self->k.e));
	t0 = tf_now_ns();
	pid = lvm_snapshot(&self->k, &errfd);
	ASSERT_LE(0, pid);
	probe = lvm_writers_blocked(&self->k);
	ASSERT_LE(0, probe);
	ASSERT_EQ(0, send_byte(self->k.e.ctl.go[1]));
	ASSERT_EQ(0, send_byte(self->k.e.ctl.ans[1]));
	st = tf_wait_child(pid, 60000);
	ms = (tf_now_ns() - t0) / NSEC_PER_MSEC;
	ASSERT_LE(0, st);
	spawn_stderr(errfd, err, sizeof(err));
	TH_LOG("lvcreate --snapshot (%s): exit %d after %llu ms: %s", variant->lvm, st, ms,
	       err);
	EXPECT_EQ(0, st);
	EXPECT_EQ(after_undo + 1, klp_stat("frozen_after_undo"));
	EXPECT_TRUE(lvm_has_snapshot_of_origin(self->k.e.fs.vg));
	EXPECT_FALSE(dm_suspended(self->dm));
	EXPECT_EQ(0, tf_wait_child(probe, 5000));
	EXPECT_TRUE(wait_event(self->k.e.ctl.evt[0], 'w', 5000));
	finish_thread_a(_metadata, &self->k.e, variant->type);
}

/*
 * The mode off: the snapshot's freeze waits as today's (XFAIL); rescued,
 * it completes, and the snapshot is made.
 */
TEST_F_TIMEOUT(klp_lvm, lvm_snapshot_mode_off_wedges, 180)
{
	pid_t pid, probe;
	char err[1024];
	int errfd, st;

	klp_set(_metadata, 0, 0);
	ASSERT_EQ(0, send_byte(self->k.e.ctl.ans[1]));
	ASSERT_EQ(0, start_thread_a(&self->k.e));
	pid = lvm_snapshot(&self->k, &errfd);
	ASSERT_LE(0, pid);
	probe = lvm_writers_blocked(&self->k);
	ASSERT_LE(0, probe);
	ASSERT_EQ(0, send_byte(self->k.e.ctl.go[1]));
	st = tf_wait_child(pid, WATCHDOG_MS);
	TH_LOG("lvcreate --snapshot (%s), mode off: %s within %d ms", variant->lvm,
	       st < 0 ? "did not return" : "returned", WATCHDOG_MS);
	if (st < 0)
		tf_wedged("lvcreate --snapshot did not return within %d ms", WATCHDOG_MS);

	/* Rescue: the daemon's request fails, A leaves, the snapshot is made. */
	ASSERT_EQ(0, vector_rescue(&self->k.e));
	pthread_join(self->k.e.a, NULL);
	self->k.e.a_started = 0;
	if (st < 0)
		st = tf_wait_child(pid, 60000);
	spawn_stderr(errfd, err, sizeof(err));
	ASSERT_EQ(0, st) TH_LOG("lvcreate: %s", err);
	EXPECT_TRUE(lvm_has_snapshot_of_origin(self->k.e.fs.vg));
	EXPECT_FALSE(dm_suspended(self->dm));
	EXPECT_EQ(0, tf_wait_child(probe, 5000));
	ASSERT_TRUE(wait_event(self->k.e.ctl.evt[0], 'w', 5000));
	check_integrity(_metadata, &self->k.e, variant->type, 0);
}

XFAIL_ADD(klp_lvm, ext4_classic, lvm_snapshot_mode_off_wedges);
XFAIL_ADD(klp_lvm, xfs_classic, lvm_snapshot_mode_off_wedges);
XFAIL_ADD(klp_lvm, ext4_thin, lvm_snapshot_mode_off_wedges);
XFAIL_ADD(klp_lvm, xfs_thin, lvm_snapshot_mode_off_wedges);

/*
 * The shutdown ioctl (FS_IOC_SHUTDOWN: ext4's EXT4_IOC_SHUTDOWN, xfs's
 * XFS_IOC_GOINGDOWN) in its default mode freezes through bdev_freeze(),
 * then shuts the filesystem down.  A shutdown must happen: its freeze never
 * gets the deadline, whatever the parameters say.
 */
FIXTURE(klp_shutdown) {
	struct klp_env k;
};

FIXTURE_VARIANT(klp_shutdown) {
	const char *type;
};

FIXTURE_VARIANT_ADD(klp_shutdown, ext4) {
	.type = "ext4",
};

FIXTURE_VARIANT_ADD(klp_shutdown, xfs) {
	.type = "xfs",
};

FIXTURE_SETUP(klp_shutdown)
{
	klp_env_setup(_metadata, &self->k, variant->type, VEC_FUSE, NULL, true);
}

FIXTURE_TEARDOWN(klp_shutdown)
{
	klp_env_teardown(_metadata, &self->k);
}

/* include/uapi/linux/fs.h, for older userspace headers. */
#ifndef FS_IOC_SHUTDOWN
#define FS_IOC_SHUTDOWN			_IOR('X', 125, __u32)
#endif
/* FS_IOC_SHUTDOWN's default flag: freeze, then shut down. */
#define TF_SHUTDOWN_FLAGS_DEFAULT	0

/* Idle: the shutdown's freeze runs untimed, and the filesystem is shut down. */
TEST_F_TIMEOUT(klp_shutdown, shutdown_is_not_timed, 120)
{
	long long untimed = klp_stat("untimed_shutdown");
	__u32 flags = TF_SHUTDOWN_FLAGS_DEFAULT;

	klp_set(_metadata, 300, 0);
	ASSERT_EQ(0, ioctl(self->k.e.fs.mfd, FS_IOC_SHUTDOWN, &flags));
	EXPECT_EQ(untimed + 1, klp_stat("untimed_shutdown"));
	EXPECT_EQ(-1, openat(self->k.e.fs.mfd, "after", O_WRONLY | O_CREAT, 0644));
	EXPECT_EQ(EIO, errno);
}

/*
 * On the vector, with the deadline set to @ms: the shutdown's freeze waits
 * as today's (with a deadline, ext4 would fail with ETIMEDOUT and xfs
 * return 0, both with the filesystem still up); once the daemon's request
 * fails, the freeze completes and the filesystem is shut down.
 */
static void shutdown_on_the_vector(struct __test_metadata *_metadata, struct klp_env *k,
				   unsigned int ms)
{
	__u32 flags = TF_SHUTDOWN_FLAGS_DEFAULT;
	unsigned long long t0, t1;
	pid_t pid, probe;
	int st;

	klp_set(_metadata, ms, 0);
	ASSERT_EQ(0, send_byte(k->e.ctl.ans[1]));
	ASSERT_EQ(0, start_thread_a(&k->e));
	t0 = tf_now_ns();
	pid = fork();
	ASSERT_LE(0, pid);
	if (pid == 0)
		_exit(ioctl(k->e.fs.mfd, FS_IOC_SHUTDOWN, &flags) ? errno : 0);
	probe = wait_writers_blocked(&k->e);
	ASSERT_LE(0, probe);
	ASSERT_EQ(0, send_byte(k->e.ctl.go[1]));
	/* Ten deadlines later it still waits, as it would without the patch. */
	st = tf_wait_child(pid, 3000);
	TH_LOG("shutdown on the vector (timeout_ms %u): %s within 3000 ms (status %d)", ms,
	       st < 0 ? "did not return" : "returned", st);
	EXPECT_EQ(-1, st);

	ASSERT_EQ(0, vector_rescue(&k->e));
	t1 = tf_now_ns();
	pthread_join(k->e.a, NULL);
	k->e.a_started = 0;
	EXPECT_EQ(0, tf_wait_child(pid, 10000));
	TH_LOG("shutdown returned %llu ms after it began, %llu ms after the rescue",
	       (tf_now_ns() - t0) / NSEC_PER_MSEC, (tf_now_ns() - t1) / NSEC_PER_MSEC);
	/* Shut down: writes fail, the blocked ones too. */
	EXPECT_EQ(-1, openat(k->e.fs.mfd, "after", O_WRONLY | O_CREAT, 0644));
	EXPECT_EQ(EIO, errno);
	tf_wait_child(probe, 5000);
}

/* The mode on: as without the module, which the case below shows. */
TEST_F_TIMEOUT(klp_shutdown, shutdown_on_the_vector_shuts_down, 120)
{
	shutdown_on_the_vector(_metadata, &self->k, 300);
}

/* The mode off (timeout_ms 0): the same wait, the same shutdown. */
TEST_F_TIMEOUT(klp_shutdown, shutdown_mode_off_on_the_vector_shuts_down, 120)
{
	shutdown_on_the_vector(_metadata, &self->k, 0);
}

/*
 * A device two superblocks share: two EROFS mounts of one image, each
 * from a loop device of its own (so two superblocks), with their chunks on
 * one blob device, a dm-linear device here, which EROFS claims for its
 * filesystem type.  dmsetup suspend of the blob freezes both through
 * fs_bdev_freeze(), which keeps the device frozen and swallows one's
 * failure: neither gets the deadline.
 */
/*
 * The setup's shell steps, run in its directory with $1 the dm device: the
 * image and its blob, the blob behind dm, the image on two loop devices,
 * each mounted (the loop devices listed in "loops").
 */
static const char *const klp_shared_steps[] = {
	"set -e",
	"mkdir -p src m1 m2 && echo shared > src/f",
	"mkfs.erofs --blobdev=blob.img --chunksize=4096 prim.img src >/dev/null 2>&1",
	"b=$(losetup -f --show blob.img) && echo $b > loops",
	"dmsetup create $1 --table \"0 $(blockdev --getsz $b) linear $b 0\"",
	"dmsetup mknodes $1",
	"for m in m1 m2; do",
	"	p=$(losetup -f --show prim.img) && echo $p >> loops",
	"	mount -t erofs -o device=/dev/mapper/$1 $p $m",
	"done",
};

FIXTURE(klp_shared) {
	char dir[64];
	char dm[32];
	char saved[3][32];
	int ready;
};

FIXTURE_SETUP(klp_shared)
{
	const char *why;
	char path[96];
	FILE *f;

	if (tf_run("grep -qw erofs /proc/filesystems"))
		SKIP(return, "no EROFS in this kernel");
	if (tf_run("mkfs.erofs --help 2>&1 | grep -q -- --blobdev"))
		SKIP(return, "no mkfs.erofs with --blobdev (erofs-utils 1.5+)");
	if (tf_run("command -v dmsetup >/dev/null"))
		SKIP(return, "no dmsetup");
	why = klp_missing(_metadata);
	if (why)
		SKIP(return, "%s", why);
	klp_params_save(self->saved);
	snprintf(self->dm, sizeof(self->dm), "tf-blob-%d", getpid());
	snprintf(self->dir, sizeof(self->dir), "/tmp/tf.XXXXXX");
	ASSERT_NE(NULL, mkdtemp(self->dir));
	ASSERT_EQ(0, mount("tf-tmp", self->dir, "tmpfs", 0, "size=64m"));
	self->ready = 1;
	snprintf(path, sizeof(path), "%s/setup.sh", self->dir);
	f = fopen(path, "w");
	ASSERT_NE(NULL, f);
	for (size_t i = 0; i < ARRAY_SIZE(klp_shared_steps); i++)
		fprintf(f, "%s\n", klp_shared_steps[i]);
	ASSERT_EQ(0, fclose(f));
	ASSERT_EQ(0, tf_run("cd %s && sh setup.sh %s", self->dir, self->dm));
}

FIXTURE_TEARDOWN(klp_shared)
{
	if (!self->ready)
		return;
	tf_run("dmsetup resume %s >/dev/null 2>&1; umount %s/m1 %s/m2 2>/dev/null; "
	       "dmsetup remove %s >/dev/null 2>&1", self->dm, self->dir, self->dir, self->dm);
	tf_run("for l in $(cat %s/loops 2>/dev/null); do losetup -d $l; done", self->dir);
	umount2(self->dir, MNT_DETACH);
	rmdir(self->dir);
	klp_params_restore(self->saved);
}

/*
 * The suspend freezes both superblocks without a deadline (a timed-out
 * one would be swallowed, and the device reported frozen with it live);
 * the counter says why, once for each.
 */
TEST_F_TIMEOUT(klp_shared, shared_device_is_never_timed, 120)
{
	long long shared = klp_stat("untimed_shared_device");
	long long timed = klp_stat("timed");
	char got[16];

	klp_set(_metadata, 300, 0);
	ASSERT_EQ(0, tf_run("dmsetup suspend %s", self->dm));
	EXPECT_TRUE(dm_suspended(self->dm));
	EXPECT_EQ(shared + 2, klp_stat("untimed_shared_device"));
	EXPECT_EQ(timed, klp_stat("timed"));
	ASSERT_EQ(0, tf_run("dmsetup resume %s", self->dm));
	/* Both mounts read the blob's chunks. */
	for (int i = 1; i <= 2; i++) {
		char path[96];

		snprintf(path, sizeof(path), "%s/m%d/f", self->dir, i);
		ASSERT_EQ(0, tf_read_str(path, got, sizeof(got)));
		EXPECT_STREQ("shared", got);
	}
}

/*
 * Once each, on xfs, in this order: disabling the patch, then the kernel
 * without it.  The order keeps the live patch's transitions to two (its
 * load, its disable) in a run: each rewrites code that every CPU runs
 * (__schedule()), under emulation too.
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

/*
 * The load-time check, pointed at a function that reaches freeze_super()
 * only through another function (as a caller of a compiler's copy or an
 * inlined body would): the module refuses to load and names it.  Refused
 * before its patch is enabled, so no transition.  A malformed value is
 * refused too.
 */
TEST_F_TIMEOUT(klp_gone, load_check_refuses_a_bypass, 120)
{
	const char *ko = getenv("TF_KLP_MODULE");
	char line[256];

	if (!ko)
		SKIP(return, "TF_KLP_MODULE: the .ko, to load it");
	ASSERT_EQ(0, klp_unload());
	ASSERT_NE(0, tf_run("insmod %s check_also=__dm_suspend:freeze_super 2>/dev/null", ko));
	EXPECT_NE(0, access("/sys/module/" KLP_NAME, F_OK));
	ASSERT_EQ(0, tf_run("dmesg | grep -m1 '%s' > /tmp/tf-klp-refused",
			    "__dm_suspend() does not call freeze_super()"));
	ASSERT_EQ(0, tf_read_str("/tmp/tf-klp-refused", line, sizeof(line)));
	TH_LOG("%s", line);
	EXPECT_NE(0, tf_run("insmod %s check_also=freeze_super 2>/dev/null", ko));
	EXPECT_NE(0, tf_run("insmod %s check_also=fs_bdev_freeze:thaw_super 2>/dev/null", ko));
	EXPECT_NE(0, access("/sys/module/" KLP_NAME, F_OK));
}

TEST_HARNESS_MAIN
