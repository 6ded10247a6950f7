/*
 * Race loop: io_destroy vs io_submit (shared parts in race.h).
 *
 * Overlap (race.h): a round overlapped when a submitter's io_submit or
 * io_getevents was in the kernel as io_destroy entered, or an io_submit that
 * began after io_destroy had entered still had its request accepted (it won
 * the lookup against the kill).  any_overlap counts rounds in which the
 * spans merely met.  Each submitter keeps the spans of its last RACE_DVS_LOG
 * calls: a round ends at the first EINVAL, which comes soon after io_destroy
 * kills the context, so the calls that can overlap are the last few.
 */

#include "race.h"

/* cdef: begin */
struct race_dvs_result {
	uint64_t iterations;
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
	uint64_t overlap_accepted;
	struct race_tail tail;
};
/* cdef: end */

#define RACE_DVS_LOG 64

/* A submitter's recent calls: spans, and whether io_submit accepted the request. */
struct race_dvs_log {
	struct race_span span[RACE_DVS_LOG];
	unsigned char accepted[RACE_DVS_LOG];
	uint64_t n;
};

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
	unsigned opts;
	struct race_clock clk;
	struct race_barrier start;
	struct race_barrier destroyed; /* the destroy's span is known */
	struct race_barrier end;
	aio_context_t ctx;
	int stop;
	uint64_t iter_ok;
	struct race_span destroy;
	uint64_t round_calls;
	uint64_t round_met;
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

static long race_dvs_call(struct race_dvs_shared *sh, struct race_dvs_log *log,
			  long nr, struct iocb **cbp)
{
	struct race_span *sp = &log->span[log->n % RACE_DVS_LOG];
	long r;

	race_pre_call(sh->opts);
	sp->t0 = race_stamp();
	r = lab_io_submit(sh->ctx, nr, cbp);
	sp->t1 = race_stamp();
	log->accepted[log->n++ % RACE_DVS_LOG] = nr > 0 && r == nr;
	return r;
}

static long race_dvs_reap(struct race_dvs_shared *sh, struct race_dvs_log *log,
			  struct io_event *ev, long nr)
{
	struct race_span *sp = &log->span[log->n % RACE_DVS_LOG];
	long r;

	race_pre_call(sh->opts);
	sp->t0 = race_stamp();
	r = race_io_getevents_now(sh->ctx, ev, nr);
	sp->t1 = race_stamp();
	log->accepted[log->n++ % RACE_DVS_LOG] = 0;
	return r;
}

/* Which of this round's logged calls overlapped the destroy. */
static void race_dvs_tally_log(struct race_dvs_shared *sh, struct race_dvs_log *log)
{
	struct race_dvs_result *o = sh->out;
	uint64_t first = log->n > RACE_DVS_LOG ? log->n - RACE_DVS_LOG : 0;
	uint64_t calls = 0, accepted = 0, met = 0, d0 = sh->destroy.t0;

	for (uint64_t i = first; i < log->n; i++) {
		const struct race_span *sp = &log->span[i % RACE_DVS_LOG];
		int won = log->accepted[i % RACE_DVS_LOG];

		met += race_spans_meet(sp, &sh->destroy, sh->clk.margin);
		if (!race_inside_at(sp, d0, sh->clk.margin) &&
		    !(won && sp->t0 > d0 + sh->clk.margin))
			continue;
		calls++;
		accepted += won;
	}
	race_add(&sh->round_calls, calls);
	race_add(&sh->round_met, met);
	race_add(&o->tail.overlap_calls, calls);
	race_add(&o->overlap_accepted, accepted);
	log->n = 0;
}

/* Submit until the context dies; reap on EAGAIN so the ring never stays full. */
static void race_dvs_submit_round(struct race_dvs_shared *sh, int t, uint64_t *rng,
				  struct race_dvs_log *log)
{
	struct race_dvs_result *o = sh->out;
	struct io_event ev[16];
	struct iocb cb, *cbp = &cb;
	unsigned turn = (unsigned)race_rand(rng), polls = 0;

