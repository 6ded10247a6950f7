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
 * Depends only on aio_sys.h (not on labsys.c): the benchmark compiles this
 * file with a plain main() to compare the agent's loop rate with a
 * stand-alone program's.
 *
 * Each entry point returns 0 with the result filled in, or -errno when the
 * loop could not run at all (bad parameters, thread creation failed).
 */
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

struct race_dvs_result {
	uint64_t iterations;
	uint64_t elapsed_ns;
	uint64_t timed_out;
	uint64_t cpus;
	uint64_t submit_ok;
	uint64_t submit_read;
	uint64_t submit_write;
	uint64_t submit_poll;
	uint64_t submit_einval;
	uint64_t submit_eagain;
	uint64_t submit_other;
	uint64_t getevents_ok;
	uint64_t getevents_einval;
	uint64_t getevents_other;
	uint64_t reaped;
	uint64_t destroy_ok;
	uint64_t destroy_other;
	uint64_t completed_by_destroy;
	uint64_t late_completions;
	uint64_t unexplained_completions;
	uint64_t bad_iterations;
	uint64_t destroy_ns_total;
	uint64_t destroy_ns_max;
	int64_t first_other_errno;
};

struct race_cd_result {
	uint64_t iterations;
	uint64_t elapsed_ns;
	uint64_t timed_out;
	uint64_t cpus;
	uint64_t destroy_ok;
	uint64_t destroy_einval;
	uint64_t destroy_other;
	uint64_t no_winner;
	uint64_t many_winners;
	uint64_t polls_submitted;
	uint64_t destroy_ns_total;
	uint64_t destroy_ns_max;
	int64_t first_other_errno;
};

struct race_svd_result {
	uint64_t iterations;
	uint64_t elapsed_ns;
	uint64_t timed_out;
	uint64_t cpus;
	uint64_t setup_ok;
	uint64_t setup_eagain;
	uint64_t setup_other;
	uint64_t destroy_ok;
	uint64_t destroy_einval;
	uint64_t destroy_other;
	uint64_t final_destroy_ok;
	uint64_t final_destroy_failed;
	uint64_t submit_ok;
	uint64_t submit_einval;
	uint64_t submit_eagain;
	uint64_t submit_other;
	uint64_t getevents_ok;
	uint64_t getevents_einval;
	uint64_t getevents_other;
	uint64_t lookups_idle;
	int64_t first_other_errno;
};

struct race_buf_result {
	uint64_t iterations;
	uint64_t elapsed_ns;
	uint64_t timed_out;
	uint64_t submitted;
	uint64_t pending_at_destroy;
	uint64_t completed_by_destroy;
	uint64_t unfinished_at_destroy;
	uint64_t modified_after_destroy;
	uint64_t late_completions;
	uint64_t destroy_ns_total;
	uint64_t destroy_ns_min;
	uint64_t destroy_ns_max;
	int64_t first_other_errno;
};

/* ------------------------------------------------------------ helpers */

/* A fresh slot each time: io_setup insists on a zeroed one. */
static long race_io_setup(unsigned nr, aio_context_t *ctx)
{
	*ctx = 0;
	return lab_io_setup(nr, ctx);
}

static long race_io_getevents_now(aio_context_t ctx, struct io_event *ev, long nr)
{
	struct timespec zero = { 0, 0 };

	return lab_io_getevents(ctx, 0L, nr, ev, &zero);
}

static uint64_t race_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static uint64_t race_rand(uint64_t *s)
{
	/* xorshift64: per-thread, seedable, no libc state shared between threads */
	*s ^= *s << 13;
	*s ^= *s >> 7;
	*s ^= *s << 17;
	return *s;
}

static int race_cpus(void)
{
	long n = sysconf(_SC_NPROCESSORS_ONLN);

	return n < 1 ? 1 : (int)n;
}

/*
 * The raw syscall with pid 0 pins the calling thread only, and needs no
 * _GNU_SOURCE (pthread_setaffinity_np and CPU_SET do).
 */
