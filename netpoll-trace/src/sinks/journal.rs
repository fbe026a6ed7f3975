//! The agent's journal: one `remediation` object per decision and action, as JSON
//! lines (docs/contract.md section 4), appended to a private file (0600, see `file`) and echoed
//! on stdout.
//!
//! Each line reaches the file in one write(2), so a crash or a full disk leaves at most
//! the last line torn, never two lines interleaved; a torn tail found at start (or left by
//! a failed write) is cut off before the next line, so it cannot glue to it. A closed
//! stdout stops the echo, not the agent.

use std::{
    fs::File,
    io::{Read as _, Seek as _, SeekFrom, Write},
    path::Path,
};

use anyhow::{Context as _, Result};

use super::{
    file::{Mode, open_private_with_dirs},
    json::json_line,
};
use crate::model::output::{Output, Sink};

pub struct Journal {
    file: Option<File>,
    /// Where each line is echoed (stdout); None once it is closed.
    echo: Option<Box<dyn Write + Send>>,
}

impl Journal {
    pub fn open(path: Option<&Path>) -> Result<Self> {
        let file = match path {
            Some(p) => {
                let mut f = open_private_with_dirs(p, Mode::Append, "journal")?;
                let cut = cut_torn_tail(&mut f)
                    .with_context(|| format!("checking the end of journal {}", p.display()))?;
                if cut > 0 {
                    crate::status!(
                        Warn,
                        "journal {}: its last line was torn (the agent stopped mid-write): removed its {cut} byte(s)",
                        p.display()
                    );
                }
                Some(f)
            }
            None => None,
        };
        Ok(Self {
            file,
            echo: Some(Box::new(std::io::stdout())),
        })
    }

    #[cfg(test)]
    fn with(file: File, echo: Box<dyn Write + Send>) -> Self {
        Self {
            file: Some(file),
            echo: Some(echo),
        }
    }
}

/// Removes a last line without its newline from the end of `f` (opened for append); how
/// many bytes it removed.
fn cut_torn_tail(f: &mut File) -> std::io::Result<u64> {
    let len = f.metadata()?.len();
    if len == 0 {
        return Ok(0);
    }
    // A journal line is far below 64 KiB; a longer torn tail is cut at that window's
    // last newline, or whole.
    let window = len.min(64 * 1024);
    let mut tail = vec![0u8; window as usize];
    // An append-mode descriptor reads from where it is told to.
    let mut r = f.try_clone()?;
    r.seek(SeekFrom::Start(len - window))?;
    r.read_exact(&mut tail)?;
    let keep = match tail.iter().rposition(|b| *b == b'\n') {
        Some(i) if i + 1 == tail.len() => return Ok(0),
        Some(i) => len - window + i as u64 + 1,
        None if window == len => 0,
        None => len - window,
    };
    f.set_len(keep)?;
    Ok(len - keep)
}

impl Sink for Journal {
    fn emit(&mut self, out: &Output) {
        let Output::Remediation(e) = out else { return };
        let mut line = json_line(e);
        line.push('\n');
        if let Some(w) = self.echo.as_mut()
            && let Err(err) = w.write_all(line.as_bytes()).and_then(|()| w.flush())
        {
            crate::status!(
                Warn,
                "standard output closed ({err}): the journal is no longer echoed there"
            );
            self.echo = None;
        }
        if let Some(f) = self.file.as_mut()
            && let Err(err) = f.write_all(line.as_bytes())
        {
            crate::status!(Warn, "writing the journal failed: {err}");
            // What did get written is a torn line: cut it so the next one starts clean.
            let _ = cut_torn_tail(f);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::remediation::{Action, Outcome, Remediation};
    use crate::sinks::file::open_private;

    fn entry(detail: &str) -> Output {
        Output::Remediation(Remediation {
            kind: "remediation",
            ts_ns: 1,
            dev: None,
            action: Action::Start,
            result: Outcome::Ok,
            detail: detail.into(),
            cause: None,
            attempt: None,
            proved: None,
            not_proved: None,
            ready: None,
        })
    }

    fn temp(name: &str) -> std::path::PathBuf {
        let d = std::env::temp_dir().join(format!("npt-journal-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d.join("journal.jsonl")
    }

    /// Removes what `temp` made.
    fn remove_temp(p: &std::path::Path) {
        std::fs::remove_dir_all(p.parent().expect("temp's directory")).unwrap();
    }

    /// Counts the writes that reach it.
    struct Writes(std::sync::Arc<std::sync::Mutex<Vec<usize>>>);
    impl Write for Writes {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().push(b.len());
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    struct Closed;
    impl Write for Closed {
        fn write(&mut self, _: &[u8]) -> std::io::Result<usize> {
            Err(std::io::Error::from(std::io::ErrorKind::BrokenPipe))
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn each_line_is_one_write_and_a_closed_stdout_stops_only_the_echo() {
        let p = temp("one");
        let writes = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let mut j = Journal::with(
            open_private(&p, Mode::Append, "journal").unwrap(),
            Box::new(Writes(writes.clone())),
        );
        j.emit(&entry("a"));
        j.emit(&entry("b"));
        let w = writes.lock().unwrap().clone();
        assert_eq!(w.len(), 2, "one write per line: {w:?}");
        let mut j = Journal::with(
            open_private(&p, Mode::Append, "journal").unwrap(),
            Box::new(Closed),
        );
        j.emit(&entry("c"));
        assert!(j.echo.is_none());
        j.emit(&entry("d"));
        let text = std::fs::read_to_string(&p).unwrap();
        assert_eq!(text.lines().count(), 4, "{text}");
        assert!(text.ends_with("\"detail\":\"d\",\"cause\":null,\"attempt\":null,\"proved\":null,\"not_proved\":null}\n"), "{text}");
        remove_temp(&p);
    }

    #[test]
    fn a_torn_tail_is_cut_before_the_next_line() {
        let p = temp("torn");
        std::fs::write(&p, "{\"type\":\"remediation\"}\n{\"type\":\"remedi").unwrap();
        let mut j = Journal::open(Some(&p)).unwrap();
        j.echo = None;
        j.emit(&entry("after"));
        let text = std::fs::read_to_string(&p).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2, "{text}");
        assert_eq!(lines[0], "{\"type\":\"remediation\"}");
        assert!(
            lines[1].starts_with("{\"type\":\"remediation\",\"ts_ns\":1"),
            "{text}"
        );
        // A file of one torn line only is emptied; a clean one is left alone.
        std::fs::write(&p, "{\"ty").unwrap();
        assert_eq!(
            cut_torn_tail(&mut open_private(&p, Mode::Append, "journal").unwrap()).unwrap(),
            4
        );
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "");
        std::fs::write(&p, "x\n").unwrap();
        assert_eq!(
            cut_torn_tail(&mut open_private(&p, Mode::Append, "journal").unwrap()).unwrap(),
            0
        );
        remove_temp(&p);
    }
}
