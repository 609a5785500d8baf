// SPDX-License-Identifier: GPL-2.0
/*
 * Stress in the shape of fstests' freeze group, with the timed freeze in
 * the loop: generic/068 (fsstress and mmap writers while a loop freezes
 * and thaws; "the fail case is a hang"), generic/390 (many freezers at
 * once: each gets EBUSY or succeeds, none hangs) and xfs/297 (freeze under
 * fsstress).  On a loop-mounted ext4 or xfs (fsA), for TF_STRESS_SECONDS
 * (default 120, split between the two variants), all at once:
 *
 *  - load: stress-ng's iomix, hdd, mmap, rename, link and dir stressors
 *    (--verify) and two fio jobs (psync and mmap, both verifying), in
 *    directories of fsA;
 *  - data: writer processes of ours write files whole through MAP_SHARED
 *    mappings (msync) or write() (fsync), rewrite them in place through a
 *    mapping, write them from a mapping of another fsA file, replace them
 *    by rename and unlink them; each keeps a manifest (size, checksum) of
 *    every file it reported written;
 *  - freezers: threads of timed freezes (deadlines of 1-20 ms, 1-2 s or
 *    none; OWNED or not, expedited or not, with retries), thawed by the
 *    THAW ioctl, FITHAW or closing the device, and threads of stock
 *    FIFREEZE/FITHAW;
 *  - the deadlock vector of vector.h, re-armed over and over: thread A (a
 *    child process here) writes fsA from a mapping of a FUSE file whose
 *    READ the daemon answers only after writing to fsA.  While A is in its
 *    fault, every attempt of a timed freeze gives up and is undone, and the
 *    daemon's write gets through only because of that undo.  A stock
 *    FIFREEZE would wedge on it, so it is issued only while the vector is
 *    not armed (a lock); a watchdog fails the test and rescues (aborts the
 *    FUSE connection, thaws) when any freeze or thaw waits past its bound.
 *
 * Afterwards: no task in D state, nothing left frozen (a write gets
 * through, no OWNED freeze listed), fsA unmounts and checks clean
 * (e2fsck -fn, xfs_repair -n), and, mounted again, every file the writers
 * reported written has the size and checksum they wrote; stress-ng and
 * fio passed.  One "# stress ..." line a variant gives the counts, which
 * must show timed freezes that succeeded and attempts that gave up while
 * thread A was inside fsA.
 */
#include <pthread.h>
#include <sys/mman.h>
#include <sys/shm.h>

#include "kselftest_harness.h"
#include "vector.h"

#define N_WRITERS	3
#define N_SLOTS		48		/* files of each writer */
#define WRITE_MAX	(256 * 1024)	/* largest file a writer writes */
#define SRC_SIZE	(2 * WRITE_MAX)	/* a writer's source file, mapped */
#define N_TIMED		3		/* timed freezer threads */
#define N_STOCK		2		/* stock FIFREEZE threads */
#define OP_VECTOR	(N_TIMED + N_STOCK)
#define N_OPS		(OP_VECTOR + 1)	/* the waits the watchdog watches */
#define N_FAILS_KEPT	8
#define MSEC		NSEC_PER_MSEC
#define SEC		(1000 * MSEC)
/* A wait this much past its own bound is a hang: rescue, fail. */
#define HANG_NS		(60 * SEC)
/*
 * How much later than its deadlines (timeout x attempts, plus the pauses)
 * a timed freeze may return under this load, in a TCG guest.
 */
#define OVERSHOOT_MAX_NS (15 * SEC)
/* How long the processes get to end once the run is over. */
#define END_MS		120000

enum { SLOT_NONE, SLOT_BUSY, SLOT_WRITTEN, SLOT_GONE };

/* A file of a writer, as its manifest has it. */
struct slot {
	unsigned long long size;
	unsigned long long sum;
	int state;
};

enum { W_MMAP, W_WRITE, W_REWRITE, W_FROM_MAP, W_RENAME, W_UNLINK, W_VERIFY, W_OPS };

struct writer {
	struct slot slot[N_SLOTS];
	unsigned long long ops[W_OPS];
	unsigned long long verified;	/* bytes read back during the run */
	char err[200];
};

/* Shared with the writer processes and thread A's child. */
struct shared {
	int stop;
	ssize_t a_ret;
	struct writer w[N_WRITERS];
};

/* A wait the watchdog watches: its start (0: none), its bound, its name. */
struct op {
	unsigned long long start;
	unsigned long long limit;
	unsigned long long flagged;
	const char *what;
};

struct counts {
	unsigned long long timed;	/* timed freezes asked for */
	unsigned long long timed_ok;
	unsigned long long retry_ok;	/* succeeded with attempts > 1 */
	unsigned long long etimedout;
	unsigned long long ebusy;
	unsigned long long gave_up;	/* attempts that gave up, undone */
	unsigned long long on_vector;	/* of those, in freezes begun with A in fsA */
	unsigned long long vector_retry_ok; /* begun with A in fsA, succeeded on a retry */
	unsigned long long by_wait[8];	/* ETIMEDOUTs by the wait that gave up */
	unsigned long long overshoot;	/* ns, largest */
	unsigned long long stock_ok;
	unsigned long long stock_ebusy;
	unsigned long long thaw_ioctl;
	unsigned long long thaw_fithaw;
	unsigned long long thaw_close;
	unsigned long long cycles;	/* of the vector */
	unsigned long long daemon_wait;	/* ns, largest: go to the daemon's write */
};

struct stress {
	struct vec_env e;
	const char *type;
	unsigned long long seed;
	unsigned long long secs;
	struct shared *sh;
	int stop;			/* the threads' end */
	int armed;			/* the cycle whose thread A is in fsA, or 0 */
	pthread_rwlock_t stock_lock;	/* read: a stock freeze; write: armed */
	pthread_mutex_t fail_lock;
	int locks;
	struct op op[N_OPS];
	struct counts n;
	int nfail;
	char fails[N_FAILS_KEPT][200];
	pid_t writer[N_WRITERS];
	pid_t sng;
	pid_t fio;
	pid_t a;
	pthread_t th[N_OPS];
	int nth;
	pthread_t wd;
	int wd_started;
	int wd_stop;
	unsigned long long files;
	unsigned long long bytes;
	char ends[160];			/* how long each part took to end */
	unsigned long long setup_ns;	/* the fixture's set-up */
	unsigned long long checks_ns;	/* the checks after the run */
};

/* A freezer thread's own. */
struct freezer {
	struct stress *s;
	int idx;
	unsigned long long rng;
};

static unsigned long long rnd(unsigned long long *s)
{
	/* xorshift64* */
	*s ^= *s >> 12;
	*s ^= *s << 25;
	*s ^= *s >> 27;
	return *s * 2685821657736338717ULL;
}

