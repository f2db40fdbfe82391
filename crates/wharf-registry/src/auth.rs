//! Who a request comes from and what it may do. Accounts are an htpasswd file of bcrypt hashes;
//! a client proves one with Basic auth, or (with `auth.token`) trades it at the built-in token
//! endpoint for a bearer token that carries the granted scopes (`repository:<name>:pull,push`),
//! signed with HMAC-SHA256 under a key drawn at start, as Docker's token flow expects: the
//! registry challenges with the scope it needs, the client asks `/token` for it and retries.
//! What an account may do comes from the configuration's rules (a first step towards projects).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine as _;
use serde::{Deserialize, Serialize};
use sha2::Digest as _;

use crate::config::{pattern_matches, AuthConfig};
use crate::error::{Challenge, RegistryError};

/// What a request needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Need {
    /// Nothing but an identity (`GET /v2/` when auth is on).
    Login,
    /// Actions on a repository.
    Repo(String, Vec<&'static str>),
    /// The catalog.
    Catalog,
}

/// The scopes a token grants.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Grant {
    /// `repository` or `registry`.
    #[serde(rename = "type")]
    pub kind: String,
    /// The repository (or `catalog`).
    pub name: String,
    /// The actions.
    pub actions: Vec<String>,
}

#[derive(Debug, Serialize, Deserialize)]
struct Claims {
    sub: String,
    exp: u64,
    access: Vec<Grant>,
}

/// Who a request comes from.
#[derive(Debug, Clone)]
pub enum Identity {
    /// No credentials.
    Anonymous,
    /// An account proven by Basic auth.
    Account(String),
    /// A bearer token's holder, with what it grants.
    Token(String, Vec<Grant>),
}

impl Identity {
    /// The account's name for logs (`anonymous` when none).
    pub fn name(&self) -> &str {
        match self {
            Identity::Anonymous => "anonymous",
            Identity::Account(a) | Identity::Token(a, _) => a,
        }
    }
}

/// The token endpoint's answer.
#[derive(Debug, Serialize)]
pub struct TokenAnswer {
    /// The token.
    pub token: String,
    /// The same, as OAuth2 clients read it.
    pub access_token: String,
    /// Seconds it lives.
    pub expires_in: u64,
    /// When it was issued (RFC 3339).
    pub issued_at: String,
}

/// The authenticator: absent when the registry is open to all.
#[derive(Debug)]
pub struct Auth {
    cfg: AuthConfig,
    users: HashMap<String, String>,
    key: ring::hmac::Key,
    /// sha256 of `user:password` proven before, so bcrypt runs once per credential.
    proven: Mutex<HashMap<[u8; 32], String>>,
}

/// Why the auth configuration cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct AuthError(String);

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs()
}

/// The actions `rules` give `account` on `repo`.
fn allowed(cfg: &AuthConfig, account: Option<&str>, repo: &str) -> Vec<&'static str> {
    if cfg.access.is_empty() {
        return if account.is_some() {
            vec!["pull", "push", "delete"]
        } else {
            vec![]
        };
    }
    let mut out = Vec::new();
    for r in &cfg.access {
        let who = r.accounts.iter().any(|a| match account {
            Some(acc) => a == "*" || a == acc,
            None => a == "anonymous",
        });
        if !who || !r.repositories.iter().any(|p| pattern_matches(p, repo)) {
            continue;
        }
        for a in ["pull", "push", "delete"] {
            if r.actions.iter().any(|x| x == a || x == "*") && !out.contains(&a) {
                out.push(a);
            }
        }
    }
    out
}

