/* SPDX-License-Identifier: GPL-2.0 */
/*
 * A fanotify pre-content (HSM) daemon for the tests, the shape of
 * erofs-utils' fanotify backend and LTP's fanotify24: a forked process
 * watches a sparse file with FAN_PRE_ACCESS and, for each event, fills the
 * event's range (its FAN_EVENT_INFO_TYPE_RANGE record) from a complete
 * copy, then answers FAN_ALLOW.  It writes through an fd it opened before
 * its fanotify group existed: such an fd raises no pre-content events
 * (fsnotify_open_perm_and_set_mode() gave it FMODE_NONOTIFY_PERM).
 *
 * The test steers it through a control pipe, one byte a command, each
 * acknowledged with the same byte:
 *   'v'  (with @on_fill) the next event runs @on_fill first, in a worker
 *        thread, and is answered when it returns: the vector's daemon
 *        step.  Other events are answered meanwhile.
 *   'x'  rescue, as a daemon that lost its backing store: the event held
 *        by 'v' is answered FAN_DENY_ERRNO(EIO) now, whatever @on_fill is
 *        doing (it may be blocked for good), and so is every later event.
 *        (Denying only the held one is not enough: filemap_fault() reads a
 *        folio that failed once more, and that read would be served.)
 *   'n'  then reads an unsigned int: how many events were answered.
 *
 * hsm_daemon.c is the same daemon as a program of its own.
 */
#ifndef TF_HSM_H
#define TF_HSM_H

#include <poll.h>
#include <pthread.h>
#include <sys/fanotify.h>

#include "tf_util.h"

#define HSM_BLKSIZE	4096

struct hsm_srv {
	const char *full;	/* the complete file: where fills come from */
	const char *sparse;	/* the watched file, filled on demand */
	pid_t pid;		/* the daemon */
	int ctl[2];		/* test -> daemon */
	int ack[2];		/* daemon -> test */
	int (*on_fill)(void *arg);	/* the vector's step, or NULL */
	void *on_fill_arg;
	int (*on_miss)(void *arg);	/* before each fill of missing blocks, or NULL */
	void *on_miss_arg;
};

/* The daemon's side. */
struct hsm_state {
	struct hsm_srv *s;
	int fan, src, dst;
	off_t size;
	unsigned char *filled;	/* a byte per HSM_BLKSIZE block */
	unsigned int answered;
	int held_fd;		/* the event fd 'v' holds, or -1 */
	int held_answered;	/* 'x' answered it already */
	int deny;		/* 'x': every event fails */
	unsigned long long held_off, held_len;
	int done[2];		/* worker -> daemon: @on_fill's result */
};

/*
 * Why no pre-content watch can be had on @file, or NULL: the kernel has no
 * FAN_PRE_ACCESS (before 6.14, or CONFIG_FANOTIFY_ACCESS_PERMISSIONS off),
 * or @file's filesystem does not allow HSM (SB_I_ALLOW_HSM).
 */
static inline const char *hsm_missing(const char *file)
{
	int fan = fanotify_init(FAN_CLASS_PRE_CONTENT | FAN_CLOEXEC, O_RDONLY);
	int ret;

	if (fan < 0)
		return "no fanotify permission events (CONFIG_FANOTIFY_ACCESS_PERMISSIONS)";
	ret = fanotify_mark(fan, FAN_MARK_ADD, FAN_PRE_ACCESS, AT_FDCWD, file);
	close(fan);
	return ret ? "no FAN_PRE_ACCESS here (Linux 6.14+, a filesystem with HSM)" : NULL;
}

