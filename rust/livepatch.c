// SPDX-License-Identifier: GPL-2.0
/*
 * The live patch of timed_freeze_livepatch, its parameters and its
 * load-time check.
 *
 * freeze_super() (fs/super.c) is replaced by tf_klp_freeze_super()
 * (rust/timed_freeze_livepatch.rs) for every caller, and bdev_freeze()
 * (block/bdev.c) by tf_klp_bdev_freeze() below, which tells the former
 * which device a bdev_freeze() freezes.  This part is C because the
 * kernel crate has no abstraction for live patches: struct
 * klp_patch and its tables are static data that the livepatch core links
 * into its lists and its sysfs directory, written here with designated
 * initialisers as samples/livepatch/livepatch-sample.c writes them, and
 * MODULE_INFO(livepatch) is a macro.  The parameters are C too:
 * module_param_cb() is a macro, and the kernel crate's own module
 * parameters cannot be written at run time (their perm is 0), where an
 * administrator must be able to change or switch off the deadline without
 * unloading a live patch.  tf_klp_bdev_freeze() mirrors a C function
 * whose every step is a lock or atomic macro, beside the patch table; the
 * load-time check reads x86 machine code.
 *
 * The Rust side declares these functions in rust/timed_freeze_livepatch.rs.
 */

#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/blkdev.h>
#include <linux/compat.h>
#include <linux/ext4.h>
#include <linux/exfat.h>
#include <linux/f2fs.h>
#include <linux/fs.h>
#include <linux/kallsyms.h>
#include <linux/kernel.h>
#include <linux/kprobes.h>
#include <linux/livepatch.h>
#include <linux/module.h>
#include <linux/moduleparam.h>
#include <linux/sched.h>
#include <linux/string.h>
#include <linux/sysfs.h>
#include <linux/unaligned.h>
#include <asm/syscall.h>

/*
 * The load-time check below reads x86-64 call instructions, and the
 * shutdown test x86-64 system call numbers.
 */
#ifndef CONFIG_X86_64
#error "timed_freeze_livepatch supports x86-64 only"
#endif
/* The load-time check looks its entry points up with a kprobe (below). */
#ifndef CONFIG_KPROBES
#error "timed_freeze_livepatch needs CONFIG_KPROBES"
#endif

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
 * Whether the current task is in an FS_IOC_SHUTDOWN ioctl.  Every shutdown
 * that freezes through bdev_freeze() in 7.3 is that ioctl, under each
 * filesystem's own name for the same number (ext4, f2fs and exfat below;
 * xfs's XFS_IOC_GOINGDOWN and ntfs3's NTFS3_IOC_SHUTDOWN are private, and
 * rust/mirrors.txt fingerprints them with the shutdown functions; ntfs
 * uses FS_IOC_SHUTDOWN itself).  A
 * shutdown is what an administrator or a fencing agent asks for when things
 * are already wrong: its freeze must not give up, and xfs would even take a
 * failed one for success and skip the shutdown.  Told from the system call
 * the task entered the kernel with (its number and second argument, saved
 * at entry), so no list of functions that could be renamed or inlined.
 */
static_assert(EXT4_IOC_SHUTDOWN == FS_IOC_SHUTDOWN);
static_assert(F2FS_IOC_SHUTDOWN == FS_IOC_SHUTDOWN);
static_assert(EXFAT_IOC_SHUTDOWN == FS_IOC_SHUTDOWN);

bool tf_klp_in_shutdown_ioctl(void)
{
	struct pt_regs *regs;
	unsigned long args[6];
	long nr;

	if (current->flags & PF_KTHREAD)
		return false;
	regs = task_pt_regs(current);
	nr = syscall_get_nr(current, regs);
	if (in_ia32_syscall()) {
		if (nr != __NR_ia32_ioctl)
			return false;
	} else if (in_x32_syscall()) {
		if ((nr & ~__X32_SYSCALL_BIT) != __NR_x32_ioctl)
			return false;
	} else if (nr != __NR_ioctl) {
		return false;
	}
	syscall_get_arguments(current, regs, args);
	return (unsigned int)args[1] == FS_IOC_SHUTDOWN;
}

/*
 * The device the current task's bdev_freeze() is freezing, for
 * tf_klp_freeze_super(): fs_bdev_freeze() (fs/super.c) freezes every
 * superblock on the device and, when there are several, swallows the
 * failure of one; a deadline must not turn into such a success.  A klp
 * shadow variable of the task (livepatch's way of adding a field), set
 * around the holder's ->freeze() only.  Shadow ids are one namespace for
 * every live patch: ours spells "tfbdfz1".
 */
