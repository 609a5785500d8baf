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
 * fsB is a FUSE filesystem served by a libfuse3 daemon forked here, or
 * ext4 on /dev/nbd0 served by nbd.h's server.  struct vec_env is one
 * vector, set up and torn down by vector_setup() and vector_teardown():
 * vector_test.c's fixture and vector_demo.c both use it.
 */
#ifndef TF_VECTOR_H
#define TF_VECTOR_H

#define FUSE_USE_VERSION 31
#include <fuse.h>
#include <pthread.h>
#include <sys/mman.h>
#include <sys/sysmacros.h>

#include "nbd.h"
#include "tf_util.h"

#define FILE_SIZE	(64 * 1024)
/* How much later than timeout x attempts a timed-out freeze may return. */
#define SLACK_MS	1500ULL

static inline unsigned char pattern(size_t off)
{
	return (off * 7 + off / 4096) % 251;
}

static inline void fill_pattern(char *buf, size_t off, size_t size)
{
	for (size_t i = 0; i < size; i++)
		buf[i] = pattern(off + i);
}

struct daemon_ctl {
	int evt[2];	/* daemon -> test: 'r' got READ, 'w' wrote to fsA */
	int go[2];	/* test -> daemon: write to fsA now */
	int ans[2];	/* test -> daemon: answer now */
	char fsa_file[128];
};

static inline void d_signal(struct daemon_ctl *ctl, char c)
{
	if (write(ctl->evt[1], &c, 1) != 1)
		_exit(3);
}

/* The daemon's part in the vector; 0, or -1 when told to give up. */
static inline int vector_daemon_step(struct daemon_ctl *ctl)
{
	char c;
	int fd;

	d_signal(ctl, 'r');
	/* Wait for the test's go: the freezer is pending by then. */
	if (read(ctl->go[0], &c, 1) != 1)
		return -1;
	/* This is the write that the stock freeze blocks forever. */
	fd = open(ctl->fsa_file, O_WRONLY | O_CREAT | O_APPEND, 0644);
	if (fd < 0 || write(fd, "daemon wrote\n", 13) != 13)
		_exit(4);
	close(fd);
	d_signal(ctl, 'w');
	/* Then wait for the test's "answer" (at once, or held). */
	return read(ctl->ans[0], &c, 1) == 1 ? 0 : -1;
}

struct vec {
	int mfd;		/* fsA */
	char src_mnt[128];	/* fsB, holding "data" */
	ssize_t a_ret;
	int freeze_ret;
	struct timed_freeze_args args;
	int dev;
	unsigned long long timeout_ms;
	unsigned int retries;
};

static inline void *thread_a(void *arg)
{
	struct vec *v = arg;
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
	p = mmap(NULL, FILE_SIZE, PROT_READ, MAP_SHARED, src, 0);
	if (p == MAP_FAILED) {
		v->a_ret = -3;
		return NULL;
	}
	/* The fault on p happens inside write(), under SB_FREEZE_WRITE. */
	v->a_ret = write(dst, p, FILE_SIZE);
	if (v->a_ret < 0)
		v->a_ret = -errno;
	munmap(p, FILE_SIZE);
	close(src);
	close(dst);
	return NULL;
}

static inline void *thread_freezer(void *arg)
{
	struct vec *v = arg;

	v->freeze_ret = tf_freeze(v->dev, v->mfd, v->timeout_ms * NSEC_PER_MSEC,
				  v->retries, 0, &v->args);
	return NULL;
}

/* Wait up to @ms for the daemon to send @want; 1 when it did. */
static inline int wait_event(int fd, char want, int ms)
{
	for (int i = 0; i < ms / 10; i++) {
		char c;

		if (read(fd, &c, 1) == 1 && c == want)
			return 1;
		usleep(10000);
	}
	return 0;
}

static inline int send_byte(int fd)
{
	return write(fd, "x", 1) == 1 ? 0 : -1;
}

/* Whether dest on fsA holds exactly the FUSE file's bytes. */
static inline int dest_is_right(int mfd)
{
	static unsigned char buf[FILE_SIZE];
	int fd = openat(mfd, "dest", O_RDONLY);
	ssize_t n;

	if (fd < 0)
		return 0;
	n = read(fd, buf, sizeof(buf));
	close(fd);
	if (n != FILE_SIZE)
		return 0;
	for (size_t i = 0; i < FILE_SIZE; i++)
		if (buf[i] != pattern(i))
			return 0;
	return 1;
}

/* Any task in D state?  The name of the first, or NULL. */
static inline const char *task_in_d_state(void)
{
	static char name[64];
	char path[64], line[512];
	FILE *f;

	for (int pid = 2; pid < 32768; pid++) {
		snprintf(path, sizeof(path), "/proc/%d/stat", pid);
		f = fopen(path, "r");
		if (!f)
			continue;
		if (fgets(line, sizeof(line), f)) {
			char *r = strrchr(line, ')');

			if (r && r[1] == ' ' && r[2] == 'D') {
				snprintf(name, sizeof(name), "%.*s", (int)(r - line), line);
				fclose(f);
				return name;
			}
		}
		fclose(f);
	}
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
		st->st_size = FILE_SIZE;
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
};

/* --- NBD: fsB is ext4 on /dev/nbd0, served by nbd.h's server --- */

#define NBD_DEV		"/dev/nbd0"
#define NBD_IMG_SIZE	(16 << 20)

/* The server's READ hook, once armed: the daemon's part of the vector. */
static inline int nbd_vector_step(void *arg)
{
	return vector_daemon_step(arg);
}

/* The image (with the pattern file), the server, /dev/nbd0 mounted. */
static inline int nbd_setup(struct vec_env *self)
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
static inline int vector_setup(struct vec_env *self, const char *type, int nbd)
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

static inline void vector_teardown(struct vec_env *self)
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

/* Thread A in the write, its fault in the daemon's READ handler. */
static inline int start_thread_a(struct vec_env *self)
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
