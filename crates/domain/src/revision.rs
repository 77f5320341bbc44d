//! What the administrator says about a revision: its comment.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// A revision comment: one line of at most [`RevisionComment::MAX_CHARS`]
/// characters, without control characters (no line break, tab or escape
/// sequence that could garble a listing or a log), surrounding spaces
/// trimmed. The one rule for comments, whether they come from the API,
/// the console or a rollback.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct RevisionComment(String);

/// Why a text is not a revision comment.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{reason}: a revision comment is one line of at most {max} characters", max = RevisionComment::MAX_CHARS)]
pub struct InvalidComment {
    reason: &'static str,
}

impl InvalidComment {
    pub fn code(&self) -> &'static str {
        "invalid-comment"
    }

    pub fn hint(&self) -> &'static str {
        "shorten the comment and remove line breaks, tabs and other control characters"
    }
}

impl RevisionComment {
    pub const MAX_CHARS: usize = 500;

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for RevisionComment {
    type Err = InvalidComment;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        // Checked before trimming: a trailing line break is refused too.
        if s.chars().any(char::is_control) {
            return Err(InvalidComment {
                reason: "the comment has a control character (a line break, a tab...)",
            });
        }
        let s = s.trim();
        if s.chars().count() > Self::MAX_CHARS {
            return Err(InvalidComment {
                reason: "the comment is too long",
            });
        }
        Ok(RevisionComment(s.to_owned()))
    }
}

impl TryFrom<String> for RevisionComment {
    type Error = InvalidComment;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl From<RevisionComment> for String {
    fn from(c: RevisionComment) -> String {
        c.0
    }
}

impl fmt::Display for RevisionComment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_of_at_most_500_characters() {
        let ok: RevisionComment = "  production layout ".parse().expect("ok");
        assert_eq!(ok.as_str(), "production layout");
        assert_eq!("".parse::<RevisionComment>().expect("empty").as_str(), "");
        let longest = "é".repeat(RevisionComment::MAX_CHARS);
        assert!(
            longest.parse::<RevisionComment>().is_ok(),
            "characters, not bytes"
        );
        let e = format!("{longest}x")
            .parse::<RevisionComment>()
            .unwrap_err();
        assert_eq!(e.code(), "invalid-comment");
        for bad in [
            "two\nlines",
            "trailing\n",
            "tab\there",
            "bell\u{7}",
            "esc\u{1b}[31m",
            "del\u{7f}",
            "c1\u{85}",
        ] {
            let e = bad.parse::<RevisionComment>().unwrap_err();
            assert_eq!(e.code(), "invalid-comment", "{bad:?}");
        }
    }
}
