/* capexec "CAP_A CAP_B ..." CMD [ARG...]: run CMD as systemd runs a root service with
 * CapabilityBoundingSet=CAP_A CAP_B ... and NoNewPrivileges=yes: every other capability
 * leaves the bounding set, no_new_privs is set, then exec (a root exec takes the bounding
 * set as its permitted and effective sets). Names as in capabilities(7); numbers too. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <unistd.h>

static const char *const names[] = {
	"CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_DAC_READ_SEARCH", "CAP_FOWNER", "CAP_FSETID",
	"CAP_KILL", "CAP_SETGID", "CAP_SETUID", "CAP_SETPCAP", "CAP_LINUX_IMMUTABLE",
	"CAP_NET_BIND_SERVICE", "CAP_NET_BROADCAST", "CAP_NET_ADMIN", "CAP_NET_RAW",
	"CAP_IPC_LOCK", "CAP_IPC_OWNER", "CAP_SYS_MODULE", "CAP_SYS_RAWIO", "CAP_SYS_CHROOT",
	"CAP_SYS_PTRACE", "CAP_SYS_PACCT", "CAP_SYS_ADMIN", "CAP_SYS_BOOT", "CAP_SYS_NICE",
	"CAP_SYS_RESOURCE", "CAP_SYS_TIME", "CAP_SYS_TTY_CONFIG", "CAP_MKNOD", "CAP_LEASE",
	"CAP_AUDIT_WRITE", "CAP_AUDIT_CONTROL", "CAP_SETFCAP", "CAP_MAC_OVERRIDE",
	"CAP_MAC_ADMIN", "CAP_SYSLOG", "CAP_WAKE_ALARM", "CAP_BLOCK_SUSPEND", "CAP_AUDIT_READ",
	"CAP_PERFMON", "CAP_BPF", "CAP_CHECKPOINT_RESTORE",
};
#define NCAPS ((int)(sizeof(names) / sizeof(names[0])))

int main(int argc, char **argv)
{
	int keep[64] = { 0 };

	if (argc < 3) {
		fprintf(stderr, "usage: capexec \"CAP_A CAP_B ...\" CMD [ARG...]\n");
		return 2;
	}
	char *list = strdup(argv[1]);
	for (char *tok = strtok(list, " ,\t\n"); tok; tok = strtok(NULL, " ,\t\n")) {
		int found = -1;
		for (int i = 0; i < NCAPS; i++)
			if (!strcmp(tok, names[i]))
				found = i;
		/* systemd ignores capabilities it does not know; so do we, saying so */
		if (found < 0)
			fprintf(stderr, "capexec: unknown capability %s ignored\n", tok);
		else
			keep[found] = 1;
	}
	for (int cap = 0; cap < 64; cap++) {
		if (keep[cap])
			continue;
		if (prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) && cap < NCAPS &&
		    prctl(PR_CAPBSET_READ, cap, 0, 0, 0) > 0) {
			perror("capexec: PR_CAPBSET_DROP");
			return 1;
		}
	}
	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)) {
		perror("capexec: PR_SET_NO_NEW_PRIVS");
		return 1;
	}
	execvp(argv[2], argv + 2);
	perror("capexec: exec");
	return 127;
}
