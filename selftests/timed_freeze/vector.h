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
 */
#ifndef TF_VECTOR_H
#define TF_VECTOR_H

#include <pthread.h>
#include <sys/mman.h>

#include "tf_util.h"

#define FILE_SIZE	(64 * 1024)
/* How much later than timeout x attempts a timed-out freeze may return. */
#define SLACK_MS	1500ULL

static unsigned char pattern(size_t off)
{
	return (off * 7 + off / 4096) % 251;
}

static void fill_pattern(char *buf, size_t off, size_t size)
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

static void d_signal(struct daemon_ctl *ctl, char c)
{
	if (write(ctl->evt[1], &c, 1) != 1)
		_exit(3);
}

/* The daemon's part in the vector; 0, or -1 when told to give up. */
static int vector_daemon_step(struct daemon_ctl *ctl)
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

static void *thread_a(void *arg)
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

static void *thread_freezer(void *arg)
{
	struct vec *v = arg;

	v->freeze_ret = tf_freeze(v->dev, v->mfd, v->timeout_ms * NSEC_PER_MSEC,
				  v->retries, 0, &v->args);
	return NULL;
}

/* Wait up to @ms for the daemon to send @want; 1 when it did. */
static int wait_event(int fd, char want, int ms)
{
	for (int i = 0; i < ms / 10; i++) {
		char c;

		if (read(fd, &c, 1) == 1 && c == want)
			return 1;
		usleep(10000);
	}
	return 0;
}

static int send_byte(int fd)
{
	return write(fd, "x", 1) == 1 ? 0 : -1;
}

/* Whether dest on fsA holds exactly the FUSE file's bytes. */
static int dest_is_right(int mfd)
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
static const char *task_in_d_state(void)
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

#endif /* TF_VECTOR_H */
