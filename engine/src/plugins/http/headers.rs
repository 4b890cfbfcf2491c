//! The `headers` middleware (spec http-extras §3): headers added to the request the worker
//! sees, headers set on every answer, and CORS (preflights answered by the server, the
//! `Access-Control-*` headers on actual requests), with rs/cors's rules as rr runs them.

use crate::config::values::{ConfigError, Reader};
use crate::plugins::http::wire;

/// An allowed origin: exact (lower case) or with one `*` (prefix*suffix).
#[derive(Debug, Clone, PartialEq, Eq)]
enum OriginPattern {
    Exact(String),
    Wildcard(String, String),
}

/// Which origins CORS allows.
#[derive(Debug, Clone)]
enum Origins {
    All,
    List(Vec<OriginPattern>),
    /// `allowed_origin_regex`: matches anywhere in the origin unless anchored (Go's
    /// `MatchString`).
    Regex(regex::Regex),
}

/// `http.headers.cors`.
#[derive(Debug, Clone)]
pub struct Cors {
    origins: Origins,
    methods: Vec<String>,
    /// None: any header (`*`).
    headers: Option<Vec<String>>,
    exposed: Option<String>,
    credentials: bool,
    /// `Access-Control-Max-Age`'s value, when `max_age` > 0 (formatted once).
    max_age: Option<String>,
    /// `options_success_status` (rr's default 200).
    pub success_status: u16,
}

/// `http.headers`.
#[derive(Debug, Clone, Default)]
pub struct HeadersConfig {
    /// `request`: added to the request headers.
    pub request: Vec<(String, String)>,
    /// `response`: set on every answer.
    pub response: Vec<(String, String)>,
    /// `cors`.
    pub cors: Option<Cors>,
}

/// A comma-separated list (or a YAML list), each element trimmed (rr v6's rule; v5 trimmed
/// only the whole string, so `"GET, POST"` never matched POST).
fn list(reader: &Reader<'_>, key: &str) -> Result<Option<Vec<String>>, ConfigError> {
    Ok(reader.strings(key)?.map(|items| {
        items
            .iter()
            .flat_map(|item| item.split(','))
            .map(|item| item.trim().to_owned())
            .filter(|item| !item.is_empty())
            .collect()
    }))
}

impl HeadersConfig {
    /// Reads `http.headers`.
    ///
    /// # Errors
    /// Wrong types; an `allowed_origin_regex` that does not compile.
    pub fn read(reader: &Reader<'_>) -> Result<Self, ConfigError> {
        let cors = if reader.has("http.headers.cors") {
            let regex = reader
                .string("http.headers.cors.allowed_origin_regex")?
                .unwrap_or_default();
            let listed = list(reader, "http.headers.cors.allowed_origin")?
                .filter(|origins| !origins.is_empty() && !origins.iter().any(|o| o == "*"))
                .map(|origins| {
                    origins
                        .into_iter()
                        .map(|origin| {
                            let origin = origin.to_ascii_lowercase();
                            match origin.split_once('*') {
                                Some((prefix, suffix)) => {
                                    OriginPattern::Wildcard(prefix.to_owned(), suffix.to_owned())
                                }
                                None => OriginPattern::Exact(origin),
                            }
                        })
                        .collect()
                });
            let origins = if regex.is_empty() {
                listed.map_or(Origins::All, Origins::List)
            } else {
                // A regex replaces the list (rs/cors).
                Origins::Regex(regex::Regex::new(&regex).map_err(|error| {
                    ConfigError {
                        path: "http.headers.cors.allowed_origin_regex".into(),
                        line: reader
                            .node("http.headers.cors.allowed_origin_regex")
                            .map_or(0, |n| n.line),
                        message: format!("invalid regex: {error}"),
                    }
                })?)
            };
            let headers = list(reader, "http.headers.cors.allowed_headers")?.unwrap_or_else(|| {
                ["accept", "content-type", "x-requested-with"]
                    .map(str::to_owned)
                    .to_vec()
            });
            let headers = (!headers.iter().any(|h| h == "*"))
                .then(|| headers.iter().map(|h| h.to_ascii_lowercase()).collect());
            let exposed = list(reader, "http.headers.cors.exposed_headers")?
                .filter(|names| !names.is_empty())
                .map(|names| {
                    names
                        .iter()
                        .map(|name| canonical(name))
                        .collect::<Vec<_>>()
                        .join(", ")
                });
            let _ = reader.has("http.headers.cors.debug");
            Some(Cors {
                origins,
                methods: list(reader, "http.headers.cors.allowed_methods")?
                    .unwrap_or_else(|| ["GET", "POST", "HEAD"].map(str::to_owned).to_vec()),
                headers,
                exposed,
                credentials: reader
                    .bool("http.headers.cors.allow_credentials")?
                    .unwrap_or(false),
                max_age: reader
                    .unsigned("http.headers.cors.max_age")?
                    .filter(|seconds| *seconds > 0)
                    .map(|seconds| seconds.to_string()),
                success_status: reader
                    .unsigned("http.headers.cors.options_success_status")?
                    .and_then(|status| u16::try_from(status).ok())
                    .filter(|status| (100..600).contains(status))
                    .unwrap_or(200),
            })
        } else {
            None
        };
        Ok(Self {
            request: reader.string_map("http.headers.request")?,
            response: reader.string_map("http.headers.response")?,
            cors,
        })
    }
}

