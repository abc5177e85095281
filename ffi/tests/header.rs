//! ffi/include/lfm_edge.h, kept by hand, against the library: it declares exactly the
//! exported `lfm_*` functions, and its structs and enum values are the library's.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::mem::{offset_of, size_of};
use std::process::Command;

use common::{compile_c, library_dir, repo_root, run};
use lfm_edge::StopReason;
use lfm_edge_ffi::capi::{
    LfmGenerateOptions, LfmGeneration, LfmModelOptions, LfmSessionOptions, CONSTRAINT_JSON_SCHEMA,
    CONSTRAINT_LARK, CONSTRAINT_NONE, CONSTRAINT_REGEX,
};
use lfm_edge_ffi::chat_session::stop_code;
use lfm_edge_ffi::LfmStatus;

fn header() -> String {
    std::fs::read_to_string(repo_root().join("ffi/include/lfm_edge.h")).unwrap()
}

/// The functions a C header declares: top-level statements with a parameter list that
/// are not typedefs, named by the identifier before their `(`.
fn declared_functions(header: &str) -> BTreeSet<String> {
    let mut code = String::new();
    let mut rest = header;
    while let Some(start) = rest.find("/*") {
        code.push_str(&rest[..start]);
        rest = rest[start..]
            .split_once("*/")
            .map_or("", |(_, after)| after);
    }
    code.push_str(rest);
    let code: String = code
        .lines()
        .filter(|line| !line.trim_start().starts_with('#'))
        .collect::<Vec<_>>()
        .join("\n");
    code.split([';', '{', '}'])
        .map(str::trim)
        .filter(|s| s.contains('(') && !s.starts_with("typedef"))
        .filter_map(|s| {
            let before = s[..s.find('(')?].trim_end();
            let name = before
                .rsplit(|c: char| !(c.is_alphanumeric() || c == '_'))
                .next()?;
            Some(name.to_string())
        })
        .collect()
}

#[test]
fn declares_exactly_the_exported_functions() {
    let so = library_dir().join(format!(
        "{}lfm_edge_ffi{}",
        std::env::consts::DLL_PREFIX,
        std::env::consts::DLL_SUFFIX
    ));
    let nm = run(Command::new("nm").args(["-D", "--defined-only"]).arg(&so));
    let exported: BTreeSet<String> = String::from_utf8_lossy(&nm.stdout)
        .lines()
        .filter_map(|line| line.split_whitespace().last())
        .filter(|name| name.starts_with("lfm_"))
        .map(str::to_string)
        .collect();
    assert!(exported.len() > 10, "{exported:?}");
    assert_eq!(declared_functions(&header()), exported);
}

/// Each (name, value) the C compiler sees through the header.
fn c_values(expressions: &[(&str, String)]) -> BTreeMap<String, u64> {
    let dir = tempfile::tempdir().unwrap();
    let mut program = String::from(
        "#include <stddef.h>\n#include <stdio.h>\n#include \"lfm_edge.h\"\nint main(void) {\n",
    );
    for (name, expression) in expressions {
        program +=
            &format!("    printf(\"{name} %llu\\n\", (unsigned long long)({expression}));\n");
    }
    program += "    return 0;\n}\n";
    let source = dir.path().join("layout.c");
    std::fs::write(&source, program).unwrap();
    let exe = dir.path().join("layout");
    compile_c(&[source], &exe);
    let output = run(&mut Command::new(&exe));
    String::from_utf8(output.stdout)
        .unwrap()
        .lines()
        .map(|line| {
            let (name, value) = line.rsplit_once(' ').unwrap();
            (name.to_string(), value.parse().unwrap())
        })
        .collect()
}

