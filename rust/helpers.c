// SPDX-License-Identifier: GPL-2.0
/*
 * C helpers for the Rust side of timed_freeze.
 *
 * bindgen cannot turn static inline functions and macros into callable
 * functions, and the kernel's rust/helpers/ only cover what in-tree Rust
 * code uses.  Most helpers here wrap one such inline function or macro and
 * carry no logic of their own.  The others exist because what they do has
 * to be written around a macro or a static function:
 *
 *  - tf_percpu_rwsem_wait_block() and tf_percpu_rwsem_wake_writer() mirror
 *    percpu_rwsem_wait() and percpu_rwsem_wake_function() of
 *    kernel/locking/percpu-rwsem.c (static), timed;
 *  - tf_wait_frozen_change(), tf_wait_sb_born_or_dying() and
 *    tf_wait_var_changed() are wait_var_event/wait_event macros with a condition
 *    and a timeout, which Rust cannot express;
 *  - tf_spawn() starts a kthread that holds a module reference until it
 *    ends (module_put_and_kthread_exit());
 *  - tf_fault_init() and tf_should_fail() are the fault points
 *    (DECLARE_FAULT_ATTR is a macro);
 *  - tf_timeout_log_ratelimit() is printk_ratelimited()'s limit on its own
 *    (DEFINE_RATELIMIT_STATE is a macro, and the state must be static).
 *
 * The Rust side declares them in rust/helpers.rs.
 */

#include <linux/debugfs.h>
#include <linux/fault-inject.h>
#include <linux/fs.h>
#include <linux/kthread.h>
#include <linux/module.h>
#include <linux/lockdep.h>
#include <linux/percpu-rwsem.h>
#include <linux/ratelimit.h>
#include <linux/rcuwait.h>
#include <linux/sched.h>
#include <linux/sched/signal.h>
#include <linux/sched/task.h>
#include <linux/wait.h>
#include <linux/wait_bit.h>

/* The s_flags bits rust/freeze.rs spells out (bindgen skips BIT()). */
static_assert(SB_RDONLY == 1 << 0);
static_assert(SB_DYING == 1 << 24);
static_assert(SB_BORN == 1 << 29);

/* rwsem_acquire(): the lockdep side of percpu_down_write(). */
void tf_percpu_rwsem_lockdep_acquire(struct percpu_rw_semaphore *sem,
				     unsigned long ip)
{
	rwsem_acquire(&sem->dep_map, 0, 0, ip);
}

/*
 * percpu_rwsem_acquire(sem, false, ip): lockdep takes over a write side
 * that another task took and handed on (lockdep_sb_freeze_acquire() does
 * it for thaw_super()); as a trylock, it records no dependency.
 */
void tf_percpu_rwsem_lockdep_adopt(struct percpu_rw_semaphore *sem,
				   unsigned long ip)
{
	percpu_rwsem_acquire(sem, false, ip);
}

/* rwsem_release(): the lockdep side of percpu_up_write(). */
void tf_percpu_rwsem_lockdep_release(struct percpu_rw_semaphore *sem,
				     unsigned long ip)
{
	rwsem_release(&sem->dep_map, ip);
}

/* per_cpu_sum(*sem->read_count), as readers_active_check() reads it. */
unsigned int tf_percpu_rwsem_readers(struct percpu_rw_semaphore *sem)
{
	unsigned int sum = 0;
	int cpu;

	for_each_possible_cpu(cpu) {
		/* Racy on purpose, as readers_active_check(): a barrier follows. */
		sum += data_race(per_cpu(*sem->read_count, cpu));
	}
	return sum;
}

/* percpu_down_read() / percpu_up_read(): static inline. */
void tf_percpu_down_read(struct percpu_rw_semaphore *sem)
{
	percpu_down_read(sem);
}

void tf_percpu_up_read(struct percpu_rw_semaphore *sem)
{
	percpu_up_read(sem);
}

bool tf_percpu_down_read_trylock(struct percpu_rw_semaphore *sem)
{
	return percpu_down_read_trylock(sem);
}

