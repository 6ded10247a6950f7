/* Race loop: io_destroy must not return while buffers are targets (shared parts in race.h). */

#include "race.h"

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
