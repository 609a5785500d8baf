/* SPDX-License-Identifier: GPL-2.0 */
/*
 * The stock path's expected failure (XFAIL_ADD), told apart from any other
 * failure of the same case.  A case that shows the stock freeze wedging
 * calls tf_wedged() where it saw the freeze not return, rescues the
 * system and checks it as usual; its fixture's teardown calls
 * tf_end_wedged().  The case then fails there, only when every other check
 * passed, with the reason "wedged: ...", which selftests/run requires of
 * our XFAILs: a case that failed anywhere else (its set-up, the rescue,
 * the data) reports "XFAIL unknown", and counts as a failure.
 */
#ifndef TF_WEDGE_H
#define TF_WEDGE_H

#include <stdio.h>

#include "kselftest_harness.h"

/* Each case runs in a process of its own: this starts empty in each. */
static char tf_wedge[128];

#define tf_wedged(fmt, ...) \
	snprintf(tf_wedge, sizeof(tf_wedge), "wedged: " fmt, ##__VA_ARGS__)

static inline void tf_end_wedged(struct __test_metadata *_metadata)
{
	if (!tf_wedge[0] || _metadata->exit_code != KSFT_PASS)
		return;
	snprintf(_metadata->results->reason, sizeof(_metadata->results->reason), "%s",
		 tf_wedge);
	_metadata->exit_code = KSFT_FAIL;
}

#endif /* TF_WEDGE_H */