/* A number in [@lo, @hi]. */
static unsigned long long rnd_in(unsigned long long *s, unsigned long long lo,
				 unsigned long long hi)
{
	return lo + rnd(s) % (hi - lo + 1);
}

static void fill_content(unsigned char *buf, size_t size, unsigned long long seed)
{
	unsigned long long s = seed | 1;

	for (size_t i = 0; i < size; i += 8) {
		unsigned long long v = rnd(&s);

		memcpy(buf + i, &v, size - i < 8 ? size - i : 8);
	}
}

/* FNV-1a, 64 bits: the manifest's checksum. */
static unsigned long long fnv1a(const unsigned char *p, size_t n, unsigned long long h)
{
	for (size_t i = 0; i < n; i++)
		h = (h ^ p[i]) * 0x100000001b3ULL;
	return h;
}

#define FNV_INIT	0xcbf29ce484222325ULL

static void add(unsigned long long *c, unsigned long long v)
{
	__atomic_add_fetch(c, v, __ATOMIC_RELAXED);
}

static void set_max(unsigned long long *c, unsigned long long v)
{
	unsigned long long old = __atomic_load_n(c, __ATOMIC_RELAXED);

	while (v > old && !__atomic_compare_exchange_n(c, &old, v, false, __ATOMIC_RELAXED,
						       __ATOMIC_RELAXED))
		;
}

static int stopped(struct stress *s)
{
	return __atomic_load_n(&s->stop, __ATOMIC_ACQUIRE);
}

static void failf(struct stress *s, const char *fmt, ...)
{
	char msg[200];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	pthread_mutex_lock(&s->fail_lock);
	if (s->nfail < N_FAILS_KEPT)
		memcpy(s->fails[s->nfail], msg, sizeof(msg));
	s->nfail++;
	pthread_mutex_unlock(&s->fail_lock);
	fprintf(stderr, "# stress %s: FAIL: %s\n", s->type, msg);
}

/* Sleep @ms, or less once the run is over. */
static void nap(struct stress *s, unsigned long long ms)
{
	while (ms && !stopped(s)) {
		unsigned long long n = ms < 50 ? ms : 50;

		usleep(n * 1000);
		ms -= n;
	}
}

static void op_begin(struct stress *s, int i, const char *what, unsigned long long limit)
{
	s->op[i].what = what;
	s->op[i].limit = limit;
	__atomic_store_n(&s->op[i].start, tf_now_ns(), __ATOMIC_RELEASE);
}

static void op_end(struct stress *s, int i)
{
	__atomic_store_n(&s->op[i].start, 0, __ATOMIC_RELEASE);
}

/* Thaw whatever is frozen on fsA: every OWNED freeze, then FITHAW. */
static void thaw_all(struct stress *s)
{
	struct timed_freeze_owned e[16];
	unsigned int total = 0;
	int dev = tf_open_dev();

	if (dev >= 0 && !tf_list(dev, e, 16, &total))
		for (unsigned int i = 0; i < total && i < 16; i++)
			tf_force_thaw(dev, e[i].id);
	if (dev >= 0)
		close(dev);
	for (int i = 0; i < 8 && s->e.fs.mfd >= 0 && !ioctl(s->e.fs.mfd, FITHAW, 0); i++)
		;
}

/*
 * A wait went past its bound: show the blocked tasks (sysrq w, in the
 * kernel log), fail the daemon's request (A's fault fails and A leaves
 * fsA), and thaw everything, so that the test ends.
 */
static void rescue(struct stress *s)
{
	const char *d = task_in_d_state();
	int fd = open("/proc/sysrq-trigger", O_WRONLY);

	fprintf(stderr, "# stress %s: rescuing; in D state: %s\n", s->type, d ? d : "none");
	if (fd >= 0) {
		if (write(fd, "w", 1) != 1)
			fprintf(stderr, "# stress: sysrq w: %s\n", strerror(errno));
		close(fd);
	}
	vector_rescue(&s->e);
	thaw_all(s);
}

static void *watchdog(void *arg)
{
	struct stress *s = arg;

	while (!__atomic_load_n(&s->wd_stop, __ATOMIC_ACQUIRE)) {
		unsigned long long now = tf_now_ns();

		for (int i = 0; i < N_OPS; i++) {
			unsigned long long t0 = __atomic_load_n(&s->op[i].start, __ATOMIC_ACQUIRE);

			if (!t0 || now - t0 <= s->op[i].limit || s->op[i].flagged == t0)
				continue;
			s->op[i].flagged = t0;
			failf(s, "%s did not return in %llu ms", s->op[i].what,
			      (now - t0) / MSEC);
			rescue(s);
		}
		usleep(200 * 1000);
	}
	return NULL;
}

/* --- the writers: processes, each with its manifest --- */

/* @n bytes of @p to @fd in pieces of random size; 0 or -errno. */
static int put(int fd, const unsigned char *p, size_t n, unsigned long long *rng)
{
	while (n) {
		size_t len = rnd_in(rng, 1, 64 * 1024);
		ssize_t w = write(fd, p, len < n ? len : n);

		if (w < 0)
			return -errno;
		p += w;
		n -= w;
	}
	return 0;
}