/* prepare_to_rcuwait(): static inline. */
void tf_prepare_to_rcuwait(struct rcuwait *w)
{
	prepare_to_rcuwait(w);
}

/* set_current_state(TASK_KILLABLE): a macro. */
void tf_set_current_state_killable(void)
{
	set_current_state(TASK_KILLABLE);
}

/* fatal_signal_pending(current): static inline. */
bool tf_fatal_signal_pending(void)
{
	return fatal_signal_pending(current);
}

/* spin_lock_irq() and friends: macros (rcu_sync's rss_lock). */
void tf_spin_lock_irq(spinlock_t *lock)
{
	spin_lock_irq(lock);
}

void tf_spin_unlock_irq(spinlock_t *lock)
{
	spin_unlock_irq(lock);
}

unsigned long tf_spin_lock_irqsave(spinlock_t *lock)
{
	unsigned long flags;

	spin_lock_irqsave(lock, flags);
	return flags;
}

void tf_spin_unlock_irqrestore(spinlock_t *lock, unsigned long flags)
{
	spin_unlock_irqrestore(lock, flags);
}

/*
 * call_rcu_hurry(): an alias of call_rcu() without CONFIG_RCU_LAZY, so it
 * only resolves from C.
 */
void tf_call_rcu_hurry(struct rcu_head *head, rcu_callback_t func)
{
	call_rcu_hurry(head, func);
}

/*
 * Whether the line of a freeze that timed out may go to the log: at most
 * DEFAULT_RATELIMIT_BURST lines in DEFAULT_RATELIMIT_INTERVAL, as
 * printk_ratelimited() allows, so that a caller retrying in a loop cannot
 * flood it.  The lines held back are counted in the log ("callbacks
 * suppressed") and every timeout in the "timeouts" statistic.
 */
bool tf_timeout_log_ratelimit(void)
{
	static DEFINE_RATELIMIT_STATE(rs, DEFAULT_RATELIMIT_INTERVAL, DEFAULT_RATELIMIT_BURST);

	return __ratelimit(&rs);
}

/* wake_up_locked(): a macro. */
void tf_wake_up_locked(struct wait_queue_head *wq)
{
	wake_up_locked(wq);
}

/*
 * wait_event(wq, READ_ONCE(*state) >= passed): the wait at the end of
 * rcu_sync_enter() for a grace period another caller started.
 */
void tf_wait_state_at_least(struct wait_queue_head *wq, int *state, int passed)
{
	wait_event(*wq, READ_ONCE(*state) >= passed);
}

/*
 * wait_var_event_killable_timeout(&sb->s_writers.frozen, frozen != old)
 * for the timed variant of wait_for_partially_frozen() (fs/super.c).
 * Returns > 0 when the state changed, 0 on timeout, -ERESTARTSYS on a
 * fatal signal.
 */
long tf_wait_frozen_change(struct super_block *sb, unsigned short old,
			   long timeout)
{
	unsigned short *frozen = &sb->s_writers.frozen;

	might_sleep();
	return ___wait_var_event(frozen,
				 ___wait_cond_timeout(READ_ONCE(*frozen) != old),
				 TASK_KILLABLE, 0, timeout,
				 __ret = schedule_timeout(__ret));
}

/*
 * wait_var_event(&sb->s_flags, super_flags(sb, SB_BORN | SB_DYING)): the
 * wait of super_lock() (fs/super.c), killable and with a timeout below.
 */
static bool tf_sb_born_or_dying(struct super_block *sb)
{
	/* Pairs with smp_store_release() in super_wake(), as super_flags(). */
	return smp_load_acquire(&sb->s_flags) & (SB_BORN | SB_DYING);
}

/*
 * The same, killable and with a timeout in jiffies: > 0 when born or
 * dying, 0 on timeout, -ERESTARTSYS on a fatal signal.
 */
