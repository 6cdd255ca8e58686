use crate::util::run_cli;

fn check(config: &str) -> (i32, String) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("p.toml"), config).unwrap();
    run_cli(dir.path(), &["check", "--config", "p.toml"], &[])
}

#[test]
fn a_good_file_passes() {
    let (code, out) = check(
        "[rate_limit]\ndefault = [{ rate = \"100/minute\", key = \"ip\" }]\n\
         [[route]]\npath = \"/a\"\nmethods = [\"GET\"]\nupstream = \"http://127.0.0.1:5000\"\n",
    );
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("p.toml: OK (1 route, 0 warnings)"), "{out}");
}

#[test]
fn errors_name_file_line_and_column() {
    let config = "[server]\nhttps = \"nowhere\"\n\n[limits]\nmax_body = \"0\"\n\n[[route]]\npath = \"/a\"\nmethods = [\"GET\"]\n";
    let (code, out) = check(config);
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("p.toml:2:9: error: `server.https` must be an address"), "{out}");
    assert!(out.contains("p.toml:5:12: error: `limits.max_body` must be above 0"), "{out}");
    assert!(out.contains("p.toml:8:8: error: the route has no `upstream`"), "{out}");
    assert!(out.contains("3 errors"), "{out}");
}

#[test]
fn unknown_keys_and_syntax_errors() {
    let (code, out) = check("[limits]\nmax_body_size = \"1MiB\"\n");
    assert_eq!(code, 2);
    assert!(out.contains("p.toml:2:1: error: unknown field `max_body_size`"), "{out}");
    let (code, out) = check("[limits\n");
    assert_eq!(code, 2);
    assert!(out.contains("p.toml:1:"), "{out}");
}

#[test]
fn warnings_make_a_security_lint() {
    let config = "[headers]\ncontent_security_policy = \"off\"\n\n[cors]\nallowed_origins = [\"*\"]\n\n\
                  [[route]]\npath = \"/w\"\nmethods = [\"POST\"]\nupstream = \"http://10.1.1.1:80\"\nauth = \"none\"\n";
    let (code, out) = check(config);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("p.toml:2:27: warning: protection turned off"), "{out}");
    assert!(out.contains("warning: [cors] allows any origin"), "{out}");
    assert!(out.contains("p.toml:11:8: warning: route `/w` allows POST without authentication"), "{out}");
    assert!(out.contains("warning: the upstream is plain HTTP on a non-local host"), "{out}");
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("p.toml"), config).unwrap();
    let (code, _) = run_cli(dir.path(), &["check", "--strict", "--config", "p.toml"], &[]);
    assert_eq!(code, 2, "--strict fails on warnings");
}

#[test]
fn environment_overrides_are_checked_too() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("p.toml"), "[limits]\nmax_body = \"1MiB\"\n").unwrap();
    let (code, out) = run_cli(dir.path(), &["check", "--config", "p.toml"], &[("PORTCULLIS_LIMITS__MAX_BODY", "lots")]);
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("PORTCULLIS_LIMITS__MAX_BODY"), "{out}");
    assert!(out.contains(":2:12: error"), "{out}");
    let (code, out) = run_cli(dir.path(), &["check", "--config", "p.toml"], &[("PORTCULLIS_LIMITS_MAX_BODY", "2MiB")]);
    assert_eq!(code, 2, "a misspelled override is an error: {out}");
    assert!(out.contains("unknown variable PORTCULLIS_LIMITS_MAX_BODY"), "{out}");
}

#[test]
fn serve_refuses_an_invalid_file() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("p.toml"), "[limits]\nmax_connections = 0\n").unwrap();
    let (code, out) = run_cli(dir.path(), &["serve", "--config", "p.toml"], &[]);
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("p.toml:2:19: error"), "{out}");
}
