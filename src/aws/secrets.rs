//! The Slack app's credentials from Secrets Manager: fetched on first use, kept for a few
//! minutes (a rotated secret is picked up without a redeploy), never logged.

use std::time::{Duration, Instant};

use tokio::sync::Mutex;

use super::AwsError;

/// A secret string whose `Debug` and `Display` never show it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

/// The secret's JSON: `{"signingSecret": "...", "botToken": "xoxb-..."}`.
#[derive(Clone, Debug)]
pub struct SlackCredentials {
    pub signing_secret: Secret,
    pub bot_token: Option<Secret>,
}

#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct SecretJson {
    signing_secret: Option<String>,
    bot_token: Option<String>,
}

/// How long a fetched secret is used before it is read again.
const REFRESH_AFTER: Duration = Duration::from_secs(300);

/// Credentials cached for the life of a Lambda container.
#[derive(Debug, Default)]
pub struct CredentialsCache {
    cached: Mutex<Option<(SlackCredentials, Instant)>>,
}

impl CredentialsCache {
    pub async fn get(&self, sm: &aws_sdk_secretsmanager::Client, secret_id: &str) -> Result<SlackCredentials, AwsError> {
        let mut cached = self.cached.lock().await;
        if let Some((creds, at)) = cached.as_ref() {
            if at.elapsed() < REFRESH_AFTER {
                return Ok(creds.clone());
            }
        }
        let creds = fetch(sm, secret_id).await?;
        *cached = Some((creds.clone(), Instant::now()));
        Ok(creds)
    }
}

async fn fetch(sm: &aws_sdk_secretsmanager::Client, secret_id: &str) -> Result<SlackCredentials, AwsError> {
    let out = sm
        .get_secret_value()
        .secret_id(secret_id)
        .send()
        .await
        .map_err(|e| AwsError::new("Secrets Manager", "GetSecretValue", secret_id, e))?;
    let bad = |message: &str| {
        AwsError {
        service: "Secrets Manager",
        operation: "GetSecretValue",
        resource: secret_id.to_string(),
        message: format!("{message}; store JSON {{\"signingSecret\": \"…\", \"botToken\": \"xoxb-…\"}} from the Slack app's Basic Information and OAuth pages (docs/slack.md)"),
        transient: false,
    }
    };
    let text = out.secret_string().ok_or_else(|| bad("the secret has no SecretString"))?;
    // The parse error would quote the secret; say only that it is not the expected JSON.
    let parsed: SecretJson = serde_json::from_str(text).map_err(|_| bad("the secret is not the expected JSON"))?;
    let signing_secret = parsed.signing_secret.filter(|s| !s.is_empty()).ok_or_else(|| bad("the secret has no signingSecret"))?;
    Ok(SlackCredentials { signing_secret: Secret(signing_secret), bot_token: parsed.bot_token.filter(|t| !t.is_empty()).map(Secret) })
}
