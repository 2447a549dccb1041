//! HMAC-SHA256 connect and resume tokens.
//!
//! `control` signs a **connect token** when it places a user (`/v1/connect`); the gateway
//! verifies it in the handshake (`/ws?token=T`). The gateway signs a **resume token** in
//! `welcome` and `drain`; the client presents it to resume (`resume=T&lastOffset=N`),
//! possibly on another node of the same cluster (all nodes share the secret).
//!
//! # Format
//!
//! `base64url(body) "." base64url(tag)`, base64url without padding, where
//! `tag = HMAC-SHA256(secret, body)` (32 bytes, 43 characters) and `body` is binary:
//!
//! | bytes | field |
//! |---|---|
//! | 1 | format version (1) |
//! | 1 | kind: 1 connect, 2 resume |
//! | 4 | key id: first 4 bytes of SHA-256(secret) |
//! | 8 | `expires_at`, unix seconds, big-endian |
//! | 8 | connect: `ring_version`; resume: `offset` (big-endian) |
//! | 1 | resume only: 1 if `offset` is present, else 0 |
//! | 1 + n | user id (length byte, then bytes; n ≤ 128) |
//! | 1 + n | node id (length byte, then bytes; n ≤ [`MAX_NODE_ID_LEN`]) |
//!
//! Binary rather than JSON claims keeps verification at one HMAC (two SHA-256 blocks plus
//! the precomputed key pads) and a few byte reads, with no allocation until the claims are
//! returned. The key id lets a verifier holding the current and the previous secret pick
//! the right one during rotation, and tells "signed with a key I do not have" (a wrong or
//! retired secret) apart from "tampered". The tag is checked in constant time
//! (`Mac::verify_slice`). Hostile tokens: the length is capped at [`MAX_TOKEN_LEN`] before
//! anything else and decoding uses fixed stack buffers.

use crate::user::MAX_USER_ID_LEN;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use std::fmt;
use thiserror::Error;

type HmacSha256 = Hmac<Sha256>;

/// Longest token accepted, in characters (longer input is `Malformed` without decoding).
pub const MAX_TOKEN_LEN: usize = 512;
/// Longest node id a token can carry, in bytes.
pub const MAX_NODE_ID_LEN: usize = 128;
/// Shortest secret worth using; [`TokenKeys::new`] accepts shorter ones (tests), config
/// validation should not.
pub const MIN_SECRET_LEN: usize = 16;

const FORMAT_V1: u8 = 1;
const KIND_CONNECT: u8 = 1;
const KIND_RESUME: u8 = 2;
const KEY_ID_LEN: usize = 4;
const TAG_LEN: usize = 32;
/// base64url characters of a 32-byte tag without padding.
const TAG_B64_LEN: usize = 43;
/// Body bytes a token of [`MAX_TOKEN_LEN`] characters can decode to, rounded up.
const BODY_BUF_LEN: usize = MAX_TOKEN_LEN / 4 * 3 + 3;

/// Why a token was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum TokenError {
    /// Not a token: too long, bad base64url, wrong structure or unknown format version.
    #[error("malformed token")]
    Malformed,
    /// Signed with a key this verifier does not hold (wrong or retired secret).
    #[error("token signed with an unknown key")]
    UnknownKey,
    /// The key is known but the signature does not match (tampered token).
    #[error("token signature mismatch")]
    BadSignature,
    /// The token's expiry is at or before now.
    #[error("token expired")]
    Expired,
    /// A valid token of the other kind (a resume token used to connect, or vice versa).
    #[error("wrong token kind")]
    WrongKind,
    /// A valid token for another user.
    #[error("token is for another user")]
    WrongUser,
}

/// One signing key: the secret's key id and a MAC with the key pads already absorbed.
#[derive(Clone)]
struct Key {
    id: [u8; KEY_ID_LEN],
    mac: HmacSha256,
}

impl Key {
    fn new(secret: &[u8]) -> Self {
        let digest = Sha256::digest(secret);
        let mut id = [0u8; KEY_ID_LEN];
        id.copy_from_slice(&digest[..KEY_ID_LEN]);
        // HMAC accepts keys of any length, so this cannot fail.
        let mac = <HmacSha256 as Mac>::new_from_slice(secret).unwrap_or_else(|_| unreachable!());
        Key { id, mac }
    }
}

/// The secrets tokens are signed and verified with: the current one (signs and verifies)
/// and optionally the previous one (verifies only), so a secret can be rotated without
/// invalidating tokens already handed out.
#[derive(Clone)]
pub struct TokenKeys {
    current: Key,
    previous: Option<Key>,
}

