/*
 * Race loop: io_setup vs io_destroy (shared parts in race.h).
 *
 * Overlap (race.h): a destroy overlapped when a looker's io_submit or
 * io_getevents on that very context was in the kernel as io_destroy entered,
 * or began after it had entered and still succeeded (it won the lookup
 * against the kill); any_overlap counts destroys whose span a lookup of the
 * context merely met.  A context is known
 * by its id and the number of its creation: ids are ring addresses, and the
 * next io_setup often gets the address an io_destroy still in progress has
 * just unmapped, so the id alone would credit a lookup of the new context
 * to the old one's destroy.  Each creator publishes the destroy it is in
 * (and the last one it finished) under a sequence count; a looker checks
 * them right after each call.  A destroy that began and ended between a
 * looker's call and its check goes unseen: the count is a lower bound.
 */

#include "race.h"

/* cdef: begin */
struct race_svd_result {
	uint64_t iterations;
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
	struct race_tail tail;
};
/* cdef: end */

/* Contexts created past this many are not tracked (nor their destroys counted). */
#define RACE_SVD_TRACKED (1u << 20)

/* What lookups of a context did to its destroy (race.h). */
#define RACE_SVD_MET 1
#define RACE_SVD_RACED 2

/* A context: its id and the number of its creation (0 in an empty slot). */
struct race_svd_ctx {
	aio_context_t id;
	uint64_t gen;
};

/*
 * A shared slot, or a creator's destroy record: seq is odd while it is
 * written.  Slots are written under lock (two creators may pick one slot);
 * a creator's records have one writer.
 */
struct race_svd_rec {
	unsigned lock;
	unsigned seq;
	struct race_svd_ctx c;
	uint64_t t0;
	uint64_t t1; /* 0 while the destroy is in progress */
};

struct race_svd_creator {
	struct race_svd_rec now; /* c.id 0: not in io_destroy */
	struct race_svd_rec last;
	char pad[64]; /* keep creators' records off each other's cache lines */
};

struct race_svd_shared {
	int creators;
	unsigned nslots;
	unsigned nr_events;
	unsigned hold;
	uint64_t iterations;
	uint64_t deadline;
	uint64_t seed;
	int pipe_rd;
	unsigned opts;
	struct race_clock clk;
	struct race_svd_rec *slots;
	uint64_t cycles;
	uint64_t created;
	uint64_t destroys; /* tracked contexts destroyed by the loop */
	unsigned char *hit; /* per tracked context: RACE_SVD_MET | RACE_SVD_RACED */
	struct race_svd_creator *cr;
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
		sh->out->tail.timed_out = 1;
		__atomic_store_n(&sh->stop, 1, __ATOMIC_RELEASE);
		return 1;
	}
	return 0;
}

static void race_svd_write(struct race_svd_rec *d, struct race_svd_ctx c,
			   uint64_t t0, uint64_t t1)
{
	unsigned seq = __atomic_load_n(&d->seq, __ATOMIC_RELAXED);

	__atomic_store_n(&d->seq, seq + 1, __ATOMIC_RELAXED);
	__atomic_thread_fence(__ATOMIC_RELEASE);
	__atomic_store_n(&d->c.id, c.id, __ATOMIC_RELAXED);
	__atomic_store_n(&d->c.gen, c.gen, __ATOMIC_RELAXED);
	__atomic_store_n(&d->t0, t0, __ATOMIC_RELAXED);
	__atomic_store_n(&d->t1, t1, __ATOMIC_RELAXED);
	__atomic_store_n(&d->seq, seq + 2, __ATOMIC_RELEASE);
}

