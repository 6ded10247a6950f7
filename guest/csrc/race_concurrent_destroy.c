/*
 * Race loop: concurrent io_destroy of one ctx (shared parts in race.h).
 *
 * Overlap (race.h): the racy part of io_destroy is its start, the lookup
 * and the kill of the context; the winner (the call that returned 0) then
 * sleeps through a grace period, and a loser arriving then only fails its
 * lookup.  So a round overlapped when a loser was in the kernel during the
 * winner's first prefix_ns: the time an io_destroy takes to look up an id
 * and fail, measured before the loop (race_cd_prefix), which is less than
 * the winner needs to look up and kill.  A loser that entered first and
 * lost all the same is one of them.  overlap_calls counts such losers;
 * any_overlap counts rounds whose spans merely met.
 */

#include "race.h"

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
	uint64_t overlap_rounds;
	uint64_t overlapped;
	uint64_t overlap_calls;
	uint64_t any_overlap;
	uint64_t prefix_ns;
	uint64_t clock_ns;
	uint64_t clock_tsc;
	uint64_t clock_res_ns;
	uint64_t opts;
	int64_t first_other_errno;
};

struct race_cd_shared {
	int threads;
	unsigned polls;
	uint64_t iterations;
	uint64_t deadline;
	int pipe_rd;
	unsigned opts;
	struct race_clock clk;
	uint64_t prefix; /* stamp units */
	struct race_barrier start;
	struct race_barrier end;
	aio_context_t ctx;
	int stop;
	long results[RACE_MAX_THREADS];
	struct race_span spans[RACE_MAX_THREADS]; /* stamps */
	uint64_t times[RACE_MAX_THREADS]; /* ns */
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

/*
 * The shortest an io_destroy can be: the median of calls on an id that no
 * table holds (a mapped page whose ring id is out of range, so the lookup
 * fails without a fault), clock reads included as in the loop.
 */
static uint64_t race_cd_prefix(void)
{
	unsigned *fake = race_map(4096);
	uint64_t d[15];

	if (!fake)
		return 0;
	fake[0] = ~0u; /* struct aio_ring's id */
	for (int i = 0; i < 15; i++) {
		uint64_t t0 = race_stamp();

		lab_io_destroy((aio_context_t)(uintptr_t)fake);
		d[i] = race_stamp() - t0;
	}
	munmap(fake, 4096);
	qsort(d, 15, sizeof(d[0]), race_cmp_u64);
	return d[7];
}

/* The loser was in the kernel during the racy start of the winner's call. */
static int race_cd_raced(struct race_cd_shared *sh, const struct race_span *loser,
			 const struct race_span *winner)
{
	struct race_span start = { winner->t0, winner->t0 + sh->prefix };

	return race_spans_meet(loser, &start, sh->clk.margin);
}

static void race_cd_tally(struct race_cd_shared *sh)
{
	struct race_cd_result *o = sh->out;
	int winners = 0, winner = -1;
	uint64_t losers = 0, met = 0;

	for (int i = 0; i < sh->threads; i++) {
		long r = sh->results[i];
		uint64_t dt = sh->times[i];

		if (r == 0) {
			winners++;
			winner = i;
			o->destroy_ok++;
		} else if (r == -EINVAL) {
			o->destroy_einval++;
		} else {
			o->destroy_other++;
			race_note_errno(&o->first_other_errno, r);
		}
		o->destroy_ns_total += dt;
		race_max(&o->destroy_ns_max, dt);
	}
	o->no_winner += winners == 0;
	o->many_winners += winners > 1;
	for (int i = 0; winner >= 0 && i < sh->threads; i++) {
		if (i == winner)
			continue;
		losers += race_cd_raced(sh, &sh->spans[i], &sh->spans[winner]);
		met += race_spans_meet(&sh->spans[i], &sh->spans[winner], sh->clk.margin);
	}
	o->overlap_rounds++;
	o->overlapped += losers > 0;
	o->overlap_calls += losers;
	o->any_overlap += met > 0;
}

static void *race_cd_thread(void *p)
{
	struct race_cd_arg *a = p;
	struct race_cd_shared *sh = a->sh;

	race_pin(a->index, sh->opts);
	for (uint64_t i = 0;; i++) {
		struct race_span *sp = &sh->spans[a->index];
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
		race_barrier_wait(&sh->start);
		if (__atomic_load_n(&sh->stop, __ATOMIC_ACQUIRE))
			break;
		race_pre_call(sh->opts);
		t0 = race_now();
		sp->t0 = race_stamp();
		sh->results[a->index] = lab_io_destroy(sh->ctx);
		sp->t1 = race_stamp();
		sh->times[a->index] = race_now() - t0;
		race_barrier_wait(&sh->end);
		if (a->index == 0)
			race_cd_tally(sh);
	}
	return NULL;
}

long race_concurrent_destroy(int threads, unsigned polls, uint64_t iterations,
			     uint64_t duration_ns, unsigned opts,
			     struct race_cd_result *out)
{
	struct race_cd_shared *sh;
	struct race_cd_arg args[RACE_MAX_THREADS];
	int pipefd[2];
	uint64_t t0;
	long r;

	memset(out, 0, sizeof(*out));
	if (threads < 2 || threads > RACE_MAX_THREADS || (opts & ~(unsigned)RACE_OPTS_ALL))
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
	sh->opts = opts;
	race_clock_start(&sh->clk);
	sh->prefix = race_cd_prefix();
	out->cpus = (uint64_t)race_cpus();
	out->opts = opts;
	race_barrier_init(&sh->start, (unsigned)threads, opts);
	race_barrier_init(&sh->end, (unsigned)threads, 0);
	for (int i = 0; i < threads; i++)
		args[i] = (struct race_cd_arg){ sh, i };
	t0 = race_now();
	sh->deadline = t0 + duration_ns;
	r = race_run_threads(threads, race_cd_thread, args, sizeof(args[0]));
	out->elapsed_ns = race_now() - t0;
	race_clock_report(&sh->clk, &out->clock_tsc, &out->clock_ns, &out->clock_res_ns);
	out->prefix_ns = race_clock_ns_of(&sh->clk, sh->prefix);
	if (r == 0 && out->iterations == 0 && out->first_other_errno)
		r = -out->first_other_errno;
	race_barrier_destroy(&sh->start);
	race_barrier_destroy(&sh->end);
	close(pipefd[0]);
	close(pipefd[1]);
	free(sh);
	return r;
}
