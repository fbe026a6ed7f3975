//! A long step's progress: on a terminal, one live line with the elapsed time
//! (`lab 6.12 agent … 41 s`), rewritten each second and cleared at the end; elsewhere (CI
//! logs) no carriage returns: a start line, and the end line the caller prints with its time.

use std::io::{IsTerminal as _, Write as _};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

pub struct Step {
    label: String,
    started: Instant,
    ticker: Option<(Arc<AtomicBool>, JoinHandle<()>)>,
}

/// Whether a live line can be drawn: stdout is a terminal.
pub fn live() -> bool {
    std::io::stdout().is_terminal()
}

impl Step {
    /// Starts a step: the live line on a terminal, else `LABEL …` on a line of its own.
    /// Print nothing else to the terminal until `finish` (the live line would garble it).
    pub fn start(label: impl Into<String>) -> Step {
        let label = label.into();
        let started = Instant::now();
        if !live() {
            println!("{}", start_line(&label));
            return Step {
                label,
                started,
                ticker: None,
            };
        }
        let stop = Arc::new(AtomicBool::new(false));
        let (flag, text) = (stop.clone(), label.clone());
        let handle = std::thread::spawn(move || {
            while !flag.load(Ordering::Relaxed) {
                let mut out = std::io::stdout().lock();
                let _ = write!(out, "\r\x1b[K{}", live_line(&text, started.elapsed()));
                let _ = out.flush();
                drop(out);
                // Short sleeps: `finish` must not wait a second for the thread.
                for _ in 0..10 {
                    if flag.load(Ordering::Relaxed) {
                        break;
                    }
                    std::thread::sleep(Duration::from_millis(100));
                }
            }
        });
        Step {
            label,
            started,
            ticker: Some((stop, handle)),
        }
    }

    /// Ends the step: clears the live line; returns the time it took. The caller prints the
    /// end line (with that time).
    pub fn finish(mut self) -> Duration {
        self.stop();
        self.started.elapsed()
    }

    /// Ends the step with `LABEL OUTCOME (N s)`.
    pub fn done(self, outcome: &str) -> Duration {
        let label = self.label.clone();
        let took = self.finish();
        println!("{}", end_line(&label, outcome, took));
        took
    }

    fn stop(&mut self) {
        if let Some((flag, handle)) = self.ticker.take() {
            flag.store(true, Ordering::Relaxed);
            let _ = handle.join();
            print!("\r\x1b[K");
            let _ = std::io::stdout().flush();
        }
    }
}

impl Drop for Step {
    /// A step abandoned by an error: the live line goes, so the error prints on a clean line.
    fn drop(&mut self) {
        self.stop();
    }
}

pub fn start_line(label: &str) -> String {
    format!("{label} …")
}

pub fn live_line(label: &str, elapsed: Duration) -> String {
    format!("{label} … {} s", elapsed.as_secs())
}

pub fn end_line(label: &str, outcome: &str, took: Duration) -> String {
    format!("{label} {outcome} ({:.0} s)", took.as_secs_f64())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_carry_the_label_and_whole_seconds() {
        assert_eq!(
            live_line("lab 6.12 agent", Duration::from_millis(41_700)),
            "lab 6.12 agent … 41 s"
        );
        assert_eq!(start_line("bench 6.12"), "bench 6.12 …");
        assert_eq!(
            end_line("setup: bpf-linker", "built", Duration::from_secs(312)),
            "setup: bpf-linker built (312 s)"
        );
        // No carriage return in what a log gets.
        assert!(
            !start_line("x").contains('\r')
                && !end_line("x", "done", Duration::ZERO).contains('\r')
        );
    }
}
