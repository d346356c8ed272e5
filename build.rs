//! Links the nook binary as a position-dependent executable. A PIE's relocated read-only data
//! (`.data.rel.ro`, about 350 KB here) is written by the dynamic loader in every process and
//! so is private memory; without PIE it stays clean, shared page cache. That matters for the
//! one long-lived nook process per container, the monitor (see bench/monitor.sh).
fn main() {
    println!("cargo:rustc-link-arg-bins=-no-pie");
    println!("cargo:rerun-if-changed=build.rs");
}
