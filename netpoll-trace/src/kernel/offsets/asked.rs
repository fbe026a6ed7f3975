//! The struct and constant names `layout::resolve` asks, learned by asking it: so that
//! the kernel's BTF is walked once for all of them (`Btf::find_structs`,
//! `Btf::find_constants`) instead of once per question.

use std::cell::RefCell;

use super::layout::{self, Layout};

/// A `Layout` that answers nothing real and writes down the struct and constant names
/// asked: what `layout::resolve` will ask a real source. Run twice, once finding
/// everything and once nothing, so that a question asked only after another was (or was
/// not) answered is among them; one missed is still answered, by its own lookup.
#[derive(Default)]
pub struct Asked {
    found: bool,
    structs: RefCell<Vec<String>>,
    constants: RefCell<Vec<String>>,
}

impl Asked {
    /// The names `layout::resolve` asks, both ways.
    pub fn by_resolve() -> Self {
        let none = Self::default();
        layout::resolve(&none);
        let all = Self {
            found: true,
            ..none
        };
        layout::resolve(&all);
        all
    }

    pub fn structs(&self) -> Vec<String> {
        self.structs.borrow().clone()
    }

    pub fn constants(&self) -> Vec<String> {
        self.constants.borrow().clone()
    }
}

fn note(list: &RefCell<Vec<String>>, name: &str) {
    let mut l = list.borrow_mut();
    if !l.iter().any(|n| n == name) {
        l.push(name.to_string());
    }
}

impl Layout for Asked {
    fn member(&self, struct_name: &str, _: &str) -> Option<(u32, u32)> {
        note(&self.structs, struct_name);
        self.found.then_some((0, 0))
    }

    fn constant(&self, name: &str) -> Option<u64> {
        note(&self.constants, name);
        self.found.then_some(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `Asked` lists every struct and constant a real `resolve` asks, whichever answers
    /// it gets: every question a `Table` of any answers puts is among them.
    #[test]
    fn asked_holds_every_question_resolve_puts() {
        struct Log<'a>(&'a dyn Layout, RefCell<Vec<String>>, RefCell<Vec<String>>);
        impl Layout for Log<'_> {
            fn member(&self, s: &str, m: &str) -> Option<(u32, u32)> {
                self.1.borrow_mut().push(s.to_string());
                self.0.member(s, m)
            }
            fn constant(&self, n: &str) -> Option<u64> {
                self.2.borrow_mut().push(n.to_string());
                self.0.constant(n)
            }
        }
        struct Every(u32);
        impl Layout for Every {
            fn member(&self, s: &str, _: &str) -> Option<(u32, u32)> {
                // Found for some structs only: the branches between both extremes.
                (s.len() as u32).is_multiple_of(self.0).then_some((8, 0))
            }
            fn constant(&self, n: &str) -> Option<u64> {
                (n.len() as u32).is_multiple_of(self.0).then_some(3)
            }
        }
        let asked = Asked::by_resolve();
        assert!(asked.structs().iter().any(|s| s == "net_device"));
        assert!(asked.constants().iter().any(|c| c == "IFF_DISABLE_NETPOLL"));
        for modulus in 1..5 {
            let inner = Every(modulus);
            let log = Log(&inner, RefCell::default(), RefCell::default());
            layout::resolve(&log);
            for s in log.1.borrow().iter() {
                assert!(
                    asked.structs().contains(s),
                    "{s} not in {:?}",
                    asked.structs()
                );
            }
            for c in log.2.borrow().iter() {
                assert!(
                    asked.constants().contains(c),
                    "{c} not in {:?}",
                    asked.constants()
                );
            }
        }
    }
}
