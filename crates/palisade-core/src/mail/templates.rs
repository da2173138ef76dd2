//! The account messages, each as plain text and as HTML built from the same parts. The HTML is
//! one self-contained page with inline styles and no remote asset except a workspace's own logo,
//! every interpolated value escaped.

use std::fmt::Write as _;

use crate::workspaces::model::Branding;

use super::Email;

/// Whose name and colours a message carries: the instance's, or a workspace's where a workspace
/// is involved (invitations, workspace notices).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Brand {
    pub name: String,
    /// A CSS colour (`#rrggbb`) for the button and the code.
    pub accent: String,
    /// An https logo URL.
    pub logo_url: Option<String>,
}

impl Brand {
    pub fn instance(name: &str) -> Self {
        Self {
            name: name.to_owned(),
            accent: "#1f4fd8".to_owned(),
            logo_url: None,
        }
    }

    /// A workspace's branding over the instance's; only values safe to put in a style or an
    /// `src` are taken.
    pub fn workspace(branding: &Branding, workspace_name: &str, instance: &Brand) -> Self {
        let accent = [&branding.accent_color, &branding.primary_color]
            .into_iter()
            .flatten()
            .find(|c| is_hex_color(c))
            .cloned()
            .unwrap_or_else(|| instance.accent.clone());
        Self {
            name: branding
                .display_name
                .clone()
                .unwrap_or_else(|| workspace_name.to_owned()),
            accent,
            logo_url: branding
                .logo_url
                .clone()
                .filter(|u| u.starts_with("https://")),
        }
    }
}

fn is_hex_color(c: &str) -> bool {
    c.len() == 7 && c.starts_with('#') && c[1..].chars().all(|ch| ch.is_ascii_hexdigit())
}

/// HTML text and attribute escaping.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for ch in text.chars() {
        match ch {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            _ => out.push(ch),
        }
    }
    out
}

/// What a message says, in order: paragraphs, then a button or a code, then closing lines.
struct Body<'a> {
    kind: &'static str,
    subject: String,
    intro: Vec<String>,
    action: Option<(&'a str, &'a str)>,
    code: Option<&'a str>,
    outro: Vec<String>,
}

fn compose(brand: &Brand, to: &str, body: Body<'_>) -> Email {
    let mut text = String::new();
    for p in &body.intro {
        let _ = writeln!(text, "{p}\n");
    }
    if let Some((label, url)) = body.action {
        let _ = writeln!(text, "{label}:\n{url}\n");
    }
    if let Some(code) = body.code {
        let _ = writeln!(text, "    {code}\n");
    }
    for p in &body.outro {
        let _ = writeln!(text, "{p}\n");
    }
    let _ = write!(text, "-- \n{}\n", brand.name);

    let accent = escape(&brand.accent);
    let mut html = String::from(
        "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width\"></head>\
         <body style=\"margin:0;padding:24px;background:#f4f5f7;font-family:system-ui,-apple-system,Segoe UI,sans-serif;color:#1b1d21\">\
         <div style=\"max-width:520px;margin:0 auto;background:#ffffff;border-radius:8px;padding:32px\">\n",
    );
    if let Some(logo) = &brand.logo_url {
        let _ = writeln!(
            html,
            "<img src=\"{}\" alt=\"{}\" style=\"max-height:40px;margin-bottom:16px\">",
            escape(logo),
            escape(&brand.name)
        );
    } else {
        let _ = writeln!(
            html,
            "<div style=\"font-weight:600;font-size:18px;margin-bottom:16px\">{}</div>",
            escape(&brand.name)
        );
    }
    for p in &body.intro {
        let _ = writeln!(html, "<p style=\"line-height:1.5\">{}</p>", escape(p));
    }
    if let Some((label, url)) = body.action {
        let _ = writeln!(
            html,
            "<p style=\"margin:28px 0\"><a href=\"{}\" style=\"background:{accent};color:#ffffff;padding:12px 20px;border-radius:6px;text-decoration:none;font-weight:600\">{}</a></p>\
             <p style=\"font-size:13px;color:#5b606b;word-break:break-all\">{}</p>",
            escape(url),
            escape(label),
            escape(url)
        );
    }
    if let Some(code) = body.code {
        let _ = writeln!(
            html,
            "<p style=\"font-size:32px;letter-spacing:6px;font-weight:700;color:{accent};margin:28px 0\">{}</p>",
            escape(code)
        );
    }
    for p in &body.outro {
        let _ = writeln!(
            html,
            "<p style=\"line-height:1.5;font-size:14px;color:#5b606b\">{}</p>",
            escape(p)
        );
    }
    html.push_str("</div></body></html>\n");
    Email {
        to: to.to_owned(),
        subject: body.subject,
        text,
        html,
        kind: body.kind,
    }
}

