//! The command line (docs/contract.md section 3).

use std::{path::PathBuf, time::Duration};

use clap::{Parser, Subcommand};

mod values;
pub use values::{AttachArg, GenerateKind, LogFormatArg, ObjectArg, tracer_choice};

use crate::{
    kernel::recorder,
    model::{
        config::{AgentConfig, RING_SIZES},
        duration::parse_duration,
    },
    sinks::metrics::http::parse_addr,
};

#[derive(Parser, Debug)]
#[command(
    name = "netpoll-trace",
    version,
    about = "Tells why the kernel's netpoll (and so netconsole) refused a network device",
    long_about = "Tells why the kernel's netpoll (and so netconsole) refused a network device.\n\n\
netconsole sends kernel messages over UDP through netpoll. When netpoll refuses a device, \
modprobe fails with \"Unknown error 524\" (or, on kernels with dynamic netconsole, succeeds \
while the target stays disabled). netpoll-trace attaches eBPF probes to the kernel's \
netpoll set-up functions and reports every set-up: device, driver, ops table, return code, \
and for each failure the cause and what to do. Where the cause is a missing \
ndo_poll_controller (kernels before 4.19), `patch` or the `agent` can fix it at run time.",
    after_help = "Examples:\n  \
netpoll-trace check\n  \
netpoll-trace watch -- modprobe netconsole netconsole=@/eth0,6666@192.0.2.1/\n  \
netpoll-trace watch --json --for 60s\n  \
netpoll-trace patch ens5 --module ./netpoll_patch.ko\n  \
netpoll-trace agent --config /etc/netpoll-trace/agent.toml --dry-run\n\n\
Exit codes: 0 ok, 1 runtime error, 2 usage error, 3 netpoll failure observed (watch), \
4 kernel cannot be traced."
)]
pub struct Cli {
    /// More log output (-v info, -vv debug); RUST_LOG overrides.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,
    /// Diagnostics on stderr as text, or one JSON object per line (ts, level, target,
    /// message) for log shippers; stdout (--json, the journal) is unchanged [default: text,
    /// or the agent configuration's log_format].
    #[arg(long, value_enum, global = true, value_name = "FORMAT")]
    pub log_format: Option<LogFormatArg>,
    #[command(subcommand)]
    pub command: Command,
}

/// The flight recorder's options, shared by `watch` and `agent`.
#[derive(clap::Args, Debug, Clone)]
pub struct RecorderArgs {
    /// Keep recording after this process ends: pin the probes' links as well as
    /// the maps (fentry everywhere; kprobes only on kernels 5.15 and later).
    #[arg(long)]
    pub persist: bool,
    /// The recorder's pin directory, on a bpffs mount [default: /sys/fs/bpf/netpoll-trace/v<schema>].
    #[arg(long, value_name = "DIR")]
    pub pin_dir: Option<PathBuf>,
    /// Set-up events the recorder's ring keeps (used when the pins are created) [default: 1024].
    #[arg(long, value_name = "N",
          value_parser = clap::value_parser!(u32).range(*RING_SIZES.start() as i64..=*RING_SIZES.end() as i64))]
    pub ring_size: Option<u32>,
}

impl RecorderArgs {
    pub fn dir(&self) -> PathBuf {
        self.pin_dir.clone().unwrap_or_else(recorder::default_dir)
    }

    pub fn ring_size(&self) -> u32 {
        self.ring_size
            .unwrap_or(netpoll_trace_common::DEFAULT_RING_SIZE)
    }

