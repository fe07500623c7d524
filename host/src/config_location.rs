//! Finds where a key's value is written in a TOML file, so that an error
//! about a well-formed but unacceptable value (out of range, say) can name
//! the line, as a syntax error does.
//!
//! serde drops spans once a file is deserialised, so the text is parsed a
//! second time, into toml's spanned document, only when there is an error
//! to place.

use toml::de::{DeTable, DeValue};

/// One step of a key path.
#[derive(Debug, PartialEq, Eq)]
enum Step {
    /// A table key.
    Key(String),
    /// An element of an array (of tables).
    Index(usize),
}

/// Splits a key as errors name it: dotted, a segment may be quoted
/// (`files."jwt.jwks"`), and an array element is `[n]`
/// (`limits.route[1].prefix`). None if it does not read as one.
fn steps(key: &str) -> Option<Vec<Step>> {
    let mut steps = Vec::new();
    let mut rest = key;
    while !rest.is_empty() {
        if let Some(quoted) = rest.strip_prefix('"') {
            let end = quoted.find('"')?;
            steps.push(Step::Key(quoted[..end].to_owned()));
            rest = &quoted[end + 1..];
        } else if let Some(indexed) = rest.strip_prefix('[') {
            let end = indexed.find(']')?;
            steps.push(Step::Index(indexed[..end].parse().ok()?));
            rest = &indexed[end + 1..];
        } else if let Some(after_dot) = rest.strip_prefix('.') {
            rest = after_dot;
        } else {
            let end = rest.find(['.', '[', '"']).unwrap_or(rest.len());
            if end == 0 {
                return None;
            }
            steps.push(Step::Key(rest[..end].to_owned()));
            rest = &rest[end..];
        }
    }
    Some(steps)
}

/// The 1-based line on which `key`'s value starts in `text`, if the text
/// parses and has that key.
pub fn value_line(text: &str, key: &str) -> Option<usize> {
    let document = DeTable::parse(text).ok()?;
    let mut found: Option<&toml::Spanned<DeValue<'_>>> = None;
    for step in steps(key)? {
        let next = match step {
            Step::Key(name) => {
                let table = match found.map(|value| value.get_ref()) {
                    None => document.get_ref(),
                    Some(DeValue::Table(table)) => table,
                    Some(_) => return None,
                };
                let (_, value) = table
                    .iter()
                    .find(|(candidate, _)| candidate.get_ref().as_ref() == name)?;
                value
            }
            Step::Index(index) => match found?.get_ref() {
                DeValue::Array(items) => items.get(index)?,
                _ => return None,
            },
        };
        found = Some(next);
    }
    let offset = found?.span().start.min(text.len());
    Some(text[..offset].matches('\n').count() + 1)
}

/// The key whose value, as written in `text`, covers byte `offset`: what
/// a type error that points at a value is about. Dotted, with `[n]` for an
/// element of an array and quotes around a segment that needs them.
pub fn key_at(text: &str, offset: usize) -> Option<String> {
    let document = DeTable::parse(text).ok()?;
    let mut path = String::new();
    find_in_table(document.get_ref(), offset, &mut path).then_some(path)
}

fn push_key(path: &mut String, name: &str) {
    if !path.is_empty() {
        path.push('.');
    }
    let bare = !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if bare {
        path.push_str(name);
    } else {
        path.push('"');
        path.push_str(name);
        path.push('"');
    }
}

fn find_in_table(table: &DeTable<'_>, offset: usize, path: &mut String) -> bool {
    for (name, value) in table {
        let before = path.len();
        push_key(path, name.get_ref());
        if find_in_value(value, offset, path) {
            return true;
        }
        path.truncate(before);
    }
    false
}

fn find_in_value(value: &toml::Spanned<DeValue<'_>>, offset: usize, path: &mut String) -> bool {
    match value.get_ref() {
        DeValue::Table(table) => find_in_table(table, offset, path),
        DeValue::Array(items) => {
            for (index, item) in items.iter().enumerate() {
                let before = path.len();
                path.push_str(&format!("[{index}]"));
                if find_in_value(item, offset, path) {
                    return true;
                }
                path.truncate(before);
            }
            // The array as a whole (a list where a number belongs).
            value.span().contains(&offset)
        }
        _ => value.span().contains(&offset),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_split_at_dots_quotes_and_indexes() {
        assert_eq!(
            steps("limits.route[1].prefix").unwrap(),
            [
                Step::Key("limits".into()),
                Step::Key("route".into()),
                Step::Index(1),
                Step::Key("prefix".into())
            ]
        );
        assert_eq!(
            steps("files.\"jwt.jwks\"").unwrap(),
            [Step::Key("files".into()), Step::Key("jwt.jwks".into())]
        );
        assert!(steps("a[x]").is_none());
        assert!(steps("files.\"open").is_none());
    }

    #[test]
    fn finds_the_line_of_a_value_however_the_table_is_written() {
        let text = "listen = \"127.0.0.1:8080\"\nworkers = 900\n\n[limits]\n# a comment\nmax_connections = 0\n\n[[limits.route]]\nprefix = \"/a\"\n\n[[limits.route]]\nprefix = \"b\"\n\n[files]\n\"jwt.jwks\" = \"keys.json\"\n";
        assert_eq!(value_line(text, "workers"), Some(2));
        assert_eq!(value_line(text, "limits.max_connections"), Some(6));
        assert_eq!(value_line(text, "limits.route[0].prefix"), Some(9));
        assert_eq!(value_line(text, "limits.route[1].prefix"), Some(12));
        assert_eq!(value_line(text, "files.\"jwt.jwks\""), Some(15));
        // Dotted keys and inline tables.
        let inline = "limits.max_connections = 0\nrecords = { sink = \"x\" }\n";
        assert_eq!(value_line(inline, "limits.max_connections"), Some(1));
        assert_eq!(value_line(inline, "records.sink"), Some(2));
    }

    #[test]
    fn the_key_of_a_value_is_found_from_its_offset() {
        let text = "workers = \"four\"\n[limits]\nmax_connections = -1\n[[limits.route]]\nprefix = 5\n[files]\n\"jwt.jwks\" = 1\n";
        let at = |needle: &str| key_at(text, text.find(needle).unwrap());
        assert_eq!(at("\"four\"").as_deref(), Some("workers"));
        assert_eq!(at("-1").as_deref(), Some("limits.max_connections"));
        assert_eq!(at("5\n").as_deref(), Some("limits.route[0].prefix"));
        let last = key_at(text, text.rfind("1\n").unwrap());
        assert_eq!(last.as_deref(), Some("files.\"jwt.jwks\""));
        assert_eq!(key_at(text, 0), None, "a key, not a value");
    }

    #[test]
    fn a_key_that_is_not_there_has_no_line() {
        let text = "[limits]\nmax_connections = 0\n";
        assert_eq!(value_line(text, "upstream"), None);
        assert_eq!(value_line(text, "limits.route[0].prefix"), None);
        assert_eq!(value_line(text, "limits.max_connections.deeper"), None);
        assert_eq!(value_line("not = [toml", "not"), None);
    }
}