long tf_wait_sb_born_or_dying(struct super_block *sb, long timeout)
{
	might_sleep();
	return ___wait_var_event(&sb->s_flags,
				 ___wait_cond_timeout(tf_sb_born_or_dying(sb)),
				 TASK_KILLABLE, 0, timeout,
				 __ret = schedule_timeout(__ret));
}

/* Mirror of percpu_rwsem_wake_function() for a writer (kernel/locking/percpu-rwsem.c). */
static int tf_percpu_rwsem_wake_writer(struct wait_queue_entry *wq_entry,
				       unsigned int mode, int wake_flags,
				       void *key)
{
	struct percpu_rw_semaphore *sem = key;
	struct task_struct *p;

	/* __percpu_down_write_trylock(); concurrent, can get stolen */
	if (atomic_read(&sem->block) || atomic_xchg(&sem->block, 1) != 0)
		return 1;

	p = get_task_struct(wq_entry->private);
	list_del_init(&wq_entry->entry);
	/* Pairs with the smp_load_acquire() of the waiter: the lock is his. */
	smp_store_release(&wq_entry->private, NULL);

	wake_up_process(p);
	put_task_struct(p);

	return 1; /* wake 1 writer */
}

/*
 * Mirror of percpu_rwsem_wait(sem, reader=false, freeze=false)
 * (kernel/locking/percpu-rwsem.c, static), with a timeout and killable:
 * wait until this writer owns sem->block.  The same steps in the same
 * order; the differences are TASK_KILLABLE, schedule_timeout() and the
 * exit that takes the entry off the queue when nobody handed the lock
 * over.  Returns 0 when sem->block is ours, -ETIMEDOUT or -EINTR when it
 * is not.
 */
int tf_percpu_rwsem_wait_block(struct percpu_rw_semaphore *sem, long timeout)
{
	DEFINE_WAIT_FUNC(wq_entry, tf_percpu_rwsem_wake_writer);
	int ret = 0;
	bool wait;

	spin_lock_irq(&sem->waiters.lock);
	/*
	 * Serialize against the wakeup in percpu_up_write(), if we fail
	 * the trylock, the wakeup must see us on the list.
	 */
	wait = atomic_read(&sem->block) || atomic_xchg(&sem->block, 1) != 0;
	if (wait) {
		wq_entry.flags |= WQ_FLAG_EXCLUSIVE;
		__add_wait_queue_entry_tail(&sem->waiters, &wq_entry);
	}
	spin_unlock_irq(&sem->waiters.lock);

	while (wait) {
		set_current_state(TASK_KILLABLE);
		/* Pairs with smp_store_release() in the wake function. */
		if (!smp_load_acquire(&wq_entry.private))
			break;
		if (fatal_signal_pending(current))
			ret = -EINTR;
		else if (!timeout)
			ret = -ETIMEDOUT;
		else
			timeout = schedule_timeout(timeout);
		if (ret) {
			spin_lock_irq(&sem->waiters.lock);
			/* Handed over while we gave up: it is ours after all. */
			if (!wq_entry.private)
				ret = 0;
			else
				list_del_init(&wq_entry.entry);
			spin_unlock_irq(&sem->waiters.lock);
			break;
		}
	}
	__set_current_state(TASK_RUNNING);
	return ret;
}

/*
 * Test-only fault points, off unless armed through debugfs, in the way of
 * the kernel's own fault injection (Documentation/fault-injection/):
 * /sys/kernel/debug/timed_freeze/fail_<point>/ has the usual probability,
 * interval, times, space, verbose and task-filter knobs.  On a kernel
 * without CONFIG_FAULT_INJECTION_DEBUG_FS the attributes are stubs and no
 * point ever fails.  The points and their meaning are in rust/fault.rs.
 */
static DECLARE_FAULT_ATTR(tf_fail_level_wait);
static DECLARE_FAULT_ATTR(tf_fail_sync_fs);
static DECLARE_FAULT_ATTR(tf_fail_sync_bdev);
static DECLARE_FAULT_ATTR(tf_fail_spawn);
/* fail_level_wait/level: the SB_FREEZE_* level whose wait fails, 0 any. */
static u32 tf_fail_level;

