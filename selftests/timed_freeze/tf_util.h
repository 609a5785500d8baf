/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Helpers shared by the timed-freeze kselftests: a loop-mounted
 * filesystem on a private tmpfs, the ioctls, timing and child writers.
 */
#ifndef TF_UTIL_H
#define TF_UTIL_H

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <linux/fs.h>
#include <linux/timed_freeze.h>

#define NSEC_PER_MSEC 1000000ULL
#define TF_DEBUGFS "/sys/kernel/debug/timed_freeze"

struct tf_fs {
	char dir[64];		/* private tmpfs holding the image */
	char img[96];
	char mnt[96];
	int mfd;		/* O_DIRECTORY fd on the mounted fs */
	const char *dm;		/* mounted from this dm-linear device over the loop, or NULL */
	const char *lvm;	/* or from an LVM LV over the loop: "classic" or "thin" */
	char vg[32];		/* then: its volume group (the LV is "origin") */
	char loop[32];		/* the loop device of either */
	char dev[96];		/* what is mounted: the image, or the dm or LVM device */
};

static inline unsigned long long tf_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000000000ULL + ts.tv_nsec;
}

static inline int tf_run(const char *fmt, ...)
{
	char cmd[512];
	va_list ap;
	int ret;

	va_start(ap, fmt);
	vsnprintf(cmd, sizeof(cmd), fmt, ap);
	va_end(ap);
	ret = system(cmd);
	return WIFEXITED(ret) ? WEXITSTATUS(ret) : -1;
}

/*
 * Why these tests cannot run here, or NULL: they need root and the module
 * (its device).  The fixtures SKIP with this, as they do when a filesystem,
 * NBD or FUSE is missing.
 */
static inline const char *tf_missing(void)
{
	if (geteuid())
		return "needs root";
	if (access(TIMED_FREEZE_DEVICE, F_OK))
		return "no " TIMED_FREEZE_DEVICE ": load the module (insmod timed_freeze.ko)";
	return NULL;
}

/* Whether filesystem @type cannot be had here: not in the kernel, or no mkfs. */
static inline int tf_fs_missing(const char *type)
{
	return tf_run("grep -qw %s /proc/filesystems", type) ||
	       tf_run("command -v mkfs.%s >/dev/null", type);
}

/*
 * LVM in the test VM, which has no udev: the commands make their device
 * nodes themselves, and keep their locks, backups and device list out of
 * the read-only /etc and /run.  LVM_SYSTEM_DIR names the configuration's
 * directory for every command the test runs.
 */
static inline int tf_lvm_config(const struct tf_fs *fs)
{
	char path[128];
	FILE *f;

	snprintf(path, sizeof(path), "%s/lvm", fs->dir);
	if (mkdir(path, 0755) || setenv("LVM_SYSTEM_DIR", path, 1) ||
	    setenv("LVM_SUPPRESS_FD_WARNINGS", "1", 1))
		return -1;
	snprintf(path, sizeof(path), "%s/lvm/lvm.conf", fs->dir);
	f = fopen(path, "w");
	if (!f)
		return -1;
	/* Only its own loop device is scanned (each command scans them all). */
	fprintf(f, "devices { obtain_device_list_from_udev = 0 use_devicesfile = 0\n"
		   "  filter = [ \"a|^%s$|\", \"r|.*|\" ] }\n"
		   "activation { udev_sync = 0 udev_rules = 0 monitoring = 0 }\n"
		   "global { locking_dir = \"%s/lvm\" event_activation = 0 }\n"
		   "backup { backup_dir = \"%s/lvm\" archive = 0 }\n", fs->loop, fs->dir, fs->dir);
	return fclose(f);
}

/* A volume group on @fs->loop and in it the LV "origin", classic or thin. */
static inline int tf_lvm_setup(struct tf_fs *fs)
{
	if (tf_lvm_config(fs))
		return -1;
	snprintf(fs->vg, sizeof(fs->vg), "tfvg%d", getpid());
	if (tf_run("pvcreate -qq %s && vgcreate -qq %s %s >/dev/null", fs->loop, fs->vg,
		   fs->loop))
		return -1;
	/* 320 MiB: xfs's least; classic: room left for the snapshot's store. */
	if (!strcmp(fs->lvm, "thin"))
		return tf_run("lvcreate -qq -L 400M -T %s/pool >/dev/null && %s %s/pool %s",
			      fs->vg, "lvcreate -qq -V 320M -T", fs->vg, "-n origin >/dev/null");
	return tf_run("lvcreate -qq -L 320M -n origin %s >/dev/null", fs->vg);
}