impl Auth {
    /// The authenticator of a configuration with an htpasswd file, or `None` for an open registry.
    pub fn new(cfg: &AuthConfig) -> Result<Option<Auth>, AuthError> {
        let Some(path) = &cfg.htpasswd else {
            return Ok(None);
        };
        let text = std::fs::read_to_string(path).map_err(|e| AuthError(format!("{}: {e}", path.display())))?;
        let mut users = HashMap::new();
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (u, h) = line
                .split_once(':')
                .ok_or_else(|| AuthError(format!("{}:{}: not user:hash", path.display(), n + 1)))?;
            if !h.starts_with("$2") {
                return Err(AuthError(format!(
                    "{}:{}: only bcrypt hashes are accepted (htpasswd -B)",
                    path.display(),
                    n + 1
                )));
            }
            users.insert(u.to_string(), h.to_string());
        }
        let rng = ring::rand::SystemRandom::new();
        let key =
            ring::hmac::Key::generate(ring::hmac::HMAC_SHA256, &rng).map_err(|_| AuthError("no randomness".into()))?;
        Ok(Some(Auth {
            cfg: cfg.clone(),
            users,
            key,
            proven: Mutex::new(HashMap::new()),
        }))
    }

    /// Whether challenges are for bearer tokens.
    pub fn uses_tokens(&self) -> bool {
        self.cfg.token
    }

    fn service(&self) -> &str {
        self.cfg.service.as_deref().unwrap_or("wharf-registry")
    }

    /// Checks `user:password` against the htpasswd file.
    pub fn verify_password(&self, user: &str, password: &str) -> bool {
        let key: [u8; 32] = sha2::Sha256::digest(format!("{user}:{password}")).into();
        if self
            .proven
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&key)
            .is_some_and(|u| u == user)
        {
            return true;
        }
        let ok = self
            .users
            .get(user)
            .is_some_and(|h| bcrypt::verify(password, h).unwrap_or(false));
        if ok {
            self.proven
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(key, user.to_string());
        }
        ok
    }

    /// The account of a Basic `Authorization` value, if it is valid.
    pub fn basic(&self, value: &str) -> Option<String> {
        let b64 = value.strip_prefix("Basic ").or_else(|| value.strip_prefix("basic "))?;
        let raw = String::from_utf8(STANDARD.decode(b64.trim()).ok()?).ok()?;
        let (u, p) = raw.split_once(':')?;
        self.verify_password(u, p).then(|| u.to_string())
    }

    /// Who sent `authorization`; `None` for credentials that are present but wrong.
    pub fn identify(&self, authorization: Option<&str>) -> Option<Identity> {
        let Some(v) = authorization else {
            return Some(Identity::Anonymous);
        };
        if let Some(tok) = v.strip_prefix("Bearer ") {
            return self.verify_token(tok.trim());
        }
        self.basic(v).map(Identity::Account)
    }

    fn verify_token(&self, tok: &str) -> Option<Identity> {
        let (payload, sig) = tok.split_once('.')?;
        let sig = URL_SAFE_NO_PAD.decode(sig).ok()?;
        ring::hmac::verify(&self.key, payload.as_bytes(), &sig).ok()?;
        let claims: Claims = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).ok()?).ok()?;
        (claims.exp > now()).then_some(Identity::Token(claims.sub, claims.access))
    }

    /// The challenge for `need`; `host` and `tls` make the default token realm.
    pub fn challenge(&self, need: &Need, host: &str, tls: bool) -> Challenge {
        if !self.cfg.token {
            let realm = self.cfg.realm.as_deref().unwrap_or("wharf-registry");
            return Challenge(format!("Basic realm=\"{realm}\""));
        }
        let realm = match &self.cfg.token_realm {
            Some(r) => r.clone(),
            None => format!("{}://{host}/token", if tls { "https" } else { "http" }),
        };
        let mut c = format!("Bearer realm=\"{realm}\",service=\"{}\"", self.service());
        match need {
            Need::Login => {}
            Need::Repo(name, actions) => c.push_str(&format!(",scope=\"repository:{name}:{}\"", actions.join(","))),
            Need::Catalog => c.push_str(",scope=\"registry:catalog:*\""),
        }
        Challenge(c)
    }

    /// Whether `id` may do what `need` says: `Ok`, or the 401 (no or too narrow a token,
    /// anonymous) or 403 (an account the rules refuse) to answer.
    pub fn check(&self, id: &Identity, need: &Need, host: &str, tls: bool) -> Result<(), RegistryError> {
        let unauthorized = || RegistryError::Unauthorized(self.challenge(need, host, tls));
        match (id, need) {
            (Identity::Anonymous, Need::Login) => Err(unauthorized()),
            (_, Need::Login) => Ok(()),
            (Identity::Token(_, grants), Need::Repo(name, actions)) => {
                let g = grants.iter().find(|g| g.kind == "repository" && &g.name == name);
                match g {
                    Some(g) if actions.iter().all(|a| g.actions.iter().any(|x| x == a)) => Ok(()),
                    _ => Err(unauthorized()),
                }
            }
            (Identity::Token(_, grants), Need::Catalog) => {
                if grants.iter().any(|g| g.kind == "registry" && g.name == "catalog") {
                    Ok(())
                } else {
                    Err(unauthorized())
                }
            }
            (Identity::Anonymous, Need::Repo(name, actions)) => {
                let ok = allowed(&self.cfg, None, name);
                if actions.iter().all(|a| ok.contains(a)) {
                    Ok(())
                } else {
                    Err(unauthorized())
                }
            }
            (Identity::Account(acc), Need::Repo(name, actions)) => {
                let ok = allowed(&self.cfg, Some(acc), name);
                if actions.iter().all(|a| ok.contains(a)) {
                    Ok(())
                } else if self.cfg.token {
                    Err(unauthorized())
                } else {
                    Err(RegistryError::Denied(format!(
                        "{acc} may not {} {name}",
                        actions.join(",")
                    )))
                }
            }
            (Identity::Anonymous, Need::Catalog) => Err(unauthorized()),
            (Identity::Account(_), Need::Catalog) => Ok(()),
        }
    }

    /// Issues a token to `account` (`None`: anonymous) for the scopes asked, granting only what
    /// the rules allow (the catalog to any account).
    pub fn issue(&self, account: Option<&str>, scopes: &[String]) -> TokenAnswer {
        let mut access = Vec::new();
        for s in scopes {
            let mut parts = s.splitn(3, ':').collect::<Vec<_>>();
            if parts.len() != 3 {
                continue;
            }
            // A name with a port (`host:5000/x`) never reaches here: names are paths.
            let actions: Vec<&str> = parts.pop().unwrap_or_default().split(',').collect();
            let (kind, name) = (parts[0], parts[1]);
            let granted: Vec<String> = match kind {
                "repository" => {
                    let ok = allowed(&self.cfg, account, name);
                    actions
                        .iter()
                        .filter(|a| ok.contains(a))
                        .map(|a| a.to_string())
                        .collect()
                }
                "registry" if name == "catalog" && account.is_some() => vec!["*".to_string()],
                _ => vec![],
            };
            if !granted.is_empty() {
                access.push(Grant {
                    kind: kind.to_string(),
                    name: name.to_string(),
                    actions: granted,
                });
            }
        }
        let ttl = self.cfg.token_ttl.unwrap_or(300);
        let claims = Claims {
            sub: account.unwrap_or("").to_string(),
            exp: now() + ttl,
            access,
        };
        let payload = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&claims).unwrap_or_default());
        let sig = ring::hmac::sign(&self.key, payload.as_bytes());
        let token = format!("{payload}.{}", URL_SAFE_NO_PAD.encode(sig.as_ref()));
        let issued_at = time::OffsetDateTime::now_utc()
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_default();
        TokenAnswer {
            access_token: token.clone(),
            token,
            expires_in: ttl,
            issued_at,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::AccessRule;

    fn auth(token: bool, access: Vec<AccessRule>) -> (tempfile::TempDir, Auth) {
        let dir = tempfile::tempdir().unwrap();
        let h = bcrypt::hash("secret", 4).unwrap();
        std::fs::write(dir.path().join("htpasswd"), format!("alice:{h}\nbob:{h}\n")).unwrap();
        let cfg = AuthConfig {
            htpasswd: Some(dir.path().join("htpasswd")),
            token,
            access,
            ..Default::default()
        };
        let a = Auth::new(&cfg).unwrap().unwrap();
        (dir, a)
    }

    #[test]
    fn basic_accounts_and_rules() {
        let rules = vec![AccessRule {
            accounts: vec!["alice".into()],
            repositories: vec!["team/*".into()],
            actions: vec!["pull".into(), "push".into()],
        }];
        let (_d, a) = auth(false, rules);
        let basic = |u: &str, p: &str| format!("Basic {}", STANDARD.encode(format!("{u}:{p}")));
        assert!(a.identify(Some(&basic("alice", "wrong"))).is_none());
        assert!(a.identify(Some(&basic("nobody", "secret"))).is_none());
        let alice = a.identify(Some(&basic("alice", "secret"))).unwrap();
        let bob = a.identify(Some(&basic("bob", "secret"))).unwrap();
        let push = Need::Repo("team/x".into(), vec!["pull", "push"]);
        assert!(a.check(&alice, &push, "h", false).is_ok());
        assert!(matches!(
            a.check(&bob, &push, "h", false),
            Err(RegistryError::Denied(_))
        ));
        assert!(matches!(
            a.check(&Identity::Anonymous, &push, "h", false),
            Err(RegistryError::Unauthorized(_))
        ));
        assert!(a
            .check(&alice, &Need::Repo("other".into(), vec!["pull"]), "h", false)
            .is_err());
        assert!(matches!(
            a.check(&Identity::Anonymous, &Need::Login, "h", false),
            Err(RegistryError::Unauthorized(_))
        ));
    }

    #[test]
    fn tokens_carry_only_granted_scopes() {
        let (_d, a) = auth(true, vec![]);
        let t = a.issue(
            Some("alice"),
            &["repository:lib/x:pull,push".into(), "repository:lib/y:pull".into()],
        );
        let id = a.identify(Some(&format!("Bearer {}", t.token))).unwrap();
        assert!(a
            .check(&id, &Need::Repo("lib/x".into(), vec!["pull", "push"]), "h", false)
            .is_ok());
        match a.check(&id, &Need::Repo("lib/z".into(), vec!["pull"]), "reg:5000", false) {
            Err(RegistryError::Unauthorized(c)) => {
                assert_eq!(
                    c.0,
                    "Bearer realm=\"http://reg:5000/token\",service=\"wharf-registry\",scope=\"repository:lib/z:pull\""
                )
            }
            other => panic!("{other:?}"),
        }
        let anon = a.issue(None, &["repository:lib/x:pull".into()]);
        let id = a.identify(Some(&format!("Bearer {}", anon.token))).unwrap();
        assert!(a
            .check(&id, &Need::Repo("lib/x".into(), vec!["pull"]), "h", false)
            .is_err());
        // A token with a changed payload or signature is refused.
        let (p, s) = t.token.split_once('.').unwrap();
        let forged = format!(
            "{}.{s}",
            URL_SAFE_NO_PAD.encode(
                br#"{"sub":"alice","exp":99999999999,"access":[{"type":"repository","name":"*","actions":["push"]}]}"#
            )
        );
        assert!(a.identify(Some(&format!("Bearer {forged}"))).is_none());
        assert!(a.identify(Some(&format!("Bearer {p}.AAAA"))).is_none());
    }
}
