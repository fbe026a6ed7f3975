/*
 * nlhelper: the few rtnetlink requests the lab needs that busybox `ip`
 * cannot make (it knows nothing about netkit devices), and the NIC ring
 * sizes busybox has no ethtool for.  Kept static and
 * dependency-free so xtask can drop it into the initramfs as /bin/nlhelper.
 *
 *   nlhelper netkit-add NAME PEER [l2|l3]
 *   nlhelper link-del NAME
 *   nlhelper ring-show DEV       (prints "tx N max M rx N max M")
 *   nlhelper ring-tx DEV N       (sets the TX ring size; the driver may round it)
 *
 * The ring commands use the ethtool ioctl (SIOCETHTOOL).
 *
 * Exit 0 silently on success, 1 with one line on stderr when the kernel
 * refuses, 2 on bad usage.
 */
#include <errno.h>
#include <net/if.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/ioctl.h>
#include <unistd.h>
#include <linux/ethtool.h>
#include <linux/if_link.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <linux/sockios.h>

/* Older uapi headers (this host's included) predate netkit (Linux 6.7);
 * values are from the kernel's include/uapi/linux/if_link.h. */
#ifndef IFLA_NETKIT_MAX
#define IFLA_NETKIT_PEER_INFO 1
#define IFLA_NETKIT_MODE 5
#define NETKIT_L2 0
#define NETKIT_L3 1
#endif

struct req {
	struct nlmsghdr nh;
	struct ifinfomsg ifi;
	char attrs[512];
};

static const char *cmd, *subject; /* for the error line */

static struct rtattr *add_attr(struct nlmsghdr *nh, unsigned short type,
			       const void *data, size_t len)
{
	struct rtattr *rta = (struct rtattr *)((char *)nh + NLMSG_ALIGN(nh->nlmsg_len));

	rta->rta_type = type;
	rta->rta_len = RTA_LENGTH(len);
	if (len)
		memcpy(RTA_DATA(rta), data, len);
	nh->nlmsg_len = NLMSG_ALIGN(nh->nlmsg_len) + RTA_ALIGN(rta->rta_len);
	return rta;
}

/* A nest is an empty attribute whose length is fixed up once its
 * children have been appended behind it. */
static struct rtattr *nest_start(struct nlmsghdr *nh, unsigned short type)
{
	return add_attr(nh, type, NULL, 0);
}

static void nest_end(struct nlmsghdr *nh, struct rtattr *nest)
{
	nest->rta_len = (char *)nh + nh->nlmsg_len - (char *)nest;
}

static void add_str(struct nlmsghdr *nh, unsigned short type, const char *s)
{
	add_attr(nh, type, s, strlen(s) + 1);
}

static void fail(int err)
{
	fprintf(stderr, "nlhelper: %s %s: %s (errno %d)\n", cmd, subject,
		strerror(err), err);
	exit(1);
}

/* Send one request and wait for its ACK; returns only on success. */
static void talk(struct nlmsghdr *nh)
{
	struct sockaddr_nl kernel = { .nl_family = AF_NETLINK };
	char buf[8192];
	int fd = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_ROUTE);

	if (fd < 0)
		fail(errno);
	nh->nlmsg_seq = 1;
	if (sendto(fd, nh, nh->nlmsg_len, 0, (struct sockaddr *)&kernel,
		   sizeof(kernel)) < 0)
		fail(errno);
	for (;;) {
		ssize_t n = recv(fd, buf, sizeof(buf), 0);
		struct nlmsghdr *r;

		if (n < 0) {
			if (errno == EINTR)
				continue;
			fail(errno);
		}
		for (r = (struct nlmsghdr *)buf; NLMSG_OK(r, (size_t)n);
		     r = NLMSG_NEXT(r, n)) {
			struct nlmsgerr *e = NLMSG_DATA(r);

			/* Skip anything that is not the answer to our request
			 * (e.g. a stray message on a reused port id). */
			if (r->nlmsg_seq != nh->nlmsg_seq || r->nlmsg_type != NLMSG_ERROR)
				continue;
			if (r->nlmsg_len < NLMSG_LENGTH(sizeof(*e)))
				fail(EBADMSG);
			if (e->error)
				fail(-e->error);
			close(fd);
			return;
		}
	}
}

/* The kernel would refuse these too, but a usage error is clearer. */
static int bad_name(const char *s)
{
	return !*s || strlen(s) >= IFNAMSIZ;
}

static int usage(void)
{
	fprintf(stderr, "usage: nlhelper netkit-add NAME PEER [l2|l3]\n"
			"       nlhelper link-del NAME\n"
			"       nlhelper ring-show DEV\n"
			"       nlhelper ring-tx DEV N\n");
	return 2;
}

