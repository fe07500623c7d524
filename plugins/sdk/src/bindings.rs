//! The code generated from `wit/tandem.wit`. Only the SDK uses it; plugins
//! see the wrappers in the crate root and `export_plugin!` reaches the export
//! glue through `$crate::bindings`.

// Generated code: documented from the WIT, full of `unsafe` by nature.
#![allow(missing_docs, unsafe_code)]

wit_bindgen::generate!({
    path: "../../wit",
    world: "plugin",
    // Imports take `&str` and `&[(&str, &str)]`, so wrappers pass borrowed
    // data straight through without building owned copies.
    ownership: Borrowing { duplicate_if_necessary: false },
    // `export_plugin!` expands in the plugin's crate, so the export macro
    // must be reachable from there.
    pub_export_macro: true,
    export_macro_name: "__tandem_export_component",
});
