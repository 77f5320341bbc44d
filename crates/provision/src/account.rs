//! Accounts: who a phone is, as much as provisioning needs.
//!
//! Every field is a newtype that holds only what can be written into a
//! SIP URI, a Kamailio table, a JSON or XML document and a spreadsheet
//! without surprises. The [`Account`] keeps the HA1 digest of its SIP
//! password, never the password (see [`crate::credentials`]).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::credentials::{Ha1, Realm, SipPassword};
use crate::text::{echo, is_invisible_format, is_word, is_word_byte, string_newtype};

/// Characters that make a spreadsheet cell a formula (CSV injection, also
/// called formula injection). No text field of an account starts with one,
/// whatever way it came in, so an account can be exported to a spreadsheet
/// later without the export having to defuse anything but the phone number
/// (whose `+` is followed by digits only).
pub const FORMULA_PREFIXES: [char; 4] = ['=', '+', '-', '@'];

/// A SIP user name: 1 to 32 of `a-z 0-9 . _ -`, starting with a letter or
/// digit; stored lowercase (`Alice` and `alice` are one account). Safe in a
/// SIP URI, a digest computation (no `:`), a file name, XML and JSON
/// without escaping.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Username(String);

/// Why a string is not a user name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid username {input:?}: {reason}")]
pub struct InvalidUsername {
    input: String,
    reason: &'static str,
}

impl InvalidUsername {
    pub fn code(&self) -> &'static str {
        "invalid-username"
    }

    pub fn hint(&self) -> &'static str {
        "use 1 to 32 letters, digits, '.', '_' or '-', starting with a letter or digit; \
         or leave the username out to get the next free number"
    }
}

impl Username {
    pub const MAX_LEN: usize = 32;

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The value of a generated (canonical numeric) user name: all digits,
    /// no leading zero.
    fn number(&self) -> Option<u64> {
        let s = self.0.as_str();
        let canonical = s.bytes().all(|b| b.is_ascii_digit()) && (s == "0" || !s.starts_with('0'));
        if canonical { s.parse().ok() } else { None }
    }
}

impl FromStr for Username {
    type Err = InvalidUsername;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = |reason| InvalidUsername {
            input: echo(s),
            reason,
        };
        if s.is_empty() {
            return Err(err("it is empty"));
        }
        if s.len() > Self::MAX_LEN {
            return Err(err("a username is at most 32 characters"));
        }
        if !s.bytes().next().is_some_and(|b| b.is_ascii_alphanumeric()) {
            return Err(err("it must start with a letter or digit"));
        }
        if !s.bytes().all(is_word_byte) {
            return Err(err("only letters, digits, '.', '_' and '-' are allowed"));
        }
        Ok(Username(s.to_ascii_lowercase()))
    }
}

string_newtype!(Username, InvalidUsername);

/// The first generated user name: four-digit extensions, as on a PBX.
pub const FIRST_NUMERIC_USERNAME: u64 = 1000;

/// Hands out numeric user names, each once: one more than the greatest
/// numeric user name taken, and at least [`FIRST_NUMERIC_USERNAME`].
/// Numbers below the greatest are not reused, so a deleted account's number
/// does not go to someone else while the numbers after it live on (once the
/// greatest is deleted, its number can come back: the store should keep
/// deleted names if that matters).
#[derive(Debug, Clone, Default)]
struct NumberPool {
    taken: BTreeSet<u64>,
}

impl NumberPool {
    fn take(&mut self, username: &Username) {
        if let Some(n) = username.number() {
            self.taken.insert(n);
        }
    }

    fn next(&mut self) -> Username {
        let above = match self.taken.last() {
            Some(&max) => max.checked_add(1).map(|n| n.max(FIRST_NUMERIC_USERNAME)),
            None => Some(FIRST_NUMERIC_USERNAME),
        };
        // Past u64::MAX (only if someone chose such a name): the first gap.
        let n = above.unwrap_or_else(|| {
            (FIRST_NUMERIC_USERNAME..)
                .find(|n| !self.taken.contains(n))
                .expect("a finite set leaves numbers free")
        });
        self.taken.insert(n);
        Username(n.to_string())
    }
}

