//! The `fledge` executable of the images is linked by `build/link-musl` in the order of
//! `build/code-order.txt` (`.cargo/config.toml`); cargo does not know of either, so a change to
//! them must link it again.
#![forbid(unsafe_code)]

fn main() {
    println!("cargo::rerun-if-changed=../../build/code-order.txt");
    println!("cargo::rerun-if-changed=../../build/link-musl");
}
