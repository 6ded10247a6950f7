/* Race loop: io_destroy vs io_submit (shared parts in race.h). */

#include "race.h"

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
