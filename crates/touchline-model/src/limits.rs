//! The bounds every record keeps on its way to the stores, in one place so the docs can quote them.
//!
//! A value the decoder accepts but a store refuses stops the aggregator's partition for every
//! tenant on it: Postgres keeps money in `numeric(20,6)` (14 integer digits) and refuses NUL in
//! text and in `jsonb`, ClickHouse keeps money in `Decimal(38,6)`, and `serde_json` cannot read
//! back a value nested 128 levels deep. The decoder refuses such records with a 400 naming the
//! field, and [`crate::check_stored`] refuses them when a third party wrote them to the bus.
//!
//! Values copied from request headers into every record of a batch (the `User-Agent`, the client
//! address, the pixel's `Referer`) are truncated instead of refused, since the client did not
//! choose to send them as data; the record says so in [`TRUNCATED_KEY`].

/// Earliest instant any timestamp of a record may hold: 2000-01-01T00:00:00Z, in epoch
/// milliseconds (inclusive). Applies to `timestamp` (before and after clock-skew correction),
/// `sent_at`/`sentAt`, `originalTimestamp`, `received_at`, a session's `started_at`/`ended_at`
/// and the pixel's `ts`.
pub const MIN_TIME_MS: i64 = 946_684_800_000;

/// First instant no longer accepted: 2100-01-01T00:00:00Z, in epoch milliseconds (exclusive).
/// 130 years after 1970 with 32 leap days: (130 × 365 + 32) × 86 400 s.
pub const END_TIME_MS: i64 = 4_102_444_800_000;

/// The window as people read it, for error messages and docs.
pub const TIME_WINDOW: &str = "2000-01-01 to 2100-01-01";

/// Spend `date` years accepted: 2000 to 2099, the same window as timestamps.
pub const MIN_YEAR: i32 = 2000;
/// First spend `date` year no longer accepted.
pub const END_YEAR: i32 = 2100;

/// Money (conversion `value`, spend `cost`, Segment `revenue`/`total`/`value`) must be less than
/// this in absolute value: 10^12. `numeric(20,6)` holds up to 10^14, so rounding to 6 places can
/// never push an accepted value out of range.
pub const MONEY_LIMIT: i64 = 1_000_000_000_000;

/// Decimal places kept for money. More are rounded half to even (banker's rounding), so
/// `0.0000005` becomes `0.000000` and `0.0000015` becomes `0.000002`.
pub const MONEY_SCALE: u32 = 6;

/// Largest spend `impressions` and `clicks` (inclusive): 10^12.
pub const MAX_COUNT: u64 = 1_000_000_000_000;

/// Longest touchpoint `channel`, in characters.
pub const MAX_CHANNEL_CHARS: usize = 64;

/// Longest `utm_*` value (event context, session, touchpoint), in characters.
pub const MAX_UTM_CHARS: usize = 255;

/// Longest `user_agent`, in bytes. A longer one in the body is refused; a longer `User-Agent`
/// header is truncated to this.
pub const MAX_USER_AGENT_BYTES: usize = 1024;

/// Longest URL (`page_url`, `page_path`, `referrer`, `landing_page`, `target_url`, `referer`), in
/// bytes. A longer one in the body is refused; a longer pixel `Referer` header is truncated.
pub const MAX_URL_BYTES: usize = 8192;

/// Longest `ip`, in bytes: an IPv6 address with a zone fits with room to spare. A longer
/// client address taken from the request (`X-Forwarded-For`) is truncated.
pub const MAX_IP_BYTES: usize = 64;

/// Longest `event_name`, in characters.
pub const MAX_EVENT_NAME_CHARS: usize = 255;

/// Longest spend `source`, in bytes.
pub const MAX_SOURCE_BYTES: usize = 64;

/// Longest text field without a limit of its own (`page_title`, `locale`), in bytes.
pub const MAX_TEXT_BYTES: usize = 8192;

/// Deepest nesting of arrays and objects in free JSON (`properties`, `traits`, `detail`,
/// `context`), counting the field's own object as level 1 and measured on the record as stored:
/// a Segment `page` `name` lands inside `properties`, and a `group`'s `traits` inside
/// `properties.traits`, one level deeper than the client sent them.
pub const MAX_JSON_DEPTH: usize = 32;

/// Key of the list of fields that were truncated because they came from request headers, e.g.
/// `"truncated": ["user_agent"]`. It sits in the event's `context`, a touchpoint's `detail` or a
/// conversion's `properties`, so the envelope keeps its schema.
pub const TRUNCATED_KEY: &str = "truncated";

/// Default for [`crate::DecodeOptions::max_request_bytes`]: the collector's body limit, 5 MiB.
pub const DEFAULT_MAX_REQUEST_BYTES: usize = 5 * 1024 * 1024;

/// Whether `b` may not appear in a text field: NUL and the other C0 control characters except
/// tab, newline and carriage return, and DEL. Every other byte of UTF-8 text is allowed (the
/// bytes of multi-byte characters are all 0x80 or above).
pub(crate) fn is_forbidden_byte(b: u8) -> bool {
    // Non-short-circuit operators, so that a scan over many bytes can be vectorised.
    (b < 0x20) & (b != b'\t') & (b != b'\n') & (b != b'\r') | (b == 0x7f)
}

/// The longest prefix of `s` of at most `max` bytes that ends on a character boundary, and
/// whether anything was cut.
pub fn truncate_utf8(s: &str, max: usize) -> (&str, bool) {
    if s.len() <= max {
        return (s, false);
    }
    let mut end = max;
    // A UTF-8 character is at most 4 bytes, so this steps back at most 3 times.
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    (&s[..end], true)
}
