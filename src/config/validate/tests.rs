use crate::config::secrets::Environment;
use crate::config::{AuthMode, Config, Diagnostic, Severity};

fn load(toml: &str) -> Result<Config, Vec<Diagnostic>> {
    Config::from_text("p.toml", toml, &Environment::default())
}

fn errors(toml: &str) -> Vec<Diagnostic> {
    load(toml)
        .expect_err("the configuration was accepted")
        .into_iter()
        .filter(|d| d.severity == Severity::Error)
        .collect()
}

fn warnings(toml: &str) -> Vec<String> {
    load(toml).expect("the configuration was refused").warnings.iter().map(ToString::to_string).collect()
}

const ROUTE: &str = "[[route]]\npath = \"/a\"\nmethods = [\"GET\"]\nupstream = \"http://127.0.0.1:5000\"\n";

#[test]
fn empty_file_is_the_embedded_default() {
    let config = load("").unwrap();
    assert_eq!(config.server.https.to_string(), "127.0.0.1:8443");
    assert_eq!(config.server.http.unwrap().to_string(), "127.0.0.1:8080");
    assert!(config.store.url.starts_with("sqlite://"));
    assert!(config.routes.is_empty());
    assert!(config.warnings.is_empty());
}

#[test]
fn routes_default_to_required_auth() {
    let config = load(ROUTE).unwrap();
    assert_eq!(config.routes[0].auth, AuthMode::Required);
}

#[test]
fn unknown_keys_are_errors_with_positions() {
    let e = errors("[limits]\nmax_bdy = \"1MiB\"\n");
    assert_eq!((e[0].line, e[0].column), (2, 1), "{e:?}");
    assert!(e[0].message.contains("max_bdy"), "{e:?}");
    let e = errors(&format!("{ROUTE}rate = 5\n"));
    assert_eq!(e[0].line, 5, "{e:?}");
}

#[test]
fn wrong_types_are_errors() {
    let e = errors("[limits]\nmax_headers = \"many\"\n");
    assert_eq!(e[0].line, 2, "{e:?}");
}

#[test]
fn impossible_values_are_errors() {
    let e = errors("[limits]\nmax_body = \"0\"\nheader_timeout = \"0s\"\nmax_connections = 0\n");
    assert_eq!(e.len(), 3, "{e:?}");
    assert_eq!(e.iter().map(|d| d.line).collect::<Vec<_>>(), [2, 3, 4]);
    let e = errors("[limits]\nupstream_timeout = \"30\"\n");
    assert!(e[0].message.contains("no unit"), "{e:?}");
}

#[test]
fn route_without_upstream_or_methods() {
    let e = errors("[[route]]\npath = \"/a\"\nmethods = [\"GET\"]\n");
    assert!(e[0].message.contains("no `upstream`"), "{e:?}");
    assert_eq!(e[0].line, 2);
    let e = errors("[[route]]\npath = \"/a\"\nupstream = \"http://x:1\"\n");
    assert!(e[0].message.contains("no `methods`"), "{e:?}");
}

#[test]
fn overlapping_routes_are_errors() {
    let e = errors(&format!("{ROUTE}\n{ROUTE}"));
    assert!(e[0].message.contains("never be reached"), "{e:?}");
    assert_eq!(e[0].line, 7, "{e:?}");
    let e = errors(
        "[[route]]\npath = \"/a/{x}\"\nmethods = [\"GET\"]\nupstream = \"http://h:1\"\n\
         [[route]]\npath = \"/a/{y}\"\nmethods = [\"POST\"]\nupstream = \"http://h:1\"\n",
    );
    assert!(e[0].message.contains("conflict"), "{e:?}");
    // Same pattern, disjoint methods: fine. HEAD is covered by GET.
    load(&format!("{ROUTE}\n{}", ROUTE.replace("GET", "POST"))).unwrap();
    assert!(!errors(&format!("{ROUTE}\n{}", ROUTE.replace("GET", "HEAD"))).is_empty());
}

#[test]
fn route_paths_must_be_canonical_and_not_reserved() {
    for path in ["/a//b", "/a/../b", "/a/", "/%61", "a", "/a;b", "/healthz"] {
        let toml = ROUTE.replace("\"/a\"", &format!("\"{path}\""));
        assert!(!errors(&toml).is_empty(), "{path} was accepted");
    }
    load(&ROUTE.replace("\"/a\"", "\"/a/{id}/b/{*rest}\"")).unwrap();
}

