// SPDX-License-Identifier: GPL-2.0
/*
 * A fuzzer for the ioctls of /dev/timed-freeze, against loop-mounted ext4,
 * xfs, and an ext4 mounted read-only (whose freeze takes no level).
 *
 * fuzz.one_thread: random and boundary struct sizes (with zero and
 * non-zero bytes beyond what the module knows), flags, timeouts, retries,
 * file descriptors of every kind, bad user pointers (NULL, kernel and
 * non-canonical addresses, a guard page, a read-only page, a struct that
 * runs into a guard or a read-only page), random command numbers and the
 * real numbers with other direction and size bits, LIST and FORCE_THAW
 * with random arguments, stock freezes and thaws from the side, an OWNED
 * freeze held through a second open file of the device, and that file
 * closed and reopened.  The test keeps a model of who holds which freeze
 * (freeze_super()'s rules: one userspace freeze and one owned freeze may
 * hold a filesystem at once) and asserts the exact errno of every call,
 * ETIMEDOUT allowed only where a deadline below 2 s could pass.
 *
 * fuzz.threads_on_one_file: threads calling FREEZE, THAW, LIST and
 * FORCE_THAW at once on one open file of the device, while a thread
 * freezes and thaws the same filesystems from the side (FIFREEZE, and
 * OWNED freezes through a file of its own), another closes and reopens
 * the device under the shared file descriptor, another flips the page
 * some FREEZE results go to between writable and read-only, and another
 * forks children that share the file and kills them in the middle of
 * their calls.  Each result must be in the set the UAPI allows for that
 * input.
 *
 * fuzz.unprivileged_holder_of_the_file: the same calls from a process
 * without CAP_SYS_ADMIN that holds open files of the device, one of them
 * the holder of an OWNED freeze: EPERM where the UAPI says, nothing changed.
 *
 * For every call: it returns within a bound, it writes nothing but its out
 * fields (at most @size bytes, nothing on an argument error), and the out
 * fields are consistent.  Afterwards, with the device files closed: nothing
 * frozen (FITHAW says EINVAL, a write goes through), no OWNED freeze in
 * debugfs, and the filesystems unmount and check clean.  The counts of each
 * errno, by ioctl, are printed as TAP comments.
 *
 * TF_FUZZ_CALLS: calls per test (default 10000).  TF_FUZZ_SEED: the seed
 * (default: from the clock), printed first: one_thread replays exactly up
 * to the timing of short deadlines; the threads' interleaving does not.
 */
#include <limits.h>
#include <pthread.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/inotify.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <netinet/in.h>
#include <linux/fiemap.h>

#include "kselftest_harness.h"
#include "tf_util.h"

#define NSEC_PER_SEC		1000000000ULL
#define DEFAULT_CALLS		10000L
#define MAX_FS			3
#define NDEV			2
#define EXT_MAX			4096	/* the largest struct the module reads */
#define IMG_MAX			(EXT_MAX + 64)
#define CANARY			0xa5
#define ARENA_PAGES		5	/* 0-2 read-write, 3 varies, 4 no access */
#define MAX_KINDS		48
#define NERR			192
#define REPORT_MAX		20	/* failures told in full */
#define NWORKERS		4
/* A deadline shorter than this may pass on an idle filesystem (TCG). */
#define SURE_TIMEOUT_NS		(2 * NSEC_PER_SEC)
/* The longest valid timeout the racing threads use. */
#define RACE_TIMEOUT_NS		(200 * NSEC_PER_MSEC)

enum op {
	OP_FREEZE,
	OP_THAW,
	OP_LIST,
	OP_FORCE_THAW,
	OP_BADCMD,
	OP_FIFREEZE,
	OP_FITHAW,
	OP_REOPEN,
	OP_KILL,
	OP_NR
};

static const char * const op_names[OP_NR] = {
	"FREEZE", "THAW", "LIST", "FORCE_THAW", "unknown cmd",
	"FIFREEZE", "FITHAW", "close+reopen", "kill child",
};

/* Where a struct goes. */
enum place {
	PL_OK,		/* read-write, with pages of room after it */
	PL_NULL,
	PL_KERNEL,	/* a kernel address */
	PL_NONCANON,	/* a non-canonical address */
	PL_GUARD,	/* a page without access */
	PL_RO,		/* a read-only page */
	PL_END,		/* @hint bytes before a page without access */
	PL_RWRO,	/* @hint bytes before a read-only page */
	PL_FLIP,	/* a page another thread makes read-only and back */
	PL_NR
};

static const char * const place_names[PL_NR] = {
	"ok", "NULL", "kernel address", "non-canonical", "guard page",
	"read-only page", "end of mapping", "read-write into read-only",
	"flipping page",
};

enum fd_cls { FD_BAD, FD_NOFREEZE, FD_FS };

/* File descriptors whose number is found when used. */
enum fd_dyn { DYN_NONE, DYN_DEV0, DYN_DEV1, DYN_CLOSED, DYN_NEG, DYN_BIG };

struct fd_kind {
	char what[40];
	int fd;
	int cls;
	int fs;		/* FD_FS: which filesystem */
	int dyn;
};

struct fd_sel {
	int fd;
	int cls;
	int fs;
	const char *what;
};

struct arena {
	unsigned char *base;
	unsigned char *snap;	/* pages 0-3 before the call */
	long pg;
};

struct placed {
	int place;
	unsigned char *ptr;	/* what the call gets */
	size_t avail;		/* bytes readable from @ptr */
	size_t wavail;		/* bytes writable from @ptr */
};

/* One call: its inputs, and where they went. */
struct call {
	int op;
	unsigned int cmd;
	int odd;		/* the op's number with other direction/size bits */
	int dev;		/* index of the device file it goes to */
	int place, eplace;
	size_t hint, ehint;
	__u64 size;
	size_t tail_nz;		/* 0, or 1 + offset of a non-zero byte beyond the struct */
	__u64 flags, timeout, deadline, id, entries;
	__u32 retries, reserved, esize, count;
	struct fd_sel fd;
	unsigned long arg;	/* unknown commands: the argument */
	unsigned char img[IMG_MAX];
	size_t len;		/* bytes of @img placed */
	struct placed p, ep;	/* the struct, LIST's entries */
	int flip;		/* PL_FLIP: the worker's flip page */
};

/* Who holds a filesystem, as the module and fs/super.c see it. */
struct fs_state {
	int ucount;		/* userspace freezes: 0 or 1 */
	int owner;		/* device file holding the OWNED freeze, or -1 */
	__u64 owned_id;		/* its id (0: not learnt yet) */
	unsigned long since;	/* call count when it was frozen */
};

struct model {
	struct fs_state st[MAX_FS];
	__u64 stale[8];		/* ids of OWNED freezes thawed */
	int nstale;		/* filled entries of stale[] */
	unsigned int stale_next;	/* where the next one goes */
};

enum eff_kind { EFF_NONE, EFF_FREEZE_U, EFF_FREEZE_OWNED, EFF_THAW_U, EFF_THAW_OWNED };

struct effect {
	int kind;
	int fs;
	int dev;
};

struct expect {
	int n;
	int err[8];
};

struct worker;

struct fuzz {
	__u64 seed;
	struct tf_fs *fs;		/* MAX_FS of them */
	const char *type[MAX_FS];	/* for mkfs, mount and fsck */
	const char *name[MAX_FS];	/* for people */
	int ro[MAX_FS];			/* mounted read-only */
	dev_t st_dev[MAX_FS];
	int nfs;
	int dev[NDEV];
	struct fd_kind kinds[MAX_KINDS];
	int nkinds;
	struct arena a, ea;
	long pg;
	struct model m;
	int race;		/* results are checked against sets, not the model */
	int unpriv;		/* without CAP_SYS_ADMIN: EPERM where the UAPI says */
	unsigned long long t_start;
	/* accounting, shared by the threads */
	long calls;
	long limit;
	long failures;
	long odd_cmds;
	unsigned int hist[OP_NR][NERR];
	unsigned long long max_ns[OP_NR];
	/* racing */
	int stop;
	__u64 seen_ids[16];
	unsigned int seen_next;
	struct worker *workers;
};

/* --- small things -------------------------------------------------------- */

struct rng {
	__u64 s;
};

static __u64 rnd(struct rng *r)
{
	__u64 z;

	r->s += 0x9e3779b97f4a7c15ULL;
	z = r->s;
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	return z ^ (z >> 31);
}

static __u64 below(struct rng *r, __u64 n)
{
	return n ? rnd(r) % n : 0;
}

static int pct(struct rng *r, int p)
{
	return (int)below(r, 100) < p;
}

static __u64 min_u64(__u64 a, __u64 b)
{
	return a < b ? a : b;
}

static const char *errname(int e)
{
	switch (e) {
	case 0: return "0";
	case EPERM: return "EPERM";
	case ENOENT: return "ENOENT";
	case EINTR: return "EINTR";
	case EIO: return "EIO";
	case E2BIG: return "E2BIG";
	case EBADF: return "EBADF";
	case ENOMEM: return "ENOMEM";
	case EFAULT: return "EFAULT";
	case EBUSY: return "EBUSY";
	case EINVAL: return "EINVAL";
	case ENOTTY: return "ENOTTY";
	case EOPNOTSUPP: return "EOPNOTSUPP";
	case ETIMEDOUT: return "ETIMEDOUT";
	default: return "E?";
	}
}

/*
 * A TAP comment, in one write(): no lock, so that threads, and children
 * killed at any moment, may all say things.
 */
static __printf(2, 3) void say(struct fuzz *f, const char *fmt, ...)
{
	char buf[1024] = "# ";
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(buf + 2, sizeof(buf) - 2, fmt, ap);
	va_end(ap);
	n = n < 0 ? 0 : n + 2 < (int)sizeof(buf) ? n + 2 : (int)sizeof(buf) - 1;
	if (write(STDOUT_FILENO, buf, n) < 0)
		return;
}

static void ex_add(struct expect *e, int err)
{
	for (int i = 0; i < e->n; i++)
		if (e->err[i] == err)
			return;
	if (e->n < (int)ARRAY_SIZE(e->err))
		e->err[e->n++] = err;
}

/* Exactly @err; returns 1: the outcome is decided. */
static int ex_one(struct expect *e, int err)
{
	e->n = 0;
	ex_add(e, err);
	return 1;
}

static int ex_has(const struct expect *e, int err)
{
	for (int i = 0; i < e->n; i++)
		if (e->err[i] == err)
			return 1;
	return 0;
}

static void ex_str(const struct expect *e, char *buf, size_t len)
{
	size_t at = 0;

	buf[0] = 0;
	for (int i = 0; i < e->n && at < len; i++)
		at += snprintf(buf + at, len - at, "%s%s", i ? "|" : "", errname(e->err[i]));
}

static long env_long(const char *name, long dflt)
{
	const char *s = getenv(name);
	char *end;
	long v;

	if (!s || !*s)
		return dflt;
	v = strtol(s, &end, 0);
	return *end || v <= 0 ? dflt : v;
}

/* Commands the VFS answers itself, before the device sees them. */
static int vfs_cmd(unsigned int cmd)
{
	static const unsigned int vfs[] = {
		FIOCLEX, FIONCLEX, FIONBIO, FIOASYNC, FIOQSIZE, FIFREEZE, FITHAW,
		FS_IOC_FIEMAP, FIGETBSZ, FICLONE, FICLONERANGE, FIDEDUPERANGE,
		FIONREAD, FS_IOC_GETFLAGS, FS_IOC_SETFLAGS, FS_IOC_FSGETXATTR,
		FS_IOC_FSSETXATTR, FS_IOC_GETFSUUID, FS_IOC_GETFSSYSFSPATH,
	};

	for (size_t i = 0; i < ARRAY_SIZE(vfs); i++)
		if (cmd == vfs[i])
			return 1;
	return 0;
}

