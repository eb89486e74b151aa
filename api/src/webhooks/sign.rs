//! Standard Webhooks signatures (<https://www.standardwebhooks.com>): the `webhook-signature`
//! header is `v1,<base64 of HMAC-SHA256(secret, "{id}.{timestamp}.{body}")>`, one entry per
//! secret, separated by spaces (a rotated-out secret signs too while it is valid).
use base64::Engine as _;
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// Why a secret cannot sign.
#[derive(Debug, thiserror::Error)]
#[error("a webhook secret must be `whsec_` followed by base64; this one is not")]
pub struct BadSecret;

/// The key bytes of a `whsec_...` secret.
fn key(secret: &str) -> Result<Vec<u8>, BadSecret> {
    let b64 = secret.strip_prefix("whsec_").unwrap_or(secret);
    base64::engine::general_purpose::STANDARD.decode(b64).map_err(|_| BadSecret).and_then(|k| if k.is_empty() { Err(BadSecret) } else { Ok(k) })
}

/// One signature entry, `v1,<base64>`.
pub fn sign(secret: &str, id: &str, timestamp: i64, body: &str) -> Result<String, BadSecret> {
    let mut mac = Hmac::<Sha256>::new_from_slice(&key(secret)?).map_err(|_| BadSecret)?;
    mac.update(format!("{id}.{timestamp}.").as_bytes());
    mac.update(body.as_bytes());
    Ok(format!("v1,{}", base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())))
}

/// The `webhook-signature` header: one entry per secret.
pub fn signature_header(secrets: &[String], id: &str, timestamp: i64, body: &str) -> Result<String, BadSecret> {
    Ok(secrets.iter().map(|s| sign(s, id, timestamp, body)).collect::<Result<Vec<_>, _>>()?.join(" "))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The test vector of the Standard Webhooks specification (and its reference libraries).
    #[test]
    fn the_specifications_test_vector() {
        let sig = sign("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, r#"{"test": 2432232314}"#).unwrap();
        assert_eq!(sig, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
    }

    #[test]
    fn every_secret_signs() {
        let secrets = vec!["whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw".to_string(), "whsec_c2VjcmV0LXR3bw==".to_string()];
        let header = signature_header(&secrets, "msg_1", 1, "{}").unwrap();
        let entries: Vec<&str> = header.split(' ').collect();
        assert_eq!(entries.len(), 2);
        assert_eq!(entries[0], sign(&secrets[0], "msg_1", 1, "{}").unwrap());
        assert_ne!(entries[0], entries[1]);
        assert!(sign("whsec_not base64!", "msg_1", 1, "{}").is_err());
        assert!(sign("whsec_", "msg_1", 1, "{}").is_err());
    }
}
