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
 *
 * That window is well under a microsecond under TCG, while a barrier's
 * futex wake-up starts the racers hundreds of microseconds apart: with one
 * call each, 0 of ~1600 rounds overlapped (debian:7.2, multi-threaded TCG,
 * whether pinned, spinning, with 2 or 4 threads, with polls or none).
 * RACE_OPT_HAMMER removes the wake-up from the start: thread 0 hides the new
 * context by writing an id no table holds into its ring's header (the id
 * io_destroy reads from userspace to find the context, as race_cd_prefix's
 * fake ring does), every racer calls io_destroy on it in a tight loop (each
 * call fails its lookup at once), and once all are calling, thread 0 writes
 * the real id back: from that store on, the next call of each racer finds
 * the context.  A racer stops at its first call that won, or that failed
 * although the context was findable when it began (someone killed it);
 * those are its result, as with one call each; the calls before are
 * hammer_calls.  Each racer keeps its last RACE_CD_KEEP spans, and the
 * overlap test is the same against any of them.
 */

#include "race.h"

/* cdef: begin */
struct race_cd_result {
	uint64_t iterations;
	uint64_t cpus;
	uint64_t destroy_ok;
	uint64_t destroy_einval;
	uint64_t destroy_other;
	uint64_t no_winner;
	uint64_t many_winners;
	uint64_t polls_submitted;
	uint64_t destroy_ns_total;
	uint64_t destroy_ns_max;
	uint64_t prefix_ns;
	uint64_t hammer_calls;
	struct race_tail tail;
};
/* cdef: end */

#define RACE_CD_KEEP 16

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
	/* RACE_OPT_HAMMER */
	unsigned real_id; /* the ring header's id while it holds a false one */
	int armed; /* the real id is back: the context can be found */
	int started; /* racers other than thread 0 that made a call this round */
	uint64_t calls[RACE_MAX_THREADS]; /* this round's, the last one included */
	struct race_span kept[RACE_MAX_THREADS][RACE_CD_KEEP];
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
	if (r == 0 && (sh->opts & RACE_OPT_HAMMER)) {
		unsigned *id = (unsigned *)(uintptr_t)sh->ctx; /* struct aio_ring's id */

		sh->real_id = *id;
		__atomic_store_n(id, ~0u, __ATOMIC_RELEASE);
		sh->armed = 0;
		sh->started = 0;
	}
	return r;
}

/*
 * RACE_OPT_HAMMER: io_destroy until a call wins, or fails on a context that
 * could be found when it began; thread 0 makes it findable once every racer
 * is calling.  Fills the same results, spans and times as one call would.
 */
