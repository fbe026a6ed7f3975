/* udprecv PORT: print every UDP datagram received on PORT (all addresses) to stdout.
 * The lab's netconsole receiver: busybox's nc cannot listen on UDP. */
#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

int main(int argc, char **argv)
{
	char buf[2048], *end;
	long port;
	int s;

	if (argc != 2 || (port = strtol(argv[1], &end, 10)) <= 0 || port > 65535 || *end) {
		fprintf(stderr, "usage: udprecv PORT\n");
		return 2;
	}
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons((unsigned short)port) };
	s = socket(AF_INET, SOCK_DGRAM, 0);
	if (s < 0 || bind(s, (struct sockaddr *)&a, sizeof(a))) {
		perror("udprecv");
		return 1;
	}
	for (;;) {
		ssize_t n = recv(s, buf, sizeof(buf), 0);
		if (n < 0) {
			perror("udprecv");
			return 1;
		}
		fwrite(buf, 1, (size_t)n, stdout);
		fflush(stdout);
	}
}
