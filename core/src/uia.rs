//! User-Interactive Authentication sessions (spec: "User-Interactive Authentication API").
//!
//! A session remembers which stages a client completed for one purpose (an endpoint) and one
//! user, so a client cannot carry stages completed for one request over to another. Sessions
//! live in memory and expire after [`SESSION_LIFETIME`].

use std::{
    collections::HashMap,
    sync::Mutex,
    time::{Duration, Instant},
};

use rand::{Rng, distributions::Alphanumeric};
use ruma::{OwnedUserId, UserId, api::client::uiaa::AuthType};

use crate::{Error, Result};

const SESSION_LIFETIME: Duration = Duration::from_secs(15 * 60);
/// Open sessions one user may have; more replace that user's oldest.
const MAX_SESSIONS_PER_USER: usize = 8;
/// Open sessions in all; more replace the oldest.
const MAX_SESSIONS: usize = 10_000;

fn evict_oldest(sessions: &mut HashMap<String, Session>, matching: impl Fn(&Session) -> bool) {
    let oldest = sessions
        .iter()
        .filter(|(_, s)| matching(s))
        .min_by_key(|(_, s)| s.created)
        .map(|(id, _)| id.clone());
    if let Some(id) = oldest {
        sessions.remove(&id);
    }
}

/// What the client is told when authentication must go on: a 401 with this body.
#[derive(Debug, Clone)]
pub struct Challenge {
    pub flows: Vec<Vec<AuthType>>,
    pub completed: Vec<AuthType>,
    pub session: String,
    /// The error of the stage just attempted, if it failed: (errcode, message).
    pub error: Option<(&'static str, String)>,
}

/// The verdict on one submitted stage.
pub enum StageOutcome {
    Passed,
    Failed {
        errcode: &'static str,
        message: String,
    },
}

struct Session {
    purpose: &'static str,
    user: Option<OwnedUserId>,
    completed: Vec<AuthType>,
    created: Instant,
}

#[derive(Default)]
pub struct Uia {
    sessions: Mutex<HashMap<String, Session>>,
}

/// The state of one request's authentication after looking at what it submitted.
pub enum Progress {
    /// No stage was submitted: start (or continue) a session and tell the client the flows.
    Challenge(Box<Challenge>),
    /// The client submitted this stage in this session; check it, then call [`Uia::record`].
    Attempt { session: String, stage: AuthType },
}

impl Uia {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Session>> {
        // A poisoned lock only means a panic elsewhere mid-update; the map stays consistent.
        let mut sessions = self.sessions.lock().unwrap_or_else(|e| e.into_inner());
        sessions.retain(|_, s| s.created.elapsed() < SESSION_LIFETIME);
        sessions
    }

    fn new_session(&self, purpose: &'static str, user: Option<&UserId>) -> String {
        let id: String = rand::thread_rng()
            .sample_iter(&Alphanumeric)
            .take(24)
            .map(char::from)
            .collect();
        let mut sessions = self.lock();
        // Bounded: a client looping on UIA endpoints replaces its own oldest sessions, and the
        // whole map never grows past MAX_SESSIONS (the oldest go first).
        let same_user = sessions
            .values()
            .filter(|s| s.user.as_deref() == user)
            .count();
        if user.is_some() && same_user >= MAX_SESSIONS_PER_USER {
            evict_oldest(&mut sessions, |s| s.user.as_deref() == user);
        }
        if sessions.len() >= MAX_SESSIONS {
            evict_oldest(&mut sessions, |_| true);
        }
        sessions.insert(
            id.clone(),
            Session {
                purpose,
                user: user.map(ToOwned::to_owned),
                completed: Vec::new(),
                created: Instant::now(),
            },
        );
        id
    }

    /// Starts or resumes the session named by the client (`session`, may be absent) for
    /// `purpose` and `user`, given the stage type the client submitted (if any).
    pub fn begin(
        &self,
        purpose: &'static str,
        user: Option<&UserId>,
        flows: &[Vec<AuthType>],
        session: Option<&str>,
        stage: Option<AuthType>,
    ) -> Result<Progress> {
        let session = match session {
            Some(id) => {
                let sessions = self.lock();
                let Some(existing) = sessions.get(id) else {
                    return Err(Error::Unknown(format!(
                        "Unknown or expired UIA session {id:?}"
                    )));
                };
                if existing.purpose != purpose || existing.user.as_deref() != user {
                    return Err(Error::Forbidden(
                        "This UIA session belongs to another request".into(),
                    ));
                }
                id.to_owned()
            }
            None => self.new_session(purpose, user),
        };
        let completed = self.completed(&session);
        match stage {
            None => Ok(Progress::Challenge(Box::new(Challenge {
                flows: flows.to_vec(),
                completed,
                session,
                error: None,
            }))),
            Some(stage) if next_stages(flows, &completed).contains(&stage) => {
                Ok(Progress::Attempt { session, stage })
            }
            Some(stage) => Ok(Progress::Challenge(Box::new(Challenge {
                flows: flows.to_vec(),
                completed,
                session,
                error: Some((
                    "M_UNRECOGNIZED",
                    format!("Stage {stage} is not expected here"),
                )),
            }))),
        }
    }

