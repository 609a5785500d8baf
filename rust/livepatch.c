// SPDX-License-Identifier: GPL-2.0
/*
 * The live patch of timed_freeze_livepatch, and its parameters.
 *
 * freeze_super() (fs/super.c) is replaced by tf_klp_freeze_super()
 * (rust/timed_freeze_livepatch.rs) for every caller.  This part is C
 * because the kernel crate has no abstraction for live patches: struct
 * klp_patch and its tables are static data that the livepatch core links
 * into its lists and its sysfs directory, written here with designated
 * initialisers as samples/livepatch/livepatch-sample.c writes them, and
 * MODULE_INFO(livepatch) is a macro.  The parameters are C too:
 * module_param_cb() is a macro, and the kernel crate's own module
 * parameters cannot be written at run time (their perm is 0), where an
 * administrator must be able to change or switch off the deadline without
 * unloading a live patch.
 *
 * The Rust side declares these functions in rust/timed_freeze_livepatch.rs.
 */

#include <linux/kallsyms.h>
#include <linux/kernel.h>
#include <linux/livepatch.h>
#include <linux/module.h>
#include <linux/moduleparam.h>
#include <linux/sched.h>
#include <linux/stacktrace.h>
#include <linux/string.h>
#include <linux/sysfs.h>

/* The freezes the deadline applies to (parameter "holders"). */
#define TF_KLP_FIFREEZE	BIT(0)	/* FIFREEZE: FREEZE_HOLDER_USERSPACE */
#define TF_KLP_BDEV	BIT(1)	/* bdev_freeze(): ... | FREEZE_MAY_NEST */
#define TF_KLP_KERNEL	BIT(2)	/* FREEZE_HOLDER_KERNEL */

/* The UAPI's bounds of the timed freeze ioctl (TIMED_FREEZE_*_MAX). */
#define TF_KLP_TIMEOUT_MAX_MS	60000
#define TF_KLP_RETRIES_MAX	16

static unsigned int tf_klp_timeout_ms;
static unsigned int tf_klp_retries;
static unsigned int tf_klp_holders = TF_KLP_FIFREEZE | TF_KLP_BDEV;

static int tf_klp_set_timeout(const char *val, const struct kernel_param *kp)
{
	return param_set_uint_minmax(val, kp, 0, TF_KLP_TIMEOUT_MAX_MS);
}

static const struct kernel_param_ops tf_klp_timeout_ops = {
	.set = tf_klp_set_timeout,
	.get = param_get_uint,
};

static int tf_klp_set_retries(const char *val, const struct kernel_param *kp)
{
	return param_set_uint_minmax(val, kp, 0, TF_KLP_RETRIES_MAX);
}

static const struct kernel_param_ops tf_klp_retries_ops = {
	.set = tf_klp_set_retries,
	.get = param_get_uint,
};

static const struct {
	const char *name;
	unsigned int bit;
} tf_klp_holder_names[] = {
	{ "fifreeze", TF_KLP_FIFREEZE },
	{ "bdev", TF_KLP_BDEV },
	{ "kernel", TF_KLP_KERNEL },
};

/*
 * "holders": a comma-separated list of fifreeze, bdev and kernel, or
 * "none".  Anything else is -EINVAL and changes nothing.
 */
static int tf_klp_set_holders(const char *val, const struct kernel_param *kp)
{
	char buf[64], *s, *tok;
	unsigned int mask = 0, i;

	if (strscpy(buf, val, sizeof(buf)) < 0)
		return -EINVAL;
	s = strim(buf);
	if (!strcmp(s, "none")) {
		WRITE_ONCE(*(unsigned int *)kp->arg, 0);
		return 0;
	}
	while ((tok = strsep(&s, ","))) {
		for (i = 0; i < ARRAY_SIZE(tf_klp_holder_names); i++)
			if (!strcmp(strim(tok), tf_klp_holder_names[i].name))
				break;
		if (i == ARRAY_SIZE(tf_klp_holder_names))
			return -EINVAL;
		mask |= tf_klp_holder_names[i].bit;
	}
	WRITE_ONCE(*(unsigned int *)kp->arg, mask);
	return 0;
}