/* --- where the structs go ------------------------------------------------ */

static int arena_init(struct arena *a, long pg)
{
	a->pg = pg;
	a->base = mmap(NULL, ARENA_PAGES * pg, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (a->base == MAP_FAILED)
		return -1;
	a->snap = malloc(4 * pg);
	if (!a->snap)
		return -1;
	return mprotect(a->base + 4 * pg, pg, PROT_NONE);
}

static void arena_free(struct arena *a)
{
	if (a->base && a->base != MAP_FAILED)
		munmap(a->base, ARENA_PAGES * a->pg);
	free(a->snap);
}

/*
 * Put @len bytes of @img where @place says (@hint: for PL_END and PL_RWRO,
 * the bytes before the page that ends it), and take a snapshot of the
 * arena to compare with after the call.
 */
static void arena_place(struct arena *a, struct rng *r, int place, size_t hint,
			const void *img, size_t len, struct placed *p)
{
	unsigned char *b = a->base;
	long pg = a->pg;
	size_t off = below(r, 16);

	memset(b, CANARY, 4 * pg);
	p->place = place;
	p->avail = 0;
	p->wavail = 0;
	switch (place) {
	case PL_OK:
		p->ptr = b + off;
		p->avail = 4 * pg - off;
		p->wavail = p->avail;
		break;
	case PL_NULL:
		p->ptr = NULL;
		break;
	case PL_KERNEL:
		p->ptr = (void *)(pct(r, 50) ? 0xffffffff81000000UL : 0xffff888000001000UL);
		break;
	case PL_NONCANON:
		p->ptr = (void *)(pct(r, 50) ? 0x8000000000000000UL + off : ~0UL - off);
		break;
	case PL_GUARD:
		p->ptr = b + 4 * pg + off;
		break;
	case PL_RO:
		p->ptr = b + 3 * pg + off;
		p->avail = pg - off;
		break;
	case PL_END:
		hint = min_u64(hint, 4 * pg);
		p->ptr = b + 4 * pg - hint;
		p->avail = hint;
		p->wavail = hint;
		break;
	case PL_RWRO:
		hint = min_u64(hint, 3 * pg);
		p->ptr = b + 3 * pg - hint;
		p->avail = hint + pg;
		p->wavail = hint;
		break;
	}
	if (p->avail && img)
		memcpy(p->ptr, img, min_u64(len, p->avail));
	if (place == PL_RO || place == PL_RWRO)
		mprotect(b + 3 * pg, pg, PROT_READ);
	memcpy(a->snap, b, 4 * pg);
}

static void arena_restore(struct arena *a, const struct placed *p)
{
	if (p->place == PL_RO || p->place == PL_RWRO)
		mprotect(a->base + 3 * a->pg, a->pg, PROT_READ | PROT_WRITE);
}

/*
 * The first byte of the arena that changed outside [@lo, @hi) of the
 * struct at @p (its offset in the arena), or -1.
 */
static long arena_stray(const struct arena *a, const struct placed *p, size_t lo, size_t hi,
			size_t lo2, size_t hi2)
{
	const unsigned char *b = a->base;
	long n = 4 * a->pg;

	if (!memcmp(b, a->snap, n))
		return -1;
	for (long i = 0; i < n; i++) {
		if (b[i] == a->snap[i])
			continue;
		if (p->ptr && b + i >= p->ptr + lo && b + i < p->ptr + hi)
			continue;
		if (p->ptr && b + i >= p->ptr + lo2 && b + i < p->ptr + hi2)
			continue;
		return i;
	}
	return -1;
}

/* --- the file descriptors ------------------------------------------------ */

static void add_kind(struct fuzz *f, const char *what, int fd, int cls, int fs, int dyn)
{
	struct fd_kind *k;

	if (f->nkinds >= MAX_KINDS || (fd < 0 && !dyn))
		return;
	k = &f->kinds[f->nkinds++];
	snprintf(k->what, sizeof(k->what), "%s", what);
	k->fd = fd;
	k->cls = cls;
	k->fs = fs;
	k->dyn = dyn;
}

/* A file descriptor number that is not open (a hole, or the next one). */
static int closed_number(void)
{
	for (int fd = 3; fd < 65536; fd++)
		if (fcntl(fd, F_GETFD) < 0 && errno == EBADF)
			return fd;
	return 65536;
}

static void resolve(struct fuzz *f, struct rng *r, const struct fd_kind *k, struct fd_sel *s)
{
	static const int neg[] = { -1, -2, INT_MIN, -100, -65536 };

	s->what = k->what;
	s->cls = k->cls;
	s->fs = k->fs;
	s->fd = k->fd;
	switch (k->dyn) {
	case DYN_DEV0:
		s->fd = f->dev[0];
		break;
	case DYN_DEV1:
		s->fd = f->dev[1];
		break;
	case DYN_CLOSED:
		/* Racing, a hole may be filled meanwhile: numbers never handed out. */
		s->fd = f->race ? 4096 + (int)below(r, 1 << 19) : closed_number();
		break;
	case DYN_NEG:
		s->fd = pct(r, 70) ? neg[below(r, ARRAY_SIZE(neg))] : (int)(rnd(r) | 0x80000000U);
		break;
	case DYN_BIG:
		s->fd = pct(r, 50) ? INT_MAX : (1 << 20) + (int)below(r, 1 << 20);
		break;
	}
}

/* Any file descriptor: half of the time one on a filesystem of ours. */
static void pick_fd(struct fuzz *f, struct rng *r, struct fd_sel *s)
{
	const struct fd_kind *k;

	do {
		k = &f->kinds[below(r, f->nkinds)];
	} while (pct(r, 50) && k->cls != FD_FS);
	resolve(f, r, k, s);
}

/* A file descriptor on filesystem @fs that FIFREEZE takes (not O_PATH). */
static void pick_fs_fd(struct fuzz *f, struct rng *r, int fs, struct fd_sel *s)
{
	const struct fd_kind *k;

	do {
		k = &f->kinds[below(r, f->nkinds)];
	} while (k->cls != FD_FS || k->fs != fs);
	resolve(f, r, k, s);
}

static int fuzz_kinds(struct fuzz *f)
{
	int sv[2], pfd[2];
	char what[40];

	for (int i = 0; i < f->nfs; i++) {
		int mfd = f->fs[i].mfd;

		snprintf(what, sizeof(what), "%s: its root directory", f->name[i]);
		add_kind(f, what, mfd, FD_FS, i, DYN_NONE);
		snprintf(what, sizeof(what), "%s: a file, read-only", f->name[i]);
		add_kind(f, what, openat(mfd, "fuzzfile", O_RDONLY | O_CLOEXEC), FD_FS, i, 0);
		if (!f->ro[i]) {
			snprintf(what, sizeof(what), "%s: a file, write-only", f->name[i]);
			add_kind(f, what, openat(mfd, "fuzzfile", O_WRONLY | O_APPEND | O_CLOEXEC),
				 FD_FS, i, 0);
		}
		snprintf(what, sizeof(what), "%s: O_PATH", f->name[i]);
		add_kind(f, what, openat(mfd, "fuzzfile", O_PATH | O_CLOEXEC), FD_BAD, i, 0);
	}
	if (pipe2(pfd, O_CLOEXEC))
		return -1;
	add_kind(f, "pipe, read end", pfd[0], FD_NOFREEZE, 0, 0);
	add_kind(f, "pipe, write end", pfd[1], FD_NOFREEZE, 0, 0);
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv))
		return -1;
	add_kind(f, "unix socket", sv[0], FD_NOFREEZE, 0, 0);
	close(sv[1]);
	add_kind(f, "inet socket", socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0),
		 FD_NOFREEZE, 0, 0);
	add_kind(f, "O_PATH on /proc", open("/proc", O_PATH | O_CLOEXEC), FD_BAD, 0, 0);
	add_kind(f, "procfs file", open("/proc/self/status", O_RDONLY | O_CLOEXEC),
		 FD_NOFREEZE, 0, 0);
	add_kind(f, "sysfs directory", open("/sys/kernel", O_RDONLY | O_DIRECTORY | O_CLOEXEC),
		 FD_NOFREEZE, 0, 0);
	add_kind(f, "debugfs file", open(TF_DEBUGFS "/stats", O_RDONLY | O_CLOEXEC),
		 FD_NOFREEZE, 0, 0);
	add_kind(f, "tmpfs directory", open(f->fs[0].dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC),
		 FD_NOFREEZE, 0, 0);
	add_kind(f, "tmpfs file", open(f->fs[0].img, O_RDONLY | O_CLOEXEC), FD_NOFREEZE, 0, 0);
	add_kind(f, "memfd", memfd_create("fuzz", MFD_CLOEXEC), FD_NOFREEZE, 0, 0);
	add_kind(f, "/dev/null", open("/dev/null", O_RDWR | O_CLOEXEC), FD_NOFREEZE, 0, 0);
	add_kind(f, "eventfd", eventfd(0, EFD_CLOEXEC), FD_NOFREEZE, 0, 0);
	add_kind(f, "epoll", epoll_create1(EPOLL_CLOEXEC), FD_NOFREEZE, 0, 0);
	add_kind(f, "inotify", inotify_init1(IN_CLOEXEC), FD_NOFREEZE, 0, 0);
	add_kind(f, "pidfd", syscall(SYS_pidfd_open, getpid(), 0), FD_NOFREEZE, 0, 0);
	add_kind(f, "the device itself", -1, FD_NOFREEZE, 0, DYN_DEV0);
	add_kind(f, "the other device file", -1, FD_NOFREEZE, 0, DYN_DEV1);
	add_kind(f, "a closed number", -1, FD_BAD, 0, DYN_CLOSED);
	add_kind(f, "a negative number", -1, FD_BAD, 0, DYN_NEG);
	add_kind(f, "a number past the table", -1, FD_BAD, 0, DYN_BIG);
	return 0;
}

/* --- the inputs ---------------------------------------------------------- */

static size_t ksize_of(int op)
{
	switch (op) {
	case OP_FREEZE:
		return sizeof(struct timed_freeze_args);
	case OP_THAW:
		return sizeof(struct timed_thaw_args);
	case OP_LIST:
		return sizeof(struct timed_freeze_list_args);
	case OP_FORCE_THAW:
		return sizeof(struct timed_freeze_force_thaw_args);
	}
	return 0;
}

static __u64 ver0_of(int op)
{
	switch (op) {
	case OP_FREEZE:
		return TIMED_FREEZE_ARGS_SIZE_VER0;
	case OP_THAW:
		return TIMED_THAW_ARGS_SIZE_VER0;
	case OP_LIST:
		return TIMED_FREEZE_LIST_ARGS_SIZE_VER0;
	case OP_FORCE_THAW:
		return TIMED_FREEZE_FORCE_THAW_ARGS_SIZE_VER0;
	}
	return 0;
}

static unsigned int real_cmd(int op)
{
	switch (op) {
	case OP_FREEZE:
		return TIMED_FREEZE_IOC_FREEZE;
	case OP_THAW:
		return TIMED_FREEZE_IOC_THAW;
	case OP_LIST:
		return TIMED_FREEZE_IOC_LIST;
	case OP_FORCE_THAW:
		return TIMED_FREEZE_IOC_FORCE_THAW;
	}
	return 0;
}