    /// The agent's: these flags over its configuration's keys of the same names.
    pub fn over(self, cfg: &AgentConfig) -> Self {
        Self {
            persist: self.persist || cfg.persist,
            pin_dir: self.pin_dir.or_else(|| cfg.pin_dir.clone()),
            ring_size: self.ring_size.or(cfg.ring_size),
        }
    }
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Trace netpoll set-ups live: attach, run COMMAND (if given), report every set-up.
    #[command(
        after_help = "The set-up and poll probes are attached before COMMAND starts (the `ready:` \
line); the send path, tear-downs and console write follow while it runs (the `all ready:` \
line, a JSON {\"type\":\"attached\"} object), so a set-up is traced from the first moment \
and COMMAND does not wait for the rest. --wait-all starts COMMAND only after `all ready:` \
(its first messages and tear-downs traced too). Everything is drained after COMMAND exits.\n\
Exit status: COMMAND's own when it failed; else 3 if a set-up failed (a modprobe that \
returned 0 while netconsole was refused, as on 6.x, is a silent failure), else 0.\n\n\
With --persist (or --pin-dir), every set-up also goes into the kernel's flight recorder \
(pinned maps, read by `dump`), and with --persist the probes stay attached after watch exits.\n\n\
Examples:\n  \
netpoll-trace watch -- modprobe netconsole netconsole=@/eth0,6666@192.0.2.1/\n  \
netpoll-trace watch --for 30s --dev eth0     # while you enable a configfs target\n  \
netpoll-trace watch --persist --for 1s        # leave a flight recorder running\n  \
netpoll-trace watch --record run.jsonl -- modprobe netconsole ...   # later: dump --from run.jsonl"
    )]
    Watch {
        /// One JSON object per line on stdout instead of the table.
        #[arg(long)]
        json: bool,
        /// Stop after this long (e.g. 30s, 5m, 500ms); not with a COMMAND, which ends the watch itself.
        #[arg(long = "for", value_name = "DURATION", value_parser = parse_duration, conflicts_with = "command")]
        duration: Option<Duration>,
        /// Only report set-ups of this device (repeatable).
        #[arg(long = "dev", value_name = "NAME")]
        devices: Vec<String>,
        #[command(flatten)]
        sources: OffsetArgs,
        #[command(flatten)]
        tracer: TracerArgs,
        /// Also report single netpoll_poll_dev calls at least this slow.
        #[arg(long, value_name = "DURATION", value_parser = parse_duration, default_value = "1ms")]
        slow_poll: Duration,
        /// Also report single netconsole sends (netpoll's skb transmit, interrupts off) at
        /// least this slow; every send is counted and timed regardless.
        #[arg(long, value_name = "DURATION", value_parser = parse_duration, default_value = "2ms")]
        slow_send: Duration,
        /// Print each device's send and poll statistics (counts since watch started) this
        /// often while it runs, not only when it stops; 0 prints them only at the end.
        #[arg(long, value_name = "DURATION", value_parser = parse_duration, default_value = "60s")]
        stats_every: Duration,
        /// Also write every record as a JSON line to FILE (read back with `dump --from`).
        #[arg(long, value_name = "FILE")]
        record: Option<PathBuf>,
        #[command(flatten)]
        recorder: RecorderArgs,
        /// Start COMMAND once every probe is attached (`all ready:`), not at `ready:` (when
        /// set-ups are traced): COMMAND's first sends and tear-downs are traced too.
        #[arg(long, requires = "command")]
        wait_all: bool,
        /// Command to run once the probes are attached.
        #[arg(last = true, value_name = "COMMAND")]
        command: Vec<String>,
    },
    /// Long-running remediation: diagnose every netpoll failure and act on it per policy.
    #[command(
        long_about = "Long-running remediation. Watches every netpoll set-up; on a failure it \
applies the configured policy: for missing_poll_controller on a driver in allowed_drivers, \
patch the device (netpoll_patch module), retry the netconsole target (configfs where the \
target is dynamic, else retry.command, run without a shell) with bounded attempts and \
backoff, and verify by the next set-up event; every other cause is reported with its \
remedies and never patched. Every decision and action is one `remediation` JSON line in \
the journal (and on stdout). After attaching, the agent keeps only what its policy can \
use in its bounding, permitted and effective sets: CAP_SYSLOG always; CAP_SYS_MODULE when \
the policy can load a module (a patch, or a re-enable that may run retry.command), never \
with --dry-run; CAP_BPF (CAP_SYS_ADMIN before 5.8) with --metrics-addr or a re-enable to \
check. It exits if it cannot drop the rest (that needs CAP_SETPCAP); retry.command runs \
with no_new_privs and CAP_SYS_MODULE only. Stops \
cleanly on SIGTERM/SIGINT.\n\n\
The agent records every set-up in the kernel's flight recorder (pinned maps under \
--pin-dir, read by `dump` even after the agent died); with --persist the probes stay \
attached too. A second agent on the same pins is refused; one restarted on pinned probes \
reuses them.",
        after_help = "Configuration (TOML), every key optional:\n  \
journal = \"/var/log/netpoll-trace/journal.jsonl\"\n  \
patch_module = \"/usr/lib/netpoll-trace/netpoll_patch.ko\"\n  \
allowed_drivers = [\"ena\", \"virtio_net\"]\n  \
max_attempts = 3\n  backoff = \"2s\"\n  verify_timeout = \"10s\"\n  \
device_wait = \"60s\"                # for a stopped target's device to come back\n  \
[policy]\n  missing_poll_controller = \"patch\"   # default \"report\"\n  \
target_stopped = \"reenable\"          # default \"report\"\n  \
[retry]\n  method = \"auto\"                    # auto | configfs | command\n  \
command = [\"/sbin/modprobe\", \"netconsole\", \"netconsole=@/ens5,6666@192.0.2.1/\"]\n  \
timeout = \"60s\"                    # then the command's process group is killed\n\n\
Metrics (--metrics-addr 127.0.0.1:9632, then GET /metrics, Prometheus text format):\n  \
netpoll_trace_setups_total{dev,driver,result}, netpoll_trace_setup_failures_total{dev,driver,cause},\n  \
netpoll_trace_remediations_total{action,result}, netpoll_trace_lost_events_total,\n  \
netpoll_trace_dropped_total{what} (events, kernel_log_lines, queued_failures),\n  \
netpoll_trace_poll_duration_seconds{dev,ifindex} (histogram), netpoll_trace_build_info{version,kernel,attach_method,object}\n\n\
Exit status: 0; with --once, 3 when the failure was not fixed."
    )]
    Agent {
        /// The TOML configuration (validated at start; errors name the key).
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
        /// Decide and journal, but change nothing (no module loaded, no retry).
        #[arg(long)]
        dry_run: bool,
        /// Handle the first failure, then exit.
        #[arg(long)]
        once: bool,
        /// Journal file (overrides the configuration's `journal`).
        #[arg(long, value_name = "FILE")]
        journal: Option<PathBuf>,
        #[command(flatten)]
        sources: OffsetArgs,
        #[command(flatten)]
        tracer: TracerArgs,
        #[command(flatten)]
        recorder: RecorderArgs,
        /// Serve Prometheus metrics at http://ADDR/metrics (HOST:PORT, e.g. 127.0.0.1:9632;
        /// off unless given; any other address than loopback is reachable from other hosts).
        /// Scrape it by that address: a request's Host must name it (or localhost:PORT on
        /// loopback), else 421.
        /// While serving, the agent also keeps CAP_BPF, to read the kernel's poll statistics.
        #[arg(long, value_name = "ADDR", value_parser = parse_addr)]
        metrics_addr: Option<core::net::SocketAddr>,
    },
    /// Post-mortem: print the flight recorder (or a JSON-lines file) with diagnoses.
    #[command(
        long_about = "Post-mortem: print what the kernel's flight recorder kept, without \
attaching anything: the last set-up events oldest first (with sequence numbers, so gaps show), \
each failure diagnosed as `watch` does, then per-device counters (set-ups by result) and the \
poll-latency histograms. Works after the recording process was killed, even by SIGKILL. \
Device names, drivers and ops symbols are resolved at dump time and marked so. With --from, \
reads a JSON-lines file from `watch --record`/`--json` or the agent's journal instead.",
        after_help = "Examples:\n  netpoll-trace dump\n  netpoll-trace dump --json | jq 'select(.type==\"diagnosis\")'\n  \
netpoll-trace dump --from /var/log/netpoll-trace/journal.jsonl\n\n\
Exit status: 0; 1 when there is no recorder, or it or the file is unreadable, foreign or corrupt."
    )]
    Dump {
        /// One JSON object per line (a `recorder` line, then setup, diagnosis, counter, poll).
        #[arg(long)]
        json: bool,
        /// The recorder's pin directory [default: /sys/fs/bpf/netpoll-trace/v<schema>].
        #[arg(long, value_name = "DIR", conflicts_with = "from")]
        pin_dir: Option<PathBuf>,
        /// Read this JSON-lines file instead of the pins (a regular file; a line over
        /// 64 KiB is an error).
        #[arg(long, value_name = "FILE")]
        from: Option<PathBuf>,
    },
    /// A netconsole receiver: print every message, count per sender, and the gaps.
    #[command(
        long_about = "A netconsole receiver. Listens on UDP and prints every message \
(plain netconsole: the text; extended netconsole: sequence number, level and text, fragments \
reassembled), or with --json one JSON object per message ({\"type\":\"netconsole\", \"from\", \
\"seq\", \"level\", \"ts_us\", \"release\", \"release_in\", \"msgid\", \"cpu\", \"taskname\", \"text\", \
\"dict\", \"userdata\"}: the lines a 6.x kernel appends to the text, sysdata and userdata, as \
fields). Counts per sender the messages and, for extended netconsole, the gaps: by msgid where \
the target sends it (messages netconsole sent that never arrived), else by the kernel's \
sequence numbers (which also skip what never went to the console). Control characters from \
the network are escaped in human output. Several workers (--workers) each read their own \
socket in batches; the kernel keeps a sender on one, so its messages stay in order. On exit \
(SIGINT, SIGTERM, --for, --count) a summary per sender, the total and its rate, and the \
datagrams the kernel dropped at the sockets (a final {\"type\":\"summary\"} object with --json).",
        after_help = "Examples:\n  netpoll-trace receive                      # 0.0.0.0:6666\n  \
netpoll-trace receive --listen 10.0.0.5:6666 --json --output netconsole.jsonl\n\n\
Exit status: 0; 1 when the socket cannot be bound or the output file cannot be written."
    )]
    Receive {
        /// Where to listen (HOST:PORT).
        #[arg(long, value_name = "ADDR", default_value = "0.0.0.0:6666")]
        listen: core::net::SocketAddr,
        /// One JSON object per message, and a summary object at the end.
        #[arg(long)]
        json: bool,
        /// Also append every message as a JSON line to FILE (created 0600).
        #[arg(long, value_name = "FILE")]
        output: Option<PathBuf>,
        /// Stop after this long (e.g. 30s, 5m).
        #[arg(long = "for", value_name = "DURATION", value_parser = parse_duration)]
        duration: Option<Duration>,
        /// Stop after this many messages.
        #[arg(long, value_name = "N")]
        count: Option<u64>,
        /// Receive with N threads, each with its own socket on the address (SO_REUSEPORT;
        /// the kernel keeps each sender on one, so its messages stay in order)
        /// [default: one per CPU].
        #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..=1024))]
        workers: Option<u16>,
        /// Let a later listener bind the port too and take the datagrams from then on
        /// (SO_REUSEADDR, as socat's reuseaddr; one worker only), for test harnesses that
        /// start one while this one runs. The kernel checks no user for it: any local
        /// user could then take the datagrams. Without it the port is this receiver's.
        #[arg(long, conflicts_with = "workers")]
        reuse_addr: bool,
    },
    /// Remove the flight recorder: detach its pinned probes, remove its pinned maps.
    #[command(
        after_help = "Refuses while a watch or agent is recording into the directory, and \
leaves a directory alone that is not a recorder."
    )]
    Reset {
        /// The recorder's pin directory [default: /sys/fs/bpf/netpoll-trace/v<schema>].
        #[arg(long, value_name = "DIR", conflicts_with = "all")]
        pin_dir: Option<PathBuf>,
        /// Every schema version's recorder under /sys/fs/bpf/netpoll-trace (what the
        /// packages' removal runs: nothing of the tool stays attached after it).
        #[arg(long)]
        all: bool,
        /// One JSON object: {"pin_dir", "removed" (false when there was no recorder),
        /// "links_detached", "maps_unpinned"}.
        #[arg(long)]
        json: bool,
    },
    /// Write shell completions or man pages into DIR (for packaging).
    #[command(hide = true)]
    Generate {
        #[arg(value_enum)]
        kind: GenerateKind,
        /// Output directory (created if missing).
        dir: PathBuf,
    },
    /// Give DEV an ndo_poll_controller at run time (the netpoll_patch kernel module).
    #[command(
        long_about = "Give DEV an ndo_poll_controller at run time, by loading the \
netpoll_patch kernel module (or asking it, when loaded).\n\n\
Only for a device that netpoll refused for lacking ndo_poll_controller (cause \
missing_poll_controller: kernels before 4.19 with a NAPI driver such as ena 2.x). The \
hook does what those drivers' hooks did: it schedules the device's NAPI contexts, which \
such a kernel's netpoll polls only once scheduled, so TX completions are reaped with \
interrupts off (a panic's report). The module swaps in a private copy of the device's ops \
with one atomic store and restores the original on unpatch, on device removal and on \
unload; a copy once published is never freed (kept for reuse). It is a stopgap: \
upgrading the kernel is the real fix. Code that recognises a device by comparing its ops \
pointer with the driver's table will not recognise a patched device.",
        after_help = "Examples:\n  netpoll-trace patch ens5 --module /root/netpoll_patch.ko\n  netpoll-trace status\n  netpoll-trace unpatch ens5"
    )]
    Patch {
        /// The network interface to patch.
        dev: String,
        /// The module file (root-owned, not group/world-writable). Default: the first of
        /// /lib/modules/$(uname -r)/extra/, /lib/modules/$(uname -r)/updates/dkms/ (the
        /// netpoll-patch-dkms package), /usr/lib/netpoll-trace/ and this binary's directory.
        #[arg(long, value_name = "PATH")]
        module: Option<PathBuf>,
        /// One JSON object ({"dev", "ifindex", "orig_ops", "owner", "hook", "copy"}) instead of
        /// the sentence.
        #[arg(long)]
        json: bool,
    },
    /// Restore DEV's original ops; unloads netpoll_patch once nothing is patched.
    #[command(
        long_about = "Restore DEV's original ops; unloads netpoll_patch once nothing is \
patched. Refused (exit 1, nothing changed) while netpoll is attached to DEV (netconsole bound \
to it): before 4.19, netpoll stops polling a device without ndo_poll_controller, so the live \
netconsole would stall. Detach it first (rmmod netconsole, or write 0 to its configfs \
target's enabled), or pass --force.",
        after_help = "Examples:\n  netpoll-trace unpatch ens5\n  netpoll-trace unpatch ens5 --force   # netconsole on ens5 may stall"
    )]
    Unpatch {
        /// The network interface to restore.
        dev: String,
        /// Restore even while netpoll is attached (the kernel logs a warning; netconsole
        /// output on DEV may stall on kernels before 4.19).
        #[arg(long)]
        force: bool,
        /// One JSON object ({"dev", "ifindex", "orig_ops", "owner", "module_unloaded"}).
        #[arg(long)]
        json: bool,
    },
    /// List the devices netpoll_patch has patched, and each netconsole target's health.
    #[command(
        long_about = "List the devices netpoll_patch has patched (from the module's own state), \
the eBPF object and attach path the tracer would use, and each netconsole target's health: configfs's \
dynamic targets and every target the flight recorder saw set up or torn down, with its device, remote, \
whether it is enabled, its last change and why, and its device's messages, drops and last drop since the \
recorder was created (a recorder runs under `agent` or `watch --persist`)."
    )]
    Status {
        /// One JSON object instead of the table.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        tracer: TracerArgs,
        /// The flight recorder to read target health from [default: /sys/fs/bpf/netpoll-trace/v<schema>].
        #[arg(long, value_name = "DIR")]
        pin_dir: Option<PathBuf>,
    },
    /// Check a JSON-lines file (from --json) against the output contract.
    #[command(hide = true)]
    SchemaCheck {
        /// The file to check.
        file: PathBuf,
    },
    /// Print the struct offsets the probes would use, and which source gave them.
    #[command(
        long_about = "Print the struct offsets the probes would use, and which source gave them. \
Sources, in order: --btf FILE (raw BTF, or BTFHub's <release>.btf.tar.xz archive), else the \
kernel's BTF (/sys/kernel/btf/vmlinux); --offsets FILE, else netpoll_offsets.o next to the \
patch module (/lib/modules/$(uname -r)/extra/ or updates/dkms/, /usr/lib/netpoll-trace/, this binary's \
directory): offsets the compiler computed from this kernel's headers when netpoll-patch was \
built, never loaded, refused when built for another kernel. With none, watch and agent run in \
reduced mode (return codes only).",
        after_help = "Exit status: 0 when every offset was resolved, 1 when some or all are unknown."
    )]
    Offsets {
        /// One JSON object instead of the table.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        sources: OffsetArgs,
    },
    /// Report what this kernel supports for tracing netpoll, and what to do about what is missing.
    #[command(
        after_help = "As root, check loads the eBPF object watch would use (the modern one, \
else the legacy one) and its programs, attaching nothing, and names it and the attach path.\n\n\
Exit status: 0 when netpoll can be traced, 4 when it cannot."
    )]
    Check {
        /// One JSON object instead of the table.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        tracer: TracerArgs,
        /// Neither read nor write the cache of the kernel's BTF facts
        /// (/var/cache/netpoll-trace/kernel-btf.json): parse /sys/kernel/btf/vmlinux.
        #[arg(long)]
        no_cache: bool,
    },
}

