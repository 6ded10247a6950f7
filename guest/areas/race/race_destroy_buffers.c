/*
 * Race loop: io_destroy must not return while buffers are targets (shared
 * parts in race.h).
 *
 * Overlap: here io_destroy races the device, not another syscall.  A round
 * overlapped when, at a moment inside io_destroy, reads were still in
 * flight: a watcher thread takes the eventfd's completion count at a time w
 * with t0 < w < t1 (the destroy's span) and finds fewer completions than
 * submissions.  overlap_calls sums the reads in flight at those moments;
 * any_overlap counts rounds with reads still pending just before the call.
 */

#include "race.h"

/* cdef: begin */
struct race_buf_result {
	uint64_t iterations;
	uint64_t submitted;
	uint64_t pending_at_destroy;
	uint64_t completed_by_destroy;
	uint64_t unfinished_at_destroy;
	uint64_t modified_after_destroy;
	uint64_t late_completions;
	uint64_t destroy_ns_total;
	uint64_t destroy_ns_min;
	uint64_t destroy_ns_max;
	struct race_tail tail;
};
/* cdef: end */

enum { RACE_BUF_IDLE, RACE_BUF_DESTROYING, RACE_BUF_SAMPLED, RACE_BUF_QUIT };

struct race_buf_ctx {
	int fd;
	unsigned nbufs;
	size_t bufsize;
	uint64_t stride;
	unsigned char *bufs;
	unsigned char *expect; /* the device's data at each offset */
	int efd;
	unsigned opts;
	struct race_clock clk;
	uint64_t seen; /* completions taken from efd so far, by either thread */
	/* the watcher's handshake: one sample per destroy */
	pthread_mutex_t lock;
	pthread_cond_t cond;
	int phase;
	uint64_t t0; /* the destroy's start (a stamp), 0 until it is about to begin */
	uint64_t sample;
	uint64_t sample_seen;
};

/* Completions so far: whatever the eventfd holds now, added to the tally. */
static uint64_t race_buf_take(struct race_buf_ctx *b)
{
	return __atomic_add_fetch(&b->seen, race_efd_take(b->efd), __ATOMIC_ACQ_REL);
}

static void race_buf_set_phase(struct race_buf_ctx *b, int phase)
{
	pthread_mutex_lock(&b->lock);
	b->phase = phase;
	pthread_cond_broadcast(&b->cond);
	pthread_mutex_unlock(&b->lock);
}

static int race_buf_wait_phase(struct race_buf_ctx *b, int a, int c)
{
	int phase;

	pthread_mutex_lock(&b->lock);
	while ((phase = b->phase) != a && phase != c)
		pthread_cond_wait(&b->cond, &b->lock);
	pthread_mutex_unlock(&b->lock);
	return phase;
}

/* Once per destroy: the completion count at a moment after it began. */
static void *race_buf_watch(void *p)
{
	struct race_buf_ctx *b = p;

	race_pin(1, b->opts);
	while (race_buf_wait_phase(b, RACE_BUF_DESTROYING, RACE_BUF_QUIT) != RACE_BUF_QUIT) {
		while (!__atomic_load_n(&b->t0, __ATOMIC_ACQUIRE))
			sched_yield();
		b->sample_seen = race_buf_take(b);
		b->sample = race_stamp(); /* later than t0: t0 was taken before it was stored */
		race_buf_set_phase(b, RACE_BUF_SAMPLED);
	}
	return NULL;
}

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
	uint64_t seen0 = __atomic_load_n(&b->seen, __ATOMIC_ACQUIRE);
	uint64_t before, done, t0, s0, s1, dt, submitted = 0;
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
		submitted = (uint64_t)r;
	o->submitted += submitted;
	before = race_buf_take(b) - seen0;
	o->pending_at_destroy += submitted > before ? submitted - before : 0;
	o->tail.any_overlap += submitted > before;
	__atomic_store_n(&b->t0, 0, __ATOMIC_RELAXED);
	race_buf_set_phase(b, RACE_BUF_DESTROYING);
	t0 = race_now();
	s0 = race_stamp();
	__atomic_store_n(&b->t0, s0, __ATOMIC_RELEASE);
	destroyed = lab_io_destroy(ctx);
	s1 = race_stamp();
	dt = race_now() - t0;
	race_buf_wait_phase(b, RACE_BUF_SAMPLED, RACE_BUF_SAMPLED);
	race_buf_set_phase(b, RACE_BUF_IDLE);
	o->tail.overlap_rounds++;
	if (b->sample + b->clk.margin < s1 && b->sample_seen - seen0 < submitted) {
		o->tail.overlapped++;
		o->tail.overlap_calls += submitted - (b->sample_seen - seen0);
	}
	if (destroyed < 0)
		race_note_errno(&o->tail.first_other_errno, destroyed);
	done = race_buf_take(b) - seen0;
	o->completed_by_destroy += done;
	/* Right away (no round trip to the host): did every read land, then
	 * does anything still write into the buffers once we reuse them? */
	for (unsigned i = 0; i < b->nbufs; i++) {
		o->unfinished_at_destroy += !race_buf_is(b, i, -1);
		memset(race_buf(b, i), race_pattern(b, i, 0x5A), b->bufsize);
	}
	nanosleep(&settle, NULL);
	for (unsigned i = 0; i < b->nbufs; i++)
		o->modified_after_destroy += !race_buf_is(b, i, race_pattern(b, i, 0x5A));
	o->late_completions += race_buf_take(b) - seen0 - done;
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