/// Go's canonical header name (`x-foo` → `X-Foo`).
fn canonical(name: &str) -> String {
    let mut out = Vec::with_capacity(name.len());
    ringrunner_protocol::http::push_canonical_header_name(name.as_bytes(), &mut out);
    String::from_utf8_lossy(&out).into_owned()
}

impl Cors {
    /// A preflight: OPTIONS with an `Access-Control-Request-Method`.
    #[must_use]
    pub fn is_preflight(method: &[u8], request_method: Option<&[u8]>) -> bool {
        method == b"OPTIONS" && request_method.is_some_and(|m| !m.is_empty())
    }

    fn origin_allowed(&self, origin: &str) -> bool {
        let patterns = match &self.origins {
            Origins::All => return true,
            Origins::Regex(regex) => return regex.is_match(origin),
            Origins::List(patterns) => patterns,
        };
        let origin = origin.to_ascii_lowercase();
        patterns.iter().any(|pattern| match pattern {
            OriginPattern::Exact(exact) => *exact == origin,
            OriginPattern::Wildcard(prefix, suffix) => {
                origin.len() >= prefix.len() + suffix.len()
                    && origin.starts_with(prefix.as_str())
                    && origin.ends_with(suffix.as_str())
            }
        })
    }

    fn method_allowed(&self, method: &str) -> bool {
        method == "OPTIONS" || self.methods.iter().any(|m| m == method)
    }

    /// rs/cors's check of `Access-Control-Request-Headers`: each name allowed as sent, the
    /// list strictly ascending (browsers send sorted lower-case lists), few empty elements.
    fn request_headers_allowed(&self, requested: &str) -> bool {
        let Some(allowed) = &self.headers else {
            return true;
        };
        let mut previous: Option<&str> = None;
        let mut empty = 0;
        for name in requested
            .split(',')
            .map(|name| name.trim_matches([' ', '\t']))
        {
            if name.is_empty() {
                empty += 1;
                if empty > 16 {
                    return false;
                }
                continue;
            }
            if previous.is_some_and(|previous| previous >= name)
                || !allowed.iter().any(|a| a == name)
            {
                return false;
            }
            previous = Some(name);
        }
        true
    }

