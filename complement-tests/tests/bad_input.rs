//! The bad-input matrix: malformed JSON, wrong types, huge bodies, bad tokens, bad usernames,
//! unknown paths and methods. Every case checks the status and errcode, and then that the
//! server still serves and that stored data is intact (a user registered beforehand can still
//! log in with its password, and its display name is unchanged).

use complement_tests::{Method, TestServer, User, V3, enc, json};

const BODY_LIMIT: usize = 4096;
const KEEPER_PASSWORD: &str = "keeper-password-1";
const KEEPER_NAME: &str = "Keeper of the Keys";

struct Fixture {
    server: TestServer,
    keeper: User,
}

impl Fixture {
    async fn new() -> Self {
        let server = TestServer::builder()
            .max_request_body_bytes(BODY_LIMIT as i64)
            .start()
            .await;
        let keeper = server.client().register("keeper", KEEPER_PASSWORD).await;
        keeper
            .client
            .put(
                &displayname_path(&keeper.user_id),
                json!({ "displayname": KEEPER_NAME }),
            )
            .await
            .assert_status(200);
        Fixture { server, keeper }
    }

    /// The server still serves, the keeper's data is intact and its session still works.
    async fn assert_intact(&self, case: &str) {
        let client = self.server.client();
        let versions = client.get("/_matrix/client/versions").await;
        assert_eq!(versions.status, 200, "after {case}: {versions}");
        let login = client.login_password("keeper", KEEPER_PASSWORD).await;
        assert_eq!(
            login.status, 200,
            "after {case}: keeper cannot log in: {login}"
        );
        let name = client.get(&displayname_path(&self.keeper.user_id)).await;
        assert_eq!(
            name.json["displayname"], KEEPER_NAME,
            "after {case}: display name changed: {name}"
        );
        let whoami = self.keeper.whoami().await;
        assert_eq!(whoami.status, 200, "after {case}: session lost: {whoami}");
    }
}

fn displayname_path(user_id: &str) -> String {
    format!("{V3}/profile/{}/displayname", enc(user_id))
}

/// One request with a raw body, its expected status and errcodes.
struct Case {
    name: &'static str,
    method: Method,
    path: String,
    body: Vec<u8>,
    authenticated: bool,
    status: u16,
    errcodes: &'static [&'static str],
}