/* @n bytes of @p as the whole of @fd, through a MAP_SHARED mapping; 0 or -errno. */
static int put_mapped(int fd, const unsigned char *p, size_t n, int truncate)
{
	void *m;
	int ret = 0;

	if (truncate && ftruncate(fd, n))
		return -errno;
	m = mmap(NULL, n, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (m == MAP_FAILED)
		return -errno;
	memcpy(m, p, n);
	if (msync(m, n, MS_SYNC))
		ret = -errno;
	munmap(m, n);
	return ret;
}

/* Size and checksum of @dir/@name as read now; 0 or -errno. */
static int read_sum(int dir, const char *name, unsigned long long *size,
		    unsigned long long *sum)
{
	static unsigned char buf[1 << 16];
	int fd;
	ssize_t n;

	*size = 0;
	*sum = FNV_INIT;
	fd = openat(dir, name, O_RDONLY);
	if (fd < 0)
		return -errno;
	while ((n = read(fd, buf, sizeof(buf))) > 0) {
		*sum = fnv1a(buf, n, *sum);
		*size += n;
	}
	close(fd);
	return n < 0 ? -EIO : 0;
}

/* One operation on file @i of writer @id; 0 or -errno (@what: which call). */
static int writer_op(int dir, unsigned int id, unsigned int i, int op, struct slot *sl,
		     unsigned long long *rng, unsigned char *buf, const unsigned char *src,
		     const unsigned char *map, const char **what)
{
	const unsigned char *data = buf;
	char name[32], tmp[32];
	size_t size = rnd_in(rng, 1, WRITE_MAX);
	int fd, ret;

	snprintf(name, sizeof(name), "%u-%u", id, i);
	snprintf(tmp, sizeof(tmp), "%u.tmp", id);
	if (op == W_UNLINK) {
		*what = "unlink";
		if (unlinkat(dir, name, 0) && errno != ENOENT)
			return -errno;
		sl->state = SLOT_GONE;
		return 0;
	}
	if (op == W_REWRITE)
		size = sl->size;
	if (op == W_FROM_MAP) {
		size_t off = rnd_in(rng, 0, SRC_SIZE - size);

		/* The bytes come from the mapping, inside write(): faults on fsA. */
		data = map + off;
		sl->sum = fnv1a(src + off, size, FNV_INIT);
	} else {
		fill_content(buf, size, rnd(rng));
		sl->sum = fnv1a(buf, size, FNV_INIT);
	}
	sl->size = size;
	*what = "open";
	fd = openat(dir, op == W_RENAME ? tmp : name,
		    op == W_REWRITE ? O_RDWR : O_RDWR | O_CREAT | O_TRUNC, 0644);
	if (fd < 0)
		return -errno;
	switch (op) {
	case W_MMAP:
	case W_REWRITE:
		*what = "mmap, msync";
		ret = put_mapped(fd, data, size, op == W_MMAP);
		break;
	case W_WRITE:
	case W_FROM_MAP:
		*what = "write, fsync";
		ret = put(fd, data, size, rng);
		if (!ret && fsync(fd))
			ret = -errno;
		break;
	default:
		*what = "write, fdatasync";
		ret = put(fd, data, size, rng);
		if (!ret && fdatasync(fd))
			ret = -errno;
		break;
	}
	if (close(fd) && !ret) {
		*what = "close";
		ret = -errno;
	}
	if (!ret && op == W_RENAME && renameat(dir, tmp, dir, name)) {
		*what = "rename";
		ret = -errno;
	}
	return ret;
}

static void writer_main(struct stress *s, unsigned int id)
{
	struct writer *w = &s->sh->w[id];
	unsigned long long rng = s->seed ^ (id + 1) * 0x9e3779b97f4a7c15ULL;
	unsigned char *buf = malloc(WRITE_MAX), *src = malloc(SRC_SIZE);
	const int keep[] = { s->e.fs.mfd, -1 };
	const char *what = "set-up";
	unsigned char *map;
	char name[32];
	int dir, fd;

	tf_close_fds_but(NULL, 0, keep);
	dir = openat(s->e.fs.mfd, "w", O_RDONLY | O_DIRECTORY);
	snprintf(name, sizeof(name), "%u.src", id);
	fd = dir < 0 ? -1 : openat(dir, name, O_RDWR | O_CREAT | O_TRUNC, 0644);
	if (!buf || !src || fd < 0)
		goto fail;
	fill_content(src, SRC_SIZE, rnd(&rng));
	if (put(fd, src, SRC_SIZE, &rng) || fsync(fd))
		goto fail;
	map = mmap(NULL, SRC_SIZE, PROT_READ, MAP_SHARED, fd, 0);
	if (map == MAP_FAILED)
		goto fail;
	while (!__atomic_load_n(&s->sh->stop, __ATOMIC_ACQUIRE)) {
		unsigned int i = rnd(&rng) % N_SLOTS, r = rnd(&rng) % 100;
		struct slot *sl = &w->slot[i];
		int op = r < 25 ? W_MMAP : r < 42 ? W_WRITE : r < 55 ? W_REWRITE :
			 r < 68 ? W_FROM_MAP : r < 80 ? W_RENAME : r < 85 ? W_UNLINK : W_VERIFY;
		int ret;

		if (op == W_VERIFY && sl->state == SLOT_WRITTEN) {
			unsigned long long size, sum;
			char name[32];

			/* Read back now, under the freezes: the page cache's view. */
			snprintf(name, sizeof(name), "%u-%u", id, i);
			ret = read_sum(dir, name, &size, &sum);
			if (ret || size != sl->size || sum != sl->sum) {
				snprintf(w->err, sizeof(w->err),
					 "writer %u, file %s read back during the run: %s, %llu bytes, checksum %016llx; written: %llu bytes, %016llx",
					 id, name, ret ? strerror(-ret) : "content differs",
					 size, sum, sl->size, sl->sum);
				_exit(1);
			}
			w->ops[W_VERIFY]++;
			w->verified += size;
			continue;
		}
		if (op == W_VERIFY)
			continue;
		if (op == W_REWRITE && sl->state != SLOT_WRITTEN)
			op = W_MMAP;
		/* Not in the manifest while it changes. */
		__atomic_store_n(&sl->state, SLOT_BUSY, __ATOMIC_RELEASE);
		ret = writer_op(dir, id, i, op, sl, &rng, buf, src, map, &what);
		if (ret) {
			snprintf(w->err, sizeof(w->err), "writer %u, file %u-%u: %s: %s",
				 id, id, i, what, strerror(-ret));
			_exit(1);
		}
		if (op != W_UNLINK)
			__atomic_store_n(&sl->state, SLOT_WRITTEN, __ATOMIC_RELEASE);
		w->ops[op]++;
	}
	_exit(0);
fail:
	snprintf(w->err, sizeof(w->err), "writer %u: %s: %s", id, what, strerror(errno));
	_exit(1);
}

/* The manifests against fsA (mounted again): files, bytes; failures reported. */
static void check_manifests(struct stress *s)
{
	int dir = openat(s->e.fs.mfd, "w", O_RDONLY | O_DIRECTORY);

	if (dir < 0) {
		failf(s, "manifest check: no directory w on fsA: %s", strerror(errno));
		return;
	}
	for (unsigned int id = 0; id < N_WRITERS; id++) {
		for (unsigned int i = 0; i < N_SLOTS; i++) {
			struct slot *sl = &s->sh->w[id].slot[i];
			unsigned long long sum = 0, size = 0;
			char name[32];
			int ret;

			snprintf(name, sizeof(name), "%u-%u", id, i);
			ret = read_sum(dir, name, &size, &sum);
			if (sl->state == SLOT_GONE) {
				if (ret != -ENOENT)
					failf(s, "file %s was unlinked, and is there", name);
			} else if (sl->state == SLOT_WRITTEN) {
				if (ret)
					failf(s, "file %s was written, and cannot be read: %s",
					      name, strerror(-ret));
				else if (size != sl->size || sum != sl->sum)
					failf(s,
					      "file %s: %llu bytes, checksum %016llx; written: %llu bytes, %016llx",
					      name, size, sum, sl->size, sl->sum);
				s->files++;
				s->bytes += size;
			}
		}
	}
	close(dir);
}

/* --- the vector: thread A, the daemon, re-armed each cycle --- */

/* A new FUSE daemon on fsB with new pipes: its first READ is the vector's. */
static int vector_rearm(struct stress *s)
{
	struct vec_env *e = &s->e;
	int *fds[] = { &e->ctl.evt[0], &e->ctl.evt[1], &e->ctl.go[0], &e->ctl.go[1],
		       &e->ctl.ans[0], &e->ctl.ans[1] };

	if (e->daemon > 0) {
		kill(e->daemon, SIGKILL);
		waitpid(e->daemon, NULL, 0);
		e->daemon = 0;
	}
	umount2(e->v.src_mnt, MNT_DETACH);
	for (unsigned int i = 0; i < ARRAY_SIZE(fds); i++)
		close(*fds[i]);
	if (pipe2(e->ctl.evt, O_NONBLOCK) || pipe(e->ctl.go) || pipe(e->ctl.ans))
		return -1;
	return vector_fuse_start(e);
}

/* Thread A of vector.h, in a child: its fault holds only the child's locks. */
static pid_t start_a(struct stress *s)
{
	char path[192];
	struct stat st;
	pid_t pid;

	snprintf(path, sizeof(path), "%s/data", s->e.v.src_mnt);
	if (stat(path, &st))
		return -1;
	s->sh->a_ret = 0;
	pid = fork();
	if (pid == 0) {
		const int keep[] = { s->e.v.mfd, -1 };

		tf_close_fds_but(NULL, 0, keep);
		thread_a(&s->e.v);
		s->sh->a_ret = s->e.v.a_ret;
		_exit(0);
	}
	return pid;
}

/*
 * One arming: A into its fault (inside fsA's level 1), held a while
 * (every freeze attempt now gives up), the daemon told to write to fsA
 * (it can only once an attempt gave up and was undone), held again, then
 * answered; A's data checked.  0, or -1 when the vector broke (failed).
 */
static int vector_cycle(struct stress *s, int cycle, unsigned long long *rng)
{
	struct vec_env *e = &s->e;
	unsigned long long t;
	int ret = 0;

	op_begin(s, OP_VECTOR, "a cycle of the vector", 3 * 30 * SEC + HANG_NS);
	s->a = start_a(s);
	if (s->a <= 0 || !wait_event(e->ctl.evt[0], 'r', 30000)) {
		failf(s, "cycle %d: thread A did not reach the daemon", cycle);
		ret = -1;
		goto out;
	}
	__atomic_store_n(&s->armed, cycle, __ATOMIC_RELEASE);
	nap(s, rnd_in(rng, 100, 1500));
	t = tf_now_ns();
	if (send_byte(e->ctl.go[1]) || !wait_event(e->ctl.evt[0], 'w', 30000)) {
		failf(s, "cycle %d: the daemon's write to fsA did not get through in 30 s",
		      cycle);
		ret = -1;
		goto out;
	}
	set_max(&s->n.daemon_wait, tf_now_ns() - t);
	nap(s, rnd_in(rng, 0, 300));
	if (send_byte(e->ctl.ans[1]))
		ret = -1;
out:
	if (s->a > 0 && tf_wait_child(s->a, ret ? 0 : 30000) < 0) {
		if (!ret)
			failf(s, "cycle %d: thread A did not finish in 30 s", cycle);
		ret = -1;
		rescue(s);
		if (tf_wait_child(s->a, 30000) < 0)
			failf(s, "cycle %d: thread A did not finish even so", cycle);
	}
	s->a = 0;
	__atomic_store_n(&s->armed, 0, __ATOMIC_RELEASE);
	op_end(s, OP_VECTOR);
	if (!ret && (s->sh->a_ret != FILE_SIZE || !dest_is_right(e->fs.mfd))) {
		failf(s, "cycle %d: thread A's write returned %zd, its data %s", cycle,
		      s->sh->a_ret, dest_is_right(e->fs.mfd) ? "right" : "wrong");
		ret = -1;
	}
	if (!ret)
		add(&s->n.cycles, 1);
	return ret;
}

static void *vector_thread(void *arg)
{
	struct stress *s = arg;
	unsigned long long rng = s->seed ^ 0x5bd1e995ULL;

	for (int cycle = 1; !stopped(s); cycle++) {
		int ret;

		/* No stock freeze from here until A is out of fsA. */
		pthread_rwlock_wrlock(&s->stock_lock);
		ret = cycle > 1 ? vector_rearm(s) : 0;
		if (ret)
			failf(s, "cycle %d: re-arming the vector: %s", cycle, strerror(errno));
		else
			ret = vector_cycle(s, cycle, &rng);
		pthread_rwlock_unlock(&s->stock_lock);
		if (ret) {
			/* The vector is broken: end the run. */
			__atomic_store_n(&s->stop, 1, __ATOMIC_RELEASE);
			break;
		}
		nap(s, rnd_in(&rng, 500, 2000));
	}
	return NULL;
}

/* --- the freezers --- */

static void count_timed(struct stress *s, int ret, const struct timed_freeze_args *a,
			unsigned long long timeout, unsigned int retries, int vec)
{
	unsigned long long gave = 0, bound;

	add(&s->n.timed, 1);
	switch (ret) {
	case 0:
		add(&s->n.timed_ok, 1);
		if (a->attempts > 1)
			add(&s->n.retry_ok, 1);
		if (a->attempts > 1 && vec)
			add(&s->n.vector_retry_ok, 1);
		if (!a->attempts || a->attempts > retries + 1)
			failf(s, "freeze succeeded after %u attempts of %u", a->attempts,
			      retries + 1);
		gave = a->attempts ? a->attempts - 1 : 0;
		break;
	case -ETIMEDOUT:
		add(&s->n.etimedout, 1);
		gave = a->attempts;
		add(&s->n.by_wait[a->gave_up & 7], 1);
		if (!a->gave_up || !a->attempts || a->attempts > retries + 1)
			failf(s, "ETIMEDOUT after %u attempts of %u, gave_up %u", a->attempts,
			      retries + 1, a->gave_up);
		/* Its deadline: the pauses may wait for the writers up to it. */
		bound = tf_default_deadline_ns(timeout, retries);
		if (a->elapsed_ns > bound)
			set_max(&s->n.overshoot, a->elapsed_ns - bound);
		break;
	case -EBUSY:
		add(&s->n.ebusy, 1);
		gave = a->attempts ? a->attempts - 1 : 0;
		break;
	default:
		failf(s, "timed freeze: %s", strerror(-ret));
	}
	add(&s->n.gave_up, gave);
	if (vec)
		add(&s->n.on_vector, gave);
}

/* Thaw the freeze this thread made, one of the ways; the device file, maybe new. */
static int thaw_timed(struct freezer *f, int dev, unsigned long long flags)
{
	struct stress *s = f->s;
	int how = rnd(&f->rng) % 2, ret;

	op_begin(s, f->idx, "a thaw", HANG_NS);
	if (flags & TIMED_FREEZE_OWNED && how) {
		add(&s->n.thaw_close, 1);
		close(dev);
		dev = tf_open_dev();
		ret = dev < 0 ? -errno : 0;
	} else if (flags & TIMED_FREEZE_OWNED || how) {
		add(&s->n.thaw_ioctl, 1);
		ret = tf_thaw(dev, s->e.fs.mfd, flags & TIMED_FREEZE_OWNED);
	} else {
		add(&s->n.thaw_fithaw, 1);
		ret = ioctl(s->e.fs.mfd, FITHAW, 0) ? -errno : 0;
	}
	op_end(s, f->idx);
	if (ret)
		failf(s, "thaw of a timed freeze (flags %llx, way %d): %s", flags, how,
		      strerror(-ret));
	return dev;
}

static void *timed_freezer(void *arg)
{
	struct freezer *f = arg;
	struct stress *s = f->s;
	int dev = tf_open_dev();
	/*
	 * On this thread's heap, copy-on-write after the fork()s of the writers'
	 * and the vector's starts: the module keeps the result's pages pinned
	 * while the freeze waits, so such a fork() must not make a good struct
	 * fail with EFAULT.
	 */
	struct timed_freeze_args *a = calloc(1, sizeof(*a));

	if (dev < 0 || !a) {
		failf(s, "open %s, calloc: %s", TIMED_FREEZE_DEVICE, strerror(errno));
		free(a);
		return NULL;
	}
	while (!stopped(s)) {
		unsigned long long timeout, flags = 0, r = rnd(&f->rng) % 100;
		unsigned int retries = 0;
		int ret, armed;

		if (r < 10) {
			timeout = 0;
		} else if (r < 60) {
			timeout = rnd_in(&f->rng, 1, 20) * MSEC;
			retries = rnd(&f->rng) % 7;
		} else {
			timeout = rnd_in(&f->rng, 1000, 2000) * MSEC;
			retries = rnd(&f->rng) % 3;
		}
		r = rnd(&f->rng);
		if (r & 1)
			flags |= TIMED_FREEZE_OWNED;
		if (r & 2)
			flags |= TIMED_FREEZE_EXPEDITED;
		op_begin(s, f->idx, "a timed freeze",
			 (retries + 1) * (timeout + TIMED_FREEZE_BACKOFF_NS) + HANG_NS);
		/* Started with thread A inside fsA: its first attempts meet the vector. */
		armed = __atomic_load_n(&s->armed, __ATOMIC_ACQUIRE);
		ret = tf_freeze(dev, s->e.fs.mfd, timeout, retries, flags, a);
		op_end(s, f->idx);
		count_timed(s, ret, a, timeout, retries, armed);
		if (!ret) {
			nap(s, rnd_in(&f->rng, 0, 20));
			dev = thaw_timed(f, dev, flags);
			if (dev < 0)
				break;
		}
		nap(s, rnd_in(&f->rng, 10, 150));
	}
	if (dev >= 0)
		close(dev);
	free(a);
	return NULL;
}

static void *stock_freezer(void *arg)
{
	struct freezer *f = arg;
	struct stress *s = f->s;

	while (!stopped(s)) {
		int ret;

		/* Only while the vector is not armed: stock has no deadline. */
		if (pthread_rwlock_tryrdlock(&s->stock_lock)) {
			nap(s, 20);
			continue;
		}
		op_begin(s, f->idx, "a stock FIFREEZE", HANG_NS);
		ret = ioctl(s->e.fs.mfd, FIFREEZE, 0) ? -errno : 0;
		op_end(s, f->idx);
		if (!ret) {
			add(&s->n.stock_ok, 1);
			nap(s, rnd_in(&f->rng, 0, 20));
			op_begin(s, f->idx, "a stock FITHAW", HANG_NS);
			if (ioctl(s->e.fs.mfd, FITHAW, 0))
				failf(s, "FITHAW of our FIFREEZE: %s", strerror(errno));
			op_end(s, f->idx);
		} else if (ret == -EBUSY) {
			add(&s->n.stock_ebusy, 1);
		} else {
			failf(s, "FIFREEZE: %s", strerror(-ret));
		}
		pthread_rwlock_unlock(&s->stock_lock);
		nap(s, rnd_in(&f->rng, 10, 150));
	}
	return NULL;
}

/* --- set-up, the run, the end --- */

/* stress-ng's filesystem stressors; --verify: each checks its own data. */
static const char * const sng_args[] = {
	"--verify", "--metrics-brief",
	"--iomix 1", "--iomix-bytes 8m", "--hdd 1", "--hdd-bytes 8m",
	"--mmap 1", "--mmap-bytes 4m", "--mmap-file",
	"--rename 1", "--link 1", "--dir 1", "--dir-dirs 256", NULL
};

/* fio's jobs: buffered psync with fsyncs, and mmap; each verifies as it goes. */
static const char * const fio_args[] = {
	"--name=rw", "--rw=randrw", "--bs=4k", "--size=16m", "--ioengine=psync",
	"--fsync=32", "--verify=crc32c", "--verify_backlog=256",
	"--name=mm", "--ioengine=mmap", "--rw=randwrite", "--bs=16k", "--size=8m",
	"--verify=crc32c", "--verify_backlog=64", NULL
};

/*
 * `exec HEAD ARGS...` by sh in a child, its output to @log: the child is
 * the command's process.
 */
static pid_t spawn(const char *log, const char *head, const char * const *args)
{
	char cmd[1024];
	size_t len;
	pid_t pid;

	len = snprintf(cmd, sizeof(cmd), "exec %s", head);
	for (; *args && len < sizeof(cmd); args++)
		len += snprintf(cmd + len, sizeof(cmd) - len, " %s", *args);
	if (len >= sizeof(cmd))
		return -1;
	pid = fork();
	if (pid == 0) {
		int fd = open(log, O_WRONLY | O_CREAT | O_TRUNC, 0644);

		if (fd < 0 || dup2(fd, 1) < 0 || dup2(fd, 2) < 0)
			_exit(126);
		tf_close_fds_but(NULL, 0, NULL);
		execl("/bin/sh", "sh", "-c", cmd, NULL);
		_exit(127);
	}
	return pid;
}

/*
 * fio for @secs (@create: only lay its files out), its output to @log;
 * its pid.
 */
static pid_t spawn_fio(struct stress *s, const char *log, int create)
{
	char head[512];

	snprintf(head, sizeof(head),
		 "fio --directory %s/fio --time_based --runtime=%llu%s", s->e.fs.mnt, s->secs,
		 create ? " --create_only=1" : "");
	return spawn(log, head, fio_args);
}

/*
 * The load, in directories of fsA, for @secs: our writers, stress-ng's
 * stressors and fio's jobs.  fio's files are laid out first, before any
 * freeze, so that its jobs run (and its clock runs) from the start.
 */
static int start_load(struct stress *s)
{
	char log[128], head[512];

	if (mkdirat(s->e.fs.mfd, "w", 0755) || mkdirat(s->e.fs.mfd, "sng", 0755) ||
	    mkdirat(s->e.fs.mfd, "fio", 0755))
		return -1;
	snprintf(log, sizeof(log), "%s/fio.log", s->e.fs.dir);
	if (tf_wait_child(spawn_fio(s, log, 1), END_MS)) {
		tf_run("tail -n 15 %s | sed 's/^/# /' >&2", log);
		return -1;
	}
	for (unsigned int id = 0; id < N_WRITERS; id++) {
		s->writer[id] = fork();
		if (s->writer[id] < 0)
			return -1;
		if (s->writer[id] == 0)
			writer_main(s, id);
	}
	snprintf(log, sizeof(log), "%s/stress-ng.log", s->e.fs.dir);
	snprintf(head, sizeof(head), "stress-ng --temp-path %s/sng --timeout %llus",
		 s->e.fs.mnt, s->secs);
	s->sng = spawn(log, head, sng_args);
	snprintf(log, sizeof(log), "%s/fio.log", s->e.fs.dir);
	s->fio = spawn_fio(s, log, 0);
	return s->sng < 0 || s->fio < 0 ? -1 : 0;
}

static int start_threads(struct stress *s)
{
	static struct freezer f[N_TIMED + N_STOCK];

	s->wd_started = !pthread_create(&s->wd, NULL, watchdog, s);
	if (!s->wd_started)
		return -1;
	for (int i = 0; i < N_TIMED + N_STOCK; i++) {
		f[i].s = s;
		f[i].idx = i;
		f[i].rng = s->seed ^ (i + 11) * 0x9e3779b97f4a7c15ULL;
		if (pthread_create(&s->th[s->nth], NULL, i < N_TIMED ? timed_freezer :
				   stock_freezer, &f[i]))
			return -1;
		s->nth++;
	}
	if (pthread_create(&s->th[s->nth], NULL, vector_thread, s))
		return -1;
	s->nth++;
	return 0;
}

/*
 * The end of a helper process: within END_MS of the run, exit status 0.
 * stress-ng and fio stop by themselves, their own clocks having started
 * with ours (a SIGINT while they start up would kill them).
 */
static void end_process(struct stress *s, pid_t *pid, const char *name, const char *log)
{
	int ret;

	if (*pid <= 0)
		return;
	ret = tf_wait_child(*pid, END_MS);
	if (ret < 0) {
		failf(s, "%s did not end within %d s of the run", name, END_MS / 1000);
		kill(*pid, SIGKILL);
		ret = tf_wait_child(*pid, 10000);
	}
	if (ret) {
		failf(s, "%s exited with status %d%s%s", name, ret, log ? "; its log: " : "",
		      log ? log : "");
		if (log)
			tf_run("tail -n 15 %s | sed 's/^/# /' >&2", log);
	}
	*pid = 0;
}

/* printf() to the end of @buf. */
static void cat(char *buf, size_t size, const char *fmt, ...)
{
	size_t len = strlen(buf);
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(buf + len, size - len, fmt, ap);
	va_end(ap);
}

/* Stop everything, in order: threads (they thaw), then the processes. */
static void stress_stop(struct stress *s)
{
	unsigned long long t = tf_now_ns();
	char log[128];

	__atomic_store_n(&s->stop, 1, __ATOMIC_RELEASE);
	for (int i = 0; i < s->nth; i++)
		pthread_join(s->th[i], NULL);
	s->nth = 0;
	cat(s->ends, sizeof(s->ends), "threads %llu ms, ", (tf_now_ns() - t) / MSEC);
	if (s->sh) {
		__atomic_store_n(&s->sh->stop, 1, __ATOMIC_RELEASE);
		for (unsigned int id = 0; id < N_WRITERS; id++) {
			char name[16];

			snprintf(name, sizeof(name), "writer %u", id);
			end_process(s, &s->writer[id], name, NULL);
			if (s->sh->w[id].err[0])
				failf(s, "%s", s->sh->w[id].err);
		}
	}
	cat(s->ends, sizeof(s->ends), "writers %llu ms, ", (tf_now_ns() - t) / MSEC);
	snprintf(log, sizeof(log), "%s/stress-ng.log", s->e.fs.dir);
	end_process(s, &s->sng, "stress-ng", log);
	cat(s->ends, sizeof(s->ends), "stress-ng %llu ms, ", (tf_now_ns() - t) / MSEC);
	snprintf(log, sizeof(log), "%s/fio.log", s->e.fs.dir);
	end_process(s, &s->fio, "fio", log);
	cat(s->ends, sizeof(s->ends), "fio %llu ms", (tf_now_ns() - t) / MSEC);
	if (s->wd_started) {
		__atomic_store_n(&s->wd_stop, 1, __ATOMIC_RELEASE);
		pthread_join(s->wd, NULL);
		s->wd_started = 0;
	}
}

/* Lines of the debugfs file "owned" after its header, or -1. */
static int owned_listed(void)
{
	FILE *f = fopen(TF_DEBUGFS "/owned", "r");
	char line[256];
	int n = -1;

	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f))
		n += line[0] != '\n';
	fclose(f);
	return n;
}