/* The rounds, run in a thread of their own so that pinning never binds the agent. */
struct race_buf_run {
	struct race_buf_ctx *b;
	struct race_buf_result *out;
	uint64_t rounds;
	uint64_t deadline;
	uint64_t settle_ns;
	long r;
};

struct race_buf_arg {
	struct race_buf_run *run;
	int index; /* 0: the rounds, 1: the watcher */
};

static void *race_buf_thread(void *p)
{
	struct race_buf_arg *a = p;
	struct race_buf_run *run = a->run;
	struct race_buf_result *out = run->out;

	if (a->index == 1)
		return race_buf_watch(run->b);
	race_pin(0, run->b->opts);
	while (run->r == 0 && out->iterations < run->rounds) {
		if (race_now() >= run->deadline) {
			out->tail.timed_out = 1;
			break;
		}
		run->r = race_buf_round(run->b, run->settle_ns, out);
		out->iterations += run->r == 0;
	}
	race_buf_set_phase(run->b, RACE_BUF_QUIT);
	return NULL;
}

long race_destroy_buffers(int fd, unsigned nbufs, uint64_t bufsize, uint64_t stride,
			  uint64_t rounds, uint64_t duration_ns, uint64_t settle_ns,
			  unsigned opts, struct race_buf_result *out)
{
	struct race_buf_ctx b;
	struct race_buf_run run = { &b, out, rounds, 0, settle_ns, 0 };
	struct race_buf_arg args[2] = { { &run, 0 }, { &run, 1 } };
	size_t total = (size_t)nbufs * (size_t)bufsize;
	uint64_t t0 = race_now();
	long r = 0;

	memset(out, 0, sizeof(*out));
	if (!nbufs || !bufsize || bufsize % 512 || stride < bufsize ||
	    (opts & ~(unsigned)RACE_OPTS_ALL))
		return -EINVAL;
	memset(&b, 0, sizeof(b));
	b.fd = fd;
	b.nbufs = nbufs;
	b.bufsize = (size_t)bufsize;
	b.stride = stride;
	b.opts = opts;
	pthread_mutex_init(&b.lock, NULL);
	pthread_cond_init(&b.cond, NULL);
	race_clock_start(&b.clk);
	out->tail.opts = opts;
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
	if (r == 0) {
		memcpy(b.expect, b.bufs, total);
		run.deadline = t0 + duration_ns;
		r = race_run_threads(2, race_buf_thread, args, sizeof(args[0]));
		if (r == 0)
			r = run.r;
	}
	out->tail.elapsed_ns = race_now() - t0;
	race_clock_report(&b.clk, &out->tail.clock_tsc, &out->tail.clock_ns,
			  &out->tail.clock_res_ns);
	if (b.bufs)
		munmap(b.bufs, total);
	if (b.expect)
		munmap(b.expect, total);
	if (b.efd >= 0)
		close(b.efd);
	pthread_cond_destroy(&b.cond);
	pthread_mutex_destroy(&b.lock);
	return r;
}

/* What Python calls (the cdef; compiled here, so checked against the definitions above). */
/* cdef: begin */
long race_destroy_buffers(int fd, unsigned nbufs, uint64_t bufsize, uint64_t stride,
                          uint64_t rounds, uint64_t duration_ns, uint64_t settle_ns,
                          unsigned opts, struct race_buf_result *out);
/* cdef: end */
