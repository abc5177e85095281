//! Every kernel's complete module (shaders/common.wgsl + its own file) parses and
//! validates with naga, without a GPU: a WGSL mistake fails here with naga's message
//! instead of at pipeline creation. Every resource the kernel's entry point uses must
//! also be in the layout the Rust side builds from `Kernel::bindings` (plus the `Step`
//! uniform), with the same access.

use lfm_edge::gpu::{HalfDecode, Kernel, Reduce};
use naga::valid::{Capabilities, ValidationFlags, Validator};
use naga::{AddressSpace, StorageAccess};

/// What validating a module may assume: naga's defaults, what every WebGPU adapter
/// offers, plus `unpack2x16float` for the hardware half decoding and subgroup operations
/// for subgroup sums, each of which runs only where the device has it.
fn capabilities(halves: HalfDecode, reduce: Reduce) -> Capabilities {
    let halves = match halves {
        HalfDecode::Hardware => Capabilities::SHADER_FLOAT16_IN_FLOAT32,
        HalfDecode::Integer => Capabilities::default(),
    };
    match reduce {
        Reduce::Subgroups => halves | Capabilities::SUBGROUP,
        Reduce::Workgroup => halves,
    }
}

/// How the module declares a resource, in the words of `Access`'s Debug output.
fn access_name(space: AddressSpace) -> String {
    match space {
        AddressSpace::Uniform => "Uniform".into(),
        AddressSpace::Storage { access } if access == StorageAccess::LOAD => "Read".into(),
        AddressSpace::Storage { access }
            if access == StorageAccess::LOAD | StorageAccess::STORE =>
        {
            "ReadWrite".into()
        }
        other => format!("{other:?}"),
    }
}

/// `(group, binding, access)` of every resource the entry point uses, sorted.
fn entry_bindings(
    module: &naga::Module,
    info: &naga::valid::ModuleInfo,
    entry: usize,
) -> Vec<(u32, u32, String)> {
    let uses = info.get_entry_point(entry);
    let mut bindings: Vec<_> = module
        .global_variables
        .iter()
        .filter(|&(handle, _)| !uses[handle].is_empty())
        .filter_map(|(_, var)| {
            let b = var.binding.as_ref()?;
            Some((b.group, b.binding, access_name(var.space)))
        })
        .collect();
    bindings.sort();
    bindings
}

/// What the pipeline layout of `kernel` provides: its `@group(0)` buffers and the step.
fn expected_bindings(kernel: Kernel) -> Vec<(u32, u32, String)> {
    let group0 = kernel
        .bindings()
        .iter()
        .enumerate()
        .map(|(i, access)| (0, i as u32, format!("{access:?}")));
    group0.chain([(1, 0, "Uniform".to_string())]).collect()
}

/// Why `kernel`'s module is wrong, if it is.
fn check(kernel: Kernel, halves: HalfDecode, reduce: Reduce) -> Result<(), String> {
    let source = kernel.module_source(halves, reduce);
    let module = naga::front::wgsl::parse_str(&source)
        .map_err(|e| format!("does not parse:\n{}", e.emit_to_string(&source)))?;
    let info = Validator::new(ValidationFlags::all(), capabilities(halves, reduce))
        .validate(&module)
        .map_err(|e| format!("does not validate:\n{}", e.emit_to_string(&source)))?;
    let entry = kernel.entry_point();
    let Some(index) = module.entry_points.iter().position(|ep| ep.name == entry) else {
        return Err(format!("has no entry point {entry:?}"));
    };
    let (found, expected) = (
        entry_bindings(&module, &info, index),
        expected_bindings(kernel),
    );
    let missing: Vec<_> = found.iter().filter(|b| !expected.contains(b)).collect();
    if !missing.is_empty() {
        return Err(format!(
            "{entry} uses bindings {missing:?} that the Rust layout {expected:?} lacks"
        ));
    }
    Ok(())
}

#[test]
fn every_kernel_parses_and_validates() {
    let failures: Vec<String> = Kernel::ALL
        .into_iter()
        .flat_map(|kernel| [HalfDecode::Hardware, HalfDecode::Integer].map(|h| (kernel, h)))
        .flat_map(|(kernel, h)| [Reduce::Subgroups, Reduce::Workgroup].map(|r| (kernel, h, r)))
        .filter_map(|(kernel, halves, reduce)| {
            let error = check(kernel, halves, reduce).err()?;
            Some(format!(
                "{kernel:?} ({halves:?} halves, {reduce:?} sums) {error}"
            ))
        })
        .collect();
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

/// The kernels are compiled without naga's forced loop bound (gpu/kernels.rs), which is
/// sound only while every loop visibly ends: a `for` whose variable counts up to a bound
/// by one, two (pairs of elements) or a non-zero stride (a workgroup-size constant, or
/// `stride`, a launch's thread count), or halves a power of two down to zero. No `loop`
/// or `while`.
#[test]
fn every_kernel_loop_visibly_ends() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../shaders");
    let steps = [
        "2u",
        "WG",
        "REDUCE_WG",
        "ATTEND_WG",
        "ROW_THREADS",
        "TILE_K",
        "X_CHUNK",
        "stride",
    ];
    let mut loops = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let source = std::fs::read_to_string(&path).unwrap();
        for (n, line) in source.lines().enumerate() {
            let code = line.split("//").next().unwrap().trim();
            let at = format!("{}:{}: {code}", path.display(), n + 1);
            assert!(
                !code.starts_with("loop") && !code.starts_with("while"),
                "{at}"
            );
            let Some(header) = code.strip_prefix("for (var ") else {
                continue;
            };
            loops += 1;
            let header = header.trim_end_matches(") {");
            let parts: Vec<&str> = header.split(';').map(str::trim).collect();
            assert_eq!(parts.len(), 3, "{at}");
            let var = parts[0].split_whitespace().next().unwrap();
            let (cond, step) = (parts[1], parts[2]);
            let counts_up = cond.starts_with(&format!("{var} < "))
                && (step == format!("{var}++")
                    || steps.iter().any(|s| step == format!("{var} += {s}")));
            let halves = cond == format!("{var} > 0u") && step == format!("{var} >>= 1u");
            assert!(counts_up || halves, "{at}");
        }
    }
    assert!(loops > 20, "only {loops} loops found in {}", dir.display());
}