/* The struct size: mostly one the module takes, often a boundary. */
static __u64 gen_size(struct rng *r, int op, long pg, size_t *tail_nz)
{
	static const __u64 huge[] = { 1ULL << 32, 1ULL << 63, ~0ULL, 1ULL << 31, 65536 };
	__u64 ver0 = ver0_of(op), ks = ksize_of(op), size;

	*tail_nz = 0;
	switch (below(r, 24)) {
	case 0:
		return below(r, ver0);
	case 1:
		return below(r, 2);
	case 2:
		return ver0 - 1;
	case 3:
		return EXT_MAX + 1 + below(r, 2 * pg);
	case 4:
		return pct(r, 20) ? rnd(r) : huge[below(r, ARRAY_SIZE(huge))];
	case 5:
	case 6:
		/* Larger, with a byte the module does not know set. */
		size = ks + 1 + below(r, EXT_MAX - ks);
		*tail_nz = 1 + (pct(r, 30) ? size - 1 : pct(r, 30) ? ks : ks + below(r, size - ks));
		return size;
	case 7:
		return ks + 1 + below(r, EXT_MAX - ks);
	case 8:
		return pct(r, 50) || pg > EXT_MAX ? EXT_MAX : pg;
	case 9:
		return ver0 < ks ? ver0 + below(r, ks - ver0) : ks;
	case 10:
		return pg + 1;
	default:
		return pct(r, 75) ? ks : ver0;
	}
}

static __u64 gen_timeout(struct rng *r, int hostile, int race)
{
	if (hostile && pct(r, 20)) {
		switch (below(r, 4)) {
		case 0:
			return TIMED_FREEZE_TIMEOUT_MAX_NS + 1;
		case 1:
			return ~0ULL;
		case 2:
			return TIMED_FREEZE_TIMEOUT_MAX_NS + 1 + below(r, 1ULL << 40);
		default:
			return rnd(r) | (1ULL << 62);
		}
	}
	switch (below(r, 12)) {
	case 0:
		return 0;
	case 1:
		return 1;
	case 2:
		return below(r, 1000);
	case 3:
		return below(r, NSEC_PER_MSEC);
	case 4:
		return NSEC_PER_MSEC + below(r, 20 * NSEC_PER_MSEC);
	case 5:
		return race ? RACE_TIMEOUT_NS : TIMED_FREEZE_TIMEOUT_MAX_NS;
	case 6:
		return race ? below(r, RACE_TIMEOUT_NS) :
		       SURE_TIMEOUT_NS + below(r, TIMED_FREEZE_TIMEOUT_MAX_NS - SURE_TIMEOUT_NS);
	default:
		return race ? below(r, RACE_TIMEOUT_NS) : 5 * NSEC_PER_SEC;
	}
}

static __u32 gen_retries(struct rng *r, int hostile, __u64 timeout, int race)
{
	if (hostile && pct(r, 15)) {
		switch (below(r, 4)) {
		case 0:
			return TIMED_FREEZE_RETRIES_MAX + 1;
		case 1:
			return ~0U;
		case 2:
			return TIMED_FREEZE_RETRIES_MAX + 1 + below(r, 1U << 30);
		default:
			/* Retries with a timeout of 0. */
			return timeout ? TIMED_FREEZE_RETRIES_MAX + 1 : 1 + below(r, 16);
		}
	}
	if (!timeout)
		return 0;
	/* Many attempts cost real time only when a deadline can pass. */
	if (!race && pct(r, 5) && (timeout >= SURE_TIMEOUT_NS || pct(r, 20)))
		return TIMED_FREEZE_RETRIES_MAX;
	if (pct(r, 20))
		return 1 + below(r, 2);
	return 0;
}

static __u64 gen_deadline(struct rng *r, int hostile, __u64 timeout, __u32 retries)
{
	if (hostile && pct(r, 12)) {
		switch (below(r, 4)) {
		case 0:
			return TIMED_FREEZE_DEADLINE_MAX_NS + 1 + below(r, 1ULL << 40);
		case 1:
			return ~0ULL;
		case 2:
			/* No room for one attempt (with a timeout of 0: any). */
			return timeout ? timeout - 1 : 1 + below(r, 1ULL << 30);
		default:
			return rnd(r) | (1ULL << 62);
		}
	}
	if (!timeout || timeout > TIMED_FREEZE_TIMEOUT_MAX_NS ||
	    retries > TIMED_FREEZE_RETRIES_MAX || pct(r, 70))
		return 0;
	return timeout + below(r, (retries + 1ULL) * timeout);
}

static __u64 gen_flags(struct rng *r, int hostile, __u64 valid)
{
	if (hostile && pct(r, 12)) {
		switch (below(r, 3)) {
		case 0:
			return (1ULL << (2 + below(r, 62))) | (rnd(r) & valid);
		case 1:
			return rnd(r);
		default:
			/* EXPEDITED is a freeze flag only; OWNED|EXPEDITED+1... */
			return valid == TIMED_FREEZE_THAW_FLAGS ? TIMED_FREEZE_EXPEDITED :
			       valid + 1;
		}
	}
	return rnd(r) & valid;
}

static __u32 gen_reserved(struct rng *r, int hostile)
{
	if (hostile && pct(r, 6))
		return pct(r, 50) ? 1 : (__u32)rnd(r) | 1;
	return 0;
}

static int gen_place(struct rng *r, int hostile)
{
	if (!hostile || pct(r, 85))
		return PL_OK;
	return PL_NULL + below(r, PL_RWRO);
}

/* For PL_END and PL_RWRO: the bytes before the page that ends the struct. */
static size_t gen_hint(struct rng *r, __u64 size, size_t ks)
{
	size_t s = min_u64(size, EXT_MAX + 64);

	switch (below(r, 7)) {
	case 0:
		return below(r, 9);
	case 1:
		return s ? s - 1 : 0;
	case 2:
		return s;
	case 3:
		return min_u64(s, ks) ? min_u64(s, ks) - 1 : 0;
	case 4:
		return min_u64(s, ks);
	case 5:
		return 16 + below(r, 48);
	default:
		return below(r, s + 16);
	}
}

/* FORCE_THAW's id: live, stale, or anything. */
static __u64 gen_id(struct fuzz *f, struct rng *r)
{
	struct model *m = &f->m;

	if (f->race) {
		if (pct(r, 70))
			return __atomic_load_n(&f->seen_ids[below(r, ARRAY_SIZE(f->seen_ids))],
					       __ATOMIC_RELAXED);
		return pct(r, 50) ? rnd(r) : below(r, 1000);
	}
	switch (below(r, 8)) {
	case 0:
		return 0;
	case 1:
		return ~0ULL;
	case 2:
		return rnd(r);
	case 3:
		return m->nstale ? m->stale[below(r, m->nstale)] : 1;
	case 4:
		return m->st[below(r, f->nfs)].owned_id + 1;
	default:
		for (int i = 0; i < f->nfs; i++)
			if (m->st[i].owner >= 0 && m->st[i].owned_id && pct(r, 70))
				return m->st[i].owned_id;
		return 1 + below(r, 1000);
	}
}

static void gen_list(struct fuzz *f, struct rng *r, struct call *c, int hostile)
{
	static const __u32 counts[] = { 0, 1, 2, 3, 4, 100, ~0U };

	c->esize = sizeof(struct timed_freeze_owned);
	if (hostile && pct(r, 15)) {
		static const __u32 bad[] = { 0, 1, TIMED_FREEZE_OWNED_SIZE_VER0 - 1,
					     EXT_MAX + 1, ~0U };

		c->esize = pct(r, 80) ? bad[below(r, ARRAY_SIZE(bad))] : (__u32)rnd(r);
	} else if (pct(r, 30)) {
		c->esize = pct(r, 30) ? EXT_MAX :
			   TIMED_FREEZE_OWNED_SIZE_VER0 + below(r, EXT_MAX - 47);
	}
	c->count = pct(r, 90) ? counts[below(r, ARRAY_SIZE(counts))] : (__u32)rnd(r);
	if (!hostile)
		c->count = 4;
	c->eplace = gen_place(r, hostile);
	c->ehint = below(r, 3 * (size_t)min_u64(c->esize, EXT_MAX) + 8);
	c->entries = 0;		/* set when placed */
}

/*
 * The inputs of a call to @op; @hostile: any field may be bad, else all
 * are good (the caller picks the fd and flags it wants).
 */
static void gen_call(struct fuzz *f, struct rng *r, struct call *c, int op, int hostile)
{
	memset(c, 0, offsetof(struct call, img));
	c->op = op;
	c->cmd = real_cmd(op);
	c->dev = f->race || pct(r, 85) ? 0 : 1;
	c->size = hostile ? gen_size(r, op, f->pg, &c->tail_nz) : ksize_of(op);
	c->place = gen_place(r, hostile);
	c->hint = gen_hint(r, c->size, ksize_of(op));
	c->reserved = gen_reserved(r, hostile);
	switch (op) {
	case OP_FREEZE:
		c->flags = gen_flags(r, hostile, TIMED_FREEZE_FREEZE_FLAGS);
		c->timeout = gen_timeout(r, hostile, f->race);
		c->retries = gen_retries(r, hostile, c->timeout, f->race);
		c->deadline = gen_deadline(r, hostile, c->timeout, c->retries);
		pick_fd(f, r, &c->fd);
		break;
	case OP_THAW:
		c->flags = gen_flags(r, hostile, TIMED_FREEZE_THAW_FLAGS);
		pick_fd(f, r, &c->fd);
		break;
	case OP_LIST:
		gen_list(f, r, c, hostile);
		break;
	case OP_FORCE_THAW:
		c->id = gen_id(f, r);
		c->flags = hostile && pct(r, 10) ? 1ULL << below(r, 64) : 0;
		break;
	}
}

/* Fill @c->img from the fields; junk in the out fields. */
static void build(struct call *c, struct rng *r)
{
	size_t ks = ksize_of(c->op);

	memset(c->img, 0, sizeof(c->img));
	switch (c->op) {
	case OP_FREEZE: {
		struct timed_freeze_args a = {
			.size = c->size, .flags = c->flags, .timeout_ns = c->timeout,
			.fd = c->fd.fd, .retries = c->retries, .attempts = (__u32)rnd(r),
			.timed_out_level = (__u32)rnd(r), .elapsed_ns = rnd(r),
			.writers_inside = rnd(r), .gave_up = (__u32)rnd(r),
			.__reserved = c->reserved, .deadline_ns = c->deadline,
			.blocked_ns = rnd(r),
		};

		memcpy(c->img, &a, sizeof(a));
		break;
	}
	case OP_THAW: {
		struct timed_thaw_args a = {
			.size = c->size, .flags = c->flags, .fd = c->fd.fd,
			.__reserved = c->reserved,
		};

		memcpy(c->img, &a, sizeof(a));
		break;
	}
	case OP_LIST: {
		struct timed_freeze_list_args a = {
			.size = c->size, .entries = c->entries, .entry_size = c->esize,
			.count = c->count, .total = (__u32)rnd(r), .__reserved = c->reserved,
		};

		memcpy(c->img, &a, sizeof(a));
		break;
	}
	case OP_FORCE_THAW: {
		struct timed_freeze_force_thaw_args a = {
			.size = c->size, .id = c->id, .flags = c->flags,
		};

		memcpy(c->img, &a, sizeof(a));
		break;
	}
	}
	c->len = ks;
	if (c->size > ks && c->size <= EXT_MAX) {
		c->len = c->size;
		if (c->tail_nz)
			c->img[c->tail_nz - 1] = 1 + below(r, 255);
	}
}

/* A racing thread. */
struct worker {
	struct fuzz *f;
	struct rng r;
	struct arena a, ea;
	pthread_t t;
	unsigned char *flip;	/* a page the flipper makes read-only and back */
	pthread_mutex_t flip_lock;
};