/* A consistent copy of *d, or 0 if it was being written. */
static int race_svd_read(struct race_svd_rec *d, struct race_svd_rec *copy)
{
	unsigned seq = __atomic_load_n(&d->seq, __ATOMIC_ACQUIRE);

	if (seq & 1)
		return 0;
	copy->c.id = __atomic_load_n(&d->c.id, __ATOMIC_RELAXED);
	copy->c.gen = __atomic_load_n(&d->c.gen, __ATOMIC_RELAXED);
	copy->t0 = __atomic_load_n(&d->t0, __ATOMIC_RELAXED);
	copy->t1 = __atomic_load_n(&d->t1, __ATOMIC_RELAXED);
	__atomic_thread_fence(__ATOMIC_ACQUIRE);
	return __atomic_load_n(&d->seq, __ATOMIC_RELAXED) == seq;
}

/* Put c into a slot; the context it held is returned (id 0: none). */
static struct race_svd_ctx race_svd_swap(struct race_svd_rec *slot, struct race_svd_ctx c)
{
	struct race_svd_ctx old;

	while (__atomic_exchange_n(&slot->lock, 1, __ATOMIC_ACQUIRE))
		sched_yield();
	old = slot->c;
	race_svd_write(slot, c, 0, 0);
	__atomic_store_n(&slot->lock, 0, __ATOMIC_RELEASE);
	return old;
}

static void race_svd_destroy(struct race_svd_shared *sh, int c, struct race_svd_ctx old)
{
	struct race_svd_result *o = sh->out;
	struct race_svd_creator *me = &sh->cr[c];
	uint64_t t0, t1;
	long r;

	if (old.gen < RACE_SVD_TRACKED)
		race_add(&sh->destroys, 1);
	race_pre_call(sh->opts);
	t0 = race_stamp();
	race_svd_write(&me->now, old, t0, 0);
	r = lab_io_destroy(old.id);
	t1 = race_stamp();
	race_svd_write(&me->last, old, t0, t1);
	race_svd_write(&me->now, (struct race_svd_ctx){ 0, 0 }, 0, 0);
	if (r == 0)
		race_add(&o->destroy_ok, 1);
	else if (r == -EINVAL)
		race_add(&o->destroy_einval, 1);
	else {
		race_add(&o->destroy_other, 1);
		race_note_errno(&o->tail.first_other_errno, r);
	}
}

/*
 * After a lookup of context c spanning sp (ok: it succeeded): was a creator
 * destroying c during it?  A destroy still in progress now began before sp
 * ended and ends after it.
 */
static void race_svd_check(struct race_svd_shared *sh, struct race_svd_ctx c,
			   const struct race_span *sp, int ok)
{
	struct race_svd_result *o = sh->out;
	uint64_t clk = sh->clk.margin;

	for (int k = 0; k < sh->creators; k++) {
		struct race_svd_rec d;
		struct race_span ds;
		unsigned char how;

		for (int now = 1; now >= 0; now--) {
			if (!race_svd_read(now ? &sh->cr[k].now : &sh->cr[k].last, &d) ||
			    d.c.id != c.id || d.c.gen != c.gen)
				continue;
			ds = (struct race_span){ d.t0, now ? sp->t1 + 2 * clk : d.t1 };
			if (!race_spans_meet(sp, &ds, clk))
				continue;
			how = RACE_SVD_MET;
			if (race_inside_at(sp, d.t0, clk) ||
			    (ok && sp->t0 > d.t0 + clk && sp->t0 < ds.t1)) {
				how |= RACE_SVD_RACED;
				race_add(&o->tail.overlap_calls, 1);
			}
			if (c.gen < RACE_SVD_TRACKED)
				__atomic_or_fetch(&sh->hit[c.gen], how, __ATOMIC_RELAXED);
			break;
		}
	}
}

/*
 * A creator publishes each new context in a random shared slot and destroys
 * the one it displaced: every context has exactly one owner, so its
 * io_destroy must succeed, while lookers use the ids concurrently.
 */
