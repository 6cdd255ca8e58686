//! Decisions by table: identities × requirements.

use super::*;

fn caller(sub: &str, username: &str, roles: &[&str], scope: &str) -> AccessClaims {
    AccessClaims {
        iss: "i".into(),
        aud: "a".into(),
        sub: sub.into(),
        exp: 0,
        iat: 0,
        nbf: 0,
        jti: "j".into(),
        roles: roles.iter().map(|r| (*r).to_owned()).collect(),
        scope: scope.into(),
        auth_time: 0,
        client_id: None,
        username: Some(username.into()),
    }
}

fn facts(method: &str, path: &[(&str, &str)], query: &[(&str, &str)]) -> RequestFacts {
    let own = |pairs: &[(&str, &str)]| pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
    RequestFacts { method: method.into(), path: own(path), query: own(query), headers: vec![] }
}

fn rule(source: &str, params: &[&str]) -> Rule {
    Rule::compile(source, &params.iter().map(|p| (*p).to_owned()).collect::<Vec<_>>()).unwrap()
}

#[test]
fn roles_are_any_of_and_scopes_all_of() {
    let guest = caller("g", "guest1", &["guest"], "");
    let user = caller("u", "alice", &["user"], "orders:read");
    let admin = caller("a", "root", &["admin", "user"], "orders:read orders:write");
    let by_role = Policy::new(vec!["user".into(), "admin".into()], vec![], None);
    let by_scope = Policy::new(vec![], vec!["orders:read".into(), "orders:write".into()], None);
    let any = RequestFacts::default();
    for (who, role_ok, scope_ok) in
        [(None, false, false), (Some(&guest), false, false), (Some(&user), true, false), (Some(&admin), true, true)]
    {
        assert_eq!(by_role.decide(who, &any) == Decision::Allow, role_ok, "{who:?}");
        assert_eq!(by_scope.decide(who, &any) == Decision::Allow, scope_ok, "{who:?}");
    }
    assert_eq!(
        by_scope.decide(Some(&user), &any),
        Decision::Deny(DenyReason::MissingScope(vec!["orders:write".into()]))
    );
}

#[test]
fn ownership_rules() {
    let owner_or_admin = Policy::new(
        vec![],
        vec![],
        Some(rule("path.username == auth.username || 'admin' in auth.roles", &["username"])),
    );
    let alice = caller("1", "alice", &["user"], "");
    let bob = caller("2", "bob", &["user"], "");
    let admin = caller("3", "root", &["admin"], "");
    let on_alice = facts("GET", &[("username", "alice")], &[]);
    assert_eq!(owner_or_admin.decide(Some(&alice), &on_alice), Decision::Allow);
    assert!(matches!(owner_or_admin.decide(Some(&bob), &on_alice), Decision::Deny(DenyReason::RuleFalse(_))));
    assert_eq!(owner_or_admin.decide(Some(&admin), &on_alice), Decision::Allow);
    assert!(matches!(owner_or_admin.decide(None, &on_alice), Decision::Deny(_)), "anonymous");

    // Read for all, write for the owner.
    let read_all_write_owner =
        Policy::new(vec![], vec![], Some(rule("method == 'GET' || query.owner == auth.sub", &[])));
    assert_eq!(read_all_write_owner.decide(Some(&bob), &facts("GET", &[], &[])), Decision::Allow);
    assert_eq!(read_all_write_owner.decide(Some(&bob), &facts("PUT", &[], &[("owner", "2")])), Decision::Allow);
    assert!(matches!(
        read_all_write_owner.decide(Some(&bob), &facts("PUT", &[], &[("owner", "1")])),
        Decision::Deny(_)
    ));
    // A missing key is an evaluation error: denied.
    assert!(matches!(
        read_all_write_owner.decide(Some(&bob), &facts("PUT", &[], &[])),
        Decision::Deny(DenyReason::RuleFailed(..))
    ));
    // A rule that is not boolean denies.
    let not_boolean = Policy::new(vec![], vec![], Some(rule("auth.username", &[])));
    assert!(matches!(
        not_boolean.decide(Some(&alice), &RequestFacts::default()),
        Decision::Deny(DenyReason::RuleFailed(..))
    ));
}

#[test]
fn rules_are_checked_when_compiled() {
    let params = vec!["id".to_owned()];
    let error = Rule::compile("path.id == auth.sub &&", &params).unwrap_err();
    assert!(error.offset > 0, "{error:?}");
    let error = Rule::compile("user.id == auth.sub", &params).unwrap_err();
    assert!(error.message.contains("unknown variable `user`"), "{error:?}");
    let error = Rule::compile("path.owner == auth.sub", &params).unwrap_err();
    assert!(error.message.contains("no path parameter `owner`"), "{error:?}");
    assert_eq!(error.offset, 0);
    assert!(Rule::compile("path.id == auth.sub && size(query) < 5", &params).is_ok());
}

#[test]
fn query_parameters_that_repeat_are_not_offered() {
    let request = Request::get("/x?owner=alice&owner=bob&page=2").body(()).unwrap();
    let facts = RequestFacts::of(&request);
    assert_eq!(facts.query, vec![("page".to_owned(), "2".to_owned())]);
    let owner_rule = Policy::new(vec![], vec![], Some(rule("query.owner == auth.username", &[])));
    assert!(matches!(owner_rule.decide(Some(&caller("1", "alice", &[], "")), &facts), Decision::Deny(_)));
}

#[test]
fn path_parameters_are_decoded_without_splitting() {
    let mut request = Request::get("/records/alice&v=bob").body(()).unwrap();
    request.extensions_mut().insert(RouteParams(vec![("owner".into(), "alice&v=bob%20x".into())]));
    let facts = RequestFacts::of(&request);
    assert_eq!(facts.path, vec![("owner".to_owned(), "alice&v=bob x".to_owned())]);
    let owner = Policy::new(vec![], vec![], Some(rule("path.owner == auth.username", &["owner"])));
    assert!(matches!(owner.decide(Some(&caller("2", "bob", &[], "")), &facts), Decision::Deny(_)));
}

#[test]
fn credentials_are_not_offered_to_rules() {
    let request = Request::get("/x")
        .header("authorization", "Bearer secret")
        .header("x-user-roles", "admin")
        .header("x-tenant", "t1")
        .body(())
        .unwrap();
    let facts = RequestFacts::of(&request);
    assert!(
        facts.headers.iter().all(|(k, _)| k != "authorization" && k != "x-user-roles"),
        "forged identity headers are not offered"
    );
    assert!(facts.headers.contains(&("x-tenant".to_owned(), "t1".to_owned())));
}