static int tf_klp_get_holders(char *buffer, const struct kernel_param *kp)
{
	unsigned int mask = READ_ONCE(*(unsigned int *)kp->arg), i;
	int len = 0;

	for (i = 0; i < ARRAY_SIZE(tf_klp_holder_names); i++)
		if (mask & tf_klp_holder_names[i].bit)
			len += sysfs_emit_at(buffer, len, "%s%s", len ? "," : "",
					     tf_klp_holder_names[i].name);
	return len + sysfs_emit_at(buffer, len, "%s\n", len ? "" : "none");
}

static const struct kernel_param_ops tf_klp_holders_ops = {
	.set = tf_klp_set_holders,
	.get = tf_klp_get_holders,
};

module_param_cb(timeout_ms, &tf_klp_timeout_ops, &tf_klp_timeout_ms, 0644);
MODULE_PARM_DESC(timeout_ms,
		 "Deadline of each freeze attempt in ms, 0..60000; 0 (the default): no deadline, freeze_super() as without the module");
module_param_cb(retries, &tf_klp_retries_ops, &tf_klp_retries, 0644);
MODULE_PARM_DESC(retries,
		 "Attempts after one that reached its deadline, 0..16 (default 0)");
module_param_cb(holders, &tf_klp_holders_ops, &tf_klp_holders, 0644);
MODULE_PARM_DESC(holders,
		 "Freezes the deadline applies to: fifreeze, bdev, kernel, comma-separated, or none (default fifreeze,bdev)");

/*
 * The parameters, each read once: a freeze works with the values it read
 * at its start, whatever an administrator writes meanwhile.
 */
void tf_klp_params(unsigned int *timeout_ms, unsigned int *retries,
		   unsigned int *holders)
{
	*timeout_ms = READ_ONCE(tf_klp_timeout_ms);
	*retries = READ_ONCE(tf_klp_retries);
	*holders = READ_ONCE(tf_klp_holders);
}

/*
 * Whether the function @name is among the callers of the current task's
 * stack.  For the one caller that freeze_super()'s arguments do not tell
 * apart and that must not get a deadline: xfs_fs_goingdown(), which
 * ignores an error of bdev_freeze() and then returns 0 without shutting
 * the filesystem down.  A kernel built with LTO could inline it into
 * xfs_file_ioctl(), its one caller, and hide it from this look (the test
 * kernel has no LTO).  A module's symbols print as "name [module]".
 */
bool tf_klp_called_from(const char *name)
{
	unsigned long entries[32];
	char sym[KSYM_SYMBOL_LEN];
	size_t len = strlen(name);
	unsigned int i, n;

	n = stack_trace_save(entries, ARRAY_SIZE(entries), 1);
	for (i = 0; i < n; i++) {
		/* The call, not what follows it (as sprint_backtrace() looks). */
		sprint_symbol_no_offset(sym, entries[i] - 1);
		/* "name", "name [mod]", or a compiler's "name.part.0" */
		if (!strncmp(sym, name, len) &&
		    (!sym[len] || sym[len] == ' ' || sym[len] == '.'))
			return true;
	}
	return false;
}

/*
 * get_task_comm() (a macro) of the current task into @buf (TASK_COMM_LEN
 * bytes): the kernel's way to read a name that a rename may change
 * meanwhile, always NUL-terminated.
 */
void tf_klp_current_comm(char *buf)
{
	char comm[TASK_COMM_LEN];

	get_task_comm(comm, current);
	memcpy(buf, comm, sizeof(comm));
}

int tf_klp_freeze_super(struct super_block *sb, enum freeze_holder who,
			const void *freeze_owner);

/* The replacement takes what the original takes. */
static_assert(__same_type(&tf_klp_freeze_super, &freeze_super));

static struct klp_func tf_klp_funcs[] = {
	{
		.old_name = "freeze_super",
		.new_func = tf_klp_freeze_super,
	}, { }
};

static struct klp_object tf_klp_objs[] = {
	{
		/* name being NULL means vmlinux */
		.funcs = tf_klp_funcs,
	}, { }
};

static struct klp_patch tf_klp_patch = {
	.mod = THIS_MODULE,
	.objs = tf_klp_objs,
};

/* klp_enable_patch() of the patch above; from module init only. */
int tf_klp_enable(void)
{
	return klp_enable_patch(&tf_klp_patch);
}

MODULE_INFO(livepatch, "Y");
