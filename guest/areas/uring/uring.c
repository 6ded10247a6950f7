/*
 * io_uring for the kernel-lab agent: raw syscalls and the ring mappings.
 *
 * No liburing on purpose: the lab tests the kernel's own checks, so nothing
 * in between may validate, retry or rewrite an SQE.  Written against the
 * uapi structures (<linux/io_uring.h>, <linux/nvme_ioctl.h>).  The shared
 * ring indices are read with acquire and written with release semantics,
 * as the kernel's io_uring.h comment asks of an application.
 */
#include <errno.h>
#include <stdint.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <linux/io_uring.h>
#include <linux/nvme_ioctl.h>

/*
 * Linux 6.18 added IORING_URING_CMD_MULTISHOT = 1U << 1 (io_uring/uring_cmd.c,
 * for ublk's batch fetch); the build host's uapi headers (Debian 12: 6.1)
 * predate it, so the value is spelled out here.
 */
#ifndef IORING_URING_CMD_MULTISHOT
#define IORING_URING_CMD_MULTISHOT (1U << 1) /* Linux 6.18: io_uring/uring_cmd.c */
#endif

/* Returned to Python as -errno, like the aio area's wrappers. */
static long lab_uring_ret(long r)
{
	return r < 0 ? -(long)errno : r;
}

static long lab_uring_setup(unsigned entries, struct io_uring_params *p)
{
	return lab_uring_ret(syscall(__NR_io_uring_setup, entries, p));
}

static long lab_uring_enter(int fd, unsigned to_submit, unsigned min_complete,
			    unsigned flags, void *arg, size_t argsz)
{
	return lab_uring_ret(syscall(__NR_io_uring_enter, fd, to_submit,
				     min_complete, flags, arg, argsz));
}

static long lab_uring_register(int fd, unsigned opcode, void *arg,
			       unsigned nr_args)
{
	return lab_uring_ret(syscall(__NR_io_uring_register, fd, opcode, arg,
				     nr_args));
}

/* A ring as the agent sees it: the fd and the three mappings. */
struct lab_ring {
	int fd;
	unsigned flags;
	unsigned features;
	unsigned sq_entries;
	unsigned cq_entries;
	unsigned sqe_size;
	unsigned cqe_size;
	void *sq_ptr;
	size_t sq_len;
	void *cq_ptr;
	size_t cq_len;
	void *sqes;
	size_t sqes_len;
	unsigned *sq_head;
	unsigned *sq_tail;
	unsigned *sq_mask;
	unsigned *sq_array;
	unsigned *cq_head;
	unsigned *cq_tail;
	unsigned *cq_mask;
	char *cqes;
	unsigned sqe_tail; /* local: SQEs handed out, not yet published */
};

/* One completion, copied out of the ring (big[] only for CQE32 rings). */
/* cdef: begin */
struct lab_cqe {
	uint64_t user_data;
	int32_t res;
	uint32_t flags;
	uint64_t big[2];
};
/* cdef: end */

static long lab_uring_mmap(int fd, size_t len, uint64_t off, void **out)
{
	void *p = mmap(NULL, len, PROT_READ | PROT_WRITE,
		       MAP_SHARED | MAP_POPULATE, fd, (off_t)off);

	if (p == MAP_FAILED)
		return -(long)errno;
	*out = p;
	return 0;
}

static void lab_ring_unmap(struct lab_ring *r)
{
	if (r->sqes)
		munmap(r->sqes, r->sqes_len);
	if (r->cq_ptr && r->cq_ptr != r->sq_ptr)
		munmap(r->cq_ptr, r->cq_len);
	if (r->sq_ptr)
		munmap(r->sq_ptr, r->sq_len);
	r->sqes = r->cq_ptr = r->sq_ptr = NULL;
}

/*
 * io_uring_setup and map the rings.  p carries the caller's flags in and
 * the kernel's answer out.  On failure the fd is closed and -errno returned.
 */
