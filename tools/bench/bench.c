// SPDX-License-Identifier: GPL-2.0
/*
 * bench: the timed freeze against the stock FIFREEZE, side by side, in the
 * test VM (run by scripts/bench with the module loaded).  The paths are
 * interleaved, never all of one and then all of the other.
 *
 *   bench [stages|slow]             on the stock test kernel, module loaded
 *   bench --rfc [MS [RETRIES]]      on the RFC kernel, no module
 *
 * Prints one line per sample:
 *
 *   csv:CASE,FS,METHOD,REP,VALUE
 *
 * cycle       freeze+thaw of an idle fs; VALUE: freeze call, us
 * busy        freeze while fio runs buffered 4k writers; VALUE: us
 * tput_cycle  writer throughput while a freeze/thaw cycles once a second;
 *             VALUE: MiB/s
 * tput_module writer throughput, module loaded and idle vs not; MiB/s
 *
 * cycle and busy run in rounds until the 95% bootstrap interval of every
 * median ratio to stock is within +-2% (or a cap on samples or time), and
 * say how they stopped:
 *
 *   stop:CASE,FS,REPS,SECONDS,HALF_WIDTH_PERCENT,met|cap
 *
 * Then a separate pass with the module's per-stage clock armed (debugfs
 * timed_freeze/stages: kretprobes on the stock path, marks on ours), whose
 * probes would otherwise slow the stock path being timed:
 *
 *   stage:CASE,FS,METHOD,REP,FROM,TO,US
 *
 * CASE cycle and busy as above, and spaced: the idle fs frozen 200 ms after
 * the last thaw, when the reader switch waits for a grace period.
 *
 * Methods: stock (FIFREEZE), timed (the module, one grace period for the
 * three levels' reader switch), timed_each (the module, a grace period per
 * level as freeze_super() has: debugfs switch_each_level), timed_expedited
 * (TIMED_FREEZE_EXPEDITED).
 *
 * --rfc: the kernel of the upstream RFC series, where plain FIFREEZE takes
 * its deadline from the sysctls fs.freeze_timeout_ms (0: no deadline, the
 * stock code path) and fs.freeze_retries.  No module: methods stock
 * (freeze_timeout_ms 0) and rfc (freeze_timeout_ms MS, 1000 by default,
 * freeze_retries RETRIES, 3 by default), both plain FIFREEZE, the sysctl
 * written before each freeze and outside its time; cases cycle, busy and
 * tput_cycle, no stage passes.  It first prints
 *
 *   rfc:MS,RETRIES
 *
 * and puts both sysctls back as it found them when it ends.  It refuses to
 * run on a kernel without them.  A freeze of method rfc whose every
 * attempt timed out (ETIMEDOUT: it gave up, nothing is frozen) is no
 * sample; it is said, and a cycle or busy sample is taken again:
 *
 *   gaveup:CASE,FS,rfc,REP
 *
 * slow: the retry policy under a slow daemon (also alone: bench slow).
 * Thread A's write(fsA, mmap(FUSE file)) needs N round trips of D ms of
 * the daemon, each of which writes fsA (vector.h's slow daemon), for N x D
 * in 10 x 50, 40 x 150, 200 x 20 ms.  Once A is in its first round trip,
 * a freeze (timeout SLOW_TIMEOUT_MS, 16 retries) is called, and called
 * again after each ETIMEDOUT, as a user would, until fsA is frozen.
 * Methods: own (A alone, no freeze: the writer's own time), fixed (the
 * retry policy before, debugfs retry_fixed_backoff: 10 ms between
 * attempts), drain (the module's policy: wait for the stuck writer).
 * Per sample, the time from A's start to the freeze, the calls, the
 * attempts, and how long the attempts blocked writers (blocked_ns summed):
 *
 *   slow:N,D,METHOD,REP,MS,CALLS,ATTEMPTS,BLOCKED_MS
 *
 * then per N x D and method the median of MS / own MS over the reps with
 * its 95% bootstrap interval, the median blocked time, and the goal
 * (1.2 x the writer's own time + one timeout, as a ratio):
 *
 *   slowsum:N,D,METHOD,RATIO,LO,HI,BLOCKED_MS,GOAL
 *
 * TF_BENCH_QUICK=1 (either mode): a few samples of each case, to see the
 * machinery work; its figures mean nothing.
 */
