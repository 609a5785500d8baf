// SPDX-License-Identifier: GPL-2.0
/*
 * bench: the timed freeze against the stock FIFREEZE, side by side, in the
 * test VM (run by scripts/bench with the module loaded).  The two paths
 * are interleaved, never all of one and then all of the other.  Prints one
 * line per sample:
 *
 *   csv:CASE,FS,METHOD,REP,VALUE
 *
 * cycle       freeze+thaw of an idle fs; VALUE: freeze call, us
 * busy        freeze while fio runs buffered 4k writers; VALUE: us
 * tput_cycle  writer throughput while a freeze/thaw cycles once a second;
 *             VALUE: MiB/s
 * tput_module writer throughput, module loaded and idle vs not; MiB/s
 */
#include <pthread.h>

#include "../../selftests/timed_freeze/tf_util.h"

#define REPS_CYCLE	30
#define REPS_BUSY	15
#define REPS_TPUT	5
#define TPUT_SECONDS	4

enum method { STOCK, TIMED, TIMED_EXP, NR_METHODS };
static const char *const method_name[] = { "stock", "timed", "timed_expedited" };

static int dev = -1;

/* One freeze of @fd by @m; its duration in us, or -1. */
static long long freeze_us(int fd, enum method m)
{
	unsigned long long t0 = tf_now_ns();
	struct timed_freeze_args a;
	int ret;

	if (m == STOCK)
		ret = ioctl(fd, FIFREEZE, 0);
	else
		ret = tf_freeze(dev, fd, 10000 * NSEC_PER_MSEC, 1,
				m == TIMED_EXP ? TIMED_FREEZE_EXPEDITED : 0, &a);
	if (ret)
		return -1;
	return (tf_now_ns() - t0) / 1000;
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

static int bench_cycle(struct tf_fs *fs, const char *type)
{
	for (int rep = 0; rep < REPS_CYCLE; rep++) {
		for (int k = 0; k < NR_METHODS; k++) {
			enum method m = (rep + k) % NR_METHODS;	/* rotate the order */
			long long us = freeze_us(fs->mfd, m);

			if (us < 0 || thaw(fs->mfd))
				return -1;
			sample("cycle", type, method_name[m], rep, us);
		}
	}
	return 0;
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

/* MiB/s of two 4k buffered writers for TPUT_SECONDS; @cycle: freezer or -1. */
static double throughput(int dirfd, int mfd, int cycle)
{
	struct writers w = { .dirfd = dirfd };
	pthread_t t[2];
	unsigned long long t0 = tf_now_ns(), next = t0;

	for (int i = 0; i < 2; i++)
		pthread_create(&t[i], NULL, writer, &w);
	while (tf_now_ns() - t0 < TPUT_SECONDS * 1000000000ULL) {
		if (cycle >= 0 && tf_now_ns() >= next) {
			if (freeze_us(mfd, cycle) >= 0)
				thaw(mfd);
			next += 1000000000ULL;
		}
		usleep(10000);
	}
	__atomic_store_n(&w.stop, 1, __ATOMIC_RELAXED);
	for (int i = 0; i < 2; i++)
		pthread_join(t[i], NULL);
	return w.bytes / (1024.0 * 1024.0) / ((tf_now_ns() - t0) / 1e9);
}

static int bench_busy(struct tf_fs *fs, const char *type)
{
	char dir[128];
	pid_t fio = fork();

	if (fio == 0) {
		snprintf(dir, sizeof(dir), "--directory=%s", fs->mnt);
		execlp("fio", "fio", "--name=busy", dir, "--rw=write", "--bs=4k",
		       "--size=64M", "--numjobs=2", "--time_based", "--runtime=600",
		       "--ioengine=psync", "--minimal", "--output=/dev/null", NULL);
		_exit(127);
	}
	sleep(2);	/* fio running */
	for (int rep = 0; rep < REPS_BUSY; rep++) {
		for (int k = 0; k < 2; k++) {
			enum method m = (rep + k) % 2 ? TIMED : STOCK;
			long long us = freeze_us(fs->mfd, m);

			if (us < 0 || thaw(fs->mfd))
				break;
			sample("busy", type, method_name[m], rep, us);
			usleep(200 * 1000);
		}
	}
	kill(fio, SIGTERM);
	waitpid(fio, NULL, 0);
	tf_run("pkill -TERM -x fio; sleep 1");
	return 0;
}

static int bench_tput(struct tf_fs *fs, const char *type)
{
	for (int rep = 0; rep < REPS_TPUT; rep++)
		for (int k = 0; k < 2; k++) {
			enum method m = (rep + k) % 2 ? TIMED : STOCK;

			sample("tput_cycle", type, method_name[m], rep,
			       throughput(fs->mfd, fs->mfd, m));
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
			       throughput(fs->mfd, fs->mfd, -1));
			if (!loaded && tf_run("insmod %s", ko))
				return -1;
			dev = tf_open_dev();
		}
	return 0;
}

int main(void)
{
	static const char * const types[] = { "ext4", "xfs" };
	const char *ko = getenv("TF_MODULE");

	dev = tf_open_dev();
	if (dev < 0 || !ko) {
		fprintf(stderr, "bench: no %s or TF_MODULE\n", TIMED_FREEZE_DEVICE);
		return 1;
	}
	for (int i = 0; i < 2; i++) {
		struct tf_fs fs;
		int ret;

		if (tf_fs_setup(&fs, types[i])) {
			fprintf(stderr, "bench: cannot set up %s\n", types[i]);
			return 1;
		}
		ret = bench_cycle(&fs, types[i]) || bench_busy(&fs, types[i]) ||
		      bench_tput(&fs, types[i]) ||
		      (i == 0 && bench_module(&fs, types[i], ko));
		tf_fs_teardown(&fs);
		if (ret) {
			fprintf(stderr, "bench: %s failed\n", types[i]);
			return 1;
		}
	}
	return 0;
}
