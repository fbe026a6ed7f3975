//! Answers kept by name: what `names.rs`'s walks found, so that no name is looked for twice.

/// Answers by name, each name looked for once (a walk finds many names' answers at once).
#[derive(Default)]
pub(super) struct Memo<T>(std::sync::Mutex<Vec<(Box<str>, Option<T>)>>);

impl<T: Copy> Memo<T> {
    /// The answer kept for `name` (None also when it was never looked for).
    pub(super) fn get(&self, name: &str) -> Option<T> {
        let known = self.0.lock().unwrap_or_else(|e| e.into_inner());
        known
            .iter()
            .find(|(n, _)| &**n == name)
            .and_then(|&(_, v)| v)
    }

    /// Looks for the names of `names` not looked for yet, with `find` (one slot for each of
    /// them, in order, to fill), and keeps what it found and what it did not.
    pub(super) fn fill(&self, names: &[&str], find: impl FnOnce(&[&str], &mut [Option<T>])) {
        let mut known = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let wanted = unknown(&known, names);
        if wanted.is_empty() {
            return;
        }
        let mut found = vec![None; wanted.len()];
        find(&wanted, &mut found);
        known.extend(wanted.iter().map(|w| Box::from(*w)).zip(found));
    }

    /// How many names it has answers for (found or not).
    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).len()
    }
}

/// The names of `names` that `known` has no answer for, once each.
fn unknown<'n, T>(known: &[(Box<str>, T)], names: &[&'n str]) -> Vec<&'n str> {
    let mut out: Vec<&str> = Vec::new();
    for n in names {
        if !known.iter().any(|(k, _)| &**k == *n) && !out.contains(n) {
            out.push(n);
        }
    }
    out
}
