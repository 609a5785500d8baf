/* SPDX-License-Identifier: GPL-2.0 */
/*
 * The parts of the deadlock vector shared by the FUSE and NBD tests:
 *
 *   thread A:  write(fsA_fd, mmap(fsB_file))   holds fsA SB_FREEZE_WRITE,
 *                                              faults on fsB -> daemon
 *   freezer:   freeze fsA                      waits for A, blocks writers
 *   daemon:    handling A's read: write(fsA)   blocks behind the freezer
 *
 * The daemon's first read request (vector_daemon_step()) tells the test it
 * has it ('r'), waits for "go", writes a line to fsA, tells the test ('w'),
 * and waits for "answer" before it answers.
 *
 * fsB is one of the seed thread's daemons (enum vec_kind): a FUSE
 * filesystem served by a libfuse3 daemon forked here; ext4 on /dev/nbd0
 * served by nbd.h's server; or an EROFS image file mounted file-backed,
 * the image sparse on a third filesystem (fsC, ext4) and filled on demand
 * by hsm.h's fanotify pre-content daemon.  struct vec_env is one vector,
 * set up and torn down by vector_setup() and vector_teardown():
 * vector_test.c's fixture and vector_demo.c both use it.
 */
#ifndef TF_VECTOR_H
#define TF_VECTOR_H

#define FUSE_USE_VERSION 31
#include <fuse.h>
#include <pthread.h>
#include <sys/mman.h>
#include <sys/sysmacros.h>

#include "hsm.h"
#include "nbd.h"
#include "step.h"

/* How much later than timeout x attempts a timed-out freeze may return. */
#define SLACK_MS	1500ULL

enum vec_kind {
	VEC_FUSE,
	VEC_NBD,
	VEC_EROFS,
};

static const char * const vec_kind_name[] = {
	[VEC_FUSE] = "FUSE", [VEC_NBD] = "NBD", [VEC_EROFS] = "EROFS",
};

struct vec {
	int mfd;		/* fsA */
	char src_mnt[128];	/* fsB, holding "data" */
	ssize_t a_ret;
	int freeze_ret;
	struct timed_freeze_args args;
	int dev;		/* the module, or -1: plain FIFREEZE */
	unsigned long long timeout_ms;
	unsigned int retries;
	size_t len;		/* thread A's write; 0: FILE_SIZE */
};

/* The size of fsB's "data" (set before vector_setup(); FUSE and EROFS). */
static size_t vec_file_size = FILE_SIZE;

static inline void *thread_a(void *arg)
{
	struct vec *v = arg;
	size_t len = v->len ? v->len : FILE_SIZE;
	char path[160];
	void *p;
	int src, dst;

	snprintf(path, sizeof(path), "%s/data", v->src_mnt);
	src = open(path, O_RDONLY);
	dst = openat(v->mfd, "dest", O_WRONLY | O_CREAT | O_TRUNC, 0644);
	if (src < 0 || dst < 0) {
		v->a_ret = -2;
		return NULL;
	}
	p = mmap(NULL, len, PROT_READ, MAP_SHARED, src, 0);
	if (p == MAP_FAILED) {
		v->a_ret = -3;
		return NULL;
	}
	/* The fault on p happens inside write(), under SB_FREEZE_WRITE. */
	v->a_ret = write(dst, p, len);
	if (v->a_ret < 0)
		v->a_ret = -errno;
	munmap(p, len);
	close(src);
	close(dst);
	return NULL;
}

static inline void *thread_freezer(void *arg)
{
	struct vec *v = arg;
	unsigned long long t0;

	if (v->dev >= 0) {
		v->freeze_ret = tf_freeze(v->dev, v->mfd, v->timeout_ms * NSEC_PER_MSEC,
					  v->retries, 0, &v->args);
		return NULL;
	}
	/* Plain FIFREEZE: its deadline, if any, is the kernel's (patches/rfc). */
	t0 = tf_now_ns();
	v->freeze_ret = ioctl(v->mfd, FIFREEZE, 0) ? -errno : 0;
	v->args.elapsed_ns = tf_now_ns() - t0;
	return NULL;
}

