/*
 * Raw AIO syscall wrappers for the aio.* ops, defined once in aio_sys.h (the race loops
 * include it too, and lab/bench/race.py compiles one of them alone).
 *
 * Everything goes through syscall(__NR_...) rather than libaio or libcap:
 * the lab tests the kernel's own argument handling, so no library may
 * validate, retry or rewrite arguments on the way in.  Each wrapper returns
 * the kernel's result, or -errno on failure, so the Python side can turn a
 * negative value into OSError without consulting a thread-local errno.
 */
#include <linux/aio_abi.h>

#include "aio_sys.h"
