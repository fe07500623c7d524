//! The `Date` header of responses that Tandem's own HTTP/1.1 connection
//! writes: formatted once a second per thread and copied after that, as
//! hyper does (formatting a date costs more than the rest of a head).

use std::cell::RefCell;
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::{BufMut, BytesMut};

/// Length of an IMF-fixdate: `Sun, 06 Nov 1994 08:49:37 GMT`.
const DATE_LENGTH: usize = 29;

struct CachedDate {
    /// Seconds since the epoch that `text` shows.
    second: u64,
    text: [u8; DATE_LENGTH],
}

thread_local! {
    static CACHED: RefCell<CachedDate> = const {
        RefCell::new(CachedDate { second: u64::MAX, text: [0; DATE_LENGTH] })
    };
}

/// Appends the current date as an HTTP date (RFC 9110 section 5.6.7).
pub fn append_now(out: &mut BytesMut) {
    let now = SystemTime::now();
    let second = now
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| since.as_secs());
    CACHED.with_borrow_mut(|cached| {
        if cached.second != second {
            let text = httpdate::fmt_http_date(now);
            if text.len() == DATE_LENGTH {
                cached.text.copy_from_slice(text.as_bytes());
                cached.second = second;
            } else {
                // Years past 9999 only; not cached.
                out.put_slice(text.as_bytes());
                return;
            }
        }
        out.put_slice(&cached.text);
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_date_is_an_imf_fixdate_of_now() {
        let mut out = BytesMut::new();
        append_now(&mut out);
        let text = std::str::from_utf8(&out).unwrap();
        assert!(text.ends_with(" GMT"), "{text}");
        let parsed = httpdate::parse_http_date(text).unwrap();
        let off = SystemTime::now()
            .duration_since(parsed)
            .unwrap_or_default()
            .as_secs();
        assert!(off <= 2, "{text} is {off} s off");
        // A second call within the second is the cached copy.
        let mut again = BytesMut::new();
        append_now(&mut again);
        assert_eq!(again.len(), DATE_LENGTH);
    }
}
