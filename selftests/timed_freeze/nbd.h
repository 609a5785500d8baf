/* SPDX-License-Identifier: GPL-2.0 */
/*
 * A small NBD server for the tests: the image in its memory, served over a
 * socketpair set on /dev/nbdN with NBD_SET_SOCK, by a forked process.
 *
 * The test steers it through a control pipe, one byte a command:
 *   's'  stall: WRITE requests are read but not answered (nor applied)
 *        until resumed; READs are still answered.  The storage "stops
 *        taking writes": writeback, journal commits and O_DIRECT writes
 *        wait for it, as on a hung NBD or iSCSI server.
 *   'w'  stall after one more WRITE: the next WRITE request is applied and
 *        answered, those after it are held as after 's'.  Each 'w' lets
 *        one more through (sent before 's', or instead of it): the
 *        storage stops in the middle of a sequence of writes.
 *   'r'  resume: the held WRITEs are applied and answered, in order.
 *   'v'  (with @on_read) the next READ runs @on_read first (the vector's
 *        daemon step).
 * Each command is acknowledged with one byte on the reply pipe.
 *
 * No NBD_SET_TIMEOUT: with none, the client waits for a held request as
 * long as it takes (noting "Possible stuck request" every 30 s).
 */
#ifndef TF_NBD_H
#define TF_NBD_H

#include <arpa/inet.h>
#include <endian.h>
#include <linux/nbd.h>
#include <poll.h>
#include <pthread.h>
#include <sys/socket.h>

#include "tf_util.h"

#define NBD_BLKSIZE	4096

struct nbd_srv {
	const char *dev;	/* /dev/nbdN */
	int fd;			/* open on dev, -1 when not connected */
	int sock[2];
	pthread_t doit;
	int doit_started;
	pid_t pid;		/* the server */
	int ctl[2];		/* test -> server */
	int ack[2];		/* server -> test */
	int (*on_read)(void *arg);	/* the vector's step, or NULL */
	void *on_read_arg;
};

struct nbd_held {
	struct nbd_reply rp;
	unsigned long long from;
	unsigned int len;
	char *data;
};

static int nbd_io_full(int fd, void *buf, size_t len, int wr)
{
	char *p = buf;

	while (len) {
		ssize_t n = wr ? write(fd, p, len) : read(fd, p, len);

		if (n <= 0)
			return -1;
		p += n;
		len -= n;
	}
	return 0;
}

/* Answers the held writes, in order. */
static int nbd_release(int sock, char *disk, struct nbd_held *held, int *nheld)
{
	for (int i = 0; i < *nheld; i++) {
		memcpy(disk + held[i].from, held[i].data, held[i].len);
		free(held[i].data);
		if (nbd_io_full(sock, &held[i].rp, sizeof(held[i].rp), 1))
			return -1;
	}
	*nheld = 0;
	return 0;
}

static void nbd_server_main(struct nbd_srv *s, int sock, unsigned long long size, int img)
{
	char *disk = calloc(1, size);
	struct nbd_held *held = calloc(4096, sizeof(*held));
	int stalled = 0, vector = 0, nheld = 0;
	int pass = 0;		/* WRITEs still answered while stalled ('w') */
	struct pollfd pf[2] = {
		{ .fd = sock, .events = POLLIN },
		{ .fd = s->ctl[0], .events = POLLIN },
	};

	if (!disk || !held)
		_exit(2);
	if (img >= 0 && read(img, disk, size) <= 0)
		_exit(2);
	for (;;) {
		struct nbd_request rq;
		struct nbd_reply rp = { .magic = htonl(NBD_REPLY_MAGIC) };
		unsigned long long from;
		unsigned int len, type;

		if (poll(pf, 2, -1) < 0)
			_exit(3);
		if (pf[1].revents & POLLIN) {
			char c;

			if (read(s->ctl[0], &c, 1) != 1)
				_exit(0);
			if (c == 's') {
				stalled = 1;
				pass = 0;
			}
			if (c == 'w') {
				stalled = 1;
				pass++;
			}
			if (c == 'v')
				vector = 1;
			if (c == 'r') {
				stalled = 0;
				pass = 0;
				if (nbd_release(sock, disk, held, &nheld))
					_exit(0);
			}
			if (write(s->ack[1], &c, 1) != 1)
				_exit(3);
			continue;
		}
		if (!(pf[0].revents & (POLLIN | POLLHUP)))
			continue;
		if (nbd_io_full(sock, &rq, sizeof(rq), 0))
			break;
		from = be64toh(rq.from);
		len = ntohl(rq.len);
		type = ntohl(rq.type) & 0xffff;
		if (ntohl(rq.magic) != NBD_REQUEST_MAGIC || from + len > size)
			_exit(4);
		memcpy(rp.handle, rq.handle, sizeof(rp.handle));
		if (type == NBD_CMD_DISC)
			break;
		if (type == NBD_CMD_WRITE && stalled && pass) {
			pass--;		/* answered below, as when not stalled */
		} else if (type == NBD_CMD_WRITE && stalled) {
			if (nheld == 4096)
				_exit(5);
			held[nheld].rp = rp;
			held[nheld].from = from;
			held[nheld].len = len;
			held[nheld].data = malloc(len);
			if (!held[nheld].data || nbd_io_full(sock, held[nheld].data, len, 0))
				_exit(5);
			nheld++;
			continue;
		}
		if (type == NBD_CMD_WRITE && nbd_io_full(sock, disk + from, len, 0))
			_exit(5);
		if (type == NBD_CMD_READ && vector && s->on_read) {
			vector = 0;
			if (s->on_read(s->on_read_arg))
				rp.error = htonl(EIO);
		}
		if (nbd_io_full(sock, &rp, sizeof(rp), 1) ||
		    (type == NBD_CMD_READ && nbd_io_full(sock, disk + from, len, 1)))
			break;
	}
	_exit(0);
}

