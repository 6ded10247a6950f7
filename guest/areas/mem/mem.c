/*
 * The agent's memory (guest/memory.py: mem.*, and every area's buffers): anonymous
 * mappings, their protection, and errno for the calls that return a pointer.
 */
#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/mman.h>
#include <sys/uio.h>

#include "aio_sys.h" /* lab_ret */

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

/* What Python calls (the cdef; compiled here, so checked against the definitions above). */
/* cdef: begin */
static uintptr_t lab_map(size_t len, int prot);
static uintptr_t lab_map_at(uintptr_t addr, size_t len, int prot);
static long lab_mprotect(uintptr_t addr, size_t len, int prot);
static long lab_munmap(uintptr_t addr, size_t len);
static long lab_errno(void);
/* cdef: end */