#define TF_KLP_SHADOW_BDEV_FREEZE	0x74666264667a31UL

/*
 * Whether the device the current task's bdev_freeze() freezes is claimed
 * by @sb itself: then no other active superblock is on it, and a failure
 * of @sb's freeze is bdev_freeze()'s.  fs_bdev_register() registers a
 * superblock on a device it has claimed, and a second holder's claim is
 * refused (bd_may_claim()).  sget_dev() registers a superblock under its
 * s_dev before the claim, but a second one there is not active yet and
 * its claim fails.  (An MTD superblock registers under its mtdblock
 * number without a claim; a filesystem that claims that mtdblock device
 * then shares it unseen here.  No freeze with a deadline reaches one in
 * 7.3: dm's lock_fs() freezes dm devices only.)  A device claimed for a
 * filesystem type, as EROFS claims the devices its images share, or no
 * device known (a bdev_freeze() that did not reach tf_klp_bdev_freeze(),
 * or no memory for the shadow variable): false.  The claim cannot change
 * meanwhile: @sb is active and holds the device open.
 */
bool tf_klp_bdev_freeze_is_sole(const struct super_block *sb)
{
	struct block_device **bdev;

	bdev = klp_shadow_get(current, TF_KLP_SHADOW_BDEV_FREEZE);
	return bdev && READ_ONCE((*bdev)->bd_holder) == sb;
}

/*
 * bdev_freeze() (block/bdev.c), step for step, with the shadow variable
 * around the holder's ->freeze().  A live patch cannot call the function it
 * replaces; rust/mirrors.txt fingerprints the original.  Difference: the
 * shadow variable, allocated before bd_holder_lock and freed after the
 * holder's ->freeze() (when it cannot be allocated, the freeze goes on
 * without it: no deadline for its superblocks, see above).
 */