static struct fault_attr *const tf_fault_attrs[] = {
	&tf_fail_level_wait,
	&tf_fail_sync_fs,
	&tf_fail_sync_bdev,
	&tf_fail_spawn,
};

/* Creates the fail_* directories under the module's debugfs directory. */
void tf_fault_init(void)
{
	struct dentry *parent = debugfs_lookup(KBUILD_MODNAME, NULL);
	struct dentry *d;

	if (!parent)
		return;
	d = fault_create_debugfs_attr("fail_level_wait", parent, &tf_fail_level_wait);
	if (!IS_ERR(d))
		debugfs_create_u32("level", 0600, d, &tf_fail_level);
	fault_create_debugfs_attr("fail_sync_fs", parent, &tf_fail_sync_fs);
	fault_create_debugfs_attr("fail_sync_bdev", parent, &tf_fail_sync_bdev);
	fault_create_debugfs_attr("fail_spawn", parent, &tf_fail_spawn);
	dput(parent);
}

/*
 * Whether fault point @point (an index of tf_fault_attrs) fails now;
 * @level narrows fail_level_wait to one level.
 */
bool tf_should_fail(unsigned int point, unsigned int level)
{
	if (point >= ARRAY_SIZE(tf_fault_attrs))
		return false;
	if (tf_fault_attrs[point] == &tf_fail_level_wait &&
	    READ_ONCE(tf_fail_level) && READ_ONCE(tf_fail_level) != level)
		return false;
	return should_fail(tf_fault_attrs[point], 1);
}

/*
 * A kernel thread that runs module code and may outlive the call that
 * started it (a sync stuck on storage that stopped taking writes): it
 * holds a reference on the module, so that rmmod says EBUSY instead of
 * freeing code that still runs, and drops it with
 * module_put_and_kthread_exit(), which never returns into the module.
 * kthread_run() is a macro, hence C.
 */
struct tf_thread {
	int (*fn)(void *data);
	void *data;
};

static int tf_thread_main(void *arg)
{
	struct tf_thread t = *(struct tf_thread *)arg;

	kfree(arg);
	t.fn(t.data);
	module_put_and_kthread_exit(0);
}

/*
 * Runs @fn(@data) in a new kernel thread named @name; 0, or a negative
 * errno when the thread could not be started (then @fn does not run).
 */
int tf_spawn(int (*fn)(void *data), void *data, const char *name)
{
	struct tf_thread *t = kmalloc(sizeof(*t), GFP_KERNEL);
	struct task_struct *task;

	if (!t)
		return -ENOMEM;
	if (!try_module_get(THIS_MODULE)) {
		kfree(t);
		return -ENODEV;
	}
	t->fn = fn;
	t->data = data;
	task = kthread_run(tf_thread_main, t, "%s", name);
	if (IS_ERR(task)) {
		module_put(THIS_MODULE);
		kfree(t);
		return PTR_ERR(task);
	}
	return 0;
}

/*
 * wait_var_event_timeout(var, READ_ONCE(*var) != old), killable (a freezer
 * waiting for its thread) or TASK_IDLE (the thread waiting for its next
 * order, which is no stuck task).  > 0 when it changed, 0 on timeout,
 * -ERESTARTSYS on a fatal signal.  The side that changes *@var does so with
 * a full barrier (an atomic compare-and-exchange) before wake_up_var(var).
 */
long tf_wait_var_changed(int *var, int old, long timeout, bool killable)
{
	might_sleep();
	if (killable)
		return ___wait_var_event(var,
					 ___wait_cond_timeout(READ_ONCE(*var) != old),
					 TASK_KILLABLE, 0, timeout,
					 __ret = schedule_timeout(__ret));
	return ___wait_var_event(var,
				 ___wait_cond_timeout(READ_ONCE(*var) != old),
				 TASK_IDLE, 0, timeout,
				 __ret = schedule_timeout(__ret));
}
