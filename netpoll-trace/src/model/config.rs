//! The agent's TOML configuration, validated at start: every error names the key.
//!
//! ```toml
//! journal = "/var/log/netpoll-trace/journal.jsonl"
//! patch_module = "/usr/lib/netpoll-trace/netpoll_patch.ko"
//! allowed_drivers = ["ena", "virtio_net"]   # the only drivers the agent patches
//! max_attempts = 3                         # retries per failure
//! backoff = "2s"                           # before the first retry; doubles each time
//! verify_timeout = "10s"                   # how long a retry has to show a successful set-up
//! device_wait = "60s"                      # how long a stopped target's device may take to return
//! metrics_addr = "127.0.0.1:9632"          # as --metrics-addr (the flags win over these five)
//! log_format = "json"                      # as --log-format: text | json
//! pin_dir = "/sys/fs/bpf/netpoll-trace/v2" # as --pin-dir
//! persist = true                           # as --persist
//! ring_size = 4096                         # as --ring-size
//!
//! [policy]                                 # per cause: "patch" or "report"
//! missing_poll_controller = "patch"
//! target_stopped = "reenable"              # "report" or "reenable" (its device unregistered)
//!
//! [retry]                                  # how to retry a refused netconsole target
//! method = "auto"                          # auto | configfs | command
//! command = ["/sbin/modprobe", "netconsole", "netconsole=@/ens5,6666@192.0.2.1/"] # absolute
//! timeout = "60s"                          # then the command's process group is killed
//! ```

use core::net::SocketAddr;
use std::{path::PathBuf, time::Duration};

use anyhow::{Result, anyhow, bail};
use serde::Deserialize;

use super::{diagnosis::Cause, duration::parse_duration};

/// What to do about a diagnosed cause.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PolicyAction {
    /// Install a NAPI-scheduling ndo_poll_controller, then retry (only for missing_poll_controller).
    Patch,
    /// Journal the diagnosis and its remedies; change nothing.
    Report,
}

/// What to do about a netconsole target its device stopped (`policy.target_stopped`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TargetStopped {
    /// Journal the stop; change nothing.
    Report,
    /// Wait for the device to come back (by name, at most `device_wait`), then re-enable
    /// the target and verify its set-up and that it sends.
    Reenable,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RetryMethod {
    /// configfs where the target is there (dynamic netconsole), else the command.
    Auto,
    Configfs,
    Command,
}

/// How stderr lines are written (`--log-format`, `log_format`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogFormat {
    /// `netpoll-trace: warning: ...` lines.
    #[default]
    Text,
    /// One JSON object per line: ts (RFC 3339, UTC), level, target, message.
    Json,
}

/// Where the agent reads its configuration when `--config` is not given.
pub const DEFAULT_PATH: &str = "/etc/netpoll-trace/agent.toml";

/// The range of `ring_size` (and `--ring-size`).
pub const RING_SIZES: std::ops::RangeInclusive<u32> = 1..=1_048_576;

#[derive(Debug, Clone, PartialEq)]
pub struct AgentConfig {
    pub journal: Option<PathBuf>,
    pub patch_module: Option<PathBuf>,
    pub allowed_drivers: Vec<String>,
    pub max_attempts: u32,
    pub backoff: Duration,
    pub verify_timeout: Duration,
    pub missing_poll_controller: PolicyAction,
    pub target_stopped: TargetStopped,
    /// How long a stopped target's device may take to come back before the agent gives up.
    pub device_wait: Duration,
    pub retry_method: RetryMethod,
    pub retry_command: Vec<String>,
    /// How long `retry_command` may run before its process group is killed.
    pub retry_timeout: Duration,
    /// Defaults for the flags of the same names.
    pub metrics_addr: Option<SocketAddr>,
    pub log_format: Option<LogFormat>,
    pub pin_dir: Option<PathBuf>,
    pub persist: bool,
    pub ring_size: Option<u32>,
}

