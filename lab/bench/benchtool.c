/* benchtool: the benchmark guest's measuring helper (static, libc only).
 *
 *   benchtool ready PATTERN TIMEOUT_S CMD [ARG...]
 *       Starts CMD with stdout and stderr on one pipe, reads its output until a line
 *       contains PATTERN, prints the wall time from just before fork() to that line in
 *       milliseconds (CLOCK_MONOTONIC), then stops CMD (SIGINT, SIGKILL after 10 s).
 *       CMD's output goes to stderr prefixed with "  | ". Exit 1 when CMD exits or
 *       TIMEOUT_S passes without PATTERN.
 *   benchtool kmsg COUNT TAG
 *       Writes COUNT lines "<3>TAG N ...padding..." to /dev/kmsg through one descriptor
 *       and prints "MSGS_PER_SEC ELAPSED_MS".
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static double now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static void stop(pid_t pid)
{
	int status;
	kill(pid, SIGINT);
	for (int i = 0; i < 1000; i++) {
		if (waitpid(pid, &status, WNOHANG) == pid)
			return;
		usleep(10000);
	}
	kill(pid, SIGKILL);
	waitpid(pid, &status, 0);
}

static int ready(const char *pattern, double timeout_s, char **cmd)
{
	int fds[2];
	if (pipe(fds)) {
		perror("benchtool: pipe");
		return 2;
	}
	double t0 = now_ms();
	pid_t pid = fork();
	if (pid < 0) {
		perror("benchtool: fork");
		return 2;
	}
	if (pid == 0) {
		dup2(fds[1], 1);
		dup2(fds[1], 2);
		close(fds[0]);
		close(fds[1]);
		execvp(cmd[0], cmd);
		fprintf(stderr, "benchtool: exec %s: %s\n", cmd[0], strerror(errno));
		_exit(127);
	}
	close(fds[1]);
	char buf[8192];
	size_t used = 0;
	for (;;) {
		double left = timeout_s * 1e3 - (now_ms() - t0);
		if (left <= 0) {
			fprintf(stderr, "benchtool: no \"%s\" within %.0f s\n", pattern, timeout_s);
			stop(pid);
			return 1;
		}
		struct pollfd p = { .fd = fds[0], .events = POLLIN };
		if (poll(&p, 1, (int)left + 1) <= 0)
			continue;
		ssize_t n = read(fds[0], buf + used, sizeof(buf) - 1 - used);
		if (n <= 0) {
			fprintf(stderr, "benchtool: %s exited before \"%s\"\n", cmd[0], pattern);
			stop(pid);
			return 1;
		}
		double t = now_ms();
		used += (size_t)n;
		buf[used] = 0;
		char *line = buf, *nl;
		while ((nl = strchr(line, '\n'))) {
			*nl = 0;
			fprintf(stderr, "  | %s\n", line);
			if (strstr(line, pattern)) {
				printf("%.1f\n", t - t0);
				fflush(stdout);
				stop(pid);
				return 0;
			}
			line = nl + 1;
		}
		used = strlen(line);
		memmove(buf, line, used);
		if (used == sizeof(buf) - 1)
			used = 0; /* an endless line: drop it */
	}
}

static int kmsg(long count, const char *tag)
{
	int fd = open("/dev/kmsg", O_WRONLY);
	if (fd < 0) {
		perror("benchtool: /dev/kmsg");
		return 2;
	}
	char line[256];
	double t0 = now_ms();
	for (long i = 0; i < count; i++) {
		int len = snprintf(line, sizeof(line), "<3>%s %ld abcdefghijklmnopqrstuvwxyz0123456789\n", tag, i);
		if (write(fd, line, (size_t)len) != len) {
			perror("benchtool: write /dev/kmsg");
			return 1;
		}
	}
	double ms = now_ms() - t0;
	printf("%.1f %.1f\n", (double)count * 1e3 / ms, ms);
	return 0;
}

int main(int argc, char **argv)
{
	if (argc >= 5 && !strcmp(argv[1], "ready"))
		return ready(argv[2], atof(argv[3]), argv + 4);
	if (argc == 4 && !strcmp(argv[1], "kmsg"))
		return kmsg(atol(argv[2]), argv[3]);
	fprintf(stderr, "usage: benchtool ready PATTERN TIMEOUT_S CMD [ARG...] | benchtool kmsg COUNT TAG\n");
	return 2;
}
