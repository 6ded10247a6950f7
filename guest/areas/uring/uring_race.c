/*
 * The SQE double read (io_uring review, 2019): userspace rewrites a live
 * SQE's opcode and fd from another thread while the kernel submits it.
 *
 * In the reviewed patch the submission path read sqe->opcode once inline
 * (READV: the file looked up and referenced, then -EAGAIN) and again in the
 * async retry, from the same shared SQE: had userspace changed it to NOP
 * meanwhile, the request was freed with the file reference still held.
 * Today's kernels copy what they need out of the SQE once; this loop checks
 * that whatever the kernel read, it released every file it took.
 *
 * Each round hands the kernel one SQE: READV of fd A (an empty O_NONBLOCK
 * pipe, so the read cannot complete inline and goes to async work: poll
 * retry or, with IOSQE_ASYNC, io-wq), after `lead` NOPs in the same batch,
 * so that the kernel reads it a little later than the batch's start.  From
 * the moment it is handed over (the SQ tail published) until linger_ns after
 * the kernel consumed it (the SQ head moved past it), a rewriter thread on
 * another vCPU cycles it through every mix of {READV, NOP} x {fd A, fd B},
 * fd B being the read end of another empty pipe or FIFO.  Then 1 byte goes into A and 2 into B, so
 * the completion tells which SQE the kernel acted on: res 0 a NOP, 1 a READV
 * of A (what was written), 2 a READV of B.  Anything but a READV of A means
 * the kernel read the SQE after a rewrite: the submission saw the rewrite
 * in flight.  The pipes are drained for the next round.
 *
 * Uses uring.c's ring helpers: the agent builds every area's C into one
 * translation unit, in name order, so uring.c comes before this file.
 */

#include <sys/mount.h>
#include <sys/uio.h>

#include "race.h"

/* cdef: begin */
struct sqe_race_result {
	uint64_t rounds;
	uint64_t sqpoll;
	uint64_t submitted;
	uint64_t async_rounds;     /* sent with IOSQE_ASYNC */
	uint64_t as_written;       /* the kernel ran READV of fd A */
	uint64_t saw_nop;          /* ... a NOP */
	uint64_t saw_other_fd;     /* ... a READV of fd B */
	uint64_t saw_rewrite;      /* saw_nop + saw_other_fd */
	uint64_t eagain;           /* READV answered -EAGAIN: which fd is unknown */
	uint64_t unexplained;      /* no completion, or a result none of the SQEs gives */
	uint64_t rewrites;         /* stores the rewriter made */
	uint64_t live_rewrites;    /* rounds with a rewrite before the kernel consumed the SQE */
	int64_t first_unexplained; /* its res, or 1 for no completion */
	struct race_tail tail;
};
/* cdef: end */

struct sqe_race_shared {
	struct lab_ring ring;
	unsigned *sq_flags;
	int sqpoll;
	int fd_a;
	int fd_b;
	int wr_a;
	int wr_b;
	unsigned opts;
	struct race_clock clk;
	uint64_t rounds;
	uint64_t deadline;
	uint64_t linger_ns;
	int64_t wait_ns;
	unsigned lead;
	int rewrite; /* 0: the rewriter only keeps time (the control run) */
	char buf[8];
	struct iovec iov;
	/* the live SQE and its round: the rewriter works while live == round */
	struct io_uring_sqe *sqe;
	uint64_t live;
	uint64_t busy; /* the round the rewriter is in */
	uint64_t done; /* the last round the rewriter finished */
	uint64_t first_rewrite; /* when this round's first rewrite landed (a stamp) */
	uint64_t rewrites;
	int quit;
	long err;
	struct sqe_race_result *out;
};

struct sqe_race_arg {
	struct sqe_race_shared *sh;
	int index; /* 0: the submitter, 1: the rewriter */
};

/*
 * The rewriter: cycle the live SQE through the four (opcode, fd) mixes,
 * one field at a time, until the round is over.
 */
