/* floor: the benchmark's reference for "close to the limit": the smallest ordinary libbpf
 * loader for the three functions netpoll-trace watch traces (static; Debian's libbpf.a).
 *
 *   floor --attach fentry|kprobe [--outer FUNCTION] [--also LIST]
 *       Opens the embedded BPF object (floor.bpf.c), keeps the programs of one attach
 *       method (fentry/fexit or kprobe/kretprobe) and loads them, attaches all six, opens
 *       the perf buffer, then prints to stderr
 *           floor: ready: METHOD on OUTER, __netpoll_setup, netpoll_poll_dev (...)
 *       With --also (the full floor: what watch attaches after ready), LIST is a comma-
 *       separated list of further functions, `[MODULE:]FUNCTION[+|-]` (`+`: a return program
 *       too; `-`: a return program only), at most MAX_EXTRA: each gets a slot of generic programs (floor.bpf.c), with
 *       the method's probes, or kprobes for a MODULE's function (as the tool traces them);
 *       they load and attach in the same passes, and the ready line names them.
 *       and prints one line per set-up event (`floor: OUTER ret=...`) until SIGINT or
 *       SIGTERM; then the counters. Exit 1 when a step fails (the message names the step
 *       and the program), 2 on bad usage.
 *       OUTER, the outer set-up, is netpoll_setup unless --outer names another: where
 *       netconsole sets netpoll up itself (7.3: netcons_netpoll_setup, in netconsole.ko,
 *       which must be loaded) the guest script passes that, as the tool traces it there.
 *       Every program gets its function by name here, not from its section: fentry/fexit
 *       through bpf_program__set_attach_target (libbpf looks the name up in vmlinux's BTF,
 *       then in the loaded modules'), kprobes through bpf_program__attach_kprobe (the
 *       kernel resolves a loaded module's function by name), so the work is the same
 *       whichever function is the outer one.
 *
 * xtask/src/bench/floor.rs builds it: clang makes floor.bpf.o, which this file embeds with
 * .incbin (FLOOR_BPF_OBJ is its path), so the guest gets one file. */
#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include <bpf/bpf.h>
#include <bpf/libbpf.h>

#include "floor.h"

#ifndef FLOOR_BPF_OBJ
#error "FLOOR_BPF_OBJ must name the BPF object to embed"
#endif

__asm__(".pushsection .rodata\n"
	".balign 8\n"
	".globl floor_bpf_obj\n"
	"floor_bpf_obj:\n"
	".incbin \"" FLOOR_BPF_OBJ "\"\n"
	".globl floor_bpf_obj_end\n"
	"floor_bpf_obj_end:\n"
	".popsection\n");
extern const char floor_bpf_obj[], floor_bpf_obj_end[];

/* The traced functions, in FN_* order; fn_names[FN_NETPOLL_SETUP] is the outer set-up
 * (--outer). */
static const char *fn_names[FN_COUNT] = { "netpoll_setup", "__netpoll_setup", "netpoll_poll_dev" };

/* Every program, by attach method: entry and return per function, in fn_names order. */
struct method {
	const char *name;
	/* fentry/fexit (the target set through BTF before load), else kprobe/kretprobe. */
	int btf_target;
	const char *progs[2 * FN_COUNT];
};
static const struct method methods[] = {
	{ "fentry",
	  1,
	  { "setup_fentry", "setup_fexit", "inner_fentry", "inner_fexit", "poll_fentry", "poll_fexit" } },
	{ "kprobe",
	  0,
	  { "setup_kprobe", "setup_kretprobe", "inner_kprobe", "inner_kretprobe", "poll_kprobe",
	    "poll_kretprobe" } },
};
#define N_METHODS (sizeof(methods) / sizeof(methods[0]))

/* --also: the further functions, their slots' programs in order. */
struct extra {
	char name[128]; /* without the module */
	int module;     /* a module's: kprobes */
	int entry;      /* an entry program */
	int ret;        /* a return program */
};
static struct extra extras[MAX_EXTRA];
static int n_extras;

/* Parses --also's LIST into extras; 0, or -1 naming what is wrong. */
static int parse_also(char *list)
{
	for (char *item = strtok(list, ","); item; item = strtok(NULL, ",")) {
		if (n_extras == MAX_EXTRA) {
			fprintf(stderr, "floor: --also takes at most %d functions\n", MAX_EXTRA);
			return -1;
		}
		struct extra *x = &extras[n_extras++];
		size_t len = strlen(item);
		x->entry = 1;
		if (len && (item[len - 1] == '+' || item[len - 1] == '-')) {
			x->ret = 1;
			x->entry = item[len - 1] == '+';
			item[--len] = 0;
		}
		char *colon = strchr(item, ':');
		x->module = colon != NULL;
		const char *fn = colon ? colon + 1 : item;
		if (!*fn || strlen(fn) >= sizeof(x->name)) {
			fprintf(stderr, "floor: --also: bad function name '%s'\n", item);
			return -1;
		}
		strcpy(x->name, fn);
	}
	return 0;
}

