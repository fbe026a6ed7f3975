//! The programs by name: the functions of netpoll-trace-ebpf carry exactly these
//! identifiers, and userspace (the attach table, `kernel::targets`) finds them through
//! these constants only. A Rust function's name cannot be a constant, so the eBPF side
//! writes each name once more, as its identifier; userspace's tests check the built
//! objects against `ALL` (modern) and `KPROBE` (legacy), so a program renamed on one
//! side only fails there, not in a guest.
//!
//! Per traced function (`function::*`): a kprobe (`_entry`) and kretprobe (`_exit`),
//! in both objects (netpoll-trace-ebpf's `kprobe_programs!`), and an fentry (`_fentry`)
//! and fexit (`_fexit`), in the modern object only (its src/main.rs). A function whose
//! entry tells all has no return program.

// netpoll_setup
pub const NETPOLL_SETUP_ENTRY: &str = "netpoll_setup_entry";
pub const NETPOLL_SETUP_EXIT: &str = "netpoll_setup_exit";
pub const NETPOLL_SETUP_FENTRY: &str = "netpoll_setup_fentry";
pub const NETPOLL_SETUP_FEXIT: &str = "netpoll_setup_fexit";

// __netpoll_setup
pub const INNER_NETPOLL_SETUP_ENTRY: &str = "inner_netpoll_setup_entry";
pub const INNER_NETPOLL_SETUP_EXIT: &str = "inner_netpoll_setup_exit";
pub const INNER_NETPOLL_SETUP_FENTRY: &str = "inner_netpoll_setup_fentry";
pub const INNER_NETPOLL_SETUP_FEXIT: &str = "inner_netpoll_setup_fexit";

// netpoll_poll_dev
pub const POLL_DEV_ENTRY: &str = "poll_dev_entry";
pub const POLL_DEV_EXIT: &str = "poll_dev_exit";
pub const POLL_DEV_FENTRY: &str = "poll_dev_fentry";
pub const POLL_DEV_FEXIT: &str = "poll_dev_fexit";

// netpoll_send_udp
pub const SEND_UDP_ENTRY: &str = "send_udp_entry";
pub const SEND_UDP_FENTRY: &str = "send_udp_fentry";

// netpoll_send_skb (5.8+)
pub const SEND_SKB_ENTRY: &str = "send_skb_entry";
pub const SEND_SKB_EXIT: &str = "send_skb_exit";
pub const SEND_SKB_FEXIT: &str = "send_skb_fexit";

// netpoll_send_skb_on_dev (before 5.8)
pub const SEND_SKB_ON_DEV_ENTRY: &str = "send_skb_on_dev_entry";
pub const SEND_SKB_ON_DEV_EXIT: &str = "send_skb_on_dev_exit";
pub const SEND_SKB_ON_DEV_FEXIT: &str = "send_skb_on_dev_fexit";

// netpoll_cleanup
pub const CLEANUP_ENTRY: &str = "cleanup_entry";
pub const CLEANUP_FENTRY: &str = "cleanup_fentry";

// __netpoll_cleanup
pub const INNER_CLEANUP_ENTRY: &str = "inner_cleanup_entry";
pub const INNER_CLEANUP_FENTRY: &str = "inner_cleanup_fentry";

// do_netpoll_cleanup (6.x)
pub const DO_CLEANUP_ENTRY: &str = "do_cleanup_entry";
pub const DO_CLEANUP_FENTRY: &str = "do_cleanup_fentry";

// netconsole:write_msg (a module function: kprobes only, whatever the method)
pub const NC_WRITE_MSG_ENTRY: &str = "nc_write_msg_entry";

// netconsole:netcons_netpoll_setup (7.3+; a module function: kprobes only)
pub const NC_SETUP_ENTRY: &str = "nc_setup_entry";
pub const NC_SETUP_EXIT: &str = "nc_setup_exit";

// netconsole:netpoll_send_udp (7.3+; a module function: kprobes only)
pub const NC_SEND_UDP_ENTRY: &str = "nc_send_udp_entry";

// netconsole:netconsole_write_basic (7.3+; a module function: kprobes only)
pub const NC_WRITE_BASIC_ENTRY: &str = "nc_write_basic_entry";

/// The kprobe and kretprobe programs: both objects.
pub const KPROBE: [&str; 19] = [
    NETPOLL_SETUP_ENTRY,
    NETPOLL_SETUP_EXIT,
    INNER_NETPOLL_SETUP_ENTRY,
    INNER_NETPOLL_SETUP_EXIT,
    POLL_DEV_ENTRY,
    POLL_DEV_EXIT,
    SEND_UDP_ENTRY,
    SEND_SKB_ENTRY,
    SEND_SKB_EXIT,
    SEND_SKB_ON_DEV_ENTRY,
    SEND_SKB_ON_DEV_EXIT,
    CLEANUP_ENTRY,
    INNER_CLEANUP_ENTRY,
    DO_CLEANUP_ENTRY,
    NC_WRITE_MSG_ENTRY,
    NC_SETUP_ENTRY,
    NC_SETUP_EXIT,
    NC_SEND_UDP_ENTRY,
    NC_WRITE_BASIC_ENTRY,
];

/// The fentry and fexit programs: the modern object only.
pub const FENTRY: [&str; 12] = [
    NETPOLL_SETUP_FENTRY,
    NETPOLL_SETUP_FEXIT,
    INNER_NETPOLL_SETUP_FENTRY,
    INNER_NETPOLL_SETUP_FEXIT,
    POLL_DEV_FENTRY,
    POLL_DEV_FEXIT,
    SEND_UDP_FENTRY,
    SEND_SKB_FEXIT,
    SEND_SKB_ON_DEV_FEXIT,
    CLEANUP_FENTRY,
    INNER_CLEANUP_FENTRY,
    DO_CLEANUP_FENTRY,
];

/// Every program: the modern object's (`KPROBE`, then `FENTRY`).
pub const ALL: [&str; KPROBE.len() + FENTRY.len()] = {
    let mut all = [""; KPROBE.len() + FENTRY.len()];
    let mut i = 0;
    while i < KPROBE.len() {
        all[i] = KPROBE[i];
        i += 1;
    }
    let mut j = 0;
    while j < FENTRY.len() {
        all[KPROBE.len() + j] = FENTRY[j];
        j += 1;
    }
    all
};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_program_is_named_once_with_its_kind_in_the_name() {
        for (i, a) in ALL.iter().enumerate() {
            assert!(ALL[i + 1..].iter().all(|b| a != b), "{a} twice");
        }
        assert!(
            KPROBE
                .iter()
                .all(|p| p.ends_with("_entry") || p.ends_with("_exit"))
        );
        assert!(
            FENTRY
                .iter()
                .all(|p| p.ends_with("_fentry") || p.ends_with("_fexit"))
        );
        assert_eq!(ALL[..KPROBE.len()], KPROBE);
        assert_eq!(ALL[KPROBE.len()..], FENTRY);
    }
}