int tf_klp_bdev_freeze(struct block_device *bdev)
{
	struct block_device **shadow;
	int error = 0;

	mutex_lock(&bdev->bd_fsfreeze_mutex);

	/* A device being removed from its filesystem refuses freezes. */
	if (!atomic_inc_unless_negative(&bdev->bd_fsfreeze_count)) {
		mutex_unlock(&bdev->bd_fsfreeze_mutex);
		return -EBUSY;
	}
	if (atomic_read(&bdev->bd_fsfreeze_count) > 1) {
		mutex_unlock(&bdev->bd_fsfreeze_mutex);
		return 0;
	}

	/* Ours: allocated before bd_holder_lock, which exclusive opens take. */
	shadow = klp_shadow_alloc(current, TF_KLP_SHADOW_BDEV_FREEZE, sizeof(*shadow),
				  GFP_KERNEL, NULL, NULL);
	if (shadow)
		*shadow = bdev;

	mutex_lock(&bdev->bd_holder_lock);
	if (bdev->bd_holder_ops && bdev->bd_holder_ops->freeze) {
		error = bdev->bd_holder_ops->freeze(bdev);
		lockdep_assert_not_held(&bdev->bd_holder_lock);
	} else {
		mutex_unlock(&bdev->bd_holder_lock);
		error = sync_blockdev(bdev);
	}

	if (shadow)
		klp_shadow_free(current, TF_KLP_SHADOW_BDEV_FREEZE, NULL);

	if (error)
		atomic_dec(&bdev->bd_fsfreeze_count);

	mutex_unlock(&bdev->bd_fsfreeze_mutex);
	return error;
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

/*
 * The load-time check: every freeze the module claims to cover reaches the
 * patched functions.
 *
 * A live patch redirects the patched function's own entry.  A caller that
 * the compiler gave a copy of it (GCC's clones: freeze_super.constprop.0,
 * .isra, .part) or into which it inlined it never gets there, and nothing
 * would say so.  So each entry point is looked up and its machine code
 * searched: the direct calls (and jumps) it makes are what reach the patch.
 * A static caller may itself be inlined into its callers, so an entry point
 * is a chain, innermost first, up to the system call or the exported
 * function that is always there: each function of it that exists must call
 * the one before it that exists (or the patched function itself), and none
 * may call a compiler's copy of either.
 *
 * What it does not cover: the kernel's own freezers (holders=kernel: xfs
 * scrub and media failure, f2fs resize, btrfs), whose code is in
 * filesystems that may be modules loaded at any time; one that reaches a
 * copy runs without a deadline, as without the module.  Device-mapper's
 * suspend is checked when dm is built in or loaded; a bdev_freeze() that
 * bypasses tf_klp_bdev_freeze() also runs without a deadline (see
 * tf_klp_bdev_freeze_is_sole()), never with a wrong one.
 */
struct tf_klp_entry {
	const char *what;		/* the freeze as a user knows it */
	const char *callee;		/* the patched function */
	const char *chain[5];		/* its caller, then that one's caller... */
	bool in_module;			/* may be in a module not loaded yet */
};

static const struct tf_klp_entry tf_klp_entries[] = {
	{ "FIFREEZE", "freeze_super",
	  { "ioctl_fsfreeze", "do_vfs_ioctl", "__se_sys_ioctl", "__x64_sys_ioctl" } },
#ifdef CONFIG_IA32_EMULATION
	{ "FIFREEZE (ia32)", "freeze_super",
	  { "ioctl_fsfreeze", "do_vfs_ioctl", "__se_compat_sys_ioctl",
	    "__ia32_compat_sys_ioctl" } },
#endif
#ifdef CONFIG_X86_X32_ABI
	{ "FIFREEZE (x32)", "freeze_super",
	  { "ioctl_fsfreeze", "do_vfs_ioctl", "__se_compat_sys_ioctl",
	    "__x64_compat_sys_ioctl" } },
#endif
	{ "bdev_freeze()", "freeze_super",
	  { "fs_super_freeze", "fs_bdev_freeze" } },
	{ "device-mapper suspend (LVM snapshots)", "bdev_freeze",
	  { "lock_fs", "__dm_suspend", "dm_suspend" }, .in_module = true },
};

/* For tests: one more "CALLER:CALLEE" to check at load (CALLEE patched). */
static char *tf_klp_check_also;
module_param_named(check_also, tf_klp_check_also, charp, 0);
MODULE_PARM_DESC(check_also,
		 "For tests: CALLER:CALLEE, checked at load as the entry points are (CALLEE: freeze_super or bdev_freeze)");

/*
 * The start and size of the function @name in *@start and *@size; 0, or
 * register_kprobe()'s error (-ENOENT: no such symbol).  The kernel exports
 * no lookup of a symbol's address to modules; registering a kprobe
 * resolves the name as kallsyms does, and it is removed at once, before
 * the patch is enabled.  The kprobe may sit past the function's first
 * instruction (an ENDBR): sprint_symbol() gives the offset and the size.
 */
static int tf_klp_lookup(const char *name, unsigned long *start, unsigned long *size)
{
	struct kprobe kp = { .symbol_name = name };
	char sym[KSYM_SYMBOL_LEN];
	unsigned long addr, off;
	const char *plus;
	int ret;

	ret = register_kprobe(&kp);
	if (ret)
		return ret;
	addr = (unsigned long)kp.addr;
	unregister_kprobe(&kp);

	/* "name+0x4/0x1a0" or "name+0x4/0x1a0 [module]" */
	sprint_symbol(sym, addr);
	plus = strrchr(sym, '+');
	if (!plus || strncmp(sym, name, plus - sym) || name[plus - sym] ||
	    sscanf(plus, "+%lx/%lx", &off, size) != 2 || off > addr)
		return -ENOENT;
	*start = addr - off;
	return 0;
}

/* x86-64: call, jmp and jcc with a 32-bit displacement. */
static unsigned int tf_klp_rel32_len(const u8 *p, unsigned long left)
{
	if (left >= 5 && (p[0] == 0xe8 || p[0] == 0xe9))
		return 5;
	if (left >= 6 && p[0] == 0x0f && (p[1] & 0xf0) == 0x80)
		return 6;
	return 0;
}

/*
 * The padding before a function, where call depth tracking's thunks are
 * (patched into the call sites at boot): emitted with CALL_PADDING only.
 */
#define TF_KLP_PADDING	(IS_ENABLED(CONFIG_CALL_PADDING) ? CONFIG_FUNCTION_PADDING_BYTES : 0)

/* Whether @dest is @fn, or the padding before it. */
static bool tf_klp_is_call_to(unsigned long dest, unsigned long fn)
{
	return dest + TF_KLP_PADDING >= fn && dest <= fn;
}

/* Whether @dest is the start of a compiler's copy of @name ("name.isra.0"). */
static bool tf_klp_is_copy_of(unsigned long dest, const char *name)
{
	char sym[KSYM_SYMBOL_LEN];
	size_t len = strlen(name);

	sprint_symbol(sym, dest);
	return !strncmp(sym, name, len) && sym[len] == '.' && strstr(sym, "+0x0/");
}

/*
 * What the code at @start, @size bytes, calls or jumps to: whether @target
 * or @alt (or the padding before either), in *@calls; the start of a copy
 * of @target_name or @alt_name, in *@copy (0: none).  Read byte by byte,
 * without decoding: a false match needs four bytes after an opcode byte to
 * encode exactly the distance to the function.
 */
static void tf_klp_scan(unsigned long start, unsigned long size,
			unsigned long target, const char *target_name,
			unsigned long alt, const char *alt_name,
			bool *calls, unsigned long *copy)
{
	const u8 *code = (const u8 *)start;
	unsigned long i, dest;
	unsigned int len;

	*calls = false;
	*copy = 0;
	for (i = 0; i < size; i++) {
		len = tf_klp_rel32_len(code + i, size - i);
		if (!len)
			continue;
		dest = start + i + len +
		       (long)(s32)get_unaligned((const u32 *)(code + i + len - 4));
		if (tf_klp_is_call_to(dest, target) || tf_klp_is_call_to(dest, alt))
			*calls = true;
		else if (!*copy && (tf_klp_is_copy_of(dest, target_name) ||
				    tf_klp_is_copy_of(dest, alt_name)))
			*copy = dest;
	}
}

static unsigned long tf_klp_patched(const char *name)
{
	if (!strcmp(name, "freeze_super"))
		return (unsigned long)freeze_super;
	if (!strcmp(name, "bdev_freeze"))
		return (unsigned long)bdev_freeze;
	return 0;
}

static int tf_klp_check_entry(const struct tf_klp_entry *e)
{
	unsigned long callee = tf_klp_patched(e->callee), start, size, copy;
	unsigned long inner = callee;
	const char *inner_name = e->callee;
	unsigned int i, found = 0;
	bool calls;
	int ret;

	if (!callee) {
		pr_err("%s: %s is not a function the live patch replaces; not loading\n",
		       e->what, e->callee);
		return -EINVAL;
	}
	for (i = 0; i < ARRAY_SIZE(e->chain) && e->chain[i]; i++) {
		ret = tf_klp_lookup(e->chain[i], &start, &size);
		if (ret == -ENOENT)
			continue;	/* inlined, or in a module not loaded */
		if (ret) {
			pr_err("%s: cannot look %s() up (%d); not loading\n", e->what,
			       e->chain[i], ret);
			return -EINVAL;
		}
		tf_klp_scan(start, size, inner, inner_name, callee, e->callee, &calls, &copy);
		if (copy) {
			pr_err("%s: %s() calls %pS, a compiler's copy of %s(), where the live patch would never be reached; not loading\n",
			       e->what, e->chain[i], (void *)copy, inner_name);
			return -EINVAL;
		}
		if (!calls) {
			pr_err("%s: %s() does not call %s(): it reaches a compiler's copy of it, an inlined body or another function, where the live patch would never be reached; not loading\n",
			       e->what, e->chain[i], inner_name);
			return -EINVAL;
		}
		inner = start;
		inner_name = e->chain[i];
		found++;
	}
	if (found)
		return 0;
	if (e->in_module) {
		pr_info("%s: %s() not found (module not loaded?); not checked\n",
			e->what, e->chain[0]);
		return 0;
	}
	pr_err("%s: none of the functions from %s() on found; cannot check it; not loading\n",
	       e->what, e->chain[0]);
	return -EINVAL;
}

/* The load-time check of every entry point, and of check_also. */
int tf_klp_check_entries(void)
{
	struct tf_klp_entry also = { .what = "check_also" };
	char buf[2 * KSYM_NAME_LEN], *colon;
	unsigned int i;
	int ret;

	for (i = 0; i < ARRAY_SIZE(tf_klp_entries); i++) {
		ret = tf_klp_check_entry(&tf_klp_entries[i]);
		if (ret)
			return ret;
	}
	if (!tf_klp_check_also)
		return 0;
	colon = strscpy(buf, tf_klp_check_also, sizeof(buf)) < 0 ? NULL :
		strchr(buf, ':');
	if (!colon) {
		pr_err("check_also=%s: not CALLER:CALLEE; not loading\n",
		       tf_klp_check_also);
		return -EINVAL;
	}
	*colon = '\0';
	also.chain[0] = buf;
	also.callee = colon + 1;
	return tf_klp_check_entry(&also);
}

int tf_klp_freeze_super(struct super_block *sb, enum freeze_holder who,
			const void *freeze_owner);

/* The replacements take what the originals take. */
static_assert(__same_type(&tf_klp_freeze_super, &freeze_super));
static_assert(__same_type(&tf_klp_bdev_freeze, &bdev_freeze));

static struct klp_func tf_klp_funcs[] = {
	{
		.old_name = "freeze_super",
		.new_func = tf_klp_freeze_super,
	}, {
		.old_name = "bdev_freeze",
		.new_func = tf_klp_bdev_freeze,
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
