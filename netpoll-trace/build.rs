//! Builds the eBPF programs (nightly, bpf-linker) and leaves the object in OUT_DIR,
//! where src/loader.rs embeds it: the binary is one self-contained file.
fn main() -> anyhow::Result<()> {
    let ebpf_dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../netpoll-trace-ebpf");
    aya_build::build_ebpf(
        [aya_build::Package {
            name: "netpoll-trace-ebpf",
            root_dir: ebpf_dir,
            ..Default::default()
        }],
        aya_build::Toolchain::default(),
    )
}
