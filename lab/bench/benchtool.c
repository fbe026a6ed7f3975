/* benchtool: the benchmark guest's measuring helper (static, libc only).
 *
 *   benchtool ready PATTERN TIMEOUT_S CMD [ARG...]
 *       Starts CMD with stdout and stderr on one pipe, reads its output until a line
 *       contains PATTERN, prints the wall time from just before fork() to that line in
 *       milliseconds (CLOCK_MONOTONIC), then stops CMD (SIGINT, SIGKILL after 10 s).
 *       CMD's output goes to stderr prefixed with "  | ". Exit 1 when CMD exits or
 *       TIMEOUT_S passes without PATTERN.
 *   benchtool kmsg COUNT TAG
 *       Writes COUNT lines "<3>TAG N ...padding..." (N from 0) to /dev/kmsg through one
 *       descriptor and prints "MSGS_PER_SEC ELAPSED_MS", timed over the writes.
 *   benchtool kmsg COUNT TAG RXFILE IDLE_S TIMEOUT_S
 *       The same flood timed by the receiver: RXFILE is a file a netconsole receiver
 *       appends to. The writes are followed by a wait until RXFILE has the line "TAG
 *       COUNT-1" (appended after the flood started), or until it has not grown for IDLE_S
 *       seconds (lines lost: netconsole drops when its device's TX ring is full). Prints
 *       "MSGS_PER_SEC ELAPSED_MS RECEIVED WRITE_MS": ELAPSED_MS from the first write to the
 *       flood's last line seen in RXFILE (at least until the writes returned), the rate
 *       over the RECEIVED distinct lines of the flood, WRITE_MS the writes alone. Why: an
 *       nbcon console (netconsole from 7.x) sends from a printk thread after the writes
 *       return, so only the receiver knows when the flood went out. Exit 1 when TIMEOUT_S
 *       passes from the first write while lines still arrive (nothing printed).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* Another path only to try the tool outside a guest (gcc -DKMSG=\"/tmp/x\"). */
#ifndef KMSG
#define KMSG "/dev/kmsg"
#endif

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

/* The flood's lines as the receiver appended them: RXFILE read on from where it ended
 * before the flood (a tag recurs across floods, and rereading the whole file at every
 * wake would cost the guest's CPU what the flood is measuring). */
struct rx {
	int fd;
	const char *tag;
	size_t tag_len;
	long count;
	unsigned char *seen; /* per line number: distinct lines, a duplicate counts once */
	long received;
	int last_seen;
	char buf[8192];
	size_t used;
};

/* One received line: counts it when it holds "TAG N " with 0 <= N < COUNT (after the
 * receiver's sender prefix and a printk timestamp, so matched anywhere after a space or
 * at the start). */
static void rx_line(struct rx *r, const char *line)
{
	for (const char *p = line; (p = strstr(p, r->tag)); p++) {
		if (p != line && p[-1] != ' ')
			continue;
		const char *d = p + r->tag_len;
		if (*d != ' ' || d[1] < '0' || d[1] > '9')
			continue;
		char *end;
		long n = strtol(d + 1, &end, 10);
		if (*end != ' ' && *end != 0)
			continue;
		if (n >= 0 && n < r->count && !r->seen[n]) {
			r->seen[n] = 1;
			r->received++;
			if (n == r->count - 1)
				r->last_seen = 1;
		}
		return;
	}
}

/* Reads what RXFILE gained since the last call; returns the bytes read. */
static size_t rx_read(struct rx *r)
{
	size_t total = 0;
	for (;;) {
		ssize_t n = read(r->fd, r->buf + r->used, sizeof(r->buf) - 1 - r->used);
		if (n <= 0)
			return total;
		total += (size_t)n;
		r->used += (size_t)n;
		r->buf[r->used] = 0;
		char *line = r->buf, *nl;
		while ((nl = strchr(line, '\n'))) {
			*nl = 0;
			rx_line(r, line);
			line = nl + 1;
		}
		r->used = strlen(line);
		memmove(r->buf, line, r->used);
		if (r->used == sizeof(r->buf) - 1)
			r->used = 0; /* an endless line: drop it */
	}
}

static int kmsg(long count, const char *tag, const char *rxfile, double idle_s, double timeout_s)
{
	int fd = open(KMSG, O_WRONLY);
	if (fd < 0) {
		perror("benchtool: " KMSG);
		return 2;
	}
	struct rx r = { .fd = -1, .tag = tag, .tag_len = strlen(tag), .count = count };
	int ino = -1;
	if (rxfile) {
		r.fd = open(rxfile, O_RDONLY);
		r.seen = calloc((size_t)count, 1);
		if (r.fd < 0 || !r.seen || lseek(r.fd, 0, SEEK_END) < 0) {
			fprintf(stderr, "benchtool: %s: %s\n", rxfile, strerror(errno));
			return 2;
		}
		/* inotify wakes the wait as soon as the receiver appends, so the end time is
		 * not rounded up to a polling period; polling stays as the fallback. */
		ino = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
		if (ino >= 0 && inotify_add_watch(ino, rxfile, IN_MODIFY) < 0) {
			close(ino);
			ino = -1;
		}
	}
	char line[256];
	double t0 = now_ms();
	for (long i = 0; i < count; i++) {
		int len = snprintf(line, sizeof(line), "<3>%s %ld abcdefghijklmnopqrstuvwxyz0123456789\n", tag, i);
		if (write(fd, line, (size_t)len) != len) {
			perror("benchtool: write " KMSG);
			return 1;
		}
	}
	double t_write = now_ms();
	double write_ms = t_write - t0;
	if (!rxfile) {
		printf("%.1f %.1f\n", (double)count * 1e3 / write_ms, write_ms);
		return 0;
	}
	double t_last = t_write; /* when the flood's newest line was seen */
	double t_grew = t_write;
	long had = -1;
	for (;;) {
		double t = now_ms();
		if (rx_read(&r))
			t_grew = t;
		if (r.received != had) {
			had = r.received;
			t_last = t;
		}
		if (r.last_seen || t - t_grew >= idle_s * 1e3)
			break;
		if (t - t0 >= timeout_s * 1e3) {
			fprintf(stderr, "benchtool: %s: %ld of %ld lines of %s after %g s, still arriving\n",
				rxfile, r.received, count, tag, timeout_s);
			return 1;
		}
		if (ino >= 0) {
			char ev[4096];
			struct pollfd p = { .fd = ino, .events = POLLIN };
			if (poll(&p, 1, 50) > 0)
				while (read(ino, ev, sizeof(ev)) > 0)
					;
		} else {
			usleep(20000);
		}
	}
	double ms = t_last - t0;
	printf("%.1f %.1f %ld %.1f\n", r.received && ms > 0 ? (double)r.received * 1e3 / ms : 0.0, ms,
	       r.received, write_ms);
	return 0;
}

int main(int argc, char **argv)
{
	if (argc >= 5 && !strcmp(argv[1], "ready"))
		return ready(argv[2], atof(argv[3]), argv + 4);
	if (argc == 4 && !strcmp(argv[1], "kmsg"))
		return kmsg(atol(argv[2]), argv[3], NULL, 0, 0);
	if (argc == 7 && !strcmp(argv[1], "kmsg") && atol(argv[2]) > 0)
		return kmsg(atol(argv[2]), argv[3], argv[4], atof(argv[5]), atof(argv[6]));
	fprintf(stderr, "usage: benchtool ready PATTERN TIMEOUT_S CMD [ARG...] | "
			"benchtool kmsg COUNT TAG [RXFILE IDLE_S TIMEOUT_S]\n");
	return 2;
}