static void race_svd_create(struct race_svd_shared *sh, int c, uint64_t *rng)
{
	struct race_svd_result *o = sh->out;

	while (!race_svd_done(sh)) {
		struct race_svd_ctx ctx, old;
		long r = race_io_setup(sh->nr_events, &ctx.id);

		if (r == -EAGAIN) { /* aio-max-nr reached: others hold the quota */
			race_add(&o->setup_eagain, 1);
			sched_yield();
			continue;
		}
		if (r < 0) {
			race_add(&o->setup_other, 1);
			race_note_errno(&o->tail.first_other_errno, r);
			__atomic_store_n(&sh->stop, 1, __ATOMIC_RELEASE);
			return;
		}
		race_add(&o->setup_ok, 1);
		ctx.gen = __atomic_add_fetch(&sh->created, 1, __ATOMIC_RELAXED);
		old = race_svd_swap(&sh->slots[race_rand(rng) % sh->nslots], ctx);
		if (old.id)
			race_svd_destroy(sh, c, old);
		if (__atomic_add_fetch(&sh->cycles, 1, __ATOMIC_ACQ_REL) >= sh->iterations)
			__atomic_store_n(&sh->stop, 1, __ATOMIC_RELEASE);
	}
}

/* One io_getevents or io_submit (a POLL) on context c; its result. */
static long race_svd_lookup(struct race_svd_shared *sh, struct race_svd_ctx c, uint64_t pick)
{
	struct race_svd_result *o = sh->out;
	struct io_event ev[4];
	struct iocb cb, *cbp = &cb;
	struct race_span sp;
	long r;

	if (pick & (1u << 20)) {
		race_pre_call(sh->opts);
		sp.t0 = race_stamp();
		r = race_io_getevents_now(c.id, ev, 4);
		sp.t1 = race_stamp();
		race_svd_check(sh, c, &sp, r >= 0);
		if (r >= 0)
			race_add(&o->getevents_ok, 1);
		else if (r == -EINVAL)
			race_add(&o->getevents_einval, 1);
		else {
			race_add(&o->getevents_other, 1);
			race_note_errno(&o->tail.first_other_errno, r);
		}
		return r;
	}
	/* a POLL stays queued until io_destroy cancels it */
	memset(&cb, 0, sizeof(cb));
	cb.aio_lio_opcode = IOCB_CMD_POLL;
	cb.aio_fildes = (uint32_t)sh->pipe_rd;
	cb.aio_buf = POLLIN;
	race_pre_call(sh->opts);
	sp.t0 = race_stamp();
	r = lab_io_submit(c.id, 1, &cbp);
	sp.t1 = race_stamp();
	race_svd_check(sh, c, &sp, r == 1);
	if (r == 1)
		race_add(&o->submit_ok, 1);
	else if (r == -EINVAL)
		race_add(&o->submit_einval, 1);
	else if (r == -EAGAIN)
		race_add(&o->submit_eagain, 1);
	else {
		race_add(&o->submit_other, 1);
		race_note_errno(&o->tail.first_other_errno, r);
	}
	return r;
}

/*
 * A looker takes a context from a random slot and uses it for up to hold
 * calls, or until EINVAL says it is gone: an id held on to is still used
 * after its creator swapped it out and began to destroy it.
 */
static void race_svd_look(struct race_svd_shared *sh, uint64_t *rng)
{
	struct race_svd_result *o = sh->out;

	while (!race_svd_done(sh)) {
		struct race_svd_rec slot;
		uint64_t pick = race_rand(rng);

		if (!race_svd_read(&sh->slots[pick % sh->nslots], &slot) || !slot.c.id) {
			race_add(&o->lookups_idle, 1);
			sched_yield();
			continue;
		}
		for (unsigned k = 0; k < sh->hold; k++) {
			if (race_svd_lookup(sh, slot.c, k ? race_rand(rng) : pick) == -EINVAL ||
			    race_svd_done(sh))
				break;
		}
	}
}

