//! A kernel module's BTF, loaded or not: /sys/kernel/btf/<module> when the module is
//! loaded, else the `.BTF` section of its file (found through modules.dep, xz-compressed
//! or not), parsed as split BTF over the running kernel's (/sys/kernel/btf/vmlinux). Linux
//! 7.x keeps `struct netconsole_target` only there, and the tool often starts before
//! `modprobe netconsole` runs.

use std::{
    fmt,
    fs::File,
    io::{BufRead, BufReader, Read as _},
    os::unix::ffi::OsStrExt as _,
    path::{Path, PathBuf},
};

use anyhow::{Context as _, Result, anyhow, bail};

use super::{
    btf::{self, Btf},
    elf, host,
    offsets::archive,
};

/// The largest module file (compressed or not) or module BTF we read: the biggest modules
/// (GPU drivers) are tens of MiB.
const MAX_FILE: u64 = 128 << 20;
/// The most a compressed module may decompress to.
const MAX_UNPACKED: usize = 256 << 20;

/// Where the BTF files and the modules are: the running system's, or a test's.
#[derive(Debug, Clone)]
pub struct Paths {
    /// /sys/kernel/btf: `vmlinux` and one file per loaded module.
    pub sys_btf: PathBuf,
    /// /lib/modules/<release>, holding modules.dep.
    pub modules: PathBuf,
}

impl Paths {
    /// The running kernel's.
    pub fn running() -> Result<Self> {
        let release = host::release().ok_or_else(|| {
            anyhow!("/proc/sys/kernel/osrelease: cannot read the kernel's release")
        })?;
        Ok(Self {
            sys_btf: PathBuf::from("/sys/kernel/btf"),
            modules: Path::new("/lib/modules").join(release),
        })
    }
}

/// Where a module's BTF came from, for reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// The loaded module's, from sysfs.
    Sysfs(PathBuf),
    /// The `.BTF` section of the module's file (not loaded yet).
    File(PathBuf),
}

impl Source {
    pub fn path(&self) -> &Path {
        match self {
            Source::Sysfs(p) | Source::File(p) => p,
        }
    }
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::Sysfs(p) => write!(f, "{} (module loaded)", p.display()),
            Source::File(p) => write!(f, "{} (module file)", p.display()),
        }
    }
}

/// A module's BTF, split over the running kernel's.
pub struct ModuleBtf {
    btf: Btf,
    source: Source,
}

impl ModuleBtf {
    pub fn source(&self) -> &Source {
        &self.source
    }

    /// The struct the module function `name`'s first parameter points to (None: not a
    /// pointer to one of the module's own structs).
    pub fn first_param_struct(&self, name: &str) -> Option<String> {
        self.btf.first_param_struct(name)
    }

    /// True when the module defines function `name`.
    pub fn has_function(&self, name: &str) -> bool {
        self.btf.has_function(name)
    }
}

/// The BTF of `module` on the running kernel, read once per process: start-up asks of
/// netconsole's several times (each armed function's presence, the target's layout, the
/// agent's resume, check's nbcon), and each read passes over the kernel's whole BTF for
/// the base strings. A failure is not kept (the next ask tries again).
pub fn load(module: &str) -> Result<std::sync::Arc<ModuleBtf>> {
    static LOADED: std::sync::Mutex<Vec<(String, std::sync::Arc<ModuleBtf>)>> =
        std::sync::Mutex::new(Vec::new());
    let mut loaded = LOADED.lock().unwrap_or_else(|p| p.into_inner());
    if let Some((_, btf)) = loaded.iter().find(|(m, _)| m == module) {
        return Ok(btf.clone());
    }
    super::profile::stage(&format!("reading {module}'s BTF"));
    let btf = std::sync::Arc::new(load_from(module, &Paths::running()?)?);
    super::profile::stage(&format!("{module}'s BTF read (split over the kernel's)"));
    loaded.push((module.to_string(), btf.clone()));
    Ok(btf)
}

/// The BTF of `module` on the running kernel, split over `base` (a raw BTF file of this
/// kernel, e.g. `--btf FILE` where /sys/kernel/btf is missing) instead of sysfs's.
pub fn load_over(module: &str, base: &Path) -> Result<ModuleBtf> {
    load_with_base(module, &Paths::running()?, Some(base))
}

/// The BTF of `module` under `paths`: sysfs's when loaded, else its file's.
pub fn load_from(module: &str, paths: &Paths) -> Result<ModuleBtf> {
    load_with_base(module, paths, None)
}

