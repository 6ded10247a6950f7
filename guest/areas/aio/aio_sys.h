/*
 * Raw AIO syscall wrappers shared by aio.c (the aio.* ops) and race.h (the race
 * loops, also compiled alone by lab/bench/race.py): one definition, included by
 * both; lab_ret by the other areas' wrappers too.  Each returns the kernel's result
 * or -errno.  static inline: a file that uses only some of them compiles without
 * warnings.
 */
#ifndef LAB_AIO_SYS_H
#define LAB_AIO_SYS_H

#include <errno.h>
#include <time.h>
#include <unistd.h>
#include <sys/syscall.h>
#include <linux/aio_abi.h>

static inline long lab_ret(long r)
{
	return r < 0 ? -(long)errno : r;
}

static inline long lab_io_setup(unsigned nr_events, aio_context_t *ctxp)
{
	return lab_ret(syscall(__NR_io_setup, nr_events, ctxp));
}

static inline long lab_io_destroy(aio_context_t ctx)
{
	return lab_ret(syscall(__NR_io_destroy, ctx));
}

/* nr is a long on purpose: negative values must reach the kernel as-is. */
static inline long lab_io_submit(aio_context_t ctx, long nr, struct iocb **iocbpp)
{
	return lab_ret(syscall(__NR_io_submit, ctx, nr, iocbpp));
}

static inline long lab_io_cancel(aio_context_t ctx, struct iocb *iocb,
			  struct io_event *result)
{
	return lab_ret(syscall(__NR_io_cancel, ctx, iocb, result));
}

static inline long lab_io_getevents(aio_context_t ctx, long min_nr, long nr,
			     struct io_event *events, struct timespec *timeout)
{
	return lab_ret(syscall(__NR_io_getevents, ctx, min_nr, nr, events,
			       timeout));
}

/* What Python calls (the cdef; compiled here, so checked against the definitions above). */
/* cdef: begin */
static inline long lab_io_setup(unsigned nr_events, aio_context_t *ctxp);
static inline long lab_io_destroy(aio_context_t ctx);
static inline long lab_io_submit(aio_context_t ctx, long nr, struct iocb **iocbpp);
static inline long lab_io_cancel(aio_context_t ctx, struct iocb *iocb, struct io_event *result);
static inline long lab_io_getevents(aio_context_t ctx, long min_nr, long nr,
                      struct io_event *events, struct timespec *timeout);
/* cdef: end */

#endif /* LAB_AIO_SYS_H */