/// "15 minutes", "24 hours", "1 hour".
pub fn human(duration: time::Duration) -> String {
    let minutes = duration.whole_minutes();
    let (n, unit) = if minutes >= 60 && minutes % 60 == 0 {
        (minutes / 60, "hour")
    } else {
        (minutes.max(1), "minute")
    };
    if n == 1 {
        format!("1 {unit}")
    } else {
        format!("{n} {unit}s")
    }
}

const NOT_YOU: &str = "If you did not ask for this, you can ignore this message.";

pub fn verify_email(brand: &Brand, to: &str, link: &str, valid_for: time::Duration) -> Email {
    compose(
        brand,
        to,
        Body {
            kind: "verify_email",
            subject: format!("Confirm your email address for {}", brand.name),
            intro: vec![format!(
                "Confirm that this is your email address to finish setting up your {} account.",
                brand.name
            )],
            action: Some(("Confirm your email address", link)),
            code: None,
            outro: vec![
                format!("The link works once, for {}.", human(valid_for)),
                NOT_YOU.to_owned(),
            ],
        },
    )
}

pub fn magic_link(brand: &Brand, to: &str, link: &str, valid_for: time::Duration) -> Email {
    compose(
        brand,
        to,
        Body {
            kind: "magic_link",
            subject: format!("Your sign-in link for {}", brand.name),
            intro: vec![format!(
                "Open this link to sign in to {}. You will be asked to confirm.",
                brand.name
            )],
            action: Some(("Sign in", link)),
            code: None,
            outro: vec![
                format!(
                    "The link works once, for {}. Never forward it: whoever opens it is signed in as you.",
                    human(valid_for)
                ),
                NOT_YOU.to_owned(),
            ],
        },
    )
}

/// An invitation to a workspace (ACL-7), in the workspace's branding. `inviter` is the name
/// the inviting member gave themselves.
pub fn invitation(
    brand: &Brand,
    to: &str,
    inviter: &str,
    role: &str,
    link: &str,
    valid_for: time::Duration,
) -> Email {
    compose(
        brand,
        to,
        Body {
            kind: "invitation",
            subject: format!("{inviter} invited you to {}", brand.name),
            intro: vec![format!(
                "{inviter} invited you to join {} as {role}. Sign in or create an account with this address, then accept.",
                brand.name
            )],
            action: Some(("Accept the invitation", link)),
            code: None,
            outro: vec![
                format!(
                    "The invitation works once, for {}, and only for this address.",
                    human(valid_for)
                ),
                "If you did not expect it, ignore this email: nothing happens unless you accept."
                    .to_owned(),
            ],
        },
    )
}

pub fn password_reset_code(
    brand: &Brand,
    to: &str,
    code: &str,
    valid_for: time::Duration,
) -> Email {
    compose(
        brand,
        to,
        Body {
            kind: "password_reset_code",
            subject: format!("Your {} password reset code", brand.name),
            intro: vec![format!(
                "Someone asked to reset the password of your {} account. Enter this code to choose a new password:",
                brand.name
            )],
            action: None,
            code: Some(code),
            outro: vec![
                format!(
                    "The code is valid for {} and for 5 attempts. Nobody from {} will ever ask you for it.",
                    human(valid_for),
                    brand.name
                ),
                "If you did not ask for this, your password is unchanged and you can ignore this message.".to_owned(),
            ],
        },
    )
}

