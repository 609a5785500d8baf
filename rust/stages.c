// SPDX-License-Identifier: GPL-2.0
/*
 * The bench's per-stage clock: where the time of one freeze goes, for the
 * stock freeze_super() and for ours, measured the same way.
 *
 * A freeze is a sequence of marks (a stage id and ktime_get_ns()): its
 * start, for each level the start and end of the reader switch (the RCU
 * grace period) and the end of the drain, the start and end of the sync,
 * its end.  The bench writes "on" to debugfs timed_freeze/stages, which
 * arms the clock for the writing task, freezes, reads the marks back (the
 * read empties them) and writes "off".
 *
 * Ours marks itself (tf_stage_mark(), called from rust/freeze.rs and
 * rust/percpu_rwsem.rs).  The stock path is marked by kretprobes on the
 * functions freeze_super() calls for each stage: rcu_sync_enter() (the
 * switch), percpu_down_write() (switch and drain), sync_filesystem().
 * They are registered at "on" and unregistered at "off", so that nothing
 * traps on these hot functions unless the bench runs, and they record only
 * in the armed task, and only inside its freeze_super().  Nothing here
 * changes what either path does.
 *
 * In C: the kernel crate has no kprobe abstraction, and struct kretprobe is
 * not in its bindings.  The Rust side declares tf_stage_mark(),
 * tf_stages_init(), tf_stages_exit(), tf_switch_each_level() and
 * tf_retry_fixed_backoff() in rust/helpers.rs, whose stage module has the
 * same stage numbers.
 */

#include <linux/atomic.h>
#include <linux/debugfs.h>
#include <linux/kprobes.h>
#include <linux/mutex.h>
#include <linux/sched.h>
#include <linux/seq_file.h>
#include <linux/spinlock.h>
#include <linux/timekeeping.h>
#include <linux/uaccess.h>

/*
 * Stage ids: the same numbers as rust/helpers.rs's stage module.  Our
 * attempt marks drained3 twice: after the drain before the sync and after
 * the kernel's own level-3 wait after it; its one switch of all three
 * levels is switch1/switched1.
 */
enum tf_stage {
	TF_ST_BEGIN,		/* freeze_super() / one attempt entered */
	TF_ST_SWITCH,		/* + level - 1: reader switch of a level starts */
	TF_ST_SWITCHED = TF_ST_SWITCH + 3,	/* + level - 1: its grace period passed */
	TF_ST_DRAINED = TF_ST_SWITCHED + 3,	/* + level - 1: its writers drained */
	TF_ST_SYNC = TF_ST_DRAINED + 3,	/* sync_filesystem() or its mirror starts */
	TF_ST_SYNCED,		/* ... and returns */
	TF_ST_END,		/* freeze_super() / the attempt returns */
	TF_ST_NR,
};

/* rust/helpers.rs spells these out. */
static_assert(TF_ST_SYNC == 10 && TF_ST_SYNCED == 11 && TF_ST_END == 12);

static const char *const tf_stage_name[TF_ST_NR] = {
	"begin",
	"switch1", "switch2", "switch3",
	"switched1", "switched2", "switched3",
	"drained1", "drained2", "drained3",
	"sync", "synced", "end",
};

#define TF_MARKS_MAX	64

static DEFINE_SPINLOCK(tf_marks_lock);
static struct {
	u8 stage;
	u64 ns;
} tf_marks[TF_MARKS_MAX];
static unsigned int tf_nr_marks;
static atomic_t tf_marks_lost = ATOMIC_INIT(0);

/* The armed task's pid, 0 when off. */
static pid_t tf_armed;
/* The armed task is inside the stock freeze_super(); the level it is at. */
static bool tf_in_stock;
static unsigned int tf_stock_level;

/*
 * The kprobe entry handlers run in the int3 trap, which x86 enters as an
 * NMI: no lock may be waited for there (lockdep would report the lock's
 * use in NMI and switch itself off), so the lock is only tried, and the
 * clock is the NMI-safe one.  Only the armed task marks, and it does not
 * read the marks while it marks, so the trylock fails only in a race with
 * "on" from another task, which EBUSY refuses.
 */