static void flip_write(struct worker *w, struct call *c)
{
	pthread_mutex_lock(&w->flip_lock);
	mprotect(w->flip, w->a.pg, PROT_READ | PROT_WRITE);
	memcpy(w->flip, c->img, min_u64(c->len, w->a.pg));
	pthread_mutex_unlock(&w->flip_lock);
	c->p.place = PL_FLIP;
	c->p.ptr = w->flip;
	c->p.avail = w->a.pg;
	c->p.wavail = w->a.pg;
}

/* Build the struct and put it (and LIST's entries) where the call says. */
static void finalize(struct fuzz *f, struct arena *a, struct arena *ea, struct rng *r,
		     struct call *c)
{
	if (c->op == OP_LIST) {
		arena_place(ea, r, c->eplace, c->ehint, NULL, 0, &c->ep);
		c->entries = (unsigned long)c->ep.ptr;
		if (c->eplace != PL_OK && pct(r, 10)) {
			/* Some address that is surely not ours. */
			c->entries = rnd(r) | (1ULL << 63);
			c->ep.ptr = NULL;
			c->ep.avail = 0;
			c->ep.wavail = 0;
		}
	}
	build(c, r);
	if (c->place == PL_FLIP) {
		struct worker *w = &f->workers[c->flip];

		flip_write(w, c);
		return;
	}
	arena_place(a, r, c->place, c->hint, c->img, c->len, &c->p);
}

/* --- what the UAPI says a call gives ------------------------------------- */

/*
 * How the module reads an extensible struct (copy_struct_from_user()):
 * returns 1 with @e set when that decides the call, else 0 with the
 * struct as the module sees it in @known (@ks bytes).
 */
static int expect_read(const struct call *c, struct expect *e, void *known)
{
	__u64 ver0 = ver0_of(c->op), ks = ksize_of(c->op);
	size_t n, end;
	int nz = 0;

	if (c->p.avail < sizeof(__u64))
		return ex_one(e, EFAULT);
	if (c->size < ver0)
		return ex_one(e, EINVAL);
	if (c->size > EXT_MAX)
		return ex_one(e, E2BIG);
	n = min_u64(c->size, ks);
	if (c->p.avail < n)
		return ex_one(e, EFAULT);
	memset(known, 0, ks);
	memcpy(known, c->img, n);
	if (c->size <= ks)
		return 0;
	end = min_u64(c->size, c->p.avail);
	for (size_t i = ks; i < end; i++)
		nz |= c->img[i];
	if (c->size > c->p.avail) {
		/* Which comes first depends on how the tail is read. */
		ex_one(e, EFAULT);
		if (nz)
			ex_add(e, E2BIG);
		return 1;
	}
	return nz ? ex_one(e, E2BIG) : 0;
}

static void expect_freeze(struct fuzz *f, const struct call *c, struct expect *e,
			  struct effect *eff)
{
	const struct model *m = &f->m;
	struct timed_freeze_args a;
	int owned, busy;

	if (expect_read(c, e, &a))
		return;
	if ((a.flags & ~TIMED_FREEZE_FREEZE_FLAGS) || a.__reserved)
		return (void)ex_one(e, EINVAL);
	if (a.timeout_ns > TIMED_FREEZE_TIMEOUT_MAX_NS || a.retries > TIMED_FREEZE_RETRIES_MAX)
		return (void)ex_one(e, EINVAL);
	if (!a.timeout_ns && (a.retries || a.deadline_ns))
		return (void)ex_one(e, EINVAL);
	if (a.deadline_ns &&
	    (a.deadline_ns < a.timeout_ns || a.deadline_ns > TIMED_FREEZE_DEADLINE_MAX_NS))
		return (void)ex_one(e, EINVAL);
	if (c->fd.cls == FD_BAD)
		return (void)ex_one(e, EBADF);
	/* ioctl_fsfreeze()'s checks in its order: permission, then support. */
	if (f->unpriv)
		return (void)ex_one(e, EPERM);
	if (c->fd.cls == FD_NOFREEZE)
		return (void)ex_one(e, EOPNOTSUPP);
	/* Written once before the freeze: a bad address fails first. */
	if (c->p.wavail < min_u64(c->size, sizeof(a)))
		return (void)ex_one(e, EFAULT);
	owned = !!(a.flags & TIMED_FREEZE_OWNED);
	eff->kind = owned ? EFF_FREEZE_OWNED : EFF_FREEZE_U;
	eff->fs = c->fd.fs;
	eff->dev = c->dev;
	if (f->race) {
		ex_add(e, 0);
		ex_add(e, EBUSY);
		ex_add(e, ETIMEDOUT);
		if (c->place == PL_FLIP)
			ex_add(e, EFAULT);
		return;
	}
	busy = owned ? m->st[c->fd.fs].owner >= 0 : m->st[c->fd.fs].ucount;
	ex_add(e, busy ? EBUSY : 0);
	/* A deadline that can pass on an idle filesystem: it may. */
	if (a.timeout_ns < SURE_TIMEOUT_NS)
		ex_add(e, ETIMEDOUT);
}

static void expect_thaw(struct fuzz *f, const struct call *c, struct expect *e,
			struct effect *eff)
{
	const struct model *m = &f->m;
	struct timed_thaw_args a;
	int ok;

	if (expect_read(c, e, &a))
		return;
	if ((a.flags & ~TIMED_FREEZE_THAW_FLAGS) || a.__reserved)
		return (void)ex_one(e, EINVAL);
	if (c->fd.cls == FD_BAD)
		return (void)ex_one(e, EBADF);
	if (f->unpriv)
		return (void)ex_one(e, EPERM);
	/* FITHAW of what cannot be frozen: not frozen. */
	if (c->fd.cls == FD_NOFREEZE)
		return (void)ex_one(e, EINVAL);
	eff->kind = a.flags & TIMED_FREEZE_OWNED ? EFF_THAW_OWNED : EFF_THAW_U;
	eff->fs = c->fd.fs;
	eff->dev = c->dev;
	if (f->race) {
		ex_add(e, 0);
		ex_add(e, EINVAL);
		return;
	}
	if (eff->kind == EFF_THAW_OWNED)
		ok = m->st[c->fd.fs].owner == c->dev;
	else
		ok = m->st[c->fd.fs].ucount;
	ex_add(e, ok ? 0 : EINVAL);
}

static int owned_total(const struct fuzz *f)
{
	int n = 0;

	for (int i = 0; i < f->nfs; i++)
		n += f->m.st[i].owner >= 0;
	return n;
}

static void expect_list(struct fuzz *f, const struct call *c, struct expect *e)
{
	struct timed_freeze_list_args a;
	__u64 n;

	/* The administrator's view: the permission comes first. */
	if (f->unpriv)
		return (void)ex_one(e, EPERM);
	if (expect_read(c, e, &a))
		return;
	if (a.__reserved || a.entry_size < TIMED_FREEZE_OWNED_SIZE_VER0 ||
	    a.entry_size > EXT_MAX)
		return (void)ex_one(e, EINVAL);
	if (f->race) {
		/* At most one OWNED freeze a filesystem. */
		n = min_u64(a.count, f->nfs);
		if (n && c->ep.wavail < n * a.entry_size)
			ex_add(e, EFAULT);
		if (c->p.wavail < sizeof(a))
			return (void)ex_add(e, EFAULT);
		ex_add(e, 0);
		return;
	}
	n = min_u64(a.count, owned_total(f));
	if (n && c->ep.wavail < n * a.entry_size)
		return (void)ex_one(e, EFAULT);
	if (c->p.wavail < sizeof(a))
		return (void)ex_one(e, EFAULT);
	ex_one(e, 0);
}

static void expect_force_thaw(struct fuzz *f, const struct call *c, struct expect *e,
			      struct effect *eff)
{
	struct timed_freeze_force_thaw_args a;

	if (f->unpriv)
		return (void)ex_one(e, EPERM);
	if (expect_read(c, e, &a))
		return;
	if (a.flags)
		return (void)ex_one(e, EINVAL);
	if (f->race) {
		ex_add(e, 0);
		ex_add(e, ENOENT);
		return;
	}
	for (int i = 0; i < f->nfs; i++) {
		if (f->m.st[i].owner >= 0 && f->m.st[i].owned_id == a.id) {
			eff->kind = EFF_THAW_OWNED;
			eff->fs = i;
			eff->dev = f->m.st[i].owner;
			return (void)ex_one(e, 0);
		}
	}
	ex_one(e, ENOENT);
}

static void expect_call(struct fuzz *f, const struct call *c, struct expect *e,
			struct effect *eff)
{
	e->n = 0;
	eff->kind = EFF_NONE;
	switch (c->op) {
	case OP_FREEZE:
		expect_freeze(f, c, e, eff);
		break;
	case OP_THAW:
		expect_thaw(f, c, e, eff);
		break;
	case OP_LIST:
		expect_list(f, c, e);
		break;
	case OP_FORCE_THAW:
		expect_force_thaw(f, c, e, eff);
		break;
	default:
		ex_one(e, ENOTTY);
		break;
	}
	/* Racing, the shared file descriptor may be closed for a moment. */
	if (f->race)
		ex_add(e, EBADF);
}

/* How long a call may take. */
static unsigned long long bound_ns(const struct fuzz *f, const struct call *c)
{
	unsigned long long b = (f->race ? 10 : 5) * NSEC_PER_SEC, t;

	if (c->op != OP_FREEZE || c->timeout > TIMED_FREEZE_TIMEOUT_MAX_NS ||
	    c->retries > TIMED_FREEZE_RETRIES_MAX)
		return b;
	/*
	 * Alone on an idle filesystem a freeze never waits for its deadline
	 * but when the deadline is so short that the sync cannot make it.
	 */
	t = f->race ? c->timeout : min_u64(c->timeout, NSEC_PER_SEC);
	t = (c->retries + 1ULL) * (t + 20 * NSEC_PER_MSEC);
	/* Racing writers may keep the pauses between attempts to their limit. */
	if (f->race && c->deadline <= TIMED_FREEZE_DEADLINE_MAX_NS && c->deadline > t)
		t = c->deadline;
	return b + t;
}

/* --- calls and their checks ---------------------------------------------- */

static void describe(const struct fuzz *f, const struct call *c, char *buf, size_t len)
{
	size_t at = 0;

#define ADD(...) (at += snprintf(buf + at, at < len ? len - at : 0, __VA_ARGS__))
	ADD("%s cmd %#x%s", op_names[c->op], c->cmd, c->odd ? " (odd encoding)" : "");
	if (c->op <= OP_BADCMD)
		ADD(" on device file %d", c->dev);
	if (c->op < OP_BADCMD) {
		ADD(", struct at %s", place_names[c->place]);
		if (c->place == PL_END || c->place == PL_RWRO)
			ADD(" (%zu bytes before)", c->hint);
		ADD(", size %llu", (unsigned long long)c->size);
		if (c->tail_nz)
			ADD(" (byte %zu set)", c->tail_nz - 1);
		if (c->reserved)
			ADD(", reserved %#x", c->reserved);
	}
	if (c->op == OP_FREEZE || c->op == OP_THAW || c->op == OP_FORCE_THAW)
		ADD(", flags %#llx", (unsigned long long)c->flags);
	if (c->op == OP_FREEZE)
		ADD(", timeout_ns %llu, retries %u, deadline_ns %llu",
		    (unsigned long long)c->timeout, c->retries, (unsigned long long)c->deadline);
	if (c->fd.what)
		ADD(", fd %d (%s)", c->fd.fd, c->fd.what);
	if (c->op == OP_LIST)
		ADD(", entries %#llx (%s), entry_size %u, count %u",
		    (unsigned long long)c->entries, place_names[c->eplace], c->esize, c->count);
	if (c->op == OP_FORCE_THAW)
		ADD(", id %llu", (unsigned long long)c->id);
	if (c->op == OP_BADCMD)
		ADD(", arg %#lx", c->arg);
	for (int i = 0; i < f->nfs && !f->race; i++) {
		const struct fs_state *st = &f->m.st[i];

		ADD("; %s: %s", f->name[i],
		    st->ucount ? "frozen" : st->owner < 0 ? "unfrozen" : "");
		if (st->owner >= 0)
			ADD("%sowned by file %d", st->ucount ? ", " : "", st->owner);
	}
#undef ADD
}