/// A phone number in E.164 form: `+`, then 8 to 15 digits, the first not
/// `0`. Parsed from what administrators type and spreadsheets hold:
/// spaces (also non-breaking), `-`, `.` and one pair of parentheses
/// between the digits are dropped (`+1 (555) 010-0199` is `+15550100199`).
/// Anything else is refused rather than guessed: no `00` prefix (it means
/// different things in different countries), no national numbers, no
/// extensions.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct PhoneNumber(String);

/// Why a string is not an E.164 phone number.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid phone number {input:?}: {reason}")]
pub struct InvalidPhoneNumber {
    input: String,
    reason: String,
    hint: &'static str,
}

const E164_HINT: &str = "write the number in international form: + then the country code and the number, e.g. +41 44 668 18 00";

impl InvalidPhoneNumber {
    pub fn code(&self) -> &'static str {
        "invalid-phone-number"
    }

    pub fn hint(&self) -> &'static str {
        self.hint
    }
}

impl PhoneNumber {
    /// The most digits E.164 allows.
    pub const MAX_DIGITS: usize = 15;
    /// The fewest digits switchboard accepts (shorter is a short code or a typo).
    pub const MIN_DIGITS: usize = 8;
    /// Longer input is refused before it is looked at.
    pub const MAX_INPUT: usize = 64;

    /// `+` and the digits.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for PhoneNumber {
    type Err = InvalidPhoneNumber;
    fn from_str(input: &str) -> Result<Self, Self::Err> {
        let err = |reason: String, hint| InvalidPhoneNumber {
            input: echo(input),
            reason,
            hint,
        };
        if input.len() > Self::MAX_INPUT {
            return Err(err(
                format!("it is longer than {} characters", Self::MAX_INPUT),
                E164_HINT,
            ));
        }
        let s = input.trim();
        let Some(rest) = s.strip_prefix('+') else {
            return Err(if s.is_empty() {
                err("it is empty".into(), E164_HINT)
            } else if s.starts_with("00") {
                err(
                    "it starts with 00 instead of +".into(),
                    "replace the leading 00 with +, e.g. 0041 44 668 18 00 is +41 44 668 18 00",
                )
            } else if s.starts_with(|c: char| c.is_ascii_digit()) {
                err(
                    "it does not start with + and the country code".into(),
                    "write + and the country code first; if a spreadsheet dropped the +, format the column as text",
                )
            } else {
                err("it does not start with +".into(), E164_HINT)
            });
        };
        let mut digits = String::with_capacity(Self::MAX_DIGITS + 1);
        digits.push('+');
        let unpaired = || {
            err(
                "its parentheses do not pair up".into(),
                "use at most one pair of parentheses, around the area code",
            )
        };
        #[derive(PartialEq)]
        enum Parens {
            None,
            Open,
            Closed,
        }
        let mut parens = Parens::None;
        for c in rest.chars() {
            match c {
                '0'..='9' => digits.push(c),
                ' ' | '\u{a0}' | '-' | '.' => {}
                '(' if parens == Parens::None => parens = Parens::Open,
                ')' if parens == Parens::Open => parens = Parens::Closed,
                '(' | ')' => return Err(unpaired()),
                'x' | 'X' | ';' | ',' | '#' | '*' => {
                    return Err(err(
                        format!(
                            "it has {c:?}: extensions and dialling codes are not part of an E.164 number"
                        ),
                        "give the number without extension",
                    ));
                }
                _ => {
                    return Err(err(
                        format!("{c:?} is not part of a phone number"),
                        "use only digits after the +, optionally grouped with spaces, '-', '.' or parentheses",
                    ));
                }
            }
        }
        if parens == Parens::Open {
            return Err(unpaired());
        }
        let n = digits.len() - 1;
        if digits.as_bytes().get(1) == Some(&b'0') {
            return Err(err(
                "a country code never starts with 0".into(),
                "drop the national trunk prefix: +41 044 668 18 00 is +41 44 668 18 00",
            ));
        }
        if !(Self::MIN_DIGITS..=Self::MAX_DIGITS).contains(&n) {
            return Err(err(
                format!(
                    "it has {n} digits; an E.164 number has {} to {}",
                    Self::MIN_DIGITS,
                    Self::MAX_DIGITS
                ),
                E164_HINT,
            ));
        }
        Ok(PhoneNumber(digits))
    }
}

string_newtype!(PhoneNumber, InvalidPhoneNumber);

