//! `auth`: register users, then a mix of password logins and whoami calls.

use clap::Args;
use serde_json::json;

use super::{Accounts, CommonArgs, RegisteredUser, register};
use crate::client::{CsClient, RequestError};
use crate::load::run_phase;
use crate::stats::ScenarioReport;

#[derive(Args)]
pub struct AuthArgs {
    #[command(flatten)]
    pub common: CommonArgs,
    /// Users to register in the first phase.
    #[arg(long, default_value_t = 200, value_parser = clap::value_parser!(u32).range(1..))]
    pub users: u32,
    /// Login and whoami operations in the second phase, spread over the registered users.
    #[arg(long, default_value_t = 2000)]
    pub requests: u32,
    /// Percentage of second-phase operations that are logins; the rest are whoami.
    #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u32).range(0..=100))]
    pub login_percent: u32,
}

pub async fn run(args: &AuthArgs) -> Result<ScenarioReport, String> {
    let concurrency = args.common.concurrency();
    let client = args.common.client(concurrency)?;
    let accounts = Accounts::generate();
    let password = &accounts.password;

    eprintln!(
        "auth: registering {} users as {}_*",
        args.users, accounts.prefix
    );
    let registration = run_phase(concurrency, args.users as usize, |i| {
        register(&client, &args.common, accounts.username(i), password)
    })
    .await;
    let users = &registration.outputs;
    if users.is_empty() {
        let reasons: Vec<String> = registration
            .reports()
            .into_iter()
            .filter_map(|r| r.first_error)
            .collect();
        return Err(format!("no user could register: {}", reasons.join("; ")));
    }

    eprintln!(
        "auth: {} operations ({}% login, rest whoami) over {} users",
        args.requests,
        args.login_percent,
        users.len()
    );
    let mixed = run_phase(concurrency, args.requests as usize, |i| {
        let user = &users[i % users.len()];
        let is_login = is_login(i, args.login_percent);
        let client = &client;
        async move {
            if is_login {
                ("login", login(client, user, password).await)
            } else {
                ("whoami", whoami(client, user).await)
            }
        }
    })
    .await;

    let mut operations = registration.reports();
    operations.extend(mixed.reports());
    Ok(ScenarioReport {
        scenario: "auth".into(),
        base_url: args.common.base_url.clone(),
        parameters: json!({
            "users": args.users,
            "requests": args.requests,
            "concurrency": args.common.concurrency,
            "login_percent": args.login_percent,
            "registration": args.common.registration_kind(),
        }),
        operations,
    })
}

/// Spreads logins evenly through the sequence instead of in blocks, so every stretch of the
/// run sees the same mix: operation `i` is a login when `i * percent mod 100 < percent`.
fn is_login(i: usize, login_percent: u32) -> bool {
    (i as u64 * u64::from(login_percent)) % 100 < u64::from(login_percent)
}

async fn login(
    client: &CsClient,
    user: &RegisteredUser,
    password: &str,
) -> Result<(), RequestError> {
    let session = client.login(&user.username, password).await?;
    expect_user(&session.user_id, user)
}

async fn whoami(client: &CsClient, user: &RegisteredUser) -> Result<(), RequestError> {
    let user_id = client.whoami(user.token()).await?;
    expect_user(&user_id, user)
}

/// A fast wrong answer must not count as a success.
fn expect_user(user_id: &str, user: &RegisteredUser) -> Result<(), RequestError> {
    if user_id == user.session.user_id {
        Ok(())
    } else {
        Err(RequestError::Malformed(format!(
            "expected {}, got {user_id}",
            user.session.user_id
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::is_login;

    #[test]
    fn login_mix_is_spread_evenly() {
        let logins = |percent| (0..100).filter(|&i| is_login(i, percent)).count();
        assert_eq!(logins(0), 0);
        assert_eq!(logins(25), 25);
        assert_eq!(logins(50), 50);
        assert_eq!(logins(100), 100);
        // 50% alternates rather than running 50 logins then 50 whoamis.
        assert!(is_login(0, 50) && !is_login(1, 50) && is_login(2, 50));
    }
}
