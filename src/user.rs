//! `tessera user ...`: account administration straight on the database.

use std::process::ExitCode;

use tessera_core::{Config, Services, store::KeepSessions};

use crate::cli::UserAction;

fn password_or_env(password: Option<String>) -> Result<String, String> {
    password
        .or_else(|| std::env::var("TESSERA_PASSWORD").ok())
        .ok_or_else(|| "give --password or set TESSERA_PASSWORD".to_owned())
}

pub async fn run(config: Config, action: UserAction) -> ExitCode {
    match execute(config, action).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("error: {message}");
            ExitCode::FAILURE
        }
    }
}

async fn execute(config: Config, action: UserAction) -> Result<(), String> {
    let services = Services::start(config).await.map_err(|e| e.to_string())?;
    let users = &services.users;
    match action {
        UserAction::Create {
            localpart,
            password,
            admin,
        } => {
            let password = password_or_env(password)?;
            let user_id = users.admin_user_id(&localpart).map_err(|e| e.to_string())?;
            users
                .create_account(&user_id, Some(&password), admin, None)
                .await
                .map_err(|e| e.to_string())?;
            println!("created {user_id}{}", if admin { " (admin)" } else { "" });
        }
        UserAction::ResetPassword {
            localpart,
            password,
        } => {
            let password = password_or_env(password)?;
            let user_id = users.admin_user_id(&localpart).map_err(|e| e.to_string())?;
            users
                .set_password(&user_id, &password, KeepSessions::None)
                .await
                .map_err(|e| e.to_string())?;
            println!("password of {user_id} reset; all its sessions ended");
        }
        UserAction::Deactivate { localpart } => {
            let user_id = users.admin_user_id(&localpart).map_err(|e| e.to_string())?;
            users
                .deactivate(&user_id)
                .await
                .map_err(|e| e.to_string())?;
            println!("deactivated {user_id}");
        }
        UserAction::List => {
            for account in users.list().await.map_err(|e| e.to_string())? {
                let mut flags = Vec::new();
                if account.admin {
                    flags.push("admin");
                }
                if account.deactivated {
                    flags.push("deactivated");
                }
                println!("{}\t{}", account.user_id, flags.join(","));
            }
        }
    }
    services.store.close().await;
    Ok(())
}
