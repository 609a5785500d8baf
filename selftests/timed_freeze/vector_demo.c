// SPDX-License-Identifier: GPL-2.0
/*
 * make demo: the deadlock vector of vector_test.c, told step by step to a
 * person: the stock FIFREEZE wedging until the daemon's request is failed
 * (the writer's data lost), then the timed freeze timing out, undoing
 * itself so the daemon's write gets through, and freezing fsA on its retry
 * with nothing lost.
 *
 *   vector_demo [fuse|erofs]
 *
 * fuse (the default): fsB is a FUSE filesystem; erofs: fsB is an EROFS
 * image mounted file-backed, filled on demand by a fanotify HSM daemon.
 */
#include <stdarg.h>

#include "vector.h"

/* How long the stock FIFREEZE gets before we call it wedged. */
#define WATCHDOG_MS	3000

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

static enum vec_kind kind = VEC_FUSE;

/* Thread A in its write, faulting on fsB; the daemon holds the fault. */
static int demo_start(struct vec_env *self, const char *type)
{
	if (vector_setup(self, type, kind)) {
		say("  set-up failed: %s", self->why ? self->why : strerror(errno));
		return -1;
	}
	say("  fsA: a fresh %s on a loop device, mounted at %s", type, self->fs.mnt);
	if (kind == VEC_EROFS) {
		say("  fsB: an EROFS image mounted file-backed at %s; the image file",
		    self->v.src_mnt);
		say("       is sparse on fsC (%s), filled on demand by a fanotify", self->fsc.mnt);
		say("       pre-content (HSM) daemon (pid %d)", self->hsm.pid);
	} else {
		say("  fsB: a FUSE filesystem at %s, served by a daemon (pid %d)",
		    self->v.src_mnt, self->daemon);
	}
	if (send_byte(self->ctl.ans[1]) || start_thread_a(self)) {
		say("  thread A did not reach the daemon");
		return -1;
	}
	say("  thread A: write(fsA file, mmap(fsB file)) - its page fault is now");
	if (kind == VEC_EROFS)
		say("            EROFS reading the image: a FAN_PRE_ACCESS event in the daemon,");
	else
		say("            a READ request in the daemon,");
	say("            and A holds fsA's freeze lock");
	return 0;
}

static int demo_stock(void)
{
	struct vec_env self = {};
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
	if (kind == VEC_EROFS)
		say("  Rescue: the HSM daemon answers the event FAN_DENY_ERRNO(EIO).");
	else
		say("  Rescue: abort the FUSE connection (/sys/fs/fuse/connections/%u/abort).",
		    self.fuse_conn);
	if (vector_rescue(&self))
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
	struct vec_env self = {};
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
	say("  thread A's write: %zd bytes, %s the %s file.", self.v.a_ret,
	    self.v.a_ret == FILE_SIZE && dest_is_right(self.fs.mfd) ?
	    "identical to" : "NOT identical to", vec_kind_name[kind]);
	ret = !(self.v.a_ret == FILE_SIZE && dest_is_right(self.fs.mfd));
out:
	vector_teardown(&self);
	return ret;
}

int main(int argc, char **argv)
{
	int stock, timed;

	if (argc > 2 || (argc == 2 && strcmp(argv[1], "fuse") && strcmp(argv[1], "erofs"))) {
		fprintf(stderr, "usage: %s [fuse|erofs]\n", argv[0]);
		return 2;
	}
	if (argc == 2 && !strcmp(argv[1], "erofs"))
		kind = VEC_EROFS;
	say("The deadlock vector of the linux-fsdevel thread, for real:");
	say("a writer to fsA faults on a %s file (fsB) while its daemon",
	    kind == VEC_EROFS ? "file-backed EROFS" : "FUSE");
	say("needs to write to fsA, and somebody freezes fsA in between.");
	stock = demo_stock();
	timed = demo_timed();
	say("\n== Summary: stock freeze %s; timed freeze %s.",
	    stock ? "could not be shown" : "wedged until rescued, data lost",
	    timed ? "FAILED" : "froze fsA on its retry, nothing lost");
	return stock || timed;
}