static void *nbd_doit(void *arg)
{
	sigset_t all;

	/*
	 * NBD_DO_IT sleeps interruptibly, and a signal ends it by shutting
	 * the connection down (the end of a child the test ran, say): only
	 * NBD_DISCONNECT may end it.
	 */
	sigfillset(&all);
	pthread_sigmask(SIG_BLOCK, &all, NULL);
	ioctl(*(int *)arg, NBD_DO_IT);
	return NULL;
}

/* Sends a command to the server and waits for its acknowledgment; 0 or -1. */
static int nbd_cmd(struct nbd_srv *s, char c)
{
	return tf_cmd(s->ctl[1], s->ack[0], c);
}

/*
 * Serves @size bytes (the contents of @img, or zeroes when NULL) on
 * @s->dev.  @keep: fds the forked server must keep open (-1 ends the
 * list), besides its own.  0 or -1.
 */
static int nbd_start(struct nbd_srv *s, unsigned long long size, const char *img,
		     const int *keep)
{
	int imgfd = -1;

	s->fd = -1;
	if (img) {
		imgfd = open(img, O_RDONLY);
		if (imgfd < 0)
			return -1;
	}
	if (socketpair(AF_UNIX, SOCK_STREAM, 0, s->sock) || pipe(s->ctl) || pipe(s->ack))
		return -1;
	s->pid = fork();
	if (s->pid < 0)
		return -1;
	if (s->pid == 0) {
		const int own[] = { s->sock[1], s->ctl[0], s->ack[1], imgfd };

		tf_close_fds_but(own, 4, keep);
		nbd_server_main(s, s->sock[1], size, imgfd);
	}
	close(s->sock[1]);
	if (imgfd >= 0)
		close(imgfd);
	s->fd = open(s->dev, O_RDWR | O_CLOEXEC);
	if (s->fd < 0 || ioctl(s->fd, NBD_SET_BLKSIZE, NBD_BLKSIZE) ||
	    ioctl(s->fd, NBD_SET_SIZE_BLOCKS, size / NBD_BLKSIZE) ||
	    ioctl(s->fd, NBD_SET_SOCK, s->sock[0]))
		return -1;
	if (pthread_create(&s->doit, NULL, nbd_doit, &s->fd))
		return -1;
	s->doit_started = 1;
	return 0;
}

/* Resumes, disconnects and ends the server (after the fs on it is unmounted). */
static void nbd_stop(struct nbd_srv *s)
{
	if (s->pid <= 0)
		return;
	nbd_cmd(s, 'r');
	if (s->fd >= 0) {
		ioctl(s->fd, NBD_DISCONNECT);
		if (s->doit_started)
			pthread_join(s->doit, NULL);
		ioctl(s->fd, NBD_CLEAR_SOCK);
		close(s->fd);
		s->fd = -1;
	}
	close(s->sock[0]);
	kill(s->pid, SIGKILL);
	waitpid(s->pid, NULL, 0);
	s->pid = 0;
}

#endif /* TF_NBD_H */