#[test]
fn upstreams_are_checked() {
    for upstream in ["ftp://h:1", "http://user:pw@h:1", "http://h:1/?q=1", "127.0.0.1:5000", "http:///x"] {
        let toml = ROUTE.replace("http://127.0.0.1:5000", upstream);
        assert!(!errors(&toml).is_empty(), "{upstream} was accepted");
    }
}

#[test]
fn secrets_in_the_store_url_are_refused() {
    let e = errors("[store]\nurl = \"postgres://app:hunter2-password@db/app\"\n");
    assert!(e[0].message.contains("PORTCULLIS_STORE_PASSWORD"), "{e:?}");
    assert!(!e[0].message.contains("hunter2"), "the error repeats the secret");
}

#[test]
fn cors_wildcard_with_credentials_is_an_error() {
    let e = errors("[cors]\nallowed_origins = [\"*\"]\nallow_credentials = true\n");
    assert!(e[0].message.contains("allow_credentials"), "{e:?}");
    let e = errors("[cors]\nallowed_origins = [\"https://a.example/path\"]\n");
    assert_eq!(e[0].line, 2, "{e:?}");
}

#[test]
fn lint_warns_about_weakened_protections() {
    let w = warnings("[headers]\ncontent_security_policy = \"off\"\nstrict_transport_security = \"max-age=60\"\n");
    assert!(w.iter().any(|w| w.contains("p.toml:2:") && w.contains("content_security_policy")), "{w:?}");
    assert!(w.iter().any(|w| w.contains("p.toml:3:") && w.contains("below one year")), "{w:?}");
    let w = warnings("[cors]\nallowed_origins = [\"*\"]\n");
    assert!(w.iter().any(|w| w.contains("any origin")), "{w:?}");
    let w = warnings("[server]\nhttp_behind_proxy = true\nhttp = \"127.0.0.1:8080\"\n");
    assert!(w.iter().any(|w| w.contains("trusted_proxies` is empty")), "{w:?}");
    let w = warnings(&ROUTE.replace("GET", "POST").replace("[[route]]\n", "[[route]]\nauth = \"none\"\n"));
    assert!(w.iter().any(|w| w.contains("without authentication")), "{w:?}");
    let w = warnings(&ROUTE.replace("127.0.0.1", "backend.internal"));
    assert!(w.iter().any(|w| w.contains("plain HTTP")), "{w:?}");
}

#[test]
fn environment_overrides_apply_and_keep_positions() {
    let env = Environment::from_pairs([("PORTCULLIS_LIMITS__MAX_BODY", "2MiB"), ("PORTCULLIS_ROUTE__0__AUTH", "none")]);
    let config = Config::from_text("p.toml", ROUTE, &env).unwrap();
    assert_eq!(config.limits.max_body, 2 << 20);
    assert_eq!(config.routes[0].auth, AuthMode::None);
    let env = Environment::from_pairs([("PORTCULLIS_LIMITS__MAX_BODY", "0")]);
    let e = Config::from_text("p.toml", "[limits]\nmax_body = \"1MiB\"\n", &env).unwrap_err();
    assert_eq!(e[0].line, 2, "{e:?}");
    assert!(e[0].file.contains("PORTCULLIS_LIMITS__MAX_BODY"), "{e:?}");
    let env = Environment::from_pairs([("PORTCULLIS_LIMITS__MAX_BOOODY", "1")]);
    assert!(Config::from_text("p.toml", "", &env).is_err());
}

#[test]
fn per_route_headers_override_global_ones() {
    let toml = format!(
        "[headers]\nx_frame_options = \"SAMEORIGIN\"\n{ROUTE}headers = {{ content_security_policy = \"default-src 'self'\" }}\n"
    );
    let config = load(&toml).unwrap();
    let get = |policy: &crate::gates::headers::HeaderPolicy, name: &str| {
        policy.set.iter().find(|(n, _)| n == name).map(|(_, v)| v.to_str().unwrap().to_owned())
    };
    assert_eq!(get(&config.headers, "x-frame-options").as_deref(), Some("SAMEORIGIN"));
    assert_eq!(get(&config.routes[0].headers, "x-frame-options").as_deref(), Some("SAMEORIGIN"));
    assert_eq!(get(&config.routes[0].headers, "content-security-policy").as_deref(), Some("default-src 'self'"));
    assert_eq!(
        get(&config.headers, "content-security-policy").as_deref(),
        Some("default-src 'none'; frame-ancestors 'none'")
    );
}
