//! The `tollgate` binary: run the gateway, `check` a config, or `hash-secret`.

use std::io::Read;
use std::process::ExitCode;

use tollgate::{Cli, Command, Loaded, Node, SecretKind};

/// mimalloc: fewer instructions per allocation than glibc's malloc on the request path
/// (benches/RESULTS.md, Performance). `tollgate::release_free_memory` purges it.
#[global_allocator]
static GLOBAL: Mimalloc = Mimalloc;

/// `mimalloc::MiMalloc`, but through mimalloc's plain entry points when the alignment asked for
/// is at most a word, which every mimalloc block has: the `_aligned` ones (the crate's choice
/// for every call) cost about twice the instructions of `mi_malloc` (benches/RESULTS.md).
struct Mimalloc;

/// Every mimalloc block is aligned to at least a machine word.
const WORD: usize = size_of::<usize>();

// SAFETY: each call forwards to mimalloc with the layout's size; a block from `mi_malloc`,
// `mi_zalloc` or `mi_realloc` is word-aligned, so those serve alignments up to a word and
// every other alignment goes to `mimalloc::MiMalloc`. `mi_free` frees blocks of either kind.
#[allow(unsafe_code)]
unsafe impl std::alloc::GlobalAlloc for Mimalloc {
    #[inline]
    unsafe fn alloc(&self, layout: std::alloc::Layout) -> *mut u8 {
        if layout.align() <= WORD {
            // SAFETY: see the impl.
            unsafe { libmimalloc_sys::mi_malloc(layout.size()).cast() }
        } else {
            // SAFETY: forwarded unchanged.
            unsafe { mimalloc::MiMalloc.alloc(layout) }
        }
    }

    #[inline]
    unsafe fn alloc_zeroed(&self, layout: std::alloc::Layout) -> *mut u8 {
        if layout.align() <= WORD {
            // SAFETY: see the impl.
            unsafe { libmimalloc_sys::mi_zalloc(layout.size()).cast() }
        } else {
            // SAFETY: forwarded unchanged.
            unsafe { mimalloc::MiMalloc.alloc_zeroed(layout) }
        }
    }

    #[inline]
    unsafe fn dealloc(&self, ptr: *mut u8, layout: std::alloc::Layout) {
        // SAFETY: forwarded unchanged (`mi_free`).
        unsafe { mimalloc::MiMalloc.dealloc(ptr, layout) }
    }

    #[inline]
    unsafe fn realloc(&self, ptr: *mut u8, layout: std::alloc::Layout, new_size: usize) -> *mut u8 {
        if layout.align() <= WORD {
            // SAFETY: see the impl; `ptr` came from this allocator.
            unsafe { libmimalloc_sys::mi_realloc(ptr.cast(), new_size).cast() }
        } else {
            // SAFETY: forwarded unchanged.
            unsafe { mimalloc::MiMalloc.realloc(ptr, layout, new_size) }
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse_args();
    init_logger();
    match cli.command {
        Some(Command::Check { .. }) => check(&cli),
        Some(Command::HashSecret { kind }) => hash_secret(kind),
        None => run(&cli),
    }
}

/// Third-party modules whose debug output dumps request headers, credentials included.
const HEADER_DUMPERS: [&str; 4] = ["pingora_proxy", "pingora_core", "pingora_http", "h2"];

/// `RUST_LOG` (default `info`), with [`HEADER_DUMPERS`] held at `info` when a global debug or
/// trace level would reach them: no level shows a secret unless `RUST_LOG` names such a module
/// explicitly (the README documents that risk).
fn log_spec(rust_log: Option<&str>) -> String {
    let spec = rust_log.unwrap_or("info").to_owned();
    let global_verbose = spec.split(',').any(|d| {
        let d = d.trim().to_ascii_lowercase();
        d == "debug" || d == "trace"
    });
    let mut out = spec.clone();
    if !spec.contains("pingora_core") {
        // Pingora's lifecycle lines misname SIGINT and the grace period; ours say what happens.
        out.push_str(",pingora_core::server=warn");
        // Its only ERROR there, "failed to acquire reusable stream", is a benign race: the
        // pool's idle watcher still holds a pooled connection just released, so the request
        // opens a new one. 1-2 % of requests under load; nothing else logs in that module tree
        // but a debug trace and a warning about data on an idle upstream connection.
        out.push_str(",pingora_core::connectors=off");
    }
    for m in HEADER_DUMPERS
        .iter()
        .filter(|m| global_verbose && !spec.contains(*m))
    {
        out.push_str(&format!(",{m}=info"));
    }
    out
}

fn init_logger() {
    let spec = log_spec(std::env::var("RUST_LOG").ok().as_deref());
    env_logger::Builder::new().parse_filters(&spec).init();
}

/// Loads node and resource files; prints warnings, then errors; `None` on any error.
fn load(cli: &Cli, running: bool) -> Option<(Node, Loaded)> {
    let node = match Node::load(cli.config()) {
        Ok(n) => n,
        Err(errs) => {
            errs.iter().for_each(|e| eprintln!("{e}"));
            return None;
        }
    };
    // `check` keeps stderr for warnings and errors alone; a starting gateway logs its progress.
    let report = if running {
        tollgate::load_logged(&node, &Default::default())
    } else {
        tollgate::load(&node, &Default::default())
    };
    report.warnings.iter().for_each(|w| eprintln!("{w}"));
    match report.result {
        Ok(loaded) => Some((node, loaded)),
        Err(errs) => {
            errs.iter().for_each(|e| eprintln!("{e}"));
            None
        }
    }
}

fn check(cli: &Cli) -> ExitCode {
    match load(cli, false) {
        Some((_, loaded)) => {
            println!("ok: {}", loaded.snapshot.counts);
            // The process ends here: freeing a million consumers one by one would only delay it.
            std::mem::forget(loaded);
            ExitCode::SUCCESS
        }
        None => ExitCode::FAILURE,
    }
}

fn run(cli: &Cli) -> ExitCode {
    let Some((node, loaded)) = load(cli, true) else {
        return ExitCode::FAILURE;
    };
    tollgate::release_free_memory();
    match tollgate::serve(node, loaded, cli.upgrade) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{e}");
            ExitCode::FAILURE
        }
    }
}

