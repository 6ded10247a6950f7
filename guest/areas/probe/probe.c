/*
 * probe.c: the uapi constants the feature probes use (probe.cdef), from the build
 * host's headers.  A flag newer than those headers (Debian 12's are 6.1) is spelled
 * out under #ifndef with the release that added it; on a kernel of that release or
 * later the probe must find it (tests/test_probe_local.py), which checks the value.
 */
#include <linux/fs.h>
#include <linux/io_uring.h>

#ifndef RWF_ATOMIC
#define RWF_ATOMIC 0x00000040 /* Linux 6.11: include/uapi/linux/fs.h, atomic writes */
#endif
#ifndef RWF_DONTCACHE
#define RWF_DONTCACHE 0x00000080 /* Linux 6.14: include/uapi/linux/fs.h, uncached I/O */
#endif
