// SPDX-License-Identifier: GPL-2.0
/*
 * LD_PRELOAD for fio in a kernel without SysV IPC (CONFIG_SYSVIPC off, as
 * in the test kernel): fio keeps its table of jobs in SysV shm segments
 * (shmget, shmat, then IPC_RMID at once) and fails without them.  Here a
 * segment is an anonymous MAP_SHARED mapping made by shmget(), which the
 * job processes fio forks share as they would share the segment.
 * stress_test.c preloads it only when shmget() fails.
 */
#include <errno.h>
#include <pthread.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/shm.h>

#define SEGS	64

static struct seg {
	void *addr;		/* NULL: a free slot */
	size_t size;
	int attached;
	int removed;
} segs[SEGS];

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;

/* The slot of id @id (shmget()'s: its index + 1), or NULL. */
static struct seg *seg_of(int id)
{
	if (id < 1 || id > SEGS || !segs[id - 1].addr)
		return NULL;
	return &segs[id - 1];
}

static void seg_put(struct seg *s)
{
	if (s->removed && !s->attached) {
		munmap(s->addr, s->size);
		memset(s, 0, sizeof(*s));
	}
}

int shmget(key_t key, size_t size, int flags)
{
	int id = -1;

	if (key != IPC_PRIVATE || !(flags & IPC_CREAT) || !size) {
		errno = EINVAL;
		return -1;
	}
	pthread_mutex_lock(&lock);
	for (int i = 0; i < SEGS && id < 0; i++) {
		if (segs[i].addr)
			continue;
		segs[i].addr = mmap(NULL, size, PROT_READ | PROT_WRITE,
				    MAP_SHARED | MAP_ANONYMOUS, -1, 0);
		if (segs[i].addr == MAP_FAILED) {
			segs[i].addr = NULL;
			break;
		}
		segs[i].size = size;
		id = i + 1;
	}
	pthread_mutex_unlock(&lock);
	if (id < 0)
		errno = ENOMEM;
	return id;
}

void *shmat(int id, const void *addr, int flags)
{
	struct seg *s;
	void *ret = (void *)-1;

	pthread_mutex_lock(&lock);
	s = seg_of(id);
	if (s && !addr) {
		s->attached++;
		ret = s->addr;
	}
	pthread_mutex_unlock(&lock);
	if (ret == (void *)-1)
		errno = EINVAL;
	return ret;
}

int shmdt(const void *addr)
{
	int ret = -1;

	pthread_mutex_lock(&lock);
	for (int i = 0; i < SEGS; i++) {
		if (!segs[i].addr || segs[i].addr != addr || !segs[i].attached)
			continue;
		segs[i].attached--;
		seg_put(&segs[i]);
		ret = 0;
		break;
	}
	pthread_mutex_unlock(&lock);
	if (ret)
		errno = EINVAL;
	return ret;
}

int shmctl(int id, int cmd, struct shmid_ds *buf)
{
	struct seg *s;
	int ret = -1;

	pthread_mutex_lock(&lock);
	s = seg_of(id);
	if (s && cmd == IPC_RMID) {
		s->removed = 1;
		seg_put(s);
		ret = 0;
	} else if (s && cmd == IPC_STAT && buf) {
		memset(buf, 0, sizeof(*buf));
		buf->shm_segsz = s->size;
		buf->shm_nattch = s->attached;
		ret = 0;
	}
	pthread_mutex_unlock(&lock);
	if (ret)
		errno = EINVAL;
	return ret;
}