impl fmt::Debug for TokenKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never print secrets; the key ids are enough to tell keys apart in logs.
        f.debug_struct("TokenKeys")
            .field("current_key_id", &hex4(&self.current.id))
            .field(
                "previous_key_id",
                &self.previous.as_ref().map(|k| hex4(&k.id)),
            )
            .finish()
    }
}

fn hex4(id: &[u8; KEY_ID_LEN]) -> String {
    id.iter().map(|b| format!("{b:02x}")).collect()
}

impl TokenKeys {
    /// Keys from the current secret and, during a rotation, the previous one.
    pub fn new(current_secret: &[u8], previous: Option<&[u8]>) -> Self {
        TokenKeys {
            current: Key::new(current_secret),
            previous: previous.map(Key::new),
        }
    }

    /// The current key's id as 8 hex digits (for logs and metrics labels).
    pub fn current_key_id(&self) -> String {
        hex4(&self.current.id)
    }
}

/// What a connect token asserts: `user` may connect to `node` under ring `ring_version`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectClaims {
    /// The user id.
    pub user: String,
    /// The node the user was placed on.
    pub node: String,
    /// The ring version the placement was made under.
    pub ring_version: u64,
    /// Expiry, unix seconds.
    pub expires_at: u64,
}

/// What a resume token asserts: `user`'s session on `node` may be resumed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResumeClaims {
    /// The user id.
    pub user: String,
    /// The node that issued the token.
    pub node: String,
    /// The last offset the server had assigned when the token was issued, if any.
    pub offset: Option<u64>,
    /// Expiry, unix seconds.
    pub expires_at: u64,
}

fn push_str(body: &mut Vec<u8>, s: &str, max: usize) {
    // Longer ids are a caller bug (they are validated before signing); truncating keeps the
    // token well-formed, and the verifier's user check then fails rather than anything panics.
    let bytes = &s.as_bytes()[..s.len().min(max)];
    body.push(bytes.len() as u8);
    body.extend_from_slice(bytes);
}

fn sign(keys: &TokenKeys, body: &[u8]) -> String {
    let mut mac = keys.current.mac.clone();
    mac.update(body);
    let tag = mac.finalize().into_bytes();
    let mut out = String::with_capacity(body.len() * 4 / 3 + TAG_B64_LEN + 4);
    URL_SAFE_NO_PAD.encode_string(body, &mut out);
    out.push('.');
    URL_SAFE_NO_PAD.encode_string(tag, &mut out);
    out
}

fn header(keys: &TokenKeys, kind: u8, expires_at: u64) -> Vec<u8> {
    let mut body = Vec::with_capacity(64);
    body.push(FORMAT_V1);
    body.push(kind);
    body.extend_from_slice(&keys.current.id);
    body.extend_from_slice(&expires_at.to_be_bytes());
    body
}

/// Signs a connect token with the current key.
pub fn sign_connect(keys: &TokenKeys, claims: &ConnectClaims) -> String {
    let mut body = header(keys, KIND_CONNECT, claims.expires_at);
    body.extend_from_slice(&claims.ring_version.to_be_bytes());
    push_str(&mut body, &claims.user, MAX_USER_ID_LEN);
    push_str(&mut body, &claims.node, MAX_NODE_ID_LEN);
    sign(keys, &body)
}

/// Signs a resume token with the current key.
pub fn sign_resume(keys: &TokenKeys, claims: &ResumeClaims) -> String {
    let mut body = header(keys, KIND_RESUME, claims.expires_at);
    body.extend_from_slice(&claims.offset.unwrap_or(0).to_be_bytes());
    body.push(u8::from(claims.offset.is_some()));
    push_str(&mut body, &claims.user, MAX_USER_ID_LEN);
    push_str(&mut body, &claims.node, MAX_NODE_ID_LEN);
    sign(keys, &body)
}

/// A reader over the verified body that never reads past its end.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], TokenError> {
        if self.0.len() < n {
            return Err(TokenError::Malformed);
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }
    fn u8(&mut self) -> Result<u8, TokenError> {
        Ok(self.take(1)?[0])
    }
    fn u64(&mut self) -> Result<u64, TokenError> {
        let mut b = [0u8; 8];
        b.copy_from_slice(self.take(8)?);
        Ok(u64::from_be_bytes(b))
    }
    fn str(&mut self, max: usize) -> Result<&'a str, TokenError> {
        let n = self.u8()? as usize;
        if n == 0 || n > max {
            return Err(TokenError::Malformed);
        }
        std::str::from_utf8(self.take(n)?).map_err(|_| TokenError::Malformed)
    }
}

