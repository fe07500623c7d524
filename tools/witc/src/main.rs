//! `tandem-witc`: the two steps of building a C plugin that need the
//! component-model libraries, so a C build needs only clang and this.
//!
//! ```text
//! tandem-witc bindings --wit DIR --world WORLD --out-dir DIR
//!     writes WORLD.h, WORLD.c and WORLD_component_type.o (what
//!     `wit-bindgen c --autodrop-borrows yes` writes)
//! tandem-witc component CORE.wasm -o PLUGIN.wasm
//!     wraps a core module into a component (what `wasm-tools component new` does),
//!     adding the WASI preview1 adapter when the module imports it
//! tandem-witc --version
//! ```

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use wit_bindgen_core::Files;
use wit_parser::Resolve;

/// The import module of WASI preview1, which wasi-libc uses for I/O.
const PREVIEW1: &str = "wasi_snapshot_preview1";

const USAGE: &str = "usage:
  tandem-witc bindings --wit DIR --world WORLD --out-dir DIR
  tandem-witc component CORE.wasm -o COMPONENT.wasm
  tandem-witc --version";

fn main() {
    if let Err(error) = run(std::env::args().skip(1).collect()) {
        eprintln!("tandem-witc: {error:#}");
        std::process::exit(1);
    }
}

fn run(args: Vec<String>) -> anyhow::Result<()> {
    match args.first().map(String::as_str) {
        Some("bindings") => {
            let wit = PathBuf::from(flag(&args, "--wit")?);
            let world = flag(&args, "--world")?;
            let out = PathBuf::from(flag(&args, "--out-dir")?);
            bindings(&wit, &world, &out)
        }
        Some("component") => {
            let input = args
                .get(1)
                .filter(|a| !a.starts_with('-'))
                .context("component: name the core module")?;
            let output = PathBuf::from(flag(&args, "-o")?);
            component(Path::new(input), &output)
        }
        Some("--version") => {
            println!("tandem-witc {}", env!("CARGO_PKG_VERSION"));
            Ok(())
        }
        _ => bail!("{USAGE}"),
    }
}

/// The value after `name`, which must be present.
fn flag(args: &[String], name: &str) -> anyhow::Result<String> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .cloned()
        .with_context(|| format!("missing {name} VALUE\n{USAGE}"))
}

fn bindings(wit: &Path, world: &str, out: &Path) -> anyhow::Result<()> {
    let mut resolve = Resolve::default();
    let (package, _) = resolve
        .push_path(wit)
        .with_context(|| format!("reading the WIT in {}", wit.display()))?;
    let world = resolve
        .select_world(&[package], Some(world))
        .with_context(|| format!("finding world {world:?}"))?;
    let mut files = Files::default();
    // The bindings drop the borrowed request and response when a hook
    // returns (`wit-bindgen c --autodrop-borrows yes`), so plugin code need
    // not, and cannot forget to.
    let opts = wit_bindgen_c::Opts {
        autodrop_borrows: wit_bindgen_c::Enabled::Yes,
        ..Default::default()
    };
    opts.build().generate(&mut resolve, world, &mut files)?;
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    for (name, contents) in files.iter() {
        let path = out.join(name);
        std::fs::write(&path, contents).with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}

fn component(input: &Path, output: &Path) -> anyhow::Result<()> {
    let module = std::fs::read(input).with_context(|| format!("reading {}", input.display()))?;
    let mut encoder = wit_component::ComponentEncoder::default();
    encoder.validate(true);
    encoder.module(&module).context("reading the core module")?;
    if imports_module(&module, PREVIEW1)? {
        encoder.adapter(
            PREVIEW1,
            wasi_preview1_component_adapter_provider::WASI_SNAPSHOT_PREVIEW1_REACTOR_ADAPTER,
        )?;
    }
    let bytes = encoder.encode().context("encoding the component")?;
    std::fs::write(output, bytes).with_context(|| format!("writing {}", output.display()))?;
    Ok(())
}

/// Whether the core module imports anything from `module`.
fn imports_module(bytes: &[u8], module: &str) -> anyhow::Result<bool> {
    for payload in wasmparser::Parser::new(0).parse_all(bytes) {
        if let wasmparser::Payload::ImportSection(reader) = payload? {
            for import in reader.into_imports() {
                if import?.module == module {
                    return Ok(true);
                }
            }
        }
    }
    Ok(false)
}