fn load_with_base(module: &str, paths: &Paths, base: Option<&Path>) -> Result<ModuleBtf> {
    let (data, source) = module_btf_bytes(module, paths)?;
    let base_path = base.map_or_else(|| paths.sys_btf.join("vmlinux"), Path::to_path_buf);
    let mut base_file = File::open(&base_path)
        .with_context(|| format!("{}: cannot open the kernel's BTF", base_path.display()))?;
    // Sysfs's base mapped where the kernel allows (no page-sized reads of all its types);
    // a file streamed, never held.
    match btf::bytes::map_sysfs(&base_file, &base_path) {
        Some(mapped) => split(
            data,
            &mut std::io::Cursor::new(&mapped[..]),
            &base_path,
            source,
        ),
        None => split(data, &mut base_file, &base_path, source),
    }
}

/// A module's raw BTF `data`, split over the base BTF `base_file` (at `base_path`).
pub fn split<R: std::io::Read + std::io::Seek>(
    data: Vec<u8>,
    base_file: &mut R,
    base_path: &Path,
    source: Source,
) -> Result<ModuleBtf> {
    let btf =
        Btf::from_vec(data).with_context(|| format!("{}: module BTF", source.path().display()))?;
    let base = btf::base::read(base_file, 0, &btf.name_offsets()).with_context(|| {
        format!(
            "{} (the base of {})",
            base_path.display(),
            source.path().display()
        )
    })?;
    Ok(ModuleBtf {
        btf: btf.split_over(base),
        source,
    })
}

/// The raw BTF of `module`, and where it came from.
fn module_btf_bytes(module: &str, paths: &Paths) -> Result<(Vec<u8>, Source)> {
    let sys = paths.sys_btf.join(module);
    match File::open(&sys) {
        Ok(f) => return Ok((read_capped(f, &sys)?, Source::Sysfs(sys))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => bail!("{}: cannot open: {e}", sys.display()),
    }
    let dep = paths.modules.join("modules.dep");
    let rel = File::open(&dep)
        .and_then(|f| module_file(BufReader::new(f), module))
        .with_context(|| format!("{}: cannot read", dep.display()))?
        .ok_or_else(|| {
            anyhow!(
                "{}: no {module}.ko listed, and {module} is not loaded (no {})",
                dep.display(),
                sys.display()
            )
        })?;
    let path = paths.modules.join(rel);
    let btf = file_btf(&path).with_context(|| format!("{}", path.display()))?;
    Ok((btf, Source::File(path)))
}

/// The `.BTF` section of module file `path`.
fn file_btf(path: &Path) -> Result<Vec<u8>> {
    let name = path.as_os_str().as_bytes();
    let compressed = [(".zst", "zstd"), (".gz", "gzip")]
        .into_iter()
        .find(|(ext, _)| name.ends_with(ext.as_bytes()));
    if let Some((_, how)) = compressed {
        bail!(
            "compressed with {how}, which this tool cannot read: the module's fields stay unknown until the module is loaded"
        );
    }
    let data = read_capped(File::open(path).context("cannot open")?, path)?;
    let data = if name.ends_with(b".xz") {
        archive::unxz(&data, MAX_UNPACKED)?
    } else {
        data
    };
    module_elf_btf(&data)
}

/// The `.BTF` section of a module's ELF file.
pub fn module_elf_btf(data: &[u8]) -> Result<Vec<u8>> {
    if elf::section(data, ".BTF.base")?.is_some() {
        // An out-of-tree build's BTF is split over its own distilled base, not vmlinux.
        bail!(
            "its BTF is split over a distilled base (.BTF.base: built out of tree), which this tool cannot read"
        );
    }
    let btf = elf::section(data, ".BTF")?
        .context("no .BTF section (kernel built without CONFIG_DEBUG_INFO_BTF_MODULES)")?;
    Ok(btf.to_vec())
}

/// A file's bytes, refused past `MAX_FILE` (a hostile or broken file cannot make us
/// allocate without limit).
fn read_capped(f: File, path: &Path) -> Result<Vec<u8>> {
    let mut data = Vec::new();
    f.take(MAX_FILE + 1)
        .read_to_end(&mut data)
        .with_context(|| format!("{}: cannot read", path.display()))?;
    if data.len() as u64 > MAX_FILE {
        bail!("{}: larger than {} MiB", path.display(), MAX_FILE >> 20);
    }
    Ok(data)
}

/// The file modules.dep (`dep`) names for `module`, as written (relative to its
/// directory, or absolute): the first field of the line whose file is `<module>.ko`,
/// compressed or not. `-` and `_` are the same in module names, as for modprobe.
pub fn module_file(dep: impl BufRead, module: &str) -> std::io::Result<Option<PathBuf>> {
    for line in dep.split(b'\n') {
        let line = line?;
        if let Some(file) = dep_line_file(&line, module) {
            return Ok(Some(PathBuf::from(std::ffi::OsStr::from_bytes(file))));
        }
    }
    Ok(None)
}

/// The module file a modules.dep line names, when it is `module`'s.
fn dep_line_file<'a>(line: &'a [u8], module: &str) -> Option<&'a [u8]> {
    let file = &line[..line.iter().position(|&c| c == b':')?];
    let base = &file[file.iter().rposition(|&c| c == b'/').map_or(0, |i| i + 1)..];
    let base = [".xz", ".zst", ".gz"]
        .iter()
        .find_map(|ext| base.strip_suffix(ext.as_bytes()))
        .unwrap_or(base);
    let stem = base.strip_suffix(b".ko")?;
    let same = |a: u8, b: u8| a == b || (a == b'-' || a == b'_') && (b == b'-' || b == b'_');
    (stem.len() == module.len() && stem.iter().zip(module.bytes()).all(|(&a, b)| same(a, b)))
        .then_some(file)
}

