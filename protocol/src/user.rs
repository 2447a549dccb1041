//! User id validation: the one definition of a valid user id.
//!
//! A user id names a connection's owner, a message's recipient and a ring key, and it is
//! embedded in URLs, tokens, log lines and Redis keys. The charset is kept small so an id
//! never needs escaping in any of those places.

use thiserror::Error;

/// Longest user id accepted, in bytes.
pub const MAX_USER_ID_LEN: usize = 128;

/// Why a user id was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum UserIdError {
    /// The id is the empty string.
    #[error("user id is empty")]
    Empty,
    /// The id is longer than [`MAX_USER_ID_LEN`] bytes.
    #[error("user id is {0} bytes, longer than the {MAX_USER_ID_LEN}-byte limit")]
    TooLong(usize),
    /// The id holds a byte outside `[A-Za-z0-9_.:@-]`.
    #[error("user id holds byte 0x{byte:02x} at {at}; allowed: A-Z a-z 0-9 _ . : @ -")]
    BadChar {
        /// The offending byte.
        byte: u8,
        /// Its byte position in the id.
        at: usize,
    },
}

/// True for the bytes a user id may hold: `[A-Za-z0-9_.:@-]`.
#[inline]
pub const fn is_user_id_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b':' | b'@' | b'-')
}

/// Checks that `id` is 1..=[`MAX_USER_ID_LEN`] bytes of `[A-Za-z0-9_.:@-]`.
pub fn validate_user_id(id: &str) -> Result<(), UserIdError> {
    let bytes = id.as_bytes();
    if bytes.is_empty() {
        return Err(UserIdError::Empty);
    }
    if bytes.len() > MAX_USER_ID_LEN {
        return Err(UserIdError::TooLong(bytes.len()));
    }
    match bytes.iter().position(|&b| !is_user_id_byte(b)) {
        Some(at) => Err(UserIdError::BadChar {
            byte: bytes[at],
            at,
        }),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_the_whole_charset() {
        assert_eq!(validate_user_id("Az09_.:@-"), Ok(()));
        assert_eq!(validate_user_id("u"), Ok(()));
        assert_eq!(validate_user_id(&"x".repeat(MAX_USER_ID_LEN)), Ok(()));
    }

    #[test]
    fn refuses_empty_long_and_bad_bytes() {
        assert_eq!(validate_user_id(""), Err(UserIdError::Empty));
        assert_eq!(
            validate_user_id(&"x".repeat(MAX_USER_ID_LEN + 1)),
            Err(UserIdError::TooLong(MAX_USER_ID_LEN + 1))
        );
        assert_eq!(
            validate_user_id("a b"),
            Err(UserIdError::BadChar { byte: b' ', at: 1 })
        );
        assert!(validate_user_id("a/b")
            .unwrap_err()
            .to_string()
            .contains("0x2f"));
        assert!(validate_user_id("é").is_err());
        assert!(validate_user_id("a\"").is_err());
    }
}