/* Copies the blocks of [@off, @off + @len) not yet there; 0 or -1. */
static inline int hsm_fill(struct hsm_state *st, unsigned long long off,
			   unsigned long long len)
{
	static char buf[HSM_BLKSIZE];
	unsigned long long end = off + len;

	if (end > (unsigned long long)st->size || end < off)
		end = st->size;
	off -= off % HSM_BLKSIZE;
	/* A slow backing store: one fetch for the missing blocks of the range. */
	for (unsigned long long b = off; st->s->on_miss && b < end; b += HSM_BLKSIZE) {
		if (st->filled[b / HSM_BLKSIZE])
			continue;
		if (st->s->on_miss(st->s->on_miss_arg))
			return -1;
		break;
	}
	for (; off < end; off += HSM_BLKSIZE) {
		ssize_t n;

		if (st->filled[off / HSM_BLKSIZE])
			continue;
		n = pread(st->src, buf, sizeof(buf), off);
		if (n <= 0 || pwrite(st->dst, buf, n, off) != n)
			return -1;
		st->filled[off / HSM_BLKSIZE] = 1;
	}
	return 0;
}

static inline int hsm_answer(struct hsm_state *st, int fd, unsigned int response)
{
	struct fanotify_response r = { .fd = fd, .response = response };

	st->answered++;
	return write(st->fan, &r, sizeof(r)) == sizeof(r) ? 0 : -1;
}

static inline void *hsm_worker(void *arg)
{
	struct hsm_state *st = arg;
	char r = st->s->on_fill(st->s->on_fill_arg) ? 'e' : 'o';

	if (write(st->done[1], &r, 1) != 1)
		_exit(3);
	return NULL;
}

/* One event: its range filled and answered, or held for the vector. */
static inline void hsm_event(struct hsm_state *st, struct fanotify_event_metadata *md,
			     int *armed)
{
	unsigned long long off = 0, len = st->size;
	char *p = (char *)md + md->metadata_len;
	pthread_t w;

	if (md->vers != FANOTIFY_METADATA_VERSION || md->fd < 0)
		_exit(4);
	while (p < (char *)md + md->event_len) {
		struct fanotify_event_info_header *h = (void *)p;

		if (h->info_type == FAN_EVENT_INFO_TYPE_RANGE) {
			struct fanotify_event_info_range *r = (void *)p;

			off = r->offset;
			len = r->count;
		}
		if (!h->len)
			_exit(4);
		p += h->len;
	}
	if (*armed && st->held_fd < 0) {
		*armed = 0;
		st->held_fd = md->fd;
		st->held_answered = 0;
		st->held_off = off;
		st->held_len = len;
		if (pthread_create(&w, NULL, hsm_worker, st))
			_exit(3);
		pthread_detach(w);
		return;
	}
	if (hsm_answer(st, md->fd, st->deny || hsm_fill(st, off, len) ?
			   FAN_DENY_ERRNO(EIO) : FAN_ALLOW))
		_exit(3);
	close(md->fd);
}

