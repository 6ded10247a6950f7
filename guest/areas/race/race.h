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
 * aio_sys.h (the aio area), not on aio.c: the benchmark compiles race_destroy_submit.c
 * with a plain main() to compare the agent's loop rate with a stand-alone
 * program's.  The agent builds all its C files as one translation unit, hence
 * the include guard, and the helpers are static inline so that a file using
 * only some of them compiles cleanly on its own.
 *
 * Each entry point returns 0 with the result filled in, or -errno when the
 * loop could not run at all (bad parameters, thread creation failed).
 *
 * A race test that never raced proves nothing, so every loop also measures
 * how often its racing calls were in the kernel at the same time, from
 * CLOCK_MONOTONIC reads taken just around each call (race_span).  The
 * racy part of these calls is their start (the context lookup, the kill of
 * the context); an io_destroy then sleeps for a grace period and the I/O,
 * and under TCG a sleeping thread lets the other vCPU run, so spans that
 * merely meet ("any_overlap") say little.  A round "overlapped" when one
 * racing call was already in the kernel as the other entered it
 * (race_inside_at), or when the later call won against the earlier one's
 * effect; what counts is said in each file.  The stamps come from
 * race_clock.h (the TSC where it agrees across vCPUs); a stamp's own cost,
 * plus the vCPUs' measured offset, is the margin on each side: less than
 * that could be the gap between the stamp and the syscall instruction.
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
#include "race_clock.h"

/*
 * The tail every race loop's result ends with (race.*, uring.sqe_double_read): how long
 * it ran, how much its racing calls overlapped and by which clock, how it drove its
 * threads, the first errno it did not expect.  The ops turn it into the same keys for
 * every loop (guest/areas/race/ops.py race_result).
 */
/* cdef: begin */
struct race_tail {
	uint64_t elapsed_ns;
	uint64_t timed_out;
	uint64_t overlap_rounds;
	uint64_t overlapped;
	uint64_t overlap_calls;
	uint64_t any_overlap;
	uint64_t clock_ns;
	uint64_t clock_tsc;
	uint64_t clock_res_ns;
	uint64_t opts;
	int64_t first_other_errno;
};
/* cdef: end */


#define RACE_MAX_THREADS 64
#define RACE_KIND_READ 1
#define RACE_KIND_WRITE 2
#define RACE_KIND_POLL 4
#define RACE_IO_SIZE 4096

/*
 * How the racing threads are driven (the opts argument of every loop); each
 * one is a technique for widening the window, measured on and off (see
 * scenarios/races/params.py for what each bought).
 *  PIN:   each thread bound to one vCPU, round robin, so the racers sit on
 *         different vCPUs instead of wherever the scheduler put them.
 *  SPIN:  rounds start at a spinning barrier: the last thread to arrive
 *         releases the others by a store they are polling, instead of a
 *         futex wake-up each (which under TCG lets one side start
 *         milliseconds after the other).
 *  YIELD: sched_yield() just before each racing call, so a thread that
 *         shares its vCPU with another racer lets that one reach its call.
 *  HAMMER: (race_concurrent_destroy.c only; the other loops refuse it) the
 *         racers call in a tight loop on a target the kernel cannot find yet,
 *         and one store makes it findable: no wake-up stands between the
 *         racers' starts (see that file).
 */
#define RACE_OPT_PIN 1
#define RACE_OPT_SPIN 2
#define RACE_OPT_YIELD 4
#define RACE_OPTS_ALL 7
#define RACE_OPT_HAMMER 8

/* Spin this many polls before yielding the vCPU to whoever shares it. */
#define RACE_SPIN_POLLS 4096

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

/* A call's time in the kernel, from stamps (race_clock.h) taken just around it. */
struct race_span {
	uint64_t t0;
	uint64_t t1;
};

/* The spans met: for longer than the margin, both calls were in the kernel. */
static inline int race_spans_meet(const struct race_span *a, const struct race_span *b,
				  uint64_t margin)
{
	uint64_t lo = a->t0 > b->t0 ? a->t0 : b->t0;
	uint64_t hi = a->t1 < b->t1 ? a->t1 : b->t1;

	return hi > lo + margin;
}

/*
 * The call of span a was in the kernel when another call entered at t: a
 * entered at most one margin after a->t0 and left at most one before
 * a->t1, the other entered within one after t.
 */
static inline int race_inside_at(const struct race_span *a, uint64_t t, uint64_t margin)
{
	return a->t0 + margin < t && t + 2 * margin < a->t1;
}

static inline void race_pre_call(unsigned opts)
{
	if (opts & RACE_OPT_YIELD)
		sched_yield();
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
static inline void race_pin(int index, unsigned opts)
{
	unsigned long mask[16] = { 0 };
	int cpu = index % race_cpus();

	if (!(opts & RACE_OPT_PIN) || cpu >= (int)(sizeof(mask) * 8))
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
 * A barrier that is a pthread barrier, or with RACE_OPT_SPIN one whose
 * waiters poll a generation count (and yield after RACE_SPIN_POLLS polls,
 * so a waiter does not starve a thread that shares its vCPU).
 */
struct race_barrier {
	pthread_barrier_t pb;
	unsigned n;
	unsigned count;
	unsigned gen;
	int spin;
};

static inline void race_barrier_init(struct race_barrier *b, unsigned n, unsigned opts)
{
	memset(b, 0, sizeof(*b));
	b->n = n;
	b->spin = !!(opts & RACE_OPT_SPIN);
	if (!b->spin)
		pthread_barrier_init(&b->pb, NULL, n);
}

static inline void race_barrier_wait(struct race_barrier *b)
{
	unsigned gen, polls = 0;

	if (!b->spin) {
		pthread_barrier_wait(&b->pb);
		return;
	}
	gen = __atomic_load_n(&b->gen, __ATOMIC_ACQUIRE);
	if (__atomic_add_fetch(&b->count, 1, __ATOMIC_ACQ_REL) == b->n) {
		__atomic_store_n(&b->count, 0, __ATOMIC_RELAXED);
		__atomic_store_n(&b->gen, gen + 1, __ATOMIC_RELEASE);
		return;
	}
	while (__atomic_load_n(&b->gen, __ATOMIC_ACQUIRE) == gen)
		if (++polls > RACE_SPIN_POLLS)
			sched_yield();
}

static inline void race_barrier_destroy(struct race_barrier *b)
{
	if (!b->spin)
		pthread_barrier_destroy(&b->pb);
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