static void sqe_race_rewrite(struct sqe_race_shared *sh)
{
	unsigned state = 0;

	race_pin(1, sh->opts);
	for (;;) {
		uint64_t round, polls = 0;
		int first = 1;

		/* RACE_OPT_SPIN: poll without ever yielding, to start sooner */
		while (!(round = __atomic_load_n(&sh->live, __ATOMIC_ACQUIRE))) {
			if (__atomic_load_n(&sh->quit, __ATOMIC_ACQUIRE))
				return;
			if (++polls > RACE_SPIN_POLLS && !(sh->opts & RACE_OPT_SPIN))
				sched_yield();
		}
		/*
		 * busy before each look at live, both sequentially consistent:
		 * either the submitter sees busy and waits for done, or this
		 * thread sees the round over before its first store.
		 */
		__atomic_store_n(&sh->busy, round, __ATOMIC_SEQ_CST);
		while (sh->rewrite && __atomic_load_n(&sh->live, __ATOMIC_SEQ_CST) == round) {
			struct io_uring_sqe *sqe = sh->sqe;

			state++;
			if (state & 1)
				__atomic_store_n(&sqe->opcode, (state & 2) ? IORING_OP_READV
						 : IORING_OP_NOP, __ATOMIC_RELAXED);
			else
				__atomic_store_n(&sqe->fd, (state & 2) ? sh->fd_a : sh->fd_b,
						 __ATOMIC_RELAXED);
			sh->rewrites++;
			if (first) {
				__atomic_store_n(&sh->first_rewrite, race_stamp(), __ATOMIC_RELEASE);
				first = 0;
			}
		}
		__atomic_store_n(&sh->done, round, __ATOMIC_RELEASE);
	}
}

static void sqe_race_drain(int fd)
{
	char buf[64];

	while (read(fd, buf, sizeof(buf)) > 0)
		;
}

/*
 * Hand the batch over, start the rewriter, and wait until the kernel has
 * consumed the batch; 0 or -errno.
 */
static long sqe_race_submit(struct sqe_race_shared *sh, uint64_t round)
{
	struct lab_ring *r = &sh->ring;
	unsigned n = r->sqe_tail - *r->sq_tail;
	uint64_t give_up;
	long ret;

	__atomic_store_n(r->sq_tail, r->sqe_tail, __ATOMIC_RELEASE);
	/* live only now: a rewrite before the hand-over would not be in flight */
	__atomic_store_n(&sh->live, round, __ATOMIC_RELEASE);
	if (!sh->sqpoll) {
		ret = lab_uring_enter(r->fd, n, 0, 0, NULL, 0);
		return ret == (long)n ? 0 : ret < 0 ? ret : -EIO;
	}
	give_up = race_now() + (uint64_t)sh->wait_ns;
	while (__atomic_load_n(r->sq_head, __ATOMIC_ACQUIRE) != r->sqe_tail) {
		/* the SQPOLL thread went idle: wake it */
		if (__atomic_load_n(sh->sq_flags, __ATOMIC_ACQUIRE) & IORING_SQ_NEED_WAKEUP) {
			ret = lab_uring_enter(r->fd, 0, 0, IORING_ENTER_SQ_WAKEUP, NULL, 0);
			if (ret < 0)
				return ret;
		}
		if (race_now() > give_up)
			return -ETIMEDOUT;
		sched_yield();
	}
	return 0;
}

/* The round's completion; the lead NOPs' (user_data 0) are counted and dropped. */
static long sqe_race_reap(struct sqe_race_shared *sh, struct lab_cqe *cqe)
{
	uint64_t give_up = race_now() + (uint64_t)sh->wait_ns;
	struct lab_cqe c;

	for (;;) {
		while (lab_ring_reap(&sh->ring, &c, 1) == 1) {
			if (c.user_data == 0 && c.res == 0)
				continue;
			*cqe = c;
			return 1;
		}
		if (race_now() >= give_up)
			return 0;
		lab_ring_wait(&sh->ring, 1, (int64_t)(give_up - race_now()));
	}
}

