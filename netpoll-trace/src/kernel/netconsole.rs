//! netconsole's dynamic targets as configfs shows them (/sys/kernel/config/netconsole):
//! read for `status`, found and enabled again for the agent's retry. Boot and module-parameter targets are not there; the
//! flight recorder's lifecycle records name those.

use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result};

/// Where netconsole's dynamic targets live.
pub const CONFIGFS: &str = "/sys/kernel/config/netconsole";

/// One configfs target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigfsTarget {
    /// The item's directory name.
    pub name: String,
    pub dev: Option<String>,
    pub remote_ip: Option<String>,
    pub remote_port: Option<u16>,
    pub enabled: Option<bool>,
    pub extended: Option<bool>,
    /// The kernel's own count of sends that failed (configfs `transmit_errors`, 6.x).
    pub transmit_errors: Option<u64>,
}

impl ConfigfsTarget {
    /// Where it sends, `<ip>:<port>` (the form the programs' records use).
    pub fn remote(&self) -> Option<String> {
        self.remote_ip
            .as_ref()
            .zip(self.remote_port)
            .map(|(ip, port)| format!("{ip}:{port}"))
    }
}

/// Every target under `root` (`CONFIGFS`), sorted by name; none when it is not mounted.
pub fn targets(root: &Path) -> Vec<ConfigfsTarget> {
    let Ok(dir) = std::fs::read_dir(root) else {
        return Vec::new();
    };
    let read = |p: &Path, f: &str| -> Option<String> {
        // A few bytes each; nothing to bound beyond what configfs serves.
        let v = std::fs::read_to_string(p.join(f)).ok()?;
        let v = v.trim();
        (!v.is_empty()).then(|| v.to_string())
    };
    let flag = |v: Option<String>| v.map(|v| v == "1");
    let mut out: Vec<ConfigfsTarget> = dir
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .map(|e| {
            let p = e.path();
            ConfigfsTarget {
                name: e.file_name().to_string_lossy().into_owned(),
                dev: read(&p, "dev_name"),
                remote_ip: read(&p, "remote_ip"),
                remote_port: read(&p, "remote_port").and_then(|v| v.parse().ok()),
                enabled: flag(read(&p, "enabled")),
                extended: flag(read(&p, "extended")),
                transmit_errors: read(&p, "transmit_errors").and_then(|v| v.parse().ok()),
            }
        })
        .collect();
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out
}

/// Which configfs target a retry means (`find_target`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lookup {
    Found(PathBuf),
    /// No target on that device (sending to that remote, when given).
    Missing,
    /// Where the failing target sends is not known and the device carries several
    /// targets (their names): picking one might enable a target its owner disabled, or
    /// toggle a working one off and on.
    Ambiguous(Vec<String>),
}

/// The target under `root` (`CONFIGFS`) whose dev_name is `dev` and, when given, whose
/// remote_ip:remote_port is `remote` (a device can carry several targets). Without
/// `remote`, only a device's one and only target is taken.
pub fn find_target(root: &Path, dev: &str, remote: Option<&str>) -> Lookup {
    let on_dev: Vec<ConfigfsTarget> = targets(root)
        .into_iter()
        .filter(|t| t.dev.as_deref() == Some(dev))
        .collect();
    let found = match remote {
        Some(r) => on_dev.iter().find(|t| t.remote().as_deref() == Some(r)),
        None if on_dev.len() > 1 => {
            return Lookup::Ambiguous(on_dev.into_iter().map(|t| t.name).collect());
        }
        None => on_dev.first(),
    };
    found.map_or(Lookup::Missing, |t| Lookup::Found(root.join(&t.name)))
}

/// Enables the target at `t` (toggled off first when it is already enabled, so that
/// netpoll is set up again); says what it wrote.
pub fn enable(t: &Path) -> Result<String> {
    let enabled = t.join("enabled");
    let now = std::fs::read_to_string(&enabled)
        .with_context(|| format!("reading {}", enabled.display()))?;
    if now.trim() == "1" {
        std::fs::write(&enabled, "0")
            .with_context(|| format!("writing 0 to {}", enabled.display()))?;
    }
    std::fs::write(&enabled, "1").with_context(|| format!("writing 1 to {}", enabled.display()))?;
    Ok(format!("wrote 1 to {}", enabled.display()))
}