/* --- the daemon (a forked child) --- */

static struct daemon_ctl *dctl;

static inline int d_getattr(const char *path, struct stat *st, struct fuse_file_info *fi)
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
		st->st_size = vec_file_size;
		return 0;
	}
	return -ENOENT;
}

static inline int d_open(const char *path, struct fuse_file_info *fi)
{
	if (strcmp(path, "/data"))
		return -ENOENT;
	return (fi->flags & O_ACCMODE) == O_RDONLY ? 0 : -EACCES;
}

static inline int d_read(const char *path, char *buf, size_t size, off_t off,
			 struct fuse_file_info *fi)
{
	static int first = 1;

	/* A slow daemon: every READ is a round trip. */
	if (dctl->slow_ms)
		slow_round_trip(dctl);
	/* Only the first READ takes part in the vector; the rest answer. */
	else if (__atomic_exchange_n(&first, 0, __ATOMIC_SEQ_CST) && vector_daemon_step(dctl))
		return -EIO;
	if (off >= (off_t)vec_file_size)
		return 0;
	if (off + size > vec_file_size)
		size = vec_file_size - off;
	fill_pattern(buf, off, size);
	return size;
}

/*
 * A slow daemon reads no more than it is asked: no readahead, so that each
 * page A faults on is a READ, a round trip (the test kernel has no
 * madvise() to ask for that from A's side).
 */
static inline void *d_init(struct fuse_conn_info *conn, struct fuse_config *cfg)
{
	if (dctl->slow_ms)
		conn->max_readahead = 0;
	return NULL;
}

static const struct fuse_operations d_ops = {
	.init = d_init,
	.getattr = d_getattr,
	.open = d_open,
	.read = d_read,
};

static inline void daemon_main(const char *mnt)
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

/* --- one vector: fsA, its daemon and fsB --- */

struct vec_env {
	struct tf_fs fs;
	struct daemon_ctl ctl;
	struct vec v;
	pid_t daemon;
	pthread_t a;
	int a_started;
	unsigned int fuse_conn;	/* /sys/fs/fuse/connections/N */
	struct nbd_srv nbd;	/* fsB on NBD: its server */
	struct tf_fs fsc;	/* fsB on EROFS: fsC holds the image file */
	struct hsm_srv hsm;	/* and its fanotify daemon */
	const char *why;	/* set-up failed for want of this feature */
};

/* pattern() as a file "data" in a new directory @src; 0 or -1. */
static inline int make_src_dir(const char *src)
{
	char path[192];
	char *buf = malloc(vec_file_size);
	int fd, ret = -1;

	snprintf(path, sizeof(path), "%s/data", src);
	if (!buf || mkdir(src, 0755))
		goto out;
	fill_pattern(buf, 0, vec_file_size);
	fd = open(path, O_WRONLY | O_CREAT, 0444);
	if (fd < 0)
		goto out;
	ret = write(fd, buf, vec_file_size) == (ssize_t)vec_file_size ? 0 : -1;
	close(fd);
out:
	free(buf);
	return ret;
}

/* --- NBD: fsB is ext4 on /dev/nbd0, served by nbd.h's server --- */

#define NBD_DEV		"/dev/nbd0"
#define NBD_IMG_SIZE	(16 << 20)

/* The image (with the pattern file), the server, /dev/nbd0 mounted. */
static inline int nbd_setup(struct vec_env *self)
{
	const int keep[] = { self->ctl.evt[1], self->ctl.go[0], self->ctl.ans[0], -1 };
	char src[160], img[160];
	int ret = -1;

	snprintf(src, sizeof(src), "%s/src", self->fs.dir);
	snprintf(img, sizeof(img), "%s/fsb.img", self->fs.dir);
	if (make_src_dir(src) ||
	    tf_run("truncate -s %d %s && mkfs.ext4 -q -F -b %d -d %s %s >/dev/null 2>&1",
		   NBD_IMG_SIZE, img, NBD_BLKSIZE, src, img))
		return -1;
	self->nbd.dev = NBD_DEV;
	self->nbd.on_read = daemon_step;
	self->nbd.on_read_arg = &self->ctl;
	if (nbd_start(&self->nbd, NBD_IMG_SIZE, img, keep))
		return -1;
	for (int i = 0; i < 500 && ret; i++) {
		ret = mount(NBD_DEV, self->v.src_mnt, "ext4", MS_RDONLY, "noload");
		if (ret)
			usleep(10000);
	}
	return ret;
}