    /// Records the outcome of an attempted stage: `Ok(())` once a whole flow is complete (the
    /// session is then spent), otherwise the challenge to send back.
    pub fn record(
        &self,
        session: &str,
        flows: &[Vec<AuthType>],
        stage: AuthType,
        outcome: StageOutcome,
    ) -> Result<()> {
        let mut sessions = self.lock();
        let Some(state) = sessions.get_mut(session) else {
            return Err(Error::Unknown(format!(
                "Unknown or expired UIA session {session:?}"
            )));
        };
        let error = match outcome {
            StageOutcome::Passed => {
                state.completed.push(stage);
                if flows
                    .iter()
                    .any(|flow| flow.iter().all(|s| state.completed.contains(s)))
                {
                    sessions.remove(session);
                    return Ok(());
                }
                None
            }
            StageOutcome::Failed { errcode, message } => Some((errcode, message)),
        };
        Err(Error::AuthRequired(Box::new(Challenge {
            flows: flows.to_vec(),
            completed: state.completed.clone(),
            session: session.to_owned(),
            error,
        })))
    }

    fn completed(&self, session: &str) -> Vec<AuthType> {
        self.lock()
            .get(session)
            .map(|s| s.completed.clone())
            .unwrap_or_default()
    }
}

/// Stages that would advance at least one flow, given what is completed.
fn next_stages(flows: &[Vec<AuthType>], completed: &[AuthType]) -> Vec<AuthType> {
    flows
        .iter()
        .filter(|flow| completed.iter().all(|c| flow.contains(c)))
        .filter_map(|flow| flow.iter().find(|s| !completed.contains(s)).cloned())
        .collect()
}

#[cfg(test)]
mod tests {
    use ruma::user_id;

    use super::*;

    fn session_of(progress: Progress) -> String {
        match progress {
            Progress::Challenge(c) => c.session,
            Progress::Attempt { session, .. } => session,
        }
    }

    #[test]
    fn two_stage_flow_completes_only_after_both() {
        let uia = Uia::default();
        let flows = vec![vec![AuthType::RegistrationToken, AuthType::Dummy]];
        let id = session_of(uia.begin("register", None, &flows, None, None).unwrap());
        // Dummy is not next: the token stage comes first.
        match uia
            .begin("register", None, &flows, Some(&id), Some(AuthType::Dummy))
            .unwrap()
        {
            Progress::Challenge(c) => assert_eq!(c.error.unwrap().0, "M_UNRECOGNIZED"),
            Progress::Attempt { .. } => panic!("out-of-order stage accepted"),
        }
        assert!(matches!(
            uia.begin(
                "register",
                None,
                &flows,
                Some(&id),
                Some(AuthType::RegistrationToken)
            )
            .unwrap(),
            Progress::Attempt { .. }
        ));
        let err = uia
            .record(
                &id,
                &flows,
                AuthType::RegistrationToken,
                StageOutcome::Passed,
            )
            .unwrap_err();
        assert!(
            matches!(err, Error::AuthRequired(c) if c.completed == vec![AuthType::RegistrationToken])
        );
        uia.record(&id, &flows, AuthType::Dummy, StageOutcome::Passed)
            .unwrap();
        // A spent session cannot be replayed.
        assert!(
            uia.begin("register", None, &flows, Some(&id), Some(AuthType::Dummy))
                .is_err()
        );
    }

    #[test]
    fn session_is_bound_to_purpose_and_user() {
        let uia = Uia::default();
        let flows = vec![vec![AuthType::Password]];
        let alice = user_id!("@alice:example.org");
        let id = session_of(
            uia.begin("delete_device", Some(alice), &flows, None, None)
                .unwrap(),
        );
        assert!(
            uia.begin("deactivate", Some(alice), &flows, Some(&id), None)
                .is_err()
        );
        assert!(
            uia.begin(
                "delete_device",
                Some(user_id!("@bob:example.org")),
                &flows,
                Some(&id),
                None
            )
            .is_err()
        );
    }

    #[test]
    fn sessions_per_user_are_bounded() {
        let uia = Uia::default();
        let flows = vec![vec![AuthType::Password]];
        let alice = user_id!("@alice:example.org");
        let first = session_of(uia.begin("p", Some(alice), &flows, None, None).unwrap());
        for _ in 0..MAX_SESSIONS_PER_USER {
            uia.begin("p", Some(alice), &flows, None, None).unwrap();
        }
        assert_eq!(uia.lock().len(), MAX_SESSIONS_PER_USER);
        // The oldest went first.
        assert!(
            uia.begin("p", Some(alice), &flows, Some(&first), None)
                .is_err()
        );
    }

    #[test]
    fn failed_stage_keeps_the_session_open() {
        let uia = Uia::default();
        let flows = vec![vec![AuthType::Password]];
        let id = session_of(uia.begin("p", None, &flows, None, None).unwrap());
        let failed = StageOutcome::Failed {
            errcode: "M_FORBIDDEN",
            message: "Invalid password".into(),
        };
        let err = uia
            .record(&id, &flows, AuthType::Password, failed)
            .unwrap_err();
        assert!(matches!(err, Error::AuthRequired(c) if c.error.is_some() && c.session == id));
        uia.record(&id, &flows, AuthType::Password, StageOutcome::Passed)
            .unwrap();
    }
}