/* Nobody in D state, sampled until a sample is clean (writeback ends). */
static const char *still_in_d_state(void)
{
	const char *d = NULL;

	for (int i = 0; i < 20; i++) {
		d = task_in_d_state();
		if (!d)
			break;
		usleep(500 * 1000);
	}
	return d;
}

/* After the run: nothing frozen, nobody stuck, the vector's own data. */
static void check_live(struct stress *s)
{
	unsigned int total = 0;
	struct timed_freeze_owned e;
	struct stat st;
	const char *d;
	int dev, n;
	pid_t pid;

	pid = tf_write_child(s->e.fs.mfd, "probe", "probe\n");
	if (tf_wait_child(pid, 10000) != 0) {
		failf(s, "a write to fsA did not get through after the run: frozen?");
		thaw_all(s);
		tf_wait_child(pid, 10000);
	}
	dev = tf_open_dev();
	if (dev < 0 || tf_list(dev, &e, 1, &total) || total)
		failf(s, "OWNED freezes listed after the run: %u", total);
	if (dev >= 0)
		close(dev);
	n = owned_listed();
	if (n > 0)
		failf(s, "%s/owned lists %d freeze(s) after the run", TF_DEBUGFS, n);
	syncfs(s->e.fs.mfd);
	d = still_in_d_state();
	if (d)
		failf(s, "tasks in D state after the run: %s", d);
	/* The daemon wrote one line to fsA each cycle. */
	if (fstatat(s->e.fs.mfd, "daemon", &st, 0) ||
	    (unsigned long long)st.st_size != 13 * s->n.cycles)
		failf(s, "the daemon's file on fsA has %lld bytes after %llu cycles",
		      (long long)st.st_size, s->n.cycles);
}