/*
 * --- EROFS: fsB is an EROFS image mounted file-backed; the image file
 * sits sparse on fsC (ext4) and hsm.h's daemon fills it on demand ---
 *
 * fsC, not fsA: with the image on fsA, A's fault would raise the
 * pre-content event on an fsA file while A holds fsA's freeze protection,
 * and fsnotify_file_area_perm()'s lockdep_assert_once(file_write_not_started())
 * names exactly that.  The daemon's fill writes to fsA instead (its step),
 * as an HSM daemon keeping its state or log on the root filesystem does.
 */
static inline int erofs_setup(struct vec_env *self)
{
	const int keep[] = { self->ctl.evt[1], self->ctl.go[0], self->ctl.ans[0], -1 };
	char src[160], full[160], sparse[160];
	struct stat st;

	snprintf(src, sizeof(src), "%s/src", self->fs.dir);
	snprintf(full, sizeof(full), "%s/erofs.img", self->fs.dir);
	if (make_src_dir(src) ||
	    tf_run("mkfs.erofs --quiet -Enoinline_data %s %s >/dev/null 2>&1", full, src) ||
	    stat(full, &st) || tf_fs_setup(&self->fsc, "ext4"))
		return -1;
	snprintf(sparse, sizeof(sparse), "%s/erofs.img", self->fsc.mnt);
	if (tf_run("truncate -s %lld %s", (long long)st.st_size, sparse))
		return -1;
	self->why = hsm_missing(sparse);
	if (self->why)
		return -1;
	self->hsm.full = strdup(full);
	self->hsm.sparse = strdup(sparse);
	self->hsm.on_fill = daemon_step;
	self->hsm.on_fill_arg = &self->ctl;
	if (self->ctl.slow_ms) {
		self->hsm.on_miss = slow_round_trip;
		self->hsm.on_miss_arg = &self->ctl;
	}
	/* The mark first: the mount opens the image and reads it through that file. */
	if (hsm_start(&self->hsm, keep))
		return -1;
	if (mount(sparse, self->v.src_mnt, "erofs", MS_RDONLY, NULL)) {
		if (errno == ENOTBLK)
			self->why = "no file-backed EROFS mounts (CONFIG_EROFS_FS_BACKED_BY_FILE)";
		return -1;
	}
	return 0;
}

/*
 * Fork the FUSE daemon on @self->v.src_mnt and wait for its "data"; 0 or
 * -1.  vector_setup() calls it once; a test that re-arms the vector kills
 * the daemon, unmounts fsB, makes new pipes and calls it again: a new
 * daemon's first READ takes part in the vector again.
 */
static inline int vector_fuse_start(struct vec_env *self)
{
	struct stat st = {};

	self->daemon = fork();
	if (self->daemon < 0)
		return -1;
	if (self->daemon == 0) {
		/* Hold nothing of the test's open: fsA must unmount later. */
		const int own[] = { self->ctl.evt[1], self->ctl.go[0], self->ctl.ans[0] };

		tf_close_fds_but(own, 3, NULL);
		dctl = &self->ctl;
		daemon_main(self->v.src_mnt);
	}
	for (int i = 0; i < 500; i++) {
		char path[160];

		snprintf(path, sizeof(path), "%s/data", self->v.src_mnt);
		if (!stat(path, &st) && st.st_size == (off_t)vec_file_size)
			break;
		usleep(10000);
	}
	/* Now: once the vector is set up, a stat() of the mount may wedge. */
	if (st.st_size != (off_t)vec_file_size || stat(self->v.src_mnt, &st))
		return -1;
	self->fuse_conn = minor(st.st_dev);
	return 0;
}