fn hash_secret(kind: SecretKind) -> ExitCode {
    let mut input = String::new();
    if let Err(e) = std::io::stdin().read_to_string(&mut input) {
        eprintln!("cannot read the secret from stdin: {e}");
        return ExitCode::FAILURE;
    }
    let secret = input
        .strip_suffix('\n')
        .map(|s| s.strip_suffix('\r').unwrap_or(s))
        .unwrap_or(&input);
    if secret.is_empty() {
        eprintln!("the secret is empty");
        return ExitCode::FAILURE;
    }
    match kind.hash(secret) {
        Ok(v) => {
            println!("{v}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{e}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::log_spec;

    #[test]
    fn debug_never_reaches_header_dumpers_unless_named() {
        let quiet = ",pingora_core::server=warn,pingora_core::connectors=off";
        assert_eq!(log_spec(None), format!("info{quiet}"));
        assert_eq!(log_spec(Some("warn")), format!("warn{quiet}"));
        let s = log_spec(Some("debug"));
        assert!(s.contains(",pingora_proxy=info") && s.contains(",pingora_core=info"));
        let s = log_spec(Some("debug,pingora_proxy=debug"));
        assert!(!s.contains("pingora_proxy=info") && s.contains("pingora_core=info"));
        assert_eq!(
            log_spec(Some("tollgate=debug")),
            format!("tollgate=debug{quiet}")
        );
    }
}

#[cfg(test)]
mod alloc_tests {
    use super::Mimalloc;
    use std::alloc::{GlobalAlloc, Layout};

    #[test]
    fn blocks_have_the_alignment_asked_for() {
        for align in [1, 2, 4, 8, 16, 32, 64, 4096] {
            for size in [1usize, 7, 8, 24, 40, 100, 4096, 1 << 20] {
                let size = size.next_multiple_of(align);
                let layout = Layout::from_size_align(size, align).expect("layout");
                // SAFETY: non-zero sizes; every block is freed with its own layout.
                #[allow(unsafe_code)]
                unsafe {
                    for zeroed in [false, true] {
                        let p = if zeroed {
                            Mimalloc.alloc_zeroed(layout)
                        } else {
                            Mimalloc.alloc(layout)
                        };
                        assert!(!p.is_null());
                        assert_eq!(p as usize % align, 0, "size {size}, align {align}");
                        if zeroed {
                            assert!(std::slice::from_raw_parts(p, size).iter().all(|&b| b == 0));
                        }
                        p.write_bytes(0xab, size);
                        let q = Mimalloc.realloc(p, layout, size * 3);
                        assert_eq!(q as usize % align, 0, "realloc {size}, align {align}");
                        assert!(
                            std::slice::from_raw_parts(q, size)
                                .iter()
                                .all(|&b| b == 0xab)
                        );
                        let grown = Layout::from_size_align(size * 3, align).expect("layout");
                        Mimalloc.dealloc(q, grown);
                    }
                }
            }
        }
    }
}