/* fsA unmounted, checked, mounted again for the manifests, unmounted. */
static void check_offline(struct stress *s)
{
	const char *check = strcmp(s->type, "xfs") ? "e2fsck -fn" : "xfs_repair -n";
	int ret = -1;

	close(s->e.fs.mfd);
	s->e.fs.mfd = -1;
	s->e.v.mfd = -1;
	if (s->e.daemon > 0) {
		kill(s->e.daemon, SIGKILL);
		waitpid(s->e.daemon, NULL, 0);
		s->e.daemon = 0;
	}
	umount2(s->e.v.src_mnt, MNT_DETACH);
	for (int i = 0; i < 20 && ret; i++) {
		ret = umount2(s->e.fs.mnt, 0);
		if (ret)
			usleep(500 * 1000);
	}
	if (ret) {
		failf(s, "fsA does not unmount: %s", strerror(errno));
		return;
	}
	if (tf_run("%s %s > %s/fsck.log 2>&1", check, s->e.fs.img, s->e.fs.dir)) {
		failf(s, "%s finds fsA not clean", check);
		tf_run("tail -n 15 %s/fsck.log | sed 's/^/# /' >&2", s->e.fs.dir);
	}
	if (tf_run("mount -t %s -o loop %s %s", s->type, s->e.fs.img, s->e.fs.mnt)) {
		failf(s, "fsA does not mount again");
		return;
	}
	s->e.fs.mfd = open(s->e.fs.mnt, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (s->e.fs.mfd >= 0)
		check_manifests(s);
	else
		failf(s, "open of fsA mounted again: %s", strerror(errno));
	close(s->e.fs.mfd);
	s->e.fs.mfd = -1;
	if (umount2(s->e.fs.mnt, 0))
		failf(s, "fsA does not unmount after the manifest check: %s", strerror(errno));
}

/* fio keeps its table of jobs in SysV shm: is there any? */
static int sysv_shm(void)
{
	int id = shmget(IPC_PRIVATE, 4096, IPC_CREAT | 0600);

	if (id < 0)
		return 0;
	shmctl(id, IPC_RMID, NULL);
	return 1;
}

/* stress-ng's bogo ops by stressor, from its --metrics-brief lines in @log. */
static void sng_ops(const char *log, char *buf, size_t size)
{
	char line[256], name[32];
	unsigned long long ops;
	FILE *f = fopen(log, "r");

	buf[0] = 0;
	/* The table ends where its "miscellaneous metrics" begin. */
	while (f && fgets(line, sizeof(line), f) && !strstr(line, "miscellaneous"))
		if (sscanf(line, "stress-ng: metrc: [%*d] %31s %llu", name, &ops) == 2)
			cat(buf, size, "%s%s %llu", buf[0] ? ", " : "", name, ops);
	if (f)
		fclose(f);
}

/* fio's totals ("READ io=..., WRITE io=..."), from its run status in @log. */
static void fio_io(const char *log, char *buf, size_t size)
{
	FILE *f = fopen(log, "r");
	char line[256], *io;

	buf[0] = 0;
	while (f && fgets(line, sizeof(line), f)) {
		io = strstr(line, " io=");
		if (io && strstr(line, ": bw="))
			cat(buf, size, "%s%.*s%.*s", buf[0] ? ", " : "",
			    (int)strcspn(line + strspn(line, " "), ":"), line + strspn(line, " "),
			    (int)strcspn(io, ","), io);
	}
	if (f)
		fclose(f);
}

/* The counts: one "# stress TYPE: ..." line, and the details. */
static void report(struct __test_metadata *_metadata, struct stress *s,
		   unsigned long long elapsed, long long m_freezes, long long m_timeouts,
		   long long m_undone)
{
	struct counts *n = &s->n;
	char l[768] = "", ops[256];
	unsigned long long w[W_OPS], verified = 0;

	cat(l, sizeof(l), "stress %s: %llu s: ", s->type, elapsed);
	cat(l, sizeof(l), "timed freezes %llu ok (%llu on a retry, %llu begun with A in fsA), ",
	    n->timed_ok, n->retry_ok, n->vector_retry_ok);
	cat(l, sizeof(l), "%llu ETIMEDOUT, %llu EBUSY, ", n->etimedout, n->ebusy);
	cat(l, sizeof(l), "%llu attempts undone (%llu of freezes begun with A in fsA); ",
	    n->gave_up, n->on_vector);
	cat(l, sizeof(l), "stock %llu ok, %llu EBUSY; ", n->stock_ok, n->stock_ebusy);
	cat(l, sizeof(l), "%llu vector cycles; ", n->cycles);
	cat(l, sizeof(l), "checked %llu files, %llu bytes", s->files, s->bytes);
	ksft_print_msg("%s\n", l);

	l[0] = 0;
	cat(l, sizeof(l), "ETIMEDOUT at level write %llu, pagefault %llu, fs %llu, ",
	    n->by_wait[1], n->by_wait[2], n->by_wait[3]);
	cat(l, sizeof(l), "umount %llu, partial %llu, writeback %llu, journal %llu; ",
	    n->by_wait[4], n->by_wait[5], n->by_wait[6], n->by_wait[7]);
	cat(l, sizeof(l), "largest overshoot %llu ms; ", n->overshoot / MSEC);
	cat(l, sizeof(l), "daemon's write waited up to %llu ms; ", n->daemon_wait / MSEC);
	cat(l, sizeof(l), "thaws: ioctl %llu, FITHAW %llu, close %llu; ", n->thaw_ioctl,
	    n->thaw_fithaw, n->thaw_close);
	cat(l, sizeof(l), "module: %lld freezes, %lld timeouts, %lld undone", m_freezes,
	    m_timeouts, m_undone);
	TH_LOG("%s", l);

	snprintf(l, sizeof(l), "%s/stress-ng.log", s->e.fs.dir);
	sng_ops(l, ops, sizeof(ops));
	TH_LOG("stress-ng bogo ops: %s", ops[0] ? ops : "none reported");
	memset(w, 0, sizeof(w));
	for (unsigned int id = 0; id < N_WRITERS; id++) {
		for (int op = 0; op < W_OPS; op++)
			w[op] += s->sh->w[id].ops[op];
		verified += s->sh->w[id].verified;
	}
	l[0] = 0;
	cat(l, sizeof(l), "writers' files: %llu written through a mapping, ", w[W_MMAP]);
	cat(l, sizeof(l), "%llu by write(), %llu rewritten through a mapping, ", w[W_WRITE],
	    w[W_REWRITE]);
	cat(l, sizeof(l), "%llu written from a mapping, %llu replaced by rename, ",
	    w[W_FROM_MAP], w[W_RENAME]);
	cat(l, sizeof(l), "%llu unlinked; ", w[W_UNLINK]);
	cat(l, sizeof(l), "%llu read back during the run (%llu bytes)", w[W_VERIFY], verified);
	TH_LOG("%s", l);
	TH_LOG("set-up %llu ms; ended, after the run, in: %s; checks %llu ms",
	       s->setup_ns / MSEC, s->ends, s->checks_ns / MSEC);
	snprintf(l, sizeof(l), "%s/fio.log", s->e.fs.dir);
	fio_io(l, ops, sizeof(ops));
	TH_LOG("fio: %s", ops[0] ? ops : "no totals reported");
}

/* TF_STRESS_SECONDS for the whole program (default 120), 0 when not a number. */
static unsigned long long stress_seconds(void)
{
	const char *v = getenv("TF_STRESS_SECONDS");
	unsigned long long n;
	char *end;

	if (!v || !*v)
		return 120;
	errno = 0;
	n = strtoull(v, &end, 10);
	return *end || errno || v[0] == '-' ? 0 : n;
}

/* Each variant's share: the program's time split between ext4 and xfs. */
static unsigned long long variant_seconds(void)
{
	unsigned long long n = stress_seconds() / 2;

	return n ? n : 1;
}

FIXTURE(stress) {
	struct stress s;
};

FIXTURE_VARIANT(stress) {
	const char *type;
};

FIXTURE_VARIANT_ADD(stress, ext4) {
	.type = "ext4",
};

FIXTURE_VARIANT_ADD(stress, xfs) {
	.type = "xfs",
};

FIXTURE_SETUP(stress)
{
	struct stress *s = &self->s;
	const char *why = tf_missing();
	pthread_rwlockattr_t attr;
	const char *seed = getenv("TF_STRESS_SEED");

	s->setup_ns = tf_now_ns();
	s->type = variant->type;
	s->e.fs.mfd = -1;
	s->e.v.dev = -1;
	if (why)
		SKIP(return, "%s", why);
	if (access("/dev/fuse", F_OK))
		SKIP(return, "no /dev/fuse (CONFIG_FUSE_FS)");
	if (tf_fs_missing(variant->type))
		SKIP(return, "no %s here (kernel or mkfs)", variant->type);
	if (tf_run("command -v stress-ng >/dev/null && command -v fio >/dev/null"))
		SKIP(return, "no stress-ng or no fio here (Debian packages stress-ng, fio)");
	if (!sysv_shm())
		SKIP(return, "no SysV shm for fio (CONFIG_SYSVIPC)");
	s->e.v.dev = tf_open_dev();
	if (s->e.v.dev < 0)
		SKIP(return, "no %s: the module is not loaded", TIMED_FREEZE_DEVICE);
	close(s->e.v.dev);
	s->e.v.dev = -1;
	ASSERT_NE(0ULL, stress_seconds())
		TH_LOG("TF_STRESS_SECONDS is not a number of seconds: %s",
		       getenv("TF_STRESS_SECONDS"));
	s->secs = variant_seconds();
	s->seed = seed ? strtoull(seed, NULL, 0) : tf_now_ns();
	s->sh = mmap(NULL, sizeof(*s->sh), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS,
		     -1, 0);
	ASSERT_NE(MAP_FAILED, s->sh);
	pthread_rwlockattr_init(&attr);
	pthread_rwlockattr_setkind_np(&attr, PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
	ASSERT_EQ(0, pthread_rwlock_init(&s->stock_lock, &attr));
	ASSERT_EQ(0, pthread_mutex_init(&s->fail_lock, NULL));
	s->locks = 1;
	ASSERT_EQ(0, vector_setup(&s->e, variant->type, VEC_FUSE));
	s->setup_ns = tf_now_ns() - s->setup_ns;
}

FIXTURE_TEARDOWN(stress)
{
	struct stress *s = &self->s;

	if (s->locks) {
		if (s->nth || s->sng || s->fio || s->writer[0]) {
			rescue(s);
			if (s->sh)
				__atomic_store_n(&s->sh->stop, 1, __ATOMIC_RELEASE);
			if (s->sng > 0)
				kill(s->sng, SIGKILL);
			if (s->fio > 0)
				kill(s->fio, SIGKILL);
			stress_stop(s);
		}
		pthread_rwlock_destroy(&s->stock_lock);
		pthread_mutex_destroy(&s->fail_lock);
	}
	if (s->e.fs.dir[0])
		vector_teardown(&s->e);
	if (s->sh && s->sh != MAP_FAILED)
		munmap(s->sh, sizeof(*s->sh));
}

/* The harness's limit for the run: its share of the time, and the checks. */
static void __attribute__((constructor(KSELFTEST_PRIO_TEST + 1))) stress_timeout(void);

TEST_F_TIMEOUT(stress, run, 600)
{
	struct stress *s = &self->s;
	long long m_freezes = tf_stat("freezes"), m_timeouts = tf_stat("timeouts");
	long long m_undone = tf_stat("undone_attempts");
	struct counts *n = &s->n;
	unsigned long long t0, elapsed;

	TH_LOG("%s: %llu s, seed %llu (TF_STRESS_SEED)", s->type, s->secs, s->seed);
	ASSERT_EQ(0, start_load(s));
	t0 = tf_now_ns();
	ASSERT_EQ(0, start_threads(s));
	while (!stopped(s) && tf_now_ns() - t0 < s->secs * SEC)
		usleep(200 * 1000);
	stress_stop(s);
	elapsed = (tf_now_ns() - t0) / SEC;
	t0 = tf_now_ns();
	check_live(s);
	check_offline(s);
	s->checks_ns = tf_now_ns() - t0;
	/* The module's counters over the run (-1: no debugfs stats). */
	m_freezes = m_freezes < 0 ? -1 : tf_stat("freezes") - m_freezes;
	m_timeouts = m_timeouts < 0 ? -1 : tf_stat("timeouts") - m_timeouts;
	m_undone = m_undone < 0 ? -1 : tf_stat("undone_attempts") - m_undone;

	report(_metadata, s, elapsed, m_freezes, m_timeouts, m_undone);
	for (int i = 0; i < s->nfail && i < N_FAILS_KEPT; i++)
		TH_LOG("failure: %s", s->fails[i]);
	EXPECT_EQ(0, s->nfail);
	/* The vector must have bitten, and freezes must have got through. */
	EXPECT_LT(0ULL, n->timed_ok);
	EXPECT_LT(0ULL, n->gave_up);
	EXPECT_LT(0ULL, n->on_vector);
	EXPECT_LT(0ULL, n->cycles);
	EXPECT_LT(0ULL, s->files);
	EXPECT_GT(OVERSHOOT_MAX_NS, n->overshoot);
	/* The module counted what we saw (when its stats are there). */
	if (m_freezes >= 0 && m_timeouts >= 0) {
		EXPECT_EQ((long long)n->timed_ok, m_freezes);
		EXPECT_EQ((long long)n->etimedout, m_timeouts);
	}
}

static void stress_timeout(void)
{
	_stress_run_object->timeout = variant_seconds() + 300;
}

TEST_HARNESS_MAIN
