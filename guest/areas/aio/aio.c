/*
 * Raw syscall wrappers for the kernel-lab guest agent.
 *
 * Everything goes through syscall(__NR_...) rather than libaio or libcap:
 * the lab tests the kernel's own argument handling, so no library may
 * validate, retry or rewrite arguments on the way in.  Each wrapper returns
 * the kernel's result, or -errno on failure, so the Python side can turn a
 * negative value into OSError without consulting a thread-local errno.
 */
#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>
#include <unistd.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <linux/aio_abi.h>
#include <linux/capability.h>

#include "aio_sys.h"

/*
 * capget/capset with header.pid == 0 act on the calling thread only.
 * glibc's cap_set_proc-style helpers may broadcast credential changes to
 * every thread (setxid signalling); the raw syscall does not.
 */
static long lab_capget(struct __user_cap_header_struct *hdr,
		       struct __user_cap_data_struct *data)
{
	return lab_ret(syscall(__NR_capget, hdr, data));
}

static long lab_capset(struct __user_cap_header_struct *hdr,
		       struct __user_cap_data_struct *data)
{
	return lab_ret(syscall(__NR_capset, hdr, data));
}

static long lab_gettid(void)
{
	return lab_ret(syscall(__NR_gettid));
}

static long lab_eventfd2(unsigned initval, int flags)
{
	return lab_ret(syscall(__NR_eventfd2, initval, flags));
}

/*
 * Anonymous mappings back agent memory (mem.alloc, guard pages, fault
 * pages): unlike heap memory, an unmapped buffer makes late kernel writes
 * fail with EFAULT instead of corrupting the interpreter's heap.
 */
static uintptr_t lab_map(size_t len, int prot)
{
	void *p = mmap(NULL, len, prot, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

	return p == MAP_FAILED ? 0 : (uintptr_t)p;
}

/*
 * A mapping at an exact address that must be free (MAP_FIXED_NOREPLACE, 4.17): a forked
 * child puts a copy of its parent's AIO ring header where the ring was, to ask the
 * kernel about the parent's context with a readable header.  0 if the address is taken.
 */
static uintptr_t lab_map_at(uintptr_t addr, size_t len, int prot)
{
	void *p = mmap((void *)addr, len, prot,
		       MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);

	return p == MAP_FAILED ? 0 : (uintptr_t)p;
}

static long lab_mprotect(uintptr_t addr, size_t len, int prot)
{
	return lab_ret(mprotect((void *)addr, len, prot));
}

static long lab_munmap(uintptr_t addr, size_t len)
{
	return lab_ret(munmap((void *)addr, len));
}

static long lab_errno(void)
{
	return errno;
}