/* Every LV of the group resumed and removed, then the group and the PV. */
static inline void tf_lvm_teardown(struct tf_fs *fs)
{
	tf_run("for d in $(dmsetup ls | awk '/^%s-/ { print $1 }'); do %s; done",
	       fs->vg, "dmsetup resume $d >/dev/null 2>&1");
	tf_run("vgremove -qq -ff %s >/dev/null 2>&1; pvremove -qq %s >/dev/null 2>&1",
	       fs->vg, fs->loop);
}

/*
 * mkfs and loop-mount a filesystem of @type; 0 or -1.  With @fs->dm set,
 * the filesystem is made and mounted on a dm-linear device of that name
 * over the loop device (a device-mapper suspend then freezes it); with
 * @fs->lvm, on the LV "origin" of a volume group there (an LVM snapshot
 * freezes it).
 */
static inline int tf_fs_setup(struct tf_fs *fs, const char *type)
{
	const char *mkfs = !strcmp(type, "xfs") ? "mkfs.xfs -q -f" :
			   !strcmp(type, "gfs2") ? "mkfs.gfs2 -O -q -p lock_nolock -j 1" :
			   "mkfs.ext4 -q -F";
	char *dev = fs->dev;

	snprintf(fs->dir, sizeof(fs->dir), "/tmp/tf.XXXXXX");
	fs->mfd = -1;
	if (!mkdtemp(fs->dir))
		return -1;
	if (mount("tf-tmp", fs->dir, "tmpfs", 0, "size=1g"))
		return -1;
	snprintf(fs->img, sizeof(fs->img), "%s/img", fs->dir);
	snprintf(fs->mnt, sizeof(fs->mnt), "%s/mnt", fs->dir);
	if (mkdir(fs->mnt, 0755) || tf_run("truncate -s %s %s", fs->lvm ? "640M" : "320M",
					   fs->img))
		return -1;
	snprintf(dev, sizeof(fs->dev), "%s", fs->img);
	if (fs->dm || fs->lvm) {
		char cmd[160];
		FILE *p;

		snprintf(cmd, sizeof(cmd), "losetup -f --show %s", fs->img);
		p = popen(cmd, "r");
		if (!p || !fgets(fs->loop, sizeof(fs->loop), p)) {
			if (p)
				pclose(p);
			return -1;
		}
		pclose(p);
		fs->loop[strcspn(fs->loop, "\n")] = '\0';
	}
	if (fs->lvm) {
		if (tf_lvm_setup(fs))
			return -1;
		snprintf(dev, sizeof(fs->dev), "/dev/mapper/%s-origin", fs->vg);
	} else if (fs->dm) {
		char cmd[160];

		snprintf(cmd, sizeof(cmd), "0 $(blockdev --getsz %s) linear %s 0", fs->loop,
			 fs->loop);
		/* No udev in the test VM: the node is made by dmsetup mknodes. */
		if (tf_run("dmsetup create %s --table \"%s\" && dmsetup mknodes %s", fs->dm, cmd,
			   fs->dm))
			return -1;
		snprintf(dev, sizeof(fs->dev), "/dev/mapper/%s", fs->dm);
	}
	if (tf_run("%s %s >/dev/null 2>&1 && mount -t %s %s %s %s", mkfs, dev, type,
		   fs->loop[0] ? "" : "-o loop", dev, fs->mnt))
		return -1;
	fs->mfd = open(fs->mnt, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	return fs->mfd < 0 ? -1 : 0;
}

static inline void tf_fs_teardown(struct tf_fs *fs)
{
	if (fs->mfd >= 0) {
		ioctl(fs->mfd, FITHAW, 0);
		close(fs->mfd);
	}
	umount2(fs->mnt, 0);
	if (fs->lvm && fs->vg[0])
		tf_lvm_teardown(fs);
	else if (fs->dm)
		tf_run("dmsetup resume %s >/dev/null 2>&1; dmsetup remove %s >/dev/null 2>&1",
		       fs->dm, fs->dm);
	if (fs->loop[0])
		tf_run("losetup -d %s", fs->loop);
	umount2(fs->dir, MNT_DETACH);
	rmdir(fs->dir);
}

/*
 * In a forked daemon: closes every fd above stderr but @own's (@n of
 * them) and @keep's (-1 ends it; may be NULL), so that it holds nothing
 * of the test's open (fsA must unmount later).
 */
static inline void tf_close_fds_but(const int *own, int n, const int *keep)
{
	for (int fd = 3; fd < 1024; fd++) {
		int k = 0;

		for (int i = 0; i < n; i++)
			k |= fd == own[i];
		for (const int *p = keep; p && *p >= 0; p++)
			k |= fd == *p;
		if (!k)
			close(fd);
	}
}

/* Sends command @c on @out and waits for its acknowledgment on @in; 0 or -1. */
static inline int tf_cmd(int out, int in, char c)
{
	char a;

	if (write(out, &c, 1) != 1 || read(in, &a, 1) != 1)
		return -1;
	return a == c ? 0 : -1;
}

static inline int tf_open_dev(void)
{
	return open(TIMED_FREEZE_DEVICE, O_RDWR | O_CLOEXEC);
}

/* TIMED_FREEZE_IOC_FREEZE; 0 or -errno, @a filled in. */
static inline int tf_freeze_deadline(int dev, int fd, unsigned long long timeout_ns,
				     unsigned int retries, unsigned long long deadline_ns,
				     unsigned long long flags, struct timed_freeze_args *a)
{
	memset(a, 0, sizeof(*a));
	a->size = sizeof(*a);
	a->flags = flags;
	a->timeout_ns = timeout_ns;
	a->fd = fd;
	a->retries = retries;
	a->deadline_ns = deadline_ns;
	return ioctl(dev, TIMED_FREEZE_IOC_FREEZE, a) ? -errno : 0;
}

static inline int tf_freeze(int dev, int fd, unsigned long long timeout_ns,
			    unsigned int retries, unsigned long long flags,
			    struct timed_freeze_args *a)
{
	return tf_freeze_deadline(dev, fd, timeout_ns, retries, 0, flags, a);
}

/* The module's default deadline of a freeze (timed_freeze.h, deadline_ns). */
static inline unsigned long long tf_default_deadline_ns(unsigned long long timeout_ns,
							unsigned int retries)
{
	return (retries + 1ULL) * timeout_ns + retries * TIMED_FREEZE_BACKOFF_NS;
}

/* TIMED_FREEZE_IOC_LIST into @e (room for @n); 0 or -errno, @total set. */
static inline int tf_list(int dev, struct timed_freeze_owned *e, unsigned int n,
			  unsigned int *total)
{
	struct timed_freeze_list_args a = {
		.size = sizeof(a),
		.entries = (unsigned long)e,
		.entry_size = sizeof(*e),
		.count = n,
	};
	int ret = ioctl(dev, TIMED_FREEZE_IOC_LIST, &a) ? -errno : 0;

	*total = a.total;
	return ret;
}

/* TIMED_FREEZE_IOC_FORCE_THAW of owned freeze @id; 0 or -errno. */
static inline int tf_force_thaw(int dev, unsigned long long id)
{
	struct timed_freeze_force_thaw_args a = { .size = sizeof(a), .id = id };

	return ioctl(dev, TIMED_FREEZE_IOC_FORCE_THAW, &a) ? -errno : 0;
}

/* TIMED_FREEZE_IOC_THAW; 0 or -errno. */
static inline int tf_thaw(int dev, int fd, unsigned long long flags)
{
	struct timed_thaw_args a = {
		.size = sizeof(a),
		.flags = flags,
		.fd = fd,
	};

	return ioctl(dev, TIMED_FREEZE_IOC_THAW, &a) ? -errno : 0;
}

/* Fork a child that writes @data to @dir/@name and exits 0 on success. */
static inline pid_t tf_write_child(int dirfd, const char *name, const char *data)
{
	pid_t pid = fork();

	if (pid == 0) {
		size_t len = strlen(data);
		int fd;

		/*
		 * Keep no other file of the parent open: an inherited
		 * /dev/timed-freeze file would keep its owned freezes.
		 */
		for (fd = 3; fd < 1024; fd++)
			if (fd != dirfd)
				close(fd);
		fd = openat(dirfd, name, O_WRONLY | O_CREAT | O_TRUNC, 0644);
		if (fd < 0 || write(fd, data, len) != (ssize_t)len || fsync(fd))
			_exit(1);
		_exit(0);
	}
	return pid;
}

/* Wait up to @ms for @pid; its exit status, or -1 if it is still running. */
static inline int tf_wait_child(pid_t pid, int ms)
{
	int status;

	for (int i = 0; i <= ms / 10; i++) {
		if (waitpid(pid, &status, WNOHANG) == pid)
			return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
		usleep(10000);
	}
	return -1;
}

/* Whether @dir/@name holds exactly @data. */
static inline int tf_file_is(int dirfd, const char *name, const char *data)
{
	char buf[256] = {};
	int fd = openat(dirfd, name, O_RDONLY);
	ssize_t n;

	if (fd < 0)
		return 0;
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	return n == (ssize_t)strlen(data) && !memcmp(buf, data, n);
}

/* Is the filesystem of @dirfd writable now?  A child's write must finish in 5 s. */
static inline int tf_fs_writable(int dirfd)
{
	pid_t pid = tf_write_child(dirfd, "probe", "probe\n");

	return tf_wait_child(pid, 5000) == 0 && tf_file_is(dirfd, "probe", "probe\n");
}

/*
 * A writer held inside the write path: a thread in splice() from an empty
 * pipe into a file.  do_splice() takes SB_FREEZE_WRITE (file_start_write())
 * and then waits for the pipe, interruptibly, as a write() from a
 * FUSE-backed mmap waits for its daemon.
 */
struct tf_held_writer {
	int pipe[2];
	int fd;
	pthread_t thread;
	ssize_t ret;
};

static inline void *tf_held_writer_fn(void *arg)
{
	struct tf_held_writer *hw = arg;

	hw->ret = splice(hw->pipe[0], NULL, hw->fd, NULL, 4096, 0);
	return NULL;
}

/* Start a writer that sits inside the write path of @dirfd/@name. */
static inline int tf_held_writer_start(struct tf_held_writer *hw, int dirfd, const char *name)
{
	if (pipe(hw->pipe))
		return -1;
	hw->fd = openat(dirfd, name, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	if (hw->fd < 0)
		return -1;
	if (pthread_create(&hw->thread, NULL, tf_held_writer_fn, hw))
		return -1;
	usleep(300 * 1000);	/* into splice(), holding SB_FREEZE_WRITE */
	return 0;
}

/* Let it finish with @data; the bytes it wrote. */
static inline ssize_t tf_held_writer_finish(struct tf_held_writer *hw, const char *data)
{
	if (write(hw->pipe[1], data, strlen(data)) < 0)
		return -1;
	close(hw->pipe[1]);
	pthread_join(hw->thread, NULL);
	close(hw->pipe[0]);
	close(hw->fd);
	return hw->ret;
}

/* A counter from the "key: value" lines of the file @path, or -1. */
static inline long long tf_stat_in(const char *path, const char *key)
{
	FILE *f = fopen(path, "r");
	char k[64];
	long long v, ret = -1;

	if (!f)
		return -1;
	while (fscanf(f, "%63[^:]: %lld\n", k, &v) == 2)
		if (!strcmp(k, key))
			ret = v;
	fclose(f);
	return ret;
}

/* A counter from /sys/kernel/debug/timed_freeze/stats, or -1. */
static inline long long tf_stat(const char *key)
{
	return tf_stat_in(TF_DEBUGFS "/stats", key);
}

/* Write @val to the file @path (sysfs, procfs, debugfs); 0 or -1. */
static inline int tf_write_str(const char *path, const char *val)
{
	int fd, ret;

	fd = open(path, O_WRONLY | O_CLOEXEC);
	if (fd < 0)
		return -1;
	ret = write(fd, val, strlen(val)) == (ssize_t)strlen(val) ? 0 : -1;
	close(fd);
	return ret;
}

/* The first line of the file @path, without its newline, in @buf; 0 or -1. */
static inline int tf_read_str(const char *path, char *buf, size_t n)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	ssize_t len;

	if (fd < 0)
		return -1;
	len = read(fd, buf, n - 1);
	close(fd);
	if (len <= 0)
		return -1;
	buf[len] = '\0';
	buf[strcspn(buf, "\n")] = '\0';
	return 0;
}

/* The RFC kernel's sysctls (patches/rfc): plain FIFREEZE's deadline. */
#define TF_SYSCTL_TIMEOUT	"/proc/sys/fs/freeze_timeout_ms"
#define TF_SYSCTL_RETRIES	"/proc/sys/fs/freeze_retries"

/* Write @val to debugfs file timed_freeze/@path; 0 or -1. */
static inline int tf_debugfs_write(const char *path, const char *val)
{
	char p[256];

	snprintf(p, sizeof(p), TF_DEBUGFS "/%s", path);
	return tf_write_str(p, val);
}

/* Whether the module's fault points exist (CONFIG_FAULT_INJECTION_DEBUG_FS). */
static inline int tf_fault_available(void)
{
	return access(TF_DEBUGFS "/fail_level_wait/probability", W_OK) == 0;
}

/*
 * Arm fault point fail_@point to fail its next @times passes (for
 * level_wait, at SB_FREEZE level @level; 0: any); 0 or -1.
 */
static inline int tf_fault_arm(const char *point, unsigned int level, unsigned int times)
{
	char p[64], v[16];

	snprintf(v, sizeof(v), "%u", times);
	snprintf(p, sizeof(p), "fail_%s/times", point);
	if (tf_debugfs_write(p, v))
		return -1;
	snprintf(p, sizeof(p), "fail_%s/verbose", point);
	tf_debugfs_write(p, "1");
	snprintf(p, sizeof(p), "fail_%s/interval", point);
	tf_debugfs_write(p, "1");
	if (!strcmp(point, "level_wait")) {
		snprintf(v, sizeof(v), "%u", level);
		if (tf_debugfs_write("fail_level_wait/level", v))
			return -1;
	}
	snprintf(p, sizeof(p), "fail_%s/probability", point);
	return tf_debugfs_write(p, "100");
}

static inline void tf_fault_disarm(const char *point)
{
	char p[64];

	snprintf(p, sizeof(p), "fail_%s/probability", point);
	tf_debugfs_write(p, "0");
}

/* Free bytes of the filesystem of @fd, or -1. */
static inline long long tf_free_bytes(int fd)
{
	struct statfs st;

	if (fstatfs(fd, &st))
		return -1;
	return (long long)st.f_bfree * st.f_bsize;
}

/* Whether @pid is in D state (uninterruptible sleep). */
static inline int tf_in_d_state(pid_t pid)
{
	char path[64], line[512], *r;
	FILE *f;
	int d = 0;

	snprintf(path, sizeof(path), "/proc/%d/stat", pid);
	f = fopen(path, "r");
	if (!f)
		return 0;
	if (fgets(line, sizeof(line), f)) {
		r = strrchr(line, ')');
		d = r && r[1] == ' ' && r[2] == 'D';
	}
	fclose(f);
	return d;
}

/* The test pattern: byte @off of every file the data checks write. */
static inline unsigned char tf_pattern_byte(size_t off)
{
	return (off * 13 + off / 4096) % 241;
}

/* @size bytes of the pattern to @dirfd/@name, buffered, not synced; 0 or -1. */
static inline int tf_write_pattern(int dirfd, const char *name, size_t size)
{
	static char buf[1 << 16];
	int fd = openat(dirfd, name, O_WRONLY | O_CREAT | O_TRUNC, 0644);

	if (fd < 0)
		return -1;
	for (size_t off = 0; off < size; off += sizeof(buf)) {
		for (size_t i = 0; i < sizeof(buf); i++)
			buf[i] = tf_pattern_byte(off + i);
		if (write(fd, buf, sizeof(buf)) != sizeof(buf)) {
			close(fd);
			return -1;
		}
	}
	return close(fd);
}

/* Whether @dirfd/@name holds exactly @size bytes of the pattern. */
static inline int tf_pattern_is_there(int dirfd, const char *name, size_t size)
{
	static unsigned char buf[1 << 16];
	int fd = openat(dirfd, name, O_RDONLY);
	size_t off = 0;
	ssize_t n;

	if (fd < 0)
		return 0;
	while ((n = read(fd, buf, sizeof(buf))) > 0) {
		for (ssize_t i = 0; i < n; i++)
			if (buf[i] != tf_pattern_byte(off + i)) {
				close(fd);
				return 0;
			}
		off += n;
	}
	close(fd);
	return off == size;
}

#endif /* TF_UTIL_H */