    fn allow_origin_value<'a>(&self, origin: &'a str) -> &'a str {
        if matches!(self.origins, Origins::All) {
            "*"
        } else {
            origin
        }
    }

    /// Appends the header lines of a preflight's answer to `out`.
    pub fn preflight(
        &self,
        origin: &str,
        request_method: &str,
        request_headers: &str,
        out: &mut Vec<u8>,
    ) {
        let mut line =
            |name: &str, value: &str| wire::header(out, name.as_bytes(), value.as_bytes());
        line(
            "Vary",
            "Origin, Access-Control-Request-Method, Access-Control-Request-Headers",
        );
        if origin.is_empty()
            || !self.origin_allowed(origin)
            || !self.method_allowed(request_method)
            || (!request_headers.is_empty() && !self.request_headers_allowed(request_headers))
        {
            return;
        }
        line(
            "Access-Control-Allow-Origin",
            self.allow_origin_value(origin),
        );
        line("Access-Control-Allow-Methods", request_method);
        if !request_headers.is_empty() {
            line("Access-Control-Allow-Headers", request_headers);
        }
        if self.credentials {
            line("Access-Control-Allow-Credentials", "true");
        }
        if let Some(max_age) = &self.max_age {
            line("Access-Control-Max-Age", max_age);
        }
    }

    /// Appends the header lines of an actual (non-preflight) request's answer to `out`.
    pub fn actual(&self, origin: &str, method: &str, out: &mut Vec<u8>) {
        let mut line =
            |name: &str, value: &str| wire::header(out, name.as_bytes(), value.as_bytes());
        line("Vary", "Origin");
        if origin.is_empty() || !self.origin_allowed(origin) || !self.method_allowed(method) {
            return;
        }
        line(
            "Access-Control-Allow-Origin",
            self.allow_origin_value(origin),
        );
        if let Some(exposed) = &self.exposed {
            line("Access-Control-Expose-Headers", exposed);
        }
        if self.credentials {
            line("Access-Control-Allow-Credentials", "true");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::yaml;

    fn config(text: &str) -> HeadersConfig {
        let root = yaml::parse(text).unwrap();
        HeadersConfig::read(&Reader::new(&root)).unwrap()
    }

    /// The (name, value) pairs of header lines.
    fn lines(out: &[u8]) -> Vec<(String, String)> {
        String::from_utf8_lossy(out)
            .split("\r\n")
            .filter(|line| !line.is_empty())
            .map(|line| {
                let (name, value) = line.split_once(": ").unwrap();
                (name.to_owned(), value.to_owned())
            })
            .collect()
    }

    fn names(out: &[u8]) -> Vec<String> {
        lines(out).into_iter().map(|(name, _)| name).collect()
    }

    fn pairs(expected: &[(&str, &str)]) -> Vec<(String, String)> {
        expected
            .iter()
            .map(|(n, v)| ((*n).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn preflights_by_rs_cors_rules() {
        let headers = config(
            "http:\n  headers:\n    cors:\n      allowed_origin: \"https://a.test, https://*.b.test\"\n      allowed_methods: \"GET, PUT\"\n      allowed_headers: \"content-type, x-token\"\n      allow_credentials: true\n      max_age: 600\n",
        );
        let cors = headers.cors.unwrap();
        let mut out = Vec::new();
        cors.preflight("https://a.test", "PUT", "content-type,x-token", &mut out);
        assert_eq!(
            lines(&out),
            pairs(&[
                (
                    "Vary",
                    "Origin, Access-Control-Request-Method, Access-Control-Request-Headers"
                ),
                ("Access-Control-Allow-Origin", "https://a.test"),
                ("Access-Control-Allow-Methods", "PUT"),
                ("Access-Control-Allow-Headers", "content-type,x-token"),
                ("Access-Control-Allow-Credentials", "true"),
                ("Access-Control-Max-Age", "600"),
            ])
        );
        for (origin, method, requested) in [
            ("https://evil.test", "PUT", ""),
            ("", "PUT", ""),
            ("https://a.test", "DELETE", ""),
            ("https://a.test", "PUT", "x-token,content-type"),
            ("https://a.test", "PUT", "Content-Type"),
        ] {
            let mut out = Vec::new();
            cors.preflight(origin, method, requested, &mut out);
            assert_eq!(names(&out), ["Vary"], "{origin} {method} {requested}");
        }
        let mut out = Vec::new();
        cors.preflight("https://x.B.test", "GET", "", &mut out);
        assert!(names(&out).contains(&"Access-Control-Allow-Origin".to_owned()));
    }

    #[test]
    fn actual_requests_and_defaults() {
        let cors =
            config("http:\n  headers:\n    cors:\n      exposed_headers: \"x-total, x-page\"\n")
                .cors
                .unwrap();
        let mut out = Vec::new();
        cors.actual("https://any.test", "POST", &mut out);
        assert_eq!(
            lines(&out),
            pairs(&[
                ("Vary", "Origin"),
                ("Access-Control-Allow-Origin", "*"),
                ("Access-Control-Expose-Headers", "X-Total, X-Page"),
            ])
        );
        let mut out = Vec::new();
        cors.actual("https://any.test", "DELETE", &mut out);
        assert_eq!(
            names(&out),
            ["Vary"],
            "DELETE is not in the default methods"
        );
        assert_eq!(cors.success_status, 200);
        assert!(Cors::is_preflight(b"OPTIONS", Some(b"GET")));
        assert!(!Cors::is_preflight(b"OPTIONS", None));
        let regex = config(
            "http:\n  headers:\n    cors:\n      allowed_origin: \"*\"\n      allowed_origin_regex: '^https://[a-z]+[.]test$'\n",
        )
        .cors
        .unwrap();
        let mut out = Vec::new();
        regex.actual("https://app.test", "GET", &mut out);
        assert_eq!(
            lines(&out)[1],
            (
                "Access-Control-Allow-Origin".to_owned(),
                "https://app.test".to_owned()
            ),
            "a regex replaces the list and echoes the origin"
        );
        let mut out = Vec::new();
        regex.actual("http://app.test", "GET", &mut out);
        assert_eq!(names(&out), ["Vary"]);
        let root =
            yaml::parse("http:\n  headers:\n    cors:\n      allowed_origin_regex: '('\n").unwrap();
        let error = HeadersConfig::read(&Reader::new(&root)).unwrap_err();
        assert!(error.to_string().contains("invalid regex"), "{error}");
    }
}
