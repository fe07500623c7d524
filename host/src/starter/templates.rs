//! The files of each starter, embedded from `templates/` at build time, and
//! the contract from `wit/` that the C, Python and JavaScript starters build
//! against.

use super::Lang;

/// The contract of this Tandem, written into starters that need it.
pub const WIT: &str = include_str!("../../../wit/tandem.wit");

/// A file of a starter: where it goes and its text with `{{...}}` slots.
pub struct Template {
    /// Path inside the new project; `{{name}}` is replaced.
    pub path: &'static str,
    /// Contents with `{{name}}`, `{{crate}}`, `{{metric}}` and `{{sdk_path}}`.
    pub text: &'static str,
    /// Whether the file is a script to make executable.
    pub executable: bool,
}

const fn file(path: &'static str, text: &'static str) -> Template {
    Template {
        path,
        text,
        executable: false,
    }
}

const fn script(path: &'static str, text: &'static str) -> Template {
    Template {
        path,
        text,
        executable: true,
    }
}

/// Files every starter has.
const COMMON: &[Template] = &[
    file(
        "tandem.toml",
        include_str!("../../../templates/common/tandem.toml"),
    ),
    file(
        "plugins.d/{{name}}.toml",
        include_str!("../../../templates/common/plugin.toml"),
    ),
    file(
        "requests.jsonl",
        include_str!("../../../templates/common/requests.jsonl"),
    ),
    file(
        ".gitignore",
        include_str!("../../../templates/common/gitignore"),
    ),
];

const RUST: &[Template] = &[
    file(
        "Cargo.toml",
        include_str!("../../../templates/rust/Cargo.toml"),
    ),
    file(
        ".cargo/config.toml",
        include_str!("../../../templates/rust/cargo-config.toml"),
    ),
    file(
        "src/lib.rs",
        include_str!("../../../templates/rust/src/lib.rs"),
    ),
    file(
        "README.md",
        include_str!("../../../templates/rust/README.md"),
    ),
    script("build.sh", include_str!("../../../templates/rust/build.sh")),
];

const C: &[Template] = &[
    file("plugin.c", include_str!("../../../templates/c/plugin.c")),
    file("README.md", include_str!("../../../templates/c/README.md")),
    script("build.sh", include_str!("../../../templates/c/build.sh")),
];

const PYTHON: &[Template] = &[
    file("app.py", include_str!("../../../templates/python/app.py")),
    file(
        "README.md",
        include_str!("../../../templates/python/README.md"),
    ),
    script(
        "build.sh",
        include_str!("../../../templates/python/build.sh"),
    ),
];

const JS: &[Template] = &[
    file("app.js", include_str!("../../../templates/js/app.js")),
    file(
        "package.json",
        include_str!("../../../templates/js/package.json"),
    ),
    file("README.md", include_str!("../../../templates/js/README.md")),
    script("build.sh", include_str!("../../../templates/js/build.sh")),
];

/// The files of a starter in `lang`, common ones included.
pub fn files(lang: Lang) -> impl Iterator<Item = &'static Template> {
    let own = match lang {
        Lang::Rust => RUST,
        Lang::C => C,
        Lang::Python => PYTHON,
        Lang::Js => JS,
    };
    own.iter().chain(COMMON)
}
