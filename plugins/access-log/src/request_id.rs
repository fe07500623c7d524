//! Request ids: taken from the request if it has a sensible one, generated
//! (a random UUID v4) otherwise.

/// Longest request id taken from a client, in bytes.
pub const MAX_REQUEST_ID_BYTES: usize = 128;

/// Whether a client's id is worth keeping: 1 to 128 visible ASCII
/// characters, so it cannot smuggle anything into logs or headers.
pub fn acceptable(id: &str) -> bool {
    !id.is_empty() && id.len() <= MAX_REQUEST_ID_BYTES && id.bytes().all(|b| b.is_ascii_graphic())
}

/// A new random id, e.g. `9b2f0c3e-8f4d-4e0a-b1c2-5d6e7f8a9b0c`, or none if
/// the host gives no randomness.
pub fn generate() -> Option<String> {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes).ok()?;
    Some(
        uuid::Builder::from_random_bytes(bytes)
            .into_uuid()
            .hyphenated()
            .to_string(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn odd_ids_are_not_kept() {
        assert!(acceptable("abc-123"));
        assert!(!acceptable(""));
        assert!(!acceptable("has space"));
        assert!(!acceptable("line\nbreak"));
        assert!(!acceptable(&"x".repeat(129)));
    }

    #[test]
    fn generated_ids_are_uuid_v4() {
        let id = generate().unwrap();
        assert_eq!(id.len(), 36);
        assert_eq!(&id[14..15], "4");
        assert_ne!(id, generate().unwrap());
    }
}