/// [`open`], then checks the token is of kind `want`: the other known kind is
/// [`TokenError::WrongKind`] (a resume token used to connect, or the reverse), anything else
/// is malformed. Returns the expiry and the body after the header.
fn open_kind<'b>(
    keys: &TokenKeys,
    token: &str,
    want: u8,
    buf: &'b mut [u8; BODY_BUF_LEN],
) -> Result<(u64, &'b [u8]), TokenError> {
    let (kind, expires_at, rest) = open(keys, token, buf)?;
    if kind == want {
        Ok((expires_at, rest))
    } else if kind == KIND_CONNECT || kind == KIND_RESUME {
        Err(TokenError::WrongKind)
    } else {
        Err(TokenError::Malformed)
    }
}

/// Checks structure, key and signature; returns the kind and the body after the header.
fn open<'b>(
    keys: &TokenKeys,
    token: &str,
    buf: &'b mut [u8; BODY_BUF_LEN],
) -> Result<(u8, u64, &'b [u8]), TokenError> {
    if token.len() > MAX_TOKEN_LEN {
        return Err(TokenError::Malformed);
    }
    let (body_b64, tag_b64) = token.split_once('.').ok_or(TokenError::Malformed)?;
    if tag_b64.len() != TAG_B64_LEN {
        return Err(TokenError::Malformed);
    }
    let mut tag = [0u8; TAG_LEN + 2];
    let tag_len = URL_SAFE_NO_PAD
        .decode_slice(tag_b64, &mut tag)
        .map_err(|_| TokenError::Malformed)?;
    let n = URL_SAFE_NO_PAD
        .decode_slice(body_b64, &mut buf[..])
        .map_err(|_| TokenError::Malformed)?;
    let body = &buf[..n];
    if tag_len != TAG_LEN || body.len() < 2 + KEY_ID_LEN + 8 || body[0] != FORMAT_V1 {
        return Err(TokenError::Malformed);
    }
    let kind = body[1];
    let key_id = &body[2..2 + KEY_ID_LEN];
    let mut known = false;
    for key in std::iter::once(&keys.current).chain(keys.previous.as_ref()) {
        if key.id != key_id {
            continue;
        }
        known = true;
        let mut mac = key.mac.clone();
        mac.update(body);
        if mac.verify_slice(&tag[..TAG_LEN]).is_ok() {
            let mut r = Reader(&body[2 + KEY_ID_LEN..]);
            let expires_at = r.u64()?;
            return Ok((kind, expires_at, r.0));
        }
    }
    Err(if known {
        TokenError::BadSignature
    } else {
        TokenError::UnknownKey
    })
}

/// Verifies a connect token: structure, key, signature, kind, then expiry (`now_unix` in
/// unix seconds; a token is expired from `expires_at` on).
pub fn verify_connect(
    keys: &TokenKeys,
    token: &str,
    now_unix: u64,
) -> Result<ConnectClaims, TokenError> {
    let mut buf = [0u8; BODY_BUF_LEN];
    let (expires_at, rest) = open_kind(keys, token, KIND_CONNECT, &mut buf)?;
    let mut r = Reader(rest);
    let ring_version = r.u64()?;
    let user = r.str(MAX_USER_ID_LEN)?;
    let node = r.str(MAX_NODE_ID_LEN)?;
    if !r.0.is_empty() {
        return Err(TokenError::Malformed);
    }
    if now_unix >= expires_at {
        return Err(TokenError::Expired);
    }
    Ok(ConnectClaims {
        user: user.to_owned(),
        node: node.to_owned(),
        ring_version,
        expires_at,
    })
}

/// [`verify_connect`], then checks the token is for `user`.
pub fn verify_connect_for_user(
    keys: &TokenKeys,
    token: &str,
    now_unix: u64,
    user: &str,
) -> Result<ConnectClaims, TokenError> {
    let claims = verify_connect(keys, token, now_unix)?;
    if claims.user != user {
        return Err(TokenError::WrongUser);
    }
    Ok(claims)
}

/// Verifies a resume token; see [`verify_connect`].
pub fn verify_resume(
    keys: &TokenKeys,
    token: &str,
    now_unix: u64,
) -> Result<ResumeClaims, TokenError> {
    let mut buf = [0u8; BODY_BUF_LEN];
    let (expires_at, rest) = open_kind(keys, token, KIND_RESUME, &mut buf)?;
    let mut r = Reader(rest);
    let offset = r.u64()?;
    let offset = match r.u8()? {
        0 => None,
        1 => Some(offset),
        _ => return Err(TokenError::Malformed),
    };
    let user = r.str(MAX_USER_ID_LEN)?;
    let node = r.str(MAX_NODE_ID_LEN)?;
    if !r.0.is_empty() {
        return Err(TokenError::Malformed);
    }
    if now_unix >= expires_at {
        return Err(TokenError::Expired);
    }
    Ok(ResumeClaims {
        user: user.to_owned(),
        node: node.to_owned(),
        offset,
        expires_at,
    })
}