/* Which SQE the kernel ran, from the completion after 1 byte in A and 2 in B. */
static void sqe_race_classify(struct sqe_race_shared *sh, uint64_t round)
{
	struct sqe_race_result *o = sh->out;
	struct lab_cqe cqe;
	long n;

	if (write(sh->wr_a, "a", 1) != 1 || write(sh->wr_b, "bb", 2) != 2)
		race_note_errno(&o->tail.first_other_errno, -errno);
	n = sqe_race_reap(sh, &cqe);
	if (n == 1 && cqe.user_data == round && cqe.res >= 0 && cqe.res <= 2) {
		if (cqe.res == 0)
			o->saw_nop++;
		else if (cqe.res == 1)
			o->as_written++;
		else
			o->saw_other_fd++;
	} else if (n == 1 && cqe.user_data == round && cqe.res == -EAGAIN) {
		o->eagain++;
	} else {
		o->unexplained++;
		if (!o->first_unexplained)
			o->first_unexplained = n == 1 ? cqe.res : 1;
	}
	o->saw_rewrite = o->saw_nop + o->saw_other_fd;
	sqe_race_drain(sh->fd_a);
	sqe_race_drain(sh->fd_b);
}

static long sqe_race_round(struct sqe_race_shared *sh, uint64_t round)
{
	struct sqe_race_result *o = sh->out;
	struct io_uring_sqe *sqe;
	uint64_t consumed, linger_end, polls = 0;
	long ret;

	for (unsigned i = 0; i < sh->lead; i++) {
		sqe = lab_ring_get_sqe(&sh->ring);
		if (!sqe)
			return -EBUSY;
		sqe->opcode = IORING_OP_NOP; /* user_data 0: a lead NOP */
	}
	sqe = lab_ring_get_sqe(&sh->ring);
	if (!sqe)
		return -EBUSY;
	sqe->opcode = IORING_OP_READV;
	sqe->fd = sh->fd_a;
	sqe->addr = (uint64_t)(uintptr_t)&sh->iov;
	sqe->len = 1;
	sqe->user_data = round;
	/* every other round straight to io-wq, the rest by the poll retry */
	if (!sh->sqpoll && (round & 1)) {
		sqe->flags = IOSQE_ASYNC;
		o->async_rounds++;
	}
	sh->sqe = sqe;
	__atomic_store_n(&sh->first_rewrite, 0, __ATOMIC_RELAXED);
	ret = sqe_race_submit(sh, round);
	consumed = race_stamp();
	/* the 2019 retry read the SQE again from async work: keep rewriting a while */
	linger_end = race_now() + sh->linger_ns;
	while (race_now() < linger_end)
		;
	__atomic_store_n(&sh->live, 0, __ATOMIC_SEQ_CST);
	while (__atomic_load_n(&sh->busy, __ATOMIC_SEQ_CST) == round &&
	       __atomic_load_n(&sh->done, __ATOMIC_ACQUIRE) != round)
		if (++polls > RACE_SPIN_POLLS)
			sched_yield();
	if (ret < 0)
		return ret;
	o->submitted++;
	{
		uint64_t first = __atomic_load_n(&sh->first_rewrite, __ATOMIC_ACQUIRE);

		o->live_rewrites += first && first < consumed;
	}
	sqe_race_classify(sh, round);
	return 0;
}

static void sqe_race_submitter(struct sqe_race_shared *sh)
{
	struct sqe_race_result *o = sh->out;

	race_pin(0, sh->opts);
	for (uint64_t round = 1; round <= sh->rounds; round++) {
		if (race_now() >= sh->deadline) {
			o->tail.timed_out = 1;
			break;
		}
		sh->err = sqe_race_round(sh, round);
		if (sh->err < 0)
			break;
		o->rounds = round;
		if (o->unexplained)
			break; /* a request still pending would muddle every later round */
	}
	__atomic_store_n(&sh->quit, 1, __ATOMIC_RELEASE);
}

static void *sqe_race_thread(void *p)
{
	struct sqe_race_arg *a = p;

	if (a->index == 0)
		sqe_race_submitter(a->sh);
	else
		sqe_race_rewrite(a->sh);
	return NULL;
}