static void *race_svd_thread(void *p)
{
	struct race_svd_arg *a = p;
	uint64_t rng = a->sh->seed * 2654435761u + (uint64_t)a->index + 1;

	race_pin(a->index, a->sh->opts);
	if (a->index < a->sh->creators)
		race_svd_create(a->sh, a->index, &rng);
	else
		race_svd_look(a->sh, &rng);
	return NULL;
}

long race_setup_vs_destroy(int creators, int lookers, unsigned nslots,
			   unsigned nr_events, unsigned hold, uint64_t iterations,
			   uint64_t duration_ns, uint64_t seed, unsigned opts,
			   struct race_svd_result *out)
{
	struct race_svd_shared sh;
	struct race_svd_arg args[RACE_MAX_THREADS];
	int pipefd[2], n = creators + lookers;
	uint64_t t0;
	long r;

	memset(out, 0, sizeof(*out));
	if (creators < 1 || lookers < 0 || n > RACE_MAX_THREADS || nslots < 1 || hold < 1 ||
	    (opts & ~(unsigned)RACE_OPTS_ALL))
		return -EINVAL;
	memset(&sh, 0, sizeof(sh));
	sh.slots = calloc(nslots, sizeof(*sh.slots));
	sh.cr = calloc((size_t)creators, sizeof(*sh.cr));
	sh.hit = race_map(RACE_SVD_TRACKED);
	r = sh.slots && sh.cr && sh.hit ? 0 : -ENOMEM;
	if (r == 0 && pipe(pipefd) < 0)
		r = -errno;
	if (r < 0)
		goto out;
	sh.creators = creators;
	sh.nslots = nslots;
	sh.nr_events = nr_events;
	sh.hold = hold;
	sh.iterations = iterations;
	sh.seed = seed;
	sh.pipe_rd = pipefd[0];
	sh.out = out;
	sh.opts = opts;
	race_clock_start(&sh.clk);
	out->cpus = (uint64_t)race_cpus();
	out->tail.opts = opts;
	for (int i = 0; i < n; i++)
		args[i] = (struct race_svd_arg){ &sh, i };
	t0 = race_now();
	sh.deadline = t0 + duration_ns;
	r = race_run_threads(n, race_svd_thread, args, sizeof(args[0]));
	out->tail.elapsed_ns = race_now() - t0;
	race_clock_report(&sh.clk, &out->tail.clock_tsc, &out->tail.clock_ns,
			  &out->tail.clock_res_ns);
	out->iterations = sh.cycles;
	if (out->iterations >= iterations)
		out->tail.timed_out = 0; /* the count bound was reached first */
	for (unsigned i = 0; i < nslots; i++) {
		if (!sh.slots[i].c.id)
			continue;
		if (lab_io_destroy(sh.slots[i].c.id) == 0)
			out->final_destroy_ok++;
		else
			out->final_destroy_failed++;
	}
	out->tail.overlap_rounds = sh.destroys;
	for (uint64_t g = 0; g < RACE_SVD_TRACKED && g <= sh.created; g++) {
		out->tail.overlapped += !!(sh.hit[g] & RACE_SVD_RACED);
		out->tail.any_overlap += !!(sh.hit[g] & RACE_SVD_MET);
	}
	if (r == 0 && out->setup_ok == 0 && out->tail.first_other_errno)
		r = -out->tail.first_other_errno;
	close(pipefd[0]);
	close(pipefd[1]);
out:
	if (sh.hit)
		munmap(sh.hit, RACE_SVD_TRACKED);
	free(sh.cr);
	free(sh.slots);
	return r;
}

/* What Python calls (the cdef; compiled here, so checked against the definitions above). */
/* cdef: begin */
long race_setup_vs_destroy(int creators, int lookers, unsigned nslots,
                           unsigned nr_events, unsigned hold, uint64_t iterations,
                           uint64_t duration_ns, uint64_t seed, unsigned opts,
                           struct race_svd_result *out);
/* cdef: end */