/// [`verify_resume`], then checks the token is for `user`.
pub fn verify_resume_for_user(
    keys: &TokenKeys,
    token: &str,
    now_unix: u64,
    user: &str,
) -> Result<ResumeClaims, TokenError> {
    let claims = verify_resume(keys, token, now_unix)?;
    if claims.user != user {
        return Err(TokenError::WrongUser);
    }
    Ok(claims)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn connect() -> ConnectClaims {
        ConnectClaims {
            user: "alice".into(),
            node: "node-1".into(),
            ring_version: 7,
            expires_at: 1000,
        }
    }

    #[test]
    fn connect_round_trip_and_errors() {
        let keys = TokenKeys::new(b"0123456789abcdef-secret", None);
        let t = sign_connect(&keys, &connect());
        assert!(t.len() <= MAX_TOKEN_LEN);
        assert!(t
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.'));
        assert_eq!(verify_connect(&keys, &t, 999), Ok(connect()));
        assert_eq!(verify_connect(&keys, &t, 1000), Err(TokenError::Expired));
        assert_eq!(
            verify_connect_for_user(&keys, &t, 1, "bob"),
            Err(TokenError::WrongUser)
        );
        assert_eq!(
            verify_connect_for_user(&keys, &t, 1, "alice"),
            Ok(connect())
        );
        let other = TokenKeys::new(b"another secret entirely", None);
        assert_eq!(verify_connect(&other, &t, 1), Err(TokenError::UnknownKey));
        assert_eq!(verify_resume(&keys, &t, 1), Err(TokenError::WrongKind));
    }

    #[test]
    fn tampering_is_bad_signature() {
        let keys = TokenKeys::new(b"s3cret-s3cret-s3cret", None);
        let t = sign_connect(&keys, &connect());
        let (body_b64, tag_b64) = t.split_once('.').unwrap();
        let mut body = URL_SAFE_NO_PAD.decode(body_b64).unwrap();
        body[2 + KEY_ID_LEN + 7] ^= 0xff; // push the expiry far out
        let forged = format!("{}.{}", URL_SAFE_NO_PAD.encode(&body), tag_b64);
        assert_eq!(
            verify_connect(&keys, &forged, 1),
            Err(TokenError::BadSignature)
        );
        let mut tag = URL_SAFE_NO_PAD.decode(tag_b64).unwrap();
        tag[0] ^= 1;
        let forged = format!("{}.{}", body_b64, URL_SAFE_NO_PAD.encode(&tag));
        assert_eq!(
            verify_connect(&keys, &forged, 1),
            Err(TokenError::BadSignature)
        );
    }

    #[test]
    fn rotation_accepts_previous_key() {
        let old = TokenKeys::new(b"old-secret-old-secret", None);
        let rotated = TokenKeys::new(b"new-secret-new-secret", Some(b"old-secret-old-secret"));
        let t = sign_connect(&old, &connect());
        assert_eq!(verify_connect(&rotated, &t, 1), Ok(connect()));
        let t2 = sign_connect(&rotated, &connect());
        assert_eq!(verify_connect(&old, &t2, 1), Err(TokenError::UnknownKey));
        assert!(!format!("{rotated:?}").contains("secret"));
    }

    #[test]
    fn resume_round_trip() {
        let keys = TokenKeys::new(b"k", None);
        for offset in [None, Some(0), Some(u64::MAX)] {
            let c = ResumeClaims {
                user: "u:1@x".into(),
                node: "n".into(),
                offset,
                expires_at: u64::MAX,
            };
            let t = sign_resume(&keys, &c);
            assert_eq!(verify_resume(&keys, &t, 5), Ok(c.clone()));
            assert_eq!(
                verify_resume_for_user(&keys, &t, 5, "u:1@y"),
                Err(TokenError::WrongUser)
            );
            assert_eq!(verify_connect(&keys, &t, 5), Err(TokenError::WrongKind));
        }
    }

    #[test]
    fn malformed_inputs() {
        let keys = TokenKeys::new(b"k", None);
        let long = "a".repeat(MAX_TOKEN_LEN + 1);
        for bad in ["", ".", "abc", "a.b", "!!!.AAAA", long.as_str()] {
            assert_eq!(
                verify_connect(&keys, bad, 0),
                Err(TokenError::Malformed),
                "{bad}"
            );
        }
        let t = sign_connect(&keys, &connect());
        assert_eq!(
            verify_connect(&keys, &format!("{t}="), 0),
            Err(TokenError::Malformed)
        );
        assert_eq!(
            verify_connect(&keys, &format!("A{t}"), 0),
            Err(TokenError::Malformed)
        );
    }
}
