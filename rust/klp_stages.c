// SPDX-License-Identifier: GPL-2.0
/*
 * rust/stages.c for timed_freeze_livepatch: Kbuild builds an object for one
 * module only, and this one is built with that module's KBUILD_MODNAME
 * (its debugfs directory, its module reference).
 */
#include "stages.c"
