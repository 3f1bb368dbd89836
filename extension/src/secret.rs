//! The storage type for secret bytes: zeroized when dropped, redacted when formatted.
//!
//! Cached values are shared with in-flight responses as [`Bytes`] built by
//! [`SecretBytes::into_shared`]: cloning is a reference-count increment (the hit path
//! copies nothing) and the buffer is wiped when the last clone goes, whether that is
//! an eviction, a refresh replacing the value, or the shutdown wipe.

use std::fmt;

use bytes::Bytes;
use zeroize::Zeroize;

/// Owned secret bytes. There is deliberately no `Display` and `Debug` prints only
/// the length, so a value cannot reach a log line through formatting.
pub struct SecretBytes(Vec<u8>);

impl SecretBytes {
    pub fn new(bytes: Vec<u8>) -> Self {
        SecretBytes(bytes)
    }

    /// Takes a `String`'s buffer without copying it.
    pub fn from_string(s: String) -> Self {
        SecretBytes(s.into_bytes())
    }

    pub fn expose(&self) -> &[u8] {
        &self.0
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Overwrites every byte with zeros in place (the length is kept, so a test can
    /// look at what is left).
    pub fn wipe(&mut self) {
        self.0.as_mut_slice().zeroize();
    }

    /// Wipes and frees the buffer now (dropping does the same; this says so at the call).
    pub fn wipe_now(self) {
        drop(self);
    }

    /// A shareable, immutable view that wipes the buffer when its last clone drops.
    pub fn into_shared(self) -> Bytes {
        Bytes::from_owner(self)
    }
}

impl AsRef<[u8]> for SecretBytes {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

impl Drop for SecretBytes {
    fn drop(&mut self) {
        // Zeroes the elements and the spare capacity before the allocator gets the buffer back.
        self.0.zeroize();
    }
}

impl fmt::Debug for SecretBytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SecretBytes(<redacted {} bytes>)", self.0.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wipe_zeroes_every_byte() {
        let mut s = SecretBytes::new(b"hunter2-hunter2".to_vec());
        s.wipe();
        assert_eq!(s.len(), 15);
        assert!(s.expose().iter().all(|&b| b == 0), "{:?}", s.expose());
    }

    #[test]
    fn debug_never_shows_the_value() {
        let s = SecretBytes::from_string("hunter2".to_owned());
        let shown = format!("{s:?}");
        assert!(!shown.contains("hunter2"));
        assert!(shown.contains("7 bytes"));
    }

    #[test]
    fn shared_view_exposes_the_same_bytes() {
        let shared = SecretBytes::new(b"abc".to_vec()).into_shared();
        let clone = shared.clone();
        assert_eq!(&clone[..], b"abc");
        assert_eq!(shared.as_ptr(), clone.as_ptr(), "clones share one buffer");
    }
}