/// What the phone shows as its owner's name: 1 to 64 characters (Unicode
/// scalar values), leading and trailing white space removed. Refused: control
/// characters (line breaks, tabs), invisible formatting characters
/// (bidirectional overrides, zero-width characters, byte order marks), and
/// a first character in [`FORMULA_PREFIXES`]. Any other character is
/// allowed and escaped where it is written (XML, SIP quoted string, JSON).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct DisplayName(String);

/// Why a string is not a display name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid display name {input:?}: {reason}")]
pub struct InvalidDisplayName {
    input: String,
    reason: String,
    hint: &'static str,
}

impl InvalidDisplayName {
    pub fn code(&self) -> &'static str {
        "invalid-display-name"
    }

    pub fn hint(&self) -> &'static str {
        self.hint
    }
}

impl DisplayName {
    pub const MAX_CHARS: usize = 64;

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for DisplayName {
    type Err = InvalidDisplayName;
    fn from_str(input: &str) -> Result<Self, Self::Err> {
        let err = |reason: String, hint| InvalidDisplayName {
            input: echo(input),
            reason,
            hint,
        };
        let s = input.trim();
        if s.is_empty() {
            return Err(err(
                "it is empty".into(),
                "give a name, or leave the name out",
            ));
        }
        let chars = s.chars().count();
        if chars > Self::MAX_CHARS {
            return Err(err(
                format!(
                    "it has {chars} characters; at most {} fit on a phone screen",
                    Self::MAX_CHARS
                ),
                "shorten the name",
            ));
        }
        if let Some(c) = s
            .chars()
            .find(|&c| c.is_control() || is_invisible_format(c))
        {
            return Err(err(
                format!("it contains the invisible character U+{:04X}", u32::from(c)),
                "remove line breaks, tabs and invisible formatting characters from the name",
            ));
        }
        if let Some(c) = s.chars().next().filter(|c| FORMULA_PREFIXES.contains(c)) {
            return Err(err(
                format!("it starts with {c:?}, which makes spreadsheets run it as a formula"),
                "remove the leading character, or start the name with a letter",
            ));
        }
        Ok(DisplayName(s.to_owned()))
    }
}

string_newtype!(DisplayName, InvalidDisplayName);

/// A group of accounts (a department, a site): 1 to 32 of
/// `a-z 0-9 . _ -`, starting with a letter or digit, stored lowercase.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Group(String);

/// Why a string is not a group name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "invalid group {0:?}: use 1 to 32 letters, digits, '.', '_' or '-', starting with a letter or digit"
)]
pub struct InvalidGroup(String);

impl InvalidGroup {
    pub fn code(&self) -> &'static str {
        "invalid-group"
    }

    pub fn hint(&self) -> &'static str {
        "name the group with a short word such as sales or site-2"
    }
}

impl Group {
    pub const MAX_LEN: usize = 32;

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for Group {
    type Err = InvalidGroup;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if is_word(s, Self::MAX_LEN) {
            Ok(Group(s.to_ascii_lowercase()))
        } else {
            Err(InvalidGroup(echo(s)))
        }
    }
}

string_newtype!(Group, InvalidGroup);

/// Which client the phone runs, and so which document it gets.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(rename_all = "kebab-case")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum ClientProfile {
    /// Our own client: the JSON document of media type
    /// [`NATIVE_MEDIA_TYPE`](crate::document::NATIVE_MEDIA_TYPE).
    #[default]
    Native,
    /// Linphone (Android, iOS, desktop): its remote provisioning XML.
    Linphone,
}

/// A client profile that does not exist.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown client profile {0:?}; the profiles are: native, linphone")]
pub struct UnknownProfile(String);

impl UnknownProfile {
    pub fn code(&self) -> &'static str {
        "unknown-client-profile"
    }

    pub fn hint(&self) -> &'static str {
        "use native for the switchboard app, linphone for Linphone; leave it out for native"
    }
}

impl ClientProfile {
    pub fn as_str(self) -> &'static str {
        match self {
            ClientProfile::Native => "native",
            ClientProfile::Linphone => "linphone",
        }
    }
}

impl FromStr for ClientProfile {
    type Err = UnknownProfile;
    /// Case-insensitive: `Linphone` from a spreadsheet is `linphone`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        [ClientProfile::Native, ClientProfile::Linphone]
            .into_iter()
            .find(|p| p.as_str().eq_ignore_ascii_case(s))
            .ok_or_else(|| UnknownProfile(echo(s)))
    }
}