static void tf_mark(unsigned int stage)
{
	unsigned long flags;

	if (stage >= TF_ST_NR)
		return;
	if (!spin_trylock_irqsave(&tf_marks_lock, flags)) {
		atomic_inc(&tf_marks_lost);
		return;
	}
	if (tf_nr_marks < TF_MARKS_MAX) {
		tf_marks[tf_nr_marks].stage = stage;
		tf_marks[tf_nr_marks].ns = ktime_get_mono_fast_ns();
		tf_nr_marks++;
	} else {
		atomic_inc(&tf_marks_lost);
	}
	spin_unlock_irqrestore(&tf_marks_lock, flags);
}

static bool tf_armed_here(void)
{
	pid_t armed = READ_ONCE(tf_armed);

	return armed && armed == current->pid;
}

/*
 * debugfs timed_freeze/switch_each_level, for the bench: switch each level's
 * readers with a grace period of its own, as freeze_super() does, instead
 * of all three with one.
 */
static bool tf_switch_each_level_knob;

bool tf_switch_each_level(void)
{
	return READ_ONCE(tf_switch_each_level_knob);
}

/*
 * debugfs timed_freeze/retry_fixed_backoff, for the bench: retry with the
 * policy that rust/retry.rs replaced (a fixed 10 ms between attempts, all
 * of them made whatever the time), to compare the two in one run.
 */
static bool tf_retry_fixed_backoff_knob;

bool tf_retry_fixed_backoff(void)
{
	return READ_ONCE(tf_retry_fixed_backoff_knob);
}

/* Called by the Rust side at its stages; one load and compare when off. */
void tf_stage_mark(unsigned int stage)
{
	if (tf_armed_here())
		tf_mark(stage);
}

/* --- The stock path, by kretprobes. --- */

static int tf_freeze_super_entry(struct kretprobe_instance *ri, struct pt_regs *regs)
{
	if (!tf_armed_here())
		return 1;	/* no return probe */
	WRITE_ONCE(tf_in_stock, true);
	WRITE_ONCE(tf_stock_level, 0);
	tf_mark(TF_ST_BEGIN);
	return 0;
}

static int tf_freeze_super_ret(struct kretprobe_instance *ri, struct pt_regs *regs)
{
	tf_mark(TF_ST_END);
	WRITE_ONCE(tf_in_stock, false);
	return 0;
}

static bool tf_in_stock_here(void)
{
	return tf_armed_here() && READ_ONCE(tf_in_stock) && tf_stock_level >= 1 &&
	       tf_stock_level <= 3;
}

/* percpu_down_write() starts a level: sb_wait_write() calls it in order. */
static int tf_down_write_entry(struct kretprobe_instance *ri, struct pt_regs *regs)
{
	if (!tf_armed_here() || !READ_ONCE(tf_in_stock))
		return 1;
	tf_stock_level++;
	return tf_in_stock_here() ? 0 : 1;
}

static int tf_down_write_ret(struct kretprobe_instance *ri, struct pt_regs *regs)
{
	tf_mark(TF_ST_DRAINED + tf_stock_level - 1);
	return 0;
}

static int tf_rcu_sync_enter_entry(struct kretprobe_instance *ri, struct pt_regs *regs)
{
	if (!tf_in_stock_here())
		return 1;
	tf_mark(TF_ST_SWITCH + tf_stock_level - 1);
	return 0;
}

static int tf_rcu_sync_enter_ret(struct kretprobe_instance *ri, struct pt_regs *regs)
{
	tf_mark(TF_ST_SWITCHED + tf_stock_level - 1);
	return 0;
}

static int tf_sync_entry(struct kretprobe_instance *ri, struct pt_regs *regs)
{
	if (!tf_armed_here() || !READ_ONCE(tf_in_stock))
		return 1;
	tf_mark(TF_ST_SYNC);
	return 0;
}

static int tf_sync_ret(struct kretprobe_instance *ri, struct pt_regs *regs)
{
	tf_mark(TF_ST_SYNCED);
	return 0;
}

static struct kretprobe tf_probes[] = {
	{
		.kp.symbol_name = "freeze_super",
		.entry_handler = tf_freeze_super_entry,
		.handler = tf_freeze_super_ret,
	},
	{
		.kp.symbol_name = "percpu_down_write",
		.entry_handler = tf_down_write_entry,
		.handler = tf_down_write_ret,
	},
	{
		.kp.symbol_name = "rcu_sync_enter",
		.entry_handler = tf_rcu_sync_enter_entry,
		.handler = tf_rcu_sync_enter_ret,
	},
	{
		.kp.symbol_name = "sync_filesystem",
		.entry_handler = tf_sync_entry,
		.handler = tf_sync_ret,
	},
};

