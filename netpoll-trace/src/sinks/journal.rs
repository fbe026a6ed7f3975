//! The agent's journal: one `remediation` object per decision and action, as JSON
//! lines (DESIGN.md section 4), appended to a file and echoed on stdout.

use std::{fs::File, io::Write as _, path::Path};

use anyhow::{Context as _, Result};
use serde::Serialize;

/// Which step of a remediation an entry records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Step {
    Start,
    Decide,
    Patch,
    Retry,
    Verify,
    Stop,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Ok,
    Failed,
    /// Decided not to act (report only), with the reason in `detail`.
    Reported,
    /// --dry-run: what would have been done.
    DryRun,
    /// An older failure already fixed by a later successful set-up.
    Superseded,
}

#[derive(Debug, Serialize)]
pub struct Entry<'a> {
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub ts_ns: u64,
    pub dev: Option<&'a str>,
    pub action: Step,
    pub result: Outcome,
    pub detail: String,
    pub cause: Option<&'static str>,
    pub attempt: Option<u32>,
}

pub struct Journal {
    file: Option<File>,
}

impl Journal {
    pub fn open(path: Option<&Path>) -> Result<Self> {
        let file = match path {
            Some(p) => {
                if let Some(dir) = p.parent().filter(|d| !d.as_os_str().is_empty()) {
                    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
                }
                Some(
                    std::fs::OpenOptions::new()
                        .create(true)
                        .append(true)
                        .open(p)
                        .with_context(|| format!("opening journal {}", p.display()))?,
                )
            }
            None => None,
        };
        Ok(Self { file })
    }

    pub fn write(&mut self, e: &Entry) {
        let line = serde_json::to_string(e).unwrap_or_default();
        println!("{line}");
        if let Some(f) = self.file.as_mut()
            && let Err(err) = writeln!(f, "{line}").and_then(|()| f.flush())
        {
            crate::status!(Warn, "writing the journal failed: {err}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_meet_the_remediation_contract() {
        let e = Entry {
            kind: "remediation",
            ts_ns: 5,
            dev: Some("eth0"),
            action: Step::Patch,
            result: Outcome::DryRun,
            detail: "would patch".into(),
            cause: Some("missing_poll_controller"),
            attempt: None,
        };
        let line = serde_json::to_string(&e).unwrap();
        assert_eq!(crate::schema::check_line(&line).unwrap(), "remediation");
        assert!(line.contains(r#""action":"patch","result":"dry_run""#), "{line}");
    }
}