static __printf(3, 4) void fail(struct fuzz *f, const struct call *c, const char *fmt, ...)
{
	long n = __atomic_add_fetch(&f->failures, 1, __ATOMIC_SEQ_CST);
	char what[200], desc[640];
	va_list ap;

	if (n > REPORT_MAX) {
		if (n == REPORT_MAX + 1)
			say(f, "more failures: not told\n");
		return;
	}
	va_start(ap, fmt);
	vsnprintf(what, sizeof(what), fmt, ap);
	va_end(ap);
	describe(f, c, desc, sizeof(desc));
	say(f, "FAIL at call %ld: %s\n#   the call: %s\n",
	    __atomic_load_n(&f->calls, __ATOMIC_RELAXED), what, desc);
}

/* Count a result; whether it was one of @e, in time. */
static int tally(struct fuzz *f, const struct call *c, int got, const struct expect *e,
		 unsigned long long ns, unsigned long long bound)
{
	char want[64];
	int ok = 1;

	__atomic_add_fetch(&f->calls, 1, __ATOMIC_RELAXED);
	__atomic_add_fetch(&f->hist[c->op][got < NERR ? got : NERR - 1], 1, __ATOMIC_RELAXED);
	if (ns > __atomic_load_n(&f->max_ns[c->op], __ATOMIC_RELAXED))
		__atomic_store_n(&f->max_ns[c->op], ns, __ATOMIC_RELAXED);
	if (!ex_has(e, got)) {
		ex_str(e, want, sizeof(want));
		fail(f, c, "got %s (%d), want %s", errname(got), got, want);
		ok = 0;
	}
	if (ns > bound) {
		fail(f, c, "took %llu ms, bound %llu ms", ns / NSEC_PER_MSEC,
		     bound / NSEC_PER_MSEC);
		ok = 0;
	}
	return ok;
}

/* The out fields of a FREEZE that was tried: consistent with its result. */
static int check_out(const struct call *c, int got, unsigned long long wall, char *why,
		     size_t len)
{
	size_t n = min_u64(c->size, sizeof(struct timed_freeze_args));
	__u32 tries = c->retries + 1;
	struct timed_freeze_args o;

	memset(&o, 0, sizeof(o));
	memcpy(&o, c->p.ptr, n);
	if (o.attempts < 1 || o.attempts > tries)
		return snprintf(why, len, "attempts %u, at most %u", o.attempts, tries);
	if (o.timed_out_level > TIMED_FREEZE_WAIT_LEVEL_FS)
		return snprintf(why, len, "timed_out_level %u", o.timed_out_level);
	if (!o.timed_out_level && o.writers_inside)
		return snprintf(why, len, "writers_inside %llu with no level timed out",
				(unsigned long long)o.writers_inside);
	if (o.elapsed_ns > wall)
		return snprintf(why, len, "elapsed_ns %llu, longer than the call (%llu)",
				(unsigned long long)o.elapsed_ns, wall);
	if (!got && o.attempts == 1 && o.timed_out_level)
		return snprintf(why, len, "succeeded at once, yet level %u timed out",
				o.timed_out_level);
	if (n <= offsetof(struct timed_freeze_args, gave_up))
		return 0;
	if (o.gave_up > TIMED_FREEZE_WAIT_COMMIT)
		return snprintf(why, len, "gave_up %u", o.gave_up);
	if (o.timed_out_level && o.gave_up != o.timed_out_level)
		return snprintf(why, len, "gave_up %u, timed_out_level %u", o.gave_up,
				o.timed_out_level);
	if ((got == ETIMEDOUT || o.attempts > 1) && !o.gave_up)
		return snprintf(why, len, "%u attempt(s), %s, and gave_up 0", o.attempts,
				errname(got));
	if (!got && o.attempts == 1 && o.gave_up)
		return snprintf(why, len, "succeeded at once, yet gave_up %u", o.gave_up);
	if (n < sizeof(o))
		return 0;
	if (o.blocked_ns > o.elapsed_ns)
		return snprintf(why, len, "blocked_ns %llu, longer than elapsed_ns %llu",
				(unsigned long long)o.blocked_ns, (unsigned long long)o.elapsed_ns);
	return 0;
}

static int fs_of_dev(const struct fuzz *f, __u64 dev)
{
	for (int i = 0; i < f->nfs; i++)
		if (dev == f->st_dev[i])
			return i;
	return -1;
}

static void seen_id(struct fuzz *f, __u64 id)
{
	unsigned int i = __atomic_fetch_add(&f->seen_next, 1, __ATOMIC_RELAXED);

	__atomic_store_n(&f->seen_ids[i % ARRAY_SIZE(f->seen_ids)], id, __ATOMIC_RELAXED);
}

/* What a successful LIST wrote: the model's OWNED freezes (and their ids). */
static int check_list(struct fuzz *f, const struct call *c, char *why, size_t len)
{
	struct timed_freeze_list_args a;
	unsigned int n, want = owned_total(f);
	__u64 ids[MAX_FS] = {};
	int fs;

	memcpy(&a, c->p.ptr, sizeof(a));
	if (!f->race && a.total != want)
		return snprintf(why, len, "total %u, %u OWNED freeze(s) held", a.total, want);
	if (a.total > (unsigned int)f->nfs)
		return snprintf(why, len, "total %u with %d filesystems", a.total, f->nfs);
	n = a.total < c->count ? a.total : c->count;
	for (unsigned int i = 0; i < n; i++) {
		const unsigned char *e = c->ep.ptr + (size_t)i * c->esize;
		struct timed_freeze_owned o;

		memcpy(&o, e, sizeof(o));
		for (size_t k = sizeof(o); k < c->esize; k++)
			if (e[k])
				return snprintf(why, len, "entry %u: byte %zu is %#x", i, k,
						e[k]);
		fs = fs_of_dev(f, o.dev);
		if (fs < 0)
			return snprintf(why, len, "entry %u: dev %#llx is none of ours", i,
					(unsigned long long)o.dev);
		/* Racing, children that share the file make freezes and die. */
		if ((f->race ? o.pid <= 0 : o.pid != getpid()) ||
		    (o.flags & ~(f->race ? TIMED_FREEZE_OWNED_EXITED : 0)) ||
		    (o.flags && o.pid == getpid()) ||
		    strncmp(o.comm, program_invocation_short_name, sizeof(o.comm) - 1) ||
		    o.age_ns > tf_now_ns() - f->t_start)
			return snprintf(why, len, "entry %u: pid %d flags %#x comm %.16s age %llu",
					i, o.pid, o.flags, o.comm, (unsigned long long)o.age_ns);
		if (ids[fs])
			return snprintf(why, len, "two OWNED freezes of %s", f->name[fs]);
		ids[fs] = o.id;
		if (f->race) {
			seen_id(f, o.id);
			continue;
		}
		if (f->m.st[fs].owner < 0)
			return snprintf(why, len, "entry %u: %s is not owned", i, f->name[fs]);
		if (!f->m.st[fs].owned_id)
			f->m.st[fs].owned_id = o.id;
		else if (f->m.st[fs].owned_id != o.id)
			return snprintf(why, len, "entry %u: id %llu, was %llu", i,
					(unsigned long long)o.id,
					(unsigned long long)f->m.st[fs].owned_id);
	}
	return 0;
}

static void stale_id(struct model *m, __u64 id)
{
	if (!id)
		return;
	m->stale[m->stale_next++ % ARRAY_SIZE(m->stale)] = id;
	if (m->nstale < (int)ARRAY_SIZE(m->stale))
		m->nstale++;
}

static void apply(struct fuzz *f, const struct effect *eff)
{
	struct fs_state *st = &f->m.st[eff->fs];

	switch (eff->kind) {
	case EFF_FREEZE_U:
		st->ucount = 1;
		break;
	case EFF_FREEZE_OWNED:
		st->owner = eff->dev;
		st->owned_id = 0;
		break;
	case EFF_THAW_U:
		st->ucount = 0;
		break;
	case EFF_THAW_OWNED:
		stale_id(&f->m, st->owned_id);
		st->owner = -1;
		st->owned_id = 0;
		break;
	}
	if (eff->kind == EFF_FREEZE_U || eff->kind == EFF_FREEZE_OWNED)
		st->since = f->calls;
}

static void resync(struct fuzz *f);

/*
 * Make the call @c (built and placed) on device file @devfd and check
 * everything about it; its errno (0: success).  @eff: what it did.
 */
static int run_call(struct fuzz *f, struct arena *a, struct arena *ea, struct call *c,
		    int devfd, struct effect *eff)
{
	unsigned long long t0, ns;
	char why[256];
	struct expect e;
	size_t lo = 0, hi = 0, lo2 = 0, hi2 = 0;
	long ret, stray;
	int got, tried, ok;

	expect_call(f, c, &e, eff);
	t0 = tf_now_ns();
	ret = ioctl(devfd, c->cmd, c->op == OP_BADCMD ? c->arg : (unsigned long)c->p.ptr);
	got = ret < 0 ? errno : 0;
	ns = tf_now_ns() - t0;
	if (c->place != PL_FLIP)
		arena_restore(a, &c->p);
	if (c->op == OP_LIST)
		arena_restore(ea, &c->ep);
	if (ret > 0)
		fail(f, c, "returned %ld", ret);
	ok = tally(f, c, got, &e, ns, bound_ns(f, c)) && ret <= 0;

	/* Nothing written but the out fields, and only by a call that got that far. */
	tried = c->op == OP_FREEZE && (!got || got == EBUSY || got == ETIMEDOUT);
	if (tried) {
		lo = offsetof(struct timed_freeze_args, attempts);
		hi = min_u64(c->size, offsetof(struct timed_freeze_args, __reserved));
		lo2 = offsetof(struct timed_freeze_args, blocked_ns);
		hi2 = min_u64(c->size, sizeof(struct timed_freeze_args));
	} else if (c->op == OP_LIST) {
		lo = offsetof(struct timed_freeze_list_args, total);
		hi = lo + sizeof(__u32);
	}
	if (c->place != PL_FLIP) {
		stray = arena_stray(a, &c->p, lo, hi, lo2, hi2);
		if (stray >= 0)
			fail(f, c, "%s: wrote byte %ld of the arena (struct at %ld), ok: [%zu,%zu)",
			     errname(got), stray, c->p.ptr ? (long)(c->p.ptr - a->base) : -1L,
			     lo, hi);
	}
	if (c->op == OP_LIST && got != EFAULT) {
		hi = got ? 0 : (size_t)min_u64(c->count, f->nfs) * c->esize;
		stray = arena_stray(ea, &c->ep, 0, hi, 0, 0);
		if (stray >= 0)
			fail(f, c, "%s: wrote byte %ld of the entries' arena, allowed [0, %zu)",
			     errname(got), stray, hi);
	}
	if (tried && c->place != PL_FLIP && check_out(c, got, ns, why, sizeof(why)))
		fail(f, c, "%s: out fields: %s", errname(got), why);
	if (c->op == OP_LIST && !got && check_list(f, c, why, sizeof(why))) {
		fail(f, c, "%s", why);
		ok = 0;
	}
	if (f->race)
		return got;
	/* A result the model did not foresee: start again from a known state. */
	if (!ok)
		resync(f);
	else if (!got)
		apply(f, eff);
	return got;
}

