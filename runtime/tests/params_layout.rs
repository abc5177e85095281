//! Every Rust struct uploaded as a WGSL struct has that struct's size and member
//! offsets, as naga lays out the kernel's complete module, and every `#[repr(C)]`
//! struct of the GPU code is listed among them: no layout is kept in step by eye.

use lfm_edge::gpu::{HalfDecode, Reduce};
use lfm_edge::ops::layout::Mirror;
use lfm_edge::ops::MIRRORED;
use naga::proc::Layouter;
use naga::TypeInner;

/// `(name, offset)` of every member but the padding (named `_pad…` on both sides), by
/// offset.
type Fields = Vec<(String, usize)>;

/// Size and fields of the WGSL struct `mirror` names.
fn wgsl_layout(mirror: &Mirror) -> Result<(usize, Fields), String> {
    let source = mirror
        .kernel
        .module_source(HalfDecode::Integer, Reduce::Workgroup);
    let module = naga::front::wgsl::parse_str(&source).map_err(|e| e.emit_to_string(&source))?;
    let mut layouter = Layouter::default();
    layouter
        .update(module.to_ctx())
        .map_err(|e| e.to_string())?;
    let (handle, members) = module
        .types
        .iter()
        .find_map(|(handle, ty)| match &ty.inner {
            TypeInner::Struct { members, .. } if ty.name.as_deref() == Some(mirror.wgsl) => {
                Some((handle, members))
            }
            _ => None,
        })
        .ok_or("the module declares no such struct")?;
    let mut fields: Fields = members
        .iter()
        .filter_map(|m| Some((m.name.clone()?, m.offset as usize)))
        .filter(|(name, _)| !name.starts_with('_'))
        .collect();
    fields.sort_by_key(|&(_, offset)| offset);
    Ok((layouter[handle].size as usize, fields))
}

/// Why `mirror` is laid out unlike its WGSL struct, if it is.
fn check(mirror: &Mirror) -> Result<(), String> {
    let (size, fields) = wgsl_layout(mirror)?;
    let mut rust_fields: Fields = mirror.fields.iter().map(|&(n, o)| (n.into(), o)).collect();
    rust_fields.sort_by_key(|&(_, offset)| offset);
    if (mirror.size, &rust_fields) != (size, &fields) {
        return Err(format!(
            "is {} bytes with {rust_fields:?}, WGSL {size} bytes with {fields:?}",
            mirror.size
        ));
    }
    Ok(())
}

#[test]
fn mirrored_structs_match_their_wgsl_layout() {
    let failures: Vec<String> = MIRRORED
        .iter()
        .filter_map(|m| {
            let error = check(m).err()?;
            Some(format!("{} ({:?} `{}`) {error}", m.rust, m.kernel, m.wgsl))
        })
        .collect();
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn every_repr_c_struct_is_mirrored() {
    let src = concat!(env!("CARGO_MANIFEST_DIR"), "/src");
    let repr_c: usize = ["ops", "gpu"]
        .iter()
        .flat_map(|dir| std::fs::read_dir(format!("{src}/{dir}")).unwrap())
        .map(|entry| std::fs::read_to_string(entry.unwrap().path()).unwrap())
        .map(|text| text.lines().filter(|l| l.trim() == "#[repr(C)]").count())
        .sum();
    assert_eq!(
        repr_c,
        MIRRORED.len(),
        "src/ops and src/gpu declare {repr_c} #[repr(C)] structs; ops::MIRRORED lists {}",
        MIRRORED.len()
    );
}