impl fmt::Display for ClientProfile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What an administrator asks for (CLI `account add`, a CSV row): the
/// user name is optional and generated when absent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewAccount {
    pub username: Option<Username>,
    pub display_name: Option<DisplayName>,
    pub phone: PhoneNumber,
    pub group: Option<Group>,
    pub profile: ClientProfile,
}

impl NewAccount {
    /// The draft of this account under `username`.
    pub(crate) fn named(self, username: Username) -> AccountDraft {
        AccountDraft {
            username,
            display_name: self.display_name,
            phone: self.phone,
            group: self.group,
            profile: self.profile,
        }
    }
}

/// An account that passed the uniqueness checks ([`Taken::admit`]) and has
/// its user name, waiting for its password ([`AccountDraft::into_account`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AccountDraft {
    pub username: Username,
    pub display_name: Option<DisplayName>,
    pub phone: PhoneNumber,
    pub group: Option<Group>,
    pub profile: ClientProfile,
}

impl AccountDraft {
    /// The account, with the HA1 digest of `password` for `realm`. The
    /// password is dropped (and its memory wiped) here: from now on only
    /// the digest exists.
    pub fn into_account(self, password: SipPassword, realm: &Realm) -> Account {
        let ha1 = Ha1::compute(&self.username, realm, &password);
        Account {
            username: self.username,
            display_name: self.display_name,
            phone: self.phone,
            group: self.group,
            profile: self.profile,
            ha1,
        }
    }
}

/// A provisioned account. It holds the HA1 digest of the SIP password and
/// never the password. The fields are private because the digest is only
/// valid for the user name it was computed with: a new user name needs a
/// new password.
///
/// `Account` is deliberately not `Serialize`: the digest is a
/// password-equivalent for its realm, and an API that returned an
/// `Account` would leak it. API documents use [`Account::view`]; the store
/// writes the fields one by one ([`Ha1::expose_hex`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    username: Username,
    display_name: Option<DisplayName>,
    phone: PhoneNumber,
    group: Option<Group>,
    profile: ClientProfile,
    ha1: Ha1,
}

impl Account {
    /// An account as the store kept it.
    pub fn from_stored(
        username: Username,
        display_name: Option<DisplayName>,
        phone: PhoneNumber,
        group: Option<Group>,
        profile: ClientProfile,
        ha1: Ha1,
    ) -> Self {
        Account {
            username,
            display_name,
            phone,
            group,
            profile,
            ha1,
        }
    }

    pub fn username(&self) -> &Username {
        &self.username
    }

    pub fn display_name(&self) -> Option<&DisplayName> {
        self.display_name.as_ref()
    }

    pub fn phone(&self) -> &PhoneNumber {
        &self.phone
    }

    pub fn group(&self) -> Option<&Group> {
        self.group.as_ref()
    }

    pub fn profile(&self) -> ClientProfile {
        self.profile
    }

    pub fn ha1(&self) -> &Ha1 {
        &self.ha1
    }

    pub fn set_display_name(&mut self, name: Option<DisplayName>) {
        self.display_name = name;
    }

    /// Check that no other account has `phone` first ([`Taken::phone_owner`]).
    pub fn set_phone(&mut self, phone: PhoneNumber) {
        self.phone = phone;
    }

    pub fn set_group(&mut self, group: Option<Group>) {
        self.group = group;
    }

    pub fn set_profile(&mut self, profile: ClientProfile) {
        self.profile = profile;
    }

    /// A new password (e.g. after a lost phone): the old digest is replaced.
    pub fn set_password(&mut self, password: SipPassword, realm: &Realm) {
        self.ha1 = Ha1::compute(&self.username, realm, &password);
    }

    /// What the API and the console show: everything but the digest.
    pub fn view(&self) -> AccountView {
        AccountView {
            username: self.username.clone(),
            display_name: self.display_name.clone(),
            phone: self.phone.clone(),
            group: self.group.clone(),
            profile: self.profile,
            realm: self.ha1.realm().clone(),
        }
    }
}

/// An account as the API shows it: no credentials.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AccountView {
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub username: Username,
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>))]
    pub display_name: Option<DisplayName>,
    /// E.164 (`+33612345678`).
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub phone: PhoneNumber,
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>))]
    pub group: Option<Group>,
    pub profile: ClientProfile,
    /// The SIP realm of its digest.
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub realm: Realm,
}