static void race_pin(int index)
{
	unsigned long mask[16] = { 0 };
	int cpu = index % race_cpus();

	if (cpu >= (int)(sizeof(mask) * 8))
		return;
	mask[cpu / (8 * sizeof(long))] |= 1UL << (cpu % (8 * sizeof(long)));
	syscall(__NR_sched_setaffinity, 0, sizeof(mask), mask);
}

/* Non-blocking eventfd read: the count since the last read, 0 if none. */
static uint64_t race_efd_take(int efd)
{
	uint64_t v = 0;

	if (read(efd, &v, sizeof(v)) != (ssize_t)sizeof(v))
		return 0;
	return v;
}

static int race_eventfd(void)
{
	return (int)lab_ret(syscall(__NR_eventfd2, 0, O_NONBLOCK | O_CLOEXEC));
}

static void race_add(uint64_t *p, uint64_t v)
{
	__atomic_add_fetch(p, v, __ATOMIC_RELAXED);
}

static void race_note_errno(int64_t *slot, long err)
{
	int64_t zero = 0;

	__atomic_compare_exchange_n(slot, &zero, (int64_t)-err, 0,
				    __ATOMIC_RELAXED, __ATOMIC_RELAXED);
}

static void race_max(uint64_t *p, uint64_t v)
{
	if (v > *p)
		*p = v;
}

static void *race_map(size_t len)
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

static void *race_tramp_fn(void *p)
{
	struct race_tramp *t = p;
	int state;

	pthread_mutex_lock(&t->gate->lock);
	while ((state = t->gate->state) == 0)
		pthread_cond_wait(&t->gate->cond, &t->gate->lock);
	pthread_mutex_unlock(&t->gate->lock);
	return state > 0 ? t->fn(t->arg) : NULL;
}

