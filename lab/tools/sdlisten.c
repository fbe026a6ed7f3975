/* sdlisten PATH OUT [ONREADY]: a stand-in for systemd's notify socket. Binds a unix
 * datagram socket at PATH and appends each message received to OUT as one line ("\n"
 * inside a message becomes " | "); a READY=1 message is prefixed by the number of BPF
 * programs the kernel lists in /proc/kallsyms at that moment ("progs=N "). Only that one:
 * a kallsyms scan per message (a second each under a loaded TCG) made the log lag the
 * agent's WATCHDOG pings by more than the tests wait. When a message holds READY=1, it first runs
 * ONREADY (sh -c) to completion, as a unit ordered After= the service would start: so a test
 * can show that what happens right after READY is already traced. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

static int bpf_progs(void)
{
	char line[512];
	int n = 0;
	FILE *f = fopen("/proc/kallsyms", "r");

	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f))
		if (strstr(line, " bpf_prog_"))
			n++;
	fclose(f);
	return n;
}

int main(int argc, char **argv)
{
	struct sockaddr_un a = { .sun_family = AF_UNIX };
	char buf[4096];
	int s;

	if (argc < 3 || argc > 4 || strlen(argv[1]) >= sizeof(a.sun_path)) {
		fprintf(stderr, "usage: sdlisten PATH OUT [ONREADY]\n");
		return 2;
	}
	strcpy(a.sun_path, argv[1]);
	unlink(argv[1]);
	s = socket(AF_UNIX, SOCK_DGRAM, 0);
	if (s < 0 || bind(s, (struct sockaddr *)&a, sizeof(a))) {
		perror("sdlisten");
		return 1;
	}
	for (;;) {
		ssize_t n = recv(s, buf, sizeof(buf) - 1, 0);
		int ready, progs = 0;
		FILE *out;

		if (n < 0) {
			perror("sdlisten");
			return 1;
		}
		buf[n] = '\0';
		ready = strstr(buf, "READY=1") != NULL;
		if (ready)
			progs = bpf_progs();
		if (argc == 4 && ready && system(argv[3]) != 0)
			fprintf(stderr, "sdlisten: ONREADY failed\n");
		out = fopen(argv[2], "a");
		if (!out) {
			perror("sdlisten: OUT");
			return 1;
		}
		if (ready)
			fprintf(out, "progs=%d ", progs);
		for (char *p = buf; *p; p++)
			fputs(*p == '\n' ? " | " : (char[]){ *p, 0 }, out);
		fputc('\n', out);
		fclose(out);
	}
}
