// SPDX-License-Identifier: GPL-2.0
/*
 * A fanotify pre-content (HSM) daemon on a plain file, no EROFS: the
 * vector's shapes where thread A copies an HSM file of fsB into fsA
 * (mmap + write, sendfile) and the daemon, to fill it,
 * writes to fsA while fsA is being frozen by the stock FIFREEZE.
 *
 * Since Linux 6.14 the pre-content event is raised before fsA's freeze
 * protection is taken: at mmap() time, not on the page fault inside
 * write() ("fsnotify: avoid pre-content events when faulting in user
 * pages"), and by rw_verify_area() of the source before file_start_write()
 * of the destination in sendfile() (and copy_file_range(), which between
 * two ext4 or xfs filesystems fails with EXDEV anyway).  So the stock
 * freeze completes here: A holds nothing of fsA while the daemon works.
 * These tests assert it, and that the fault inside write() raises no
 * event.  The shapes that still deadlock re-enter rw_verify_area() from
 * inside the write, on a file the kernel reads for a filesystem (EROFS
 * file-backed mounts: vector_test.c's erofs variants).
 */
#include <pthread.h>
#include <sys/mman.h>
#include <sys/sendfile.h>

#include "kselftest_harness.h"
#include "hsm.h"
#include "step.h"

/* How long the stock FIFREEZE gets before we call it wedged. */
#define WATCHDOG_MS	3000

enum shape {
	SHAPE_MMAP,
	SHAPE_SENDFILE,
};

struct hsm_env {
	struct tf_fs fsa;
	struct tf_fs fsb;	/* ext4: holds the HSM file "data" */
	struct daemon_ctl ctl;
	struct hsm_srv hsm;
	char full[128];
	char sparse[128];
};

FIXTURE(hsm) {
	struct hsm_env e;
};

FIXTURE_VARIANT(hsm) {
	const char *type;	/* fsA */
};

FIXTURE_VARIANT_ADD(hsm, ext4) {
	.type = "ext4",
};

FIXTURE_VARIANT_ADD(hsm, xfs) {
	.type = "xfs",
};

FIXTURE_SETUP(hsm)
{
	char *buf = malloc(FILE_SIZE);
	int keep[] = { -1, -1, -1, -1 };
	const char *why;
	int fd;

	self->e.fsa.mfd = -1;
	self->e.fsb.mfd = -1;
	if (geteuid())
		SKIP(return, "needs root");
	if (tf_fs_missing(variant->type) || tf_fs_missing("ext4"))
		SKIP(return, "no %s or ext4 here (kernel or mkfs)", variant->type);
	ASSERT_NE(NULL, buf);
	ASSERT_EQ(0, tf_fs_setup(&self->e.fsa, variant->type));
	ASSERT_EQ(0, tf_fs_setup(&self->e.fsb, "ext4"));
	snprintf(self->e.full, sizeof(self->e.full), "%s/full", self->e.fsa.dir);
	snprintf(self->e.sparse, sizeof(self->e.sparse), "%s/data", self->e.fsb.mnt);
	snprintf(self->e.ctl.fsa_file, sizeof(self->e.ctl.fsa_file), "%s/daemon",
		 self->e.fsa.mnt);
	fill_pattern(buf, 0, FILE_SIZE);
	fd = open(self->e.full, O_WRONLY | O_CREAT, 0644);
	ASSERT_LE(0, fd);
	ASSERT_EQ(FILE_SIZE, write(fd, buf, FILE_SIZE));
	close(fd);
	free(buf);
	fd = open(self->e.sparse, O_WRONLY | O_CREAT, 0644);
	ASSERT_LE(0, fd);
	ASSERT_EQ(0, ftruncate(fd, FILE_SIZE));
	close(fd);
	why = hsm_missing(self->e.sparse);
	if (why)
		SKIP(return, "%s", why);
	ASSERT_EQ(0, pipe2(self->e.ctl.evt, O_NONBLOCK));
	ASSERT_EQ(0, pipe(self->e.ctl.go));
	ASSERT_EQ(0, pipe(self->e.ctl.ans));
	keep[0] = self->e.ctl.evt[1];
	keep[1] = self->e.ctl.go[0];
	keep[2] = self->e.ctl.ans[0];
	self->e.hsm.full = self->e.full;
	self->e.hsm.sparse = self->e.sparse;
	self->e.hsm.on_fill = daemon_step;
	self->e.hsm.on_fill_arg = &self->e.ctl;
	ASSERT_EQ(0, hsm_start(&self->e.hsm, keep));
	ASSERT_EQ(0, hsm_cmd(&self->e.hsm, 'v'));
}

FIXTURE_TEARDOWN(hsm)
{
	if (self->e.fsa.mfd >= 0)
		ioctl(self->e.fsa.mfd, FITHAW, 0);
	if (self->e.hsm.pid > 0) {
		send_byte(self->e.ctl.go[1]);
		send_byte(self->e.ctl.ans[1]);
		hsm_stop(&self->e.hsm);
	}
	if (self->e.fsb.dir[0])
		tf_fs_teardown(&self->e.fsb);
	if (self->e.fsa.dir[0])
		tf_fs_teardown(&self->e.fsa);
}

struct thread_a {
	struct hsm_env *e;
	enum shape shape;
	int mapped[2];		/* A -> test: mmap() returned, the page cache dropped */
	int go[2];		/* test -> A: write now */
	ssize_t ret;
	const char *failed;	/* the call of A's that failed, or NULL */
	int err;
};

