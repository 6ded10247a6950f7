/*
 * raw.c: one generic syscall entry for sys.syscall.  The typed wrappers of the
 * other areas validate and marshal their arguments; this one passes integers
 * straight to the kernel, so a scenario can reach a syscall that has no
 * wrapper or whose wrapper would refuse to run (io_uring_setup on a kernel
 * built without io_uring, where only the ENOSYS matters).
 */
#include <errno.h>
#include <unistd.h>
#include <sys/syscall.h>

static long lab_raw_syscall(long nr, long a1, long a2, long a3, long a4, long a5, long a6)
{
	long ret = syscall(nr, a1, a2, a3, a4, a5, a6);

	return ret < 0 ? -(long)errno : ret;
}

/* What Python calls (the cdef; compiled here, so checked against the definitions above). */
/* cdef: begin */
static long lab_raw_syscall(long nr, long a1, long a2, long a3, long a4, long a5, long a6);
/* cdef: end */