/* One ETHTOOL_{G,S}RINGPARAM request on DEV; returns only on success. */
static void ring_ioctl(const char *dev, struct ethtool_ringparam *rp)
{
	struct ifreq ifr;
	int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);

	if (fd < 0)
		fail(errno);
	memset(&ifr, 0, sizeof(ifr));
	strncpy(ifr.ifr_name, dev, IFNAMSIZ - 1);
	ifr.ifr_data = (void *)rp;
	if (ioctl(fd, SIOCETHTOOL, &ifr) < 0)
		fail(errno);
	close(fd);
}

static int ring(int argc, char **argv)
{
	struct ethtool_ringparam rp = { .cmd = ETHTOOL_GRINGPARAM };
	char *end;
	unsigned long n = 0;

	if (bad_name(argv[2]))
		return usage();
	if (argc == 4) {
		errno = 0;
		n = strtoul(argv[3], &end, 10);
		if (errno || end == argv[3] || *end || !n || n > 0xffffffffUL)
			return usage();
	}
	subject = argv[2];
	ring_ioctl(argv[2], &rp);
	if (argc == 3) {
		printf("tx %u max %u rx %u max %u\n", rp.tx_pending, rp.tx_max_pending,
		       rp.rx_pending, rp.rx_max_pending);
		return 0;
	}
	/* Keep the other rings as they are: SRINGPARAM sets all of them. */
	rp.cmd = ETHTOOL_SRINGPARAM;
	rp.tx_pending = (unsigned int)n;
	ring_ioctl(argv[2], &rp);
	return 0;
}

static void init_req(struct req *r, unsigned short type, unsigned short flags)
{
	memset(r, 0, sizeof(*r));
	r->nh.nlmsg_len = NLMSG_LENGTH(sizeof(r->ifi));
	r->nh.nlmsg_type = type;
	r->nh.nlmsg_flags = NLM_F_REQUEST | NLM_F_ACK | flags;
	r->ifi.ifi_family = AF_UNSPEC;
}

int main(int argc, char **argv)
{
	struct req r;

	if (argc < 2)
		return usage();
	cmd = argv[1];

	if ((!strcmp(cmd, "ring-show") && argc == 3) || (!strcmp(cmd, "ring-tx") && argc == 4))
		return ring(argc, argv);
	if (!strcmp(cmd, "netkit-add") && (argc == 4 || argc == 5)) {
		/* Default l2: the kernel's own default is l3, but the lab
		 * wants an ordinary ethernet-like device it can address. */
		unsigned int mode = NETKIT_L2;
		struct rtattr *linkinfo, *data, *peer;
		struct ifinfomsg peer_ifi = { .ifi_family = AF_UNSPEC };

		if (argc == 5 && !strcmp(argv[4], "l3"))
			mode = NETKIT_L3;
		else if (argc == 5 && strcmp(argv[4], "l2"))
			return usage();
		if (bad_name(argv[2]) || bad_name(argv[3]))
			return usage();
		subject = argv[2];

		init_req(&r, RTM_NEWLINK, NLM_F_CREATE | NLM_F_EXCL);
		add_str(&r.nh, IFLA_IFNAME, argv[2]);
		linkinfo = nest_start(&r.nh, IFLA_LINKINFO);
		add_str(&r.nh, IFLA_INFO_KIND, "netkit");
		data = nest_start(&r.nh, IFLA_INFO_DATA);
		/* The peer is described like a whole RTM_NEWLINK body:
		 * an ifinfomsg followed by its own attributes. */
		peer = add_attr(&r.nh, IFLA_NETKIT_PEER_INFO, &peer_ifi, sizeof(peer_ifi));
		add_str(&r.nh, IFLA_IFNAME, argv[3]);
		nest_end(&r.nh, peer);
		add_attr(&r.nh, IFLA_NETKIT_MODE, &mode, sizeof(mode));
		nest_end(&r.nh, data);
		nest_end(&r.nh, linkinfo);
	} else if (!strcmp(cmd, "link-del") && argc == 3) {
		if (bad_name(argv[2]))
			return usage();
		subject = argv[2];
		/* No CREATE|EXCL here: on a delete, 0x200 means NLM_F_BULK,
		 * which RTM_DELLINK rejects with EOPNOTSUPP (Linux >= 5.19). */
		init_req(&r, RTM_DELLINK, 0);
		add_str(&r.nh, IFLA_IFNAME, argv[2]);
	} else {
		return usage();
	}
	talk(&r.nh);
	return 0;
}
