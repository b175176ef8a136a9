//! `tessera serve`: start-up, one task per listener, graceful shutdown.

use std::{net::SocketAddr, process::ExitCode, sync::Arc};

use tessera_client_api::Metrics;
use tessera_core::{
    Config, Services,
    config::{ListenerConfig, LogFormat},
};
use tracing_subscriber::EnvFilter;

fn init_logging(config: &Config) {
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new(log_directives(&config.logging.level)));
    // Colour codes only where a person reads a terminal, not in files or journald.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stdout());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi);
    match config.logging.format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

/// The configured level, with ruma-state-res (which reports every auth check at info) quieted
/// unless the configuration says otherwise.
fn log_directives(level: &str) -> String {
    if level.contains("ruma_state_res") {
        level.to_owned()
    } else {
        format!("{level},ruma_state_res=warn")
    }
}

pub async fn serve(config: Config) -> ExitCode {
    init_logging(&config);
    // Both ring and aws-lc could back rustls; this binary links only ring, so select it.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let services = match Services::start(config).await {
        Ok(services) => services,
        Err(e) => {
            tracing::error!("cannot start: {e}");
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    let metrics = Arc::new(Metrics::default());
    let handle = axum_server::Handle::new();
    let mut tasks = tokio::task::JoinSet::new();
    for listener in &services.config.listeners {
        let router = tessera_client_api::router(services.clone(), &listener.apis, metrics.clone());
        match start_listener(listener, router, handle.clone()).await {
            Ok(task) => {
                tasks.spawn(task);
                tracing::info!(url = %listener.url(), apis = ?listener.apis, "listening on {}", listener.url());
            }
            Err(e) => {
                tracing::error!("cannot listen on {}: {e}", listener.url());
                eprintln!("error: cannot listen on {}: {e}", listener.url());
                return ExitCode::FAILURE;
            }
        }
    }
    announce_first_admin(&services).await;
    tokio::spawn(tessera_core::federation::sender::run(services.clone()));

    let shutdown = handle.clone();
    tokio::spawn(async move {
        shutdown_signal().await;
        tracing::info!("shutting down");
        shutdown.graceful_shutdown(Some(std::time::Duration::from_secs(10)));
    });
    let mut code = ExitCode::SUCCESS;
    while let Some(result) = tasks.join_next().await {
        if let Ok(Err(e)) | Err(e) = result.map_err(std::io::Error::other) {
            tracing::error!("listener failed: {e}");
            code = ExitCode::FAILURE;
        }
    }
    services.store.close().await;
    code
}

type ListenerTask = std::pin::Pin<Box<dyn Future<Output = std::io::Result<()>> + Send>>;

/// Binds now (so a port clash fails start-up) and returns the serving future.
async fn start_listener(
    listener: &ListenerConfig,
    router: axum::Router,
    handle: axum_server::Handle,
) -> std::io::Result<ListenerTask> {
    let addr = SocketAddr::new(listener.bind, listener.port);
    let std_listener = std::net::TcpListener::bind(addr)?;
    std_listener.set_nonblocking(true)?;
    let service = router.into_make_service_with_connect_info::<SocketAddr>();
    match listener.tls() {
        Some((cert, key)) => {
            let tls = axum_server::tls_rustls::RustlsConfig::from_pem_file(cert, key).await?;
            let server = axum_server::from_tcp_rustls(std_listener, tls).handle(handle);
            Ok(Box::pin(server.serve(service)))
        }
        None => {
            let server = axum_server::from_tcp(std_listener).handle(handle);
            Ok(Box::pin(server.serve(service)))
        }
    }
}

async fn announce_first_admin(services: &Services) {
    if let Ok(0) = services.users.count().await {
        tracing::info!(
            "no users yet: create the first admin with `tessera user create <name> --admin --password <password>` \
             (add --config <file> if you serve with one)"
        );
    }
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = terminate => {}
    }
}
