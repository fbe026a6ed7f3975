//! The pages' tables: the files the tool reads or writes and the agent configuration's
//! keys. The flight recorder's default pin directory is written `{pin_dir}`, filled in
//! from the kernel layer (`pinned`): its schema version is defined there once.

use crate::kernel::recorder;

/// `{pin_dir}` in a table's text, as the kernel layer defines it.
pub fn pinned(text: &str) -> String {
    text.replace("{pin_dir}", &recorder::default_dir().display().to_string())
}

/// Files the tool reads or writes, for every page's FILES section.
pub const FILES: &[(&str, &str)] = &[
    (
        "/etc/netpoll-trace/agent.toml",
        "The agent's configuration; see netpoll-trace-agent.toml(5).",
    ),
    (
        "/var/log/netpoll-trace/journal.jsonl",
        "The agent's journal: one JSON object per decision and action.",
    ),
    (
        "{pin_dir}",
        "The flight recorder's pinned maps (and, with --persist, probes); read by dump, removed by reset.",
    ),
    (
        "/usr/lib/netpoll-trace/netpoll_patch.ko",
        "The runtime patch module used by patch and the agent (root-owned, not group- or world-writable).",
    ),
    (
        "/var/cache/netpoll-trace/kernel-btf.json",
        "What start-up needs from the kernel's BTF (function presence, type ids, struct offsets), keyed by the kernel's build-id (a hash of \
         the whole BTF where it has none); used only when that identity matches the running kernel's (--no-cache: neither read nor written). Directory 0700, file 0600, root's.",
    ),
];

/// One key of the agent's configuration: name (dotted for a table's key), type, default, meaning.
pub type Key = (&'static str, &'static str, &'static str, &'static str);

/// The configuration's keys. The unit test checks this list against the keys the parser
/// accepts (model/config.rs), so a key added there fails the test until it is documented.
pub const CONFIG_KEYS: &[Key] = &[
    (
        "journal",
        "path",
        "none (stdout only)",
        "File the agent appends its journal to, one JSON object per line (e.g. /var/log/netpoll-trace/journal.jsonl). --journal overrides it.",
    ),
    (
        "patch_module",
        "path",
        "the first of /lib/modules/$(uname -r)/extra/, /lib/modules/$(uname -r)/updates/dkms/ (netpoll-patch-dkms), /usr/lib/netpoll-trace/ and the binary's directory",
        "The netpoll_patch.ko to load; root-owned, not group- or world-writable.",
    ),
    (
        "allowed_drivers",
        "array of strings",
        "[] (none)",
        "The only drivers whose devices the agent may patch. Required when policy.missing_poll_controller is \"patch\".",
    ),
    (
        "max_attempts",
        "integer, 1 to 20",
        "3",
        "Retries of a refused netconsole target per failure.",
    ),
    (
        "backoff",
        "duration (\"500ms\", \"2s\", \"1m\")",
        "\"2s\"",
        "Wait before the second attempt (the first is at once); doubles each time up to 10 min, or stays as configured when longer. At most 1h.",
    ),
    (
        "verify_timeout",
        "duration",
        "\"10s\"",
        "How long a retry has to show a successful set-up (and a re-enabled target that it sends). At most 1h.",
    ),
    (
        "device_wait",
        "duration",
        "\"60s\"",
        "With policy.target_stopped = \"reenable\": how long the device of a stopped target may take to come back (looked up by name in /sys/class/net every 0.5 s) before the agent gives up (journaled wait_device timed_out). Other failures wait meanwhile. At most 1h.",
    ),
    (
        "policy.CAUSE",
        "\"patch\" or \"report\"",
        "\"report\"",
        "What to do about a diagnosed cause. Only missing_poll_controller can be patched; every other cause is reported with its remedies.",
    ),
    (
        "policy.target_stopped",
        "\"report\" or \"reenable\"",
        "\"report\"",
        "What to do when a netconsole target stops because its device unregistered (or another device event: joined or left a master): report journals the stop; reenable, for a device that unregistered only, waits for the device to come back (device_wait), re-enables the target (configfs enabled of the item with that dev_name and remote, else retry.command, which must then reload netconsole) with max_attempts and backoff, verifies its next set-up within verify_timeout, and writes a marker line to /dev/kmsg to see the device's sent count grow (the agent then reads the send statistics every second and keeps the capability to read BPF maps, as with metrics_addr). A target disabled by its owner is never re-enabled.",
    ),
    (
        "retry.method",
        "\"auto\", \"configfs\" or \"command\"",
        "\"auto\"",
        "How to retry the target: auto uses configfs where the target is there (dynamic netconsole), else retry.command.",
    ),
    (
        "retry.command",
        "array of strings",
        "none",
        "The program and its arguments that re-create the target, run without a shell (e.g. [\"/sbin/modprobe\", \"netconsole\", \"netconsole=@/ens5,6666@192.0.2.1/\"]), with no_new_privs and CAP_SYS_MODULE only. The program is an absolute path, checked before each run as the patch module is (root's, not writable by group or others, nor any directory above it). Required when retry.method is \"command\".",
    ),
    (
        "retry.timeout",
        "duration",
        "\"60s\"",
        "How long retry.command may run; then its process group gets SIGTERM, and SIGKILL 2 s later (journaled timed_out). At most 1h.",
    ),
    (
        "metrics_addr",
        "\"IP:PORT\"",
        "none (no endpoint)",
        "Serve Prometheus metrics there, as --metrics-addr (which wins).",
    ),
    (
        "log_format",
        "\"text\" or \"json\"",
        "\"text\"",
        "The stderr format, as --log-format (which wins).",
    ),
    (
        "pin_dir",
        "path on a bpffs mount",
        "{pin_dir}",
        "The flight recorder's pin directory, as --pin-dir (which wins).",
    ),
    (
        "persist",
        "boolean",
        "false",
        "Keep the probes attached after the agent ends, as --persist (either turns it on).",
    ),
    (
        "ring_size",
        "integer, 1 to 1048576",
        "1024",
        "Set-up events the recorder's ring keeps, as --ring-size (which wins).",
    ),
];
