// SPDX-License-Identifier: GPL-2.0-or-later
/*
 * udpecho: the guest's UDP tool for the VM tests (busybox 1.35's nc has no -u).
 *
 * Built statically by tests/vm/harness.py (gcc -static) and put into the
 * per-boot archive as /bin/udpecho.
 *
 *   udpecho serve PORT SECONDS
 *       echo every datagram back to its sender (IPv4 and IPv6), for at most
 *       SECONDS, then exit 0
 *   udpecho send ADDR PORT COUNT SIZE
 *       send COUNT numbered datagrams of SIZE bytes one at a time; each must
 *       come back unchanged within 2 s (one retry); prints "echoed N/COUNT"
 *       and exits 0 only if all came back
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

static int serve(int port, int seconds)
{
	struct sockaddr_in6 a = { .sin6_family = AF_INET6, .sin6_port = htons(port) };
	struct timeval tv = { .tv_sec = 1 };
	time_t end = time(NULL) + seconds;
	int s = socket(AF_INET6, SOCK_DGRAM, 0), off = 0;
	char buf[65536];

	setsockopt(s, IPPROTO_IPV6, IPV6_V6ONLY, &off, sizeof(off));
	setsockopt(s, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	if (bind(s, (struct sockaddr *)&a, sizeof(a))) {
		perror("bind");
		return 1;
	}
	printf("serving %d\n", port);
	fflush(stdout);
	while (time(NULL) < end) {
		struct sockaddr_storage peer;
		socklen_t len = sizeof(peer);
		ssize_t n = recvfrom(s, buf, sizeof(buf), 0, (struct sockaddr *)&peer, &len);

		if (n >= 0)
			sendto(s, buf, n, 0, (struct sockaddr *)&peer, len);
	}
	return 0;
}

static int send_all(const char *addr, int port, int count, int size)
{
	struct sockaddr_storage sa = { 0 };
	struct sockaddr_in *a4 = (struct sockaddr_in *)&sa;
	struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)&sa;
	struct timeval tv = { .tv_sec = 2 };
	static char out[65536], in[65536];
	socklen_t len;
	int s, i, good = 0;

	if (inet_pton(AF_INET, addr, &a4->sin_addr) == 1) {
		a4->sin_family = AF_INET;
		a4->sin_port = htons(port);
		len = sizeof(*a4);
	} else if (inet_pton(AF_INET6, addr, &a6->sin6_addr) == 1) {
		a6->sin6_family = AF_INET6;
		a6->sin6_port = htons(port);
		len = sizeof(*a6);
	} else {
		fprintf(stderr, "bad address %s\n", addr);
		return 1;
	}
	if (size < 4 || size > (int)sizeof(out))
		return 1;
	s = socket(sa.ss_family, SOCK_DGRAM, 0);
	setsockopt(s, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	if (connect(s, (struct sockaddr *)&sa, len)) {
		perror("connect");
		return 1;
	}
	srand(time(NULL));
	for (i = 0; i < count; i++) {
		int j, try;

		for (j = 0; j < size; j++)
			out[j] = rand();
		memcpy(out, &i, sizeof(i));
		for (try = 0; try < 2; try++) {
			ssize_t n;

			send(s, out, size, 0);
			n = recv(s, in, sizeof(in), 0);
			while (n >= 4 && memcmp(in, &i, sizeof(i)))  /* a late echo */
				n = recv(s, in, sizeof(in), 0);
			if (n == size && !memcmp(in, out, size)) {
				good++;
				break;
			}
		}
	}
	printf("echoed %d/%d\n", good, count);
	return good == count ? 0 : 1;
}

int main(int argc, char **argv)
{
	if (argc == 4 && !strcmp(argv[1], "serve"))
		return serve(atoi(argv[2]), atoi(argv[3]));
	if (argc == 6 && !strcmp(argv[1], "send"))
		return send_all(argv[2], atoi(argv[3]), atoi(argv[4]), atoi(argv[5]));
	fprintf(stderr, "usage: udpecho serve PORT SECONDS | send ADDR PORT COUNT SIZE\n");
	return 2;
}
