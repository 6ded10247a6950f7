/* Race loop: concurrent io_destroy of one ctx (shared parts in race.h). */

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
	int64_t first_other_errno;
};

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