#[test]
fn structs_and_enums_match_the_library() {
    macro_rules! layout {
        ($rust:ty, $c:literal, [$($field:ident),*]) => {
            [(concat!("sizeof ", $c), format!("sizeof({})", $c), size_of::<$rust>() as u64)]
                .into_iter()
                .chain([$((
                    concat!($c, ".", stringify!($field)),
                    format!("offsetof({}, {})", $c, stringify!($field)),
                    offset_of!($rust, $field) as u64,
                )),*])
        };
    }
    let statuses = [
        ("LFM_OK", LfmStatus::Ok),
        ("LFM_ERROR_NULL_ARGUMENT", LfmStatus::NullArgument),
        ("LFM_ERROR_INVALID_ARGUMENT", LfmStatus::InvalidArgument),
        ("LFM_ERROR_IO", LfmStatus::Io),
        ("LFM_ERROR_MODEL", LfmStatus::Model),
        ("LFM_ERROR_NO_ADAPTER", LfmStatus::NoAdapter),
        ("LFM_ERROR_GPU", LfmStatus::Gpu),
        ("LFM_ERROR_CONTEXT_FULL", LfmStatus::ContextFull),
        ("LFM_ERROR_BUFFER_TOO_SMALL", LfmStatus::BufferTooSmall),
        ("LFM_ERROR_BUSY", LfmStatus::Busy),
        ("LFM_ERROR_INTERNAL", LfmStatus::Internal),
        ("LFM_ERROR_BUDGET", LfmStatus::Budget),
    ];
    let stops = [
        ("LFM_STOP_MAX_TOKENS", StopReason::MaxTokens),
        ("LFM_STOP_END_OF_SEQUENCE", StopReason::EndOfSequence),
        ("LFM_STOP_CALLBACK", StopReason::Callback),
        ("LFM_STOP_CANCELLED", StopReason::Cancelled),
        ("LFM_STOP_CONTEXT_FULL", StopReason::ContextFull),
        ("LFM_STOP_STOP_STRING", StopReason::StopString),
    ];
    let constraint_kinds = [
        ("LFM_CONSTRAINT_NONE", CONSTRAINT_NONE),
        ("LFM_CONSTRAINT_JSON_SCHEMA", CONSTRAINT_JSON_SCHEMA),
        ("LFM_CONSTRAINT_REGEX", CONSTRAINT_REGEX),
        ("LFM_CONSTRAINT_LARK", CONSTRAINT_LARK),
    ];
    let backends = ["AUTO", "VULKAN", "METAL", "DX12", "GL"]
        .iter()
        .map(|name| format!("LFM_BACKEND_{name}"));
    let expected: Vec<(String, String, u64)> = layout!(
        LfmModelOptions,
        "lfm_model_options",
        [
            struct_size,
            backend,
            vram_budget_bytes,
            max_binding_bytes,
            max_buffer_bytes,
            kv_pool_tokens
        ]
    )
    .chain(layout!(
        LfmSessionOptions,
        "lfm_session_options",
        [struct_size, context_length, batch]
    ))
    .chain(layout!(
        LfmGenerateOptions,
        "lfm_generate_options",
        [
            struct_size,
            max_tokens,
            temperature,
            top_k,
            top_p,
            min_p,
            repetition_penalty,
            presence_penalty,
            frequency_penalty,
            penalty_window,
            seed,
            stop_strings,
            n_stop_strings,
            ignore_eos,
            constraint_kind,
            constraint
        ]
    ))
    .chain(layout!(
        LfmGeneration,
        "lfm_generation",
        [prompt_tokens, generated_tokens, stop_reason]
    ))
    .map(|(name, c, value)| (name.to_string(), c, value))
    .chain([(
        "sizeof lfm_status".into(),
        "sizeof(lfm_status)".into(),
        size_of::<LfmStatus>() as u64,
    )])
    .chain(
        statuses
            .iter()
            .map(|(name, s)| (name.to_string(), name.to_string(), *s as u64)),
    )
    .chain(
        stops
            .iter()
            .map(|(name, s)| (name.to_string(), name.to_string(), stop_code(*s) as u64)),
    )
    .chain([(
        "LFM_TOKEN_NONE".into(),
        "LFM_TOKEN_NONE".into(),
        u64::from(lfm_edge_ffi::capi::TOKEN_NONE),
    )])
    .chain(
        constraint_kinds
            .iter()
            .map(|(name, kind)| (name.to_string(), name.to_string(), *kind)),
    )
    .chain(
        backends
            .enumerate()
            .map(|(i, name)| (name.clone(), name, i as u64)),
    )
    .collect();
    // Backend numbers are the ones the library accepts, in order.
    for i in 0..5 {
        lfm_edge_ffi::model::backend(i).unwrap();
    }
    assert!(lfm_edge_ffi::model::backend(5).is_err());
    let queries: Vec<(&str, String)> = expected
        .iter()
        .map(|(name, c, _)| (name.as_str(), c.clone()))
        .collect();
    let seen = c_values(&queries);
    for (name, _, value) in &expected {
        assert_eq!(seen.get(name), Some(value), "{name}");
    }
}