/* The program of extra slot `i`: its entry (ret 0) or return, for method `m`. */
static void extra_prog(const struct method *m, int i, int ret, char *out, size_t size)
{
	int kprobe = !m->btf_target || extras[i].module;
	snprintf(out, size, "x%d_%s", i, kprobe ? (ret ? "kretprobe" : "kprobe") : (ret ? "fexit" : "fentry"));
}

/* Whether extra slot `i` has its entry (ret 0) or return program. */
static int extra_has(int i, int ret)
{
	return ret ? extras[i].ret : extras[i].entry;
}

/* Whether `prog` is one of the used extra slots' programs. */
static int in_extras(const struct method *m, const char *prog)
{
	char name[32];
	for (int i = 0; i < n_extras; i++)
		for (int r = 0; r < 2; r++) {
			if (!extra_has(i, r))
				continue;
			extra_prog(m, i, r, name, sizeof(name));
			if (!strcmp(name, prog))
				return 1;
		}
	return 0;
}

static volatile sig_atomic_t stopping;

static void on_signal(int sig)
{
	(void)sig;
	stopping = 1;
}

static double now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

/* libbpf's own messages: warnings and errors only (its debug output would be timed too). */
static int libbpf_log(enum libbpf_print_level level, const char *fmt, va_list args)
{
	if (level == LIBBPF_DEBUG)
		return 0;
	return vfprintf(stderr, fmt, args);
}

static void on_event(void *ctx, int cpu, void *data, __u32 size)
{
	const struct floor_event *e = data;
	(void)ctx;
	(void)cpu;
	if (size < sizeof(*e) || e->fn >= FN_COUNT)
		return;
	fprintf(stderr, "floor: %s ret=%d pid=%u tid=%u %lluus\n", fn_names[e->fn], e->ret, e->pid, e->tid,
		e->duration_ns / 1000);
}

static unsigned long long lost_events;

static void on_lost(void *ctx, int cpu, __u64 n)
{
	(void)ctx;
	(void)cpu;
	lost_events += n;
}

static const struct method *method_named(const char *name)
{
	for (size_t i = 0; i < N_METHODS; i++)
		if (!strcmp(methods[i].name, name))
			return &methods[i];
	return NULL;
}

/* Whether `prog` belongs to method `m`. */
static int in_method(const struct method *m, const char *prog)
{
	for (int i = 0; i < 2 * FN_COUNT; i++)
		if (!strcmp(m->progs[i], prog))
			return 1;
	return 0;
}

static void print_counts(struct bpf_object *obj)
{
	struct bpf_map *counts = bpf_object__find_map_by_name(obj, "counts");
	__u64 v[CNT_LEN] = { 0 };
	if (!counts)
		return;
	for (__u32 i = 0; i < CNT_LEN; i++)
		bpf_map_lookup_elem(bpf_map__fd(counts), &i, &v[i]);
	fprintf(stderr, "floor: calls/returns:");
	for (int f = 0; f < FN_COUNT; f++)
		fprintf(stderr, " %s %llu/%llu", fn_names[f], (unsigned long long)v[f],
			(unsigned long long)v[FN_COUNT + f]);
	fprintf(stderr, "; %llu event(s) sent, %llu lost, %llu start time(s) not stored",
		(unsigned long long)v[CNT_EVENTS], lost_events, (unsigned long long)v[CNT_NO_SLOT]);
	if (n_extras)
		fprintf(stderr, "; %d further function(s) %llu/%llu", n_extras,
			(unsigned long long)v[CNT_EXTRA_CALLS], (unsigned long long)v[CNT_EXTRA_RETURNS]);
	fprintf(stderr, "\n");
}