/// What the tool needs of `struct netconsole_target`: byte offsets of its members.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetconsoleTarget {
    pub size: u32,
    pub np: u32,
    /// `enum target_state state` (7.x).
    pub state: Option<u32>,
    /// `bool enabled` (before 7.x).
    pub enabled: Option<u32>,
    /// 7.x moved these out of `struct netpoll`; before, they are `np`'s (vmlinux's BTF).
    pub remote_ip: Option<u32>,
    pub ipv6: Option<u32>,
    pub local_port: Option<u32>,
    pub remote_port: Option<u32>,
    /// STATE_DISABLED, STATE_ENABLED, STATE_DEACTIVATED.
    pub state_values: Option<(i64, i64, i64)>,
}

/// `struct netconsole_target` in netconsole's BTF; None without the struct or its `np`.
pub fn netconsole_target(btf: &ModuleBtf) -> Option<NetconsoleTarget> {
    const S: &str = "netconsole_target";
    let b = &btf.btf;
    let at = |m: &str| b.member(S, m).map(|l| l.byte_offset());
    let value = |c: &str| b.enum_value(c);
    let state_values = match (
        value("STATE_DISABLED"),
        value("STATE_ENABLED"),
        value("STATE_DEACTIVATED"),
    ) {
        (Some(d), Some(e), Some(x)) => Some((d, e, x)),
        _ => None,
    };
    Some(NetconsoleTarget {
        size: b.struct_size(S)?,
        np: at("np")?,
        state: at("state"),
        enabled: at("enabled"),
        remote_ip: at("remote_ip"),
        ipv6: at("ipv6"),
        local_port: at("local_port"),
        remote_port: at("remote_port"),
        state_values,
    })
}

/// Fixtures for tests here and in the offsets.
#[cfg(test)]
pub mod testing {
    use super::NetconsoleTarget;