static struct kretprobe *tf_probe_ptrs[ARRAY_SIZE(tf_probes)];
static DEFINE_MUTEX(tf_stages_mutex);
static bool tf_registered;

static int tf_stages_on(void)
{
	int i, ret = 0;

	mutex_lock(&tf_stages_mutex);
	if (!tf_registered) {
		for (i = 0; i < ARRAY_SIZE(tf_probes); i++) {
			/* Registered afresh: by name, not the address of last time. */
			tf_probes[i].kp.addr = NULL;
			tf_probes[i].kp.flags = 0;
			tf_probe_ptrs[i] = &tf_probes[i];
		}
		ret = register_kretprobes(tf_probe_ptrs, ARRAY_SIZE(tf_probes));
		tf_registered = !ret;
	}
	if (!ret && READ_ONCE(tf_armed) && READ_ONCE(tf_armed) != current->pid)
		ret = -EBUSY;	/* armed for another task */
	if (!ret) {
		spin_lock_irq(&tf_marks_lock);
		tf_nr_marks = 0;
		atomic_set(&tf_marks_lost, 0);
		spin_unlock_irq(&tf_marks_lock);
		WRITE_ONCE(tf_in_stock, false);
		WRITE_ONCE(tf_armed, current->pid);
	}
	mutex_unlock(&tf_stages_mutex);
	return ret;
}

static void tf_stages_off(void)
{
	mutex_lock(&tf_stages_mutex);
	WRITE_ONCE(tf_armed, 0);
	if (tf_registered) {
		/* Waits for the handlers that are running. */
		unregister_kretprobes(tf_probe_ptrs, ARRAY_SIZE(tf_probes));
		tf_registered = false;
	}
	mutex_unlock(&tf_stages_mutex);
}

/* --- debugfs timed_freeze/stages --- */

static int tf_stages_show(struct seq_file *m, void *v)
{
	unsigned int i;

	spin_lock_irq(&tf_marks_lock);
	for (i = 0; i < tf_nr_marks; i++)
		seq_printf(m, "%s %llu\n", tf_stage_name[tf_marks[i].stage], tf_marks[i].ns);
	if (atomic_read(&tf_marks_lost))
		seq_printf(m, "lost %d\n", atomic_read(&tf_marks_lost));
	tf_nr_marks = 0;
	atomic_set(&tf_marks_lost, 0);
	spin_unlock_irq(&tf_marks_lock);
	return 0;
}

static int tf_stages_open(struct inode *inode, struct file *file)
{
	return single_open(file, tf_stages_show, NULL);
}

static ssize_t tf_stages_write(struct file *file, const char __user *ubuf, size_t len,
			       loff_t *ppos)
{
	char buf[8];
	int ret;

	if (len >= sizeof(buf))
		return -EINVAL;
	if (copy_from_user(buf, ubuf, len))
		return -EFAULT;
	buf[len] = '\0';
	if (sysfs_streq(buf, "on")) {
		ret = tf_stages_on();
		if (ret)
			return ret;
	} else if (sysfs_streq(buf, "off")) {
		tf_stages_off();
	} else {
		return -EINVAL;
	}
	return len;
}

static const struct file_operations tf_stages_fops = {
	.owner = THIS_MODULE,
	.open = tf_stages_open,
	.read = seq_read,
	.llseek = seq_lseek,
	.release = single_release,
	.write = tf_stages_write,
};

/* Creates debugfs timed_freeze/stages; call once that directory exists. */
void tf_stages_init(void)
{
	struct dentry *parent = debugfs_lookup(KBUILD_MODNAME, NULL);

	if (IS_ERR_OR_NULL(parent))
		return;
	debugfs_create_file("stages", 0600, parent, NULL, &tf_stages_fops);
	debugfs_create_bool("switch_each_level", 0600, parent, &tf_switch_each_level_knob);
	debugfs_create_bool("retry_fixed_backoff", 0600, parent, &tf_retry_fixed_backoff_knob);
	dput(parent);
}

/* Unregisters the probes if the bench left them on. */
void tf_stages_exit(void)
{
	tf_stages_off();
}
