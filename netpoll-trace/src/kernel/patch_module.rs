//! `patch`, `unpatch`, `status`: drive the netpoll_patch kernel module, which gives one
//! device an `ndo_poll_controller` that schedules its NAPI contexts. The module is loaded and unloaded with the
//! kernel's module syscalls (no shelling out to insmod), and every report comes from
//! the module's own state (/sys/module/netpoll_patch/parameters/state).

use std::{
    ffi::CString,
    path::{Path, PathBuf},
};

use anyhow::{Result, anyhow, bail};
use serde::Serialize;

pub const MODULE_NAME: &str = "netpoll_patch";
const PARAMS: &str = "/sys/module/netpoll_patch/parameters";

/// One patched device, as the module reports it. No kernel addresses: the module names
/// the original ops by symbol.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Patched {
    pub dev: String,
    pub ifindex: i32,
    /// The driver's ops table by name ("?" when kallsyms cannot name it).
    pub orig_ops: String,
    /// Module owning the original ops ("vmlinux" when built in).
    pub owner: String,
    /// What the installed hook does ("napi": schedules the device's NAPI contexts); None
    /// from a module too old to say.
    pub hook: Option<String>,
    /// Which ops copy the device uses (a number, not an address): the module never frees a
    /// copy it published, and gives it again to a device with the same ops.
    pub copy: Option<u32>,
}

impl Patched {
    /// "virtnet_netdev [virtio_net]", as kallsyms shows a module's symbol.
    pub fn ops(&self) -> String {
        if self.owner == "vmlinux" {
            self.orig_ops.clone()
        } else {
            format!("{} [{}]", self.orig_ops, self.owner)
        }
    }
}

/// Parses the module's `state` (one line per device:
/// `eth0 ifindex=2 orig_ops=virtnet_netdev owner=virtio_net hook=napi copy=1`).
pub fn parse_state(text: &str) -> Result<Vec<Patched>> {
    let mut out = Vec::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let mut words = line.split_whitespace();
        let dev = words
            .next()
            .ok_or_else(|| anyhow!("empty state line"))?
            .to_string();
        let (mut ifindex, mut orig, mut owner, mut hook, mut copy) = (None, None, None, None, None);
        for w in words {
            let (k, v) = w
                .split_once('=')
                .ok_or_else(|| anyhow!("state word `{w}` is not key=value"))?;
            match k {
                "ifindex" => ifindex = v.parse().ok(),
                "orig_ops" => orig = Some(v.to_string()),
                "owner" => owner = Some(v.to_string()),
                "hook" => hook = Some(v.to_string()),
                "copy" => copy = v.parse().ok(),
                _ => {}
            }
        }
        match (ifindex, orig, owner) {
            (Some(ifindex), Some(orig_ops), Some(owner)) => out.push(Patched {
                dev,
                ifindex,
                orig_ops,
                owner,
                hook,
                copy,
            }),
            _ => bail!("state line `{line}` lacks ifindex, orig_ops or owner"),
        }
    }
    Ok(out)
}

/// A network interface name the kernel could accept (dev_valid_name).
pub fn check_dev_name(dev: &str) -> Result<()> {
    let ok = !dev.is_empty()
        && dev.len() < 16
        && dev != "."
        && dev != ".."
        && !dev
            .chars()
            .any(|c| c == '/' || c == ':' || c == ',' || c.is_whitespace());
    if !ok {
        bail!(
            "`{dev}` is not a valid interface name (1-15 characters, no '/', ':', ',' or spaces)"
        );
    }
    Ok(())
}

/// What was asked of the module.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Patch,
    Unpatch,
}

