//! The engine's services, built once at start-up and shared (`Arc`) by every request.

use std::sync::Arc;

use crate::{
    Config,
    e2ee::E2ee,
    federation::{Federation, FederationError, edus::EduQueue},
    im::Im,
    keys::{KeyError, SigningKey},
    media::{Media, MediaError},
    ratelimit::RateLimiter,
    rooms::Rooms,
    store::{Store, StoreError},
    sync::Notifier,
    users::{PushRules, Users, presence::Presence},
};

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot create data directory {path}: {source}")]
    DataDir {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Key(#[from] KeyError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("cannot start the room service: {0}")]
    Rooms(crate::Error),
    #[error("cannot start the media repository: {0}")]
    Media(MediaError),
    #[error("cannot start federation: {0}")]
    Federation(FederationError),
}

pub struct Services {
    pub config: Arc<Config>,
    pub store: Store,
    pub signing_key: Arc<SigningKey>,
    pub users: Users,
    pub rooms: Arc<Rooms>,
    pub rate_limiter: Arc<RateLimiter>,
    pub notifier: Arc<Notifier>,
    pub presence: Arc<Presence>,
    pub e2ee: E2ee,
    pub media: Media,
    pub federation: Federation,
    pub im: Im,
}

impl Services {
    /// Creates the data directory and signing key if missing, opens and migrates the database.
    pub async fn start(config: Config) -> Result<Arc<Self>, StartError> {
        let config = Arc::new(config);
        std::fs::create_dir_all(&config.data_dir).map_err(|source| StartError::DataDir {
            path: config.data_dir.clone(),
            source,
        })?;
        let signing_key = Arc::new(SigningKey::load_or_generate(&config.signing_key_path())?);
        let store = Store::open(&config.database_url(), config.database.max_connections).await?;
        let rate_limiter = Arc::new(RateLimiter::new(config.rate_limits.clone()));
        let notifier = Arc::new(Notifier::default());
        let edus = Arc::new(EduQueue::new(store.clone(), config.server_name.clone()));
        let presence = Presence::start(
            store.clone(),
            &config.presence,
            notifier.clone(),
            edus.clone(),
        )
        .await?;
        let push_rules = Arc::new(PushRules::new(store.clone()));
        let users = Users::new(
            store.clone(),
            config.clone(),
            rate_limiter.clone(),
            notifier.clone(),
            push_rules.clone(),
            edus.clone(),
        );
        let rooms = Rooms::new(
            store.clone(),
            config.clone(),
            signing_key.clone(),
            notifier.clone(),
            push_rules,
            edus.clone(),
        )
        .await
        .map(Arc::new)
        .map_err(StartError::Rooms)?;
        let e2ee = E2ee::new(
            store.clone(),
            notifier.clone(),
            config.server_name.clone(),
            edus,
        );
        let media = Media::new(config.clone(), store.clone()).map_err(StartError::Media)?;
        let federation = Federation::new(config.clone(), store.clone(), signing_key.clone())
            .map_err(StartError::Federation)?;
        // The IM layer's membership changes may cross servers, which these services carry
        // out: it holds them weakly, as they hold it.
        Ok(Arc::new_cyclic(|services| Self {
            im: Im::new(
                store.clone(),
                config.clone(),
                rooms.clone(),
                notifier.clone(),
                services.clone(),
            ),
            federation,
            e2ee,
            media,
            users,
            rooms,
            rate_limiter,
            notifier,
            presence,
            signing_key,
            store,
            config,
        }))
    }
}