    /// Debian's 7.3.4 netconsole (module BTF): np 1352, the addresses at 1408..1428.
    pub fn debian_7_3() -> NetconsoleTarget {
        NetconsoleTarget {
            size: 2528,
            np: 1352,
            state: Some(1344),
            enabled: None,
            remote_ip: Some(1408),
            ipv6: Some(1424),
            local_port: Some(1426),
            remote_port: Some(1428),
            state_values: Some((0, 1, 2)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernel::{
        btf::testing::{Builder, M},
        elf::testing::elf,
        offsets::archive::testing::xz,
    };

    fn plain(name: &str, type_id: u32, byte: u32) -> M<'_> {
        M {
            name,
            type_id,
            bit_offset: byte * 8,
            bitfield_size: 0,
        }
    }

    /// A vmlinux BTF and netconsole's split BTF over it, as 7.x (`state`, the addresses
    /// in the target) or 6.18 (`bool enabled`, the addresses in `struct netpoll`) has them.
    fn kernel_and_netconsole(v7: bool) -> (Vec<u8>, Vec<u8>) {
        let mut b = Builder::new();
        let int = b.int("int", 4);
        let boolean = b.int("bool", 1);
        let netpoll = b.composite("netpoll", false, 40, &[plain("dev", int, 0)]);
        b.func("netpoll_send_udp", int);
        let mut m = Builder::split(&b);
        let target = if v7 {
            let state = m.enum32(
                "target_state",
                &[
                    ("STATE_DISABLED", 0),
                    ("STATE_ENABLED", 1),
                    ("STATE_DEACTIVATED", 2),
                ],
            );
            vec![
                plain("state", state, 1344),
                plain("np", netpoll, 1352),
                plain("remote_ip", int, 1408),
                plain("ipv6", boolean, 1424),
                plain("local_port", int, 1426),
                plain("remote_port", int, 1428),
            ]
        } else {
            vec![plain("enabled", boolean, 4416), plain("np", netpoll, 4424)]
        };
        m.composite(
            "netconsole_target",
            false,
            if v7 { 2528 } else { 5568 },
            &target,
        );
        if v7 {
            m.func("netcons_netpoll_setup", int);
        }
        m.func("netconsole_write_basic", int);
        (b.finish(), m.finish())
    }

    /// A scratch tree: `sys/` (as /sys/kernel/btf) and `modules/` (as /lib/modules/<release>).
    struct Tree(PathBuf);

    impl Tree {
        fn new(name: &str) -> Self {
            let d = std::env::temp_dir().join(format!("npt-modbtf-{name}-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&d);
            std::fs::create_dir_all(d.join("sys")).unwrap();
            std::fs::create_dir_all(d.join("modules/kernel/drivers/net")).unwrap();
            Self(d)
        }
        fn paths(&self) -> Paths {
            Paths {
                sys_btf: self.0.join("sys"),
                modules: self.0.join("modules"),
            }
        }
        fn put(&self, rel: &str, data: &[u8]) {
            std::fs::write(self.0.join(rel), data).unwrap();
        }
        /// The kernel's BTF, modules.dep naming netconsole's `file`, and that file.
        fn with_module(name: &str, file: &str, data: &[u8]) -> Self {
            let t = Self::new(name);
            let (kernel, _) = kernel_and_netconsole(true);
            t.put("sys/vmlinux", &kernel);
            t.put(
                "modules/modules.dep",
                format!("kernel/fs/configfs/configfs.ko.xz:\n{file}: kernel/fs/configfs/configfs.ko.xz\n")
                    .as_bytes(),
            );
            t.put(&format!("modules/{file}"), data);
            t
        }
        fn error(&self) -> String {
            format!(
                "{:#}",
                load_from("netconsole", &self.paths()).err().unwrap()
            )
        }
    }

    impl Drop for Tree {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    #[test]
    fn modules_dep_names_the_module_file() {
        let dep = b"kernel/drivers/net/netconsole_ext.ko.xz:\n\
            kernel/drivers/net/netconsole.ko.bak:\n\
            kernel/drivers/net/netconsole.ko.xz: kernel/fs/configfs/configfs.ko.xz\n\
            updates/dkms/snd-hda-intel.ko:\n\
            /opt/mods/zmod.ko.zst:\n\
            no colon here netconsole.ko\n";
        let find = |m| module_file(&dep[..], m).unwrap();
        assert_eq!(
            find("netconsole"),
            Some(PathBuf::from("kernel/drivers/net/netconsole.ko.xz"))
        );
        assert_eq!(
            find("snd_hda_intel"),
            Some(PathBuf::from("updates/dkms/snd-hda-intel.ko"))
        );
        assert_eq!(find("zmod"), Some(PathBuf::from("/opt/mods/zmod.ko.zst")));
        assert_eq!(find("netconsole_ex"), None);
        assert_eq!(find("configfs"), None);
        assert_eq!(module_file(&b""[..], "netconsole").unwrap(), None);
    }

    #[test]
    fn netconsole_target_of_7x_and_of_6_18() {
        let split = |v7| {
            let (kernel, module) = kernel_and_netconsole(v7);
            let btf = Btf::parse(&module).unwrap();
            let base = btf::base::read(&mut std::io::Cursor::new(kernel), 0, &btf.name_offsets());
            ModuleBtf {
                btf: btf.split_over(base.unwrap()),
                source: Source::Sysfs("/sys/kernel/btf/netconsole".into()),
            }
        };
        let v7 = split(true);
        assert_eq!(netconsole_target(&v7), Some(testing::debian_7_3()));
        assert!(v7.has_function("netcons_netpoll_setup"));
        let old = split(false);
        let t = netconsole_target(&old).unwrap();
        assert_eq!(
            (t.size, t.np, t.enabled, t.state),
            (5568, 4424, Some(4416), None)
        );
        assert_eq!((t.remote_ip, t.state_values), (None, None));
        assert!(!old.has_function("netcons_netpoll_setup"));
        assert!(old.has_function("netconsole_write_basic"));
        // Another module's BTF: no such struct.
        let mut other = Builder::new();
        other.int("int", 4);
        let none = ModuleBtf {
            btf: Btf::parse(&other.finish()).unwrap(),
            source: Source::File("x.ko".into()),
        };
        assert_eq!(netconsole_target(&none), None);
    }

    #[test]
    fn loads_from_sysfs_when_loaded_else_from_the_module_file() {
        let (_, module) = kernel_and_netconsole(true);
        let ko = elf(&[(".text", b"code"), (".BTF", &module)]);
        for (name, file, data) in [
            ("xz", "kernel/drivers/net/netconsole.ko.xz", xz(&ko)),
            ("plain", "kernel/drivers/net/netconsole.ko", ko.clone()),
        ] {
            let t = Tree::with_module(name, file, &data);
            let got = load_from("netconsole", &t.paths()).unwrap();
            assert_eq!(got.source(), &Source::File(t.0.join("modules").join(file)));
            assert_eq!(
                got.source().to_string(),
                format!("{} (module file)", t.0.join("modules").join(file).display())
            );
            assert_eq!(netconsole_target(&got).unwrap().state, Some(1344));
            // Loaded: sysfs's, the file not read.
            t.put("sys/netconsole", &module);
            t.put(&format!("modules/{file}"), b"garbage");
            let got = load_from("netconsole", &t.paths()).unwrap();
            assert_eq!(got.source(), &Source::Sysfs(t.0.join("sys/netconsole")));
            assert_eq!(netconsole_target(&got).unwrap().np, 1352);
        }
    }

    #[test]
    fn refusals_name_the_file_and_the_cause() {
        let (_, module) = kernel_and_netconsole(true);
        let zst = "kernel/drivers/net/netconsole.ko.zst";
        let e = Tree::with_module("zst", zst, b"(zstd)").error();
        assert!(e.contains("netconsole.ko.zst: compressed with zstd"), "{e}");
        assert!(e.contains("unknown until the module is loaded"), "{e}");
        let gz = "kernel/drivers/net/netconsole.ko.gz";
        assert!(
            Tree::with_module("gz", gz, b"")
                .error()
                .contains("compressed with gzip")
        );

        let t = Tree::with_module("unlisted", "kernel/drivers/net/other.ko", b"");
        let e = t.error();
        assert!(
            e.contains("modules.dep: no netconsole.ko listed, and netconsole is not loaded"),
            "{e}"
        );

        let ko = "kernel/drivers/net/netconsole.ko";
        let e = Tree::with_module("nobtf", ko, &elf(&[(".text", b"code")])).error();
        assert!(e.contains("netconsole.ko: no .BTF section"), "{e}");
        let distilled = elf(&[(".BTF", &module), (".BTF.base", b"base")]);
        let e = Tree::with_module("distilled", ko, &distilled).error();
        assert!(e.contains("distilled base"), "{e}");
        let e = Tree::with_module("notelf", ko, b"hello").error();
        assert!(e.contains("netconsole.ko: not an ELF file"), "{e}");
        let mut bad_xz = xz(&elf(&[(".BTF", &module)]));
        let n = bad_xz.len();
        bad_xz[n / 2] ^= 0xff;
        let e = Tree::with_module("badxz", "kernel/drivers/net/netconsole.ko.xz", &bad_xz).error();
        assert!(
            e.contains("netconsole.ko.xz: corrupt or unsupported xz data"),
            "{e}"
        );
        let e = Tree::with_module("badbtf", ko, &elf(&[(".BTF", b"not btf")])).error();
        assert!(e.contains("netconsole.ko: module BTF: "), "{e}");

        let t = Tree::with_module("nobase", ko, &elf(&[(".BTF", &module)]));
        std::fs::remove_file(t.0.join("sys/vmlinux")).unwrap();
        assert!(
            t.error()
                .contains("sys/vmlinux: cannot open the kernel's BTF"),
            "{}",
            t.error()
        );
        t.put("sys/vmlinux", b"not btf at all, no, not at all");
        assert!(
            t.error().contains("netconsole.ko): base is not BTF"),
            "{}",
            t.error()
        );

        let t = Tree::new("nodep");
        assert!(
            t.error().contains("modules.dep: cannot read"),
            "{}",
            t.error()
        );
    }

    /// The module_btf fuzz target's seed (netpoll-trace/fuzz/seeds/module_btf/), made from
    /// the 7.x fixture in the target's input format, once checked to reach the target's
    /// layout. `cargo test --lib -- --ignored module_btf_fuzz_seed` writes it again.
    #[test]
    #[ignore]
    fn module_btf_fuzz_seed() {
        let (kernel, module) = kernel_and_netconsole(true);
        let ko = elf(&[(".text", b"code"), (".BTF", &module)]);
        let mut input = u16::try_from(ko.len()).unwrap().to_le_bytes().to_vec();
        input.extend_from_slice(&ko);
        input.extend_from_slice(&kernel);
        let raw = module_elf_btf(&ko).unwrap();
        let path = Path::new("netconsole.ko");
        let m = split(
            raw,
            &mut std::io::Cursor::new(&kernel),
            path,
            Source::File(path.into()),
        )
        .unwrap();
        assert_eq!(netconsole_target(&m).unwrap().np, 1352);
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/seeds/module_btf");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("netconsole-7x"), input).unwrap();
    }

    /// The real thing, against files named by the environment (not run by default):
    /// NPT_MODULE (a netconsole.ko, .xz or not) and NPT_VMLINUX (a vmlinux ELF, or raw
    /// BTF). Prints what it found, the time and the memory `load_from` took.
    #[test]
    #[ignore]
    fn real_module_btf() {
        let (Ok(module), Ok(vmlinux)) = (std::env::var("NPT_MODULE"), std::env::var("NPT_VMLINUX"))
        else {
            panic!("set NPT_MODULE and NPT_VMLINUX");
        };
        let t = Tree::new("real");
        let kernel = std::fs::read(&vmlinux).unwrap();
        let raw = match elf::section(&kernel, ".BTF").unwrap() {
            Some(b) => b.to_vec(),
            None => kernel.clone(),
        };
        drop(kernel);
        t.put("sys/vmlinux", &raw);
        drop(raw);
        t.put("modules/modules.dep", format!("{module}:\n").as_bytes());
        let status = |key: &str| {
            let s = std::fs::read_to_string("/proc/self/status").unwrap();
            let line = s.lines().find(|l| l.starts_with(key)).unwrap().to_string();
            line.split_whitespace()
                .nth(1)
                .unwrap()
                .parse::<u64>()
                .unwrap()
        };
        // The first call also pages in its code and the files; the second is the parse alone.
        let mut btf = None;
        for call in ["first", "second"] {
            drop(btf.take());
            crate::kernel::profile::release_freed_memory();
            // Resets VmHWM to the current RSS (proc(5), clear_refs "5").
            std::fs::write("/proc/self/clear_refs", "5").unwrap();
            let rss = status("VmRSS:");
            let start = std::time::Instant::now();
            btf = Some(load_from("netconsole", &t.paths()).unwrap());
            let took = start.elapsed();
            let peak = status("VmHWM:");
            println!(
                "load_from, {call} call: {:.1} ms, peak RSS +{} KiB (from {rss} KiB), heap after {:?} B",
                took.as_secs_f64() * 1e3,
                peak.saturating_sub(rss),
                crate::kernel::profile::heap_in_use()
            );
        }
        let btf = btf.unwrap();
        let target = netconsole_target(&btf).expect("struct netconsole_target");
        println!("{}: {target:?}", btf.source());
        let funcs = [
            "netcons_netpoll_setup",
            "netpoll_send_udp",
            "netconsole_write_basic",
            "process_resume_target",
        ];
        for f in funcs {
            println!(
                "function {f}: {}, first parameter -> {:?}",
                btf.has_function(f),
                btf.first_param_struct(f)
            );
        }
        if target.state.is_some() {
            // Debian's 7.3.
            assert_eq!(target, testing::debian_7_3());
            assert!(funcs.iter().all(|f| btf.has_function(f)));
        } else {
            // Debian's 6.18.
            assert_eq!((target.np, target.enabled), (4424, Some(4416)));
            assert!(!btf.has_function("netcons_netpoll_setup"));
        }
    }
}