/* --- one thread, with the model ------------------------------------------ */

/* Back to a known state: nothing frozen, both device files new. */
static void resync(struct fuzz *f)
{
	for (int i = 0; i < NDEV; i++) {
		close(f->dev[i]);
		f->dev[i] = tf_open_dev();
	}
	for (int i = 0; i < f->nfs; i++) {
		while (!ioctl(f->fs[i].mfd, FITHAW, 0))
			;
		f->m.st[i].ucount = 0;
		f->m.st[i].owner = -1;
		f->m.st[i].owned_id = 0;
	}
	if (f->failures <= REPORT_MAX)
		say(f, "the model starts again from nothing frozen\n");
}

/* FIFREEZE or FITHAW from the side, on a file of @fs. */
static int side_op(struct fuzz *f, struct rng *r, int op, int fs)
{
	struct fs_state *st = &f->m.st[fs];
	unsigned long long t0, ns;
	struct expect e = {};
	struct call c;
	int got;

	memset(&c, 0, offsetof(struct call, img));
	c.op = op;
	c.cmd = op == OP_FIFREEZE ? FIFREEZE : FITHAW;
	pick_fs_fd(f, r, fs, &c.fd);
	if (f->unpriv) {
		ex_add(&e, EPERM);
	} else if (f->race) {
		ex_add(&e, 0);
		ex_add(&e, op == OP_FIFREEZE ? EBUSY : EINVAL);
	} else if (op == OP_FIFREEZE) {
		ex_add(&e, st->ucount ? EBUSY : 0);
	} else {
		ex_add(&e, st->ucount ? 0 : EINVAL);
	}
	t0 = tf_now_ns();
	got = ioctl(c.fd.fd, c.cmd, 0) ? errno : 0;
	ns = tf_now_ns() - t0;
	if (f->race)
		tally(f, &c, got, &e, ns, 10 * NSEC_PER_SEC);
	else if (!tally(f, &c, got, &e, ns, 5 * NSEC_PER_SEC))
		resync(f);
	else if (!got && op == OP_FIFREEZE)
		apply(f, &(struct effect){ .kind = EFF_FREEZE_U, .fs = fs });
	else if (!got)
		apply(f, &(struct effect){ .kind = EFF_THAW_U, .fs = fs });
	return got;
}

/* Close device file @i (thawing what it owns) and open it again. */
static void reopen(struct fuzz *f, int i)
{
	unsigned long long t0, ns;
	struct expect e = {};
	struct call c;
	int got;

	memset(&c, 0, offsetof(struct call, img));
	c.op = OP_REOPEN;
	c.dev = i;
	ex_add(&e, 0);
	t0 = tf_now_ns();
	got = close(f->dev[i]) ? errno : 0;
	ns = tf_now_ns() - t0;
	f->dev[i] = tf_open_dev();
	if (f->dev[i] < 0)
		got = errno;
	tally(f, &c, got, &e, ns, 5 * NSEC_PER_SEC);
	for (int k = 0; k < f->nfs; k++)
		if (f->m.st[k].owner == i)
			apply(f, &(struct effect){ .kind = EFF_THAW_OWNED, .fs = k });
}

/*
 * Build and place @c, and make the call on @devfd.  An unknown command
 * gets nothing, junk, or a good FREEZE struct as its argument.
 */
static int place_and_call(struct fuzz *f, struct arena *a, struct arena *ea, struct rng *r,
			  struct call *c, int devfd, struct effect *eff)
{
	if (c->op == OP_BADCMD) {
		c->op = OP_FREEZE;
		finalize(f, a, ea, r, c);
		c->op = OP_BADCMD;
		c->fd.what = NULL;
		c->arg = pct(r, 40) ? (unsigned long)c->p.ptr : pct(r, 50) ? 0 : rnd(r);
	} else {
		finalize(f, a, ea, r, c);
	}
	return run_call(f, a, ea, c, devfd, eff);
}

static int do_call(struct fuzz *f, struct rng *r, struct call *c, struct effect *eff)
{
	return place_and_call(f, &f->a, &f->ea, r, c, f->dev[c->dev], eff);
}

/* A LIST that shows every OWNED freeze: the model learns their ids. */
static void learn_ids(struct fuzz *f, struct rng *r)
{
	struct effect eff;
	struct call c;

	gen_call(f, r, &c, OP_LIST, 0);
	do_call(f, r, &c, &eff);
}

/* Thaw what holds @fs, by one of the ways its holder has. */
static void thaw_held(struct fuzz *f, struct rng *r, int fs)
{
	struct fs_state *st = &f->m.st[fs];
	struct effect eff;
	struct call c;

	if (st->owner >= 0) {
		int how = below(r, 3);

		if (how == 0 && st->owned_id) {
			gen_call(f, r, &c, OP_FORCE_THAW, 0);
			c.id = st->owned_id;
			do_call(f, r, &c, &eff);
		} else if (how < 2) {
			gen_call(f, r, &c, OP_THAW, 0);
			c.flags = TIMED_FREEZE_OWNED;
			c.dev = st->owner;
			pick_fs_fd(f, r, fs, &c.fd);
			do_call(f, r, &c, &eff);
		} else {
			reopen(f, st->owner);
		}
	}
	if (!st->ucount)
		return;
	if (pct(r, 50)) {
		side_op(f, r, OP_FITHAW, fs);
		return;
	}
	gen_call(f, r, &c, OP_THAW, 0);
	c.flags = 0;
	pick_fs_fd(f, r, fs, &c.fd);
	do_call(f, r, &c, &eff);
}

/* A random command number; the call it makes when it is one of ours. */
static void gen_cmd(struct fuzz *f, struct rng *r, struct call *c, int hostile)
{
	static const unsigned int types[] = { TIMED_FREEZE_IOC_MAGIC - 1,
					      TIMED_FREEZE_IOC_MAGIC + 1, 0, 'X' };
	unsigned int cmd, nr, type;
	int k;

	do {
		k = below(r, 10);
		nr = 1 + below(r, 4);
		if (k < 3)
			cmd = (unsigned int)rnd(r);
		else if (k < 6)
			cmd = _IOC(below(r, 4), TIMED_FREEZE_IOC_MAGIC,
				   pct(r, 30) ? 0 : 5 + below(r, 251), below(r, 1 << 14));
		else if (k < 9)
			cmd = _IOC(below(r, 4), TIMED_FREEZE_IOC_MAGIC, nr, below(r, 1 << 14));
		else
			cmd = (real_cmd(nr - 1) & ~(0xffU << _IOC_TYPESHIFT)) |
			      (types[below(r, ARRAY_SIZE(types))] << _IOC_TYPESHIFT);
	} while (vfs_cmd(cmd));
	type = _IOC_TYPE(cmd);
	nr = _IOC_NR(cmd);
	if (type == TIMED_FREEZE_IOC_MAGIC && nr >= 1 && nr <= 4) {
		gen_call(f, r, c, nr - 1, hostile);
		c->cmd = cmd;
		c->odd = cmd != real_cmd(nr - 1);
		__atomic_add_fetch(&f->odd_cmds, c->odd, __ATOMIC_RELAXED);
		return;
	}
	/* Not ours: ENOTTY, whatever the argument points to. */
	gen_call(f, r, c, OP_FREEZE, 0);
	c->op = OP_BADCMD;
	c->cmd = cmd;
}

static void one_step(struct fuzz *f, struct rng *r)
{
	int k = below(r, 100), fs = below(r, f->nfs), got;
	struct effect eff;
	struct call c;

	if (k < 30)
		gen_call(f, r, &c, OP_FREEZE, 1);
	else if (k < 48)
		gen_call(f, r, &c, OP_THAW, 1);
	else if (k < 60)
		gen_call(f, r, &c, OP_LIST, 1);
	else if (k < 70)
		gen_call(f, r, &c, OP_FORCE_THAW, 1);
	else if (k < 86)
		gen_cmd(f, r, &c, 1);
	else if (k < 92)
		return (void)side_op(f, r, OP_FIFREEZE, fs);
	else if (k < 98 || f->unpriv)
		return (void)side_op(f, r, OP_FITHAW, fs);
	else
		return reopen(f, below(r, NDEV));

	got = do_call(f, r, &c, &eff);
	if (got || (eff.kind != EFF_FREEZE_U && eff.kind != EFF_FREEZE_OWNED))
		return;
	if (eff.kind == EFF_FREEZE_OWNED)
		learn_ids(f, r);
	/* Most freezes are thawed at once; the others stay a while. */
	if (pct(r, 70))
		thaw_held(f, r, eff.fs);
}

#define HOLD_CALLS	12

static void run_one_thread(struct fuzz *f, struct rng *r)
{
	while (f->calls < f->limit) {
		one_step(f, r);
		/* Unprivileged, nothing changes. */
		for (int i = 0; i < f->nfs && !f->unpriv; i++) {
			struct fs_state *st = &f->m.st[i];

			if ((st->ucount || st->owner >= 0) && f->calls - st->since > HOLD_CALLS)
				thaw_held(f, r, i);
		}
	}
	for (int i = 0; i < f->nfs && !f->unpriv; i++)
		while (f->m.st[i].ucount || f->m.st[i].owner >= 0)
			thaw_held(f, r, i);
}

/* --- threads on one open file -------------------------------------------- */

static int stopping(struct fuzz *f)
{
	return __atomic_load_n(&f->stop, __ATOMIC_RELAXED);
}

static int race_call(struct worker *w, struct call *c, int devfd, struct effect *eff)
{
	return place_and_call(w->f, &w->a, &w->ea, &w->r, c, devfd, eff);
}

/*
 * A userspace freeze this thread made: thaw it (or find it thawed), once,
 * as every freezer here does, so that none is left when all are done.
 */
static void race_thaw_u(struct worker *w, int fs)
{
	struct fuzz *f = w->f;
	struct effect eff;
	struct call c;

	for (int i = 0; i < 100; i++) {
		if (pct(&w->r, 40)) {
			side_op(f, &w->r, OP_FITHAW, fs);
			return;
		}
		gen_call(f, &w->r, &c, OP_THAW, 0);
		c.flags = 0;
		pick_fs_fd(f, &w->r, fs, &c.fd);
		/* EBADF: the shared file was closed under us; this thaw did not happen. */
		if (race_call(w, &c, f->dev[0], &eff) != EBADF)
			return;
	}
}

static void *worker_main(void *arg)
{
	struct worker *w = arg;
	struct fuzz *f = w->f;
	struct rng *r = &w->r;
	struct effect eff;
	struct call c;
	int k, got;

	while (!stopping(f) && __atomic_load_n(&f->calls, __ATOMIC_RELAXED) < f->limit &&
	       __atomic_load_n(&f->failures, __ATOMIC_RELAXED) <= REPORT_MAX) {
		k = below(r, 100);
		if (k < 12) {
			gen_call(f, r, &c, OP_FREEZE, 0);
			pick_fs_fd(f, r, below(r, f->nfs), &c.fd);
			if (pct(r, 30)) {
				c.place = PL_FLIP;
				c.flip = w - f->workers;
			}
		} else if (k < 55) {
			k = below(r, 5);
			if (k == 4)
				gen_cmd(f, r, &c, 1);
			else
				gen_call(f, r, &c, k, 1);
		} else if (k < 67) {
			gen_call(f, r, &c, OP_LIST, 0);
		} else if (k < 77) {
			gen_call(f, r, &c, OP_FORCE_THAW, 0);
		} else if (k < 92) {
			gen_call(f, r, &c, OP_THAW, 0);
			pick_fs_fd(f, r, below(r, f->nfs), &c.fd);
		} else {
			side_op(f, r, OP_FITHAW, below(r, f->nfs));
			continue;
		}
		got = race_call(w, &c, f->dev[0], &eff);
		if (got)
			continue;
		if (eff.kind == EFF_FREEZE_U) {
			race_thaw_u(w, eff.fs);
		} else if (eff.kind == EFF_FREEZE_OWNED && pct(r, 50)) {
			gen_call(f, r, &c, OP_THAW, 0);
			c.flags = TIMED_FREEZE_OWNED;
			pick_fs_fd(f, r, eff.fs, &c.fd);
			race_call(w, &c, f->dev[0], &eff);
		}
	}
	return NULL;
}