	for (;;) {
		unsigned kind = race_dvs_kind(sh, &turn, polls);
		long r;

		if (kind == 0) {
			r = race_dvs_call(sh, log, 0, &cbp); /* a lookup, nothing queued */
			if (r == -EINVAL) {
				race_add(&o->submit_einval, 1);
				return;
			}
			continue;
		}
		race_dvs_fill(sh, t, kind, &cb);
		r = race_dvs_call(sh, log, 1, &cbp);
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
			race_note_errno(&o->tail.first_other_errno, r);
			return;
		}
		race_add(&o->submit_eagain, 1);
		r = race_dvs_reap(sh, log, ev, 16);
		if (r >= 0) {
			race_add(&o->getevents_ok, 1);
			race_add(&o->reaped, (uint64_t)r);
		} else if (r == -EINVAL) {
			race_add(&o->getevents_einval, 1);
			return;
		} else {
			race_add(&o->getevents_other, 1);
			race_note_errno(&o->tail.first_other_errno, r);
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
	race_pre_call(sh->opts);
	t0 = race_now();
	sh->destroy.t0 = race_stamp();
	r = lab_io_destroy(sh->ctx);
	sh->destroy.t1 = race_stamp();
	dt = race_now() - t0;
	/* eventfd is signalled in aio_complete, before the request's context
	 * reference is dropped: whatever io_destroy waited for is counted here. */
	done = race_efd_take(sh->efd);
	race_barrier_wait(&sh->destroyed);
	race_barrier_wait(&sh->end);
	o->tail.overlap_rounds++;
	o->tail.overlapped += sh->round_calls > 0;
	o->tail.any_overlap += sh->round_met > 0;
	if (r == 0)
		o->destroy_ok++;
	else {
		o->destroy_other++;
		race_note_errno(&o->tail.first_other_errno, r);
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
	struct race_dvs_log log;

	log.n = 0;
	race_pin(a->index, sh->opts);
	for (uint64_t i = 0;; i++) {
		if (a->index == 0) {
			long r = 0;

			if (i >= sh->iterations || race_now() >= sh->deadline) {
				sh->out->tail.timed_out = i < sh->iterations;
				r = 1;
			} else {
				r = race_io_setup(sh->nr_events, &sh->ctx);
				if (r < 0)
					race_note_errno(&sh->out->tail.first_other_errno, r);
			}
			sh->iter_ok = 0;
			sh->round_calls = 0;
			sh->round_met = 0;
			sh->stop = r != 0;
			sh->out->iterations = i;
		}
		race_barrier_wait(&sh->start);
		if (__atomic_load_n(&sh->stop, __ATOMIC_ACQUIRE))
			break;
		if (a->index == 0) {
			race_dvs_destroy_round(sh, &rng);
		} else {
			race_dvs_submit_round(sh, a->index - 1, &rng, &log);
			race_barrier_wait(&sh->destroyed);
			race_dvs_tally_log(sh, &log);
			race_barrier_wait(&sh->end);
		}
	}
	return NULL;
}

long race_destroy_vs_submit(int fd, int submitters, unsigned nr_events,
			    unsigned kinds, unsigned polls_per_iter,
			    uint64_t write_offset, uint64_t iterations,
			    uint64_t duration_ns, unsigned max_target,
			    uint64_t wait_ns, uint64_t seed, unsigned opts,
			    struct race_dvs_result *out)
{
	struct race_dvs_shared sh;
	struct race_dvs_arg args[RACE_MAX_THREADS];
	int pipefd[2], n = submitters + 1;
	uint64_t t0;
	long r;

	memset(out, 0, sizeof(*out));
	if (submitters < 1 || n > RACE_MAX_THREADS || !kinds ||
	    (kinds & ~7u) || polls_per_iter * (unsigned)submitters >= nr_events ||
	    (opts & ~(unsigned)RACE_OPTS_ALL))
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
	sh.opts = opts;
	race_clock_start(&sh.clk);
	out->cpus = (uint64_t)race_cpus();
	out->tail.opts = opts;
	if (pipe(pipefd) < 0)
		return -errno;
	sh.pipe_rd = pipefd[0];
	sh.efd = race_eventfd();
	sh.bufs = race_map((size_t)submitters * RACE_IO_SIZE);
	r = sh.efd < 0 ? sh.efd : sh.bufs ? 0 : -ENOMEM;
	if (r == 0) {
		/* Only the start needs both sides together: the others wait out a destroy. */
		race_barrier_init(&sh.start, (unsigned)n, opts);
		race_barrier_init(&sh.destroyed, (unsigned)n, 0);
		race_barrier_init(&sh.end, (unsigned)n, 0);
		for (int i = 0; i < n; i++)
			args[i] = (struct race_dvs_arg){ &sh, i };
		t0 = race_now();
		sh.deadline = t0 + duration_ns;
		r = race_run_threads(n, race_dvs_thread, args, sizeof(args[0]));
		out->tail.elapsed_ns = race_now() - t0;
		race_clock_report(&sh.clk, &out->tail.clock_tsc, &out->tail.clock_ns,
				  &out->tail.clock_res_ns);
		if (r == 0 && out->iterations == 0 && out->tail.first_other_errno)
			r = -out->tail.first_other_errno; /* io_setup itself failed */
		race_barrier_destroy(&sh.start);
		race_barrier_destroy(&sh.destroyed);
		race_barrier_destroy(&sh.end);
	}
	if (sh.bufs)
		munmap(sh.bufs, (size_t)submitters * RACE_IO_SIZE);
	if (sh.efd >= 0)
		close(sh.efd);
	close(pipefd[0]);
	close(pipefd[1]);
	return r;
}

/* What Python calls (the cdef; compiled here, so checked against the definitions above). */
/* cdef: begin */
long race_destroy_vs_submit(int fd, int submitters, unsigned nr_events, unsigned kinds,
                            unsigned polls_per_iter, uint64_t write_offset,
                            uint64_t iterations, uint64_t duration_ns,
                            unsigned max_target, uint64_t wait_ns, uint64_t seed,
                            unsigned opts, struct race_dvs_result *out);
/* cdef: end */
