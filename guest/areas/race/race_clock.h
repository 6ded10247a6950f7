/*
 * Stamps for the race loops' spans (race.h): when each racing call entered
 * and left the kernel, comparable across vCPUs.
 *
 * CLOCK_MONOTONIC is not always fine enough.  Under TCG the lab's base build
 * has neither HPET nor a PIT to calibrate the TSC against, so the kernel
 * runs on refined-jiffies and CLOCK_MONOTONIC moves in 4 ms steps; Debian's
 * kernels use HPET, and a read costs 1-30 us of emulated MMIO there.  The
 * TSC under TCG is the host's, the same on every vCPU, and costs about 40 ns
 * to read; the kernel calls it unsynchronized only because the emulated CPU
 * does not claim an invariant TSC.  So the stamps are TSC ticks when a
 * ping-pong between two vCPUs finds no reading going backwards, else
 * CLOCK_MONOTONIC nanoseconds; every loop reports which (clock_tsc), what a
 * stamp costs (clock_ns) and how fine the clock is (clock_res_ns).
 */

#ifndef LAB_RACE_CLOCK_H
#define LAB_RACE_CLOCK_H

#include <pthread.h>
#include <sched.h>
#include <stdint.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>
#include <sys/syscall.h>

#if defined(__x86_64__) || defined(__i386__)
#include <x86intrin.h>
#define RACE_HAVE_TSC 1
#else
#define RACE_HAVE_TSC 0
#endif

static inline uint64_t race_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* 1: stamps are TSC ticks, -1: CLOCK_MONOTONIC, 0: not decided yet. */
static int race_tsc_mode;

static inline uint64_t race_tsc(void)
{
#if RACE_HAVE_TSC
	uint64_t t;

	/* fenced: not read before the instructions ahead, nor after those behind */
	_mm_lfence();
	t = __rdtsc();
	_mm_lfence();
	return t;
#else
	return race_now();
#endif
}

static inline uint64_t race_stamp(void)
{
	return __atomic_load_n(&race_tsc_mode, __ATOMIC_RELAXED) > 0 ? race_tsc() : race_now();
}

static inline int race_cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

/* ---- is the TSC the same on every vCPU? */

#define RACE_TSC_TRIPS 64
#define RACE_TSC_BOUND_NS 300000000ull /* the probe gives up after 0.3 s */

/*
 * A ping-pong between two vCPUs, as NTP measures a clock: side 0 sends its
 * stamp t0, side 1 answers with its own t1 on receipt, side 0 stamps t2 on
 * the answer.  t1 - t0 and t2 - t1 must never be negative; the trip with the
 * shortest t2 - t0 estimates the offset as ((t1 - t0) - (t2 - t1)) / 2.
 */
struct race_tsc_probe {
	uint64_t slot;
	int turn; /* whose move: 0 or 1 */
	int cpu[2];
	int backwards;
	int trips;
	uint64_t best_rtt;
	int64_t offset; /* estimated at the shortest trip */
	uint64_t deadline;
};

/*
 * Wait for our turn: spin (looking at the time only now and then: a clock
 * read may be a syscall), then sleep, which under single-threaded TCG hands
 * the host thread to the other vCPU.
 */
static inline int race_tsc_wait(struct race_tsc_probe *p, int me)
{
	for (unsigned polls = 0; __atomic_load_n(&p->turn, __ATOMIC_ACQUIRE) != me; polls++) {
		struct timespec nap = { 0, 20000 };

		if (polls % 1024 == 0 && race_now() > p->deadline)
			return 0;
		if (polls > 100000)
			nanosleep(&nap, NULL);
	}
	return 1;
}

static inline void *race_tsc_side(void *arg)
{
	struct race_tsc_probe *p = ((struct race_tsc_probe **)arg)[0];
	int me = (int)(intptr_t)((void **)arg)[1];
	unsigned long mask[16] = { 0 };

	mask[p->cpu[me] / (8 * sizeof(long))] |= 1UL << (p->cpu[me] % (8 * sizeof(long)));
	syscall(__NR_sched_setaffinity, 0, sizeof(mask), mask);
	for (int i = 0; i < RACE_TSC_TRIPS; i++) {
		uint64_t t0, t1, t2;

		if (!race_tsc_wait(p, me))
			break;
		if (me == 1) {
			t1 = race_tsc();
			if (t1 < __atomic_load_n(&p->slot, __ATOMIC_ACQUIRE))
				p->backwards = 1;
			__atomic_store_n(&p->slot, t1, __ATOMIC_RELEASE);
			__atomic_store_n(&p->turn, 0, __ATOMIC_RELEASE);
			continue;
		}
		t0 = race_tsc();
		__atomic_store_n(&p->slot, t0, __ATOMIC_RELEASE);
		__atomic_store_n(&p->turn, 1, __ATOMIC_RELEASE);
		if (!race_tsc_wait(p, 0))
			break;
		t2 = race_tsc();
		t1 = __atomic_load_n(&p->slot, __ATOMIC_ACQUIRE);
		if (t2 < t1)
			p->backwards = 1;
		else if (t2 - t0 < p->best_rtt) {
			p->best_rtt = t2 - t0;
			p->offset = ((int64_t)(t1 - t0) - (int64_t)(t2 - t1)) / 2;
		}
		p->trips++;
	}
	__atomic_store_n(&p->turn, !me, __ATOMIC_RELEASE); /* never leave the other waiting */
	return NULL;
}