#include <pthread.h>
#include <stdlib.h>

#include "../../selftests/timed_freeze/vector.h"

#define TPUT_SECONDS	4
#define ROUND		50	/* samples between two looks at the intervals */
#define TARGET_HALF	0.02	/* +-2% */
#define BOOT		1000	/* bootstrap resamples */
#define ARRAY_SIZE(a)	(sizeof(a) / sizeof((a)[0]))

/* The module's methods first: the stage passes take the first n of them. */
enum method { STOCK, TIMED, TIMED_EACH, TIMED_EXP, RFC, NR_METHODS };
#define NR_MODULE_METHODS	(TIMED_EXP + 1)
static const char *const method_name[] = {
	"stock", "timed", "timed_each", "timed_expedited", "rfc"
};

static int dev = -1;
static int quick;		/* TF_BENCH_QUICK */
static int rfc;			/* --rfc */

#define REPS_TPUT	(quick ? 2 : 5)
#define STAGE_REPS	(quick ? 5 : 40)

/* --- the RFC kernel's sysctls --- */

static char rfc_timeout[16] = "1000", rfc_retries[16] = "3";
static char saved_timeout[16], saved_retries[16];

static int sysctl_write(const char *path, const char *val)
{
	if (tf_write_str(path, val)) {
		fprintf(stderr, "bench: cannot write %s to %s: %s\n", val, path, strerror(errno));
		return -1;
	}
	return 0;
}

static void sysctl_restore(void)
{
	sysctl_write(TF_SYSCTL_TIMEOUT, saved_timeout);
	sysctl_write(TF_SYSCTL_RETRIES, saved_retries);
}

/* One freeze of @fd by @m; its duration in us, or -errno (-1: not the freeze's). */
static long long freeze_us(int fd, enum method m)
{
	unsigned long long t0;
	struct timed_freeze_args a;
	int ret;

	if (m == TIMED_EACH && tf_debugfs_write("switch_each_level", "1"))
		return -1;
	/* On the RFC kernel both are FIFREEZE: only the sysctl differs. */
	if (rfc && sysctl_write(TF_SYSCTL_TIMEOUT, m == RFC ? rfc_timeout : "0"))
		return -1;
	t0 = tf_now_ns();
	if (m == STOCK || m == RFC)
		ret = ioctl(fd, FIFREEZE, 0);
	else
		ret = tf_freeze(dev, fd, 10000 * NSEC_PER_MSEC, 1,
				m == TIMED_EXP ? TIMED_FREEZE_EXPEDITED : 0, &a);
	if (m == STOCK || m == RFC)
		ret = ret ? -errno : 0;
	t0 = tf_now_ns() - t0;
	if (m == TIMED_EACH && tf_debugfs_write("switch_each_level", "0"))
		return -1;
	if (ret) {
		if (m != RFC || ret != -ETIMEDOUT)
			fprintf(stderr, "bench: freeze (%s) failed: %s\n", method_name[m],
				strerror(-ret));
		return ret;
	}
	return t0 / 1000;
}

static int thaw(int fd)
{
	return ioctl(fd, FITHAW, 0);
}

static void sample(const char *what, const char *fs, const char *m, int rep, double v)
{
	printf("csv:%s,%s,%s,%d,%.3f\n", what, fs, m, rep, v);
	fflush(stdout);
}

/* Whether @us is the RFC's freeze giving up; if so, says so. */
static int gave_up(long long us, const char *what, const char *fs, enum method m, int rep)
{
	if (m != RFC || us != -ETIMEDOUT)
		return 0;
	printf("gaveup:%s,%s,%s,%d\n", what, fs, method_name[m], rep);
	fflush(stdout);
	return 1;
}

/* --- the intervals: percentile bootstrap of a ratio of medians over pairs --- */

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