/*
 * fsA of @type, the daemon and fsB of @kind; 0 or -1 (with @self->why set
 * when the kernel lacks a feature the vector needs).
 */
static inline int vector_setup(struct vec_env *self, const char *type, enum vec_kind kind)
{
	self->fsc.mfd = -1;
	if (tf_fs_setup(&self->fs, type))
		return -1;
	/* -1 without the module: the vector against plain FIFREEZE. */
	self->v.dev = tf_open_dev();
	self->v.mfd = self->fs.mfd;
	snprintf(self->v.src_mnt, sizeof(self->v.src_mnt), "%s/fsb", self->fs.dir);
	snprintf(self->ctl.fsa_file, sizeof(self->ctl.fsa_file), "%s/daemon", self->fs.mnt);
	if (mkdir(self->v.src_mnt, 0755) || pipe2(self->ctl.evt, O_NONBLOCK) ||
	    pipe(self->ctl.go) || pipe(self->ctl.ans))
		return -1;
	if (kind == VEC_NBD)
		return nbd_setup(self);
	if (kind == VEC_EROFS)
		return erofs_setup(self);
	return vector_fuse_start(self);
}

/* Abort the FUSE connection: every request in flight fails. */
static inline int abort_fuse(struct vec_env *self)
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

/*
 * The stock freeze's way out: make the daemon's held request fail, so
 * that A's fault fails and A leaves fsA's write protection.  FUSE: abort
 * the connection; EROFS: the HSM daemon answers FAN_DENY_ERRNO(EIO) to it
 * and to every later event (its step stays blocked in its write to fsA,
 * in another thread).  0 or -1.
 */
static inline int vector_rescue(struct vec_env *self)
{
	if (self->hsm.pid > 0)
		return hsm_cmd(&self->hsm, 'x');
	if (self->daemon > 0)
		return abort_fuse(self);
	return -1;
}

static inline void vector_teardown(struct vec_env *self)
{
	if (self->a_started && pthread_tryjoin_np(self->a, NULL)) {
		/*
		 * A case ended with A still in its fault, the daemon's step
		 * perhaps blocked behind a stock freezer: fail the daemon's
		 * request first, so that A leaves and that freezer completes.
		 */
		vector_rescue(self);
		pthread_join(self->a, NULL);
		for (int i = 0; i < 100 && ioctl(self->fs.mfd, FITHAW, 0); i++)
			usleep(50 * 1000);
	}
	ioctl(self->fs.mfd, FITHAW, 0);
	send_byte(self->ctl.go[1]);
	send_byte(self->ctl.ans[1]);
	umount2(self->v.src_mnt, MNT_DETACH);
	nbd_stop(&self->nbd);
	hsm_stop(&self->hsm);
	/* The FUSE daemon (the others are *_stop()'s); 0 would be our group. */
	if (self->daemon > 0) {
		kill(self->daemon, SIGKILL);
		waitpid(self->daemon, NULL, 0);
	}
	if (self->v.dev >= 0)
		close(self->v.dev);
	tf_fs_teardown(&self->fs);
	if (self->fsc.dir[0])
		tf_fs_teardown(&self->fsc);
	free((void *)self->hsm.full);
	free((void *)self->hsm.sparse);
}

/* Thread A in the write, its fault in the daemon's READ handler. */
static inline int start_thread_a(struct vec_env *self)
{
	char path[192];
	struct stat st;

	/* NBD, EROFS: read the inode now; the next read is then A's data. */
	snprintf(path, sizeof(path), "%s/data", self->v.src_mnt);
	if (stat(path, &st) || (self->nbd.pid > 0 && nbd_cmd(&self->nbd, 'v')) ||
	    (self->hsm.pid > 0 && hsm_cmd(&self->hsm, 'v')))
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
static inline int timed_vector(struct vec_env *self, unsigned long long timeout_ms,
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

#endif /* TF_VECTOR_H */