static long race_run_threads(int n, void *(*fn)(void *), void *args,
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

/* ------------------------------------------- io_destroy vs io_submit */

struct race_dvs_shared {
	int submitters;
	unsigned nr_events;
	unsigned kinds;
	unsigned polls_per_iter;
	unsigned max_target;
	uint64_t iterations;
	uint64_t deadline;
	uint64_t wait_ns;
	uint64_t seed;
	int fd;
	int pipe_rd;
	int efd;
	uint64_t write_offset;
	char *bufs;
	pthread_barrier_t start;
	pthread_barrier_t end;
	aio_context_t ctx;
	int stop;
	uint64_t iter_ok;
	struct race_dvs_result *out;
};

struct race_dvs_arg {
	struct race_dvs_shared *sh;
	int index; /* 0: the destroyer, 1..: submitters */
};

static void race_dvs_fill(struct race_dvs_shared *sh, int t, unsigned kind,
			  struct iocb *cb)
{
	memset(cb, 0, sizeof(*cb));
	cb->aio_data = kind;
	cb->aio_flags = IOCB_FLAG_RESFD;
	cb->aio_resfd = (uint32_t)sh->efd;
	if (kind == RACE_KIND_POLL) {
		cb->aio_lio_opcode = IOCB_CMD_POLL;
		cb->aio_fildes = (uint32_t)sh->pipe_rd;
		cb->aio_buf = POLLIN;
		return;
	}
	cb->aio_lio_opcode = kind == RACE_KIND_READ ? IOCB_CMD_PREAD : IOCB_CMD_PWRITE;
	cb->aio_fildes = (uint32_t)sh->fd;
	cb->aio_buf = (uint64_t)(uintptr_t)(sh->bufs + (size_t)t * RACE_IO_SIZE);
	cb->aio_nbytes = RACE_IO_SIZE;
	/* reads spread over the first MiBs, writes only inside the scratch area */
	cb->aio_offset = kind == RACE_KIND_READ ? (int64_t)t << 20
			 : (int64_t)(sh->write_offset + (uint64_t)t * RACE_IO_SIZE);
}

static unsigned race_dvs_kind(struct race_dvs_shared *sh, unsigned *turn,
			      unsigned polls)
{
	static const unsigned order[] = { RACE_KIND_READ, RACE_KIND_WRITE, RACE_KIND_POLL };

	for (int tries = 0; tries < 3; tries++) {
		unsigned k = order[(*turn)++ % 3];

		if (!(sh->kinds & k))
			continue;
		if (k == RACE_KIND_POLL && polls >= sh->polls_per_iter)
			continue;
		return k;
	}
	return 0; /* only polls enabled and this iteration's share is used */
}

/* Submit until the context dies; reap on EAGAIN so the ring never stays full. */
static void race_dvs_submit_round(struct race_dvs_shared *sh, int t, uint64_t *rng)
{
	struct race_dvs_result *o = sh->out;
	aio_context_t ctx = sh->ctx;
	struct io_event ev[16];
	struct iocb cb, *cbp = &cb;
	unsigned turn = (unsigned)race_rand(rng), polls = 0;

	for (;;) {
		unsigned kind = race_dvs_kind(sh, &turn, polls);
		long r;

		if (kind == 0) {
			r = lab_io_submit(ctx, 0, &cbp); /* a lookup, nothing queued */
			if (r == -EINVAL) {
				race_add(&o->submit_einval, 1);
				return;
			}
			continue;
		}
		race_dvs_fill(sh, t, kind, &cb);
		r = lab_io_submit(ctx, 1, &cbp);
		if (r == 1) {
			race_add(&sh->iter_ok, 1);
			race_add(&o->submit_ok, 1);
			race_add(kind == RACE_KIND_READ ? &o->submit_read
				 : kind == RACE_KIND_WRITE ? &o->submit_write
				 : &o->submit_poll, 1);
			polls += kind == RACE_KIND_POLL;
			continue;
		}
		if (r == -EINVAL) {
			race_add(&o->submit_einval, 1);
			return;
		}
		if (r != -EAGAIN) {
			race_add(&o->submit_other, 1);
			race_note_errno(&o->first_other_errno, r);
			return;
		}
		race_add(&o->submit_eagain, 1);
		r = race_io_getevents_now(ctx, ev, 16);
		if (r >= 0) {
			race_add(&o->getevents_ok, 1);
			race_add(&o->reaped, (uint64_t)r);
		} else if (r == -EINVAL) {
			race_add(&o->getevents_einval, 1);
			return;
		} else {
			race_add(&o->getevents_other, 1);
			race_note_errno(&o->first_other_errno, r);
			return;
		}
	}
}

static void race_dvs_destroy_round(struct race_dvs_shared *sh, uint64_t *rng)
{
	struct race_dvs_result *o = sh->out;
	uint64_t target = sh->max_target ? race_rand(rng) % (sh->max_target + 1) : 0;
	uint64_t give_up = race_now() + sh->wait_ns;
	uint64_t t0, dt, done, accepted, later;
	long r;

	/* Destroy at a varying point: after 0..max_target accepted requests. */
	while (__atomic_load_n(&sh->iter_ok, __ATOMIC_ACQUIRE) < target &&
	       race_now() < give_up)
		sched_yield();
	t0 = race_now();
	r = lab_io_destroy(sh->ctx);
	dt = race_now() - t0;
	/* eventfd is signalled in aio_complete, before the request's context
	 * reference is dropped: whatever io_destroy waited for is counted here. */
	done = race_efd_take(sh->efd);
	pthread_barrier_wait(&sh->end);
	if (r == 0)
		o->destroy_ok++;
	else {
		o->destroy_other++;
		race_note_errno(&o->first_other_errno, r);
	}
	o->destroy_ns_total += dt;
	race_max(&o->destroy_ns_max, dt);
	accepted = __atomic_load_n(&sh->iter_ok, __ATOMIC_ACQUIRE);
	o->completed_by_destroy += done;
	later = race_efd_take(sh->efd); /* drained so the next round starts at 0 */
	if (accepted > done)
		o->late_completions += accepted - done;
	else if (done > accepted)
		o->unexplained_completions += done - accepted;
	if (r != 0 || accepted != done || later)
		o->bad_iterations++;
}

static void *race_dvs_thread(void *p)
{
	struct race_dvs_arg *a = p;
	struct race_dvs_shared *sh = a->sh;
	uint64_t rng = sh->seed * 2654435761u + (uint64_t)a->index + 1;

	race_pin(a->index);
	for (uint64_t i = 0;; i++) {
		if (a->index == 0) {
			long r = 0;

			if (i >= sh->iterations || race_now() >= sh->deadline) {
				sh->out->timed_out = i < sh->iterations;
				r = 1;
			} else {
				r = race_io_setup(sh->nr_events, &sh->ctx);
				if (r < 0)
					race_note_errno(&sh->out->first_other_errno, r);
			}
			sh->iter_ok = 0;
			sh->stop = r != 0;
			sh->out->iterations = i;
		}
		pthread_barrier_wait(&sh->start);
		if (__atomic_load_n(&sh->stop, __ATOMIC_ACQUIRE))
			break;
		if (a->index == 0) {
			race_dvs_destroy_round(sh, &rng);
		} else {
			race_dvs_submit_round(sh, a->index - 1, &rng);
			pthread_barrier_wait(&sh->end);
		}
	}
	return NULL;
}

long race_destroy_vs_submit(int fd, int submitters, unsigned nr_events,
			    unsigned kinds, unsigned polls_per_iter,
			    uint64_t write_offset, uint64_t iterations,
			    uint64_t duration_ns, unsigned max_target,
			    uint64_t wait_ns, uint64_t seed,
			    struct race_dvs_result *out)
{
	struct race_dvs_shared sh;
	struct race_dvs_arg args[RACE_MAX_THREADS];
	int pipefd[2], n = submitters + 1;
	uint64_t t0;
	long r;

	memset(out, 0, sizeof(*out));
	if (submitters < 1 || n > RACE_MAX_THREADS || !kinds ||
	    (kinds & ~7u) || polls_per_iter * (unsigned)submitters >= nr_events)
		return -EINVAL;
	if ((kinds & (RACE_KIND_READ | RACE_KIND_WRITE)) && fd < 0)
		return -EBADF;
	memset(&sh, 0, sizeof(sh));
	sh.submitters = submitters;
	sh.nr_events = nr_events;
	sh.kinds = kinds;
	sh.polls_per_iter = polls_per_iter;
	sh.max_target = max_target;
	sh.iterations = iterations;
	sh.wait_ns = wait_ns;
	sh.seed = seed;
	sh.fd = fd;
	sh.write_offset = write_offset;
	sh.out = out;
	out->cpus = (uint64_t)race_cpus();
	if (pipe(pipefd) < 0)
		return -errno;
	sh.pipe_rd = pipefd[0];
	sh.efd = race_eventfd();
	sh.bufs = race_map((size_t)submitters * RACE_IO_SIZE);
	r = sh.efd < 0 ? sh.efd : sh.bufs ? 0 : -ENOMEM;
	if (r == 0) {
		pthread_barrier_init(&sh.start, NULL, (unsigned)n);
		pthread_barrier_init(&sh.end, NULL, (unsigned)n);
		for (int i = 0; i < n; i++)
			args[i] = (struct race_dvs_arg){ &sh, i };
		t0 = race_now();
		sh.deadline = t0 + duration_ns;
		r = race_run_threads(n, race_dvs_thread, args, sizeof(args[0]));
		out->elapsed_ns = race_now() - t0;
		if (r == 0 && out->iterations == 0 && out->first_other_errno)
			r = -out->first_other_errno; /* io_setup itself failed */
		pthread_barrier_destroy(&sh.start);
		pthread_barrier_destroy(&sh.end);
	}
	if (sh.bufs)
		munmap(sh.bufs, (size_t)submitters * RACE_IO_SIZE);
	if (sh.efd >= 0)
		close(sh.efd);
	close(pipefd[0]);
	close(pipefd[1]);
	return r;
}

/* -------------------------------------- concurrent io_destroy of one ctx */

struct race_cd_shared {
	int threads;
	unsigned polls;
	uint64_t iterations;
	uint64_t deadline;
	int pipe_rd;
	pthread_barrier_t start;
	pthread_barrier_t end;
	aio_context_t ctx;
	int stop;
	long results[RACE_MAX_THREADS];
	uint64_t times[RACE_MAX_THREADS];
	struct race_cd_result *out;
};

struct race_cd_arg {
	struct race_cd_shared *sh;
	int index; /* 0 also sets up and tallies each round */
};

/* Pending polls make io_destroy cancel and wait: a longer window to overlap. */
static long race_cd_prepare(struct race_cd_shared *sh)
{
	struct iocb cb, *cbp = &cb;
	long r = race_io_setup(sh->polls + 8, &sh->ctx);

	for (unsigned i = 0; r == 0 && i < sh->polls; i++) {
		memset(&cb, 0, sizeof(cb));
		cb.aio_lio_opcode = IOCB_CMD_POLL;
		cb.aio_fildes = (uint32_t)sh->pipe_rd;
		cb.aio_buf = POLLIN;
		if (lab_io_submit(sh->ctx, 1, &cbp) == 1)
			sh->out->polls_submitted++;
	}
	return r;
}

static void race_cd_tally(struct race_cd_shared *sh)
{
	struct race_cd_result *o = sh->out;
	int winners = 0;

	for (int i = 0; i < sh->threads; i++) {
		long r = sh->results[i];

		if (r == 0) {
			winners++;
			o->destroy_ok++;
		} else if (r == -EINVAL) {
			o->destroy_einval++;
		} else {
			o->destroy_other++;
			race_note_errno(&o->first_other_errno, r);
		}
		o->destroy_ns_total += sh->times[i];
		race_max(&o->destroy_ns_max, sh->times[i]);
	}
	o->no_winner += winners == 0;
	o->many_winners += winners > 1;
}

static void *race_cd_thread(void *p)
{
	struct race_cd_arg *a = p;
	struct race_cd_shared *sh = a->sh;

	race_pin(a->index);
	for (uint64_t i = 0;; i++) {
		uint64_t t0;

		if (a->index == 0) {
			long r = 1;

			if (i >= sh->iterations || race_now() >= sh->deadline) {
				sh->out->timed_out = i < sh->iterations;
			} else {
				r = race_cd_prepare(sh);
				if (r < 0)
					race_note_errno(&sh->out->first_other_errno, r);
			}
			sh->stop = r != 0;
			sh->out->iterations = i;
		}
		pthread_barrier_wait(&sh->start);
		if (__atomic_load_n(&sh->stop, __ATOMIC_ACQUIRE))
			break;
		t0 = race_now();
		sh->results[a->index] = lab_io_destroy(sh->ctx);
		sh->times[a->index] = race_now() - t0;
		pthread_barrier_wait(&sh->end);
		if (a->index == 0)
			race_cd_tally(sh);
	}
	return NULL;
}

long race_concurrent_destroy(int threads, unsigned polls, uint64_t iterations,
			     uint64_t duration_ns, struct race_cd_result *out)
{
	struct race_cd_shared *sh;
	struct race_cd_arg args[RACE_MAX_THREADS];
	int pipefd[2];
	uint64_t t0;
	long r;

	memset(out, 0, sizeof(*out));
	if (threads < 2 || threads > RACE_MAX_THREADS)
		return -EINVAL;
	sh = calloc(1, sizeof(*sh));
	if (!sh)
		return -ENOMEM;
	if (pipe(pipefd) < 0) {
		r = -errno;
		free(sh);
		return r;
	}
	sh->threads = threads;
	sh->polls = polls;
	sh->iterations = iterations;
	sh->pipe_rd = pipefd[0];
	sh->out = out;
	out->cpus = (uint64_t)race_cpus();
	pthread_barrier_init(&sh->start, NULL, (unsigned)threads);
	pthread_barrier_init(&sh->end, NULL, (unsigned)threads);
	for (int i = 0; i < threads; i++)
		args[i] = (struct race_cd_arg){ sh, i };
	t0 = race_now();
	sh->deadline = t0 + duration_ns;
	r = race_run_threads(threads, race_cd_thread, args, sizeof(args[0]));
	out->elapsed_ns = race_now() - t0;
	if (r == 0 && out->iterations == 0 && out->first_other_errno)
		r = -out->first_other_errno;
	pthread_barrier_destroy(&sh->start);
	pthread_barrier_destroy(&sh->end);
	close(pipefd[0]);
	close(pipefd[1]);
	free(sh);
	return r;
}

/* ------------------------------------------- io_setup vs io_destroy */

struct race_svd_shared {
	int creators;
	unsigned nslots;
	unsigned nr_events;
	uint64_t iterations;
	uint64_t deadline;
	uint64_t seed;
	int pipe_rd;
	aio_context_t *slots;
	uint64_t cycles;
	int stop;
	struct race_svd_result *out;
};

struct race_svd_arg {
	struct race_svd_shared *sh;
	int index; /* < creators: creator; else looker */
};

static int race_svd_done(struct race_svd_shared *sh)
{
	if (__atomic_load_n(&sh->stop, __ATOMIC_ACQUIRE))
		return 1;
	if (race_now() >= sh->deadline) {
		sh->out->timed_out = 1;
		__atomic_store_n(&sh->stop, 1, __ATOMIC_RELEASE);
		return 1;
	}
	return 0;
}

/*
 * A creator publishes each new context in a random shared slot and destroys
 * the one it displaced: every context has exactly one owner, so its
 * io_destroy must succeed, while lookers use the ids concurrently.
 */
static void race_svd_create(struct race_svd_shared *sh, uint64_t *rng)
{
	struct race_svd_result *o = sh->out;

	while (!race_svd_done(sh)) {
		aio_context_t ctx, old;
		long r = race_io_setup(sh->nr_events, &ctx);

		if (r == -EAGAIN) { /* aio-max-nr reached: others hold the quota */
			race_add(&o->setup_eagain, 1);
			sched_yield();
			continue;
		}
		if (r < 0) {
			race_add(&o->setup_other, 1);
			race_note_errno(&o->first_other_errno, r);
			__atomic_store_n(&sh->stop, 1, __ATOMIC_RELEASE);
			return;
		}
		race_add(&o->setup_ok, 1);
		old = __atomic_exchange_n(&sh->slots[race_rand(rng) % sh->nslots], ctx,
					  __ATOMIC_ACQ_REL);
		if (old) {
			r = lab_io_destroy(old);
			if (r == 0)
				race_add(&o->destroy_ok, 1);
			else if (r == -EINVAL)
				race_add(&o->destroy_einval, 1);
			else {
				race_add(&o->destroy_other, 1);
				race_note_errno(&o->first_other_errno, r);
			}
		}
		if (__atomic_add_fetch(&sh->cycles, 1, __ATOMIC_ACQ_REL) >= sh->iterations)
			__atomic_store_n(&sh->stop, 1, __ATOMIC_RELEASE);
	}
}

static void race_svd_look(struct race_svd_shared *sh, uint64_t *rng)
{
	struct race_svd_result *o = sh->out;
	struct io_event ev[4];
	struct iocb cb, *cbp = &cb;

	while (!race_svd_done(sh)) {
		uint64_t pick = race_rand(rng);
		aio_context_t ctx = __atomic_load_n(&sh->slots[pick % sh->nslots],
						    __ATOMIC_ACQUIRE);
		long r;

		if (!ctx) {
			race_add(&o->lookups_idle, 1);
			sched_yield();
			continue;
		}
		if (pick & (1u << 20)) {
			r = race_io_getevents_now(ctx, ev, 4);
			if (r >= 0)
				race_add(&o->getevents_ok, 1);
			else if (r == -EINVAL)
				race_add(&o->getevents_einval, 1);
			else {
				race_add(&o->getevents_other, 1);
				race_note_errno(&o->first_other_errno, r);
			}
			continue;
		}
		/* a POLL stays queued until io_destroy cancels it */
		memset(&cb, 0, sizeof(cb));
		cb.aio_lio_opcode = IOCB_CMD_POLL;
		cb.aio_fildes = (uint32_t)sh->pipe_rd;
		cb.aio_buf = POLLIN;
		r = lab_io_submit(ctx, 1, &cbp);
		if (r == 1)
			race_add(&o->submit_ok, 1);
		else if (r == -EINVAL)
			race_add(&o->submit_einval, 1);
		else if (r == -EAGAIN)
			race_add(&o->submit_eagain, 1);
		else {
			race_add(&o->submit_other, 1);
			race_note_errno(&o->first_other_errno, r);
		}
	}
}

static void *race_svd_thread(void *p)
{
	struct race_svd_arg *a = p;
	uint64_t rng = a->sh->seed * 2654435761u + (uint64_t)a->index + 1;

	race_pin(a->index);
	if (a->index < a->sh->creators)
		race_svd_create(a->sh, &rng);
	else
		race_svd_look(a->sh, &rng);
	return NULL;
}

long race_setup_vs_destroy(int creators, int lookers, unsigned nslots,
			   unsigned nr_events, uint64_t iterations,
			   uint64_t duration_ns, uint64_t seed,
			   struct race_svd_result *out)
{
	struct race_svd_shared sh;
	struct race_svd_arg args[RACE_MAX_THREADS];
	int pipefd[2], n = creators + lookers;
	uint64_t t0;
	long r;

	memset(out, 0, sizeof(*out));
	if (creators < 1 || lookers < 0 || n > RACE_MAX_THREADS || nslots < 1)
		return -EINVAL;
	memset(&sh, 0, sizeof(sh));
	sh.slots = calloc(nslots, sizeof(*sh.slots));
	if (!sh.slots)
		return -ENOMEM;
	if (pipe(pipefd) < 0) {
		r = -errno;
		free(sh.slots);
		return r;
	}
	sh.creators = creators;
	sh.nslots = nslots;
	sh.nr_events = nr_events;
	sh.iterations = iterations;
	sh.seed = seed;
	sh.pipe_rd = pipefd[0];
	sh.out = out;
	out->cpus = (uint64_t)race_cpus();
	for (int i = 0; i < n; i++)
		args[i] = (struct race_svd_arg){ &sh, i };
	t0 = race_now();
	sh.deadline = t0 + duration_ns;
	r = race_run_threads(n, race_svd_thread, args, sizeof(args[0]));
	out->elapsed_ns = race_now() - t0;
	out->iterations = sh.cycles;
	if (out->iterations >= iterations)
		out->timed_out = 0; /* the count bound was reached first */
	for (unsigned i = 0; i < nslots; i++) {
		if (!sh.slots[i])
			continue;
		if (lab_io_destroy(sh.slots[i]) == 0)
			out->final_destroy_ok++;
		else
			out->final_destroy_failed++;
	}
	if (r == 0 && out->setup_ok == 0 && out->first_other_errno)
		r = -out->first_other_errno;
	close(pipefd[0]);
	close(pipefd[1]);
	free(sh.slots);
	return r;
}

/* ------------------- io_destroy must not return while buffers are targets */

struct race_buf_ctx {
	int fd;
	unsigned nbufs;
	size_t bufsize;
	uint64_t stride;
	unsigned char *bufs;
	unsigned char *expect; /* the device's data at each offset */
	int efd;
};

static unsigned char *race_buf(struct race_buf_ctx *b, unsigned i)
{
	return b->bufs + (size_t)i * b->bufsize;
}

/* Patterns chosen per buffer to differ from the device's first byte. */
static unsigned char race_pattern(struct race_buf_ctx *b, unsigned i, unsigned char x)
{
	return b->expect[(size_t)i * b->bufsize] ^ x;
}

static int race_buf_is(struct race_buf_ctx *b, unsigned i, int fill)
{
	const unsigned char *p = race_buf(b, i);

	if (fill < 0)
		return memcmp(p, b->expect + (size_t)i * b->bufsize, b->bufsize) == 0;
	for (size_t k = 0; k < b->bufsize; k++)
		if (p[k] != (unsigned char)fill)
			return 0;
	return 1;
}

static long race_buf_round(struct race_buf_ctx *b, uint64_t settle_ns,
			   struct race_buf_result *o)
{
	struct iocb *cbs = calloc(b->nbufs, sizeof(*cbs));
	struct iocb **ptrs = calloc(b->nbufs, sizeof(*ptrs));
	struct timespec settle = { (time_t)(settle_ns / 1000000000u),
				   (long)(settle_ns % 1000000000u) };
	aio_context_t ctx;
	uint64_t before, t0, dt;
	long destroyed, r = cbs && ptrs ? 0 : -ENOMEM;

	for (unsigned i = 0; r == 0 && i < b->nbufs; i++) {
		memset(race_buf(b, i), race_pattern(b, i, 0xA5), b->bufsize);
		cbs[i].aio_lio_opcode = IOCB_CMD_PREAD;
		cbs[i].aio_fildes = (uint32_t)b->fd;
		cbs[i].aio_buf = (uint64_t)(uintptr_t)race_buf(b, i);
		cbs[i].aio_nbytes = b->bufsize;
		cbs[i].aio_offset = (int64_t)(i * b->stride);
		cbs[i].aio_flags = IOCB_FLAG_RESFD;
		cbs[i].aio_resfd = (uint32_t)b->efd;
		ptrs[i] = &cbs[i];
	}
	if (r == 0)
		r = race_io_setup(b->nbufs, &ctx);
	if (r < 0)
		goto out;
	r = lab_io_submit(ctx, b->nbufs, ptrs);
	if (r > 0)
		o->submitted += (uint64_t)r;
	before = race_efd_take(b->efd);
	o->pending_at_destroy += r > 0 && (uint64_t)r > before ? (uint64_t)r - before : 0;
	t0 = race_now();
	destroyed = lab_io_destroy(ctx);
	dt = race_now() - t0;
	if (destroyed < 0)
		race_note_errno(&o->first_other_errno, destroyed);
	o->completed_by_destroy += before + race_efd_take(b->efd);
	/* Right away (no round trip to the host): did every read land, then
	 * does anything still write into the buffers once we reuse them? */
	for (unsigned i = 0; i < b->nbufs; i++) {
		o->unfinished_at_destroy += !race_buf_is(b, i, -1);
		memset(race_buf(b, i), race_pattern(b, i, 0x5A), b->bufsize);
	}
	nanosleep(&settle, NULL);
	for (unsigned i = 0; i < b->nbufs; i++)
		o->modified_after_destroy += !race_buf_is(b, i, race_pattern(b, i, 0x5A));
	o->late_completions += race_efd_take(b->efd);
	o->destroy_ns_total += dt;
	race_max(&o->destroy_ns_max, dt);
	if (!o->destroy_ns_min || dt < o->destroy_ns_min)
		o->destroy_ns_min = dt;
	r = r < 0 ? r : 0;
out:
	free(cbs);
	free(ptrs);
	return r;
}

long race_destroy_buffers(int fd, unsigned nbufs, uint64_t bufsize, uint64_t stride,
			  uint64_t rounds, uint64_t duration_ns, uint64_t settle_ns,
			  struct race_buf_result *out)
{
	struct race_buf_ctx b = { fd, nbufs, (size_t)bufsize, stride, NULL, NULL, -1 };
	size_t total = (size_t)nbufs * (size_t)bufsize;
	uint64_t t0 = race_now(), deadline = t0 + duration_ns;
	long r = 0;

	memset(out, 0, sizeof(*out));
	if (!nbufs || !bufsize || bufsize % 512 || stride < bufsize)
		return -EINVAL;
	b.bufs = race_map(total);
	b.expect = race_map(total);
	b.efd = race_eventfd();
	if (!b.bufs || !b.expect)
		r = -ENOMEM;
	else if (b.efd < 0)
		r = b.efd;
	/* The device's content, read synchronously once: a buffer that differs
	 * from it after io_destroy is a read that had not landed. */
	for (unsigned i = 0; r == 0 && i < nbufs; i++)
		if (pread(fd, race_buf(&b, i), bufsize, (off_t)(i * stride)) != (ssize_t)bufsize)
			r = errno ? -errno : -EIO;
	if (r == 0)
		memcpy(b.expect, b.bufs, total);
	while (r == 0 && out->iterations < rounds) {
		if (race_now() >= deadline) {
			out->timed_out = 1;
			break;
		}
		r = race_buf_round(&b, settle_ns, out);
		out->iterations += r == 0;
	}
	out->elapsed_ns = race_now() - t0;
	if (b.bufs)
		munmap(b.bufs, total);
	if (b.expect)
		munmap(b.expect, total);
	if (b.efd >= 0)
		close(b.efd);
	return r;
}
