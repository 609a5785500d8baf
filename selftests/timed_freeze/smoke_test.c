// SPDX-License-Identifier: GPL-2.0
/*
 * Smoke test for the timed_freeze module: the device exists with the
 * right mode, unknown ioctls are refused, the module cannot go away while
 * the device is open, and it unloads and loads again cleanly.
 *
 * The runner loads the module before the tests and passes its path in
 * TF_MODULE; the tests leave it loaded.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "kselftest_harness.h"

#define TF_DEV "/dev/timed-freeze"
#define TF_NAME "timed_freeze"

/* Every test needs root and the module loaded: SKIP without them. */
FIXTURE(mod) {
	int unused;
};

FIXTURE_SETUP(mod)
{
	if (geteuid())
		SKIP(return, "needs root");
	if (access(TF_DEV, F_OK))
		SKIP(return, "no %s: load the module (insmod timed_freeze.ko)", TF_DEV);
}

FIXTURE_TEARDOWN(mod)
{
}

static int module_unload(void)
{
	return syscall(SYS_delete_module, TF_NAME, O_NONBLOCK);
}

static int module_load(const char *path)
{
	int fd, ret;

	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -1;
	ret = syscall(SYS_finit_module, fd, "", 0);
	close(fd);
	return ret;
}

TEST_F(mod, device_node)
{
	struct stat st;

	ASSERT_EQ(0, stat(TF_DEV, &st));
	EXPECT_TRUE(S_ISCHR(st.st_mode));
	EXPECT_EQ(0600U, st.st_mode & 07777);
}

TEST_F(mod, unknown_ioctl_is_enotty)
{
	int fd;

	fd = open(TF_DEV, O_RDWR | O_CLOEXEC);
	ASSERT_LE(0, fd);
	EXPECT_EQ(-1, ioctl(fd, _IO('x', 0xff), 0));
	EXPECT_EQ(ENOTTY, errno);
	EXPECT_EQ(-1, ioctl(fd, 0, 0));
	EXPECT_EQ(ENOTTY, errno);
	close(fd);
}

TEST_F(mod, busy_while_open)
{
	int fd;

	fd = open(TF_DEV, O_RDWR | O_CLOEXEC);
	ASSERT_LE(0, fd);
	/* The open file holds a reference on the module. */
	EXPECT_EQ(-1, module_unload());
	EXPECT_EQ(EWOULDBLOCK, errno);
	close(fd);
}

TEST_F(mod, unload_and_reload)
{
	const char *path = getenv("TF_MODULE");
	struct stat st;

	if (!path)
		SKIP(return, "TF_MODULE not set");
	ASSERT_EQ(0, module_unload());
	EXPECT_EQ(-1, stat(TF_DEV, &st));
	EXPECT_EQ(ENOENT, errno);
	ASSERT_EQ(0, module_load(path));
	EXPECT_EQ(0, stat(TF_DEV, &st));
}

TEST_HARNESS_MAIN