pub fn account_locked(brand: &Brand, to: &str, locked_for: time::Duration) -> Email {
    compose(
        brand,
        to,
        Body {
            kind: "account_locked",
            subject: format!("Your {} account was locked", brand.name),
            intro: vec![
                format!(
                    "Your {} account was locked for {} after repeated failed sign-in attempts.",
                    brand.name,
                    human(locked_for)
                ),
                "If these attempts were not yours, someone may be guessing your password. You can reset it at any time, even while the account is locked, and sign in with an emailed link.".to_owned(),
            ],
            action: None,
            code: None,
            outro: vec!["If it was you, wait until the lock ends and try again.".to_owned()],
        },
    )
}

/// After a reset (`reset`) or a change from a signed-in session.
pub fn password_changed(brand: &Brand, to: &str, reset: bool) -> Email {
    let how = if reset {
        "was reset with a code sent to this address"
    } else {
        "was changed from a signed-in session"
    };
    compose(
        brand,
        to,
        Body {
            kind: "password_changed",
            subject: format!("Your {} password was changed", brand.name),
            intro: vec![
                format!("The password of your {} account {how}.", brand.name),
                "Your other sessions were signed out.".to_owned(),
            ],
            action: None,
            code: None,
            outro: vec![
                "If this was not you, reset your password now and contact your administrator."
                    .to_owned(),
            ],
        },
    )
}

/// To a workspace's owners and admins when Palisade disabled a webhook endpoint that kept
/// failing. Only the URL's origin is shown: a path or query may hold a token.
pub fn webhook_disabled(brand: &Brand, to: &str, url: &str, failing_for: time::Duration) -> Email {
    let origin = url::Url::parse(url)
        .map(|u| u.origin().ascii_serialization())
        .unwrap_or_else(|_| "(unreadable URL)".to_owned());
    compose(
        brand,
        to,
        Body {
            kind: "webhook_disabled",
            subject: format!("A {} webhook endpoint was disabled", brand.name),
            intro: vec![
                format!(
                    "Every delivery to your webhook endpoint at {origin} failed for {}, so it was disabled and receives no more events.",
                    human(failing_for)
                ),
                "Its failed deliveries and each attempt's answer are in its delivery history."
                    .to_owned(),
            ],
            action: None,
            code: None,
            outro: vec![
                "Once the receiver works again, enable the endpoint and redeliver what it missed."
                    .to_owned(),
            ],
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_bodies_carry_the_secret_and_html_is_escaped() {
        let brand = Brand::workspace(
            &Branding {
                display_name: Some("Acme <b>& Co</b>".into()),
                logo_url: Some("http://insecure.example/logo.png".into()),
                primary_color: Some("red;background:url(x)".into()),
                accent_color: None,
            },
            "acme",
            &Brand::instance("Palisade"),
        );
        assert_eq!(brand.accent, "#1f4fd8", "an unsafe colour is not taken");
        assert_eq!(brand.logo_url, None, "only https logos");
        let link = "https://app.example/auth/magic#token=a&b";
        let mail = magic_link(&brand, "ada@example.com", link, time::Duration::minutes(15));
        assert!(mail.text.contains(link));
        assert!(mail.text.contains("15 minutes"));
        assert!(
            mail.html
                .contains("https://app.example/auth/magic#token=a&amp;b")
        );
        assert!(mail.html.contains("Acme &lt;b&gt;&amp; Co&lt;/b&gt;"));
        assert!(!mail.html.contains("<b>"));
        let code = password_reset_code(&brand, "a@b.co", "042917", time::Duration::hours(1));
        assert!(code.text.contains("042917") && code.html.contains("042917"));
        assert!(code.text.contains("1 hour"));
        assert_eq!(
            format!("{code:?}"),
            "Email { kind: \"password_reset_code\", .. }"
        );
    }
}
