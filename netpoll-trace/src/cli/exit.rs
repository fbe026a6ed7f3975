//! Exit codes of DESIGN.md section 3, in one place.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    Ok,
    /// A runtime error (the message says which).
    Runtime,
    /// Bad command line (clap's own code).
    #[allow(dead_code)]
    Usage,
    /// `watch` saw a netpoll set-up fail.
    NetpollFailure,
    /// This kernel cannot be traced.
    Unsupported,
    /// `watch -- COMMAND`: COMMAND's own status.
    Command(u8),
}

impl Exit {
    pub fn code(self) -> u8 {
        match self {
            Self::Ok => 0,
            Self::Runtime => 1,
            Self::Usage => 2,
            Self::NetpollFailure => 3,
            Self::Unsupported => 4,
            Self::Command(c) => c,
        }
    }
}
