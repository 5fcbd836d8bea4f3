//! Builds the bundled libopus 1.3.1 (opus/) as a static library with the cc crate, with the
//! configuration Opus's own CMake build picks by default: floating point, C99 variable-length
//! arrays, and on x86_64 the SSE and SSE2 code compiled in (every x86_64 CPU has them) and the
//! SSE4.1 code chosen at run time (RTCD), which needs its files compiled with -msse4.1.
//! The source lists are read from Opus's own *_sources.mk, so they match its Makefiles.

use std::{fs, path::Path};

/// The files listed under `var` in one of Opus's `*_sources.mk` (`VAR = \ a.c \ b.c`).
fn sources(mk: &str, var: &str) -> Vec<String> {
    let path = Path::new("opus").join(mk);
    let text = fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut files = Vec::new();
    let mut inside = false;
    for line in text.lines() {
        let line = line.trim();
        if !inside {
            inside = line.split('=').next().map(str::trim) == Some(var) && line.contains('=');
            continue;
        }
        let file = line.trim_end_matches('\\').trim();
        if !file.is_empty() {
            files.push(format!("opus/{file}"));
        }
        if !line.ends_with('\\') {
            break;
        }
    }
    assert!(!files.is_empty(), "{var} not found in {mk}");
    files
}

fn base() -> cc::Build {
    let mut b = cc::Build::new();
    b.include("opus/include")
        .include("opus/celt")
        .include("opus/silk")
        .include("opus/silk/float")
        .include("opus")
        .define("OPUS_BUILD", None)
        .define("VAR_ARRAYS", None)
        .define("HAVE_LRINT", None)
        .define("HAVE_LRINTF", None)
        .warnings(false);
    // Opus warns that it is "very slow" without optimisation, and the tests' debug builds
    // encode audio in real time: optimise it in every profile.
    if std::env::var("OPT_LEVEL").as_deref() == Ok("0") {
        b.opt_level(2);
    }
    if x86_64() {
        for d in [
            "OPUS_HAVE_RTCD",
            "OPUS_X86_MAY_HAVE_SSE",
            "OPUS_X86_PRESUME_SSE",
            "OPUS_X86_MAY_HAVE_SSE2",
            "OPUS_X86_PRESUME_SSE2",
            "OPUS_X86_MAY_HAVE_SSE4_1",
        ] {
            b.define(d, None);
        }
    }
    b
}

fn x86_64() -> bool {
    std::env::var("CARGO_CFG_TARGET_ARCH").as_deref() == Ok("x86_64")
}

fn main() {
    println!("cargo:rerun-if-changed=opus");
    println!("cargo:rerun-if-changed=build.rs");
    let mut files = Vec::new();
    for (mk, var) in [
        ("celt_sources.mk", "CELT_SOURCES"),
        ("silk_sources.mk", "SILK_SOURCES"),
        ("silk_sources.mk", "SILK_SOURCES_FLOAT"),
        ("opus_sources.mk", "OPUS_SOURCES"),
        ("opus_sources.mk", "OPUS_SOURCES_FLOAT"),
    ] {
        files.extend(sources(mk, var));
    }
    let mut b = base();
    if x86_64() {
        files.extend(sources("celt_sources.mk", "CELT_SOURCES_SSE"));
        files.extend(sources("celt_sources.mk", "CELT_SOURCES_SSE2"));
        // Objects of their own, for their flag, linked into the one library below.
        let mut sse41 = base();
        sse41.flag("-msse4.1");
        sse41.files(sources("celt_sources.mk", "CELT_SOURCES_SSE4_1"));
        sse41.files(sources("silk_sources.mk", "SILK_SOURCES_SSE4_1"));
        b.objects(sse41.compile_intermediates());
    }
    b.files(files);
    b.compile("opus");
    println!("cargo:include={}/opus/include", env!("CARGO_MANIFEST_DIR"));
}