static inline void hsm_main(struct hsm_srv *s, int src, int dst)
{
	static union {
		struct fanotify_event_metadata md;
		char b[8192];
	} buf;
	struct hsm_state st = { .s = s, .src = src, .dst = dst, .held_fd = -1 };
	int armed = 0;
	struct pollfd pf[3];

	/* A terminal's ^C is for hsm_daemon.c's parent, which then stops us. */
	signal(SIGINT, SIG_IGN);
	st.size = lseek(src, 0, SEEK_END);
	st.filled = calloc(st.size / HSM_BLKSIZE + 1, 1);
	if (st.size <= 0 || !st.filled || pipe(st.done))
		_exit(2);
	/* After the fds above: they raise no events. */
	st.fan = fanotify_init(FAN_CLASS_PRE_CONTENT | FAN_CLOEXEC, O_RDONLY | O_LARGEFILE);
	if (st.fan < 0 ||
	    fanotify_mark(st.fan, FAN_MARK_ADD, FAN_PRE_ACCESS, AT_FDCWD, s->sparse))
		_exit(2);
	if (write(s->ack[1], "m", 1) != 1)
		_exit(3);
	pf[0] = (struct pollfd){ .fd = st.fan, .events = POLLIN };
	pf[1] = (struct pollfd){ .fd = s->ctl[0], .events = POLLIN };
	pf[2] = (struct pollfd){ .fd = st.done[0], .events = POLLIN };
	for (;;) {
		ssize_t n;
		char c;

		if (poll(pf, 3, -1) < 0) {
			if (errno == EINTR)
				continue;
			_exit(3);
		}
		if (pf[1].revents & (POLLIN | POLLHUP)) {
			if (read(s->ctl[0], &c, 1) != 1)
				_exit(0);
			if (c == 'v')
				armed = !!s->on_fill;
			if (c == 'x' && st.held_fd >= 0 && !st.held_answered) {
				if (hsm_answer(&st, st.held_fd, FAN_DENY_ERRNO(EIO)))
					_exit(3);
				st.held_answered = 1;
			}
			if (c == 'x')
				st.deny = 1;
			if (write(s->ack[1], &c, 1) != 1)
				_exit(3);
			if (c == 'n' && write(s->ack[1], &st.answered, sizeof(st.answered)) !=
					sizeof(st.answered))
				_exit(3);
		}
		if (pf[2].revents & POLLIN) {
			if (read(st.done[0], &c, 1) != 1)
				_exit(3);
			if (!st.held_answered &&
			    hsm_answer(&st, st.held_fd,
				       c == 'o' && !st.deny &&
				       !hsm_fill(&st, st.held_off, st.held_len) ?
				       FAN_ALLOW : FAN_DENY_ERRNO(EIO)))
				_exit(3);
			close(st.held_fd);
			st.held_fd = -1;
		}
		if (!(pf[0].revents & POLLIN))
			continue;
		n = read(st.fan, buf.b, sizeof(buf.b));
		if (n <= 0)
			_exit(3);
		for (struct fanotify_event_metadata *md = &buf.md; FAN_EVENT_OK(md, n);
		     md = FAN_EVENT_NEXT(md, n))
			hsm_event(&st, md, &armed);
	}
}

/* Sends a command to the daemon and waits for its acknowledgment; 0 or -1. */
static inline int hsm_cmd(struct hsm_srv *s, char c)
{
	return tf_cmd(s->ctl[1], s->ack[0], c);
}

/* How many events the daemon has answered, or -1. */
static inline int hsm_answered(struct hsm_srv *s)
{
	unsigned int n;

	if (hsm_cmd(s, 'n') || read(s->ack[0], &n, sizeof(n)) != sizeof(n))
		return -1;
	return n;
}

/*
 * Starts the daemon on @s->sparse (filled from @s->full) and returns once
 * its mark is in place: whoever opens @s->sparse from now on raises events.
 * @keep: fds the forked daemon must keep open (-1 ends the list), besides
 * its own.  0 or -1.
 */
static inline int hsm_start(struct hsm_srv *s, const int *keep)
{
	int src, dst;
	char c;

	src = open(s->full, O_RDONLY | O_CLOEXEC);
	dst = open(s->sparse, O_WRONLY | O_CLOEXEC);
	if (src < 0 || dst < 0 || pipe(s->ctl) || pipe(s->ack))
		return -1;
	s->pid = fork();
	if (s->pid < 0)
		return -1;
	if (s->pid == 0) {
		const int own[] = { s->ctl[0], s->ack[1], src, dst };

		tf_close_fds_but(own, 4, keep);
		hsm_main(s, src, dst);
	}
	close(src);
	close(dst);
	close(s->ctl[0]);
	close(s->ack[1]);
	/* A daemon that died fails hsm_cmd() with EPIPE, not the test with SIGPIPE. */
	signal(SIGPIPE, SIG_IGN);
	return read(s->ack[0], &c, 1) == 1 && c == 'm' ? 0 : -1;
}

/* Ends the daemon: its group goes, and fanotify allows what it held. */
static inline void hsm_stop(struct hsm_srv *s)
{
	if (s->pid <= 0)
		return;
	close(s->ctl[1]);
	close(s->ack[0]);
	kill(s->pid, SIGKILL);
	waitpid(s->pid, NULL, 0);
	s->pid = 0;
}

#endif /* TF_HSM_H */
