/*
 * prctl for creds.run: PR_SET_KEEPCAPS lets a forked child keep permitted
 * capabilities across setresuid() away from root, so a step can run as an
 * unprivileged uid that still holds a chosen capability set.
 */
#include <sys/prctl.h>

static long lab_prctl(int option, unsigned long arg2)
{
	return prctl(option, arg2, 0UL, 0UL, 0UL) < 0 ? -(long)errno : 0;
}
