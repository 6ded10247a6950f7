/*
 * Race loops for the kernel-lab agent: io_destroy against io_submit,
 * io_getevents, io_setup and itself, run by pthreads pinned across the vCPUs.
 *
 * Python threads cannot race the kernel: the GIL and the interpreter's
 * per-call overhead leave windows of milliseconds between two syscalls.
 * These loops keep everything in C and only hand back counts of each
 * outcome and timings.  Every loop is bounded twice, by iterations and by a
 * deadline, so a slow TCG guest ends a run early instead of overrunning the
 * host's timeout; only a syscall stuck in the kernel can keep one running.
 *
 * One file per loop (race_*.c), sharing this header.  They depend only on
 * aio_sys.h, not on labsys.c: the benchmark compiles race_destroy_submit.c
 * with a plain main() to compare the agent's loop rate with a stand-alone
 * program's.  The agent builds all its C files as one translation unit, hence
 * the include guard, and the helpers are static inline so that a file using
 * only some of them compiles cleanly on its own.
 *
 * Each entry point returns 0 with the result filled in, or -errno when the
 * loop could not run at all (bad parameters, thread creation failed).
 */

#ifndef LAB_RACE_H
#define LAB_RACE_H

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <linux/aio_abi.h>

#include "aio_sys.h"


#define RACE_MAX_THREADS 64
#define RACE_KIND_READ 1
#define RACE_KIND_WRITE 2
#define RACE_KIND_POLL 4
#define RACE_IO_SIZE 4096

/* ------------------------------------------------------------ helpers */

/* A fresh slot each time: io_setup insists on a zeroed one. */
static inline long race_io_setup(unsigned nr, aio_context_t *ctx)
{
	*ctx = 0;
	return lab_io_setup(nr, ctx);
}

static inline long race_io_getevents_now(aio_context_t ctx, struct io_event *ev, long nr)
{
	struct timespec zero = { 0, 0 };

	return lab_io_getevents(ctx, 0L, nr, ev, &zero);
}

static inline uint64_t race_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static inline uint64_t race_rand(uint64_t *s)
{
	/* xorshift64: per-thread, seedable, no libc state shared between threads */
	*s ^= *s << 13;
	*s ^= *s >> 7;
	*s ^= *s << 17;
	return *s;
}

static inline int race_cpus(void)
{
	long n = sysconf(_SC_NPROCESSORS_ONLN);

	return n < 1 ? 1 : (int)n;
}

/*
 * The raw syscall with pid 0 pins the calling thread only, and needs no
 * _GNU_SOURCE (pthread_setaffinity_np and CPU_SET do).
 */
static inline void race_pin(int index)
{
	unsigned long mask[16] = { 0 };
	int cpu = index % race_cpus();

	if (cpu >= (int)(sizeof(mask) * 8))
		return;
	mask[cpu / (8 * sizeof(long))] |= 1UL << (cpu % (8 * sizeof(long)));
	syscall(__NR_sched_setaffinity, 0, sizeof(mask), mask);
}

/* Non-blocking eventfd read: the count since the last read, 0 if none. */
static inline uint64_t race_efd_take(int efd)
{
	uint64_t v = 0;

	if (read(efd, &v, sizeof(v)) != (ssize_t)sizeof(v))
		return 0;
	return v;
}

static inline int race_eventfd(void)
{
	return (int)lab_ret(syscall(__NR_eventfd2, 0, O_NONBLOCK | O_CLOEXEC));
}

static inline void race_add(uint64_t *p, uint64_t v)
{
	__atomic_add_fetch(p, v, __ATOMIC_RELAXED);
}

static inline void race_note_errno(int64_t *slot, long err)
{
	int64_t zero = 0;

	__atomic_compare_exchange_n(slot, &zero, (int64_t)-err, 0,
				    __ATOMIC_RELAXED, __ATOMIC_RELAXED);
}

static inline void race_max(uint64_t *p, uint64_t v)
{
	if (v > *p)
		*p = v;
}

static inline void *race_map(size_t len)
{
	void *p = mmap(NULL, len, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

	return p == MAP_FAILED ? NULL : p;
}

/*
 * Start n threads on fn(arg_i).  They wait at a gate until all exist: the
 * loops use barriers sized n, so if one pthread_create fails, the others
 * must leave before their first barrier instead of waiting there forever.
 */
struct race_gate {
	pthread_mutex_t lock;
	pthread_cond_t cond;
	int state; /* 0 wait, 1 go, -1 abandon */
};

struct race_tramp {
	struct race_gate *gate;
	void *(*fn)(void *);
	void *arg;
};

static inline void *race_tramp_fn(void *p)
{
	struct race_tramp *t = p;
	int state;

	pthread_mutex_lock(&t->gate->lock);
	while ((state = t->gate->state) == 0)
		pthread_cond_wait(&t->gate->cond, &t->gate->lock);
	pthread_mutex_unlock(&t->gate->lock);
	return state > 0 ? t->fn(t->arg) : NULL;
}

static inline long race_run_threads(int n, void *(*fn)(void *), void *args,
			     size_t arg_size)
{
	pthread_t tids[RACE_MAX_THREADS];
	struct race_tramp tramps[RACE_MAX_THREADS];
	struct race_gate gate = { PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0 };
	int i, err = 0;

	for (i = 0; i < n; i++) {
		tramps[i] = (struct race_tramp){ &gate, fn, (char *)args + i * arg_size };
		err = pthread_create(&tids[i], NULL, race_tramp_fn, &tramps[i]);
		if (err)
			break;
	}
	pthread_mutex_lock(&gate.lock);
	gate.state = err ? -1 : 1;
	pthread_cond_broadcast(&gate.cond);
	pthread_mutex_unlock(&gate.lock);
	for (int j = 0; j < i; j++)
		pthread_join(tids[j], NULL);
	return err ? -err : 0;
}

#endif /* LAB_RACE_H */
