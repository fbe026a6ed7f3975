//! Exit codes of docs/contract.md section 3, in one place.

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

/// `watch -- COMMAND` could not start COMMAND: exits as `env` and `timeout` do, 127
/// when it is not found, 126 when it cannot be executed.
#[derive(Debug)]
pub struct CommandNotStarted {
    pub command: String,
    pub code: u8,
    pub error: std::io::Error,
}

impl CommandNotStarted {
    pub fn new(command: &str, error: std::io::Error) -> Self {
        let code = if error.kind() == std::io::ErrorKind::NotFound {
            127
        } else {
            126
        };
        Self {
            command: command.to_string(),
            code,
            error,
        }
    }
}

impl std::fmt::Display for CommandNotStarted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let what = if self.code == 127 {
            "not found"
        } else {
            "cannot be executed"
        };
        write!(f, "COMMAND `{}` {what}: {}", self.command, self.error)
    }
}

impl std::error::Error for CommandNotStarted {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_command_that_cannot_start_exits_as_env_does() {
        let missing =
            CommandNotStarted::new("nosuch", std::io::Error::from_raw_os_error(libc::ENOENT));
        assert_eq!(missing.code, 127);
        assert!(
            missing
                .to_string()
                .starts_with("COMMAND `nosuch` not found")
        );
        for errno in [libc::EACCES, libc::ENOEXEC, libc::EISDIR] {
            assert_eq!(
                CommandNotStarted::new("x", std::io::Error::from_raw_os_error(errno)).code,
                126,
                "{errno}"
            );
        }
    }
}