/*
 * Somebody else on the same filesystems: stock FIFREEZE and FITHAW, and
 * OWNED freezes through a device file of its own.
 */
static void *side_main(void *arg)
{
	struct worker *w = arg;
	struct fuzz *f = w->f;
	struct rng *r = &w->r;
	struct effect eff;
	struct call c;

	while (!stopping(f)) {
		int fs = below(r, f->nfs);

		if (pct(r, 60)) {
			if (!side_op(f, r, OP_FIFREEZE, fs)) {
				usleep(500 + below(r, 3000));
				side_op(f, r, OP_FITHAW, fs);
			}
		} else {
			gen_call(f, r, &c, OP_FREEZE, 0);
			c.dev = 1;
			c.flags = TIMED_FREEZE_OWNED;
			c.timeout = 100 * NSEC_PER_MSEC;
			c.retries = 1;
			pick_fs_fd(f, r, fs, &c.fd);
			if (!race_call(w, &c, f->dev[1], &eff)) {
				usleep(500 + below(r, 3000));
				gen_call(f, r, &c, OP_THAW, 0);
				c.dev = 1;
				c.flags = TIMED_FREEZE_OWNED;
				pick_fs_fd(f, r, fs, &c.fd);
				race_call(w, &c, f->dev[1], &eff);
			}
		}
		usleep(500 + below(r, 3000));
	}
	return NULL;
}

/*
 * Close the shared device file under the others and open a new one at the
 * same number: mostly at once (dup2()), sometimes with a moment between
 * in which their calls say EBADF.  Closing the last reference thaws what
 * the old file owned.
 */
static void *reopen_main(void *arg)
{
	struct worker *w = arg;
	struct fuzz *f = w->f;
	struct rng *r = &w->r;
	int s = f->dev[0], nd, got;
	unsigned long long t0;
	struct expect e = {};
	struct call c;

	memset(&c, 0, offsetof(struct call, img));
	c.op = OP_REOPEN;
	ex_add(&e, 0);
	while (!stopping(f)) {
		usleep(2000 + below(r, 10000));
		t0 = tf_now_ns();
		if (pct(r, 85)) {
			nd = tf_open_dev();
			got = nd < 0 ? errno : dup2(nd, s) < 0 ? errno : 0;
		} else {
			got = close(s) ? errno : 0;
			usleep(below(r, 300));
			nd = tf_open_dev();
			if (nd < 0)
				got = errno;
			else if (nd != s && dup2(nd, s) < 0)
				got = errno;
		}
		if (nd >= 0 && nd != s)
			close(nd);
		tally(f, &c, got, &e, tf_now_ns() - t0, 10 * NSEC_PER_SEC);
	}
	return NULL;
}

/* Make the workers' flip pages read-only and writable again, and again. */
static void *flipper_main(void *arg)
{
	struct worker *w = arg;
	struct fuzz *f = w->f;
	int ro = 0;

	while (!stopping(f)) {
		ro = !ro;
		for (int i = 0; i < NWORKERS; i++) {
			struct worker *x = &f->workers[i];

			pthread_mutex_lock(&x->flip_lock);
			mprotect(x->flip, x->a.pg, ro ? PROT_READ : PROT_READ | PROT_WRITE);
			pthread_mutex_unlock(&x->flip_lock);
		}
		usleep(200 + below(&w->r, 2000));
	}
	return NULL;
}

/*
 * In a child process, on its copy of the shared file descriptor (the same
 * open file, until the parent replaces its own): OWNED freezes, thaws,
 * lists, until it is killed, in the middle of any of them.  Its freezes
 * stay with the file, made by a process that has exited, until somebody
 * thaws them through the file, forces them, or the file's last reference
 * goes.
 */
static void killer_child(struct worker *w)
{
	struct fuzz *f = w->f;
	struct rng *r = &w->r;
	struct effect eff;
	struct call c;

	for (;;) {
		int k = below(r, 100);

		if (k < 50) {
			gen_call(f, r, &c, OP_FREEZE, k < 10);
			/* Never a userspace freeze: nobody would thaw it. */
			c.flags |= TIMED_FREEZE_OWNED;
			if (k >= 10)
				pick_fs_fd(f, r, below(r, f->nfs), &c.fd);
		} else if (k < 70) {
			gen_call(f, r, &c, OP_THAW, 0);
			c.flags = TIMED_FREEZE_OWNED;
			pick_fs_fd(f, r, below(r, f->nfs), &c.fd);
		} else if (k < 85) {
			gen_call(f, r, &c, OP_LIST, 0);
		} else {
			gen_call(f, r, &c, OP_FORCE_THAW, 0);
		}
		race_call(w, &c, f->dev[0], &eff);
	}
}

static void *killer_main(void *arg)
{
	struct worker *w = arg;
	struct fuzz *f = w->f;
	unsigned long long t0;
	struct expect e = {};
	struct call c;
	pid_t pid;
	int got;

	memset(&c, 0, offsetof(struct call, img));
	c.op = OP_KILL;
	ex_add(&e, 0);
	while (!stopping(f)) {
		pid = fork();
		if (!pid) {
			w->r.s ^= (__u64)getpid() << 20;
			killer_child(w);
		}
		if (pid < 0) {
			tally(f, &c, errno, &e, 0, 0);
			break;
		}
		usleep(below(&w->r, 20000));
		t0 = tf_now_ns();
		kill(pid, SIGKILL);
		got = waitpid(pid, NULL, 0) == pid ? 0 : errno;
		tally(f, &c, got, &e, tf_now_ns() - t0, 10 * NSEC_PER_SEC);
	}
	return NULL;
}

enum { W_SIDE = NWORKERS, W_REOPEN, W_FLIPPER, W_KILLER, W_ALL };

