//! Who pushed an image, and whether the person approving it is that same person
//! (`approval.forbidSelfApproval`). Pure: the pusher comes from CloudTrail's `PutImage` record
//! (its `userIdentity.arn`), the decider from Slack (the clicking user's email) or from IAM (the
//! caller of `kanaria approve`).
//!
//! People are matched by the name AWS records for them: an IAM user's name, or the session name
//! of an assumed role. IAM Identity Center (SSO) and most federation set the session name to the
//! person's email or user name, which is how a Slack account (its email) is tied to a push.

/// The person behind an IAM principal ARN, as far as the ARN says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// The ARN as recorded.
    pub arn: String,
    /// IAM user name, or the assumed role's session name (lower case); `None` for principals
    /// that name no person (the account root, services).
    pub person: Option<String>,
}

impl Principal {
    /// Reads `arn:PARTITION:iam::ACCOUNT:user/[PATH/]NAME` and
    /// `arn:PARTITION:sts::ACCOUNT:assumed-role/ROLE/SESSION` (also `federated-user/NAME`).
    pub fn from_arn(arn: &str) -> Principal {
        let resource = arn.splitn(6, ':').nth(5).unwrap_or("");
        let person = if let Some(rest) = resource.strip_prefix("user/") {
            rest.rsplit('/').next()
        } else if let Some(rest) = resource.strip_prefix("assumed-role/") {
            rest.split_once('/').map(|(_, session)| session)
        } else if let Some(rest) = resource.strip_prefix("federated-user/") {
            Some(rest)
        } else {
            None
        };
        Principal { arn: arn.to_string(), person: person.filter(|p| !p.is_empty()).map(str::to_ascii_lowercase) }
    }
}

/// Who is deciding an approval.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decider {
    /// A Slack user, with the email Slack has for them (`users.info`; `None` when Slack did not
    /// say).
    Slack { user_id: String, email: Option<String> },
    /// The IAM caller of `kanaria approve` / `reject` (`sts:GetCallerIdentity`).
    Iam { arn: String },
}

impl Decider {
    /// What the decision records as its author: the Slack user id or the IAM ARN.
    pub fn who(&self) -> &str {
        match self {
            Decider::Slack { user_id, .. } => user_id,
            Decider::Iam { arn } => arn,
        }
    }
}

/// What a self-approval check finds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SelfApproval {
    /// Someone else pushed: the decision may go ahead.
    Other,
    /// The decider pushed the image.
    Same,
    /// It cannot be told (who pushed is unknown, or the decider has no email in Slack): refused,
    /// because allowing it would make the rule easy to sidestep.
    Unknown(String),
}

/// Is `decider` the person who pushed (`pusher`, from CloudTrail)?
pub fn check(pusher: Option<&Principal>, decider: &Decider) -> SelfApproval {
    let Some(pusher) = pusher else {
        return SelfApproval::Unknown(
            "kanaria has not seen who pushed this image (CloudTrail's PutImage event; it needs a trail in this region)".into(),
        );
    };
    match decider {
        Decider::Iam { arn } => {
            let decider = Principal::from_arn(arn);
            let same = arn == &pusher.arn || (decider.person.is_some() && decider.person == pusher.person && same_kind(arn, &pusher.arn));
            if same {
                SelfApproval::Same
            } else {
                SelfApproval::Other
            }
        }
        Decider::Slack { email, .. } => {
            let Some(email) = email.as_deref().map(str::to_ascii_lowercase).filter(|e| e.contains('@')) else {
                return SelfApproval::Unknown("Slack did not give this user's email (the app needs the users:read.email scope)".into());
            };
            let Some(person) = pusher.person.as_deref() else {
                // A push by the account root or a service names no person who could be clicking.
                return SelfApproval::Other;
            };
            let local_part = email.split('@').next().unwrap_or("");
            if person == email || person == local_part {
                SelfApproval::Same
            } else {
                SelfApproval::Other
            }
        }
    }
}

/// An IAM user and a role session with the same name are not the same principal by ARN, but
/// for two role sessions the session name is what identifies the person (the role is shared).
fn same_kind(a: &str, b: &str) -> bool {
    let kind = |arn: &str| arn.splitn(6, ':').nth(5).and_then(|r| r.split('/').next()).unwrap_or("").to_string();
    let (ka, kb) = (kind(a), kind(b));
    ka == kb || (ka != "user" && kb != "user")
}

