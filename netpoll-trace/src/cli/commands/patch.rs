//! `patch`, `unpatch`, `status`: the runtime patch by hand, through the kernel layer's
//! driver of the netpoll_patch module.

use anyhow::Result;

use super::check;
use crate::{
    cli::exit::Exit,
    kernel::{
        attach::AttachChoice,
        object::ObjectChoice,
        patch_module::{self, MODULE_NAME},
    },
};

pub fn patch(dev: &str, module: Option<&std::path::Path>, json: bool) -> Result<Exit> {
    let p = patch_module::patch(dev, module)?;
    if json {
        println!("{}", serde_json::to_string(&p)?);
        return Ok(Exit::Ok);
    }
    println!(
        "patched {}: ops {} -> a private copy with an empty ndo_poll_controller (owner {} pinned while patched)",
        p.dev,
        p.ops(),
        p.owner
    );
    println!("note: a stopgap; on kernels >= 4.19 netpoll needs no poll controller: upgrade the kernel for the real fix");
    Ok(Exit::Ok)
}

pub fn unpatch(dev: &str, force: bool, json: bool) -> Result<Exit> {
    if force {
        crate::status!(Warn, "--force: restoring {dev}'s ops even if netpoll is attached; before 4.19 netconsole output on {dev} may stall");
    }
    let (p, unloaded) = patch_module::unpatch(dev, force)?;
    if json {
        let mut v = serde_json::to_value(&p)?;
        v["module_unloaded"] = unloaded.into();
        println!("{v}");
        return Ok(Exit::Ok);
    }
    println!("restored {}: ops {}", p.dev, p.ops());
    if unloaded {
        println!("nothing left patched: unloaded {MODULE_NAME}");
    }
    Ok(Exit::Ok)
}

pub fn status(json: bool, object: ObjectChoice, attach: AttachChoice) -> Result<Exit> {
    let list = patch_module::status()?;
    // What the tracer (and so the agent that patches) would use on this kernel, with the
    // same defaults (NETPOLL_TRACE_OBJECT, NETPOLL_TRACE_ATTACH) as watch and agent.
    let tracer = check::probe_tracer(object, attach);
    if json {
        let (object, attach_path, tracer_error) = match &tracer {
            Some(Ok(t)) => (Some(t.object.clone()), Some(t.attach_path.clone()), None),
            Some(Err(e)) => (None, None, Some(e.clone())),
            None => (None, None, Some("not tried: loading the eBPF objects needs root".to_string())),
        };
        println!(
            "{}",
            serde_json::json!({
                "module_loaded": !list.is_empty() || patch_module::module_loaded(),
                "patched": list,
                "object": object,
                "attach_path": attach_path,
                "tracer_error": tracer_error,
            })
        );
        return Ok(Exit::Ok);
    }
    match &tracer {
        Some(Ok(t)) => println!("tracer: the {} eBPF object, attach path {}", t.object, t.attach_path),
        Some(Err(e)) => println!("tracer: no eBPF object loads on this kernel: {e}"),
        None => println!("tracer: unknown (run as root: loading the eBPF objects needs it)"),
    }
    if list.is_empty() {
        println!("no device patched");
    } else {
        for p in &list {
            println!("{:<16} ifindex {:<4} ops {} -> a private copy (owner {})", p.dev, p.ifindex, p.ops(), p.owner);
        }
    }
    Ok(Exit::Ok)
}
