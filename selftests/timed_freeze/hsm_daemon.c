// SPDX-License-Identifier: GPL-2.0
/*
 * hsm_daemon: hsm.h's fanotify pre-content daemon as a program of its own,
 * for trying the EROFS vector by hand:
 *
 *   hsm_daemon FULL SPARSE
 *
 * watches SPARSE (a file of FULL's size, on a filesystem that allows HSM:
 * ext4, xfs, btrfs) and fills each range read from it from FULL, until
 * interrupted; then says how many events it answered.  Mount an EROFS
 * image file-backed after it says "watching": the mount's own reads are
 * events too.
 */
#include "hsm.h"

int main(int argc, char **argv)
{
	struct hsm_srv s = {};
	struct stat full, sparse;
	const char *why;
	sigset_t stop;
	int sig;

	if (argc != 3) {
		fprintf(stderr, "usage: %s FULL SPARSE\n", argv[0]);
		return 2;
	}
	for (int i = 1; i < 3; i++) {
		if (stat(argv[i], i == 1 ? &full : &sparse)) {
			fprintf(stderr, "hsm_daemon: %s: %s\n", argv[i], strerror(errno));
			return 1;
		}
	}
	if (!S_ISREG(full.st_mode) || !S_ISREG(sparse.st_mode) ||
	    full.st_size != sparse.st_size) {
		fprintf(stderr, "hsm_daemon: FULL and SPARSE must be regular files of one size\n");
		return 1;
	}
	why = hsm_missing(argv[2]);
	if (why) {
		fprintf(stderr, "hsm_daemon: %s: %s\n", argv[2], why);
		return 1;
	}
	s.full = argv[1];
	s.sparse = argv[2];
	if (hsm_start(&s, NULL)) {
		fprintf(stderr, "hsm_daemon: cannot start: %s\n", strerror(errno));
		return 1;
	}
	printf("hsm_daemon: watching %s (pid %d), filling from %s\n", s.sparse, s.pid, s.full);
	fflush(stdout);
	sigemptyset(&stop);
	sigaddset(&stop, SIGINT);
	sigaddset(&stop, SIGTERM);
	sigprocmask(SIG_BLOCK, &stop, NULL);
	sigwait(&stop, &sig);
	printf("hsm_daemon: %d event(s) answered\n", hsm_answered(&s));
	hsm_stop(&s);
	return 0;
}
