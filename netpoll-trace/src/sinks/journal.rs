//! The agent's journal: one `remediation` object per decision and action, as JSON
//! lines (DESIGN.md section 4), appended to a private file (0600, see `file`) and echoed
//! on stdout.

use std::{fs::File, io::Write as _, path::Path};

use anyhow::{Context as _, Result};

use super::{
    file::{Mode, open_private},
    json::json_line,
};
use crate::model::output::{Output, Sink};

pub struct Journal {
    file: Option<File>,
}

impl Journal {
    pub fn open(path: Option<&Path>) -> Result<Self> {
        let file = match path {
            Some(p) => {
                if let Some(dir) = p.parent().filter(|d| !d.as_os_str().is_empty()) {
                    std::fs::create_dir_all(dir)
                        .with_context(|| format!("creating {}", dir.display()))?;
                }
                Some(open_private(p, Mode::Append, "journal")?)
            }
            None => None,
        };
        Ok(Self { file })
    }
}

impl Sink for Journal {
    fn emit(&mut self, out: &Output) {
        let Output::Remediation(e) = out else { return };
        let line = json_line(e);
        println!("{line}");
        if let Some(f) = self.file.as_mut()
            && let Err(err) = writeln!(f, "{line}").and_then(|()| f.flush())
        {
            crate::status!(Warn, "writing the journal failed: {err}");
        }
    }
}