/*
 * Ping-pong the TSC between CPU 0 and every other online CPU (up to 8):
 * 1 if no reading ever went backwards and enough trips were made.  Under TCG
 * the TSC is the host's on every vCPU (the guest never writes it), so this
 * guards against a TSC that does differ between CPUs elsewhere.  *offset is
 * the largest offset estimated by a trip short enough to tell (at most
 * RACE_TSC_TELLING stamp costs): under single-threaded TCG every trip waits
 * for the host thread to switch vCPUs, milliseconds either way, and the
 * estimate says nothing there.
 */
#define RACE_TSC_TELLING 256

static inline int race_tsc_consistent(uint64_t *offset, uint64_t cost)
{
	long ncpu = sysconf(_SC_NPROCESSORS_ONLN);

	*offset = 0;
	if (!RACE_HAVE_TSC)
		return 0;
	for (int k = 1; k < ncpu && k < 8; k++) {
		struct race_tsc_probe p = { 0, 0, { 0, k }, 0, 0, UINT64_MAX, 0, 0 };
		void *args[2][2] = { { &p, (void *)0 }, { &p, (void *)1 } };
		pthread_t t[2];
		uint64_t off;

		p.deadline = race_now() + RACE_TSC_BOUND_NS;
		if (pthread_create(&t[0], NULL, race_tsc_side, args[0]))
			return 0;
		if (pthread_create(&t[1], NULL, race_tsc_side, args[1])) {
			p.deadline = 0;
			pthread_join(t[0], NULL);
			return 0;
		}
		pthread_join(t[0], NULL);
		pthread_join(t[1], NULL);
		if (p.backwards || p.trips < RACE_TSC_TRIPS / 4)
			return 0;
		off = (uint64_t)llabs(p.offset);
		if (p.best_rtt <= RACE_TSC_TELLING * cost && off > *offset)
			*offset = off;
	}
	return 1;
}

/* ---- the clock of one loop run */

struct race_clock {
	int tsc;
	uint64_t margin;  /* stamp units: a read's cost plus the vCPUs' estimated offset */
	uint64_t res_ns;  /* the clock's step (CLOCK_MONOTONIC) or a read's cost (TSC) */
	uint64_t mono0;   /* for stamps -> ns: both clocks at the start */
	uint64_t stamp0;
};

static uint64_t race_tsc_offset;

/* Decide once per process which clock stamps (the answer does not change within a boot). */
static inline void race_clock_pick(void)
{
	static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;

	pthread_mutex_lock(&lock);
	if (!race_tsc_mode) {
		uint64_t d[31];

		for (int i = 0; i < 31; i++) {
			uint64_t a = race_tsc();

			d[i] = race_tsc() - a;
		}
		qsort(d, 31, sizeof(d[0]), race_cmp_u64);
		__atomic_store_n(&race_tsc_mode,
				 race_tsc_consistent(&race_tsc_offset, d[15] ? d[15] : 1) ? 1 : -1,
				 __ATOMIC_RELAXED);
	}
	pthread_mutex_unlock(&lock);
}

/* The median gap between back-to-back stamps: within it, order is unknowable. */
static inline uint64_t race_stamp_cost(void)
{
	uint64_t d[31];

	for (int i = 0; i < 31; i++) {
		uint64_t a = race_stamp();

		d[i] = race_stamp() - a;
	}
	qsort(d, 31, sizeof(d[0]), race_cmp_u64);
	return d[15] ? d[15] : 1;
}

/* CLOCK_MONOTONIC's smallest step, looked for for at most 50 ms. */
static inline uint64_t race_mono_step(void)
{
	uint64_t best = UINT64_MAX, give_up = race_now() + 50000000ull;

	for (int i = 0; i < 16; i++) {
		uint64_t a = race_now(), b;

		while ((b = race_now()) == a && b < give_up)
			;
		if (b == a)
			break;
		if (b - a < best)
			best = b - a;
	}
	return best == UINT64_MAX ? 50000000ull : best;
}

static inline void race_clock_start(struct race_clock *c)
{
	race_clock_pick();
	c->tsc = race_tsc_mode > 0;
	c->margin = race_stamp_cost() + (c->tsc ? race_tsc_offset : 0);
	c->res_ns = c->tsc ? 0 : race_mono_step();
	c->mono0 = race_now();
	c->stamp0 = race_stamp();
}

/* Stamp units in ns, by the ratio of the two clocks since race_clock_start. */
static inline uint64_t race_clock_ns_of(const struct race_clock *c, uint64_t stamps)
{
	uint64_t dm, ds;

	if (!c->tsc)
		return stamps;
	dm = race_now() - c->mono0;
	ds = race_stamp() - c->stamp0;
	return ds ? (uint64_t)((double)stamps * (double)dm / (double)ds) : stamps;
}

/* Fill a result's clock fields: which clock, a stamp's cost and the clock's step. */
static inline void race_clock_report(const struct race_clock *c, uint64_t *tsc,
				     uint64_t *cost_ns, uint64_t *res_ns)
{
	*tsc = (uint64_t)c->tsc;
	*cost_ns = race_clock_ns_of(c, c->margin);
	*res_ns = c->tsc ? *cost_ns : c->res_ns;
}

#endif /* LAB_RACE_CLOCK_H */