/// Runs every case (a failing case does not hide the next ones), checking after each that the
/// server is intact (fatal at once if not), then fails listing every case that went wrong.
async fn run_cases(fixture: &Fixture, cases: Vec<Case>) {
    let total = cases.len();
    let mut failures = Vec::new();
    for case in cases {
        eprintln!("--- case: {}", case.name);
        let client = if case.authenticated {
            fixture.keeper.client.clone()
        } else {
            fixture.server.client()
        };
        let expected = format!("{} {}", case.status, case.errcodes.join(" or "));
        match client
            .try_request_bytes(case.method, &case.path, case.body, "application/json")
            .await
        {
            Ok(resp)
                if resp.status == case.status
                    && resp.errcode().is_some_and(|c| case.errcodes.contains(&c))
                    && resp.json["error"].is_string() => {}
            Ok(resp) => failures.push(format!("{}: expected {expected}, got: {resp}", case.name)),
            Err(e) => failures.push(format!("{}: expected {expected}, got: {e}", case.name)),
        }
        fixture.assert_intact(case.name).await;
    }
    assert!(
        failures.is_empty(),
        "{} of {total} cases failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[tokio::test]
async fn malformed_json_is_not_json() {
    let fixture = Fixture::new().await;
    let keeper = &fixture.keeper.user_id;
    let not_json = &["M_NOT_JSON"];
    let case = |name, method, path: String, body: &[u8], authenticated| Case {
        name,
        method,
        path,
        body: body.to_vec(),
        authenticated,
        status: 400,
        errcodes: not_json,
    };
    let cases = vec![
        case(
            "truncated login",
            Method::POST,
            format!("{V3}/login"),
            br#"{"type": "m.login.password","#,
            false,
        ),
        case(
            "plain text register",
            Method::POST,
            format!("{V3}/register"),
            b"not json at all",
            false,
        ),
        case(
            "single quotes displayname",
            Method::PUT,
            displayname_path(keeper),
            b"{'displayname': 'x'}",
            true,
        ),
        case(
            "trailing garbage account data",
            Method::PUT,
            format!("{V3}/user/{}/account_data/org.example.x", enc(keeper)),
            br#"{"a": 1}}"#,
            true,
        ),
        case(
            "empty login body",
            Method::POST,
            format!("{V3}/login"),
            b"",
            false,
        ),
        case(
            "invalid utf-8 login",
            Method::POST,
            format!("{V3}/login"),
            b"{\"type\": \"\xff\xfe\"}",
            false,
        ),
        case(
            "unterminated filter",
            Method::POST,
            format!("{V3}/user/{}/filter", enc(keeper)),
            br#"{"room": {"timeline": {"limit": 1}"#,
            true,
        ),
        case(
            "NaN in refresh",
            Method::POST,
            format!("{V3}/refresh"),
            br#"{"refresh_token": NaN}"#,
            false,
        ),
    ];
    run_cases(&fixture, cases).await;
}

#[tokio::test]
async fn wrong_shapes_are_bad_json() {
    let fixture = Fixture::new().await;
    let keeper = &fixture.keeper.user_id;
    let bad_json = &["M_BAD_JSON"];
    let case = |name, method, path: String, body: serde_json::Value, authenticated| Case {
        name,
        method,
        path,
        body: body.to_string().into_bytes(),
        authenticated,
        status: 400,
        errcodes: bad_json,
    };
    let cases = vec![
        case(
            "login type is a number",
            Method::POST,
            format!("{V3}/login"),
            json!({ "type": 123 }),
            false,
        ),
        case(
            "login without type",
            Method::POST,
            format!("{V3}/login"),
            json!({ "identifier": { "type": "m.id.user", "user": "keeper" }, "password": "x" }),
            false,
        ),
        case(
            "login identifier user is a number",
            Method::POST,
            format!("{V3}/login"),
            json!({
                "type": "m.login.password",
                "identifier": { "type": "m.id.user", "user": 42 },
                "password": KEEPER_PASSWORD,
            }),
            false,
        ),
        case(
            "login password is an object",
            Method::POST,
            format!("{V3}/login"),
            json!({
                "type": "m.login.password",
                "identifier": { "type": "m.id.user", "user": "keeper" },
                "password": { "p": KEEPER_PASSWORD },
            }),
            false,
        ),
        case(
            "login body is an array",
            Method::POST,
            format!("{V3}/login"),
            json!(["m.login.password"]),
            false,
        ),
        case(
            "login body is a string",
            Method::POST,
            format!("{V3}/login"),
            json!("m.login.password"),
            false,
        ),
        case(
            "register username is a list",
            Method::POST,
            format!("{V3}/register"),
            json!({ "username": ["keeper"], "password": "x" }),
            false,
        ),
        case(
            "register inhibit_login is a string",
            Method::POST,
            format!("{V3}/register"),
            json!({ "username": "newbie", "password": "x", "inhibit_login": "yes" }),
            false,
        ),
        case(
            "displayname is a number",
            Method::PUT,
            displayname_path(keeper),
            json!({ "displayname": 42 }),
            true,
        ),
        case(
            "device display_name is a boolean",
            Method::PUT,
            format!("{V3}/devices/{}", enc(&fixture.keeper.device_id)),
            json!({ "display_name": false }),
            true,
        ),
        case(
            "new_password is a number",
            Method::POST,
            format!("{V3}/account/password"),
            json!({ "new_password": 5 }),
            true,
        ),
        case(
            "delete_devices devices is a string",
            Method::POST,
            format!("{V3}/delete_devices"),
            json!({ "devices": "ALL" }),
            true,
        ),
        case(
            "refresh without refresh_token",
            Method::POST,
            format!("{V3}/refresh"),
            json!({}),
            false,
        ),
        case(
            "refresh_token is a number",
            Method::POST,
            format!("{V3}/refresh"),
            json!({ "refresh_token": 1 }),
            false,
        ),
    ];
    run_cases(&fixture, cases).await;
}

#[tokio::test]
async fn huge_bodies_are_too_large() {
    let fixture = Fixture::new().await;
    let keeper = &fixture.keeper.user_id;
    let padding = |bytes: usize| "x".repeat(bytes);
    let case = |name, method, path: String, body: serde_json::Value, authenticated| Case {
        name,
        method,
        path,
        body: body.to_string().into_bytes(),
        authenticated,
        status: 413,
        errcodes: &["M_TOO_LARGE"],
    };
    let cases = vec![
        case(
            "64 KiB login",
            Method::POST,
            format!("{V3}/login"),
            json!({
                "type": "m.login.password",
                "identifier": { "type": "m.id.user", "user": "keeper" },
                "password": padding(64 * 1024),
            }),
            false,
        ),
        case(
            "512 KiB register",
            Method::POST,
            format!("{V3}/register"),
            json!({ "username": "bigone", "password": padding(512 * 1024) }),
            false,
        ),
        case(
            "64 KiB displayname",
            Method::PUT,
            displayname_path(keeper),
            json!({ "displayname": padding(64 * 1024) }),
            true,
        ),
        case(
            "256 KiB account data",
            Method::PUT,
            format!("{V3}/user/{}/account_data/org.example.big", enc(keeper)),
            json!({ "blob": padding(256 * 1024) }),
            true,
        ),
        case(
            "just over the limit filter",
            Method::POST,
            format!("{V3}/user/{}/filter", enc(keeper)),
            json!({ "event_fields": [padding(BODY_LIMIT)] }),
            true,
        ),
    ];
    run_cases(&fixture, cases).await;

    // Under the limit is fine, and nothing of the refused writes was stored.
    let path = format!("{V3}/user/{}/account_data/org.example.small", enc(keeper));
    let small = json!({ "blob": padding(BODY_LIMIT - 100) });
    fixture
        .keeper
        .client
        .put(&path, small.clone())
        .await
        .assert_status(200);
    assert_eq!(fixture.keeper.client.get(&path).await.ok(), small);
    fixture
        .keeper
        .client
        .get(&format!(
            "{V3}/user/{}/account_data/org.example.big",
            enc(keeper)
        ))
        .await
        .assert_error(404, "M_NOT_FOUND");
    fixture
        .server
        .client()
        .login_password("bigone", "x")
        .await
        .assert_error(403, "M_FORBIDDEN");
}

#[tokio::test]
async fn deeply_nested_json_does_not_hurt() {
    let fixture = Fixture::new().await;
    let depth = (BODY_LIMIT - 16) / 2;
    let body = format!("{{\"a\":{}{}}}", "[".repeat(depth), "]".repeat(depth));
    let path = format!(
        "{V3}/user/{}/account_data/org.example.deep",
        enc(&fixture.keeper.user_id)
    );
    let resp = fixture
        .keeper
        .client
        .request_bytes(Method::PUT, &path, body, "application/json")
        .await;
    assert!(
        resp.status == 200
            || (resp.status == 400
                && matches!(
                    resp.errcode(),
                    Some("M_NOT_JSON" | "M_BAD_JSON" | "M_TOO_LARGE")
                )),
        "deep nesting must be stored or refused as bad JSON: {resp}"
    );
    fixture.assert_intact("deeply nested JSON").await;
}

#[tokio::test]
async fn bad_tokens_are_rejected() {
    let fixture = Fixture::new().await;
    let client = fixture.server.client();
    let whoami = format!("{V3}/account/whoami");
    let valid = fixture.keeper.access_token.clone();
    let long = "t".repeat(10_000);
    let missing: &[&str] = &["M_MISSING_TOKEN"];
    let unknown: &[&str] = &["M_UNKNOWN_TOKEN"];
    let either: &[&str] = &["M_MISSING_TOKEN", "M_UNKNOWN_TOKEN"];
    let header = |value: String| (Some(value), String::new());
    let query = |query: &str| (None, query.to_owned());
    let cases = [
        ("no token", (None, String::new()), missing),
        ("unknown bearer", header("Bearer bogus".into()), unknown),
        (
            "valid token plus a character",
            header(format!("Bearer {valid}x")),
            unknown,
        ),
        (
            "valid token minus a character",
            header(format!("Bearer {}", &valid[..valid.len() - 1])),
            unknown,
        ),
        ("10k token", header(format!("Bearer {long}")), unknown),
        ("empty bearer", header("Bearer ".into()), either),
        (
            "basic auth",
            header("Basic a2VlcGVyOmtlZXBlcg==".into()),
            either,
        ),
        ("unknown query token", query("?access_token=bogus"), unknown),
        ("NUL query token", query("?access_token=%00abc"), unknown),
    ];
    for (name, (authorization, query), errcodes) in cases {
        eprintln!("--- case: {name}");
        let headers: Vec<(&str, &str)> = authorization
            .iter()
            .map(|value| ("Authorization", value.as_str()))
            .collect();
        let resp = client
            .request_with_headers(Method::GET, &format!("{whoami}{query}"), &headers)
            .await;
        resp.assert_error_in(401, errcodes);
        // Another authenticated endpoint refuses it the same way.
        let resp = client
            .request_with_headers(
                Method::GET,
                &format!("{V3}/user/{}/filter/1{query}", enc(&fixture.keeper.user_id)),
                &headers,
            )
            .await;
        resp.assert_error_in(401, errcodes);
        fixture.assert_intact(name).await;
    }
    // A write with an unknown token changes nothing.
    client
        .with_token("bogus")
        .put(
            &displayname_path(&fixture.keeper.user_id),
            json!({ "displayname": "Pwned" }),
        )
        .await
        .assert_error(401, "M_UNKNOWN_TOKEN");
    fixture.assert_intact("write with unknown token").await;
}

#[tokio::test]
async fn bad_usernames_are_invalid() {
    let fixture = Fixture::new().await;
    let client = fixture.server.client();
    let too_long = "a".repeat(256 - 2 - fixture.server.server_name().len());
    let cases = [
        ("space", "has space"),
        ("empty", ""),
        ("at sign", "@"),
        ("full user ID", "@keeper2:localhost"),
        ("colon", "colon:name"),
        ("tab", "tab\tname"),
        ("non-ASCII", "émile"),
        ("emoji", "🙂"),
        ("NUL", "nul\u{0}name"),
        ("too long for a 255-byte user ID", too_long.as_str()),
    ];
    for (name, username) in cases {
        eprintln!("--- case: {name}");
        client
            .register_dummy(json!({ "username": username, "password": "some-password-1" }))
            .await
            .assert_error(400, "M_INVALID_USERNAME");
        client
            .get(&format!(
                "{V3}/register/available?username={}",
                enc(username)
            ))
            .await
            .assert_error(400, "M_INVALID_USERNAME");
        fixture.assert_intact(name).await;
    }

    // Upper case: the spec lets a server either reject the username with M_INVALID_USERNAME
    // or map it "in a logical manner" onto a valid localpart; anything else is wrong.
    eprintln!("--- case: upper case");
    let resp = client
        .register_dummy(json!({ "username": "UpperCase", "password": "some-password-1" }))
        .await;
    if resp.status == 200 {
        let user_id = resp.json["user_id"].as_str().unwrap_or_default();
        assert!(
            !user_id.chars().any(|c| c.is_ascii_uppercase()) && user_id.starts_with('@'),
            "upper case must be rejected or mapped to a valid user ID: {resp}"
        );
    } else {
        resp.assert_error(400, "M_INVALID_USERNAME");
    }
    fixture.assert_intact("upper case").await;
}

#[tokio::test]
async fn unknown_paths_and_methods_are_unrecognized() {
    let fixture = Fixture::new().await;
    let client = &fixture.keeper.client;
    let cases = [
        (Method::GET, format!("{V3}/does_not_exist"), 404),
        (Method::POST, format!("{V3}/does/not/exist"), 404),
        (Method::GET, "/_matrix/client/v3".to_owned(), 404),
        (Method::GET, "/_matrix/nothing_here".to_owned(), 404),
        (Method::GET, "/_matrix/client/v99/login".to_owned(), 404),
        (Method::DELETE, format!("{V3}/login"), 405),
        (Method::PUT, "/_matrix/client/versions".to_owned(), 405),
        (Method::GET, format!("{V3}/logout"), 405),
        (Method::POST, format!("{V3}/account/whoami"), 405),
        (Method::PATCH, format!("{V3}/devices"), 405),
    ];
    for (method, path, status) in cases {
        let name = format!("{method} {path}");
        eprintln!("--- case: {name}");
        client
            .request(method, &path, None)
            .await
            .assert_error(status, "M_UNRECOGNIZED");
        fixture.assert_intact(&name).await;
    }
}

#[tokio::test]
async fn malformed_path_parameters_are_client_errors() {
    let fixture = Fixture::new().await;
    let client = &fixture.keeper.client;
    let paths = [
        format!("{V3}/profile/not-a-user-id"),
        format!("{V3}/profile/{}/displayname", enc("@")),
        format!("{V3}/profile/{}", enc("@nul\u{0}:localhost")),
        format!("{V3}/user/not-a-user-id/filter/1"),
        format!("{V3}/devices/{}", enc(&"D".repeat(5000))),
    ];
    for path in paths {
        eprintln!("--- case: GET {path}");
        let resp = client.get(&path).await;
        assert!(
            matches!(
                (resp.status, resp.errcode()),
                (400, Some("M_INVALID_PARAM" | "M_BAD_JSON"))
                    | (404, Some("M_NOT_FOUND" | "M_UNRECOGNIZED"))
                    | (403, Some("M_FORBIDDEN"))
            ),
            "a malformed path parameter is a client error, not {resp}"
        );
        fixture.assert_intact(&path).await;
    }
}
