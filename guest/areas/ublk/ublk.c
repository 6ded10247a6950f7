/*
 * ublk for the kernel-lab agent: the uapi of the batch I/O mode (7.0+) and
 * a reader thread that drives I/O into /dev/ublkbN while the agent serves it.
 *
 * The definitions below are copied from include/uapi/linux/ublk_cmd.h of
 * Linux 7.2.13 (Debian's linux 7.2.13-1 source).  The build host's
 * <linux/ublk_cmd.h> (Debian 12: 6.1) predates UBLK_F_BATCH_IO and the
 * UBLK_U_IO_{PREP,COMMIT,FETCH}_IO_CMDS commands, so that header is not
 * included at all: one set of definitions, all from the same release.
 * Only what the lab's server uses is copied.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <linux/ioctl.h>
#include <linux/types.h>

/* ---- from include/uapi/linux/ublk_cmd.h (7.2.13) ---- */
struct ublksrv_ctrl_cmd {
	__u32 dev_id;
	__u16 queue_id;
	__u16 len;
	__u64 addr;
	__u64 data[1];
	__u16 dev_path_len;
	__u16 pad;
	__u32 reserved;
};

struct ublksrv_ctrl_dev_info {
	__u16 nr_hw_queues;
	__u16 queue_depth;
	__u16 state;
	__u16 pad0;
	__u32 max_io_buf_bytes;
	__u32 dev_id;
	__s32 ublksrv_pid;
	__u32 pad1;
	__u64 flags;
	__u64 ublksrv_flags;
	__u32 owner_uid;
	__u32 owner_gid;
	__u64 reserved1;
	__u64 reserved2;
};

struct ublksrv_io_desc {
	__u32 op_flags;		/* op: bits 0-7, flags: bits 8-31 */
	__u32 nr_sectors;	/* a union with nr_zones in the header */
	__u64 start_sector;
	__u64 addr;
};

struct ublk_elem_header {
	__u16 tag;
	__u16 buf_index;
	__s32 result;
};

/* An element of PREP/COMMIT with UBLK_BATCH_F_HAS_BUF_ADDR (16 bytes). */
struct lab_ublk_elem {
	struct ublk_elem_header header;
	__u64 buf_addr;
};

struct ublk_batch_io {
	__u16 q_id;
	__u16 flags;
	__u16 nr_elem;
	__u8 elem_bytes;
	__u8 reserved;
	__u64 reserved2;
};

struct ublk_param_basic {
	__u32 attrs;
	__u8 logical_bs_shift;
	__u8 physical_bs_shift;
	__u8 io_opt_shift;
	__u8 io_min_shift;
	__u32 max_sectors;
	__u32 chunk_sectors;
	__u64 dev_sectors;
	__u64 virt_boundary_mask;
};

/*
 * struct ublk_params starts with len and types, then basic; the later
 * members (discard, devt, zoned, dma, seg, integrity) are left out: the
 * kernel copies only ``len`` bytes, and only UBLK_PARAM_TYPE_BASIC is set.
 */
struct ublk_params_basic_only {
	__u32 len;
	__u32 types;
	struct ublk_param_basic basic;
};

#define UBLK_CMD_ADD_DEV		0x04
#define UBLK_CMD_DEL_DEV		0x05
#define UBLK_CMD_START_DEV		0x06
#define UBLK_CMD_STOP_DEV		0x07
#define UBLK_CMD_SET_PARAMS		0x08
#define UBLK_U_CMD_ADD_DEV	_IOWR('u', UBLK_CMD_ADD_DEV, struct ublksrv_ctrl_cmd)
#define UBLK_U_CMD_DEL_DEV	_IOWR('u', UBLK_CMD_DEL_DEV, struct ublksrv_ctrl_cmd)
#define UBLK_U_CMD_START_DEV	_IOWR('u', UBLK_CMD_START_DEV, struct ublksrv_ctrl_cmd)
#define UBLK_U_CMD_STOP_DEV	_IOWR('u', UBLK_CMD_STOP_DEV, struct ublksrv_ctrl_cmd)
#define UBLK_U_CMD_SET_PARAMS	_IOWR('u', UBLK_CMD_SET_PARAMS, struct ublksrv_ctrl_cmd)
#define UBLK_U_CMD_GET_FEATURES	_IOR('u', 0x13, struct ublksrv_ctrl_cmd)
#define UBLK_U_IO_PREP_IO_CMDS	_IOWR('u', 0x25, struct ublk_batch_io)
#define UBLK_U_IO_COMMIT_IO_CMDS	_IOWR('u', 0x26, struct ublk_batch_io)
#define UBLK_U_IO_FETCH_IO_CMDS	_IOWR('u', 0x27, struct ublk_batch_io)