/// Why the module refused a device, from the errno its parameter write or init returned.
pub fn refusal(op: Op, dev: &str, errno: i32) -> String {
    match errno {
        // The module refuses to unpatch a device netpoll is attached to.
        libc::EBUSY if op == Op::Unpatch => format!(
            "{dev}: netpoll is attached (netconsole?) and needs the poll controller on this kernel; detach it first (rmmod netconsole, or disable its target): still patched"
        ),
        libc::ESTALE => {
            format!("{dev}: someone else replaced its ops meanwhile; left untouched, still patched")
        }
        libc::ENODEV => format!("{dev}: no such device (in the initial network namespace)"),
        libc::EALREADY => format!("{dev} is already patched"),
        libc::EOPNOTSUPP => format!(
            "{dev}: its driver disabled netpoll on this device (IFF_DISABLE_NETPOLL); no ndo_poll_controller can help, use another interface"
        ),
        libc::EEXIST => format!("{dev} already has an ndo_poll_controller: nothing to patch"),
        libc::ENOENT => format!("{dev} is not patched"),
        libc::EBUSY => format!("{dev}: its driver module is unloading; left untouched"),
        libc::ENOMEM => format!("{dev}: the kernel is out of memory"),
        libc::EINVAL => format!("{dev}: the module rejected the name"),
        other => format!(
            "{dev}: refused: {}",
            std::io::Error::from_raw_os_error(other)
        ),
    }
}

use super::trusted_file::TrustedFile;

/// A module file opened once, checked (`TrustedFile`) and loaded through that same
/// descriptor: a path swapped after the check changes nothing.
pub struct ModuleFile {
    file: std::fs::File,
    path: PathBuf,
}

impl ModuleFile {
    pub fn open(path: &Path) -> Result<Self> {
        let TrustedFile { file, path } = TrustedFile::open(path, "module file")?;
        Ok(Self { file, path })
    }