/* Thread A: copies the HSM file into fsA's "dest" in its shape. */
static void *thread_a(void *arg)
{
	struct thread_a *a = arg;
	int src = open(a->e->sparse, O_RDONLY);
	int dst = openat(a->e->fsa.mfd, "dest", O_WRONLY | O_CREAT | O_TRUNC, 0644);
	char c;
	void *p;

	a->ret = -1;
	if (src < 0 || dst < 0)
		return NULL;
	switch (a->shape) {
	case SHAPE_MMAP:
		/* The event is raised here, before A holds anything of fsA. */
		p = mmap(NULL, FILE_SIZE, PROT_READ, MAP_SHARED, src, 0);
		if (p == MAP_FAILED) {
			a->failed = "mmap";
			a->err = errno;
			break;
		}
		/*
		 * The page cache goes, so that write()'s fault reads the disk
		 * (drop_caches, not POSIX_FADV_DONTNEED: a kernel without
		 * CONFIG_ADVISE_SYSCALLS, as the test kernel, has no fadvise).
		 */
		if (fsync(src) || tf_run("echo 1 > /proc/sys/vm/drop_caches")) {
			a->failed = "fsync or drop_caches";
			a->err = errno;
			break;
		}
		if (send_byte(a->mapped[1]) || read(a->go[0], &c, 1) != 1)
			break;
		a->ret = write(dst, p, FILE_SIZE);
		munmap(p, FILE_SIZE);
		break;
	case SHAPE_SENDFILE:
		a->ret = sendfile(dst, src, NULL, FILE_SIZE);
		break;
	}
	close(src);
	close(dst);
	return NULL;
}

/*
 * A in its shape, the daemon holding A's event; the stock FIFREEZE of fsA
 * must complete, the daemon's write wait for FITHAW, and then everything
 * complete with A's data exact.
 */
static void check_shape(struct __test_metadata *_metadata, struct hsm_env *e,
			enum shape shape)
{
	struct thread_a a = { .e = e, .shape = shape };
	int returned, before = -1;
	const char *d;
	pthread_t t;
	pid_t freezer;

	ASSERT_EQ(0, pipe2(a.mapped, O_NONBLOCK));
	ASSERT_EQ(0, pipe(a.go));
	ASSERT_EQ(0, pthread_create(&t, NULL, thread_a, &a));
	ASSERT_TRUE(wait_event(e->ctl.evt[0], 'r', 10000));

	freezer = fork();
	ASSERT_LE(0, freezer);
	if (freezer == 0)
		_exit(ioctl(e->fsa.mfd, FIFREEZE, 0) ? 1 : 0);
	returned = tf_wait_child(freezer, WATCHDOG_MS);
	d = task_in_d_state();
	TH_LOG("stock FIFREEZE with the daemon holding A's event: %s within %d ms; in D state: %s",
	       returned < 0 ? "did not return" : "returned", WATCHDOG_MS, d ? d : "none");
	EXPECT_EQ(0, returned);

	if (returned < 0) {
		/* Wedged: rescue as vector_test.c's stock case does, and stop. */
		ASSERT_EQ(0, hsm_cmd(&e->hsm, 'x'));
		send_byte(a.go[1]);
		pthread_join(t, NULL);
		EXPECT_EQ(0, tf_wait_child(freezer, 5000));
		return;
	}

	/* The daemon's fill writes to fsA: frozen, it waits for FITHAW. */
	ASSERT_EQ(0, send_byte(e->ctl.go[1]));
	EXPECT_FALSE(wait_event(e->ctl.evt[0], 'w', 300));
	ASSERT_EQ(0, ioctl(e->fsa.mfd, FITHAW, 0));
	ASSERT_TRUE(wait_event(e->ctl.evt[0], 'w', 5000));
	ASSERT_EQ(0, send_byte(e->ctl.ans[1]));

	if (shape == SHAPE_MMAP) {
		EXPECT_TRUE(wait_event(a.mapped[0], 'x', 5000));
		before = hsm_answered(&e->hsm);
		ASSERT_LE(0, before);
		ASSERT_EQ(0, send_byte(a.go[1]));
	}
	pthread_join(t, NULL);
	if (a.failed)
		TH_LOG("thread A: %s: %s", a.failed, strerror(a.err));
	/* 6.14+: the fault inside write() raised no event. */
	if (shape == SHAPE_MMAP)
		EXPECT_EQ(before, hsm_answered(&e->hsm));
	EXPECT_EQ(FILE_SIZE, a.ret);
	EXPECT_TRUE(dest_is_right(e->fsa.mfd));
	EXPECT_TRUE(tf_file_is(e->fsa.mfd, "daemon", "daemon wrote\n"));
	d = task_in_d_state();
	EXPECT_EQ(NULL, d) TH_LOG("task in D state: %s", d);
	close(a.mapped[0]);
	close(a.mapped[1]);
	close(a.go[0]);
	close(a.go[1]);
}

TEST_F_TIMEOUT(hsm, mmap_stock_fifreeze_completes, 60)
{
	check_shape(_metadata, &self->e, SHAPE_MMAP);
}

TEST_F_TIMEOUT(hsm, sendfile_stock_fifreeze_completes, 60)
{
	check_shape(_metadata, &self->e, SHAPE_SENDFILE);
}

TEST_HARNESS_MAIN
