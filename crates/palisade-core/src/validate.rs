//! Field rules shared by services. Each check appends a `FieldError` naming the field, so one
//! response lists every problem.

use crate::error::{Error, FieldError, Result};

#[derive(Debug, Default)]
pub struct Checks(Vec<FieldError>);

impl Checks {
    /// How many problems so far.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn new() -> Self {
        Self::default()
    }

    pub fn fail(&mut self, pointer: &str, message: impl Into<String>) {
        self.0.push(FieldError::new(pointer, message));
    }

    /// A required single-line text of `min..=max` characters, no control characters.
    pub fn text(&mut self, pointer: &str, value: &str, min: usize, max: usize) {
        let len = value.chars().count();
        if len < min || len > max {
            self.fail(pointer, format!("must be {min} to {max} characters"));
        } else if value.chars().any(char::is_control) {
            self.fail(pointer, "must not contain control characters");
        } else if value.trim() != value {
            self.fail(pointer, "must not start or end with whitespace");
        }
    }

    pub fn email(&mut self, pointer: &str, value: &str) {
        if !is_email(value) {
            self.fail(pointer, "must be an email address");
        }
    }

    pub fn finish(self) -> Result<()> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(Error::Validation(self.0))
        }
    }
}

/// A pragmatic address check: one `@`, a non-empty local part of at most 64 bytes, a domain
/// with a dot and DNS-shaped labels, at most 254 bytes, no whitespace.
pub fn is_email(value: &str) -> bool {
    if value.len() > 254 || value.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return false;
    }
    let Some((local, domain)) = value.split_once('@') else {
        return false;
    };
    if local.is_empty() || local.len() > 64 || domain.contains('@') || !domain.contains('.') {
        return false;
    }
    domain.split('.').all(|label| {
        !label.is_empty()
            && label.len() <= 63
            && !label.starts_with('-')
            && !label.ends_with('-')
            && label.chars().all(|c| c.is_alphanumeric() || c == '-')
    })
}

/// The stored form of an email: trimmed and lowercased.
pub fn normalize_email(value: &str) -> String {
    value.trim().to_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn email_rules() {
        for ok in ["a@b.co", "first.last+tag@example.com", "x@sub.domain.eu"] {
            assert!(is_email(ok), "{ok}");
        }
        for bad in [
            "", "a", "a@b", "@b.co", "a@@b.co", "a b@c.de", "a@-b.co", "a@b..co",
        ] {
            assert!(!is_email(bad), "{bad}");
        }
    }

    #[test]
    fn text_reports_each_field() {
        let mut c = Checks::new();
        c.text("/name", "", 1, 10);
        c.text("/other", "ok", 1, 10);
        c.text("/third", " padded", 1, 10);
        match c.finish() {
            Err(Error::Validation(errors)) => {
                let pointers: Vec<_> = errors.iter().map(|e| e.pointer.as_str()).collect();
                assert_eq!(pointers, ["/name", "/third"]);
            }
            other => assert!(other.is_err(), "expected validation errors"),
        }
    }
}