/// Where the struct offsets come from when the kernel has no BTF (watch, agent, offsets).
#[derive(clap::Args, Debug, Clone)]
pub struct OffsetArgs {
    /// BTF of the running kernel, for kernels without /sys/kernel/btf/vmlinux: raw, or
    /// BTFHub's <release>.btf.tar.xz.
    #[arg(long, value_name = "FILE")]
    pub btf: Option<PathBuf>,
    /// Struct offsets computed from this kernel's headers (netpoll_offsets.o, built with
    /// netpoll-patch), for kernels without BTF [default: next to the patch module].
    #[arg(long, value_name = "FILE", conflicts_with = "btf")]
    pub offsets: Option<PathBuf>,
    /// Neither read nor write the cache of the kernel's BTF facts
    /// (/var/cache/netpoll-trace/kernel-btf.json): parse /sys/kernel/btf/vmlinux.
    #[arg(long)]
    pub no_cache: bool,
}

/// Which eBPF object and attach method the tracer uses (watch, agent) or would use
/// (check, status).
#[derive(clap::Args, Debug, Clone, Copy)]
pub struct TracerArgs {
    /// How to attach: fentry/fexit (cheapest; needs BPF trampolines and BTF),
    /// kprobe (works everywhere; through tracefs kprobe_events before 4.17), or auto
    /// (fentry, else kprobe).
    #[arg(long, value_enum, default_value = "auto", env = "NETPOLL_TRACE_ATTACH")]
    pub attach: AttachArg,
    /// Which eBPF object: modern (aya-log; needs 5.8), legacy (kprobes only; loads
    /// on 4.4), or auto (modern, else legacy when the kernel refuses to load it).
    /// The ready line says which was used.
    #[arg(long, value_enum, default_value = "auto", env = "NETPOLL_TRACE_OBJECT")]
    pub object: ObjectArg,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernel::{
        attach::AttachChoice,
        object::{ObjectChoice, ObjectKind},
    };