long uring_sqe_race(int rd_a, int wr_a, int rd_b, int wr_b, int sqpoll,
		    int rewrite, unsigned lead, uint64_t rounds, uint64_t duration_ns,
		    uint64_t linger_ns, int64_t wait_ns, unsigned opts,
		    struct sqe_race_result *out)
{
	struct sqe_race_shared *sh;
	struct sqe_race_arg args[2];
	struct io_uring_params params;
	uint64_t t0 = race_now();
	long r;

	memset(out, 0, sizeof(*out));
	unsigned entries = 8;

	if (opts & ~(unsigned)RACE_OPTS_ALL || wait_ns <= 0 || lead > 1024)
		return -EINVAL;
	while (entries < 2 * (lead + 1))
		entries *= 2;
	sh = calloc(1, sizeof(*sh));
	if (!sh)
		return -ENOMEM;
	memset(&params, 0, sizeof(params));
	if (sqpoll) {
		/* The kernel thread is left unpinned: bound to the submitter's
		 * vCPU it waited for that thread's yields, about 30 rounds/s. */
		params.flags = IORING_SETUP_SQPOLL;
		params.sq_thread_idle = 100; /* ms */
	}
	r = lab_ring_init(&sh->ring, entries, &params);
	if (r < 0) {
		free(sh);
		return r;
	}
	sh->sq_flags = (unsigned *)((char *)sh->ring.sq_ptr + params.sq_off.flags);
	sh->sqpoll = !!sqpoll;
	sh->fd_a = rd_a;
	sh->fd_b = rd_b;
	sh->wr_a = wr_a;
	sh->wr_b = wr_b;
	sh->opts = opts;
	sh->rounds = rounds;
	sh->deadline = t0 + duration_ns;
	sh->linger_ns = linger_ns;
	sh->wait_ns = wait_ns;
	sh->lead = lead;
	sh->rewrite = rewrite;
	sh->iov = (struct iovec){ sh->buf, sizeof(sh->buf) };
	sh->out = out;
	out->sqpoll = sh->sqpoll;
	race_clock_start(&sh->clk);
	args[0] = (struct sqe_race_arg){ sh, 0 };
	args[1] = (struct sqe_race_arg){ sh, 1 };
	r = race_run_threads(2, sqe_race_thread, args, sizeof(args[0]));
	if (r == 0)
		r = sh->err;
	out->rewrites = sh->rewrites;
	race_clock_report(&sh->clk, &out->tail.clock_tsc, &out->tail.clock_ns,
			  &out->tail.clock_res_ns);
	/* closing the ring releases whatever its requests still hold */
	lab_ring_exit(&sh->ring);
	free(sh);
	out->tail.elapsed_ns = race_now() - t0;
	/* In the race loops' terms (race.h): a submission overlapped when the kernel acted
	 * on a version of the SQE written after the hand-over; any_overlap: a rewrite
	 * landed before the kernel had consumed the SQE. */
	out->tail.overlap_rounds = out->submitted;
	out->tail.overlapped = out->saw_rewrite;
	out->tail.overlap_calls = out->saw_rewrite;
	out->tail.any_overlap = out->live_rewrites;
	out->tail.opts = opts;
	return r;
}

/* mount(2) and umount2(2) for the scratch tmpfs, -errno on failure. */
static long lab_mount(const char *source, const char *target, const char *fstype,
		      unsigned long flags, const char *data)
{
	return lab_ret(syscall(__NR_mount, source, target, fstype, flags, data));
}

static long lab_umount2(const char *target, int flags)
{
	return lab_ret(syscall(__NR_umount2, target, flags));
}

/* What Python calls (the cdef; compiled here, so checked against the definitions above). */
/* cdef: begin */
long uring_sqe_race(int rd_a, int wr_a, int rd_b, int wr_b, int sqpoll, int rewrite,
                    unsigned lead,
                    uint64_t rounds, uint64_t duration_ns, uint64_t linger_ns,
                    int64_t wait_ns, unsigned opts, struct sqe_race_result *out);
static long lab_mount(const char *source, const char *target, const char *fstype,
               unsigned long flags, const char *data);
static long lab_umount2(const char *target, int flags);
/* cdef: end */