#[cfg(test)]
mod tests {
    use super::*;

    const SSO_ANA: &str = "arn:aws:sts::123456789012:assumed-role/AWSReservedSSO_Deployers_0123456789abcdef/ana@example.com";

    #[test]
    fn principals_name_their_person() {
        assert_eq!(Principal::from_arn("arn:aws:iam::123456789012:user/ana").person.as_deref(), Some("ana"));
        assert_eq!(Principal::from_arn("arn:aws:iam::123456789012:user/team/Ana").person.as_deref(), Some("ana"));
        assert_eq!(Principal::from_arn(SSO_ANA).person.as_deref(), Some("ana@example.com"));
        assert_eq!(Principal::from_arn("arn:aws-us-gov:sts::123456789012:federated-user/bob").person.as_deref(), Some("bob"));
        assert_eq!(Principal::from_arn("arn:aws:iam::123456789012:root").person, None);
        assert_eq!(Principal::from_arn("not an arn").person, None);
        assert_eq!(Principal::from_arn("arn:aws:sts::123456789012:assumed-role/only-role").person, None);
    }

    #[test]
    fn a_slack_user_is_the_pusher_when_the_email_or_its_name_matches() {
        let slack = |email: Option<&str>| Decider::Slack { user_id: "U1".into(), email: email.map(str::to_string) };
        let sso = Principal::from_arn(SSO_ANA);
        assert_eq!(check(Some(&sso), &slack(Some("Ana@Example.com"))), SelfApproval::Same);
        assert_eq!(check(Some(&sso), &slack(Some("bob@example.com"))), SelfApproval::Other);
        let user = Principal::from_arn("arn:aws:iam::123456789012:user/ana");
        assert_eq!(check(Some(&user), &slack(Some("ana@example.com"))), SelfApproval::Same);
        assert_eq!(check(Some(&user), &slack(Some("anabel@example.com"))), SelfApproval::Other);
        // A CI role's session names no person on Slack.
        let ci = Principal::from_arn("arn:aws:sts::123456789012:assumed-role/github-actions/GitHubActions");
        assert_eq!(check(Some(&ci), &slack(Some("ana@example.com"))), SelfApproval::Other);
        assert!(matches!(check(Some(&sso), &slack(None)), SelfApproval::Unknown(_)));
        assert!(matches!(check(Some(&sso), &slack(Some("not-an-email"))), SelfApproval::Unknown(_)));
        assert!(matches!(check(None, &slack(Some("ana@example.com"))), SelfApproval::Unknown(_)));
        let root = Principal::from_arn("arn:aws:iam::123456789012:root");
        assert_eq!(check(Some(&root), &slack(Some("ana@example.com"))), SelfApproval::Other);
    }

    #[test]
    fn an_iam_caller_is_the_pusher_by_arn_or_by_session_name() {
        let iam = |arn: &str| Decider::Iam { arn: arn.into() };
        let sso = Principal::from_arn(SSO_ANA);
        assert_eq!(check(Some(&sso), &iam(SSO_ANA)), SelfApproval::Same);
        // The same person through another permission set is still the same person.
        assert_eq!(
            check(Some(&sso), &iam("arn:aws:sts::123456789012:assumed-role/AWSReservedSSO_Admins_fedcba9876543210/ana@example.com")),
            SelfApproval::Same
        );
        assert_eq!(
            check(Some(&sso), &iam("arn:aws:sts::123456789012:assumed-role/AWSReservedSSO_Deployers_0123456789abcdef/bob@example.com")),
            SelfApproval::Other
        );
        let user = Principal::from_arn("arn:aws:iam::123456789012:user/ana");
        assert_eq!(check(Some(&user), &iam("arn:aws:iam::123456789012:user/ana")), SelfApproval::Same);
        assert_eq!(check(Some(&user), &iam("arn:aws:iam::123456789012:user/bob")), SelfApproval::Other);
        // An IAM user and a role session that happen to share a name are different principals.
        assert_eq!(check(Some(&user), &iam("arn:aws:sts::123456789012:assumed-role/ci/ana")), SelfApproval::Other);
        assert!(matches!(check(None, &iam("arn:aws:iam::123456789012:user/ana")), SelfApproval::Unknown(_)));
    }
}