    #[test]
    fn ring_size_is_bounded() {
        assert!(Cli::try_parse_from(["netpoll-trace", "watch", "--ring-size", "0"]).is_err());
        assert!(Cli::try_parse_from(["netpoll-trace", "watch", "--ring-size", "8"]).is_ok());
        assert!(
            Cli::try_parse_from(["netpoll-trace", "dump", "--from", "x", "--pin-dir", "y"])
                .is_err()
        );
    }

    #[test]
    fn legacy_with_fentry_is_a_usage_error_and_env_sets_the_defaults() {
        assert!(tracer_choice(ObjectArg::Legacy, AttachArg::Fentry).is_err());
        assert_eq!(
            tracer_choice(ObjectArg::Legacy, AttachArg::Auto).unwrap(),
            (ObjectChoice::Only(ObjectKind::Legacy), AttachChoice::Auto)
        );
        // SAFETY: the other tests that parse a command line accept either value.
        unsafe {
            std::env::set_var("NETPOLL_TRACE_OBJECT", "legacy");
            std::env::set_var("NETPOLL_TRACE_ATTACH", "kprobe");
        }
        let from_env = Cli::try_parse_from(["netpoll-trace", "agent"]);
        let from_flag = Cli::try_parse_from([
            "netpoll-trace",
            "watch",
            "--object",
            "modern",
            "--attach",
            "fentry",
        ]);
        unsafe {
            std::env::remove_var("NETPOLL_TRACE_OBJECT");
            std::env::remove_var("NETPOLL_TRACE_ATTACH");
        }
        match from_env.unwrap().command {
            Command::Agent { tracer, .. } => assert_eq!(
                (tracer.object, tracer.attach),
                (ObjectArg::Legacy, AttachArg::Kprobe)
            ),
            other => panic!("{other:?}"),
        }
        match from_flag.unwrap().command {
            Command::Watch { tracer, .. } => assert_eq!(
                (tracer.object, tracer.attach),
                (ObjectArg::Modern, AttachArg::Fentry)
            ),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn receive_help_names_every_field_of_a_message() {
        use clap::CommandFactory as _;
        let mut cli = Cli::command();
        let help = cli
            .find_subcommand_mut("receive")
            .expect("receive")
            .render_long_help()
            .to_string();
        // A message as `receive --json` writes it: every key is a field the help must name.
        let mut r = crate::model::netconsole::Receiver::new(1);
        let from = "192.0.2.1:6666".parse().unwrap();
        let m = r.take(from, b"6,1,2,-;hello").expect("a message");
        let json = serde_json::to_value(&m).unwrap();
        for key in json.as_object().unwrap().keys() {
            assert!(
                help.contains(&format!("\"{key}\"")),
                "receive --help lacks {key}"
            );
        }
    }

    #[test]
    fn cli_definition_is_consistent() {
        use clap::CommandFactory as _;
        Cli::command().debug_assert();
    }
}
