/* handoff: give this process's stdin, stdout and stderr to the waiting interpreter.
 *
 * guest/zygote.py is a Python the guest started while it booted (the interpreter's
 * own start and the stdlib imports are the largest part of an agent's start under
 * TCG).  The agent's exec channel runs this helper first, with the pushed archive
 * still unread on its stdin: it connects to the zygote's socket and sends fds 0-2
 * (the channel), its umask, working directory, the archive's SHA-256, length and
 * the directory to unpack it in, and its environment.  The zygote acknowledges,
 * reads the archive, verifies it, unpacks it and becomes the agent there, and
 * reports the agent's exit status when it ends.  This helper waits for that status
 * and exits with it, so the channel lives exactly as long as the agent does, as
 * when the channel execs the interpreter.
 *
 * A zygote still starting (its pid in SOCKET.pid, written by guest/boot.sh, and
 * alive, but not yet listening) is waited for, up to WAIT_S: starting a second
 * interpreter beside it would only slow both.
 *
 * Usage: handoff SOCKET SHA256 LENGTH DIR.  Exit 100: nobody took the handoff (no
 * zygote, or it was taken) and stdin is untouched, so the caller unpacks and starts
 * the interpreter itself; 101: the agent ended without a status (killed); otherwise
 * the zygote's or the agent's own exit status.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

enum { NOT_TAKEN = 100, NO_STATUS = 101, WAIT_S = 60 };

/* Is the zygote whose pid SOCKET.pid holds alive (and so about to listen)? */
static int zygote_starting(const char *sock)
{
	char path[256], buf[32];
	if ((size_t)snprintf(path, sizeof(path), "%s.pid", sock) >= sizeof(path))
		return 0;
	FILE *f = fopen(path, "r");
	if (!f)
		return 0;
	long pid = 0;
	if (fgets(buf, sizeof(buf), f))
		pid = strtol(buf, NULL, 10);
	fclose(f);
	return pid > 0 && kill((pid_t)pid, 0) == 0;
}

static int connect_zygote(const char *sock)
{
	struct sockaddr_un addr = { .sun_family = AF_UNIX };
	strcpy(addr.sun_path, sock);
	struct timespec start, now, pause = { 0, 20 * 1000 * 1000 };
	clock_gettime(CLOCK_MONOTONIC, &start);
	for (;;) {
		int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
		if (fd < 0)
			return -1;
		if (connect(fd, (struct sockaddr *)&addr, sizeof(addr)) == 0)
			return fd;
		int err = errno;
		close(fd);
		clock_gettime(CLOCK_MONOTONIC, &now);
		if ((err != ENOENT && err != ECONNREFUSED) || !zygote_starting(sock) ||
		    now.tv_sec - start.tv_sec >= WAIT_S)
			return -1;
		nanosleep(&pause, NULL);
	}
}

static char payload[1 << 16];

int main(int argc, char **argv)
{
	if (argc != 5 || strlen(argv[1]) >= sizeof(((struct sockaddr_un *)0)->sun_path)) {
		fprintf(stderr, "usage: handoff SOCKET SHA256 LENGTH DIR\n");
		return 2;
	}
	int sock = connect_zygote(argv[1]);
	if (sock < 0)
		return NOT_TAKEN;

	/* umask, cwd, SHA-256, length, directory, then the environment: NUL-separated. */
	mode_t mask = umask(0);
	umask(mask);
	size_t len = (size_t)snprintf(payload, sizeof(payload), "%04o", (unsigned)mask) + 1;
	if (!getcwd(payload + len, sizeof(payload) - len))
		return NOT_TAKEN;
	len += strlen(payload + len) + 1;
	for (int i = 2; i < 5; i++) {
		size_t n = strlen(argv[i]) + 1;
		if (len + n > sizeof(payload))
			return NOT_TAKEN;
		memcpy(payload + len, argv[i], n);
		len += n;
	}
	for (char **e = environ; *e; e++) {
		size_t n = strlen(*e) + 1;
		if (len + n + 2 > sizeof(payload))
			break;
		memcpy(payload + len, *e, n);
		len += n;
	}
	memcpy(payload + len, ".", 2); /* the end: the zygote refuses a message without it */
	len += 2;

	int fds[3] = { 0, 1, 2 };
	char control[CMSG_SPACE(sizeof(fds))];
	memset(control, 0, sizeof(control));
	struct iovec iov = { .iov_base = payload, .iov_len = len };
	struct msghdr msg = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = control,
			      .msg_controllen = sizeof(control) };
	struct cmsghdr *cmsg = CMSG_FIRSTHDR(&msg);
	cmsg->cmsg_level = SOL_SOCKET;
	cmsg->cmsg_type = SCM_RIGHTS;
	cmsg->cmsg_len = CMSG_LEN(sizeof(fds));
	memcpy(CMSG_DATA(cmsg), fds, sizeof(fds));
	if (sendmsg(sock, &msg, MSG_NOSIGNAL) != (ssize_t)len)
		return NOT_TAKEN;

	/* "A": the zygote has the fds and is becoming the agent.  Before it, nothing is
	 * started, so falling back is safe; after it, only the agent's status counts. */
	char ack;
	ssize_t got;
	do
		got = read(sock, &ack, 1);
	while (got < 0 && errno == EINTR);
	if (got != 1 || ack != 'A')
		return NOT_TAKEN;
	/* Our copies of the channel must not keep it open once the agent is gone. */
	close(0);
	close(1);
	close(2);
	unsigned char status;
	do
		got = read(sock, &status, 1);
	while (got < 0 && errno == EINTR);
	if (got != 1)
		return NO_STATUS;
	/* 100 and 127 tell the caller to start the agent itself: not after this one ran. */
	return status == NOT_TAKEN || status == 127 ? 1 : status;
}