static long lab_ring_init(struct lab_ring *r, unsigned entries,
			  struct io_uring_params *p)
{
	struct io_sqring_offsets *so = &p->sq_off;
	struct io_cqring_offsets *co = &p->cq_off;
	char *sq, *cq;
	long ret;

	memset(r, 0, sizeof(*r));
	ret = lab_uring_setup(entries, p);
	if (ret < 0)
		return ret;
	r->fd = (int)ret;
	r->flags = p->flags;
	r->features = p->features;
	r->sq_entries = p->sq_entries;
	r->cq_entries = p->cq_entries;
	r->sqe_size = (p->flags & IORING_SETUP_SQE128) ? 128 : 64;
	r->cqe_size = (p->flags & IORING_SETUP_CQE32) ? 32 : 16;
	r->sq_len = so->array + p->sq_entries * sizeof(unsigned);
	r->cq_len = co->cqes + (size_t)p->cq_entries * r->cqe_size;
	if (p->features & IORING_FEAT_SINGLE_MMAP) {
		if (r->cq_len > r->sq_len)
			r->sq_len = r->cq_len;
		r->cq_len = r->sq_len;
	}
	ret = lab_uring_mmap(r->fd, r->sq_len, IORING_OFF_SQ_RING, &r->sq_ptr);
	if (ret < 0)
		goto fail;
	if (p->features & IORING_FEAT_SINGLE_MMAP) {
		r->cq_ptr = r->sq_ptr;
	} else {
		ret = lab_uring_mmap(r->fd, r->cq_len, IORING_OFF_CQ_RING,
				     &r->cq_ptr);
		if (ret < 0)
			goto fail;
	}
	r->sqes_len = (size_t)p->sq_entries * r->sqe_size;
	ret = lab_uring_mmap(r->fd, r->sqes_len, IORING_OFF_SQES, &r->sqes);
	if (ret < 0)
		goto fail;
	sq = r->sq_ptr;
	cq = r->cq_ptr;
	r->sq_head = (unsigned *)(sq + so->head);
	r->sq_tail = (unsigned *)(sq + so->tail);
	r->sq_mask = (unsigned *)(sq + so->ring_mask);
	r->sq_array = (unsigned *)(sq + so->array);
	r->cq_head = (unsigned *)(cq + co->head);
	r->cq_tail = (unsigned *)(cq + co->tail);
	r->cq_mask = (unsigned *)(cq + co->ring_mask);
	r->cqes = cq + co->cqes;
	r->sqe_tail = *r->sq_tail;
	return 0;
fail:
	lab_ring_unmap(r);
	close(r->fd);
	r->fd = -1;
	return ret;
}

static long lab_ring_exit(struct lab_ring *r)
{
	long ret = 0;

	lab_ring_unmap(r);
	if (r->fd >= 0)
		ret = lab_uring_ret(close(r->fd));
	r->fd = -1;
	return ret;
}

/* The next free SQE, zeroed (all sqe_size bytes), or NULL when the SQ is full. */
static struct io_uring_sqe *lab_ring_get_sqe(struct lab_ring *r)
{
	unsigned head = __atomic_load_n(r->sq_head, __ATOMIC_ACQUIRE);
	char *sqe;

	if (r->sqe_tail - head >= r->sq_entries)
		return NULL;
	sqe = (char *)r->sqes + (size_t)(r->sqe_tail & *r->sq_mask) * r->sqe_size;
	memset(sqe, 0, r->sqe_size);
	r->sq_array[r->sqe_tail & *r->sq_mask] = r->sqe_tail & *r->sq_mask;
	r->sqe_tail++;
	return (struct io_uring_sqe *)sqe;
}

/* The SQE128 command area (80 bytes there, 16 on a 64-byte-SQE ring). */
static void *lab_sqe_cmd(struct io_uring_sqe *sqe)
{
	return (char *)sqe + offsetof(struct io_uring_sqe, addr3);
}

