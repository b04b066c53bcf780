//! Pure business rules: no database, no HTTP, no broker, no clock reads (`now` is
//! always an argument).

pub mod balance;
pub mod bank_statement;
pub mod calendar;
pub mod dunning;
pub mod fiscal_settings;
pub mod ids;
pub mod invoice;
pub mod ledger;
pub mod money;
pub mod period;
pub mod plan;
pub mod proration;
pub mod receipt;
pub mod refund;
pub mod secret;
pub mod states;
pub mod subscription;
pub mod tenant;
pub mod usage;
pub mod usage_filter;

/// A deliberately loose e-mail check: one `@`, something on both sides, a dot in
/// the domain, no spaces. Deliverability is the mail system's business.
pub fn is_plausible_email(s: &str) -> bool {
    let Some((local, domain)) = s.split_once('@') else {
        return false;
    };
    !local.is_empty()
        && domain.contains('.')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && !domain.contains('@')
        && s.chars().count() <= 254
        && !s.chars().any(char::is_whitespace)
}

/// A name or free-text field: not only spaces, at most `max` characters (Unicode
/// scalar values, as JSON Schema's `maxLength` counts them — not bytes).
pub fn is_filled_within(s: &str, max: usize) -> bool {
    !s.trim().is_empty() && s.chars().count() <= max
}

/// Parses an IANA time zone name.
pub fn parse_time_zone(name: &str) -> Option<chrono_tz::Tz> {
    name.parse::<chrono_tz::Tz>().ok()
}

#[cfg(test)]
mod tests {
    #[test]
    fn emails() {
        assert!(super::is_plausible_email("a@b.ru"));
        for bad in ["", "a", "a@b", "@b.ru", "a@.ru", "a b@c.ru", "a@b.ru.", "a@@b.ru"] {
            assert!(!super::is_plausible_email(bad), "{bad}");
        }
    }

    #[test]
    fn lengths_count_characters_not_bytes() {
        let cyrillic = "Я".repeat(200); // 400 bytes
        assert!(super::is_filled_within(&cyrillic, 200));
        assert!(!super::is_filled_within(&format!("{cyrillic}Я"), 200));
        assert!(!super::is_filled_within("   ", 200));
        assert!(!super::is_filled_within("", 200));
    }
}