impl Default for AgentConfig {
    fn default() -> Self {
        Self {
            journal: None,
            patch_module: None,
            allowed_drivers: Vec::new(),
            max_attempts: 3,
            backoff: Duration::from_secs(2),
            verify_timeout: Duration::from_secs(10),
            // Patching changes a live device: only when configured.
            missing_poll_controller: PolicyAction::Report,
            // Re-enabling changes a target its owner set up: only when configured.
            target_stopped: TargetStopped::Report,
            device_wait: Duration::from_secs(60),
            retry_method: RetryMethod::Auto,
            retry_command: Vec::new(),
            retry_timeout: Duration::from_secs(60),
            metrics_addr: None,
            log_format: None,
            pin_dir: None,
            persist: false,
            ring_size: None,
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Raw {
    journal: Option<PathBuf>,
    patch_module: Option<PathBuf>,
    allowed_drivers: Option<Vec<String>>,
    max_attempts: Option<u32>,
    backoff: Option<String>,
    verify_timeout: Option<String>,
    device_wait: Option<String>,
    policy: Option<toml::Table>,
    retry: Option<RawRetry>,
    metrics_addr: Option<String>,
    log_format: Option<String>,
    pin_dir: Option<PathBuf>,
    persist: Option<bool>,
    ring_size: Option<u32>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRetry {
    method: Option<String>,
    command: Option<Vec<String>>,
    timeout: Option<String>,
}

/// Longest `backoff`, `verify_timeout`, `device_wait` and `retry.timeout`: an hour is already longer than any retry of a
/// netconsole target needs, and keeps every deadline far from overflow.
pub const MAX_WAIT: Duration = Duration::from_secs(3600);

/// Shortest of them: below it a wait is a typo (a retry.timeout of nothing kills every
/// command at once). The flags' thresholds may be finer (`--slow-send 0.001ms`).
pub const MIN_WAIT: Duration = Duration::from_millis(1);

fn duration(key: &str, v: &str) -> Result<Duration> {
    let d = parse_duration(v).map_err(|e| anyhow!("{key}: {e}"))?;
    if d < MIN_WAIT {
        bail!("{key}: `{v}` is shorter than the 1 ms allowed (e.g. \"500ms\")");
    }
    if d > MAX_WAIT {
        bail!(
            "{key}: `{v}` is longer than the {}s allowed",
            MAX_WAIT.as_secs()
        );
    }
    Ok(d)
}

impl AgentConfig {
    /// Parses and validates; an error names the offending key.
    pub fn parse(text: &str) -> Result<Self> {
        let raw: Raw = toml::from_str(text).map_err(|e| anyhow!("{}", e.to_string().trim()))?;
        let mut c = AgentConfig {
            journal: raw.journal,
            patch_module: raw.patch_module,
            pin_dir: raw.pin_dir,
            persist: raw.persist.unwrap_or(false),
            ..AgentConfig::default()
        };
        if let Some(a) = raw.metrics_addr {
            c.metrics_addr = Some(a.parse().map_err(|_| anyhow!("metrics_addr: `{a}` is not HOST:PORT with an IP address (e.g. \"127.0.0.1:9632\")"))?);
        }
        c.log_format = match raw.log_format.as_deref() {
            None => None,
            Some("text") => Some(LogFormat::Text),
            Some("json") => Some(LogFormat::Json),
            Some(other) => bail!("log_format: `{other}` is not text or json"),
        };
        if let Some(n) = raw.ring_size {
            if !RING_SIZES.contains(&n) {
                bail!(
                    "ring_size: {n} is out of range ({} to {})",
                    RING_SIZES.start(),
                    RING_SIZES.end()
                );
            }
            c.ring_size = Some(n);
        }
        if let Some(d) = raw.allowed_drivers {
            if let Some(bad) = d
                .iter()
                .find(|d| d.is_empty() || d.contains(char::is_whitespace))
            {
                bail!("allowed_drivers: `{bad}` is not a driver name");
            }
            c.allowed_drivers = d;
        }
        if let Some(n) = raw.max_attempts {
            if !(1..=20).contains(&n) {
                bail!("max_attempts: {n} is out of range (1 to 20)");
            }
            c.max_attempts = n;
        }
        if let Some(b) = raw.backoff {
            c.backoff = duration("backoff", &b)?;
        }
        if let Some(v) = raw.verify_timeout {
            c.verify_timeout = duration("verify_timeout", &v)?;
        }
        if let Some(w) = raw.device_wait {
            c.device_wait = duration("device_wait", &w)?;
        }
        for (key, value) in raw.policy.unwrap_or_default() {
            // Not a cause: what to do when a target's device stops it.
            if key == "target_stopped" {
                c.target_stopped = match value.as_str() {
                    Some("report") => TargetStopped::Report,
                    Some("reenable") => TargetStopped::Reenable,
                    _ => bail!(
                        "policy.target_stopped: must be \"report\" or \"reenable\", not {value:?}"
                    ),
                };
                continue;
            }
            let Some(cause) = Cause::parse(&key) else {
                let known: Vec<&str> = Cause::ALL.iter().map(|c| c.as_str()).collect();
                bail!(
                    "policy.{key}: unknown cause (known: {}; and target_stopped)",
                    known.join(", ")
                );
            };
            let action = match value.as_str() {
                Some("patch") => PolicyAction::Patch,
                Some("report") => PolicyAction::Report,
                _ => bail!("policy.{key}: must be \"patch\" or \"report\", not {value:?}"),
            };
            // The patch only ever helps a missing poll controller: refuse anything else.
            if action == PolicyAction::Patch && cause != Cause::MissingPollController {
                bail!(
                    "policy.{key}: \"patch\" cannot fix {key}; only missing_poll_controller can be patched"
                );
            }
            if cause == Cause::MissingPollController {
                c.missing_poll_controller = action;
            }
        }
        if let Some(r) = raw.retry {
            c.retry_method = match r.method.as_deref() {
                None | Some("auto") => RetryMethod::Auto,
                Some("configfs") => RetryMethod::Configfs,
                Some("command") => RetryMethod::Command,
                Some(other) => bail!("retry.method: `{other}` is not auto, configfs or command"),
            };
            if let Some(cmd) = r.command {
                if cmd.is_empty() || cmd[0].is_empty() {
                    bail!(
                        "retry.command: needs a program and its arguments, e.g. [\"/sbin/modprobe\", \"netconsole\", ...]"
                    );
                }
                // It runs as root with CAP_SYS_MODULE: never a name looked up in PATH.
                if !std::path::Path::new(&cmd[0]).is_absolute() {
                    bail!(
                        "retry.command: the program `{}` is not an absolute path; name it in full (e.g. \"/sbin/modprobe\")",
                        cmd[0]
                    );
                }
                c.retry_command = cmd;
            }
            if let Some(t) = r.timeout {
                c.retry_timeout = duration("retry.timeout", &t)?;
            }
        }
        if c.retry_method == RetryMethod::Command && c.retry_command.is_empty() {
            bail!("retry.command: required when retry.method = \"command\"");
        }
        if c.missing_poll_controller == PolicyAction::Patch && c.allowed_drivers.is_empty() {
            bail!(
                "allowed_drivers: policy.missing_poll_controller = \"patch\" needs the drivers it may patch"
            );
        }
        Ok(c)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_configuration() {
        let c = AgentConfig::parse(
            r#"
journal = "/tmp/j.jsonl"
allowed_drivers = ["ena", "virtio_net"]
max_attempts = 4
backoff = "500ms"
[policy]
missing_poll_controller = "patch"
no_ip_address = "report"
[retry]
method = "command"
command = ["/sbin/modprobe", "netconsole", "netconsole=@/eth0,6666@10.0.0.2/"]
"#,
        )
        .unwrap();
        assert_eq!(c.missing_poll_controller, PolicyAction::Patch);
        assert_eq!(c.max_attempts, 4);
        assert_eq!(c.backoff, Duration::from_millis(500));
        assert_eq!(c.retry_method, RetryMethod::Command);
        assert_eq!(c.retry_command[0], "/sbin/modprobe");
    }

    #[test]
    fn the_flags_have_keys() {
        let c = AgentConfig::parse(
            "metrics_addr = \"127.0.0.1:9632\"\nlog_format = \"json\"\npin_dir = \"/sys/fs/bpf/x\"\npersist = true\nring_size = 4096\n",
        )
        .unwrap();
        assert_eq!(c.metrics_addr, Some("127.0.0.1:9632".parse().unwrap()));
        assert_eq!(c.log_format, Some(LogFormat::Json));
        assert_eq!(
            c.pin_dir.as_deref(),
            Some(std::path::Path::new("/sys/fs/bpf/x"))
        );
        assert!(c.persist);
        assert_eq!(c.ring_size, Some(4096));
        for (bad, key) in [
            ("metrics_addr = \"9632\"", "metrics_addr"),
            ("log_format = \"xml\"", "log_format"),
            ("ring_size = 0", "ring_size"),
            ("ring_size = 2000000", "ring_size"),
            ("persist = \"yes\"", "persist"),
        ] {
            let e = AgentConfig::parse(bad).unwrap_err().to_string();
            assert!(e.contains(key), "{bad}: {e}");
        }
    }

    #[test]
    fn defaults_never_patch() {
        let c = AgentConfig::parse("").unwrap();
        assert_eq!(c.missing_poll_controller, PolicyAction::Report);
        assert_eq!(c.retry_method, RetryMethod::Auto);
        assert_eq!(c.retry_timeout, Duration::from_secs(60));
        let c = AgentConfig::parse("[retry]\ntimeout = \"5s\"").unwrap();
        assert_eq!(c.retry_timeout, Duration::from_secs(5));
    }

    #[test]
    fn a_stopped_target_is_reported_unless_configured() {
        let c = AgentConfig::parse("").unwrap();
        assert_eq!(
            (c.target_stopped, c.device_wait),
            (TargetStopped::Report, Duration::from_secs(60))
        );
        let c =
            AgentConfig::parse("device_wait = \"5m\"\n[policy]\ntarget_stopped = \"reenable\"\n")
                .unwrap();
        assert_eq!(
            (c.target_stopped, c.device_wait),
            (TargetStopped::Reenable, Duration::from_secs(300))
        );
        // Beside a cause's policy, and without needing allowed_drivers (nothing is patched).
        let c = AgentConfig::parse(
            "[policy]\ntarget_stopped = \"report\"\nmissing_poll_controller = \"report\"",
        )
        .unwrap();
        assert_eq!(c.target_stopped, TargetStopped::Report);
    }

    #[test]
    fn a_wait_shorter_than_a_millisecond_is_refused() {
        // A retry.timeout that rounds to nothing kills every command at once.
        for (text, key) in [
            ("[retry]\ntimeout = \"0.0000000001s\"", "retry.timeout"),
            ("[retry]\ntimeout = \"0.5ms\"", "retry.timeout"),
            ("backoff = \"0.9ms\"", "backoff"),
            ("verify_timeout = \"0.0001s\"", "verify_timeout"),
            ("device_wait = \"0.1ms\"", "device_wait"),
        ] {
            let e = AgentConfig::parse(text).unwrap_err().to_string();
            assert!(
                e.starts_with(key) && e.contains("shorter than"),
                "{text:?}: {e}"
            );
        }
        let c = AgentConfig::parse("[retry]\ntimeout = \"1ms\"").unwrap();
        assert_eq!(c.retry_timeout, Duration::from_millis(1));
    }

    #[test]
    fn a_retry_program_must_be_an_absolute_path() {
        // Run as root with CAP_SYS_MODULE: never looked up in PATH.
        for prog in ["modprobe", "./modprobe", "sbin/modprobe"] {
            let text = format!("[retry]\ncommand = [\"{prog}\", \"netconsole\"]");
            let e = AgentConfig::parse(&text).unwrap_err().to_string();
            assert!(
                e.starts_with("retry.command:") && e.contains("absolute path") && !e.contains('\n'),
                "{prog}: {e}"
            );
        }
        let c =
            AgentConfig::parse("[retry]\ncommand = [\"/sbin/modprobe\", \"netconsole\"]").unwrap();
        assert_eq!(c.retry_command, ["/sbin/modprobe", "netconsole"]);
    }

    #[test]
    fn errors_name_the_key() {
        let cases = [
            ("max_attempts = 0", "max_attempts"),
            ("backoff = \"soon\"", "backoff"),
            ("backoff = \"100000000000000000000s\"", "backoff"),
            ("verify_timeout = \"2h\"", "verify_timeout"),
            (
                "[policy]\nnetpoll_disabled = \"patch\"",
                "policy.netpoll_disabled",
            ),
            ("[policy]\nbogus_cause = \"report\"", "policy.bogus_cause"),
            (
                "[policy]\nmissing_poll_controller = \"fix\"",
                "policy.missing_poll_controller",
            ),
            (
                "[policy]\nmissing_poll_controller = \"patch\"",
                "allowed_drivers",
            ),
            ("[retry]\nmethod = \"command\"", "retry.command"),
            ("[retry]\nmethod = \"carrier-pigeon\"", "retry.method"),
            ("[retry]\ntimeout = \"2h\"", "retry.timeout"),
            ("[retry]\ntimeout = \"0s\"", "retry.timeout"),
            ("frobnicate = 1", "frobnicate"),
            (
                "[policy]\ntarget_stopped = \"patch\"",
                "policy.target_stopped",
            ),
            ("[policy]\ntarget_stopped = true", "policy.target_stopped"),
            ("device_wait = \"2h\"", "device_wait"),
            ("device_wait = \"later\"", "device_wait"),
            ("allowed_drivers = \"ena\"", "allowed_drivers"),
        ];
        for (text, key) in cases {
            let e = AgentConfig::parse(text).unwrap_err().to_string();
            assert!(e.contains(key), "{text:?}: {e}");
        }
    }
}