/* Publish the SQEs handed out and submit them; returns how many the kernel took. */
static long lab_ring_submit(struct lab_ring *r)
{
	unsigned tail = *r->sq_tail;
	unsigned n = r->sqe_tail - tail;

	__atomic_store_n(r->sq_tail, r->sqe_tail, __ATOMIC_RELEASE);
	return lab_uring_enter(r->fd, n, 0, 0, NULL, 0);
}

/*
 * Wait until min_complete CQEs are ready, at most timeout_ns.  -ETIME on
 * timeout.  A multishot command may never complete, so no wait is unbounded.
 */
static long lab_ring_wait(struct lab_ring *r, unsigned min_complete,
			  int64_t timeout_ns)
{
	struct __kernel_timespec ts = {
		.tv_sec = timeout_ns / 1000000000,
		.tv_nsec = timeout_ns % 1000000000,
	};
	struct io_uring_getevents_arg arg = { .ts = (uint64_t)(uintptr_t)&ts };

	return lab_uring_enter(r->fd, 0, min_complete,
			       IORING_ENTER_GETEVENTS | IORING_ENTER_EXT_ARG,
			       &arg, sizeof(arg));
}

/* Copy up to max ready CQEs out and free their slots; returns how many. */
static long lab_ring_reap(struct lab_ring *r, struct lab_cqe *out, unsigned max)
{
	unsigned head = *r->cq_head;
	unsigned tail = __atomic_load_n(r->cq_tail, __ATOMIC_ACQUIRE);
	unsigned n = 0;

	while (head != tail && n < max) {
		struct io_uring_cqe *c = (struct io_uring_cqe *)
			(r->cqes + (size_t)(head & *r->cq_mask) * r->cqe_size);

		out[n].user_data = c->user_data;
		out[n].res = c->res;
		out[n].flags = c->flags;
		if (r->cqe_size == 32)
			memcpy(out[n].big, (char *)c + 16, 16);
		else
			out[n].big[0] = out[n].big[1] = 0;
		head++;
		n++;
	}
	__atomic_store_n(r->cq_head, head, __ATOMIC_RELEASE);
	return n;
}

/* Provided-buffer ring (IORING_REGISTER_PBUF_RING): fill a slot, then publish. */
static void lab_pbuf_set(void *ring, unsigned entries, unsigned idx,
			 uint64_t addr, uint32_t len, uint16_t bid)
{
	struct io_uring_buf_ring *br = ring;
	struct io_uring_buf *b = &br->bufs[idx & (entries - 1)];

	b->addr = addr;
	b->len = len;
	b->bid = bid;
}

static void lab_pbuf_publish(void *ring, uint16_t tail)
{
	struct io_uring_buf_ring *br = ring;

	__atomic_store_n(&br->tail, tail, __ATOMIC_RELEASE);
}

/* What Python calls (the cdef; compiled here, so checked against the definitions above). */
/* cdef: begin */
static long lab_uring_setup(unsigned entries, struct io_uring_params *p);
static long lab_uring_enter(int fd, unsigned to_submit, unsigned min_complete, unsigned flags,
                     void *arg, size_t argsz);
static long lab_uring_register(int fd, unsigned opcode, void *arg, unsigned nr_args);
static long lab_ring_init(struct lab_ring *r, unsigned entries, struct io_uring_params *p);
static long lab_ring_exit(struct lab_ring *r);
static struct io_uring_sqe *lab_ring_get_sqe(struct lab_ring *r);
static void *lab_sqe_cmd(struct io_uring_sqe *sqe);
static long lab_ring_submit(struct lab_ring *r);
static long lab_ring_wait(struct lab_ring *r, unsigned min_complete, int64_t timeout_ns);
static long lab_ring_reap(struct lab_ring *r, struct lab_cqe *out, unsigned max);
static void lab_pbuf_set(void *ring, unsigned entries, unsigned idx, uint64_t addr, uint32_t len,
                  uint16_t bid);
static void lab_pbuf_publish(void *ring, uint16_t tail);
/* cdef: end */
