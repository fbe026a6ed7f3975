/* tcpidle SRC DST PORT N SECONDS: opens N TCP connections from address SRC to DST:PORT,
 * sends nothing for SECONDS, then closes them. The lab's idle peers (busybox's nc cannot
 * choose its source address): four of them, each from its own loopback address, must not
 * keep a scraper out of the metrics endpoint. Prints how many connected. */
#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

int main(int argc, char **argv)
{
	struct sockaddr_in src = { .sin_family = AF_INET }, dst = { .sin_family = AF_INET };
	long port, n, secs;
	int fds[256], open = 0;
	char *end;

	if (argc != 6 || inet_pton(AF_INET, argv[1], &src.sin_addr) != 1 ||
	    inet_pton(AF_INET, argv[2], &dst.sin_addr) != 1 ||
	    (port = strtol(argv[3], &end, 10)) <= 0 || port > 65535 || *end ||
	    (n = strtol(argv[4], &end, 10)) <= 0 || n > 256 || *end ||
	    (secs = strtol(argv[5], &end, 10)) < 0 || *end) {
		fprintf(stderr, "usage: tcpidle SRC DST PORT N SECONDS (N at most 256)\n");
		return 2;
	}
	dst.sin_port = htons((unsigned short)port);
	for (long i = 0; i < n; i++) {
		int s = socket(AF_INET, SOCK_STREAM, 0);
		if (s < 0 || bind(s, (struct sockaddr *)&src, sizeof(src)) ||
		    connect(s, (struct sockaddr *)&dst, sizeof(dst))) {
			perror("tcpidle");
			if (s >= 0)
				close(s);
			continue;
		}
		fds[open++] = s;
	}
	printf("tcpidle %s: %d of %ld connected\n", argv[1], open, n);
	fflush(stdout);
	sleep((unsigned int)secs);
	for (int i = 0; i < open; i++)
		close(fds[i]);
	return 0;
}