static int run(const struct method *m)
{
	double t0 = now_ms();
	struct bpf_link *links[2 * FN_COUNT + 2 * MAX_EXTRA] = { 0 };
	int n_links = 2 * FN_COUNT;
	char name[32];
	struct perf_buffer *pb = NULL;
	int rc = 1;

	LIBBPF_OPTS(bpf_object_open_opts, opts, .object_name = "floor");
	struct bpf_object *obj =
		bpf_object__open_mem(floor_bpf_obj, (size_t)(floor_bpf_obj_end - floor_bpf_obj), &opts);
	if (!obj) {
		fprintf(stderr, "floor: opening the BPF object: %s\n", strerror(errno));
		return 1;
	}
	/* Only this method's programs are loaded; every one of them must be in the object. */
	struct bpf_program *prog;
	bpf_object__for_each_program(prog, obj)
	{
		const char *p = bpf_program__name(prog);
		bpf_program__set_autoload(prog, in_method(m, p) || in_extras(m, p));
	}
	for (int i = 0; i < n_extras; i++)
		for (int r = 0; r < 2; r++) {
			if (!extra_has(i, r))
				continue;
			extra_prog(m, i, r, name, sizeof(name));
			prog = bpf_object__find_program_by_name(obj, name);
			if (!prog) {
				fprintf(stderr, "floor: the BPF object has no program %s\n", name);
				goto out;
			}
			if (m->btf_target && !extras[i].module &&
			    bpf_program__set_attach_target(prog, 0, extras[i].name)) {
				fprintf(stderr, "floor: finding %s in the kernel's BTF for %s: %s\n", extras[i].name,
					name, strerror(errno));
				goto out;
			}
		}
	for (int i = 0; i < 2 * FN_COUNT; i++) {
		prog = bpf_object__find_program_by_name(obj, m->progs[i]);
		if (!prog) {
			fprintf(stderr, "floor: the BPF object has no program %s\n", m->progs[i]);
			goto out;
		}
		/* fentry/fexit: the target's BTF id (vmlinux's or a loaded module's) before load. */
		if (m->btf_target && bpf_program__set_attach_target(prog, 0, fn_names[i / 2])) {
			fprintf(stderr, "floor: finding %s in the kernel's BTF for %s: %s\n", fn_names[i / 2],
				m->progs[i], strerror(errno));
			goto out;
		}
	}
	if (bpf_object__load(obj)) {
		fprintf(stderr, "floor: loading the %s programs: %s\n", m->name, strerror(errno));
		goto out;
	}
	for (int i = 0; i < 2 * FN_COUNT; i++) {
		prog = bpf_object__find_program_by_name(obj, m->progs[i]);
		/* Entries at even slots, returns at odd ones. */
		links[i] = m->btf_target ? bpf_program__attach(prog)
					 : bpf_program__attach_kprobe(prog, i % 2, fn_names[i / 2]);
		if (!links[i]) {
			fprintf(stderr, "floor: attaching %s (%s) to %s: %s\n", m->progs[i],
				bpf_program__section_name(prog), fn_names[i / 2], strerror(errno));
			goto out;
		}
	}
	for (int i = 0; i < n_extras; i++)
		for (int r = 0; r < 2; r++) {
			if (!extra_has(i, r))
				continue;
			extra_prog(m, i, r, name, sizeof(name));
			prog = bpf_object__find_program_by_name(obj, name);
			int kprobe = !m->btf_target || extras[i].module;
			struct bpf_link *l = kprobe ? bpf_program__attach_kprobe(prog, r, extras[i].name)
						    : bpf_program__attach(prog);
			if (!l) {
				fprintf(stderr, "floor: attaching %s to %s: %s\n", name, extras[i].name,
					strerror(errno));
				goto out;
			}
			links[n_links++] = l;
		}
	struct bpf_map *events = bpf_object__find_map_by_name(obj, "events");
	if (!events) {
		fprintf(stderr, "floor: the BPF object has no map events\n");
		goto out;
	}
	/* 16 pages per CPU, as netpoll-trace's perf buffers. */
	pb = perf_buffer__new(bpf_map__fd(events), 16, on_event, on_lost, NULL, NULL);
	if (!pb) {
		fprintf(stderr, "floor: opening the perf buffer: %s\n", strerror(errno));
		goto out;
	}
	fprintf(stderr, "floor: ready: %s on %s, %s, %s", m->name, fn_names[0], fn_names[1], fn_names[2]);
	for (int i = 0; i < n_extras; i++)
		fprintf(stderr, ", %s", extras[i].name);
	fprintf(stderr, " (%d programs, libbpf %s, attached in %.1f ms)\n", n_links, libbpf_version_string(),
		now_ms() - t0);
	while (!stopping) {
		int n = perf_buffer__poll(pb, 200);
		if (n < 0 && n != -EINTR) {
			fprintf(stderr, "floor: polling the perf buffer: %s\n", strerror(-n));
			goto out;
		}
	}
	print_counts(obj);
	rc = 0;
out:
	perf_buffer__free(pb);
	for (int i = 0; i < n_links; i++)
		bpf_link__destroy(links[i]);
	bpf_object__close(obj);
	return rc;
}

int main(int argc, char **argv)
{
	const struct method *m = argc >= 3 && !strcmp(argv[1], "--attach") ? method_named(argv[2]) : NULL;
	for (int i = 3; m && i < argc; i += 2) {
		if (i + 1 >= argc || !argv[i + 1][0])
			m = NULL;
		else if (!strcmp(argv[i], "--outer"))
			fn_names[FN_NETPOLL_SETUP] = argv[i + 1];
		else if (!strcmp(argv[i], "--also")) {
			if (parse_also(argv[i + 1]))
				return 2;
		} else
			m = NULL;
	}
	if (!m) {
		fprintf(stderr, "usage: floor --attach fentry|kprobe [--outer FUNCTION] [--also [MODULE:]FUNCTION[+|-],...]\n");
		return 2;
	}
	struct sigaction sa = { .sa_handler = on_signal };
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	libbpf_set_print(libbpf_log);
	return run(m);
}
