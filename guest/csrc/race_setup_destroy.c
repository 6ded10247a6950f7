/* Race loop: io_setup vs io_destroy (shared parts in race.h). */

#include "race.h"

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
