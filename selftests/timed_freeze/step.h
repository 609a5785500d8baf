/* SPDX-License-Identifier: GPL-2.0 */
/*
 * The daemon's step in the deadlock vector, shared by every daemon the
 * tests fork (FUSE in vector.h, NBD in nbd.h, fanotify HSM in hsm.h):
 * on the read it is to serve, it tells the test ('r'), waits for "go",
 * writes a line to fsA, tells the test ('w'), and waits for "answer".
 * A slow daemon (slow_ms set) has no step: every fetch it makes takes
 * slow_ms and is noted in a journal on fsA (slow_round_trip()).
 * Also the file contents those daemons serve, and the checks after.
 */
#ifndef TF_STEP_H
#define TF_STEP_H

#include "tf_util.h"

#define FILE_SIZE	(64 * 1024)

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
	unsigned int slow_ms;	/* a slow daemon: each fetch takes this long */
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

#define JOURNAL_LINE	"fetched a range\n"
#define JOURNAL_LINE_LEN (sizeof(JOURNAL_LINE) - 1)

/*
 * A slow daemon's round trip: the fetch takes slow_ms, then it is noted in
 * the daemon's journal on fsA (each write of which a freeze can block).
 */
static inline int slow_round_trip(void *arg)
{
	struct daemon_ctl *ctl = arg;
	int fd;

	usleep(ctl->slow_ms * 1000);
	fd = open(ctl->fsa_file, O_WRONLY | O_CREAT | O_APPEND, 0644);
	if (fd < 0 || write(fd, JOURNAL_LINE, JOURNAL_LINE_LEN) != (ssize_t)JOURNAL_LINE_LEN)
		_exit(4);
	close(fd);
	return 0;
}

/* The round trips a slow daemon's journal holds, or -1. */
static inline long journal_trips(const struct daemon_ctl *ctl)
{
	struct stat st;

	if (stat(ctl->fsa_file, &st))
		return errno == ENOENT ? 0 : -1;
	return st.st_size / JOURNAL_LINE_LEN;
}

/* The daemon's step, as nbd.h and hsm.h call it. */
static inline int daemon_step(void *arg)
{
	return vector_daemon_step(arg);
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

/* Whether dest on fsA holds exactly the first @len bytes of fsB's file. */
static inline int dest_is(int mfd, size_t len)
{
	unsigned char *buf = malloc(len + 1);
	int fd = openat(mfd, "dest", O_RDONLY);
	ssize_t n = -1;
	int ok = 1;

	if (fd >= 0 && buf)
		n = read(fd, buf, len + 1);
	if (fd >= 0)
		close(fd);
	if (n != (ssize_t)len)
		ok = 0;
	for (size_t i = 0; ok && i < len; i++)
		if (buf[i] != pattern(i))
			ok = 0;
	free(buf);
	return ok;
}

/* Whether dest on fsA holds exactly fsB's file's bytes. */
static inline int dest_is_right(int mfd)
{
	return dest_is(mfd, FILE_SIZE);
}

/* The tasks in D state ("name(pid) ..."), or NULL when there are none. */
static inline const char *task_in_d_state(void)
{
	static char names[256];
	char path[64], line[512];
	size_t len = 0;
	FILE *f;

	names[0] = 0;
	for (int pid = 2; pid < 32768; pid++) {
		snprintf(path, sizeof(path), "/proc/%d/stat", pid);
		f = fopen(path, "r");
		if (!f)
			continue;
		if (fgets(line, sizeof(line), f)) {
			char *l = strchr(line, '('), *r = strrchr(line, ')');

			if (l && r && r[1] == ' ' && r[2] == 'D' && len < sizeof(names))
				len += snprintf(names + len, sizeof(names) - len, "%s%.*s(%d)",
						len ? " " : "", (int)(r - l - 1), l + 1, pid);
		}
		fclose(f);
	}
	return names[0] ? names : NULL;
}

#endif /* TF_STEP_H */
