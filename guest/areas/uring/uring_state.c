/*
 * uring_state.c: what the io_uring claims read and write in a ring besides SQEs and
 * CQEs: the SQ flags (IORING_SQ_CQ_OVERFLOW), the kernel's sq_dropped and
 * cq_overflow counters, how many CQEs are ready, and one SQ array slot (to point an
 * entry out of range).  It uses struct lab_ring from uring.c, which comes before it
 * in the agent's one translation unit; the offsets come from the io_uring_params the
 * ring was set up with.
 */

/* cdef: begin */
struct lab_ring_state {
	unsigned sq_head;
	unsigned sq_tail;
	unsigned sq_flags;
	unsigned sq_dropped;
	unsigned cq_head;
	unsigned cq_tail;
	unsigned cq_overflow;
	unsigned cq_ready;
};
/* cdef: end */

static unsigned lab_load_u32(const char *base, unsigned off)
{
	return __atomic_load_n((const unsigned *)(base + off), __ATOMIC_ACQUIRE);
}

static void lab_ring_state(const struct lab_ring *r, const struct io_uring_params *p,
			   struct lab_ring_state *out)
{
	const char *sq = r->sq_ptr, *cq = r->cq_ptr;

	out->sq_head = lab_load_u32(sq, p->sq_off.head);
	out->sq_tail = lab_load_u32(sq, p->sq_off.tail);
	out->sq_flags = lab_load_u32(sq, p->sq_off.flags);
	out->sq_dropped = lab_load_u32(sq, p->sq_off.dropped);
	out->cq_head = lab_load_u32(cq, p->cq_off.head);
	out->cq_tail = lab_load_u32(cq, p->cq_off.tail);
	out->cq_overflow = lab_load_u32(cq, p->cq_off.overflow);
	out->cq_ready = out->cq_tail - out->cq_head;
}

/* Point the SQ array slot of the SQE handed out last at ``index`` (any value). */
static void lab_ring_set_last_index(struct lab_ring *r, unsigned index)
{
	r->sq_array[(r->sqe_tail - 1) & *r->sq_mask] = index;
}

/* What Python calls (the cdef; compiled here, so checked against the definitions above). */
/* cdef: begin */
static void lab_ring_state(const struct lab_ring *r, const struct io_uring_params *p,
                    struct lab_ring_state *out);
static void lab_ring_set_last_index(struct lab_ring *r, unsigned index);
/* cdef: end */