#define UBLK_F_BATCH_IO			(1ULL << 15)
#define UBLK_F_NO_AUTO_PART_SCAN	(1ULL << 18)
#define UBLK_BATCH_F_HAS_BUF_ADDR	(1 << 1)
#define UBLK_PARAM_TYPE_BASIC		(1 << 0)
#define UBLK_IO_OP_READ			0
#define UBLK_IO_OP_WRITE		1
#define UBLK_IO_OP_FLUSH		2
/* ---- end of the copy ---- */

/*
 * The data a READ returns: every 8-byte word of sector s holds s ^ STAMP, so
 * the reader can tell which sector it got and a zero-filled or misplaced
 * buffer cannot pass.  Bytes 510-511 of sector 0 are not 0x55AA either, so
 * nothing mistakes the device for a partitioned disk.
 */
#define LAB_UBLK_STAMP 0x75626c6b00000000ULL /* "ublk" */

static void lab_ublk_stamp(void *buf, uint64_t sector, uint32_t nr_sectors)
{
	uint64_t *w = buf;
	uint32_t i, j;

	for (i = 0; i < nr_sectors; i++)
		for (j = 0; j < 512 / 8; j++)
			*w++ = (sector + i) ^ LAB_UBLK_STAMP;
}

#define LAB_UBLK_MAX_READS 64

/*
 * A thread doing nreads O_DIRECT preads of len bytes at k * stride, one after
 * the other, so each becomes its own request to the ublk server.  done is set
 * last; Python polls it while serving.
 */
struct lab_ublk_reader {
	char path[64];
	int nreads;
	uint32_t len;
	uint64_t stride;
	int open_timeout_ms;
	int open_errno;
	int done;
	int mismatched_reads;
	long rets[LAB_UBLK_MAX_READS];
	pthread_t thread;
	int started;
};

static int64_t lab_ublk_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int lab_ublk_stamped(const void *buf, uint64_t sector, uint32_t nr_sectors)
{
	const uint64_t *w = buf;
	uint32_t i, j;

	for (i = 0; i < nr_sectors; i++)
		for (j = 0; j < 512 / 8; j++)
			if (*w++ != ((sector + i) ^ LAB_UBLK_STAMP))
				return 0;
	return 1;
}

static void *lab_ublk_reader_main(void *arg)
{
	struct lab_ublk_reader *r = arg;
	int64_t deadline = lab_ublk_now_ms() + r->open_timeout_ms;
	void *buf = NULL;
	int fd = -1, k;

	/* devtmpfs creates the node from add_disk; no udev in the guest. */
	while ((fd = open(r->path, O_RDONLY | O_DIRECT)) < 0) {
		if (lab_ublk_now_ms() > deadline) {
			r->open_errno = errno;
			goto out;
		}
		usleep(10000);
	}
	if (posix_memalign(&buf, 4096, r->len)) {
		r->open_errno = ENOMEM;
		goto out;
	}
	for (k = 0; k < r->nreads; k++) {
		off_t off = (off_t)(k * r->stride);
		ssize_t n;

		memset(buf, 0, r->len);
		n = pread(fd, buf, r->len, off);
		r->rets[k] = n < 0 ? -(long)errno : (long)n;
		if (n == (ssize_t)r->len &&
		    !lab_ublk_stamped(buf, (uint64_t)off / 512, r->len / 512))
			r->mismatched_reads++;
	}
out:
	free(buf);
	if (fd >= 0)
		close(fd);
	__atomic_store_n(&r->done, 1, __ATOMIC_RELEASE);
	return NULL;
}

static long lab_ublk_reader_start(struct lab_ublk_reader *r)
{
	int err;

	if (r->nreads < 0 || r->nreads > LAB_UBLK_MAX_READS || r->len % 512 || !r->len)
		return -EINVAL;
	r->done = 0;
	err = pthread_create(&r->thread, NULL, lab_ublk_reader_main, r);
	if (err)
		return -err;
	r->started = 1;
	return 0;
}

static int lab_ublk_reader_done(struct lab_ublk_reader *r)
{
	return __atomic_load_n(&r->done, __ATOMIC_ACQUIRE);
}

/* Join within timeout_ms; -ETIMEDOUT leaves the thread running (r must stay alive). */
static long lab_ublk_reader_join(struct lab_ublk_reader *r, int timeout_ms)
{
	int64_t deadline = lab_ublk_now_ms() + timeout_ms;

	if (!r->started)
		return 0;
	while (!lab_ublk_reader_done(r)) {
		if (lab_ublk_now_ms() > deadline)
			return -ETIMEDOUT;
		usleep(5000);
	}
	pthread_join(r->thread, NULL);
	r->started = 0;
	return 0;
}

/* What Python calls (the cdef; compiled here, so checked against the definitions above). */
/* cdef: begin */
static void lab_ublk_stamp(void *buf, uint64_t sector, uint32_t nr_sectors);
static long lab_ublk_reader_start(struct lab_ublk_reader *r);
static int lab_ublk_reader_done(struct lab_ublk_reader *r);
static long lab_ublk_reader_join(struct lab_ublk_reader *r, int timeout_ms);
/* cdef: end */