/// Whether this kernel's netconsole is an nbcon console (7.3+: `netconsole_write_basic`
/// instead of `write_msg`), by the module's BTF; false when that cannot be read.
pub fn is_nbcon() -> bool {
    super::module_btf::load("netconsole").is_ok_and(|b| b.has_function("netconsole_write_basic"))
}

/// Whether this kernel's netconsole resumes a target its device stopped once the
/// device is back (7.3+: `process_resume_target`, "network logging resumed"), by the
/// module's BTF (loaded, or the module file); false when that cannot be read.
pub fn resumes_targets() -> bool {
    match super::module_btf::load("netconsole") {
        Ok(btf) => btf.has_function("process_resume_target"),
        Err(e) => {
            log::debug!("netconsole's BTF: {e:#}");
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_each_items_attributes_and_tolerates_missing_ones() {
        let root = std::env::temp_dir().join(format!("npt-configfs-read-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        let t = root.join("t1");
        std::fs::create_dir_all(&t).unwrap();
        for (f, v) in [
            ("dev_name", "eth1\n"),
            ("remote_ip", "10.0.2.2\n"),
            ("remote_port", "6666\n"),
            ("enabled", "1\n"),
            ("transmit_errors", "3\n"),
        ] {
            std::fs::write(t.join(f), v).unwrap();
        }
        std::fs::create_dir_all(root.join("t0")).unwrap();
        let got = targets(&root);
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].name, "t0");
        assert_eq!(got[0].dev, None);
        assert_eq!(
            got[1],
            ConfigfsTarget {
                name: "t1".into(),
                dev: Some("eth1".into()),
                remote_ip: Some("10.0.2.2".into()),
                remote_port: Some(6666),
                enabled: Some(true),
                extended: None,
                transmit_errors: Some(3),
            }
        );
        assert_eq!(got[1].remote().as_deref(), Some("10.0.2.2:6666"));
        assert_eq!(got[0].remote(), None);
        assert!(targets(&root.join("absent")).is_empty());
        std::fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn the_target_is_found_by_device_and_remote_and_enabled_by_a_toggle() {
        let root = std::env::temp_dir().join(format!("npt-configfs-{}", std::process::id()));
        for (item, dev, ip, port) in [
            ("a", "eth0", "10.0.0.9", "514"),
            ("b", "eth1.100", "10.0.0.9", "514"),
            ("c", "eth1.100", "10.0.2.2", "6666"),
        ] {
            let d = root.join(item);
            std::fs::create_dir_all(&d).unwrap();
            for (f, v) in [("dev_name", dev), ("remote_ip", ip), ("remote_port", port)] {
                std::fs::write(d.join(f), format!("{v}\n")).unwrap();
            }
        }
        let find = |dev, remote| find_target(&root, dev, remote);
        assert_eq!(
            find("eth1.100", Some("10.0.2.2:6666")),
            Lookup::Found(root.join("c"))
        );
        assert_eq!(
            find("eth1.100", Some("10.0.0.9:514")),
            Lookup::Found(root.join("b"))
        );
        // Two targets on the device and no remote to tell them apart: neither is touched
        // (one might be a target its owner disabled).
        assert_eq!(
            find("eth1.100", None),
            Lookup::Ambiguous(vec!["b".into(), "c".into()])
        );
        assert_eq!(find("eth0", None), Lookup::Found(root.join("a")));
        assert_eq!(find("eth1.100", Some("10.0.0.1:514")), Lookup::Missing);
        assert_eq!(find("eth2", None), Lookup::Missing);
        let enabled = root.join("c").join("enabled");
        assert!(enable(&root.join("c")).is_err(), "no enabled attribute");
        std::fs::write(&enabled, "1\n").unwrap();
        let how = enable(&root.join("c")).unwrap();
        assert_eq!(how, format!("wrote 1 to {}", enabled.display()));
        assert_eq!(std::fs::read_to_string(&enabled).unwrap(), "1");
        let _ = std::fs::remove_dir_all(&root);
    }
}
