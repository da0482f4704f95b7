//! TURN credentials in coturn's shared-secret scheme ("TURN REST API", coturn's
//! `--use-auth-secret --static-auth-secret`): username = `expiry:name`, where expiry is a Unix
//! time in seconds, and password = base64(HMAC-SHA1(secret, username)).

use base64::Engine as _;
use hmac::{Hmac, Mac};
use sha1::Sha1;

fn password_for(secret: &str, username: &str) -> String {
    let mut mac = <Hmac<Sha1> as Mac>::new_from_slice(secret.as_bytes())
        .expect("invariant: HMAC accepts keys of any length");
    mac.update(username.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

/// Credentials for `name` valid until `expiry_unix` (seconds). Colons in `name` are replaced so
/// that the expiry stays the first field.
pub fn mint_credentials(secret: &str, name: &str, expiry_unix: u64) -> (String, String) {
    let username = format!("{expiry_unix}:{}", name.replace(':', "_"));
    let password = password_for(secret, &username);
    (username, password)
}

/// What coturn checks: the password matches and the expiry has not passed.
pub fn verify_credentials(secret: &str, username: &str, password: &str, now_unix: u64) -> bool {
    let Some(expiry) = username
        .split(':')
        .next()
        .and_then(|t| t.parse::<u64>().ok())
    else {
        return false;
    };
    expiry >= now_unix && password_for(secret, username) == password
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_an_independent_hmac_sha1() {
        // Reference computed with: printf %s '1700000000:ada' | openssl dgst -sha1 -hmac secret -binary | base64
        let (user, pass) = mint_credentials("secret", "ada", 1_700_000_000);
        assert_eq!(user, "1700000000:ada");
        assert_eq!(pass, "lV8v9c9TsajfLXLkZIc5nnmtEng=");
    }

    #[test]
    fn verification_checks_password_and_expiry() {
        let (user, pass) = mint_credentials("secret", "bob:x", 2_000);
        assert_eq!(user, "2000:bob_x");
        assert!(verify_credentials("secret", &user, &pass, 1_999));
        assert!(verify_credentials("secret", &user, &pass, 2_000));
        assert!(
            !verify_credentials("secret", &user, &pass, 2_001),
            "expired"
        );
        assert!(
            !verify_credentials("other", &user, &pass, 1_000),
            "wrong secret"
        );
        assert!(
            !verify_credentials("secret", "3000:bob_x", &pass, 1_000),
            "tampered expiry"
        );
        assert!(
            !verify_credentials("secret", "bob", &pass, 1_000),
            "no expiry"
        );
    }
}