/// The user names and phone numbers already in use, and the numbers
/// handed out: what a new account must not collide with.
#[derive(Debug, Clone, Default)]
pub struct Taken {
    usernames: BTreeSet<Username>,
    phones: BTreeMap<PhoneNumber, Username>,
    numbers: NumberPool,
}

/// Why an account cannot be created: something it needs is in use.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Conflict {
    #[error("the username {0} is taken")]
    UsernameTaken(Username),
    #[error("the phone number {phone} already belongs to {owner}")]
    PhoneTaken { phone: PhoneNumber, owner: Username },
}

impl Conflict {
    pub fn code(&self) -> &'static str {
        match self {
            Conflict::UsernameTaken(_) => "username-taken",
            Conflict::PhoneTaken { .. } => "phone-taken",
        }
    }

    pub fn hint(&self) -> &'static str {
        match self {
            Conflict::UsernameTaken(_) => {
                "choose another username, or leave it out to get the next free number"
            }
            Conflict::PhoneTaken { .. } => {
                "one phone number is one account: change or delete the other account first"
            }
        }
    }
}

impl Taken {
    /// What the accounts of the store use.
    pub fn from_accounts<'a>(accounts: impl IntoIterator<Item = &'a Account>) -> Self {
        let mut taken = Taken::default();
        for a in accounts {
            taken.insert(a.username.clone(), a.phone.clone());
        }
        taken
    }

    /// Mark `username` and `phone` as used.
    pub fn insert(&mut self, username: Username, phone: PhoneNumber) {
        self.numbers.take(&username);
        self.phones.insert(phone, username.clone());
        self.usernames.insert(username);
    }

    pub fn has_username(&self, username: &Username) -> bool {
        self.usernames.contains(username)
    }

    /// The account that has `phone`, if any.
    pub fn phone_owner(&self, phone: &PhoneNumber) -> Option<&Username> {
        self.phones.get(phone)
    }

    /// Check `new` against what is taken, give it a user name if it has
    /// none, and mark its name and number as taken.
    pub fn admit(&mut self, new: NewAccount) -> Result<AccountDraft, Vec<Conflict>> {
        let mut conflicts = Vec::new();
        if let Some(u) = new.username.as_ref().filter(|u| self.has_username(u)) {
            conflicts.push(Conflict::UsernameTaken(u.clone()));
        }
        if let Some(owner) = self.phone_owner(&new.phone) {
            conflicts.push(Conflict::PhoneTaken {
                phone: new.phone.clone(),
                owner: owner.clone(),
            });
        }
        if !conflicts.is_empty() {
            return Err(conflicts);
        }
        let username = match new.username.clone() {
            Some(u) => u,
            // Every numeric name in use went through `insert`, so the pool
            // knows it: a generated name never collides.
            None => self.numbers.next(),
        };
        self.insert(username.clone(), new.phone.clone());
        Ok(new.named(username))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::text::tests::Noise;

    fn user(s: &str) -> Username {
        s.parse().expect("a valid username")
    }

    fn phone(s: &str) -> PhoneNumber {
        s.parse().expect("a valid phone number")
    }

    #[test]
    fn usernames_are_plain_lowercase_words() {
        assert_eq!(user("Alice.B-2_x").as_str(), "alice.b-2_x");
        assert_eq!(user("1000").as_str(), "1000");
        assert_eq!(user(&"a".repeat(32)).as_str().len(), 32);
        for bad in [
            "",
            "-a",
            ".a",
            "_a",
            "a b",
            "a:b",
            "a@b",
            "é",
            "=1+1",
            "a\n",
            &"a".repeat(33),
        ] {
            let err = bad.parse::<Username>().expect_err(bad);
            assert_eq!(err.code(), "invalid-username");
            assert!(err.to_string().starts_with("invalid username"), "{err}");
        }
    }

    #[test]
    fn the_next_numeric_username_follows_the_greatest_number_and_starts_at_1000() {
        fn next_numeric_username<'a>(existing: impl IntoIterator<Item = &'a Username>) -> Username {
            let mut pool = NumberPool::default();
            existing.into_iter().for_each(|u| pool.take(u));
            pool.next()
        }
        assert_eq!(next_numeric_username([]).as_str(), "1000");
        let existing = [user("alice"), user("7"), user("1041"), user("1003")];
        assert_eq!(next_numeric_username(&existing).as_str(), "1042");
        let non_canonical = [user("099999")];
        assert_eq!(next_numeric_username(&non_canonical).as_str(), "1000");
        let huge = [user("18446744073709551615"), user("1000")];
        assert_eq!(next_numeric_username(&huge).as_str(), "1001");
        let too_big_for_u64 = [user("99999999999999999999999")];
        assert_eq!(next_numeric_username(&too_big_for_u64).as_str(), "1000");
    }

    #[test]
    fn admin_input_becomes_a_canonical_e164_number() {
        for (input, canonical) in [
            ("+41446681800", "+41446681800"),
            ("+41 44 668 18 00", "+41446681800"),
            ("  +41 44 668 18 00  ", "+41446681800"),
            ("+1 (555) 010-0199", "+15550100199"),
            ("+49.30.1234567", "+49301234567"),
            ("+33\u{a0}1\u{a0}23\u{a0}45\u{a0}67\u{a0}89", "+33123456789"),
            ("+12345678", "+12345678"),
            ("+123456789012345", "+123456789012345"),
        ] {
            assert_eq!(phone(input).as_str(), canonical, "{input}");
        }
    }

    #[test]
    fn phone_numbers_that_are_not_e164_are_refused_with_a_reason_and_a_hint() {
        for (bad, hint_says) in [
            ("", "international form"),
            ("0041446681800", "replace the leading 00"),
            ("41446681800", "dropped the +"),
            ("044 668 18 00", "dropped the +"),
            ("+041446681800", "trunk prefix"),
            ("+1234567", "international form"),
            ("+1234567890123456", "international form"),
            ("+41 44 668 18 00 x12", "without extension"),
            ("+41446681800;ext=1", "without extension"),
            ("+41 (44) (668) 1800", "parentheses"),
            ("+41 (44 668 1800", "parentheses"),
            ("+41 44) 668 1800", "parentheses"),
            ("++41446681800", "only digits"),
            ("+41+446681800", "only digits"),
            ("=+41446681800", "does not start with +"),
            ("@SUM(1+1)", "does not start with +"),
            ("-41446681800", "does not start with +"),
            ("+4144668180O", "only digits"),
            ("+٤١٤٤٦٦٨١٨٠٠", "only digits"),
            ("+41\t44 668 18 00", "only digits"),
            ("+41\n446681800", "only digits"),
            ("tel:+41446681800", "does not start with +"),
        ] {
            let err = bad.parse::<PhoneNumber>().expect_err(bad);
            assert_eq!(err.code(), "invalid-phone-number");
            assert!(
                err.hint().contains(hint_says) || err.to_string().contains(hint_says),
                "{bad:?}: {err} / {}",
                err.hint()
            );
        }
        let long = format!("+41{}", " ".repeat(10_000));
        let err = long.parse::<PhoneNumber>().expect_err("oversize");
        assert!(
            err.to_string().len() < 200,
            "oversize input is not echoed whole"
        );
    }

    #[test]
    fn display_names_allow_any_visible_text_and_refuse_the_rest() {
        for ok in [
            "Alice",
            "  Zoë Ångström ",
            "<a&\"'>",
            "李小龍",
            "O'Brien (Sales)",
            "A=B",
        ] {
            let name: DisplayName = ok.parse().expect(ok);
            assert_eq!(name.as_str(), ok.trim());
        }
        assert_eq!(
            "é".repeat(64)
                .parse::<DisplayName>()
                .map(|n| n.as_str().chars().count()),
            Ok(64)
        );
        for bad in [
            "",
            "   ",
            "a\nb",
            "a\rb",
            "a\tb",
            "a\u{0}b",
            "a\u{7f}b",
            "a\u{85}b",
            "abc\u{202e}txt.exe",
            "zero\u{200b}width",
            "\u{feff}bom",
            "line\u{2028}sep",
            "=HYPERLINK(\"http://x\")",
            "+1",
            "-2+3",
            "@SUM(A1)",
            &"é".repeat(65),
        ] {
            let err = bad.parse::<DisplayName>().expect_err(bad);
            assert_eq!(err.code(), "invalid-display-name");
        }
        let err = "=1+1".parse::<DisplayName>().expect_err("formula");
        assert!(err.to_string().contains("formula"), "{err}");
    }

    #[test]
    fn groups_and_profiles_parse_case_insensitively() {
        assert_eq!(
            "Sales".parse::<Group>().map(String::from),
            Ok("sales".into())
        );
        for bad in ["", "-x", "=x", "@x", "a b", &"g".repeat(33)] {
            assert_eq!(bad.parse::<Group>().expect_err(bad).code(), "invalid-group");
        }
        assert_eq!("Linphone".parse(), Ok(ClientProfile::Linphone));
        assert_eq!("native".parse(), Ok(ClientProfile::Native));
        let err = "sipdroid".parse::<ClientProfile>().expect_err("unknown");
        assert_eq!(err.code(), "unknown-client-profile");
        assert_eq!(ClientProfile::default(), ClientProfile::Native);
    }

    #[test]
    fn admitting_an_account_checks_username_and_phone_and_generates_the_name() {
        let mut taken = Taken::default();
        taken.insert(user("1000"), phone("+41446681800"));
        let new = |username: Option<&str>, number: &str| NewAccount {
            username: username.map(user),
            display_name: None,
            phone: phone(number),
            group: None,
            profile: ClientProfile::Native,
        };
        let draft = taken.admit(new(None, "+41446681801")).expect("free");
        assert_eq!(draft.username.as_str(), "1001");
        let draft = taken
            .admit(new(Some("alice"), "+41446681802"))
            .expect("free");
        assert_eq!(draft.username.as_str(), "alice");
        let conflicts = taken
            .admit(new(Some("Alice"), "+41 44 668 18 00"))
            .expect_err("both taken");
        let codes: Vec<&str> = conflicts.iter().map(Conflict::code).collect();
        assert_eq!(codes, ["username-taken", "phone-taken"]);
        assert_eq!(
            conflicts[1].to_string(),
            "the phone number +41446681800 already belongs to 1000"
        );
        assert_eq!(
            taken.admit(new(None, "+41446681803")).map(|d| d.username),
            Ok(user("1002"))
        );
        let conflicts = taken
            .admit(new(None, "+41446681803"))
            .expect_err("an admitted phone is taken");
        assert_eq!(
            conflicts,
            [Conflict::PhoneTaken {
                phone: phone("+41446681803"),
                owner: user("1002")
            }]
        );
    }

    #[test]
    fn an_account_keeps_only_the_digest_and_its_view_shows_no_credential() {
        let realm = crate::credentials::Realm::default();
        let draft = AccountDraft {
            username: user("1000"),
            display_name: Some("Alice".parse().expect("name")),
            phone: phone("+41446681800"),
            group: None,
            profile: ClientProfile::Linphone,
        };
        let password = SipPassword::from_entropy([3; 20]);
        let clear = password.expose_secret().to_owned();
        let mut account = draft.into_account(password, &realm);
        let ha1 = account.ha1().expose_hex();
        let debug = format!("{account:?}");
        assert!(!debug.contains(&clear) && !debug.contains(&ha1), "{debug}");
        let view = serde_json::to_string(&account.view()).expect("json");
        assert_eq!(
            view,
            r#"{"username":"1000","display_name":"Alice","phone":"+41446681800","group":null,"profile":"linphone","realm":"switchboard"}"#
        );
        account.set_password(SipPassword::from_entropy([4; 20]), &realm);
        assert_ne!(
            account.ha1().expose_hex(),
            ha1,
            "a new password is a new digest"
        );
        let stored = Account::from_stored(
            user("1000"),
            None,
            phone("+41446681800"),
            None,
            ClientProfile::Native,
            Ha1::from_stored(realm, &ha1).expect("stored digest"),
        );
        assert_eq!(stored.ha1().expose_hex(), ha1);
    }

    #[test]
    fn random_input_never_panics_the_account_parsers() {
        let mut noise = Noise::new(6);
        for _ in 0..20_000 {
            let s = noise.string(80);
            let _ = s.parse::<Username>();
            let _ = s.parse::<DisplayName>();
            let _ = s.parse::<Group>();
            let _ = s.parse::<ClientProfile>();
            if let Ok(p) = s.parse::<PhoneNumber>() {
                assert!(p.as_str().starts_with('+'));
                assert!(p.as_str()[1..].bytes().all(|b| b.is_ascii_digit()), "{p}");
                assert_eq!(p.as_str().parse::<PhoneNumber>().as_ref(), Ok(&p));
            }
        }
    }
}