static double median_of(double *v, int n)
{
	qsort(v, n, sizeof(*v), cmp_double);
	return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

static unsigned long long rng_state = 88172645463325252ULL;

static unsigned int rng(unsigned int n)
{
	rng_state ^= rng_state << 13;
	rng_state ^= rng_state >> 7;
	rng_state ^= rng_state << 17;
	return rng_state % n;
}

/*
 * Half width of the 95% interval of median(@a) / median(@b), relative to
 * the ratio itself; @a[i] and @b[i] are one interleaved pair.
 */
static double half_width(const double *a, const double *b, int n)
{
	double *ta = malloc(n * sizeof(*ta)), *tb = malloc(n * sizeof(*tb));
	double *r = malloc(BOOT * sizeof(*r)), point, lo, hi;

	for (int i = 0; i < n; i++) {
		ta[i] = a[i];
		tb[i] = b[i];
	}
	point = median_of(ta, n) / median_of(tb, n);
	for (int k = 0; k < BOOT; k++) {
		for (int i = 0; i < n; i++) {
			unsigned int j = rng(n);

			ta[i] = a[j];
			tb[i] = b[j];
		}
		r[k] = median_of(ta, n) / median_of(tb, n);
	}
	qsort(r, BOOT, sizeof(*r), cmp_double);
	lo = r[(int)(0.025 * BOOT)];
	hi = r[(int)(0.975 * BOOT) - 1];
	free(ta);
	free(tb);
	free(r);
	return (point - lo > hi - point ? point - lo : hi - point) / point;
}

/*
 * Interleaved samples of @nm methods (@ms[0] is stock) until every ratio's
 * interval is within TARGET_HALF, at least @min and at most @max pairs, or
 * @budget_s seconds; @pause_us between two freezes.
 */
static int run_until(const char *what, int mfd, const char *type, const enum method *ms,
		     int nm, int min, int max, int budget_s, int pause_us)
{
	double *v[NR_METHODS];
	unsigned long long t0 = tf_now_ns();
	double worst = 1;
	int rep, ret = 0;

	for (int k = 0; k < nm; k++)
		v[k] = calloc(max, sizeof(double));
	for (rep = 0; rep < max; rep++) {
		for (int k = 0; k < nm; k++) {
			int i = (rep + k) % nm;	/* rotate the order */
			long long us = freeze_us(mfd, ms[i]);

			/* Not a sample: taken again, up to ten times. */
			for (int n = 1; n < 10 && gave_up(us, what, type, ms[i], rep); n++)
				us = freeze_us(mfd, ms[i]);
			if (gave_up(us, what, type, ms[i], rep))
				fprintf(stderr, "bench: %s gave up ten times in a row\n",
					method_name[ms[i]]);

			if (us < 0 || thaw(mfd)) {
				ret = -1;
				goto out;
			}
			v[i][rep] = us;
			sample(what, type, method_name[ms[i]], rep, us);
			if (pause_us)
				usleep(pause_us);
		}
		if (((rep + 1) % ROUND && rep + 1 < max) || rep + 1 < min)
			continue;
		worst = 0;
		for (int k = 1; k < nm; k++) {
			double h = half_width(v[k], v[0], rep + 1);

			if (h > worst)
				worst = h;
		}
		if (worst <= TARGET_HALF ||
		    tf_now_ns() - t0 > budget_s * 1000000000ULL) {
			rep++;
			break;
		}
	}
out:
	printf("stop:%s,%s,%d,%.0f,%.2f,%s\n", what, type, rep, (tf_now_ns() - t0) / 1e9,
	       100 * worst, worst <= TARGET_HALF ? "met" : "cap");
	for (int k = 0; k < nm; k++)
		free(v[k]);
	return ret;
}

static int bench_cycle(struct tf_fs *fs, const char *type)
{
	static const enum method ms[] = { STOCK, TIMED, TIMED_EACH, TIMED_EXP };
	static const enum method rfc_ms[] = { STOCK, RFC };

	return run_until("cycle", fs->mfd, type, rfc ? rfc_ms : ms,
			 rfc ? ARRAY_SIZE(rfc_ms) : ARRAY_SIZE(ms),
			 quick ? 50 : 100, quick ? 50 : 2500, quick ? 60 : 240, 0);
}

/* --- the per-stage clock --- */

static int stage_freeze(const char *what, const char *type, enum method m, int rep, int mfd)
{
	char buf[4096], prev[32] = "", name[32];
	unsigned long long ns, prev_ns = 0;
	int fd, n = 0, off = 0, ret;
	long long us = freeze_us(mfd, m);

	if (us < 0 || thaw(mfd))
		return -1;
	fd = open(TF_DEBUGFS "/stages", O_RDONLY);
	if (fd < 0)
		return -1;
	while (off < (int)sizeof(buf) - 1 &&
	       (ret = read(fd, buf + off, sizeof(buf) - 1 - off)) > 0)
		off += ret;
	close(fd);
	buf[off] = '\0';
	/* The thaw left no marks: the first "begin" starts the freeze. */
	for (char *l = strtok(buf, "\n"); l; l = strtok(NULL, "\n")) {
		if (sscanf(l, "%31s %llu", name, &ns) != 2)
			continue;
		if (prev[0])
			printf("stage:%s,%s,%s,%d,%s,%s,%.1f\n", what, type, method_name[m], rep,
			       prev, name, (ns - prev_ns) / 1000.0);
		strcpy(prev, name);
		prev_ns = ns;
		n++;
	}
	/* The same freeze as the caller sees it: what lies outside "begin" to "end". */
	if (n)
		printf("call:%s,%s,%s,%d,%lld\n", what, type, method_name[m], rep, us);
	fflush(stdout);
	return n ? 0 : -1;
}

/*
 * @pause_us after each thaw: a freeze right after a thaw finds the levels'
 * readers still on their slow path (rcu_sync_exit() waits a grace period
 * before it lets them back), and its reader switch costs nothing; after a
 * pause it waits for a grace period, as a freeze made now and then does.
 */
static int bench_stages(struct tf_fs *fs, const char *type, const char *what, int nm,
			int pause_us)
{
	int ret = 0;

	if (tf_debugfs_write("stages", "on")) {
		printf("# no stage clock (a kernel without CONFIG_KPROBES?): no breakdown\n");
		return 0;
	}
	for (int rep = 0; rep < STAGE_REPS && !ret; rep++)
		for (int k = 0; k < nm && !ret; k++) {
			if (pause_us)
				usleep(pause_us);
			ret = stage_freeze(what, type, (rep + k) % nm, rep, fs->mfd);
		}
	tf_debugfs_write("stages", "off");
	return ret;
}

/* --- writers --- */

struct writers {
	int dirfd;
	int stop;
	unsigned long long bytes;
};

static void *writer(void *arg)
{
	struct writers *w = arg;
	static char buf[4096];
	char name[32];
	int fd;

	snprintf(name, sizeof(name), "tput.%lx", (unsigned long)pthread_self() % 997);
	fd = openat(w->dirfd, name, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	if (fd < 0)
		return NULL;
	for (off_t off = 0; !__atomic_load_n(&w->stop, __ATOMIC_RELAXED); off += sizeof(buf)) {
		if (off >= (32 << 20)) {	/* keep the file small: rewrite it */
			off = 0;
		}
		if (pwrite(fd, buf, sizeof(buf), off) != sizeof(buf))
			break;
		__atomic_add_fetch(&w->bytes, sizeof(buf), __ATOMIC_RELAXED);
	}
	close(fd);
	return NULL;
}

/*
 * MiB/s of two 4k buffered writers for TPUT_SECONDS; @cycle: freezer or -1,
 * whose freezes that gave up are said (@what, @type, @rep).
 */
static double throughput(int dirfd, int mfd, int cycle, const char *what, const char *type,
			 int rep)
{
	struct writers w = { .dirfd = dirfd };
	pthread_t t[2];
	unsigned long long t0 = tf_now_ns(), next = t0;

	for (int i = 0; i < 2; i++)
		pthread_create(&t[i], NULL, writer, &w);
	while (tf_now_ns() - t0 < TPUT_SECONDS * 1000000000ULL) {
		if (cycle >= 0 && tf_now_ns() >= next) {
			long long us = freeze_us(mfd, cycle);

			if (us >= 0)
				thaw(mfd);
			else
				gave_up(us, what, type, cycle, rep);
			next += 1000000000ULL;
		}
		usleep(10000);
	}
	__atomic_store_n(&w.stop, 1, __ATOMIC_RELAXED);
	for (int i = 0; i < 2; i++)
		pthread_join(t[i], NULL);
	return w.bytes / (1024.0 * 1024.0) / ((tf_now_ns() - t0) / 1e9);
}

/*
 * fio's buffered 4k writers in @fs, as a child; its pid, or -1 when fio is
 * not running two seconds later (it needs SysV IPC for its job table).
 */
static pid_t start_fio(struct tf_fs *fs)
{
	char dir[128];
	pid_t fio = fork();

	if (fio < 0)
		return -1;
	if (fio == 0) {
		snprintf(dir, sizeof(dir), "--directory=%s", fs->mnt);
		execlp("fio", "fio", "--name=busy", dir, "--rw=write", "--bs=4k",
		       "--size=64M", "--numjobs=2", "--time_based", "--runtime=3600",
		       "--ioengine=psync", "--minimal", "--output=/dev/null", NULL);
		_exit(127);
	}
	sleep(2);	/* fio running */
	if (waitpid(fio, NULL, WNOHANG) != 0) {
		fprintf(stderr, "bench: fio is not running (no fio, or no SysV IPC?)\n");
		return -1;
	}
	return fio;
}

static void stop_fio(pid_t fio)
{
	kill(fio, SIGTERM);
	waitpid(fio, NULL, 0);
	tf_run("pkill -TERM -x fio; sleep 1");
}

static int bench_busy(struct tf_fs *fs, const char *type)
{
	enum method ms[] = { STOCK, rfc ? RFC : TIMED };
	pid_t fio = start_fio(fs);
	int ret;

	if (fio < 0)
		return -1;
	ret = run_until("busy", fs->mfd, type, ms, ARRAY_SIZE(ms), quick ? 20 : 50,
			quick ? 20 : 600, quick ? 60 : 240, 50 * 1000);
	if (!ret && !rfc)
		ret = bench_stages(fs, type, "busy", 2, 0);
	stop_fio(fio);
	return ret;
}

static int bench_tput(struct tf_fs *fs, const char *type)
{
	enum method other = rfc ? RFC : TIMED;

	for (int rep = 0; rep < REPS_TPUT; rep++)
		for (int k = 0; k < 2; k++) {
			enum method m = (rep + k) % 2 ? other : STOCK;

			sample("tput_cycle", type, method_name[m], rep,
			       throughput(fs->mfd, fs->mfd, m, "tput_cycle", type, rep));
		}
	return 0;
}

/* Throughput with the module loaded and idle vs not loaded (ext4 only). */
static int bench_module(struct tf_fs *fs, const char *type, const char *ko)
{
	for (int rep = 0; rep < REPS_TPUT; rep++)
		for (int k = 0; k < 2; k++) {
			int loaded = (rep + k) % 2;

			close(dev);
			dev = -1;
			if (!loaded && tf_run("rmmod timed_freeze"))
				return -1;
			sample("tput_module", type, loaded ? "loaded" : "not_loaded", rep,
			       throughput(fs->mfd, fs->mfd, -1, NULL, NULL, rep));
			if (!loaded && tf_run("insmod %s", ko))
				return -1;
			dev = tf_open_dev();
		}
	return 0;
}

/*
 * --rfc [MS [RETRIES]]: the sysctls' deadline and retries for method rfc;
 * saves the sysctls, to be put back at exit.  0 or -1.
 */
static int rfc_setup(int argc, char **argv)
{
	if (argc > 2) {
		fprintf(stderr, "usage: bench --rfc [MS [RETRIES]]\n");
		return -1;
	}
	for (int i = 0; i < argc; i++)
		if (!*argv[i] || strlen(argv[i]) >= sizeof(rfc_timeout) - 1 ||
		    argv[i][strspn(argv[i], "0123456789")] ||
		    (i == 0 && !strtoul(argv[i], NULL, 10))) {
			fprintf(stderr, "bench: --rfc wants MS (> 0) and RETRIES, not: %s\n",
				argv[i]);
			return -1;
		}
	if (argc > 0)
		snprintf(rfc_timeout, sizeof(rfc_timeout), "%s", argv[0]);
	if (argc > 1)
		snprintf(rfc_retries, sizeof(rfc_retries), "%s", argv[1]);
	if (access(TF_SYSCTL_TIMEOUT, F_OK) || access(TF_SYSCTL_RETRIES, F_OK)) {
		fprintf(stderr, "bench: --rfc: no %s or %s: not the RFC kernel\n",
			TF_SYSCTL_TIMEOUT, TF_SYSCTL_RETRIES);
		return -1;
	}
	if (tf_read_str(TF_SYSCTL_TIMEOUT, saved_timeout, sizeof(saved_timeout)) ||
	    tf_read_str(TF_SYSCTL_RETRIES, saved_retries, sizeof(saved_retries))) {
		fprintf(stderr, "bench: --rfc: cannot read the sysctls: %s\n", strerror(errno));
		return -1;
	}
	atexit(sysctl_restore);
	/* The retries matter only with a deadline: written once. */
	if (sysctl_write(TF_SYSCTL_RETRIES, rfc_retries))
		return -1;
	printf("rfc:%s,%s\n", rfc_timeout, rfc_retries);
	return 0;
}

/* "bench stages": the per-stage passes only; "bench --rfc": see above. */
/* --- the retry policy under a slow daemon --- */

#define SLOW_TIMEOUT_MS	200
#define SLOW_REPS	(quick ? 1 : 5)
/* A method that has not frozen by then is stopped: the sample is a lower bound. */
#define SLOW_GIVE_UP_MS	120000ULL

enum slow_method { SLOW_OWN, SLOW_FIXED, SLOW_DRAIN, NR_SLOW };
static const char *const slow_name[] = { "own", "fixed", "drain" };

struct slow_sample {
	double ms, blocked_ms;
	unsigned int calls, attempts;
};

/* One sample of @m on the vector @e; 0 or -1. */
static int slow_one(struct vec_env *e, enum slow_method m, struct slow_sample *s)
{
	unsigned long long t0, blocked = 0;
	struct timed_freeze_args a;
	long before = journal_trips(&e->ctl), trips = before;
	int ret = -ETIMEDOUT;

	memset(s, 0, sizeof(*s));
	if (m != SLOW_OWN &&
	    tf_debugfs_write("retry_fixed_backoff", m == SLOW_FIXED ? "1" : "0"))
		return -1;
	t0 = tf_now_ns();
	if (pthread_create(&e->a, NULL, thread_a, &e->v))
		return -1;
	if (m == SLOW_OWN) {
		pthread_join(e->a, NULL);
		s->ms = (tf_now_ns() - t0) / 1e6;
		return e->v.a_ret == (ssize_t)e->v.len ? 0 : -1;
	}
	/* A is in its round trips once the first is in the journal. */
	for (int i = 0; i < 10000 && trips <= before; i++) {
		usleep(1000);
		trips = journal_trips(&e->ctl);
	}
	while (ret == -ETIMEDOUT && tf_now_ns() - t0 < SLOW_GIVE_UP_MS * NSEC_PER_MSEC) {
		ret = tf_freeze(dev, e->v.mfd, SLOW_TIMEOUT_MS * NSEC_PER_MSEC, 16, 0, &a);
		s->calls++;
		s->attempts += a.attempts;
		blocked += a.blocked_ns;
	}
	s->ms = (tf_now_ns() - t0) / 1e6;
	s->blocked_ms = blocked / 1e6;
	if (!ret && thaw(e->v.mfd))
		ret = -1;
	pthread_join(e->a, NULL);
	tf_debugfs_write("retry_fixed_backoff", "0");
	if (ret && ret != -ETIMEDOUT)
		fprintf(stderr, "bench: slow %s: freeze failed: %s\n", slow_name[m],
			strerror(-ret));
	return ret == -ETIMEDOUT || !ret ? 0 : -1;
}

/* Median of @v[i] / @own[i] and its 95% percentile-bootstrap interval. */
static void ratio_interval(const double *v, const double *own, int n, double *med, double *lo,
			   double *hi)
{
	double r[64], t[64], *boot = malloc(BOOT * sizeof(*boot));

	for (int i = 0; i < n; i++)
		r[i] = v[i] / own[i];
	for (int i = 0; i < n; i++)
		t[i] = r[i];
	*med = median_of(t, n);
	for (int k = 0; k < BOOT; k++) {
		for (int i = 0; i < n; i++)
			t[i] = r[rng(n)];
		boot[k] = median_of(t, n);
	}
	qsort(boot, BOOT, sizeof(*boot), cmp_double);
	*lo = boot[BOOT * 25 / 1000];
	*hi = boot[BOOT * 975 / 1000];
	free(boot);
}

static int bench_slow(const char *type)
{
	static const unsigned int cfg[][2] = { { 10, 50 }, { 40, 150 }, { 200, 20 } };

	for (size_t c = 0; c < ARRAY_SIZE(cfg); c++) {
		unsigned int n = cfg[c][0], d = cfg[c][1];
		double ms[NR_SLOW][64], blocked[NR_SLOW][64];
		struct vec_env e = {};
		int ret = 0;

		vec_file_size = n * 4096;
		e.ctl.slow_ms = d;
		if (vector_setup(&e, type, VEC_FUSE)) {
			fprintf(stderr, "bench: slow: no vector\n");
			vector_teardown(&e);
			return -1;
		}
		e.v.len = vec_file_size;
		for (int rep = 0; rep < SLOW_REPS && !ret; rep++) {
			/* Interleaved, and own first: each ratio has its own baseline. */
			for (int m = 0; m < NR_SLOW && !ret; m++) {
				struct slow_sample s;

				ret = slow_one(&e, m, &s);
				ms[m][rep] = s.ms;
				blocked[m][rep] = s.blocked_ms;
				printf("slow:%u,%u,%s,%d,%.1f,%u,%u,%.1f\n", n, d, slow_name[m],
				       rep, s.ms, s.calls, s.attempts, s.blocked_ms);
				fflush(stdout);
			}
		}
		vector_teardown(&e);
		if (ret)
			return -1;
		for (int m = SLOW_FIXED; m < NR_SLOW; m++) {
			double med, lo, hi, own = 0;

			ratio_interval(ms[m], ms[SLOW_OWN], SLOW_REPS, &med, &lo, &hi);
			for (int i = 0; i < SLOW_REPS; i++)
				own += ms[SLOW_OWN][i] / SLOW_REPS;
			printf("slowsum:%u,%u,%s,%.3f,%.3f,%.3f,%.1f,%.3f\n", n, d,
			       slow_name[m], med, lo, hi, median_of(blocked[m], SLOW_REPS),
			       (1.2 * own + SLOW_TIMEOUT_MS) / own);
			fflush(stdout);
		}
	}
	vec_file_size = FILE_SIZE;
	return 0;
}

int main(int argc, char **argv)
{
	static const char * const types[] = { "ext4", "xfs" };
	const char *ko = getenv("TF_MODULE");
	const char *q = getenv("TF_BENCH_QUICK");
	int only_stages = argc > 1 && !strcmp(argv[1], "stages");
	int only_slow = argc > 1 && !strcmp(argv[1], "slow");

	quick = q && *q && strcmp(q, "0");
	rfc = argc > 1 && !strcmp(argv[1], "--rfc");
	if (rfc) {
		if (rfc_setup(argc - 2, argv + 2))
			return 1;
	} else {
		dev = tf_open_dev();
		if (dev < 0 || !ko) {
			fprintf(stderr, "bench: no %s or TF_MODULE\n", TIMED_FREEZE_DEVICE);
			return 1;
		}
	}
	if (only_slow)
		return bench_slow("ext4") ? 1 : 0;
	for (int i = 0; i < 2; i++) {
		struct tf_fs fs;
		int ret;

		if (tf_fs_setup(&fs, types[i])) {
			fprintf(stderr, "bench: cannot set up %s\n", types[i]);
			return 1;
		}
		if (rfc)
			ret = bench_cycle(&fs, types[i]) || bench_busy(&fs, types[i]) ||
			      bench_tput(&fs, types[i]);
		else
			ret = (!only_stages && bench_cycle(&fs, types[i])) ||
			      bench_stages(&fs, types[i], "cycle", NR_MODULE_METHODS, 0) ||
			      bench_stages(&fs, types[i], "spaced", NR_MODULE_METHODS,
					   200 * 1000) ||
			      (!only_stages && (bench_busy(&fs, types[i]) ||
						bench_tput(&fs, types[i]) ||
						(i == 0 && bench_module(&fs, types[i], ko))));
		tf_fs_teardown(&fs);
		if (ret) {
			fprintf(stderr, "bench: %s failed\n", types[i]);
			return 1;
		}
	}
	/* The retry policy: fsA ext4 (the policy is the filesystem's no more than the vector). */
	if (!rfc && !only_stages && bench_slow("ext4"))
		return 1;
	return 0;
}