    /// The (device, inode) of the opened file.
    #[cfg(test)]
    fn identity(&self) -> std::io::Result<(u64, u64)> {
        let m = self.file.metadata()?;
        use std::os::unix::fs::MetadataExt as _;
        Ok((m.dev(), m.ino()))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

fn loaded() -> bool {
    Path::new(PARAMS).join("state").exists()
}

/// Whether the module is in the kernel (even with nothing patched).
pub fn module_loaded() -> bool {
    Path::new("/sys/module").join(MODULE_NAME).exists()
}

fn read_state() -> Result<Vec<Patched>> {
    let text = std::fs::read_to_string(Path::new(PARAMS).join("state"))
        .map_err(|e| anyhow!("reading {PARAMS}/state: {e}"))?;
    parse_state(&text)
}

/// Where to look for the module when --module is not given.
fn default_module_paths() -> Vec<PathBuf> {
    let release = super::host::release().unwrap_or_default();
    let exe_dir = std::env::current_exe()
        .ok()
        .and_then(|p| p.parent().map(Path::to_path_buf));
    module_paths(release, exe_dir.as_deref())
}

/// The module's places, first found wins: installed by hand (extra/), by the
/// netpoll-patch-dkms package (updates/dkms/, where dkms installs; compressed when the
/// kernel's own modules are), a package's /usr/lib/netpoll-trace, the binary's directory.
fn module_paths(release: &str, exe_dir: Option<&Path>) -> Vec<PathBuf> {
    let modules = format!("/lib/modules/{release}");
    let mut paths = vec![PathBuf::from(format!("{modules}/extra/netpoll_patch.ko"))];
    for suffix in ["", ".xz", ".zst", ".gz"] {
        paths.push(PathBuf::from(format!(
            "{modules}/updates/dkms/netpoll_patch.ko{suffix}"
        )));
    }
    paths.push(PathBuf::from("/usr/lib/netpoll-trace/netpoll_patch.ko"));
    if let Some(dir) = exe_dir {
        paths.push(dir.join("netpoll_patch.ko"));
    }
    paths
}

/// finit_module's MODULE_INIT_COMPRESSED_FILE: the kernel decompresses (5.17+,
/// CONFIG_MODULE_DECOMPRESS), as for the .ko.xz dkms installs where modules are compressed.
const MODULE_INIT_COMPRESSED_FILE: libc::c_int = 4;

fn finit_flags(path: &Path) -> libc::c_int {
    match path.extension().and_then(|e| e.to_str()) {
        Some("xz" | "zst" | "gz") => MODULE_INIT_COMPRESSED_FILE,
        _ => 0,
    }
}

fn find_module(explicit: Option<&Path>) -> Result<PathBuf> {
    if let Some(p) = explicit {
        return Ok(p.to_path_buf());
    }
    let paths = default_module_paths();
    paths.iter().find(|p| p.is_file()).cloned().ok_or_else(|| {
        let list: Vec<String> = paths.iter().map(|p| p.display().to_string()).collect();
        anyhow!(
            "netpoll_patch.ko not found (looked in {}); build it (`make -C /lib/modules/$(uname -r)/build M=$PWD/netpoll-patch`) and pass --module PATH",
            list.join(", ")
        )
    })
}

fn finit_module(module: &ModuleFile, params: &str) -> std::io::Result<()> {
    let file = &module.file;
    let params =
        CString::new(params).map_err(|_| std::io::Error::from_raw_os_error(libc::EINVAL))?;
    let flags = finit_flags(&module.path);
    // SAFETY: a valid fd, a NUL-terminated string and known flags.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_finit_module,
            std::os::fd::AsRawFd::as_raw_fd(file),
            params.as_ptr(),
            flags,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

fn delete_module(name: &str) -> std::io::Result<()> {
    let name = CString::new(name).map_err(|_| std::io::Error::from_raw_os_error(libc::EINVAL))?;
    // SAFETY: a NUL-terminated name; O_NONBLOCK fails instead of waiting on users.
    let rc = unsafe { libc::syscall(libc::SYS_delete_module, name.as_ptr(), libc::O_NONBLOCK) };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

fn write_param(param: &str, value: &str) -> std::io::Result<()> {
    std::fs::write(Path::new(PARAMS).join(param), value)
}

/// Patches `dev`: loads the module with `devices=DEV`, or asks the loaded module.
/// All or nothing: on any refusal nothing stays patched for this call.
pub fn patch(dev: &str, module: Option<&Path>) -> Result<Patched> {
    check_dev_name(dev)?;
    if loaded() {
        write_param("patch", dev)
            .map_err(|e| anyhow!(refusal(Op::Patch, dev, e.raw_os_error().unwrap_or(0))))?;
    } else {
        let module = ModuleFile::open(&find_module(module)?)?;
        let path = module.path();
        finit_module(&module, &format!("devices={dev}")).map_err(|e| {
            match e.raw_os_error() {
                Some(libc::ENOEXEC) => anyhow!(
                    "{} was not built for this kernel ({}): rebuild it against this kernel's headers",
                    path.display(),
                    super::host::release().unwrap_or_default()
                ),
                Some(libc::EPERM) => anyhow!("loading {} refused: run as root (CAP_SYS_MODULE), and check kernel.modules_disabled", path.display()),
                Some(libc::EKEYREJECTED) | Some(libc::EBADMSG) => anyhow!(
                    "the kernel refused {}: it requires signed modules (lockdown or module.sig_enforce); sign it with a trusted key",
                    path.display()
                ),
                Some(n) => anyhow!(refusal(Op::Patch, dev, n)),
                None => anyhow!("loading {}: {e}", path.display()),
            }
        })?;
    }
    read_state()?
        .into_iter()
        .find(|p| p.dev == dev)
        .ok_or_else(|| anyhow!("the module accepted {dev} but does not list it in its state"))
}

/// Restores `dev`'s original ops; unloads the module once nothing is patched.
/// Returns the restored entry and whether the module was unloaded.
pub fn unpatch(dev: &str, force: bool) -> Result<(Patched, bool)> {
    check_dev_name(dev)?;
    if !loaded() {
        bail!("{dev} is not patched (netpoll_patch is not loaded)");
    }
    let before = read_state()?
        .into_iter()
        .find(|p| p.dev == dev)
        .ok_or_else(|| anyhow!(refusal(Op::Unpatch, dev, libc::ENOENT)))?;
    write_param(if force { "unpatch_force" } else { "unpatch" }, dev)
        .map_err(|e| anyhow!(refusal(Op::Unpatch, dev, e.raw_os_error().unwrap_or(0))))?;
    // The module holds a reference on itself while anything is patched, so an unload
    // racing another process's patch is refused by the kernel, not by this check.
    let unloaded = read_state()?.is_empty()
        && match delete_module(MODULE_NAME) {
            Ok(()) => true,
            Err(e) if matches!(e.raw_os_error(), Some(libc::EWOULDBLOCK | libc::EBUSY)) => false,
            Err(e) => bail!("{dev} restored, but unloading {MODULE_NAME} failed: {e}"),
        };
    Ok((before, unloaded))
}

/// The patched devices; empty when the module is not loaded.
pub fn status() -> Result<Vec<Patched>> {
    if !loaded() {
        Ok(Vec::new())
    } else {
        read_state()
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_dkms_package_s_module_is_found_compressed_or_not() {
        let p = super::module_paths("6.12.1-amd64", Some(std::path::Path::new("/opt/npt")));
        let shown: Vec<String> = p.iter().map(|p| p.display().to_string()).collect();
        for want in [
            "/lib/modules/6.12.1-amd64/extra/netpoll_patch.ko",
            "/lib/modules/6.12.1-amd64/updates/dkms/netpoll_patch.ko",
            "/lib/modules/6.12.1-amd64/updates/dkms/netpoll_patch.ko.xz",
            "/opt/npt/netpoll_patch.ko",
        ] {
            assert!(shown.iter().any(|s| s == want), "{want} not in {shown:?}");
        }
        // By hand before by package; the binary's directory last.
        assert!(shown[0].ends_with("extra/netpoll_patch.ko"), "{shown:?}");
        assert_eq!(
            shown.last().map(String::as_str),
            Some("/opt/npt/netpoll_patch.ko")
        );
        assert_eq!(
            super::finit_flags(std::path::Path::new("/a/netpoll_patch.ko.xz")),
            4
        );
        assert_eq!(
            super::finit_flags(std::path::Path::new("/a/netpoll_patch.ko")),
            0
        );
    }

    use super::*;
    use crate::kernel::trusted_file::{Kind, untrusted};

    #[test]
    fn parses_the_modules_state() {
        let s = parse_state(
            "eth0 ifindex=2 orig_ops=virtnet_netdev owner=virtio_net hook=napi copy=3\n\
             d0 ifindex=5 orig_ops=? owner=vmlinux\n",
        )
        .unwrap();
        assert_eq!(s.len(), 2);
        assert_eq!(s[0].dev, "eth0");
        assert_eq!((s[0].hook.as_deref(), s[0].copy), (Some("napi"), Some(3)));
        assert_eq!((s[1].hook.as_deref(), s[1].copy), (None, None));
        assert_eq!(s[0].orig_ops, "virtnet_netdev");
        assert_eq!(s[0].ops(), "virtnet_netdev [virtio_net]");
        assert_eq!(s[1].ops(), "?");
        assert!(parse_state("").unwrap().is_empty());
        assert!(parse_state("eth0 ifindex=2\n").is_err());
    }

    #[test]
    fn names_are_checked_before_anything_is_loaded() {
        for bad in ["", "a/b", "eth0:1", "x y", "sixteen_chars_xx", "..", "a,b"] {
            assert!(check_dev_name(bad).is_err(), "{bad:?}");
        }
        check_dev_name("ens5").unwrap();
    }

    #[test]
    fn refusals_say_why() {
        assert!(refusal(Op::Patch, "nk0", libc::EOPNOTSUPP).contains("IFF_DISABLE_NETPOLL"));
        assert!(
            refusal(Op::Patch, "e0", libc::EEXIST).contains("already has an ndo_poll_controller")
        );
        assert!(refusal(Op::Patch, "x", libc::ENODEV).contains("no such device"));
        // EBUSY means netpoll is attached when unpatching, the owner unloading when patching.
        assert!(refusal(Op::Unpatch, "eth0", libc::EBUSY).contains("netpoll is attached"));
        assert!(refusal(Op::Patch, "eth0", libc::EBUSY).contains("unloading"));
        assert!(refusal(Op::Unpatch, "eth0", libc::ESTALE).contains("replaced its ops"));
    }

    #[test]
    fn only_root_may_be_able_to_change_what_is_loaded() {
        assert_eq!(untrusted(Kind::File, 0, 0o100644), None);
        assert_eq!(untrusted(Kind::Dir, 0, 0o40755), None);
        // /tmp: others may write, but the sticky bit keeps root's entries root's.
        assert_eq!(untrusted(Kind::Dir, 0, 0o41777), None);
        assert!(
            untrusted(Kind::File, 1000, 0o100644)
                .unwrap()
                .contains("uid 1000, not root")
        );
        assert!(
            untrusted(Kind::File, 0, 0o100664)
                .unwrap()
                .contains("writable by group or others (mode 664)")
        );
        assert!(
            untrusted(Kind::File, 0, 0o100646)
                .unwrap()
                .contains("writable by group or others")
        );
        assert!(
            untrusted(Kind::Dir, 0, 0o40775)
                .unwrap()
                .contains("directory writable by group or others")
        );
        assert!(
            untrusted(Kind::Dir, 1000, 0o40755)
                .unwrap()
                .contains("not root")
        );
        assert!(
            untrusted(Kind::Other, 0, 0o10644)
                .unwrap()
                .contains("not a regular file")
        );
    }

    /// A scratch directory under /tmp (root's, sticky) for module files.
    fn scratch(name: &str) -> PathBuf {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = Path::new("/tmp").join(format!("np-modtest-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir(&dir).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        dir
    }

    fn module(dir: &Path, name: &str, mode: u32, body: &[u8]) -> PathBuf {
        use std::os::unix::fs::PermissionsExt as _;
        let f = dir.join(name);
        std::fs::write(&f, body).unwrap();
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(mode)).unwrap();
        f
    }

    fn root() -> bool {
        // SAFETY: no arguments.
        unsafe { libc::geteuid() == 0 }
    }

    fn refusal_of(path: &Path) -> String {
        ModuleFile::open(path)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_else(|| "accepted".into())
    }

    #[test]
    fn module_files_anyone_could_change_are_refused() {
        let dir = scratch("files");
        let good = module(&dir, "m.ko", 0o644, b"elf");
        let writable = module(&dir, "w.ko", 0o666, b"elf");
        if root() {
            assert!(ModuleFile::open(&good).is_ok(), "{}", refusal_of(&good));
            assert!(
                refusal_of(&writable).contains("writable by group or others"),
                "{}",
                refusal_of(&writable)
            );
        } else {
            // Not root: the scratch directory is ours, which is exactly what is refused.
            assert!(
                refusal_of(&good).contains("not root"),
                "{}",
                refusal_of(&good)
            );
        }
        assert!(refusal_of(&dir.join("missing.ko")).contains("No such file"));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_symlink_to_a_module_is_refused() {
        let dir = scratch("link");
        let good = module(&dir, "m.ko", 0o644, b"elf");
        let link = dir.join("link.ko");
        std::os::unix::fs::symlink(&good, &link).unwrap();
        let e = refusal_of(&link);
        assert!(
            e.contains(if root() { "symbolic link" } else { "not root" }),
            "{e}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_module_in_a_group_writable_directory_is_refused() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = scratch("gw");
        let sub = dir.join("shared");
        std::fs::create_dir(&sub).unwrap();
        std::fs::set_permissions(&sub, std::fs::Permissions::from_mode(0o775)).unwrap();
        let f = module(&sub, "m.ko", 0o644, b"elf");
        let e = refusal_of(&f);
        if root() {
            assert!(
                e.contains(&format!(
                    "{} is a directory writable by group or others",
                    sub.display()
                )),
                "{e}"
            );
        } else {
            assert!(e.contains("not root"), "{e}");
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// The file checked is the file loaded: swapping the path after the check (here a
    /// rename of a group-writable file over it) leaves the opened descriptor on the
    /// original.
    #[test]
    fn a_file_swapped_after_the_check_is_not_what_gets_loaded() {
        use std::io::Read as _;
        let dir = scratch("swap");
        let good = module(&dir, "m.ko", 0o644, b"trusted");
        let Ok(mut m) = ModuleFile::open(&good) else {
            assert!(!root(), "{}", refusal_of(&good));
            return std::fs::remove_dir_all(&dir).unwrap();
        };
        let before = m.identity().unwrap();
        let evil = module(&dir, "evil.ko", 0o666, b"evil");
        std::fs::rename(&evil, &good).unwrap();
        assert_eq!(m.identity().unwrap(), before);
        let mut body = String::new();
        m.file.read_to_string(&mut body).unwrap();
        assert_eq!(body, "trusted");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
