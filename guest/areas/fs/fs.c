/*
 * fs.eventfd's syscall, raw (glibc's eventfd() is the same call, but the lab passes the
 * kernel whatever flags the test names, unchecked), and <linux/fs.h> for the inode flag
 * ioctls fs.inode_flags issues from Python (its constants come from here: fs.cdef).
 */
#include <errno.h>
#include <unistd.h>
#include <sys/syscall.h>
#include <linux/fs.h>

#include "aio_sys.h" /* lab_ret */

static long lab_eventfd2(unsigned initval, int flags)
{
	return lab_ret(syscall(__NR_eventfd2, initval, flags));
}

/* What Python calls (the cdef; compiled here, so checked against the definitions above). */
/* cdef: begin */
static long lab_eventfd2(unsigned initval, int flags);
/* cdef: end */
