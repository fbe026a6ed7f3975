//! netconsole's dynamic targets as configfs shows them (/sys/kernel/config/netconsole):
//! read only, for `status`. Boot and module-parameter targets are not there; the
//! flight recorder's lifecycle records name those.

use std::path::Path;

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
            }
        })
        .collect();
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out
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
            }
        );
        assert_eq!(got[1].remote().as_deref(), Some("10.0.2.2:6666"));
        assert_eq!(got[0].remote(), None);
        assert!(targets(&root.join("absent")).is_empty());
        std::fs::remove_dir_all(&root).unwrap();
    }
}
