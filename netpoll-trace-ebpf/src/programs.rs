//! The macros each binary expands: the kprobe programs both objects carry and the
//! license section. Their names are `netpoll_trace_common::programs`, which
//! userspace's tests check against the built objects.

/// The kprobe programs, one definition for both objects so their names (the
/// loader's attach table) cannot drift apart. Expanded by each binary.
#[macro_export]
macro_rules! kprobe_programs {
    () => {
        #[::aya_ebpf::macros::kprobe]
        pub fn netpoll_setup_entry(ctx: ::aya_ebpf::programs::ProbeContext) -> u32 {
            let np: u64 = ctx.arg(0).unwrap_or(0);
            $crate::setup_enter($crate::function::NETPOLL_SETUP, np, 0);
            0
        }

        // A kretprobe cannot see the arguments: the return pairs by function only.
        #[::aya_ebpf::macros::kretprobe]
        pub fn netpoll_setup_exit(ctx: ::aya_ebpf::programs::RetProbeContext) -> u32 {
            $crate::setup_exit(
                &ctx,
                $crate::function::NETPOLL_SETUP,
                None,
                ctx.ret::<u64>(),
            );
            0
        }

        #[::aya_ebpf::macros::kprobe]
        pub fn inner_netpoll_setup_entry(ctx: ::aya_ebpf::programs::ProbeContext) -> u32 {
            let np: u64 = ctx.arg(0).unwrap_or(0);
            let dev: u64 = ctx.arg(1).unwrap_or(0);
            $crate::setup_enter($crate::function::INNER_NETPOLL_SETUP, np, dev);
            0
        }

        #[::aya_ebpf::macros::kretprobe]
        pub fn inner_netpoll_setup_exit(ctx: ::aya_ebpf::programs::RetProbeContext) -> u32 {
            $crate::setup_exit(
                &ctx,
                $crate::function::INNER_NETPOLL_SETUP,
                None,
                ctx.ret::<u64>(),
            );
            0
        }

        #[::aya_ebpf::macros::kprobe]
        pub fn poll_dev_entry(ctx: ::aya_ebpf::programs::ProbeContext) -> u32 {
            $crate::poll_enter(ctx.arg(0).unwrap_or(0));
            0
        }

        #[::aya_ebpf::macros::kretprobe]
        pub fn poll_dev_exit(ctx: ::aya_ebpf::programs::RetProbeContext) -> u32 {
            $crate::poll_exit(&ctx);
            0
        }

        #[::aya_ebpf::macros::kprobe]
        pub fn send_udp_entry(ctx: ::aya_ebpf::programs::ProbeContext) -> u32 {
            let len: u64 = ctx.arg(2).unwrap_or(0);
            $crate::send_udp_enter(&ctx, ctx.arg(0).unwrap_or(0), len);
            0
        }

        #[::aya_ebpf::macros::kprobe]
        pub fn send_skb_entry(ctx: ::aya_ebpf::programs::ProbeContext) -> u32 {
            $crate::send_skb_enter(ctx.arg(0).unwrap_or(0));
            0
        }

        #[::aya_ebpf::macros::kretprobe]
        pub fn send_skb_exit(ctx: ::aya_ebpf::programs::RetProbeContext) -> u32 {
            $crate::send_skb_return(&ctx);
            0
        }

        // Kernels before 5.8: netpoll_send_skb is an inline wrapper of this one.
        #[::aya_ebpf::macros::kprobe]
        pub fn send_skb_on_dev_entry(ctx: ::aya_ebpf::programs::ProbeContext) -> u32 {
            $crate::send_skb_enter(ctx.arg(0).unwrap_or(0));
            0
        }

        #[::aya_ebpf::macros::kretprobe]
        pub fn send_skb_on_dev_exit(ctx: ::aya_ebpf::programs::RetProbeContext) -> u32 {
            $crate::send_skb_return(&ctx);
            0
        }

        #[::aya_ebpf::macros::kprobe]
        pub fn cleanup_entry(ctx: ::aya_ebpf::programs::ProbeContext) -> u32 {
            $crate::cleanup_enter(ctx.arg(0).unwrap_or(0));
            0
        }

        // A module function: kprobes only (fentry would need the module's BTF).
        #[::aya_ebpf::macros::kprobe]
        pub fn nc_write_msg_entry(ctx: ::aya_ebpf::programs::ProbeContext) -> u32 {
            let len: u64 = ctx.arg(2).unwrap_or(0);
            $crate::console_write(&ctx, len);
            0
        }

        // 7.3+: netconsole's own set-up takes its target; the netpoll is `&nt->np`.
        #[::aya_ebpf::macros::kprobe]
        pub fn nc_setup_entry(ctx: ::aya_ebpf::programs::ProbeContext) -> u32 {
            let nt: u64 = ctx.arg(0).unwrap_or(0);
            $crate::netcons_setup_enter(nt);
            0
        }

        #[::aya_ebpf::macros::kretprobe]
        pub fn nc_setup_exit(ctx: ::aya_ebpf::programs::RetProbeContext) -> u32 {
            $crate::setup_exit(
                &ctx,
                $crate::function::NETCONS_NETPOLL_SETUP,
                None,
                ctx.ret::<u64>(),
            );
            0
        }

        // 7.3+: netconsole's console write for plain targets takes the nbcon context.
        #[::aya_ebpf::macros::kprobe]
        pub fn nc_write_basic_entry(ctx: ::aya_ebpf::programs::ProbeContext) -> u32 {
            let wctxt: u64 = ctx.arg(1).unwrap_or(0);
            $crate::console_write_nbcon(&ctx, wctxt);
            0
        }

        // 7.3+: netconsole's own UDP send takes its target; the netpoll is `&nt->np`.
        #[::aya_ebpf::macros::kprobe]
        pub fn nc_send_udp_entry(ctx: ::aya_ebpf::programs::ProbeContext) -> u32 {
            let nt: u64 = ctx.arg(0).unwrap_or(0);
            let len: u64 = ctx.arg(2).unwrap_or(0);
            $crate::netcons_send_udp_enter(&ctx, nt, len);
            0
        }

        #[::aya_ebpf::macros::kprobe]
        pub fn do_cleanup_entry(ctx: ::aya_ebpf::programs::ProbeContext) -> u32 {
            $crate::cleanup_enter(ctx.arg(0).unwrap_or(0));
            0
        }

        #[::aya_ebpf::macros::kprobe]
        pub fn inner_cleanup_entry(ctx: ::aya_ebpf::programs::ProbeContext) -> u32 {
            $crate::inner_cleanup_enter(&ctx, ctx.arg(0).unwrap_or(0));
            0
        }
    };
}

/// The license section both objects carry: GPL-compatible, as bpf_probe_read and
/// perf output are GPL-only helpers.
#[macro_export]
macro_rules! license {
    () => {
        #[unsafe(link_section = "license")]
        #[unsafe(no_mangle)]
        static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";
    };
}