static void race_cd_hammer(struct race_cd_shared *sh, int index)
{
	uint64_t n = 0;

	for (;;) {
		struct race_span *sp = &sh->kept[index][n % RACE_CD_KEEP];
		int armed = __atomic_load_n(&sh->armed, __ATOMIC_ACQUIRE);
		uint64_t t0;
		long r;

		if (!armed && index == 0 &&
		    __atomic_load_n(&sh->started, __ATOMIC_ACQUIRE) >= sh->threads - 1) {
			__atomic_store_n((unsigned *)(uintptr_t)sh->ctx, sh->real_id,
					 __ATOMIC_RELEASE);
			__atomic_store_n(&sh->armed, 1, __ATOMIC_RELEASE);
			armed = 1;
		}
		t0 = race_now();
		sp->t0 = race_stamp();
		r = lab_io_destroy(sh->ctx);
		sp->t1 = race_stamp();
		if (n++ == 0 && index != 0)
			__atomic_add_fetch(&sh->started, 1, __ATOMIC_ACQ_REL);
		if (r == -EINVAL && !armed)
			continue; /* hidden, or killed before this racer knew it was found */
		sh->results[index] = r;
		sh->spans[index] = *sp;
		sh->times[index] = race_now() - t0;
		sh->calls[index] = n;
		return;
	}
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

/* With RACE_OPT_HAMMER, any of the loser's kept calls may be the one. */
static void race_cd_meet(struct race_cd_shared *sh, int loser, int winner,
			 uint64_t *raced, uint64_t *met)
{
	const struct race_span *w = &sh->spans[winner];
	uint64_t kept = 1;
	int r = 0, m = 0;

	if (sh->opts & RACE_OPT_HAMMER)
		kept = sh->calls[loser] < RACE_CD_KEEP ? sh->calls[loser] : RACE_CD_KEEP;
	for (uint64_t k = 0; k < kept; k++) {
		const struct race_span *s = (sh->opts & RACE_OPT_HAMMER) ?
			&sh->kept[loser][k] : &sh->spans[loser];

		r |= race_cd_raced(sh, s, w);
		m |= race_spans_meet(s, w, sh->clk.margin);
	}
	*raced += (uint64_t)r;
	*met += (uint64_t)m;
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
			race_note_errno(&o->tail.first_other_errno, r);
		}
		o->destroy_ns_total += dt;
		race_max(&o->destroy_ns_max, dt);
		if (sh->opts & RACE_OPT_HAMMER)
			o->hammer_calls += sh->calls[i] - 1;
	}
	o->no_winner += winners == 0;
	o->many_winners += winners > 1;
	for (int i = 0; winner >= 0 && i < sh->threads; i++) {
		if (i == winner)
			continue;
		race_cd_meet(sh, i, winner, &losers, &met);
	}
	o->tail.overlap_rounds++;
	o->tail.overlapped += losers > 0;
	o->tail.overlap_calls += losers;
	o->tail.any_overlap += met > 0;
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
				sh->out->tail.timed_out = i < sh->iterations;
			} else {
				r = race_cd_prepare(sh);
				if (r < 0)
					race_note_errno(&sh->out->tail.first_other_errno, r);
			}
			sh->stop = r != 0;
			sh->out->iterations = i;
		}
		race_barrier_wait(&sh->start);
		if (__atomic_load_n(&sh->stop, __ATOMIC_ACQUIRE))
			break;
		race_pre_call(sh->opts);
		if (sh->opts & RACE_OPT_HAMMER) {
			race_cd_hammer(sh, a->index);
		} else {
			t0 = race_now();
			sp->t0 = race_stamp();
			sh->results[a->index] = lab_io_destroy(sh->ctx);
			sp->t1 = race_stamp();
			sh->times[a->index] = race_now() - t0;
		}
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
	if (threads < 2 || threads > RACE_MAX_THREADS ||
	    (opts & ~(unsigned)(RACE_OPTS_ALL | RACE_OPT_HAMMER)))
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
	out->tail.opts = opts;
	race_barrier_init(&sh->start, (unsigned)threads, opts);
	race_barrier_init(&sh->end, (unsigned)threads, 0);
	for (int i = 0; i < threads; i++)
		args[i] = (struct race_cd_arg){ sh, i };
	t0 = race_now();
	sh->deadline = t0 + duration_ns;
	r = race_run_threads(threads, race_cd_thread, args, sizeof(args[0]));
	out->tail.elapsed_ns = race_now() - t0;
	race_clock_report(&sh->clk, &out->tail.clock_tsc, &out->tail.clock_ns,
			  &out->tail.clock_res_ns);
	out->prefix_ns = race_clock_ns_of(&sh->clk, sh->prefix);
	if (r == 0 && out->iterations == 0 && out->tail.first_other_errno)
		r = -out->tail.first_other_errno;
	race_barrier_destroy(&sh->start);
	race_barrier_destroy(&sh->end);
	close(pipefd[0]);
	close(pipefd[1]);
	free(sh);
	return r;
}

/* What Python calls (the cdef; compiled here, so checked against the definitions above). */
/* cdef: begin */
long race_concurrent_destroy(int threads, unsigned polls, uint64_t iterations,
                             uint64_t duration_ns, unsigned opts,
                             struct race_cd_result *out);
/* cdef: end */
