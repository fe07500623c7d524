//! Developer commands. On this branch only the hot-swap benchmark:
//! `cargo xtask bench-swap` (the `bench` command wires it in on main).

#[path = "bench/swap.rs"]
mod swap;

fn main() -> anyhow::Result<()> {
    match std::env::args().nth(1).as_deref() {
        Some("bench-swap") => swap::run(),
        _ => anyhow::bail!("usage: cargo xtask bench-swap"),
    }
}
