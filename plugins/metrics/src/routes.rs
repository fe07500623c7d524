//! Route templates such as `/orders/{id}`: a request path becomes the
//! template it matches, so the `route` label has as many values as there
//! are templates (plus one for everything else), never one per path.

/// One segment of a template.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Segment {
    /// Matches itself.
    Literal(String),
    /// `{name}`: matches any one non-empty segment.
    Param,
    /// `{name...}`: matches the rest of the path, even nothing.
    Rest,
}

impl Segment {
    /// Literal beats parameter beats rest when several templates match.
    fn rank(&self) -> u8 {
        match self {
            Segment::Literal(_) => 2,
            Segment::Param => 1,
            Segment::Rest => 0,
        }
    }
}

/// A parsed template.
#[derive(Clone, Debug)]
struct Template {
    text: String,
    segments: Vec<Segment>,
}

/// The configured templates.
#[derive(Clone, Debug, Default)]
pub struct Routes {
    templates: Vec<Template>,
}

/// The non-empty segments of a path: `/a//b/` is `a`, `b`.
fn segments(path: &str) -> impl Iterator<Item = &str> {
    path.split('/').filter(|s| !s.is_empty())
}

impl Routes {
    /// Parses the templates; the error names the template.
    pub fn new(templates: &[String]) -> Result<Routes, String> {
        let mut parsed = Vec::with_capacity(templates.len());
        for (index, text) in templates.iter().enumerate() {
            let at = |message: &str| format!("config key `routes[{index}]` ({text:?}): {message}");
            if !text.starts_with('/') {
                return Err(at("does not start with `/`"));
            }
            let parts: Vec<&str> = segments(text).collect();
            let mut segments = Vec::with_capacity(parts.len());
            for (position, part) in parts.iter().enumerate() {
                let segment = match part.strip_prefix('{').and_then(|p| p.strip_suffix('}')) {
                    Some(name) if name.ends_with("...") && name.len() > 3 => {
                        if position + 1 != parts.len() {
                            return Err(at("`{name...}` must be the last segment"));
                        }
                        Segment::Rest
                    }
                    Some(name) if !name.is_empty() && !name.contains(['{', '}']) => Segment::Param,
                    Some(_) => return Err(at("a parameter needs a name, e.g. `{id}`")),
                    None if part.contains(['{', '}']) => {
                        return Err(at("a parameter must be a whole segment"));
                    }
                    None => Segment::Literal((*part).to_owned()),
                };
                segments.push(segment);
            }
            if parsed.iter().any(|t: &Template| t.text == *text) {
                return Err(at("is listed twice"));
            }
            parsed.push(Template {
                text: text.clone(),
                segments,
            });
        }
        Ok(Routes { templates: parsed })
    }

    /// The most specific template that matches `path`: compared segment by
    /// segment, a literal beats a parameter, which beats a rest; at equal
    /// rank the longer template wins. `None` if no template matches.
    pub fn route(&self, path: &str) -> Option<&str> {
        let parts: Vec<&str> = segments(path).collect();
        self.templates
            .iter()
            .filter(|template| matches(&template.segments, &parts))
            .max_by(|a, b| {
                let ranks = |t: &Template| t.segments.iter().map(Segment::rank).collect::<Vec<_>>();
                ranks(a).cmp(&ranks(b))
            })
            .map(|template| template.text.as_str())
    }
}

fn matches(template: &[Segment], parts: &[&str]) -> bool {
    let mut position = 0;
    for segment in template {
        match segment {
            Segment::Rest => return true,
            Segment::Param if position < parts.len() => {}
            Segment::Literal(text) if parts.get(position) == Some(&text.as_str()) => {}
            _ => return false,
        }
        position += 1;
    }
    position == parts.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn routes(list: &[&str]) -> Routes {
        Routes::new(&list.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap()
    }

    #[test]
    fn the_most_specific_template_wins() {
        let routes = routes(&[
            "/orders/{id}",
            "/orders/new",
            "/orders",
            "/static/{path...}",
            "/",
        ]);
        assert_eq!(routes.route("/orders/7"), Some("/orders/{id}"));
        assert_eq!(routes.route("/orders/new"), Some("/orders/new"));
        assert_eq!(routes.route("/orders/"), Some("/orders"));
        assert_eq!(routes.route("/orders/7/items"), None);
        assert_eq!(routes.route("/static/a/b.css"), Some("/static/{path...}"));
        assert_eq!(routes.route("/static"), Some("/static/{path...}"));
        assert_eq!(routes.route("/"), Some("/"));
        assert_eq!(routes.route("/nope"), None);
    }

    #[test]
    fn bad_templates_name_the_entry() {
        for bad in ["orders", "/a/{}", "/a/x{id}", "/{rest...}/b", "/a/{id"] {
            let error = Routes::new(&[bad.to_string()]).unwrap_err();
            assert!(error.contains("routes[0]"), "{bad}: {error}");
        }
        assert!(Routes::new(&["/a".into(), "/a".into()]).is_err());
    }
}
