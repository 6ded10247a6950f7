/*
 * prctl for creds.run: PR_SET_KEEPCAPS lets a forked child keep permitted
 * capabilities across setresuid() away from root, so a step can run as an
 * unprivileged uid that still holds a chosen capability set.
 */
#include <errno.h>
#include <unistd.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <linux/capability.h>

#include "aio_sys.h" /* lab_ret */

static long lab_prctl(int option, unsigned long arg2)
{
	return prctl(option, arg2, 0UL, 0UL, 0UL) < 0 ? -(long)errno : 0;
}

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

/* What Python calls (the cdef; compiled here, so checked against the definitions above). */
/* cdef: begin */
static long lab_capget(struct __user_cap_header_struct *hdr,
                struct __user_cap_data_struct *data);
static long lab_capset(struct __user_cap_header_struct *hdr,
                struct __user_cap_data_struct *data);
static long lab_gettid(void);
static long lab_prctl(int option, unsigned long arg2);
/* cdef: end */