static int run_threads(struct fuzz *f)
{
	static void *(*const fn[W_ALL - NWORKERS])(void *) = {
		side_main, reopen_main, flipper_main, killer_main,
	};
	struct worker *w = calloc(W_ALL, sizeof(*w));
	int i;

	if (!w)
		return -1;
	f->race = 1;
	f->workers = w;
	for (i = 0; i < W_ALL; i++) {
		w[i].f = f;
		w[i].r.s = f->seed + 0x1000 * (i + 1);
		pthread_mutex_init(&w[i].flip_lock, NULL);
		if (arena_init(&w[i].a, f->pg) || arena_init(&w[i].ea, f->pg))
			return -1;
		w[i].flip = mmap(NULL, f->pg, PROT_READ | PROT_WRITE,
				 MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		if (w[i].flip == MAP_FAILED)
			return -1;
	}
	for (i = 0; i < W_ALL; i++)
		if (pthread_create(&w[i].t, NULL, i < NWORKERS ? worker_main : fn[i - NWORKERS],
				   &w[i]))
			return -1;
	for (i = 0; i < NWORKERS; i++)
		pthread_join(w[i].t, NULL);
	__atomic_store_n(&f->stop, 1, __ATOMIC_RELAXED);
	for (i = NWORKERS; i < W_ALL; i++)
		pthread_join(w[i].t, NULL);
	for (i = 0; i < W_ALL; i++) {
		arena_free(&w[i].a);
		arena_free(&w[i].ea);
		munmap(w[i].flip, f->pg);
	}
	f->workers = NULL;
	free(w);
	return 0;
}

/* --- the fixture --------------------------------------------------------- */

static void close_kinds(struct fuzz *f)
{
	for (int i = 0; i < f->nkinds; i++) {
		struct fd_kind *k = &f->kinds[i];

		if (!k->dyn && k->fd >= 0)
			close(k->fd);
		k->fd = -1;
	}
	for (int i = 0; i < f->nfs; i++)
		f->fs[i].mfd = -1;	/* closed above */
}

/*
 * Afterwards, with every device file closed: nothing frozen, nothing
 * listed, and the filesystems unmount and check clean.
 */
static void check_after(struct __test_metadata *_metadata, struct fuzz *f)
{
	char line[256];
	int lines = 0;
	FILE *o;

	for (int i = 0; i < NDEV; i++) {
		close(f->dev[i]);
		f->dev[i] = -1;
	}
	o = fopen(TF_DEBUGFS "/owned", "r");
	if (o) {
		/* A header line, then one line an OWNED freeze. */
		while (fgets(line, sizeof(line), o))
			if (line[0] != '\n' && lines++)
				TH_LOG("still an OWNED freeze: %s", line);
		fclose(o);
		EXPECT_EQ(1, lines);
	} else {
		TH_LOG("no %s/owned: not checked", TF_DEBUGFS);
	}
	for (int i = 0; i < f->nfs; i++) {
		errno = 0;
		EXPECT_EQ(-1, ioctl(f->fs[i].mfd, FITHAW, 0)) TH_LOG("%s was frozen", f->name[i]);
		EXPECT_EQ(EINVAL, errno);
		if (!f->ro[i])
			EXPECT_TRUE(tf_fs_writable(f->fs[i].mfd))
				TH_LOG("%s is not writable", f->name[i]);
	}
	close_kinds(f);
	for (int i = 0; i < f->nfs; i++) {
		struct tf_fs *fs = &f->fs[i];
		int xfs = !strcmp(f->type[i], "xfs");

		EXPECT_EQ(0, umount2(fs->mnt, 0))
			TH_LOG("umount %s: %s", f->name[i], strerror(errno));
		EXPECT_EQ(0, tf_run("%s %s >%s/fsck.log 2>&1", xfs ? "xfs_repair -n" : "e2fsck -fn",
				    fs->img, fs->dir)) {
			TH_LOG("%s does not check clean:", f->name[i]);
			tf_run("head -20 %s/fsck.log >&2", fs->dir);
		}
	}
}

static void fuzz_free(struct fuzz *f)
{
	for (int i = 0; i < NDEV; i++)
		if (f->dev[i] >= 0)
			close(f->dev[i]);
	for (int i = 0; i < f->nkinds; i++)
		if (!f->kinds[i].dyn && f->kinds[i].fd >= 0 && f->kinds[i].cls != FD_FS)
			close(f->kinds[i].fd);
	for (int i = 0; i < MAX_FS; i++) {
		struct tf_fs *fs = &f->fs[i];

		if (!fs->dir[0])
			continue;
		for (int k = 0; k < f->nkinds; k++)
			if (f->kinds[k].cls == FD_FS && f->kinds[k].fs == i &&
			    f->kinds[k].fd >= 0 && f->kinds[k].fd != fs->mfd)
				close(f->kinds[k].fd);
		if (fs->mfd >= 0) {
			while (!ioctl(fs->mfd, FITHAW, 0))
				;
			close(fs->mfd);
		}
		if (umount2(fs->mnt, 0) && errno == EBUSY)
			umount2(fs->mnt, MNT_DETACH);
		umount2(fs->dir, MNT_DETACH);
		rmdir(fs->dir);
	}
	arena_free(&f->a);
	arena_free(&f->ea);
}

FIXTURE(fuzz) {
	struct fuzz *f;
};

/*
 * The filesystems: a read-only one too, whose freeze takes no level
 * (freeze_super()'s "Nothing to do really").
 */
static const struct {
	const char *type, *name;
	int ro;
} filesystems[] = {
	{ "ext4", "ext4", 0 },
	{ "xfs", "xfs", 0 },
	{ "ext4", "read-only ext4", 1 },
};

FIXTURE_SETUP(fuzz)
{
	const char *why = tf_missing(), *seed = getenv("TF_FUZZ_SEED");
	struct fuzz *f;
	struct stat st;
	int fd;

	self->f = NULL;
	if (why)
		SKIP(return, "%s", why);
	/* Shared: children that share the device file count their calls too. */
	f = mmap(NULL, sizeof(*f), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	ASSERT_NE(MAP_FAILED, f);
	self->f = f;
	f->fs = calloc(MAX_FS, sizeof(*f->fs));
	ASSERT_NE(NULL, f->fs);
	for (int i = 0; i < NDEV; i++)
		f->dev[i] = -1;
	for (int i = 0; i < MAX_FS; i++) {
		f->fs[i].mfd = -1;
		f->m.st[i].owner = -1;
	}
	f->pg = sysconf(_SC_PAGESIZE);
	f->limit = env_long("TF_FUZZ_CALLS", DEFAULT_CALLS);
	f->seed = seed && *seed ? strtoull(seed, NULL, 0) : tf_now_ns() ^ ((__u64)getpid() << 32);
	for (size_t k = 0; k < ARRAY_SIZE(filesystems); k++) {
		int i = f->nfs;

		if (tf_fs_missing(filesystems[k].type)) {
			TH_LOG("no %s here (kernel or mkfs)", filesystems[k].type);
			continue;
		}
		f->type[i] = filesystems[k].type;
		f->name[i] = filesystems[k].name;
		f->ro[i] = filesystems[k].ro;
		f->nfs++;
		ASSERT_EQ(0, tf_fs_setup(&f->fs[i], f->type[i]));
		fd = openat(f->fs[i].mfd, "fuzzfile", O_RDWR | O_CREAT | O_CLOEXEC, 0644);
		ASSERT_LE(0, fd);
		ASSERT_EQ(5, write(fd, "fuzz\n", 5));
		ASSERT_EQ(0, close(fd));
		if (f->ro[i])
			ASSERT_EQ(0, mount(NULL, f->fs[i].mnt, NULL, MS_REMOUNT | MS_RDONLY, NULL));
		ASSERT_EQ(0, fstat(f->fs[i].mfd, &st));
		f->st_dev[i] = st.st_dev;
	}
	ASSERT_LT(0, f->nfs);
	for (int i = 0; i < NDEV; i++) {
		f->dev[i] = tf_open_dev();
		ASSERT_LE(0, f->dev[i]);
	}
	ASSERT_EQ(0, fuzz_kinds(f));
	ASSERT_EQ(0, arena_init(&f->a, f->pg));
	ASSERT_EQ(0, arena_init(&f->ea, f->pg));
	f->t_start = tf_now_ns();
}

FIXTURE_TEARDOWN(fuzz)
{
	if (self->f && self->f->fs)
		fuzz_free(self->f);
	if (self->f) {
		free(self->f->fs);
		munmap(self->f, sizeof(*self->f));
	}
}

/* The errno histogram and the times, as TAP comments. */
static void report(struct fuzz *f, const char *name, unsigned long long ns,
		   long long freezes, long long thaws)
{
	char line[512];

	say(f, "%s: %ld calls in %llu.%03llu s (seed %llu), %ld odd encodings, %ld failure(s)\n",
	    name, f->calls, ns / NSEC_PER_SEC, ns / NSEC_PER_MSEC % 1000,
	    (unsigned long long)f->seed, f->odd_cmds, f->failures);
	for (int op = 0; op < OP_NR; op++) {
		unsigned int total = 0;
		size_t at;

		for (int e = 0; e < NERR; e++)
			total += f->hist[op][e];
		if (!total)
			continue;
		at = snprintf(line, sizeof(line), "  %-12s %6u calls, slowest %4llu ms:",
			      op_names[op], total, f->max_ns[op] / NSEC_PER_MSEC);
		for (int e = 0; e < NERR && at < sizeof(line); e++)
			if (f->hist[op][e])
				at += snprintf(line + at, sizeof(line) - at, " %s %u",
					       errname(e),
					       f->hist[op][e]);
		say(f, "%s\n", line);
	}
	if (freezes >= 0 && thaws >= 0)
		say(f, "  the module counted %lld freezes and %lld thaws\n",
		    tf_stat("freezes") - freezes, tf_stat("thaws") - thaws);
}

TEST_F_TIMEOUT(fuzz, one_thread, 3600)
{
	struct fuzz *f = self->f;
	long long freezes = tf_stat("freezes"), thaws = tf_stat("thaws");
	struct rng r = { .s = f->seed };
	unsigned long long t0 = tf_now_ns();

	say(f, "one_thread: seed %llu, %ld calls (replay: TF_FUZZ_SEED=%llu TF_FUZZ_CALLS=%ld)\n",
	    (unsigned long long)f->seed, f->limit, (unsigned long long)f->seed, f->limit);
	run_one_thread(f, &r);
	report(f, "one_thread", tf_now_ns() - t0, freezes, thaws);
	check_after(_metadata, f);
	EXPECT_EQ(0, f->failures) TH_LOG("the FAIL lines above tell which calls");
}

TEST_F_TIMEOUT(fuzz, threads_on_one_file, 3600)
{
	struct fuzz *f = self->f;
	long long freezes = tf_stat("freezes"), thaws = tf_stat("thaws");
	unsigned long long t0 = tf_now_ns();

	say(f, "threads_on_one_file: seed %llu, %ld calls, %d threads on one file\n",
	    (unsigned long long)f->seed, f->limit, NWORKERS);
	ASSERT_EQ(0, run_threads(f));
	report(f, "threads_on_one_file", tf_now_ns() - t0, freezes, thaws);
	check_after(_metadata, f);
	EXPECT_EQ(0, f->failures) TH_LOG("the FAIL lines above tell which calls");
}

/*
 * A process without CAP_SYS_ADMIN that holds open files of the device
 * (inherited, or passed to it), one of them the holder of an OWNED freeze:
 * it can freeze, thaw, list and force nothing (EPERM, after the argument
 * checks for FREEZE and THAW, before anything for LIST and FORCE_THAW),
 * and the freezes somebody else holds stay as they are.
 */
TEST_F_TIMEOUT(fuzz, unprivileged_holder_of_the_file, 3600)
{
	struct fuzz *f = self->f;
	struct timed_freeze_args a;
	struct rng r = { .s = f->seed };
	unsigned long long t0 = tf_now_ns();
	int status;
	pid_t pid;

	ASSERT_EQ(0, ioctl(f->fs[0].mfd, FIFREEZE, 0));
	f->m.st[0].ucount = 1;
	if (f->nfs > 1) {
		ASSERT_EQ(0, tf_freeze(f->dev[1], f->fs[1].mfd, SURE_TIMEOUT_NS, 0,
				       TIMED_FREEZE_OWNED, &a));
		f->m.st[1].owner = 1;
	}
	pid = fork();
	ASSERT_LE(0, pid);
	if (pid == 0) {
		f->unpriv = 1;
		f->limit = f->limit / 4 ? f->limit / 4 : 1;
		/* Leaving uid 0 drops every capability; the files stay open. */
		if (setresgid(65534, 65534, 65534) || setresuid(65534, 65534, 65534))
			_exit(2);
		say(f, "unprivileged: seed %llu, %ld calls\n", (unsigned long long)f->seed,
		    f->limit);
		run_one_thread(f, &r);
		report(f, "unprivileged", tf_now_ns() - t0, -1, -1);
		_exit(f->failures ? 1 : 0);
	}
	ASSERT_EQ(pid, waitpid(pid, &status, 0));
	f->unpriv = 0;		/* shared with the child */
	EXPECT_TRUE(WIFEXITED(status) && !WEXITSTATUS(status))
		TH_LOG("the FAIL lines above tell which calls");
	/* Somebody else's freezes are still there, and still theirs. */
	EXPECT_EQ(0, ioctl(f->fs[0].mfd, FITHAW, 0)) TH_LOG("FITHAW: %s", strerror(errno));
	if (f->nfs > 1)
		EXPECT_EQ(0, tf_thaw(f->dev[1], f->fs[1].mfd, TIMED_FREEZE_OWNED));
	check_after(_metadata, f);
}

/*
 * Found by the fuzzer: the caller's struct on its heap, good and
 * written once before the freeze; while the FREEZE waits, another thread
 * of the caller forks (and the child exits at once).  fork() makes the
 * caller's private pages copy-on-write, the struct's among them, so the
 * result written after the freeze without faulting cannot be written:
 * the module undoes a freeze that succeeded and returns EFAULT, for a
 * good address.  The FREEZE must succeed.
 *
 * The wait is made long by a writer held inside the write path: a thread
 * in splice() from an empty pipe into a file holds SB_FREEZE_WRITE.
 */
struct fork_freeze {
	int dev, fd;
	int pipe[2], wfd;
	ssize_t spliced;
	struct timed_freeze_args *a;	/* alone in a private anonymous page */
	int ret;
};

static void *fork_splice_fn(void *arg)
{
	struct fork_freeze *x = arg;

	x->spliced = splice(x->pipe[0], NULL, x->wfd, NULL, 4096, 0);
	return NULL;
}

static void *fork_freeze_fn(void *arg)
{
	struct fork_freeze *x = arg;

	x->ret = tf_freeze(x->dev, x->fd, 5 * NSEC_PER_SEC, 0, 0, x->a);
	return NULL;
}

TEST_F(fuzz, fork_while_a_freeze_waits)
{
	struct fuzz *f = self->f;
	struct fork_freeze *x = calloc(1, sizeof(*x));
	pthread_t writer, freezer;
	pid_t pid;

	ASSERT_NE(NULL, x);
	/*
	 * A page of its own, as a struct on a stack or a heap page nobody
	 * else writes meanwhile: no other write breaks the copy-on-write.
	 */
	x->a = mmap(NULL, f->pg, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	ASSERT_NE(MAP_FAILED, x->a);
	x->dev = f->dev[0];
	x->fd = f->fs[0].mfd;
	ASSERT_EQ(0, pipe(x->pipe));
	x->wfd = openat(x->fd, "held", O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	ASSERT_LE(0, x->wfd);
	ASSERT_EQ(0, pthread_create(&writer, NULL, fork_splice_fn, x));
	usleep(300 * 1000);	/* in splice(), holding SB_FREEZE_WRITE */
	ASSERT_EQ(0, pthread_create(&freezer, NULL, fork_freeze_fn, x));
	usleep(300 * 1000);	/* the FREEZE waits for the writer */
	pid = fork();
	if (!pid)
		_exit(0);
	ASSERT_EQ(pid, waitpid(pid, NULL, 0));
	/* Let the writer go: the freeze completes. */
	ASSERT_EQ(3, write(x->pipe[1], "ok\n", 3));
	pthread_join(writer, NULL);
	pthread_join(freezer, NULL);
	EXPECT_EQ(3, x->spliced);
	EXPECT_EQ(0, x->ret) TH_LOG("FREEZE: %s, the struct is good", strerror(-x->ret));
	EXPECT_EQ(1U, x->a->attempts);
	/* Frozen exactly when it said so. */
	errno = 0;
	EXPECT_EQ(x->ret ? -1 : 0, ioctl(x->fd, FITHAW, 0)) TH_LOG("FITHAW: %s", strerror(errno));
	close(x->wfd);
	close(x->pipe[0]);
	close(x->pipe[1]);
	munmap(x->a, f->pg);
	free(x);
	check_after(_metadata, f);
}

TEST_HARNESS_MAIN
