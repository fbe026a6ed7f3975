//! Kernel error numbers as netpoll returns them, with their symbolic names.
//! ENOTSUPP (524) is kernel-internal: userspace's strerror calls it "Unknown error 524".

use std::fmt;

macro_rules! errnos {
    ($($variant:ident = $num:literal, $name:literal, $text:literal;)*) => {
        /// A positive kernel errno; `Other` keeps numbers we have no name for.
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub enum Errno {
            $($variant,)*
            Other(i32),
        }

        impl Errno {
            pub fn from_raw(n: i32) -> Self {
                match n {
                    $($num => Self::$variant,)*
                    other => Self::Other(other),
                }
            }

            pub fn raw(self) -> i32 {
                match self {
                    $(Self::$variant => $num,)*
                    Self::Other(n) => n,
                }
            }

            /// The stable symbolic name (`ENOTSUPP`), or None when unknown.
            pub fn name(self) -> Option<&'static str> {
                match self {
                    $(Self::$variant => Some($name),)*
                    Self::Other(_) => None,
                }
            }

            /// What the kernel means by it, in words.
            pub fn description(self) -> &'static str {
                match self {
                    $(Self::$variant => $text,)*
                    Self::Other(_) => "unrecognised error",
                }
            }
        }
    };
}

errnos! {
    Eperm = 1, "EPERM", "operation not permitted";
    Enoent = 2, "ENOENT", "no such file or directory";
    Eio = 5, "EIO", "input/output error";
    Enomem = 12, "ENOMEM", "out of memory";
    Ebusy = 16, "EBUSY", "device or resource busy";
    Eexist = 17, "EEXIST", "already exists";
    Enodev = 19, "ENODEV", "no such device";
    Einval = 22, "EINVAL", "invalid argument";
    Enospc = 28, "ENOSPC", "no space left";
    Edestaddrreq = 89, "EDESTADDRREQ", "destination address required (the device has no usable local address)";
    Eopnotsupp = 95, "EOPNOTSUPP", "operation not supported";
    Eaddrnotavail = 99, "EADDRNOTAVAIL", "address not available";
    Enetdown = 100, "ENETDOWN", "network is down";
    Etimedout = 110, "ETIMEDOUT", "timed out";
    Enotsupp = 524, "ENOTSUPP", "operation not supported (kernel-internal; userspace prints \"Unknown error 524\")";
}

impl Errno {
    /// The errno of a kernel return value, None for success.
    pub fn from_ret(ret: i32) -> Option<Self> {
        (ret < 0).then(|| Self::from_raw(-ret))
    }
}

impl fmt::Display for Errno {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name() {
            Some(n) => write!(f, "-{n}"),
            None => write!(f, "-{}", self.raw()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_netpoll_errors_symbolically() {
        assert_eq!(Errno::from_ret(-524), Some(Errno::Enotsupp));
        assert_eq!(Errno::from_ret(-89).unwrap().to_string(), "-EDESTADDRREQ");
        assert_eq!(Errno::from_ret(-19).unwrap().name(), Some("ENODEV"));
        assert_eq!(Errno::from_ret(0), None);
        assert_eq!(Errno::from_ret(-4242), Some(Errno::Other(4242)));
        assert_eq!(Errno::Other(4242).to_string(), "-4242");
        assert_eq!(Errno::from_raw(524).raw(), 524);
    }
}
