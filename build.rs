//! Validates models/registry.toml at build time (the crate embeds it with include_str!), so a
//! bad entry fails the build with a message naming the entry and field instead of failing a
//! user's download later. The schema is shared with the crate, word for word.

#[allow(dead_code)]
#[path = "src/models/schema.rs"]
mod schema;

const REGISTRY: &str = "models/registry.toml";
const VOCAB: &str = "models/bpe_simple_vocab_16e6.txt.gz";

fn main() {
    println!("cargo:rerun-if-changed={REGISTRY}");
    println!("cargo:rerun-if-changed=src/models/schema.rs");
    // Embedded by the tokenizer with include_bytes! (which rustc tracks by itself). Watched only
    // when present: cargo treats a watched file that is missing as changed, and would rebuild
    // the crate on every build.
    if std::path::Path::new(VOCAB).exists() {
        println!("cargo:rerun-if-changed={VOCAB}");
    }

    link_blas();
    link_shared_memory();
    let text =
        std::fs::read_to_string(REGISTRY).unwrap_or_else(|e| fail(&format!("cannot read it: {e}")));
    if let Err(problems) = schema::parse(&text) {
        fail(&problems);
    }
}

/// The threaded browser build (feature `threads`, wasm atomics) links a memory that Web
/// Workers share: imported, shared, and as large as wasm32 allows (the one-thread builds'
/// memory grows to 4 GiB too), with the thread-local storage exports that wasm-bindgen's
/// thread start-up calls. This toolchain's wasm-ld gets none of it from rustc by itself.
fn link_shared_memory() {
    let wasm = std::env::var("CARGO_CFG_TARGET_ARCH").is_ok_and(|a| a == "wasm32");
    let features = std::env::var("CARGO_CFG_TARGET_FEATURE").unwrap_or_default();
    if !wasm || !features.split(',').any(|f| f == "atomics") {
        return;
    }
    for arg in [
        "--shared-memory",
        "--import-memory",
        "--max-memory=4294967296",
        "--export=__wasm_init_tls",
        "--export=__tls_size",
        "--export=__tls_align",
        "--export=__tls_base",
    ] {
        println!("cargo:rustc-link-arg-cdylib={arg}");
    }
}

/// The `blas` feature's sgemm comes from the system's OpenBLAS (Debian: libopenblas-dev).
fn link_blas() {
    let blas = std::env::var_os("CARGO_FEATURE_BLAS").is_some();
    let wasm = std::env::var("CARGO_CFG_TARGET_ARCH").is_ok_and(|a| a == "wasm32");
    if blas && !wasm {
        println!("cargo:rustc-link-lib=openblas");
        if !openblas_found() {
            println!(
                "cargo:warning=OpenBLAS (libopenblas.so) was not found in the usual library \
                 folders; if linking fails, install it (Debian: apt-get install libopenblas-dev) \
                 or build without it: --no-default-features --features cpu,cli[,gpu]"
            );
        }
    }
}

/// Whether `libopenblas` sits in a folder the linker searches by default or in LIBRARY_PATH.
fn openblas_found() -> bool {
    use std::path::PathBuf;
    println!("cargo:rerun-if-env-changed=LIBRARY_PATH");
    let listed = std::env::var("LIBRARY_PATH").unwrap_or_default();
    let mut dirs: Vec<PathBuf> = listed
        .split(':')
        .filter(|d| !d.is_empty())
        .map(Into::into)
        .collect();
    dirs.extend(["/usr/lib", "/usr/local/lib"].map(PathBuf::from));
    // Multiarch folders such as /usr/lib/x86_64-linux-gnu.
    let multiarch = std::fs::read_dir("/usr/lib")
        .into_iter()
        .flatten()
        .flatten();
    dirs.extend(multiarch.map(|entry| entry.path()));
    let names = ["libopenblas.so", "libopenblas.a", "libopenblas.dylib"];
    dirs.iter()
        .any(|d| names.iter().any(|n| d.join(n).exists()))
}

fn fail(message: &str) -> ! {
    eprintln!("error: {REGISTRY} is invalid:");
    for line in message.lines() {
        eprintln!("  {line}");
    }
    std::process::exit(1);
}
